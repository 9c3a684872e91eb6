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
  exchange.py forge KEY HOST PORT         send forged, garbage and wrong-key heartbeats
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


def encode(member, incarnation, seq, key, epoch_number=1, members=((1, 1000),), segment=0, buckets=65536):
    body = b"SSHB" + bytes([1, 0]) + struct.pack(">HIQQIII", segment, member, incarnation, seq, 1000, 0, 0)
    body += struct.pack(">QIBIH", epoch_number, member, 1, buckets, len(members))
    for m, w in members:
        body += struct.pack(">II", m, w)
    return body + hmac.new(key, body, hashlib.sha256).digest()[:16]


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
        key, host, port = sys.argv[2].encode(), sys.argv[3], int(sys.argv[4])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent = 0
        # Wrong key, claiming to be member 2 with a table that gives it all.
        for seq in range(1, 21):
            s.sendto(encode(2, 2**62, seq, b"not-the-cluster-key", epoch_number=10**6, members=((2, 1000),)), (host, port))
            sent += 1
        # Garbage and truncated heartbeats.
        for n in range(20):
            s.sendto(os.urandom(n * 7 + 1), (host, port))
            s.sendto(b"SSHB\x01" + os.urandom(60), (host, port))
            sent += 2
        # Right key, another segment.
        s.sendto(encode(9, 1, 1, key, segment=7), (host, port))
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
            if struct.unpack(">H", udp[2:4])[0] == port and udp[8:12] == b"SSHB":
                payload = udp[8:]
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                for _ in range(5):
                    s.sendto(payload, (host, port))
                print(5)
                return
        print(0)
        sys.exit(1)


if __name__ == "__main__":
    main()
