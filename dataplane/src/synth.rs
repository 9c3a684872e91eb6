//! Synthetic frames, with correct lengths and checksums, for tests, the
//! fuzzers' seeds, the traffic generator and the benchmarks; the example
//! node's addresses and [`classifier`]; and [`TestBuf`], a fixed-size frame
//! buffer that stands in for an mbuf.

use crate::addr::{Addr, Mac};
use crate::classify::{Classifier, NodeAddresses, Vip};
use crate::packet::{checksum, ethertype, ones_sum, proto};
use crate::rules::{Affinity, PortMode, PortRule};

/// The node's MAC in examples.
pub const NODE_MAC: Mac = Mac([0x02, 0x00, 0x00, 0x00, 0x00, 0x21]);
/// The kernel's MAC behind the exception port in examples.
pub const KERNEL_MAC: Mac = Mac([0x02, 0x00, 0x00, 0x00, 0xfe, 0x21]);
/// The cluster MAC in examples.
pub const CLUSTER_MAC: Mac = Mac([0x02, 0x5e, 0x00, 0x00, 0x01, 0x00]);
/// A client's MAC in examples.
pub const CLIENT_MAC: Mac = Mac([0x02, 0x00, 0x00, 0x00, 0x00, 0x10]);
/// A client's IPv4 address in examples.
pub const CLIENT_V4: [u8; 4] = [192, 0, 2, 10];
/// The IPv4 VIP in examples.
pub const V4_VIP: [u8; 4] = [192, 0, 2, 100];
/// A client's IPv6 address in examples.
pub const V6_CLIENT: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
/// The IPv6 VIP in examples.
pub const V6_VIP: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00];

/// A frame in a 2 KiB buffer.
pub type TestBuf = crate::classify::FrameBuf;

/// The example node's TCP port with client affinity.
pub const PORT_CLIENT: u16 = 8081;
/// The example node's TCP port with network affinity.
pub const PORT_NETWORK: u16 = 8082;
/// The example node's TCP port served by a single host.
pub const PORT_SINGLE: u16 = 8083;
/// The example node's disabled TCP and UDP port.
pub const PORT_DISABLED: u16 = 8084;
/// The example node's UDP port with client affinity.
pub const UDP_PORT_CLIENT: u16 = 5353;

/// The example node's port rules (see [`crate::rules`]): TCP
/// [`PORT_CLIENT`], [`PORT_NETWORK`], [`PORT_SINGLE`], TCP and UDP
/// [`PORT_DISABLED`], UDP [`UDP_PORT_CLIENT`].
pub fn port_rules() -> Vec<PortRule> {
    let rule = |port: u16, tcp: bool, udp: bool, mode: PortMode| PortRule {
        first: port,
        last: port,
        tcp,
        udp,
        mode,
    };
    vec![
        rule(PORT_CLIENT, true, false, PortMode::Shared(Affinity::Client)),
        rule(PORT_NETWORK, true, false, PortMode::Shared(Affinity::Network)),
        rule(PORT_SINGLE, true, false, PortMode::Single),
        rule(PORT_DISABLED, true, true, PortMode::Disabled),
        rule(UDP_PORT_CLIENT, false, true, PortMode::Shared(Affinity::Client)),
    ]
}

/// The example node's addresses: [`NODE_MAC`], [`KERNEL_MAC`] behind its
/// exception port, [`CLUSTER_MAC`], and both VIPs serving TCP 80 and UDP 53
/// with the 4-tuple, and the ports of [`port_rules`].
pub fn node_addresses() -> NodeAddresses {
    NodeAddresses {
        node_mac: NODE_MAC,
        kernel_mac: KERNEL_MAC,
        cluster_mac: CLUSTER_MAC,
        vips: vec![
            Vip::with_rules(Addr::V4(V4_VIP), &[80], &[53], &port_rules()),
            Vip::with_rules(Addr::V6(V6_VIP), &[80], &[53], &port_rules()),
        ],
    }
}

/// The example node's classifier ([`node_addresses`]).
pub fn classifier() -> Classifier {
    Classifier::new(node_addresses())
}

