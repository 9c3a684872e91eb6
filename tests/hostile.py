#!/usr/bin/env python3
"""Hostile traffic for the namespace tests: crafted raw Ethernet frames sent
from the client namespace with an AF_PACKET socket (no scapy: every header is
built here by hand with struct, with correct checksums wherever the case does
not break them on purpose).

Only the test cluster's documentation addresses are used: the VIPs
192.0.2.100 / 2001:db8::100 behind the cluster MAC 02:5e:00:00:01:00, the
client 192.0.2.10 / 2001:db8::10 at 02:00:00:00:00:10, and (for the flood)
spoofed sources inside 192.0.2.128/25, all inside the namespaces that
scripts/cluster.sh creates.

  hostile.py list                               the cases and the counter each one must raise
  hostile.py cases --nodes N [--count C] [--only|--skip NAME,...] [--iface eth0]
        sends C frames of every case, one case at a time, and reads every
        node's counters (synshare status --json) before and after; prints one
        JSON line per case: {"case", "counter", "mode", "sent", "deltas"}.
  hostile.py flood [--count 200000] [--seconds 20] [--burst 0] [--rate 10000] [--iface eth0]
        spoofed TCP SYNs to 192.0.2.100:80 from random sources in
        192.0.2.128/25 (.129-.254) and random ports, until COUNT or SECONDS:
        the first BURST as fast as Python sends them, the rest RATE per
        second (0: as fast as possible); prints {"sent", "seconds", "rate",
        "burst", "burst_seconds"}.
  hostile.py dump DIR                           each case's first frame in DIR/NAME
  hostile.py pcap DIR                           every case's frames as fixtures for the offline test
        (dataplane/tests/hostile_fixtures.rs): DIR/NAME.pcap (classic pcap,
        LINKTYPE_ETHERNET) with the frames of PCAP_UNITS units of the case,
        and DIR/expected.tsv with the counter one node must raise for them,
        once holding every bucket and once holding none (see "Offline").
        Byte-identical on every run (no randomness, fixed timestamps).
  hostile.py rss PID                            the process's VmRSS in kB
"""
import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time

BIN = os.environ.get("SS_BIN", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "synshare"))

CLUSTER_MAC = bytes.fromhex("025e00000100")
CLIENT_MAC = bytes.fromhex("020000000010")
OTHER_MAC = bytes.fromhex("020000000066")  # a host that does not exist
STRANGER_MAC = bytes.fromhex("020000000077")  # unicast nobody owns
BROADCAST = b"\xff" * 6
VIP4 = socket.inet_pton(socket.AF_INET, "192.0.2.100")
CLIENT4 = socket.inet_pton(socket.AF_INET, "192.0.2.10")
NOT_VIP4 = socket.inet_pton(socket.AF_INET, "192.0.2.99")
VIP6 = socket.inet_pton(socket.AF_INET6, "2001:db8::100")
CLIENT6 = socket.inet_pton(socket.AF_INET6, "2001:db8::10")

ETH_IPV4, ETH_ARP, ETH_IPV6, ETH_VLAN = 0x0800, 0x0806, 0x86DD, 0x8100
TCP, UDP, ICMP, ICMPV6, GRE = 6, 17, 1, 58, 47
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


# --- checksums and headers -------------------------------------------------

def ones_sum(data, acc=0):
    if len(data) % 2:
        data += b"\0"
    acc += sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while acc > 0xFFFF:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


def checksum(data):
    return ~ones_sum(data) & 0xFFFF


def pseudo(src, dst, proto, length):
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def eth(dst, src, ethertype, payload):
    return dst + src + struct.pack("!H", ethertype) + payload


def ipv4(src, dst, proto, payload, ttl=64, frag=0x4000, ihl=5, total=None, version=4, good_csum=True, options=b"",
         ident=0x1234):
    """An IPv4 packet. `frag` is the flags/fragment-offset word (DF by default)."""
    total = 4 * ihl + len(payload) if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total, ident, frag, ttl, proto, 0, src, dst) + options
    csum = checksum(h)
    if not good_csum:
        csum ^= 0x5555
    h = h[:10] + struct.pack("!H", csum) + h[12:]
    return h + payload


