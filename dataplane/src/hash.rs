//! The connection value: a Toeplitz hash of (client address, VIP, client
//! port, VIP port), the function NICs use for RSS.
//!
//! With [`SYMMETRIC_KEY`] (0x6d5a repeated) the value is the same for both
//! directions of a connection, and a NIC programmed with the same key and
//! fields computes it in hardware. This is the software path, for ports with
//! no RSS (TAP, af_packet).
//!
//! [`Toeplitz`] is the general function for any key: a table of 32-bit
//! partial results per input byte position and byte value (36 KiB), the
//! reference. The packet path uses [`symmetric`] instead: with the key's
//! period of 16 bits, Toeplitz depends only on the XOR of the input's 16-bit
//! words, and is two lookups in 2 KiB (see its documentation for why).

use crate::addr::Addr;

/// Length of an RSS key in bytes.
pub const KEY_LEN: usize = 40;

/// The symmetric key: 0x6d5a repeated. hash(a, b, p, q) == hash(b, a, q, p).
pub const SYMMETRIC_KEY: [u8; KEY_LEN] = [
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d,
    0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a,
];

/// Microsoft's RSS verification key, for checking against published vectors.
pub const MICROSOFT_KEY: [u8; KEY_LEN] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
    0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
    0x01, 0xfa,
];

/// The longest input: two IPv6 addresses and two ports.
const MAX_INPUT: usize = 36;

/// A connection's 32-bit hash value, identical on every node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnectionValue(pub u32);

/// A bucket of the connection-value space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Bucket(pub u32);

impl ConnectionValue {
    /// The bucket of this value in a space of `mask + 1` buckets (a power of
    /// two): the low bits, as a NIC's redirection table uses them.
    #[inline]
    pub fn bucket(self, mask: u32) -> Bucket {
        Bucket(self.0 & mask)
    }
}

/// A software Toeplitz hasher for one key.
pub struct Toeplitz {
    /// `table[i][v]`: the hash contribution of byte value `v` at input
    /// position `i`.
    table: Box<[[u32; 256]; MAX_INPUT]>,
}

impl Toeplitz {
    /// Precomputes the tables for `key`.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        let mut padded = [0u8; KEY_LEN + 8];
        padded[..KEY_LEN].copy_from_slice(key);
        // The 32-bit window of the key that starts at bit `p`.
        let window = |p: usize| -> u32 {
            let byte = p / 8;
            let mut w = [0u8; 8];
            w.copy_from_slice(&padded[byte..byte + 8]);
            ((u64::from_be_bytes(w) << (p % 8)) >> 32) as u32
        };
        let mut table = Box::new([[0u32; 256]; MAX_INPUT]);
        for (i, row) in table.iter_mut().enumerate() {
            for (v, cell) in row.iter_mut().enumerate() {
                let mut h = 0u32;
                for bit in 0..8 {
                    if v & (0x80 >> bit) != 0 {
                        h ^= window(i * 8 + bit);
                    }
                }
                *cell = h;
            }
        }
        Toeplitz { table }
    }

    /// Hashes raw input bytes (at most 36).
    #[inline]
    pub fn hash_bytes(&self, input: &[u8]) -> u32 {
        let mut h = 0;
        for (row, &b) in self.table.iter().zip(input) {
            h ^= row[usize::from(b)];
        }
        h
    }

    /// Hashes (src, dst, src port, dst port) in the RSS input order. `src`
    /// and `dst` must be of the same family; a mixed pair hashes the
    /// addresses only.
    #[inline]
    pub fn tuple(&self, src: Addr, dst: Addr, src_port: u16, dst_port: u16) -> ConnectionValue {
        let mut input = [0u8; MAX_INPUT];
        let Some(n) = pack_addresses(&mut input, src, dst) else {
            return ConnectionValue(0);
        };
        input[n..n + 2].copy_from_slice(&src_port.to_be_bytes());
        input[n + 2..n + 4].copy_from_slice(&dst_port.to_be_bytes());
        ConnectionValue(self.hash_bytes(&input[..n + 4]))
    }

    /// Hashes addresses only (for ICMP and other port-less traffic).
    #[inline]
    pub fn addresses(&self, src: Addr, dst: Addr) -> ConnectionValue {
        let mut input = [0u8; MAX_INPUT];
        match pack_addresses(&mut input, src, dst) {
            Some(n) => ConnectionValue(self.hash_bytes(&input[..n])),
            None => ConnectionValue(0),
        }
    }
}

