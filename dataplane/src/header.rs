//! Views of the headers synshare reads and writes, in the manner of
//! smoltcp's `wire` module: each header is a type over a byte buffer, its
//! fields at named offsets (`field::…`), read and written through methods.
//! No offset is written as a bare number anywhere else.
//!
//! A view is made with `new_checked`, which verifies only that the buffer
//! holds the fixed part of the header, so that every accessor is a plain
//! load at a constant offset (with one length check the compiler sees,
//! none per field). What the fields *mean* (a version, a length that must
//! fit, a checksum) is judged by the caller: [`crate::packet::parse`] for
//! the full parser, the fast path of [`crate::classify`], and the ICMP
//! error quoting, the three of them on the same views.
//!
//! The values those fields hold (EtherTypes, IP protocol numbers, TCP
//! flags) and the Internet checksum are here too, below the parser, which
//! re-exports them as [`crate::packet`]'s.

use crate::addr::{Addr, Mac};
use core::ops::Range;

/// A field's byte range in its header.
pub type Field = Range<usize>;

/// EtherTypes we look at.
pub mod ethertype {
    /// IPv4
    pub const IPV4: u16 = 0x0800;
    /// ARP
    pub const ARP: u16 = 0x0806;
    /// IPv6
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q VLAN tag
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag
    pub const QINQ: u16 = 0x88a8;
}

/// IP protocol numbers we look at.
pub mod proto {
    /// ICMP
    pub const ICMP: u8 = 1;
    /// TCP
    pub const TCP: u8 = 6;
    /// UDP
    pub const UDP: u8 = 17;
    /// ICMPv6
    pub const ICMPV6: u8 = 58;
}

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// ACK
    pub const ACK: u8 = 0x10;
}

/// Ones'-complement sum of `data` as big-endian 16-bit words, folded to 16
/// bits, not inverted. An odd last byte is padded with zero.
pub fn ones_sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The Internet checksum of `data` (RFC 1071), ready to store.
pub fn checksum(data: &[u8]) -> u16 {
    !(ones_sum(0, data) as u16)
}

#[inline(always)]
fn be16(b: &[u8], f: Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
}

#[inline(always)]
fn array<const N: usize>(b: &[u8], f: Field) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[f]);
    a
}

/// Declares a view type over `T: AsRef<[u8]>` whose fixed part is `$len`
/// bytes, with `new_checked`, `new_unchecked` and `payload`.
macro_rules! view {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name<T>(T);

        impl<T: AsRef<[u8]>> $name<T> {
            /// Bytes of the header's fixed part.
            pub const LEN: usize = $len;

            /// A view of `buf`, which holds at least the fixed part.
            #[inline(always)]
            pub fn new_checked(buf: T) -> Option<Self> {
                (buf.as_ref().len() >= Self::LEN).then_some($name(buf))
            }

            /// A view of `buf` without the length check: accessors panic
            /// (they never read out of bounds) on a buffer too short.
            #[inline(always)]
            pub fn new_unchecked(buf: T) -> Self {
                $name(buf)
            }

            /// What follows the fixed part.
            #[inline(always)]
            pub fn payload(&self) -> &[u8] {
                &self.0.as_ref()[Self::LEN..]
            }
        }
    };
}

/// Ethernet II.
pub mod ethernet {
    use super::*;

    /// Field offsets.
    pub mod field {
        use super::Field;
        /// Destination MAC.
        pub const DST: Field = 0..6;
        /// Source MAC.
        pub const SRC: Field = 6..12;
        /// EtherType (or a VLAN tag's TPID).
        pub const ETHERTYPE: Field = 12..14;
    }

    view!(
        /// An Ethernet II header (14 bytes), untagged or the outer part of
        /// a tagged one.
        Header,
        14
    );

    impl<T: AsRef<[u8]>> Header<T> {
        /// Destination MAC.
        #[inline(always)]
        pub fn dst(&self) -> Mac {
            Mac(array(self.0.as_ref(), field::DST))
        }
        /// Source MAC.
        #[inline(always)]
        pub fn src(&self) -> Mac {
            Mac(array(self.0.as_ref(), field::SRC))
        }
        /// EtherType.
        #[inline(always)]
        pub fn ethertype(&self) -> u16 {
            be16(self.0.as_ref(), field::ETHERTYPE)
        }
        /// The source's I/G bit (a source must never have it).
        #[inline(always)]
        pub fn src_is_group(&self) -> bool {
            self.0.as_ref()[field::SRC.start] & 1 != 0
        }
        /// The destination's I/G bit: a group (multicast or broadcast)
        /// address.
        #[inline(always)]
        pub fn dst_is_group(&self) -> bool {
            self.0.as_ref()[field::DST.start] & 1 != 0
        }
    }

    impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
        /// Sets the destination MAC.
        #[inline(always)]
        pub fn set_dst(&mut self, mac: Mac) {
            self.0.as_mut()[field::DST].copy_from_slice(&mac.0);
        }
        /// Sets the source MAC.
        #[inline(always)]
        pub fn set_src(&mut self, mac: Mac) {
            self.0.as_mut()[field::SRC].copy_from_slice(&mac.0);
        }
    }
}

/// An 802.1Q or 802.1ad tag, after the outer EtherType.
pub mod vlan {
    use super::*;

    /// Field offsets, from the tag's TCI.
    pub mod field {
        use super::Field;
        /// Priority, DEI and VLAN id.
        pub const TCI: Field = 0..2;
        /// The EtherType of what the tag carries.
        pub const ETHERTYPE: Field = 2..4;
    }

    view!(
        /// The four bytes of a VLAN tag that follow its TPID.
        Tag,
        4
    );

    impl<T: AsRef<[u8]>> Tag<T> {
        /// The inner EtherType.
        #[inline(always)]
        pub fn ethertype(&self) -> u16 {
            be16(self.0.as_ref(), field::ETHERTYPE)
        }
    }
}

/// ARP for Ethernet and IPv4.
pub mod arp {
    use super::*;

    /// Field offsets.
    pub mod field {
        use super::Field;
        /// Hardware type.
        pub const HTYPE: Field = 0..2;
        /// Protocol type.
        pub const PTYPE: Field = 2..4;
        /// Hardware address length.
        pub const HLEN: usize = 4;
        /// Protocol address length.
        pub const PLEN: usize = 5;
        /// Operation.
        pub const OPER: Field = 6..8;
        /// Sender hardware address.
        pub const SHA: Field = 8..14;
        /// Sender protocol address.
        pub const SPA: Field = 14..18;
        /// Target hardware address.
        pub const THA: Field = 18..24;
        /// Target protocol address.
        pub const TPA: Field = 24..28;
    }

    view!(
        /// An Ethernet/IPv4 ARP packet (28 bytes).
        Packet,
        28
    );

    impl<T: AsRef<[u8]>> Packet<T> {
        /// True for hardware Ethernet (6-byte addresses) and protocol IPv4
        /// (4-byte addresses), the only kind synshare reads.
        #[inline]
        pub fn is_ethernet_ipv4(&self) -> bool {
            let b = self.0.as_ref();
            be16(b, field::HTYPE) == 1
                && be16(b, field::PTYPE) == super::ethertype::IPV4
                && b[field::HLEN] == 6
                && b[field::PLEN] == 4
        }
        /// Operation (1 request, 2 reply).
        #[inline]
        pub fn oper(&self) -> u16 {
            be16(self.0.as_ref(), field::OPER)
        }
        /// Sender hardware address.
        #[inline]
        pub fn sha(&self) -> Mac {
            Mac(array(self.0.as_ref(), field::SHA))
        }
        /// Sender protocol address.
        #[inline]
        pub fn spa(&self) -> [u8; 4] {
            array(self.0.as_ref(), field::SPA)
        }
        /// Target hardware address.
        #[inline]
        pub fn tha(&self) -> Mac {
            Mac(array(self.0.as_ref(), field::THA))
        }
        /// Target protocol address.
        #[inline]
        pub fn tpa(&self) -> [u8; 4] {
            array(self.0.as_ref(), field::TPA)
        }
    }

    impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
        /// Sets the operation.
        pub fn set_oper(&mut self, oper: u16) {
            self.0.as_mut()[field::OPER].copy_from_slice(&oper.to_be_bytes());
        }
        /// Sets the sender's addresses.
        pub fn set_sender(&mut self, mac: Mac, ip: [u8; 4]) {
            let b = self.0.as_mut();
            b[field::SHA].copy_from_slice(&mac.0);
            b[field::SPA].copy_from_slice(&ip);
        }
        /// Sets the target's addresses.
        pub fn set_target(&mut self, mac: Mac, ip: [u8; 4]) {
            let b = self.0.as_mut();
            b[field::THA].copy_from_slice(&mac.0);
            b[field::TPA].copy_from_slice(&ip);
        }
        /// Sets the sender hardware address only.
        pub fn set_sha(&mut self, mac: Mac) {
            self.0.as_mut()[field::SHA].copy_from_slice(&mac.0);
        }
    }
}

