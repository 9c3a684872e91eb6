//! Zero-copy parsing of the frames a node sees: Ethernet (with up to two
//! VLAN tags), ARP, IPv4, IPv6 (with its extension-header chain), TCP, UDP,
//! ICMP and ICMPv6.
//!
//! [`parse`] checks every length up front and returns a small [`Frame`]
//! summary of offsets and header fields; after it succeeded, nothing that
//! reads the frame through the summary can index out of bounds. Errors are a
//! plain `Copy` enum, counted by the caller, never allocated.

pub use crate::addr::{Addr, Mac};
use crate::header::{self, ethernet, icmp, ipv4, ipv6, tcp, udp, vlan};
pub use crate::header::{checksum, ethertype, ones_sum, proto, tcp_flags};

/// Why a frame could not be parsed. Each variant is a drop counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum ParseError {
    /// Shorter than an Ethernet header, or than the header a field announced.
    Truncated,
    /// More than two VLAN tags.
    TooManyVlans,
    /// An ARP packet that is not Ethernet/IPv4.
    BadArp,
    /// IPv4 version, header length or total length is wrong.
    BadIpv4Header,
    /// IPv4 header checksum does not verify.
    BadIpv4Checksum,
    /// IPv6 version or payload length is wrong.
    BadIpv6Header,
    /// An IPv6 extension header chain that is malformed or too long.
    BadIpv6Extension,
    /// TCP data offset is wrong or the header does not fit.
    BadTcpHeader,
    /// UDP length is wrong.
    BadUdpHeader,
}

impl ParseError {
    /// Every variant, in counter order.
    pub const ALL: [ParseError; 9] = [
        ParseError::Truncated,
        ParseError::TooManyVlans,
        ParseError::BadArp,
        ParseError::BadIpv4Header,
        ParseError::BadIpv4Checksum,
        ParseError::BadIpv6Header,
        ParseError::BadIpv6Extension,
        ParseError::BadTcpHeader,
        ParseError::BadUdpHeader,
    ];

    /// A short snake_case name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            ParseError::Truncated => "truncated",
            ParseError::TooManyVlans => "too_many_vlans",
            ParseError::BadArp => "bad_arp",
            ParseError::BadIpv4Header => "bad_ipv4_header",
            ParseError::BadIpv4Checksum => "bad_ipv4_checksum",
            ParseError::BadIpv6Header => "bad_ipv6_header",
            ParseError::BadIpv6Extension => "bad_ipv6_extension",
            ParseError::BadTcpHeader => "bad_tcp_header",
            ParseError::BadUdpHeader => "bad_udp_header",
        }
    }
}

/// ARP constants (the field offsets are [`crate::header::arp::field`]).
pub mod arp {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const LEN: usize = 28;
    /// ARP request
    pub const REQUEST: u16 = 1;
    /// ARP reply
    pub const REPLY: u16 = 2;
}

/// The fields of an Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Arp {
    /// Operation (1 request, 2 reply).
    pub oper: u16,
    /// Sender hardware address.
    pub sha: Mac,
    /// Sender protocol address.
    pub spa: [u8; 4],
    /// Target hardware address.
    pub tha: Mac,
    /// Target protocol address.
    pub tpa: [u8; 4],
}

/// Layer 4 of an IP packet, as far as we need it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum L4 {
    /// TCP with ports and flags.
    Tcp {
        /// Source port
        src_port: u16,
        /// Destination port
        dst_port: u16,
        /// Flag byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR)
        flags: u8,
    },
    /// UDP with ports.
    Udp {
        /// Source port
        src_port: u16,
        /// Destination port
        dst_port: u16,
    },
    /// ICMP or ICMPv6 with type and code.
    Icmp {
        /// ICMP type
        kind: u8,
        /// ICMP code
        code: u8,
    },
    /// A fragment that is not the first one: no layer 4 header in it.
    Fragment,
    /// Another protocol, or a first fragment too short for its L4 header.
    Other(u8),
}

/// An IP packet's header fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ip {
    /// Source address
    pub src: Addr,
    /// Destination address
    pub dst: Addr,
    /// Offset of the L4 header in the frame
    pub l4_offset: u16,
    /// Offset one past the IP packet's last byte in the frame (the frame may
    /// carry Ethernet padding after it)
    pub end: u16,
    /// Final protocol number (after IPv6 extension headers)
    pub proto: u8,
    /// This packet is a fragment (first or later)
    pub fragment: bool,
    /// IPv4 TTL or IPv6 hop limit
    pub hop_limit: u8,
    /// Layer 4
    pub l4: L4,
}