def ipv6(src, dst, nh, payload, hlim=64, plen=None, version=6):
    plen = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", version << 28, plen, nh, hlim, src, dst) + payload


def tcp(src, dst, sport, dport, flags, doff=5, seq=0x10000000, ack=0, payload=b"", length=None):
    """A TCP segment with a correct checksum over the pseudo-header of
    src/dst; `length` cuts it (a truncated header)."""
    opts = b"\0" * max(0, 4 * doff - 20)
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (doff & 0xF) << 4, flags, 64240, 0, 0) + opts
    seg = h + payload
    csum = checksum(pseudo(src, dst, TCP, len(seg)) + seg)
    seg = seg[:16] + struct.pack("!H", csum) + seg[18:]
    return seg if length is None else seg[:length]


def udp(src, dst, sport, dport, payload, ulen=None):
    ulen = 8 + len(payload) if ulen is None else ulen
    d = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    csum = checksum(pseudo(src, dst, UDP, len(d)) + d) or 0xFFFF
    return d[:6] + struct.pack("!H", csum) + d[8:]


def icmpv6(src, dst, kind, code, body, good_csum=True):
    m = struct.pack("!BBH", kind, code, 0) + body
    csum = checksum(pseudo(src, dst, ICMPV6, len(m)) + m)
    if not good_csum:
        csum ^= 0x5555
    return m[:2] + struct.pack("!H", csum) + m[4:]


def arp(oper, sha, spa, tha, tpa, htype=1, ptype=ETH_IPV4, hlen=6, plen=4):
    return struct.pack("!HHBBH", htype, ptype, hlen, plen, oper) + sha + spa + tha + tpa


def solicited_node(addr):
    group = socket.inet_pton(socket.AF_INET6, "ff02::1:ff00:0")
    return group[:13] + addr[13:], b"\x33\x33\xff" + addr[13:]