/// Toeplitz under [`SYMMETRIC_KEY`] without the per-position table.
///
/// Toeplitz XORs, for every input bit `i` that is set, the 32 key bits
/// starting at bit `i`. The symmetric key repeats 0x6d5a, so that window
/// depends only on `i mod 16`: it is `r(i mod 16)` twice over, where
/// `r(j)` is 0x6d5a rotated left by `j`. Input bit `i` is bit `i mod 16`
/// (from the top) of the input's 16-bit word `i / 16`, so the hash is the
/// XOR of `r(j)` over the bits `j` set in the XOR of all the input's
/// big-endian 16-bit words ([`symmetric::fold`]): a linear function of 16
/// bits, the same in both halves. That is also why the value is symmetric
/// (the XOR does not care about word order) and why it has 16 bits of
/// entropy. The tests prove it equal to [`Toeplitz`] (and, in
/// `tests/eal.rs`, to DPDK's `rte_softrss`) on random tuples.
pub mod symmetric {
    use super::ConnectionValue;
    use crate::addr::Addr;

    /// The key's 16-bit period.
    const PERIOD: u16 = 0x6d5a;

    /// `table[v]`: the hash of a folded word whose high (`HIGH`) or low
    /// byte is `v`, both halves filled.
    const fn byte_table(high: bool) -> [u32; 256] {
        let mut t = [0u32; 256];
        let mut v = 0;
        while v < 256 {
            let mut g = 0u16;
            let mut bit = 0;
            while bit < 8 {
                // Bit `bit` from the top of this byte is bit `j` from the
                // top of the folded word.
                if v & (0x80 >> bit) != 0 {
                    let j = if high { bit } else { bit + 8 };
                    g ^= PERIOD.rotate_left(j);
                }
                bit += 1;
            }
            t[v] = (g as u32) << 16 | g as u32;
            v += 1;
        }
        t
    }

    static HIGH: [u32; 256] = byte_table(true);
    static LOW: [u32; 256] = byte_table(false);

    /// The hash of an input whose 16-bit words XOR to `folded`.
    #[inline]
    pub fn of_folded(folded: u16) -> ConnectionValue {
        let [h, l] = folded.to_be_bytes();
        ConnectionValue(HIGH[usize::from(h)] ^ LOW[usize::from(l)])
    }

    /// `UNFOLD[i]`: the folded word whose value has `1 << i` as its low
    /// 16 bits. The low half of [`of_folded`] is a linear map of the
    /// folded word over GF(2) (a circulant of the key's period, which has
    /// odd weight, so it is invertible): these are its inverse's columns,
    /// found by Gauss-Jordan elimination at compile time.
    const UNFOLD: [u16; 16] = {
        // Row k: the image of folded bit k (from the low end, which is
        // bit 15 - k from the top) and the preimage it came from.
        let mut image = [0u16; 16];
        let mut preimage = [0u16; 16];
        let mut k = 0;
        while k < 16 {
            image[k] = PERIOD.rotate_left(15 - k as u32);
            preimage[k] = 1 << k;
            k += 1;
        }
        let mut bit = 0;
        while bit < 16 {
            let mut pivot = bit;
            while image[pivot] & (1 << bit) == 0 {
                pivot += 1; // past 15: not invertible, a compile error
            }
            let (i, p) = (image[pivot], preimage[pivot]);
            image[pivot] = image[bit];
            preimage[pivot] = preimage[bit];
            image[bit] = i;
            preimage[bit] = p;
            let mut r = 0;
            while r < 16 {
                if r != bit && image[r] & (1 << bit) != 0 {
                    image[r] ^= i;
                    preimage[r] ^= p;
                }
                r += 1;
            }
            bit += 1;
        }
        preimage
    };

    /// The folded word whose connection value has `low` as its low 16
    /// bits: the inverse of the map from folded word to bucket (at 65,536
    /// buckets a bijection), so a bitmap of buckets can be kept indexed by
    /// the folded word and tested before the value is computed.
    #[inline]
    pub fn unfold(low: u16) -> u16 {
        let mut f = 0;
        let mut i = 0;
        while i < 16 {
            if low & (1 << i) != 0 {
                f ^= UNFOLD[i];
            }
            i += 1;
        }
        f
    }

    /// The folded word whose value's low 16 bits are `1 << i` (a column of
    /// [`unfold`]).
    #[inline]
    pub fn unfold_bit(i: u32) -> u16 {
        UNFOLD[(i & 15) as usize]
    }