/// What the frame carries above Ethernet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Payload {
    /// Ethernet/IPv4 ARP
    Arp(Arp),
    /// IPv4
    Ipv4(Ip),
    /// IPv6
    Ipv6(Ip),
    /// Any other EtherType
    Other(u16),
}

/// The summary of a parsed frame. Offsets index the frame it came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Frame {
    /// Destination MAC
    pub dst: Mac,
    /// Source MAC
    pub src: Mac,
    /// Offset of the layer 3 header (after VLAN tags)
    pub l3_offset: u16,
    /// Number of VLAN tags seen (0 to 2)
    pub vlans: u8,
    /// Above Ethernet
    pub payload: Payload,
}

/// Parses a frame. See the module documentation.
pub fn parse(frame: &[u8]) -> Result<Frame, ParseError> {
    // Offsets are u16: never look past 64 KiB (an mbuf segment holds less).
    let frame = &frame[..frame.len().min(usize::from(u16::MAX))];
    let eth = ethernet::Header::new_checked(frame).ok_or(ParseError::Truncated)?;
    let mut ether_type = eth.ethertype();
    let mut off = ethernet::Header::<&[u8]>::LEN;
    let mut vlans = 0u8;
    while ether_type == ethertype::VLAN || ether_type == ethertype::QINQ {
        if vlans == 2 {
            return Err(ParseError::TooManyVlans);
        }
        let tag = vlan::Tag::new_checked(&frame[off..]).ok_or(ParseError::Truncated)?;
        ether_type = tag.ethertype();
        off += vlan::Tag::<&[u8]>::LEN;
        vlans += 1;
    }
    let payload = match ether_type {
        ethertype::ARP => Payload::Arp(parse_arp(&frame[off..])?),
        ethertype::IPV4 => Payload::Ipv4(parse_ipv4(frame, off)?),
        ethertype::IPV6 => Payload::Ipv6(parse_ipv6(frame, off)?),
        other => Payload::Other(other),
    };
    Ok(Frame {
        dst: eth.dst(),
        src: eth.src(),
        l3_offset: off as u16,
        vlans,
        payload,
    })
}

fn parse_arp(b: &[u8]) -> Result<Arp, ParseError> {
    let a = header::arp::Packet::new_checked(b).ok_or(ParseError::Truncated)?;
    if !a.is_ethernet_ipv4() {
        return Err(ParseError::BadArp);
    }
    Ok(Arp {
        oper: a.oper(),
        sha: a.sha(),
        spa: a.spa(),
        tha: a.tha(),
        tpa: a.tpa(),
    })
}

fn parse_ipv4(frame: &[u8], off: usize) -> Result<Ip, ParseError> {
    let b = &frame[off..];
    let h = ipv4::Header::new_checked(b).ok_or(ParseError::Truncated)?;
    if h.version() != 4 {
        return Err(ParseError::BadIpv4Header);
    }
    let ihl = h.header_len();
    let total = h.total_len();
    if ihl < ipv4::Header::<&[u8]>::LEN || total < ihl {
        return Err(ParseError::BadIpv4Header);
    }
    if total > b.len() {
        return Err(ParseError::Truncated);
    }
    if checksum(&b[..ihl]) != 0 {
        return Err(ParseError::BadIpv4Checksum);
    }
    let frag = h.fragment();
    let more_fragments = frag & ipv4::MORE_FRAGMENTS != 0;
    let frag_offset = frag & ipv4::OFFSET_MASK;
    let proto = h.protocol();
    let l4_offset = off + ihl;
    let end = off + total;
    let l4 = if frag_offset != 0 {
        L4::Fragment
    } else {
        parse_l4(&frame[l4_offset..end], proto)?
    };
    Ok(Ip {
        src: Addr::V4(h.src()),
        dst: Addr::V4(h.dst()),
        l4_offset: l4_offset as u16,
        end: end as u16,
        proto,
        fragment: more_fragments || frag_offset != 0,
        hop_limit: h.ttl(),
        l4,
    })
}

/// The longest IPv6 extension-header chain we walk before giving up.
const MAX_IPV6_EXTENSIONS: usize = 8;

