#!/usr/bin/env python3
"""Exit 0 when the N nodes of the test cluster are at one epoch and hold
every bucket between them exactly once (by count). Used by cluster.sh."""
import json
import subprocess
import sys

binary = sys.argv[2]
nodes = 3 if sys.argv[1] == "segments" else int(sys.argv[1])
# Per segment id (the node's own segment index is local; the exchange's
# segment id is the cluster's): the epochs seen and the buckets held.
epochs, held, buckets = {}, {}, {}
for i in range(1, nodes + 1):
    r = subprocess.run([binary, "status", "--socket", f"/run/synshare/ss-node{i}.sock", "--json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(1)
    s = json.loads(r.stdout)
    for seg in [s] + s.get("segments", []):
        sid = seg["exchange"]["segment"] if seg.get("exchange") else 0
        epochs.setdefault(sid, set()).add(seg["epoch"])
        held[sid] = held.get(sid, 0) + seg["held"]
        buckets[sid] = seg["buckets"]
sys.exit(0 if all(len(e) == 1 for e in epochs.values()) and all(held[k] == buckets[k] for k in held) else 1)