    /// Folds a 32-bit big-endian word (two 16-bit words) to 16 bits.
    #[inline]
    pub fn fold32(w: u32) -> u16 {
        (w >> 16) as u16 ^ w as u16
    }

    /// XOR of the big-endian 16-bit words of `bytes` (an odd last byte is
    /// the high byte of a word padded with zero, as Toeplitz sees it).
    #[inline]
    pub fn fold(bytes: &[u8]) -> u16 {
        let mut x = 0u32;
        let mut words = bytes.chunks_exact(4);
        for w in &mut words {
            x ^= u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
        }
        let mut f = fold32(x);
        let rest = words.remainder();
        let mut pairs = rest.chunks_exact(2);
        for p in &mut pairs {
            f ^= u16::from_be_bytes([p[0], p[1]]);
        }
        if let [last] = pairs.remainder() {
            f ^= u16::from(*last) << 8;
        }
        f
    }

    /// The fold of an address pair; None for a mixed pair.
    #[inline]
    fn addresses_folded(src: Addr, dst: Addr) -> Option<u16> {
        match (src, dst) {
            (Addr::V4(s), Addr::V4(d)) => Some(fold32(u32::from_be_bytes(s) ^ u32::from_be_bytes(d))),
            (Addr::V6(s), Addr::V6(d)) => Some(fold(&s) ^ fold(&d)),
            _ => None,
        }
    }

    /// As [`super::Toeplitz::tuple`] with [`super::SYMMETRIC_KEY`].
    #[inline]
    pub fn tuple(src: Addr, dst: Addr, src_port: u16, dst_port: u16) -> ConnectionValue {
        match addresses_folded(src, dst) {
            Some(f) => of_folded(f ^ src_port ^ dst_port),
            None => ConnectionValue(0),
        }
    }

    /// As [`super::Toeplitz::addresses`] with [`super::SYMMETRIC_KEY`].
    #[inline]
    pub fn addresses(src: Addr, dst: Addr) -> ConnectionValue {
        match addresses_folded(src, dst) {
            Some(f) => of_folded(f),
            None => ConnectionValue(0),
        }
    }
}

/// Writes `src` then `dst` at the start of `input`; returns the length, or
/// None for a mixed pair.
#[inline]
fn pack_addresses(input: &mut [u8; MAX_INPUT], src: Addr, dst: Addr) -> Option<usize> {
    match (src, dst) {
        (Addr::V4(s), Addr::V4(d)) => {
            input[..4].copy_from_slice(&s);
            input[4..8].copy_from_slice(&d);
            Some(8)
        }
        (Addr::V6(s), Addr::V6(d)) => {
            input[..16].copy_from_slice(&s);
            input[16..32].copy_from_slice(&d);
            Some(32)
        }
        _ => None,
    }
}

/// When a NIC's RSS hash may stand for the connection value.
///
/// A port programmed with [`SYMMETRIC_KEY`] hashes IPv4 and IPv6 TCP and
/// UDP with the Toeplitz function of the 4-tuple, the connection value; but
/// it hashes other frames differently (IPv6 with extension headers,
/// fragments, tunnels, a protocol it hashes on addresses alone), and a node
/// that takes such a hash for the value decides the frame differently from
/// a node that computes it (one SYN taken twice, or never). So the hash is
/// used only for a frame whose packet type, as the driver reports it in the
/// mbuf, is plain IPv4 or IPv6 (no options or extension headers, not a
/// fragment, no tunnel) carrying TCP or UDP, and only for the types the
/// port says it hashes on the 4-tuple with the cluster's key
/// ([`nic::RssTypes`]); for everything else, and wherever the driver reports
/// no packet type, the value is computed.
pub mod nic {
    /// DPDK's packet type bits (`RTE_PTYPE_*` of `rte_mbuf_ptype.h`, part
    /// of its ABI; `synshare-dpdk` checks them against the headers it is
    /// built with).
    pub mod ptype {
        /// The L3 type.
        pub const L3_MASK: u32 = 0x0000_00f0;
        /// IPv4 without options.
        pub const L3_IPV4: u32 = 0x0000_0010;
        /// IPv6 without extension headers.
        pub const L3_IPV6: u32 = 0x0000_0040;
        /// The L4 type.
        pub const L4_MASK: u32 = 0x0000_0f00;
        /// TCP.
        pub const L4_TCP: u32 = 0x0000_0100;
        /// UDP.
        pub const L4_UDP: u32 = 0x0000_0200;
        /// The tunnel type.
        pub const TUNNEL_MASK: u32 = 0x0000_f000;
        /// The inner L2, L3 and L4 types (of a tunnelled packet).
        pub const INNER_MASK: u32 = 0x0fff_0000;
    }

