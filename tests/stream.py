#!/usr/bin/env python3
"""A steady stream of new HTTP connections for a fixed time, each on its own
socket, from several threads. Writes one JSON line per connection:
{"t": start (unix s), "d": duration (s), "status": "ok"|"reset"|..., "node": name}

  stream.py --host 192.0.2.100 --seconds 8 --parallel 4 --out FILE
"""
import argparse
import json
import os
import sys
import threading
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client import one  # the same single request as client.py


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--pause", type=float, default=0.01)
    ap.add_argument("--timeout", type=float, default=6)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    end = time.time() + a.seconds
    lock = threading.Lock()
    out = open(a.out, "w")

    def loop():
        while time.time() < end:
            t = time.time()
            status, node = one(a.host, a.port, "/", a.timeout)
            rec = {"t": t, "d": round(time.time() - t, 4), "status": status, "node": node}
            with lock:
                out.write(json.dumps(rec) + "\n")
            time.sleep(a.pause)

    threads = [threading.Thread(target=loop) for _ in range(a.parallel)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out.close()


if __name__ == "__main__":
    main()