/// IPv4.
pub mod ipv4 {
    use super::*;

    /// Field offsets.
    pub mod field {
        use super::Field;
        /// Version (high nibble) and header length in words (low nibble).
        pub const VERSION_IHL: usize = 0;
        /// Total length.
        pub const TOTAL_LEN: Field = 2..4;
        /// Flags and fragment offset.
        pub const FRAGMENT: Field = 6..8;
        /// Time to live.
        pub const TTL: usize = 8;
        /// Protocol.
        pub const PROTOCOL: usize = 9;
        /// Header checksum.
        pub const CHECKSUM: Field = 10..12;
        /// Source address.
        pub const SRC: Field = 12..16;
        /// Destination address.
        pub const DST: Field = 16..20;
        /// Source and destination together.
        pub const ADDRESSES: Field = 12..20;
    }

    /// The version/IHL byte of a header with no options.
    pub const VERSION_IHL_PLAIN: u8 = 0x45;
    /// Don't fragment.
    pub const DONT_FRAGMENT: u16 = 0x4000;
    /// More fragments.
    pub const MORE_FRAGMENTS: u16 = 0x2000;
    /// Fragment offset bits.
    pub const OFFSET_MASK: u16 = 0x1fff;

    view!(
        /// An IPv4 header's fixed 20 bytes (options, if any, follow).
        Header,
        20
    );

    impl<T: AsRef<[u8]>> Header<T> {
        /// Version.
        #[inline(always)]
        pub fn version(&self) -> u8 {
            self.0.as_ref()[field::VERSION_IHL] >> 4
        }
        /// The version/IHL byte.
        #[inline(always)]
        pub fn version_ihl(&self) -> u8 {
            self.0.as_ref()[field::VERSION_IHL]
        }
        /// Header length in bytes (IHL × 4).
        #[inline(always)]
        pub fn header_len(&self) -> usize {
            usize::from(self.0.as_ref()[field::VERSION_IHL] & 0x0f) * 4
        }
        /// Total length.
        #[inline(always)]
        pub fn total_len(&self) -> usize {
            usize::from(be16(self.0.as_ref(), field::TOTAL_LEN))
        }
        /// Flags and fragment offset.
        #[inline(always)]
        pub fn fragment(&self) -> u16 {
            be16(self.0.as_ref(), field::FRAGMENT)
        }
        /// Time to live.
        #[inline(always)]
        pub fn ttl(&self) -> u8 {
            self.0.as_ref()[field::TTL]
        }
        /// Protocol.
        #[inline(always)]
        pub fn protocol(&self) -> u8 {
            self.0.as_ref()[field::PROTOCOL]
        }
        /// Source address.
        #[inline(always)]
        pub fn src(&self) -> [u8; 4] {
            array(self.0.as_ref(), field::SRC)
        }
        /// Destination address.
        #[inline(always)]
        pub fn dst(&self) -> [u8; 4] {
            array(self.0.as_ref(), field::DST)
        }
        /// True when the fixed 20-byte header's checksum verifies (the
        /// ones'-complement sum of its words is all ones). For a header
        /// with options, [`super::checksum`] over `header_len`.
        #[inline(always)]
        pub fn plain_checksum_ok(&self) -> bool {
            let h = &self.0.as_ref()[..20];
            let mut acc = 0u64;
            for w in h.chunks_exact(4) {
                acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            }
            acc = (acc & 0xffff_ffff) + (acc >> 32);
            acc = (acc & 0xffff) + (acc >> 16);
            acc = (acc & 0xffff) + (acc >> 16);
            acc = (acc & 0xffff) + (acc >> 16);
            acc == 0xffff
        }
    }

    impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
        /// Writes a header with no options: `total_len` bytes of protocol
        /// `protocol` from `src` to `dst`, TTL 64, don't fragment, its
        /// checksum computed.
        pub fn set_plain(&mut self, total_len: u16, protocol: u8, src: [u8; 4], dst: [u8; 4]) {
            let b = &mut self.0.as_mut()[..20];
            b.fill(0);
            b[field::VERSION_IHL] = VERSION_IHL_PLAIN;
            b[field::TOTAL_LEN].copy_from_slice(&total_len.to_be_bytes());
            b[field::FRAGMENT].copy_from_slice(&DONT_FRAGMENT.to_be_bytes());
            b[field::TTL] = 64;
            b[field::PROTOCOL] = protocol;
            b[field::SRC].copy_from_slice(&src);
            b[field::DST].copy_from_slice(&dst);
            let sum = super::checksum(b);
            b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        }
    }
}

/// IPv6.
pub mod ipv6 {
    use super::*;

    /// Field offsets.
    pub mod field {
        use super::Field;
        /// Version (high nibble of the first byte).
        pub const VERSION: usize = 0;
        /// Payload length.
        pub const PAYLOAD_LEN: Field = 4..6;
        /// Next header.
        pub const NEXT_HEADER: usize = 6;
        /// Hop limit.
        pub const HOP_LIMIT: usize = 7;
        /// Source address.
        pub const SRC: Field = 8..24;
        /// Destination address.
        pub const DST: Field = 24..40;
        /// Source and destination together.
        pub const ADDRESSES: Field = 8..40;
    }

    view!(
        /// An IPv6 header (40 bytes).
        Header,
        40
    );

    impl<T: AsRef<[u8]>> Header<T> {
        /// Version.
        #[inline(always)]
        pub fn version(&self) -> u8 {
            self.0.as_ref()[field::VERSION] >> 4
        }
        /// Payload length.
        #[inline(always)]
        pub fn payload_len(&self) -> usize {
            usize::from(be16(self.0.as_ref(), field::PAYLOAD_LEN))
        }
        /// Next header.
        #[inline(always)]
        pub fn next_header(&self) -> u8 {
            self.0.as_ref()[field::NEXT_HEADER]
        }
        /// Hop limit.
        #[inline(always)]
        pub fn hop_limit(&self) -> u8 {
            self.0.as_ref()[field::HOP_LIMIT]
        }
        /// Source address.
        #[inline(always)]
        pub fn src(&self) -> [u8; 16] {
            array(self.0.as_ref(), field::SRC)
        }
        /// Destination address.
        #[inline(always)]
        pub fn dst(&self) -> [u8; 16] {
            array(self.0.as_ref(), field::DST)
        }
    }

    impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
        /// Sets payload length, next header and hop limit.
        pub fn set_payload(&mut self, len: u16, next_header: u8, hop_limit: u8) {
            let b = self.0.as_mut();
            b[field::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
            b[field::NEXT_HEADER] = next_header;
            b[field::HOP_LIMIT] = hop_limit;
        }
        /// Sets both addresses.
        pub fn set_addresses(&mut self, src: [u8; 16], dst: [u8; 16]) {
            let b = self.0.as_mut();
            b[field::SRC].copy_from_slice(&src);
            b[field::DST].copy_from_slice(&dst);
        }
    }

    /// Extension headers: hop-by-hop options, routing, destination options
    /// (length in 8-byte units after the first 8).
    pub mod ext {
        /// Hop-by-hop options.
        pub const HOP_BY_HOP: u8 = 0;
        /// Routing.
        pub const ROUTING: u8 = 43;
        /// Fragment.
        pub const FRAGMENT: u8 = 44;
        /// Authentication header (length in 4-byte units after the first 8).
        pub const AUTH: u8 = 51;
        /// Destination options.
        pub const DEST_OPTIONS: u8 = 60;
        /// Offset of the next header, in every extension header.
        pub const NEXT_HEADER: usize = 0;
        /// Offset of the length, in those that have one.
        pub const LEN: usize = 1;
        /// Offset of the fragment offset and flags, in a fragment header.
        pub const FRAGMENT_OFFSET: core::ops::Range<usize> = 2..4;
        /// Length of a fragment header.
        pub const FRAGMENT_LEN: usize = 8;
    }
}

/// TCP.
pub mod tcp {
    use super::*;

    /// Field offsets.
    pub mod field {
        use super::Field;
        /// Source port.
        pub const SRC_PORT: Field = 0..2;
        /// Destination port.
        pub const DST_PORT: Field = 2..4;
        /// Both ports.
        pub const PORTS: Field = 0..4;
        /// Sequence number.
        pub const SEQ: Field = 4..8;
        /// Acknowledgement number.
        pub const ACK: Field = 8..12;
        /// Data offset (high nibble, in words).
        pub const DATA_OFFSET: usize = 12;
        /// Flags.
        pub const FLAGS: usize = 13;
        /// Window.
        pub const WINDOW: Field = 14..16;
        /// Checksum.
        pub const CHECKSUM: Field = 16..18;
        /// Urgent pointer.
        pub const URGENT: Field = 18..20;
    }