fn parse_ipv6(frame: &[u8], off: usize) -> Result<Ip, ParseError> {
    use ipv6::ext;
    let b = &frame[off..];
    let h = ipv6::Header::new_checked(b).ok_or(ParseError::Truncated)?;
    if h.version() != 6 {
        return Err(ParseError::BadIpv6Header);
    }
    let fixed = ipv6::Header::<&[u8]>::LEN;
    if fixed + h.payload_len() > b.len() {
        return Err(ParseError::Truncated);
    }
    let end = off + fixed + h.payload_len();
    let mut next = h.next_header();
    let mut at = off + fixed;
    let mut fragment = false;
    let mut later_fragment = false;
    let mut walked = 0;
    loop {
        let ext_len = match next {
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTIONS => {
                if at + 2 > end {
                    return Err(ParseError::BadIpv6Extension);
                }
                (usize::from(frame[at + ext::LEN]) + 1) * 8
            }
            ext::FRAGMENT => {
                if at + ext::FRAGMENT_LEN > end {
                    return Err(ParseError::BadIpv6Extension);
                }
                fragment = true;
                let o = &frame[at + ext::FRAGMENT_OFFSET.start..at + ext::FRAGMENT_OFFSET.end];
                if u16::from_be_bytes([o[0], o[1]]) >> 3 != 0 {
                    later_fragment = true;
                }
                ext::FRAGMENT_LEN
            }
            ext::AUTH => {
                if at + 2 > end {
                    return Err(ParseError::BadIpv6Extension);
                }
                (usize::from(frame[at + ext::LEN]) + 2) * 4
            }
            _ => break,
        };
        walked += 1;
        if walked > MAX_IPV6_EXTENSIONS || at + ext_len > end {
            return Err(ParseError::BadIpv6Extension);
        }
        next = frame[at + ext::NEXT_HEADER];
        at += ext_len;
        if later_fragment {
            break;
        }
    }
    let l4 = if later_fragment {
        L4::Fragment
    } else {
        parse_l4(&frame[at..end], next)?
    };
    Ok(Ip {
        src: Addr::V6(h.src()),
        dst: Addr::V6(h.dst()),
        l4_offset: at as u16,
        end: end as u16,
        proto: next,
        fragment,
        hop_limit: h.hop_limit(),
        l4,
    })
}

