#!/usr/bin/env python3
"""Helpers of the exchange tests: read the nodes' status, wait for
conditions, craft heartbeats (an independent implementation of the wire
format of control/src/wire.rs), summarise client streams.

  exchange.py held N                      buckets held per node, one line
  exchange.py wait-held N I MIN SECONDS   wait until node I holds >= MIN buckets
  exchange.py failover N DEAD SECONDS [SINCE]
                                          wait until the nodes but DEAD hold all buckets;
                                          print ms since SINCE (unix s, default now)
  exchange.py weight I                    node I's advertised weight
  exchange.py shares FILE [SINCE]         per-node share of ok connections in a stream file
  exchange.py stream-summary FILE KILL    failures, slow connections after KILL (unix s)
  exchange.py forge KEY HOST PORT PEER    send forged, garbage and wrong-key heartbeats (from PEER's address)
  exchange.py replay IFACE HOST PORT      capture a real heartbeat on IFACE and send it again
"""
import hashlib
import hmac
import json
import os
import socket
import struct
import subprocess
import sys
import time

BIN = os.environ.get("SS_BIN", os.path.join(os.path.dirname(__file__), "..", "target", "release", "synshare"))


def status(i):
    sock = "/run/synshare/ss-coord.sock" if i == 0 else f"/run/synshare/ss-node{i}.sock"
    r = subprocess.run([BIN, "status", "--socket", sock, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def held(n):
    out = []
    for i in range(1, n + 1):
        s = status(i)
        out.append(s["held"] if s else -1)
    return out


def encode(member, incarnation, seq, key, key_id=0, segment=0, applied=1, heard=(), nonce=0,
           agreed=(350, 350, 100, 60000, 65536, 1, 0)):
    """A heartbeat in wire format 4 (control/src/wire.rs), written here
    independently of the Rust codec: the header carries the start's nonce,
    the body the settings that must agree (lease, timeout, interval, drain,
    buckets, layout, the port rules' digest), the count of buckets served but not held and, per peer
    heard, the incarnation it is about."""
    body = b"SSX2" + bytes([4, 1, key_id, 0]) + struct.pack(">HIQI", segment, member, incarnation, nonce)
    body += struct.pack(">QIIIQQ", seq, 1000, 0, 0, applied, applied)
    lease, timeout, interval, drain, buckets, layout, rules = agreed
    body += struct.pack(">IIIIBBI", lease, timeout, interval, drain, buckets.bit_length() - 1, layout, rules)
    body += struct.pack(">IH", 0, len(heard))  # serving: none; peers heard
    for m, inc, sq in heard:
        body += struct.pack(">IQQB", m, inc, sq, 1)
    return body + hmac.new(key, body, hashlib.sha256).digest()[:16]


def send_spoofed(src, dst, port, payload):
    """Sends a UDP datagram with source address `src` (a peer's) through a
    raw socket: the node's source filter lets it through to the checks
    behind it."""
    udp = struct.pack(">HHHH", port, port, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    csum = 0
    for i in range(0, 20, 2):
        csum += (ip[i] << 8) | ip[i + 1]
    while csum >> 16:
        csum = (csum & 0xFFFF) + (csum >> 16)
    ip = ip[:10] + struct.pack(">H", ~csum & 0xFFFF) + ip[12:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(ip + udp, (dst, 0))
    s.close()


def main():
    cmd = sys.argv[1]
    if cmd == "held":
        print(" ".join(map(str, held(int(sys.argv[2])))))
    elif cmd == "wait-held":
        n, i, least, secs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        end = time.time() + secs
        while time.time() < end:
            s = status(i)
            if s and s["held"] >= least:
                sys.exit(0)
            time.sleep(0.05)
        sys.exit(1)
    elif cmd == "wait-held-zero":
        i, secs = int(sys.argv[2]), float(sys.argv[3])
        end = time.time() + secs
        while time.time() < end:
            s = status(i)
            if s and s["held"] == 0:
                sys.exit(0)
            time.sleep(0.05)
        sys.exit(1)
    elif cmd == "failover":
        n, dead, secs = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        start = float(sys.argv[5]) if len(sys.argv) > 5 else time.time()
        while time.time() < start + secs:
            hs = [status(i) for i in range(1, n + 1) if i != dead]
            if all(hs) and sum(h["held"] for h in hs) == 65536 and len({h["epoch"] for h in hs}) == 1:
                print(int((time.time() - start) * 1000))
                sys.exit(0)
            time.sleep(0.02)
        print(-1)
        sys.exit(1)
    elif cmd == "weight":
        s = status(int(sys.argv[2]))
        print(s["exchange"]["weight"] if s else -1)
    elif cmd == "shares":
        since = float(sys.argv[3]) if len(sys.argv) > 3 else 0
        recs = [json.loads(l) for l in open(sys.argv[2])]
        ok = [r for r in recs if r["status"] == "ok" and r["t"] >= since]
        nodes = {}
        for r in ok:
            nodes[r["node"]] = nodes.get(r["node"], 0) + 1
        shares = {k: round(100 * v / max(len(ok), 1), 1) for k, v in sorted(nodes.items())}
        print(json.dumps(shares, separators=(",", ":")), len(ok))
    elif cmd == "stream-summary":
        kill = float(sys.argv[3])
        recs = [json.loads(l) for l in open(sys.argv[2])]
        bad = [r for r in recs if r["status"] != "ok"]
        slow = [r for r in recs if r["status"] == "ok" and r["d"] > 0.9 and r["t"] >= kill - 1]
        # A SYN nobody accepted is retransmitted after the 1 s initial RTO:
        # such connections take 1.0 to ~1.15 s. Slower ones are a busy
        # server, not a lost SYN.
        retransmitted = [r for r in slow if r["d"] <= 1.15]
        last_slow = max((r["t"] - kill for r in retransmitted), default=None)
        print(json.dumps({
            "connections": len(recs),
            "failed": len(bad),
            "failures": sorted({r["status"] for r in bad}),
            "slow_after_kill": len(slow),
            "syn_retransmitted_after_kill": len(retransmitted),
            "syn_retransmitted_1s_after_kill": len([r for r in retransmitted if r["t"] >= kill + 1]),
            "last_slow_start_after_kill_ms": None if last_slow is None else int(last_slow * 1000),
            "failed_started_after_kill_ms": [int((r["t"] - kill) * 1000) for r in bad],
            "slow": [[int((r["t"] - kill) * 1000), r["d"], r["node"]] for r in slow][:10],
        }, separators=(",", ":")))
    elif cmd == "forge":
        # forge KEY HOST PORT PEER: wrong-key, garbage and foreign datagrams
        # from the peer's address (spoofed), and a few from our own.
        key, host, port, peer = sys.argv[2].encode(), sys.argv[3], int(sys.argv[4]), sys.argv[5]
        sent = 0
        for seq in range(1, 21):
            send_spoofed(peer, host, port, encode(2, 2**62, seq, b"not-the-cluster-key"))
            sent += 1
        for n in range(20):
            send_spoofed(peer, host, port, os.urandom(n * 7 + 1))
            send_spoofed(peer, host, port, b"SSX2\x02" + os.urandom(60))
            sent += 2
        # Right key, another segment (three: one datagram may be lost).
        for seq in range(1, 4):
            send_spoofed(peer, host, port, encode(9, 1, seq, key, segment=7))
            sent += 1
        # From an address that is no member: dropped before any check.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(10):
            s.sendto(encode(2, 1, 1, key), (host, port))
            sent += 1
        print(sent)
    elif cmd == "replay":
        iface, host, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        raw.bind((iface, 0))
        raw.settimeout(3)
        end = time.time() + 3
        while time.time() < end:
            frame = raw.recv(65535)
            ip = frame[14:]
            ihl = (ip[0] & 15) * 4
            if ip[9] != 17:
                continue
            udp = ip[ihl:]
            src = socket.inet_ntoa(ip[12:16])
            if struct.unpack(">H", udp[2:4])[0] == port and udp[8:12] == b"SSX2" and udp[13] == 1:
                payload = udp[8:]
                for _ in range(5):
                    send_spoofed(src, host, port, payload)
                print(5)
                return
        print(0)
        sys.exit(1)


if __name__ == "__main__":
    main()