    view!(
        /// A TCP header's fixed 20 bytes.
        Header,
        20
    );

    impl<T: AsRef<[u8]>> Header<T> {
        /// Source port.
        #[inline(always)]
        pub fn src_port(&self) -> u16 {
            be16(self.0.as_ref(), field::SRC_PORT)
        }
        /// Destination port.
        #[inline(always)]
        pub fn dst_port(&self) -> u16 {
            be16(self.0.as_ref(), field::DST_PORT)
        }
        /// Both ports as one big-endian word (source in the high half).
        #[inline(always)]
        pub fn ports(&self) -> u32 {
            let p = &self.0.as_ref()[field::PORTS];
            u32::from_be_bytes([p[0], p[1], p[2], p[3]])
        }
        /// Header length in bytes (data offset × 4).
        #[inline(always)]
        pub fn header_len(&self) -> usize {
            usize::from(self.0.as_ref()[field::DATA_OFFSET] >> 4) * 4
        }
        /// Flags.
        #[inline(always)]
        pub fn flags(&self) -> u8 {
            self.0.as_ref()[field::FLAGS]
        }
        /// Acknowledgement number.
        #[inline(always)]
        pub fn ack(&self) -> u32 {
            u32::from_be_bytes(array(self.0.as_ref(), field::ACK))
        }
    }

    impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
        /// Writes a bare RST (no options, no ACK, window 0) from `src_port`
        /// to `dst_port` at sequence number `seq`, its checksum 0.
        pub fn set_reset(&mut self, src_port: u16, dst_port: u16, seq: u32) {
            let b = self.0.as_mut();
            b[field::SRC_PORT].copy_from_slice(&src_port.to_be_bytes());
            b[field::DST_PORT].copy_from_slice(&dst_port.to_be_bytes());
            b[field::SEQ].copy_from_slice(&seq.to_be_bytes());
            b[field::ACK].fill(0);
            b[field::DATA_OFFSET] = 5 << 4;
            b[field::FLAGS] = super::tcp_flags::RST;
            b[field::WINDOW].fill(0);
            b[field::CHECKSUM].fill(0);
            b[field::URGENT].fill(0);
        }
        /// Sets the checksum.
        pub fn set_checksum(&mut self, sum: u16) {
            self.0.as_mut()[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        }
    }
}

/// UDP.
pub mod udp {
    use super::*;

    /// Field offsets.
    pub mod field {
        use super::Field;
        /// Source port.
        pub const SRC_PORT: Field = 0..2;
        /// Destination port.
        pub const DST_PORT: Field = 2..4;
        /// Length of header and data.
        pub const LEN: Field = 4..6;
    }

    view!(
        /// A UDP header (8 bytes).
        Header,
        8
    );

    impl<T: AsRef<[u8]>> Header<T> {
        /// Source port.
        #[inline]
        pub fn src_port(&self) -> u16 {
            be16(self.0.as_ref(), field::SRC_PORT)
        }
        /// Destination port.
        #[inline]
        pub fn dst_port(&self) -> u16 {
            be16(self.0.as_ref(), field::DST_PORT)
        }
        /// Length of header and data.
        #[inline]
        pub fn length(&self) -> usize {
            usize::from(be16(self.0.as_ref(), field::LEN))
        }
    }
}

/// The first bytes of a transport header that ICMP errors quote and that
/// TCP and UDP share: the two ports.
pub mod ports {
    use super::*;

    view!(
        /// Source and destination port (4 bytes).
        Ports,
        4
    );

    impl<T: AsRef<[u8]>> Ports<T> {
        /// Source port.
        #[inline]
        pub fn src(&self) -> u16 {
            be16(self.0.as_ref(), 0..2)
        }
        /// Destination port.
        #[inline]
        pub fn dst(&self) -> u16 {
            be16(self.0.as_ref(), 2..4)
        }
    }
}

/// ICMP and ICMPv6, and the neighbour discovery messages of ICMPv6.
pub mod icmp {
    use super::*;

