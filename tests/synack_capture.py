#!/usr/bin/env python3
"""The client's view of "one server per connection": captures, on every
interface of the namespace it runs in, the SYN-ACKs that come from a VIP
(IPv4 and IPv6), until SIGTERM or SIGINT, then prints one JSON line:

  {"synacks": N, "attempts": K, "answered_twice": M, "examples": [...]}

An attempt is one client SYN: (client port, the SYN-ACK's acknowledgement
number, i.e. the client's ISN + 1). Two servers that both accepted it
answer with two different sequence numbers (their ISNs); a retransmitted
SYN-ACK repeats its server's. `answered_twice` counts the attempts with more
than one distinct server ISN. No filter is compiled into the kernel: the
frames are parsed here, which is fast enough for a test client's rate.
"""

import argparse
import ipaddress
import json
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
SYN, ACK, RST = 0x02, 0x10, 0x04


def tcp_of(frame, vips):
    """(client port, ack, seq) of a SYN-ACK from a VIP in `frame`, or None."""
    if len(frame) < 14:
        return None
    etype = struct.unpack_from("!H", frame, 12)[0]
    off = 14
    while etype in (0x8100, 0x88A8) and len(frame) >= off + 4:
        etype = struct.unpack_from("!H", frame, off + 2)[0]
        off += 4
    if etype == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        if frame[off + 9] != 6 or ihl < 20:
            return None
        src = bytes(frame[off + 12:off + 16])
        l4 = off + ihl
    elif etype == 0x86DD and len(frame) >= off + 40:
        if frame[off + 6] != 6:
            return None
        src = bytes(frame[off + 8:off + 24])
        l4 = off + 40
    else:
        return None
    if src not in vips or len(frame) < l4 + 20:
        return None
    flags = frame[l4 + 13]
    if flags & (SYN | ACK | RST) != SYN | ACK:
        return None
    dport = struct.unpack_from("!H", frame, l4 + 2)[0]
    seq, ack = struct.unpack_from("!II", frame, l4 + 4)
    return dport, ack, seq


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vip", action="append", required=True, help="a VIP (repeatable)")
    args = ap.parse_args()
    vips = {ipaddress.ip_address(v).packed for v in args.vip}
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    s.settimeout(0.2)
    answers = {}
    synacks = 0
    print("capturing", file=sys.stderr, flush=True)
    while not stop:
        try:
            frame, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        t = tcp_of(frame, vips)
        if t is None:
            continue
        synacks += 1
        answers.setdefault((t[0], t[1]), set()).add(t[2])
    twice = [(k, sorted(v)) for k, v in answers.items() if len(v) > 1]
    print(json.dumps({
        "synacks": synacks,
        "attempts": len(answers),
        "answered_twice": len(twice),
        "examples": [{"client_port": k[0], "ack": k[1], "server_isns": v} for k, v in twice[:5]],
    }), flush=True)


if __name__ == "__main__":
    main()
