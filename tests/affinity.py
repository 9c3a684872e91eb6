#!/usr/bin/env python3
"""HTTP connections from many client addresses, for the affinity test: each
connection binds one of the given source addresses. Prints a JSON summary:
for every source, the answers per node, and the failures.

  affinity.py --host 192.0.2.100 --port 80 --sources-file FILE --per-source 200 [--parallel 16]
"""
import argparse
import json
import socket
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor


def one(host, port, source, timeout):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((source, 0))
        s.connect((host, port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return (source, "http", None)
        return (source, "ok", body.split(b"\n", 1)[0].decode(errors="replace"))
    except ConnectionResetError:
        return (source, "reset", None)
    except (socket.timeout, TimeoutError):
        return (source, "timeout", None)
    except OSError as e:
        return (source, "error_%s" % type(e).__name__, None)
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--sources-file", required=True)
    ap.add_argument("--per-source", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()
    sources = [l.strip() for l in open(a.sources_file) if l.strip()]
    tasks = [s for _ in range(a.per_source) for s in sources]
    started = time.monotonic()
    outcomes = Counter()
    by_source = defaultdict(Counter)
    with ThreadPoolExecutor(max_workers=a.parallel) as pool:
        for source, status, node in pool.map(lambda s: one(a.host, a.port, s, a.timeout), tasks):
            outcomes[status] += 1
            if node is not None:
                by_source[source][node] += 1
    json.dump(
        {
            "count": len(tasks),
            "ok": outcomes["ok"],
            "outcomes": dict(outcomes),
            "sources": {s: dict(c) for s, c in by_source.items()},
            "seconds": round(time.monotonic() - started, 2),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