    /// Field offsets.
    pub mod field {
        use super::Field;
        /// Type.
        pub const KIND: usize = 0;
        /// Code.
        pub const CODE: usize = 1;
        /// Checksum.
        pub const CHECKSUM: Field = 2..4;
        /// An error's quoted packet starts after the 8-byte header.
        pub const QUOTED: usize = 8;
        /// Neighbour solicitation and advertisement: flags (advertisement).
        pub const ND_FLAGS: usize = 4;
        /// Neighbour solicitation and advertisement: the reserved bytes.
        pub const ND_RESERVED: Field = 5..8;
        /// Neighbour solicitation and advertisement: target address.
        pub const ND_TARGET: Field = 8..24;
        /// Neighbour solicitation and advertisement: first option.
        pub const ND_OPTIONS: usize = 24;
    }

    /// ICMPv6 neighbour discovery message types and option layout.
    pub mod nd {
        /// Router solicitation.
        pub const ROUTER_SOLICIT: u8 = 133;
        /// Router advertisement.
        pub const ROUTER_ADVERT: u8 = 134;
        /// Neighbour solicitation.
        pub const NEIGHBOUR_SOLICIT: u8 = 135;
        /// Neighbour advertisement.
        pub const NEIGHBOUR_ADVERT: u8 = 136;
        /// Redirect.
        pub const REDIRECT: u8 = 137;
        /// Where each message's options start.
        pub const fn first_option(kind: u8) -> Option<usize> {
            match kind {
                ROUTER_SOLICIT => Some(8),
                ROUTER_ADVERT => Some(16),
                NEIGHBOUR_SOLICIT | NEIGHBOUR_ADVERT => Some(24),
                REDIRECT => Some(40),
                _ => None,
            }
        }
        /// Source link-layer address option.
        pub const OPT_SOURCE_LL: u8 = 1;
        /// Target link-layer address option.
        pub const OPT_TARGET_LL: u8 = 2;
        /// Offset of an option's type.
        pub const OPT_KIND: usize = 0;
        /// Offset of an option's length (in 8-byte units).
        pub const OPT_LEN: usize = 1;
        /// Offset of a link-layer address option's address.
        pub const OPT_LL_ADDR: core::ops::Range<usize> = 2..8;
        /// Advertisement flags: solicited.
        pub const FLAG_SOLICITED: u8 = 0x40;
        /// Advertisement flags: override.
        pub const FLAG_OVERRIDE: u8 = 0x20;
        /// Length of an advertisement with one link-layer address option.
        pub const ADVERT_WITH_LL_LEN: usize = 32;
    }

    view!(
        /// An ICMP or ICMPv6 header's first 4 bytes (type, code, checksum).
        Header,
        4
    );

    impl<T: AsRef<[u8]>> Header<T> {
        /// Type.
        #[inline]
        pub fn kind(&self) -> u8 {
            self.0.as_ref()[field::KIND]
        }
        /// Code.
        #[inline]
        pub fn code(&self) -> u8 {
            self.0.as_ref()[field::CODE]
        }
        /// A neighbour discovery message's target address, when the
        /// message is long enough to hold one.
        #[inline]
        pub fn nd_target(&self) -> Option<[u8; 16]> {
            let b = self.0.as_ref();
            (b.len() >= field::ND_TARGET.end).then(|| array(b, field::ND_TARGET))
        }
        /// The packet an error quotes (what follows the 8-byte header).
        #[inline]
        pub fn quoted(&self) -> Option<&[u8]> {
            self.0.as_ref().get(field::QUOTED..)
        }
    }

    impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
        /// Sets the checksum field.
        pub fn set_checksum(&mut self, sum: u16) {
            self.0.as_mut()[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        }
    }
}

/// The connection an IP packet quoted in an ICMP error belongs to, read
/// with the same views: the quoted header's addresses and the first four
/// bytes of its TCP or UDP header. The quote is cut short by design (8
/// bytes of transport header at least), so lengths are not judged, only
/// that the fields read are there. `v6`: the ICMP message is ICMPv6.
pub fn quoted_connection(quote: &[u8], v6: bool) -> Option<(Addr, Addr, u16, u16)> {
    quoted_transport(quote, v6).map(|(_, src, dst, p, q)| (src, dst, p, q))
}