    /// The packet types a port hashes with the Toeplitz function of the
    /// 4-tuple and the cluster's key.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
    pub struct RssTypes(u8);

    impl RssTypes {
        /// None: the value is always computed.
        pub const NONE: RssTypes = RssTypes(0);
        /// IPv4 TCP (not fragmented).
        pub const IPV4_TCP: RssTypes = RssTypes(1);
        /// IPv4 UDP (not fragmented).
        pub const IPV4_UDP: RssTypes = RssTypes(2);
        /// IPv6 TCP (not fragmented).
        pub const IPV6_TCP: RssTypes = RssTypes(4);
        /// IPv6 UDP (not fragmented).
        pub const IPV6_UDP: RssTypes = RssTypes(8);
        /// All four.
        pub const ALL: RssTypes = RssTypes(15);

        /// Both sets.
        pub const fn with(self, other: RssTypes) -> RssTypes {
            RssTypes(self.0 | other.0)
        }

        /// True when every type of `other` is in the set.
        pub const fn contains(self, other: RssTypes) -> bool {
            self.0 & other.0 == other.0
        }

        /// True for the empty set.
        pub const fn is_empty(self) -> bool {
            self.0 == 0
        }

        /// The NIC's `hash` as the connection value, when `packet_type`
        /// (the mbuf's) is plain IPv4 or IPv6 with TCP or UDP, untunnelled,
        /// and of a type in the set; None otherwise (the value is then
        /// computed).
        #[inline]
        pub fn value(self, packet_type: u32, hash: u32) -> Option<u32> {
            use ptype::*;
            if packet_type & (TUNNEL_MASK | INNER_MASK) != 0 {
                return None;
            }
            let kind = match (packet_type & L3_MASK, packet_type & L4_MASK) {
                (L3_IPV4, L4_TCP) => RssTypes::IPV4_TCP,
                (L3_IPV4, L4_UDP) => RssTypes::IPV4_UDP,
                (L3_IPV6, L4_TCP) => RssTypes::IPV6_TCP,
                (L3_IPV6, L4_UDP) => RssTypes::IPV6_UDP,
                _ => return None,
            };
            (self.0 & kind.0 != 0).then_some(hash)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<IpAddr>().unwrap())
    }

    /// Microsoft's RSS verification suite: (destination, source) with
    /// ports, the hash with ports and without.
    const V4_VECTORS: [(&str, u16, &str, u16, u32, u32); 5] = [
        ("161.142.100.80", 1766, "66.9.149.187", 2794, 0x51ccc178, 0x323e8fc2),
        ("65.69.140.83", 4739, "199.92.111.2", 14230, 0xc626b0ea, 0xd718262a),
        ("12.22.207.184", 38024, "24.19.198.95", 12898, 0x5c2b394a, 0xd2d0a5de),
        ("209.142.163.6", 2217, "38.27.205.30", 48228, 0xafc7327f, 0x82989176),
        ("202.188.127.2", 1303, "153.39.163.191", 44251, 0x10e828a2, 0x5d1809c5),
    ];

    const V6_VECTORS: [(&str, u16, &str, u16, u32, u32); 3] = [
        (
            "3ffe:2501:200:3::1",
            1766,
            "3ffe:2501:200:1fff::7",
            2794,
            0x40207d3d,
            0x2cc18cd5,
        ),
        (
            "ff02::1",
            4739,
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            0xdde51bbf,
            0x0f0c461c,
        ),
        (
            "fe80::200:f8ff:fe21:67cf",
            38024,
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            0x02d1feef,
            0x4b61e985,
        ),
    ];

    #[test]
    fn matches_microsoft_verification_suite() {
        let t = Toeplitz::new(&MICROSOFT_KEY);
        for (dst, dport, src, sport, with_ports, addrs_only) in V4_VECTORS.iter().chain(&V6_VECTORS) {
            assert_eq!(t.tuple(a(src), a(dst), *sport, *dport).0, *with_ports, "{src} -> {dst}");
            assert_eq!(t.addresses(a(src), a(dst)).0, *addrs_only, "{src} -> {dst}");
        }
    }