fn ethernet(dst: Mac, src: Mac, ether_type: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

fn l4_checksum(src: &[u8], dst: &[u8], protocol: u8, l4: &[u8]) -> u16 {
    let mut acc = ones_sum(0, src);
    acc = ones_sum(acc, dst);
    acc = ones_sum(acc, &(l4.len() as u32).to_be_bytes());
    acc = ones_sum(acc, &[0, 0, 0, protocol]);
    acc = ones_sum(acc, l4);
    let sum = !(acc as u16);
    if sum == 0 && protocol == proto::UDP {
        0xffff
    } else {
        sum
    }
}

fn ipv4(dst_mac: Mac, src: [u8; 4], dst: [u8; 4], protocol: u8, mut l4: Vec<u8>, csum_at: Option<usize>) -> Vec<u8> {
    if let Some(at) = csum_at {
        let sum = l4_checksum(&src, &dst, protocol, &l4);
        l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    let mut f = ethernet(dst_mac, CLIENT_MAC, ethertype::IPV4);
    let total = (20 + l4.len()) as u16;
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6] = 0x40; // don't fragment
    h[8] = 64;
    h[9] = protocol;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(&l4);
    pad(f)
}

fn ipv6(
    dst_mac: Mac,
    src: [u8; 16],
    dst: [u8; 16],
    next: u8,
    hop_limit: u8,
    mut l4: Vec<u8>,
    csum_at: Option<usize>,
) -> Vec<u8> {
    if let Some(at) = csum_at {
        let sum = l4_checksum(&src, &dst, next, &l4);
        l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    let mut f = ethernet(dst_mac, CLIENT_MAC, ethertype::IPV6);
    let mut h = [0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    f.extend_from_slice(&h);
    f.extend_from_slice(&l4);
    pad(f)
}

/// Pads to the Ethernet minimum of 60 bytes (without FCS).
fn pad(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

fn tcp_segment(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&0x1000_0000u32.to_be_bytes());
    if flags & 0x10 != 0 {
        t[8..12].copy_from_slice(&0x2000_0000u32.to_be_bytes());
    }
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(payload);
    t
}

fn udp_datagram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// An IP address family of the frame builders: the address bytes ([u8; 4]
/// or [u8; 16]) pick the IP header, so one builder serves both.
pub trait Family: Copy {
    /// Bytes of Ethernet, IP and TCP headers (no options): the smallest
    /// TCP frame of the family.
    const TCP_HEADERS: usize;

    /// An Ethernet frame from [`CLIENT_MAC`] to `dst_mac` with an IP packet
    /// of `protocol` from `src` to `dst` carrying `l4`, its L4 checksum
    /// written at `csum_at` when given.
    fn frame(dst_mac: Mac, src: Self, dst: Self, protocol: u8, l4: Vec<u8>, csum_at: Option<usize>) -> Vec<u8>;
}

impl Family for [u8; 4] {
    const TCP_HEADERS: usize = TCP4_HEADERS;

    fn frame(dst_mac: Mac, src: Self, dst: Self, protocol: u8, l4: Vec<u8>, csum_at: Option<usize>) -> Vec<u8> {
        ipv4(dst_mac, src, dst, protocol, l4, csum_at)
    }
}

impl Family for [u8; 16] {
    const TCP_HEADERS: usize = TCP6_HEADERS;

    fn frame(dst_mac: Mac, src: Self, dst: Self, protocol: u8, l4: Vec<u8>, csum_at: Option<usize>) -> Vec<u8> {
        ipv6(dst_mac, src, dst, protocol, 64, l4, csum_at)
    }
}

/// A TCP segment to the cluster MAC, over IPv4 or IPv6 as the addresses
/// are ([`tcp4`], [`tcp6`]).
pub fn tcp<A: Family>(src: A, sport: u16, dst: A, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_payload_to(CLUSTER_MAC, src, sport, dst, dport, flags, payload)
}

/// A TCP segment without payload to `dst_mac` ([`tcp4_to`], [`tcp6_to`]).
pub fn tcp_to<A: Family>(dst_mac: Mac, src: A, sport: u16, dst: A, dport: u16, flags: u8) -> Vec<u8> {
    tcp_payload_to(dst_mac, src, sport, dst, dport, flags, b"")
}

/// A TCP segment with `payload` to `dst_mac` ([`tcp4_payload_to`],
/// [`tcp6_payload_to`]).
pub fn tcp_payload_to<A: Family>(
    dst_mac: Mac,
    src: A,
    sport: u16,
    dst: A,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    A::frame(
        dst_mac,
        src,
        dst,
        proto::TCP,
        tcp_segment(sport, dport, flags, payload),
        Some(16),
    )
}

/// A TCP segment to `dst_mac` carrying as much payload as makes the frame
/// `len` bytes long (without FCS; never shorter than the headers or the
/// Ethernet minimum of 60 bytes) ([`tcp4_sized_to`], [`tcp6_sized_to`]).
pub fn tcp_sized_to<A: Family>(dst_mac: Mac, src: A, sport: u16, dst: A, dport: u16, flags: u8, len: usize) -> Vec<u8> {
    let payload = vec![0x5a; len.saturating_sub(A::TCP_HEADERS)];
    tcp_payload_to(dst_mac, src, sport, dst, dport, flags, &payload)
}

/// A TCP/IPv4 segment without payload from the example client's `port`
/// to port 80 of the IPv4 VIP, to the cluster MAC.
pub fn to_vip4(port: u16, flags: u8) -> Vec<u8> {
    tcp_to(CLUSTER_MAC, CLIENT_V4, port, V4_VIP, 80, flags)
}

// The names by family that the tests, fuzzers and benchmarks call.
pub use tcp as tcp4;
pub use tcp as tcp6;
pub use tcp_payload_to as tcp4_payload_to;
pub use tcp_payload_to as tcp6_payload_to;
pub use tcp_sized_to as tcp4_sized_to;
pub use tcp_sized_to as tcp6_sized_to;
pub use tcp_to as tcp4_to;
pub use tcp_to as tcp6_to;

/// A UDP/IPv4 datagram to the cluster MAC.
pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    udp4_payload_to(CLUSTER_MAC, src, sport, dst, dport, payload)
}

/// A UDP/IPv4 datagram with a small payload to `dst_mac`.
pub fn udp4_to(dst_mac: Mac, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    udp4_payload_to(dst_mac, src, sport, dst, dport, b"query")
}

fn udp4_payload_to(dst_mac: Mac, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    ipv4(
        dst_mac,
        src,
        dst,
        proto::UDP,
        udp_datagram(sport, dport, payload),
        Some(6),
    )
}

/// An ICMP echo request to `dst_mac`.
pub fn icmp4_echo_to(dst_mac: Mac, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    m.extend_from_slice(b"ping");
    let sum = checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv4(dst_mac, src, dst, proto::ICMP, m, None)
}

/// An ICMP "fragmentation needed" from `router` about a TCP segment the VIP
/// sent from `vip:vport` to `client:cport`.
pub fn icmp4_frag_needed_to(
    dst_mac: Mac,
    router: [u8; 4],
    vip: [u8; 4],
    vport: u16,
    client: [u8; 4],
    cport: u16,
) -> Vec<u8> {
    let quoted = tcp4_to(CLIENT_MAC, vip, vport, client, cport, 0x10);
    let mut m = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
    m.extend_from_slice(&quoted[14..14 + 28]);
    let sum = checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv4(dst_mac, router, vip, proto::ICMP, m, None)
}

/// A broadcast ARP request from `sender` (`spa`) for `tpa`.
pub fn arp_request(sender: Mac, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = ethernet(Mac::BROADCAST, sender, ethertype::ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sender.0);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    pad(f)
}

/// A neighbour solicitation from `src_mac`/`src` for `target`, to the
/// target's solicited-node multicast group, with or without the source
/// link-layer address option.
pub fn neighbour_solicit(src_mac: Mac, src: [u8; 16], target: [u8; 16], with_slla: bool) -> Vec<u8> {
    let mut group = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0, 0, 0];
    group[13..16].copy_from_slice(&target[13..16]);
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target);
    if with_slla {
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&src_mac.0);
    }
    let dst_mac = Mac([0x33, 0x33, 0xff, target[13], target[14], target[15]]);
    let mut f = ipv6(dst_mac, src, group, proto::ICMPV6, 255, m, Some(2));
    f[6..12].copy_from_slice(&src_mac.0);
    f
}

