#!/usr/bin/env python3
"""The real service behind a node's kernel in the test cluster.

GET /         -> "<node name>\n" (and the client's address on a second line)
GET /slow     -> 32 s of slowly streamed data (?s=N for N seconds)
GET /big      -> 10 MB of deterministic bytes (?n=BYTES), sha256 in a header
Listens on [::]:PORT, dual-stack, HTTP/1.1 with keep-alive.
"""
import argparse
import hashlib
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def pattern(n):
    """n deterministic bytes; the test computes the same."""
    block = hashlib.sha256(b"synshare").digest() * 2048  # 64 KiB
    reps, rest = divmod(n, len(block))
    return block * reps + block[:rest]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately: without this, Nagle and the
    # client's delayed ACK add 40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server_version = "synshare-test-httpd"

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_body(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Node", self.server.node_name)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        if url.path == "/":
            self.send_body(f"{self.server.node_name}\n{self.client_address[0]}\n".encode())
        elif url.path == "/slow":
            seconds = min(int(q.get("s", ["32"])[0]), 600)
            chunk = b"x" * 1023 + b"\n"
            ticks = seconds * 10
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(chunk) * ticks))
            self.send_header("X-Node", self.server.node_name)
            self.end_headers()
            for _ in range(ticks):
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(0.1)
        elif url.path == "/big":
            n = min(int(q.get("n", [str(10 * 1000 * 1000)])[0]), 200 * 1000 * 1000)
            body = self.server.big.get(n)
            if body is None:
                body = pattern(n)
                self.server.big[n] = body
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Sha256", hashlib.sha256(body).hexdigest())
            self.send_header("X-Node", self.server.node_name)
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)


class Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, default=80)
    a = ap.parse_args()
    srv = Server(("::", a.port), Handler)
    srv.node_name = a.name
    srv.big = {}
    print(f"httpd {a.name} on [::]:{a.port}", file=sys.stderr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