/// As [`quoted_connection`], with the quoted packet's protocol first (TCP
/// or UDP).
pub fn quoted_transport(quote: &[u8], v6: bool) -> Option<(u8, Addr, Addr, u16, u16)> {
    let transport = |p: u8| p == proto::TCP || p == proto::UDP;
    let (protocol, src, dst, l4) = if v6 {
        let h = ipv6::Header::new_checked(quote)?;
        if !transport(h.next_header()) {
            return None;
        }
        (
            h.next_header(),
            Addr::V6(h.src()),
            Addr::V6(h.dst()),
            &quote[ipv6::Header::<&[u8]>::LEN..],
        )
    } else {
        let h = ipv4::Header::new_checked(quote)?;
        let ihl = h.header_len();
        if ihl < ipv4::Header::<&[u8]>::LEN || !transport(h.protocol()) {
            return None;
        }
        (h.protocol(), Addr::V4(h.src()), Addr::V4(h.dst()), quote.get(ihl..)?)
    };
    let p = ports::Ports::new_checked(l4)?;
    Some((protocol, src, dst, p.src(), p.dst()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::*;

    #[test]
    fn views_read_the_fields_the_frames_were_built_with() {
        let f = tcp4(CLIENT_V4, 40000, V4_VIP, 80, tcp_flags::SYN, b"");
        let eth = ethernet::Header::new_checked(&f[..]).unwrap();
        assert_eq!(eth.dst(), CLUSTER_MAC);
        assert_eq!(eth.ethertype(), ethertype::IPV4);
        assert!(!eth.dst_is_group() && !eth.src_is_group());
        let ip = ipv4::Header::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.version(), ip.header_len(), ip.protocol()), (4, 20, proto::TCP));
        assert_eq!((ip.src(), ip.dst()), (CLIENT_V4, V4_VIP));
        assert_eq!(ip.total_len(), 40, "no payload; the frame is padded to 60 bytes");
        assert!(ip.plain_checksum_ok());
        let t = tcp::Header::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (t.src_port(), t.dst_port(), t.flags(), t.header_len()),
            (40000, 80, tcp_flags::SYN, 20)
        );
        assert_eq!(t.ports(), (40000 << 16) | 80);

        let mut bad = f.clone();
        bad[14 + ipv4::field::TTL] ^= 1;
        assert!(!ipv4::Header::new_checked(&bad[14..]).unwrap().plain_checksum_ok());

        let f6 = tcp6(V6_CLIENT, 40001, V6_VIP, 443, tcp_flags::ACK, b"x");
        let ip6 = ipv6::Header::new_checked(&f6[14..]).unwrap();
        assert_eq!(
            (ip6.version(), ip6.next_header(), ip6.payload_len()),
            (6, proto::TCP, 21)
        );
        assert_eq!((ip6.src(), ip6.dst()), (V6_CLIENT, V6_VIP));
        assert!(ipv6::Header::new_checked(&f6[14..14 + 39]).is_none());
    }

    #[test]
    fn a_quoted_connection_is_read_from_any_cut_without_panicking() {
        // What an ICMP error quotes: the VIP's packet to the client.
        let v4 = tcp4(V4_VIP, 80, CLIENT_V4, 40000, tcp_flags::ACK, b"");
        let v6 = tcp6(V6_VIP, 443, V6_CLIENT, 40001, tcp_flags::ACK, b"");
        let want4 = (Addr::V4(V4_VIP), Addr::V4(CLIENT_V4), 80, 40000);
        let want6 = (Addr::V6(V6_VIP), Addr::V6(V6_CLIENT), 443, 40001);
        assert_eq!(quoted_connection(&v4[14..], false), Some(want4));
        assert_eq!(quoted_connection(&v6[14..], true), Some(want6));
        // The quote needs the IP header and the ports, nothing more.
        assert_eq!(quoted_connection(&v4[14..14 + 24], false), Some(want4));
        assert_eq!(quoted_connection(&v6[14..14 + 44], true), Some(want6));
        for cut in 0..24 {
            assert_eq!(quoted_connection(&v4[14..14 + cut], false), None, "{cut}");
        }
        for cut in 0..44 {
            assert_eq!(quoted_connection(&v6[14..14 + cut], true), None, "{cut}");
        }
        let mut icmp_quoted = v4.clone();
        icmp_quoted[14 + ipv4::field::PROTOCOL] = proto::ICMP;
        assert_eq!(quoted_connection(&icmp_quoted[14..], false), None);
        let mut short_ihl = v4;
        short_ihl[14] = 0x44;
        assert_eq!(quoted_connection(&short_ihl[14..], false), None);
    }
}
