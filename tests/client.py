#!/usr/bin/env python3
"""A real HTTP client for the namespace tests: many new connections, each
with its own socket, some in parallel. Prints a JSON summary: answers per
node, HTTP failures, connection resets, other errors.

  client.py --host 192.0.2.100 --count 3000 --parallel 16 [--path /]
"""
import argparse
import http.client
import json
import socket
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def one(host, port, path, timeout):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            return ("http_%d" % r.status, None)
        return ("ok", body.split(b"\n", 1)[0].decode(errors="replace"))
    except ConnectionResetError:
        return ("reset", None)
    except (socket.timeout, TimeoutError):
        return ("timeout", None)
    except OSError as e:
        return ("error_%s" % type(e).__name__, None)
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--path", default="/")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()
    started = time.monotonic()
    outcomes = Counter()
    nodes = Counter()
    with ThreadPoolExecutor(max_workers=a.parallel) as pool:
        for status, node in pool.map(lambda _: one(a.host, a.port, a.path, a.timeout), range(a.count)):
            outcomes[status] += 1
            if node is not None:
                nodes[node] += 1
    json.dump(
        {
            "count": a.count,
            "ok": outcomes["ok"],
            "outcomes": dict(outcomes),
            "nodes": dict(nodes),
            "seconds": round(time.monotonic() - started, 2),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