/// Layer 4 of `b`, the IP packet's bytes from its transport header to its
/// end.
fn parse_l4(b: &[u8], proto: u8) -> Result<L4, ParseError> {
    Ok(match proto {
        proto::TCP => {
            let t = tcp::Header::new_checked(b).ok_or(ParseError::BadTcpHeader)?;
            let data_offset = t.header_len();
            if data_offset < tcp::Header::<&[u8]>::LEN || data_offset > b.len() {
                return Err(ParseError::BadTcpHeader);
            }
            L4::Tcp {
                src_port: t.src_port(),
                dst_port: t.dst_port(),
                flags: t.flags(),
            }
        }
        proto::UDP => {
            let u = udp::Header::new_checked(b).ok_or(ParseError::BadUdpHeader)?;
            if u.length() < udp::Header::<&[u8]>::LEN || u.length() > b.len() {
                return Err(ParseError::BadUdpHeader);
            }
            L4::Udp {
                src_port: u.src_port(),
                dst_port: u.dst_port(),
            }
        }
        proto::ICMP | proto::ICMPV6 => match icmp::Header::new_checked(b) {
            Some(i) => L4::Icmp {
                kind: i.kind(),
                code: i.code(),
            },
            None => L4::Other(proto),
        },
        other => L4::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::*;

    #[test]
    fn parses_tcp_syn_over_ipv4() {
        let f = tcp4([192, 0, 2, 10], 40000, [192, 0, 2, 100], 80, tcp_flags::SYN, b"");
        let p = parse(&f).unwrap();
        assert_eq!(p.l3_offset, 14);
        match p.payload {
            Payload::Ipv4(ip) => {
                assert_eq!(ip.src, Addr::V4([192, 0, 2, 10]));
                assert_eq!(ip.dst, Addr::V4([192, 0, 2, 100]));
                assert_eq!(
                    ip.l4,
                    L4::Tcp {
                        src_port: 40000,
                        dst_port: 80,
                        flags: tcp_flags::SYN
                    }
                );
                assert!(!ip.fragment);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_truncation_of_a_valid_frame_is_an_error_not_a_panic() {
        let frames = [
            tcp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 80, tcp_flags::ACK, b"hello"),
            tcp6(V6_CLIENT, 1, V6_VIP, 80, tcp_flags::SYN, b""),
            udp4([1, 2, 3, 4], 53, [5, 6, 7, 8], 53, b"q"),
            arp_request(CLIENT_MAC, [192, 0, 2, 10], [192, 0, 2, 100]),
        ];
        for f in frames {
            assert!(parse(&f).is_ok());
            for cut in 0..f.len() {
                // Shorter frames either fail cleanly or (Ethernet padding)
                // parse; they never panic.
                let _ = parse(&f[..cut]);
            }
            assert!(parse(&f[..13]).is_err());
        }
    }

    #[test]
    fn rejects_bad_ipv4_checksum_and_header_length() {
        let mut f = tcp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 80, tcp_flags::SYN, b"");
        f[14 + 10] ^= 0xff;
        assert_eq!(parse(&f), Err(ParseError::BadIpv4Checksum));
        let mut f = tcp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 80, tcp_flags::SYN, b"");
        f[14] = 0x44; // IHL 16 bytes
        assert_eq!(parse(&f), Err(ParseError::BadIpv4Header));
        let mut f = tcp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 80, tcp_flags::SYN, b"");
        f[14 + 12 + 20] = 0x20; // TCP data offset 8 bytes
        assert_eq!(parse(&f), Err(ParseError::BadTcpHeader));
    }

    #[test]
    fn walks_ipv6_extension_headers_and_marks_fragments() {
        // Hop-by-hop (8 bytes) then TCP.
        let f = tcp6_with_ext(&[(0, 8)], tcp_flags::SYN);
        match parse(&f).unwrap().payload {
            Payload::Ipv6(ip) => {
                assert_eq!(ip.proto, proto::TCP);
                assert_eq!(ip.l4_offset, 14 + 40 + 8);
                assert!(matches!(ip.l4, L4::Tcp { dst_port: 80, .. }));
            }
            other => panic!("{other:?}"),
        }
        // A later fragment has no ports.
        let f = ipv6_fragment(1);
        match parse(&f).unwrap().payload {
            Payload::Ipv6(ip) => {
                assert!(ip.fragment);
                assert_eq!(ip.l4, L4::Fragment);
            }
            other => panic!("{other:?}"),
        }
        // Nine hop-by-hop headers are too many.
        let chain: Vec<(u8, usize)> = (0..9).map(|_| (60, 8)).collect();
        assert_eq!(
            parse(&tcp6_with_ext(&chain, tcp_flags::SYN)),
            Err(ParseError::BadIpv6Extension)
        );
    }

    #[test]
    fn vlan_tags_are_skipped_up_to_two() {
        let inner = tcp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 80, tcp_flags::SYN, b"");
        let one = add_vlan(&inner, 10);
        assert_eq!(parse(&one).unwrap().l3_offset, 18);
        let two = add_vlan(&one, 20);
        assert_eq!(parse(&two).unwrap().vlans, 2);
        assert_eq!(parse(&add_vlan(&two, 30)), Err(ParseError::TooManyVlans));
    }

    #[test]
    fn mac_parse_round_trips() {
        let m = Mac::parse("02:00:5e:00:01:64").unwrap();
        assert_eq!(m.to_string(), "02:00:5e:00:01:64");
        assert!(Mac::parse("02:00:5e:00:01").is_none());
        assert!(Mac::parse("02:00:5e:00:01:64:00").is_none());
        assert!(Mac::parse("zz:00:5e:00:01:64").is_none());
        assert!(Mac::BROADCAST.is_group());
        assert!(!m.is_group());
    }

    #[test]
    fn offsets_stay_inside_frames_longer_than_64_kib() {
        // Found writing the packet_parse fuzz target (fuzz/), reproduced with
        // it: a 65,557-byte frame, two VLAN tags and a 65,535-byte IPv4
        // packet, parsed with `end` wrapped to 21 by the u16 offsets, below
        // `l4_offset`. Unreachable from a node (an mbuf segment holds less
        // than 64 KiB; chained mbufs are dropped), but parse promises safe
        // offsets for any slice.
        let mut f = add_vlan(&add_vlan(&udp4([192, 0, 2, 10], 1, [192, 0, 2, 100], 53, b""), 1), 2);
        f.truncate(22 + 20);
        f[22 + 2..22 + 4].copy_from_slice(&u16::MAX.to_be_bytes());
        f[22 + 9] = 99;
        f[22 + 10..22 + 12].fill(0);
        let sum = checksum(&f[22..42]);
        f[22 + 10..22 + 12].copy_from_slice(&sum.to_be_bytes());
        f.resize(22 + usize::from(u16::MAX), 0);
        assert_eq!(parse(&f), Err(ParseError::Truncated));
        // The largest packet that fits in 64 KiB still parses, offsets intact.
        let total = u16::MAX - 22;
        f[22 + 2..22 + 4].copy_from_slice(&total.to_be_bytes());
        f[22 + 10..22 + 12].fill(0);
        let sum = checksum(&f[22..42]);
        f[22 + 10..22 + 12].copy_from_slice(&sum.to_be_bytes());
        match parse(&f).unwrap().payload {
            Payload::Ipv4(ip) => {
                assert_eq!((ip.l4_offset, ip.end), (42, u16::MAX));
                assert_eq!(ip.l4, L4::Other(99));
            }
            other => panic!("{other:?}"),
        }
    }
}