def ext(nh, length, body=None):
    """An IPv6 extension header (hop-by-hop, routing, destination options)
    of `length` bytes (a multiple of 8), padded with PadN."""
    body = body if body is not None else b"\x01" + bytes([length - 4]) + b"\0" * (length - 4)
    return bytes([nh, length // 8 - 1]) + body


def pad(frame):
    return frame + b"\0" * max(0, 60 - len(frame))


# --- the cases ---------------------------------------------------------------
# Each case: (name, counter, mode, build(i) -> frame or [frames], offline).
# mode "each": every node counts each unit (frame, or list of frames) once in
# `counter` (the decision does not depend on who owns the connection); "sum":
# exactly one node counts it (the bucket's owner); "absent": the frames never
# reach the dataplane, no node counts them.
#
# Offline (`hostile.py pcap`, decided by dataplane/tests/hostile_fixtures.rs
# with no namespaces): one node decides every frame of the case by itself,
# once holding every bucket, settled as static shares hold them ("owner"),
# and once holding none ("none"). There each frame raises exactly one
# counter: `counter` on both nodes unless `offline` says otherwise for a node
# ({"owner": ..., "none": ...}). A "sum" case must name what the node that
# does not own the bucket counts. Fragments reach the classifier one by one
# offline, as from a NIC (no af_packet reassembly).

def syn4(i, flags=SYN, dport=80, dst=VIP4):
    return tcp(CLIENT4, dst, 2000 + i, dport, flags)


def frame4(payload, dst_mac=CLUSTER_MAC, src_mac=CLIENT_MAC, **kw):
    return pad(eth(dst_mac, src_mac, ETH_IPV4, payload))


def frame6(payload, dst_mac=CLUSTER_MAC, src_mac=CLIENT_MAC):
    return pad(eth(dst_mac, src_mac, ETH_IPV6, payload))


def case_list():
    c = []

    def add(name, counter, mode, build, offline=None):
        c.append((name, counter, mode, build, offline or {}))

    # Truncated and malformed headers. A TCP segment to VIP:80 is placed
    # in its bucket from fixed offsets before it is validated (README, "How
    # a frame is decided"): only the bucket's owner counts what is wrong
    # with it ("sum"); a node whose bucket it is not drops it as any
    # segment of another node's bucket (drop_syn_not_owner for these SYNs,
    # drop_not_owner when the flags byte is not a SYN's). Frames that do not
    # read as TCP to a VIP port at fixed offsets are counted by every node.
    # (The kernel refuses to send an
    # Ethernet frame shorter than its 14-byte header, so truncation starts
    # above Ethernet; the parser's Ethernet and VLAN truncation is covered by
    # the unit tests and the fuzzers.) Frames are not padded to 60 bytes
    # where the padding would complete the truncated header.
    add("ipv4_truncated_header", "drop_truncated", "each",
        lambda i: eth(CLUSTER_MAC, CLIENT_MAC, ETH_IPV4, ipv4(CLIENT4, VIP4, TCP, syn4(i))[:12]))
    add("ipv6_truncated_header", "drop_truncated", "each",
        lambda i: eth(CLUSTER_MAC, CLIENT_MAC, ETH_IPV6, ipv6(CLIENT6, VIP6, TCP, b"")[:30]))
    add("ipv4_total_length_beyond_frame", "drop_truncated", "sum",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i), total=1000)), offline={"none": "drop_syn_not_owner"})
    add("ipv6_payload_length_beyond_frame", "drop_truncated", "sum",
        lambda i: frame6(ipv6(CLIENT6, VIP6, TCP, tcp(CLIENT6, VIP6, 2000 + i, 80, SYN), plen=1000)), offline={"none": "drop_syn_not_owner"})
    add("arp_truncated", "drop_truncated", "each",
        lambda i: eth(BROADCAST, CLIENT_MAC, ETH_ARP, arp(1, CLIENT_MAC, CLIENT4, b"\0" * 6, VIP4)[:20]))
    add("tcp4_truncated_header", "drop_bad_tcp_header", "sum",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i)[:12])), offline={"none": "drop_not_owner"})
    add("tcp6_truncated_header", "drop_bad_tcp_header", "each",
        lambda i: frame6(ipv6(CLIENT6, VIP6, TCP, tcp(CLIENT6, VIP6, 2000 + i, 80, SYN)[:12])))
    add("tcp_data_offset_too_small", "drop_bad_tcp_header", "sum",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, tcp(CLIENT4, VIP4, 2000 + i, 80, SYN, doff=3))), offline={"none": "drop_syn_not_owner"})
    add("tcp_data_offset_beyond_packet", "drop_bad_tcp_header", "sum",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, tcp(CLIENT4, VIP4, 2000 + i, 80, SYN, doff=15)[:20])), offline={"none": "drop_syn_not_owner"})
    add("ipv4_header_length_4_words", "drop_bad_ipv4_header", "each",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i), ihl=4)))
    add("ipv4_version_5", "drop_bad_ipv4_header", "each",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i), version=5)))
    add("ipv4_total_length_below_header", "drop_bad_ipv4_header", "sum",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i), total=12)), offline={"none": "drop_syn_not_owner"})
    add("ipv4_bad_checksum", "drop_bad_ipv4_checksum", "sum",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i), good_csum=False)), offline={"none": "drop_syn_not_owner"})
    add("ipv6_version_4", "drop_bad_ipv6_header", "each",
        lambda i: frame6(ipv6(CLIENT6, VIP6, TCP, tcp(CLIENT6, VIP6, 2000 + i, 80, SYN), version=4)))
    add("udp_length_too_small", "drop_bad_udp_header", "each",
        lambda i: frame4(ipv4(CLIENT4, VIP4, UDP, udp(CLIENT4, VIP4, 2000 + i, 53, b"query", ulen=4))))
    add("three_vlan_tags", "drop_too_many_vlans", "each",
        lambda i: pad(eth(CLUSTER_MAC, CLIENT_MAC, ETH_VLAN,
                          struct.pack("!HHHHH", 10, ETH_VLAN, 20, ETH_VLAN, 30) + struct.pack("!H", ETH_IPV4)
                          + ipv4(CLIENT4, VIP4, TCP, syn4(i)))))

    # IPv6 extension-header chains.
    add("ipv6_nine_extension_headers", "drop_bad_ipv6_extension", "each",
        lambda i: frame6(ipv6(CLIENT6, VIP6, 60,
                              b"".join(ext(60 if k < 8 else TCP, 8) for k in range(9))
                              + tcp(CLIENT6, VIP6, 2000 + i, 80, SYN))))
    add("ipv6_extension_longer_than_packet", "drop_bad_ipv6_extension", "each",
        lambda i: frame6(ipv6(CLIENT6, VIP6, 0, bytes([TCP, 200]) + b"\x01\x04\0\0\0\0"
                              + tcp(CLIENT6, VIP6, 2000 + i, 80, SYN))))
    add("ipv6_extension_cut_off", "drop_bad_ipv6_extension", "each",
        lambda i: frame6(ipv6(CLIENT6, VIP6, 60, b"\x06")))
    # Hop-by-hop, destination options, then TCP: walked to the TCP header
    # (port 81 is not served, so each node counts it the same way).
    add("ipv6_hop_by_hop_then_tcp", "drop_vip_port_not_served", "each",
        lambda i: frame6(ipv6(CLIENT6, VIP6, 0, ext(60, 8) + ext(TCP, 16) + tcp(CLIENT6, VIP6, 2000 + i, 81, SYN))))

    # Fragments to a VIP are dropped and counted: later fragments carry no
    # ports, so no node could place them consistently. The first fragment
    # (which has the ports) and IPv6 atomic fragments (offset 0, no more
    # fragments) are dropped the same way.
    #
    # IPv4 in this topology: DPDK's net_af_packet joins a PACKET_FANOUT group
    # with PACKET_FANOUT_FLAG_DEFRAG, so the node's kernel reassembles IPv4
    # fragments before the dataplane sees them. Lone IPv4 fragments never
    # reach it (mode "absent": no node counts them), and a complete
    # fragmented datagram arrives whole and is decided like any packet (here
    # a SYN to port 81: drop_vip_port_not_served). With a NIC (vfio-pci)
    # every IPv4 fragment reaches the classifier and is counted in
    # drop_vip_fragment (unit tests: classify.rs). IPv6 fragments are not
    # reassembled by af_packet and are counted here.
    add("ipv4_first_fragment_alone", "drop_vip_fragment", "absent",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i) + b"x" * 16, frag=0x2000, ident=0x1100 + i)), offline={"none": "drop_syn_not_owner"})
    add("ipv4_later_fragment_alone", "drop_vip_fragment", "absent",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, b"y" * 24, frag=185, ident=0x1200 + i)))

    def fragmented(i):
        seg = tcp(CLIENT4, VIP4, 2000 + i, 81, SYN, payload=b"f" * 12)
        return [frame4(ipv4(CLIENT4, VIP4, TCP, seg[:24], frag=0x2000, ident=0x2000 + i)),
                frame4(ipv4(CLIENT4, VIP4, TCP, seg[24:], frag=3, ident=0x2000 + i))]

    # Offline, as from a NIC, each of its two fragments is a fragment to the
    # VIP; the reassembly is af_packet's, not the classifier's.
    add("ipv4_fragmented_datagram", "drop_vip_port_not_served", "each", fragmented,
        offline={"owner": "drop_vip_fragment", "none": "drop_vip_fragment"})
    add("ipv6_first_fragment", "drop_vip_fragment", "each",
        lambda i: frame6(ipv6(CLIENT6, VIP6, 44, struct.pack("!BBHI", TCP, 0, 0x0001, 1000 + i)
                              + tcp(CLIENT6, VIP6, 2000 + i, 80, SYN))))
    add("ipv6_later_fragment", "drop_vip_fragment", "each",
        lambda i: frame6(ipv6(CLIENT6, VIP6, 44, struct.pack("!BBHI", TCP, 0, 185 << 3, 1000 + i) + b"z" * 24)))
    add("ipv6_atomic_fragment", "drop_vip_fragment", "each",
        lambda i: frame6(ipv6(CLIENT6, VIP6, 44, struct.pack("!BBHI", TCP, 0, 0, 1000 + i)
                              + tcp(CLIENT6, VIP6, 2000 + i, 80, SYN))))

    # Odd TCP flag combinations to VIP:80. SYN with FIN or RST is refused by
    # every node before any lookup. Null and xmas (FIN+PSH+URG) are not SYNs:
    # the bucket's owner (settled, static shares) passes them to its kernel,
    # which discards them, and the other node drops them: one node counts
    # each in kernel_vip_adopted (offline: the node holding no bucket counts
    # them in drop_not_owner).
    add("tcp_syn_fin", "drop_tcp_bad_flags", "each", lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i, SYN | FIN))))
    add("tcp_syn_rst", "drop_tcp_bad_flags", "each", lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i, SYN | RST))))
    add("tcp_all_flags", "drop_tcp_bad_flags", "each", lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i, 0xFF))))
    add("tcp_null", "kernel_vip_adopted", "sum", lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i, 0))),
        offline={"none": "drop_not_owner"})
    add("tcp_xmas", "kernel_vip_adopted", "sum",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i + 100, FIN | PSH | URG))),
        offline={"none": "drop_not_owner"})
    add("tcp_port_not_served", "drop_vip_port_not_served", "each",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i, SYN, dport=81))))
    add("ip_protocol_not_served", "drop_vip_protocol", "each",
        lambda i: frame4(ipv4(CLIENT4, VIP4, GRE, b"\0\0\x08\0" + b"g" * 20)))
    add("cluster_mac_not_vip", "drop_cluster_mac_not_vip", "each",
        lambda i: frame4(ipv4(CLIENT4, NOT_VIP4, TCP, syn4(i, SYN, dst=NOT_VIP4))))
    add("unicast_to_nobody", "drop_not_for_us", "sum",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i)), dst_mac=STRANGER_MAC), offline={"none": "drop_syn_not_owner"})
    add("icmp_error_quoting_another_host", "drop_icmp_bad", "each",
        lambda i: frame4(ipv4(CLIENT4, VIP4, ICMP, icmp4_unreach(ipv4(CLIENT4, NOT_VIP4, TCP, syn4(i, SYN, dst=NOT_VIP4))))))

    # Junk ARP (broadcast): bad hardware/protocol sizes and types; a request
    # for the VIP whose sender MAC is not the frame's; a reply to the VIP.
    add("arp_hardware_length_8", "drop_bad_arp", "each",
        lambda i: pad(eth(BROADCAST, CLIENT_MAC, ETH_ARP, arp(1, CLIENT_MAC, CLIENT4, b"\0" * 6, VIP4, hlen=8))))
    add("arp_protocol_length_16", "drop_bad_arp", "each",
        lambda i: pad(eth(BROADCAST, CLIENT_MAC, ETH_ARP, arp(1, CLIENT_MAC, CLIENT4, b"\0" * 6, VIP4, plen=16))))
    add("arp_hardware_type_6", "drop_bad_arp", "each",
        lambda i: pad(eth(BROADCAST, CLIENT_MAC, ETH_ARP, arp(1, CLIENT_MAC, CLIENT4, b"\0" * 6, VIP4, htype=6))))
    add("arp_request_sender_mac_mismatch", "drop_arp_bad", "each",
        lambda i: pad(eth(BROADCAST, CLIENT_MAC, ETH_ARP, arp(1, OTHER_MAC, CLIENT4, b"\0" * 6, VIP4))))
    add("arp_reply_to_vip", "drop_arp_vip_conflict", "each",
        lambda i: pad(eth(CLUSTER_MAC, CLIENT_MAC, ETH_ARP, arp(2, CLIENT_MAC, CLIENT4, CLUSTER_MAC, VIP4))))
    # ARP claiming the VIP at another MAC: a gratuitous request (broadcast)
    # and an unsolicited reply. Nobody answers it or passes it up.
    add("arp_gratuitous_vip_claim", "drop_arp_vip_conflict", "each",
        lambda i: pad(eth(BROADCAST, OTHER_MAC, ETH_ARP, arp(1, OTHER_MAC, VIP4, b"\0" * 6, VIP4))))
    add("arp_reply_vip_claim", "drop_arp_vip_conflict", "each",
        lambda i: pad(eth(CLUSTER_MAC, OTHER_MAC, ETH_ARP, arp(2, OTHER_MAC, VIP4, CLIENT_MAC, CLIENT4))))

    # Junk NDP: neighbour solicitations for the VIP that fail RFC 4861's
    # checks (hop limit not 255, bad checksum, too short).
    def ns(hlim=255, good_csum=True, body=None, to_vip=False):
        dst, dst_mac = solicited_node(VIP6)
        if to_vip:
            dst, dst_mac = VIP6, CLUSTER_MAC
        body = body if body is not None else b"\0\0\0\0" + VIP6 + b"\x01\x01" + CLIENT_MAC
        return pad(eth(dst_mac, CLIENT_MAC, ETH_IPV6,
                       ipv6(CLIENT6, dst, ICMPV6, icmpv6(CLIENT6, dst, 135, 0, body, good_csum), hlim=hlim)))

    add("ndp_solicit_hop_limit_64", "drop_ndp_bad", "each", lambda i: ns(hlim=64))
    add("ndp_solicit_bad_checksum", "drop_ndp_bad", "each", lambda i: ns(good_csum=False))
    add("ndp_solicit_to_vip_bad_checksum", "drop_ndp_bad", "each", lambda i: ns(good_csum=False, to_vip=True))
    add("ndp_solicit_without_target", "drop_ndp_bad", "each", lambda i: ns(body=b"\0\0\0\0"))

    # A source MAC equal to the cluster MAC (no port ever sends from it).
    add("source_mac_is_cluster_mac", "drop_spoofed_source", "sum",
        lambda i: frame4(ipv4(CLIENT4, VIP4, TCP, syn4(i)), src_mac=CLUSTER_MAC), offline={"none": "drop_syn_not_owner"})
    return c