    #[test]
    fn symmetric_key_gives_the_same_value_both_ways() {
        let t = Toeplitz::new(&SYMMETRIC_KEY);
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..1000 {
            xorshift(&mut seed);
            let b = seed.to_be_bytes();
            let c = Addr::V4([b[0], b[1], b[2], b[3]]);
            let v = Addr::V4([b[4], b[5], b[6], b[7]]);
            let (p, q) = ((seed >> 3) as u16, (seed >> 21) as u16);
            assert_eq!(t.tuple(c, v, p, q), t.tuple(v, c, q, p));
        }
    }

    /// A random tuple source for the equivalence tests.
    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn the_folded_form_equals_the_table_on_random_tuples() {
        let t = Toeplitz::new(&SYMMETRIC_KEY);
        let mut seed = 0x0bad_cafe_f00d_d00du64;
        for _ in 0..20_000 {
            let (a, b, c, d) = (
                xorshift(&mut seed),
                xorshift(&mut seed),
                xorshift(&mut seed),
                xorshift(&mut seed),
            );
            let (p, q) = (c as u16, (c >> 16) as u16);
            let same = |src: Addr, dst: Addr| {
                assert_eq!(symmetric::tuple(src, dst, p, q), t.tuple(src, dst, p, q));
                assert_eq!(symmetric::addresses(src, dst), t.addresses(src, dst));
            };
            let (s4, d4) = ((a as u32).to_be_bytes(), (b as u32).to_be_bytes());
            same(Addr::V4(s4), Addr::V4(d4));
            let mut s6 = [0u8; 16];
            let mut d6 = [0u8; 16];
            s6[..8].copy_from_slice(&a.to_be_bytes());
            s6[8..].copy_from_slice(&c.to_be_bytes());
            d6[..8].copy_from_slice(&b.to_be_bytes());
            d6[8..].copy_from_slice(&d.to_be_bytes());
            same(Addr::V6(s6), Addr::V6(d6));
            // Raw inputs of every length up to 36 bytes, odd ones too.
            let mut raw = [0u8; 36];
            for (i, chunk) in raw.chunks_mut(8).enumerate() {
                let w = [a, b, c, d, a ^ d][i].to_be_bytes();
                chunk.copy_from_slice(&w[..chunk.len()]);
            }
            let n = (d % 37) as usize;
            assert_eq!(
                symmetric::of_folded(symmetric::fold(&raw[..n])).0,
                t.hash_bytes(&raw[..n]),
                "{n} bytes"
            );
        }
        // Mixed families hash to zero on both.
        let mixed = (Addr::V4([1, 2, 3, 4]), Addr::V6([1; 16]));
        assert_eq!(
            symmetric::tuple(mixed.0, mixed.1, 1, 2),
            t.tuple(mixed.0, mixed.1, 1, 2)
        );
        assert_eq!(symmetric::addresses(mixed.0, mixed.1).0, 0);
    }

    #[test]
    fn every_folded_word_gives_the_table_value() {
        // The folded form is linear in 16 bits: checking each of them
        // against an input that holds exactly that folded word covers it.
        let t = Toeplitz::new(&SYMMETRIC_KEY);
        for x in 0..=u16::MAX {
            let input = x.to_be_bytes();
            assert_eq!(symmetric::of_folded(x).0, t.hash_bytes(&input));
        }
    }

    #[test]
    fn unfold_inverts_the_map_from_folded_word_to_bucket() {
        for f in 0..=u16::MAX {
            assert_eq!(symmetric::unfold(symmetric::of_folded(f).0 as u16), f);
        }
        for i in 0..16 {
            assert_eq!(symmetric::of_folded(symmetric::unfold_bit(i)).0 & 0xffff, 1 << i);
        }
    }

    #[test]
    fn client_ports_spread_evenly_over_buckets() {
        // One client, one VIP, sequential ports, as a load test makes them:
        // with the symmetric key the low 16 bits are a bijection of the
        // folded input, so 65,536 ports fill 65,536 buckets exactly once.
        let t = Toeplitz::new(&SYMMETRIC_KEY);
        let mut seen = vec![false; 65536];
        for port in 0..=u16::MAX {
            let b = t.tuple(a("192.0.2.10"), a("192.0.2.100"), port, 80).bucket(0xffff);
            assert!(!seen[b.0 as usize], "bucket {b:?} hit twice");
            seen[b.0 as usize] = true;
        }
    }
}