/// A TCP/IPv6 SYN to the VIP behind a chain of extension headers, each
/// `(type, length in bytes)`.
pub fn tcp6_with_ext(chain: &[(u8, usize)], flags: u8) -> Vec<u8> {
    let tcp = tcp_segment(40000, 80, flags, b"");
    let mut body = Vec::new();
    for (i, (_, len)) in chain.iter().enumerate() {
        let next = chain.get(i + 1).map(|(t, _)| *t).unwrap_or(proto::TCP);
        let mut h = vec![0u8; *len];
        h[0] = next;
        h[1] = (*len / 8 - 1) as u8;
        body.extend_from_slice(&h);
    }
    body.extend_from_slice(&tcp);
    let first = chain.first().map(|(t, _)| *t).unwrap_or(proto::TCP);
    ipv6(CLUSTER_MAC, V6_CLIENT, V6_VIP, first, 64, body, None)
}

/// A later IPv6 fragment (offset in 8-byte units) to the VIP.
pub fn ipv6_fragment(offset: u16) -> Vec<u8> {
    let mut body = vec![proto::TCP, 0, 0, 0, 0, 0, 0, 1];
    body[2..4].copy_from_slice(&(offset << 3).to_be_bytes());
    body.extend_from_slice(&[0xaa; 16]);
    ipv6(CLUSTER_MAC, V6_CLIENT, V6_VIP, 44, 64, body, None)
}

/// `frame` with a VLAN tag inserted after the MAC addresses.
pub fn add_vlan(frame: &[u8], id: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&ethertype::VLAN.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// Sets the IPv4 "more fragments" flag and fixes the header checksum.
pub fn set_ipv4_more_fragments(frame: &mut [u8]) {
    frame[14 + 6] = 0x20;
    frame[14 + 10] = 0;
    frame[14 + 11] = 0;
    let sum = checksum(&frame[14..34]);
    frame[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
}

/// A small xorshift generator for the randomised tests and the
/// benchmarks' shuffles: one seed, one sequence.
pub struct Rng(pub u64);

impl Rng {
    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One of `from`.
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
}

/// Bytes of Ethernet, IPv4 and TCP headers (no options): the smallest TCP/IPv4 frame.
pub const TCP4_HEADERS: usize = 14 + 20 + 20;
/// Bytes of Ethernet, IPv6 and TCP headers (no options): the smallest TCP/IPv6 frame.
pub const TCP6_HEADERS: usize = 14 + 40 + 20;