def icmp4_unreach(quoted):
    m = struct.pack("!BBHI", 3, 1, 0, 0) + quoted[:28]
    return m[:2] + struct.pack("!H", checksum(m)) + m[4:]


# --- sending and counting ----------------------------------------------------

def raw_socket(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    return s


def counters(i):
    r = subprocess.run([BIN, "status", "--socket", f"/run/synshare/ss-node{i}.sock", "--json"],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return None
    out = {}
    for w in json.loads(r.stdout)["workers"]:
        for k, v in w["counters"].items():
            out[k] = out.get(k, 0) + v
    return out


def run_cases(a):
    cases = case_list()
    if a.only:
        names = set(a.only.split(","))
        cases = [c for c in cases if c[0] in names]
    if a.skip:
        names = set(a.skip.split(","))
        cases = [c for c in cases if c[0] not in names]
    s = raw_socket(a.iface)
    nodes = range(1, a.nodes + 1)
    for name, counter, mode, build, _ in cases:
        units = [build(i) for i in range(a.count)]
        before = [counters(i) or {} for i in nodes]
        for u in units:
            for f in (u if isinstance(u, list) else [u]):
                s.send(f)
            time.sleep(0.001)
        # The workers publish their counters every few milliseconds.
        deadline = time.time() + 3
        while True:
            time.sleep(0.1)
            after = [counters(i) or {} for i in nodes]
            deltas = [af.get(counter, 0) - bf.get(counter, 0) for bf, af in zip(before, after)]
            if mode == "each":
                done = min(deltas) >= a.count
            elif mode == "sum":
                done = sum(deltas) >= a.count
            else:
                done = time.time() > deadline - 2.5
            if done or time.time() > deadline:
                break
        time.sleep(0.1)
        after = [counters(i) or {} for i in nodes]
        deltas = [af.get(counter, 0) - bf.get(counter, 0) for bf, af in zip(before, after)]
        frames = sum(len(u) if isinstance(u, list) else 1 for u in units)
        print(json.dumps({"case": name, "counter": counter, "mode": mode, "sent": len(units), "frames": frames,
                          "deltas": deltas}), flush=True)


def flood(a):
    """Spoofed SYNs, built from per-source templates with incremental TCP
    checksums (fast enough in Python): the first `burst` as fast as Python
    sends them, the rest paced to `rate` per second."""
    s = raw_socket(a.iface)
    rnd = random.Random(a.seed)
    sources = [bytes([192, 0, 2, n]) for n in range(129, 255)]
    heads, partial = [], []
    for src in sources:
        ip = ipv4(src, VIP4, TCP, b"\0" * 20)  # the TCP bytes are filled in below
        heads.append(eth(CLUSTER_MAC, CLIENT_MAC, ETH_IPV4, ip[:20]))
        # TCP checksum of everything but the source port and sequence number.
        tmpl = struct.pack("!HHIIBBHHH", 0, 80, 0, 0, 5 << 4, SYN, 64240, 0, 0)
        partial.append(ones_sum(pseudo(src, VIP4, TCP, 20) + tmpl))
    tail = struct.pack("!IBBH", 0, 5 << 4, SYN, 64240)
    start = time.time()
    end = start + a.seconds
    sent = 0
    batch = 64
    paced_from, paced_at = 0, start
    burst_s = None
    while sent < a.count:
        now = time.time()
        if now >= end:
            break
        if sent == a.burst:
            paced_from, paced_at = sent, now
        if a.rate > 0 and sent >= a.burst:
            ahead = (sent - paced_from) / a.rate - (now - paced_at)
            if ahead > 0:
                time.sleep(ahead)
        if burst_s is None and sent >= a.burst:
            burst_s = now - start
        limit = a.burst - sent if sent < a.burst else a.count - sent
        for _ in range(min(batch, limit)):
            k = rnd.randrange(len(sources))
            sport = rnd.randrange(1024, 65536)
            seq = rnd.getrandbits(32)
            acc = partial[k] + sport + (seq >> 16) + (seq & 0xFFFF)
            while acc > 0xFFFF:
                acc = (acc & 0xFFFF) + (acc >> 16)
            csum = ~acc & 0xFFFF
            s.send(heads[k] + struct.pack("!HHI", sport, 80, seq) + tail + struct.pack("!HH", csum, 0) + b"\0" * 6)
            sent += 1
    secs = time.time() - start
    print(json.dumps({"sent": sent, "seconds": round(secs, 2), "rate": int(sent / secs) if secs else 0,
                      "burst": min(a.burst, sent), "burst_seconds": round(burst_s if burst_s is not None else secs, 2)}))


# --- offline fixtures ---------------------------------------------------------

PCAP_UNITS = 3  # units (build(0), build(1), ...) of each case in its pcap
NODE_STATES = ("owner", "none")


def pcap(frames):
    """A classic pcap file (little-endian, microseconds, LINKTYPE_ETHERNET)
    of `frames`, each stamped with its index in microseconds since the epoch
    so that the file depends on nothing but the frames."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for k, f in enumerate(frames):
        out.append(struct.pack("<IIII", 0, k, len(f), len(f)) + f)
    return b"".join(out)


def offline_counters(name, counter, mode, offline):
    """The counter one node raises for each frame of the case, per node state."""
    if mode == "sum" and "none" not in offline:
        raise SystemExit(f"{name}: a 'sum' case must say what a node holding no bucket counts (offline)")
    unknown = set(offline) - set(NODE_STATES)
    if unknown:
        raise SystemExit(f"{name}: unknown node states {sorted(unknown)}")
    return {state: offline.get(state, counter) for state in NODE_STATES}


def write_fixtures(d):
    """DIR/NAME.pcap for every case and DIR/expected.tsv. Any other .pcap or
    .tsv file in DIR (a case renamed or gone) is removed."""
    os.makedirs(d, exist_ok=True)
    rows = []
    written = {"expected.tsv"}
    for name, counter, mode, build, offline in case_list():
        frames = []
        for i in range(PCAP_UNITS):
            u = build(i)
            frames.extend(u if isinstance(u, list) else [u])
        file = name + ".pcap"
        with open(os.path.join(d, file), "wb") as out:
            out.write(pcap(frames))
        written.add(file)
        by_state = offline_counters(name, counter, mode, offline)
        rows.append((name, file, len(frames), *(by_state[s] for s in NODE_STATES), len(frames), counter, mode))
    for f in os.listdir(d):
        if f not in written and (f.endswith(".pcap") or f.endswith(".tsv")):
            os.remove(os.path.join(d, f))
    with open(os.path.join(d, "expected.tsv"), "w") as out:
        out.write(
            "# Generated by `tests/hostile.py pcap DIR`: do not edit; regenerate and commit\n"
            "# (tests/fixtures_current.sh checks that these files are current).\n"
            "# One node of the test cluster (node1: MAC 02:00:00:00:00:21, its TAP on the same\n"
            "# MAC; cluster MAC 02:5e:00:00:01:00; VIPs 192.0.2.100 and 2001:db8::100, TCP 80,\n"
            "# UDP 53) decides the frames of FILE by itself, twice: holding every bucket,\n"
            "# settled as static shares hold them, it must count `count` of them in the\n"
            "# counter `owner`; holding no bucket, in `none`; and nothing in any other counter.\n"
            "# ns_counter and ns_mode: how tests/ns_hostile.sh judges the case across the\n"
            "# nodes of the namespace cluster (tests/hostile.py, \"Each case\").\n"
        )
        out.write("case\tfile\tframes\t" + "\t".join(NODE_STATES) + "\tcount\tns_counter\tns_mode\n")
        for r in rows:
            out.write("\t".join(map(str, r)) + "\n")


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    c = sub.add_parser("cases")
    c.add_argument("--nodes", type=int, required=True)
    c.add_argument("--count", type=int, default=20)
    c.add_argument("--only", default="", help="only these cases (comma-separated)")
    c.add_argument("--skip", default="", help="all cases but these")
    c.add_argument("--iface", default="eth0")
    f = sub.add_parser("flood")
    f.add_argument("--count", type=int, default=200000)
    f.add_argument("--seconds", type=float, default=20)
    f.add_argument("--rate", type=int, default=10000, help="SYNs per second after the burst, 0 for as fast as possible")
    f.add_argument("--burst", type=int, default=0, help="SYNs sent first as fast as possible")
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--iface", default="eth0")
    d = sub.add_parser("dump", help="write each case's first frame to DIR/NAME (for offline checks)")
    d.add_argument("dir")
    x = sub.add_parser("pcap", help="write every case's frames and expected counters to DIR (offline fixtures)")
    x.add_argument("dir")
    r = sub.add_parser("rss")
    r.add_argument("pid", type=int)
    a = ap.parse_args()
    if a.cmd == "list":
        for name, counter, mode, _, _ in case_list():
            print(f"{name:36} {counter:28} {mode}")
    elif a.cmd == "cases":
        run_cases(a)
    elif a.cmd == "flood":
        flood(a)
    elif a.cmd == "dump":
        os.makedirs(a.dir, exist_ok=True)
        for name, counter, _, build, _ in case_list():
            u = build(0)
            for k, f in enumerate(u if isinstance(u, list) else [u]):
                with open(os.path.join(a.dir, name + ("" if k == 0 else f".{k}")), "wb") as out:
                    out.write(f)
    elif a.cmd == "pcap":
        write_fixtures(a.dir)
    elif a.cmd == "rss":
        print(rss(a.pid))


if __name__ == "__main__":
    sys.exit(main())
