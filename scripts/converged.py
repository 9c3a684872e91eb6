#!/usr/bin/env python3
"""Exit 0 when the N nodes of the test cluster are at one epoch and hold
every bucket between them exactly once (by count). Used by cluster.sh."""
import json
import subprocess
import sys

n, binary = int(sys.argv[1]), sys.argv[2]
epochs, held, buckets = set(), 0, None
for i in range(1, n + 1):
    r = subprocess.run([binary, "status", "--socket", f"/run/synshare/ss-node{i}.sock", "--json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(1)
    s = json.loads(r.stdout)
    epochs.add(s["epoch"])
    held += s["held"]
    buckets = s["buckets"]
sys.exit(0 if len(epochs) == 1 and held == buckets else 1)
