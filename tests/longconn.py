#!/usr/bin/env python3
"""Long keep-alive connections for the namespace tests, held by one process
in the client namespace and driven through a Unix socket, so a test can
move buckets, forge segments and come back to the same connections.

  longconn.py serve --host 192.0.2.100 --count 40 --control /tmp/x.sock &
  longconn.py cmd /tmp/x.sock COMMAND [ARGS]

Commands (each prints one JSON line):
  nodes              {"node1": [port, ...], ...}: who serves each connection
  request            one GET on every open connection: {"ok": n, "failed": [[port, why], ...]}
  spoof PORT KIND    a forged segment with the client's tuple: rst-good, rst-bad
                     (random sequence number, right or wrong TCP checksum),
                     syn (random sequence number)
  close NODE         closes (FIN) the connections served by NODE
  rsts               RSTs from the VIP seen on the client's interface since start
  quit
"""
import argparse
import json
import os
import random
import socket
import struct
import sys
import threading

VIP_PORT = 80


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def forged(src, sport, dst, dport, flags, good_checksum):
    """An IPv4 TCP segment from the client's address and port, with a
    random sequence number."""
    seq = random.getrandbits(32)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    c = checksum(pseudo + tcp)
    if not good_checksum:
        c ^= 0x5A5A
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


class Held:
    def __init__(self, host, count, timeout):
        self.host = host
        self.timeout = timeout
        self.conns = {}  # local port -> [socket, node]
        for _ in range(count):
            s = socket.create_connection((host, VIP_PORT), timeout=timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            port = s.getsockname()[1]
            self.conns[port] = [s, None]
            ok, node = self.get(s)
            if not ok:
                raise SystemExit(f"connection {port}: {node}")
            self.conns[port][1] = node
        self.rsts = 0
        threading.Thread(target=self.sniff, daemon=True).start()

    def get(self, s):
        """One keep-alive GET /: (True, node) or (False, why)."""
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return False, "closed"
                buf += chunk
            head, body = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            while len(body) < length:
                chunk = s.recv(4096)
                if not chunk:
                    return False, "closed"
                body += chunk
            if not head.startswith(b"HTTP/1.1 200"):
                return False, head.split(b"\r\n")[0].decode(errors="replace")
            return True, body.split(b"\n", 1)[0].decode(errors="replace")
        except ConnectionResetError:
            return False, "reset"
        except (socket.timeout, TimeoutError):
            return False, "timeout"
        except OSError as e:
            return False, type(e).__name__

    def sniff(self):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        vip = socket.inet_aton(self.host)
        while True:
            f = s.recv(65535)
            ip = f[14:]
            if len(ip) < 40 or ip[9] != 6 or ip[12:16] != vip:
                continue
            ihl = (ip[0] & 15) * 4
            if ip[ihl + 13] & 0x04:
                self.rsts += 1

    def command(self, words):
        c = words[0]
        if c == "nodes":
            out = {}
            for port, (_, node) in sorted(self.conns.items()):
                out.setdefault(node, []).append(port)
            return out
        if c == "request":
            failed = []
            for port, (s, _) in sorted(self.conns.items()):
                ok, why = self.get(s)
                if not ok:
                    failed.append([port, why])
            return {"ok": len(self.conns) - len(failed), "failed": failed}
        if c == "spoof":
            port, kind = int(words[1]), words[2]
            src = self.conns[port][0].getsockname()[0]
            flags, good = {"rst-good": (0x04, True), "rst-bad": (0x04, False), "syn": (0x02, True)}[kind]
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            raw.sendto(forged(src, port, self.host, VIP_PORT, flags, good), (self.host, 0))
            raw.close()
            return {"sent": kind, "port": port}
        if c == "close":
            closed = []
            for port, (s, node) in list(self.conns.items()):
                if node == words[1]:
                    s.close()
                    del self.conns[port]
                    closed.append(port)
            return {"closed": closed}
        if c == "rsts":
            return {"rsts": self.rsts}
        raise ValueError(c)


def serve(a):
    held = Held(a.host, a.count, a.timeout)
    if os.path.exists(a.control):
        os.unlink(a.control)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(a.control)
    srv.listen(4)
    print(json.dumps({"open": len(held.conns)}), flush=True)
    while True:
        c, _ = srv.accept()
        with c:
            words = c.makefile().readline().split()
            if words == ["quit"]:
                c.sendall(b"{}\n")
                return
            try:
                out = held.command(words)
            except Exception as e:  # a bad command: say so, keep serving
                out = {"error": repr(e)}
            c.sendall((json.dumps(out) + "\n").encode())


def cmd(a):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.control)
    s.sendall((" ".join(a.words) + "\n").encode())
    print(s.makefile().readline().strip())


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--host", required=True)
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--control", required=True)
    p = sub.add_parser("cmd")
    p.add_argument("control")
    p.add_argument("words", nargs="+")
    a = ap.parse_args()
    serve(a) if a.what == "serve" else cmd(a)


if __name__ == "__main__":
    sys.exit(main())
