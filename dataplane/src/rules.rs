//! Port rules: how each port of a VIP is served, and what its connection
//! value covers.
//!
//! A port is not served, served by the cluster (*shared*) with an
//! affinity, served by one node (*single*), or *disabled* (dropped and
//! counted, `drop_vip_port_disabled`). The affinity says what the
//! connection value covers:
//!
//! - [`Affinity::None`]: the 4-tuple (client address, VIP, client port, VIP
//!   port), the default and the value of every port no rule names;
//! - [`Affinity::Client`]: the client address and the VIP only, so every
//!   connection of one client lands on one node. It is the same Toeplitz
//!   function with the same symmetric key over the address words alone,
//!   which is what a NIC's RSS configured for L3 hashing gives;
//! - [`Affinity::Network`]: the client's /24 (IPv4) or /48 (IPv6) and the
//!   VIP (the client address with its low bits zero, as Toeplitz input).
//!
//! A single-host rule maps every connection of the rule to one fixed value:
//! the Toeplitz of (VIP address, the rule's first port). Its bucket's owner
//! takes all of them, and when that node leaves, the exchange gives the
//! bucket (and so the whole rule) to another, as any bucket.
//!
//! The per-port lookup is one byte of a 65,536-entry table per VIP and
//! protocol: [`PortRules::class`]. Class [`NOT_SERVED`] and [`PLAIN`]
//! (served, 4-tuple) cover the common case, so a port with no rule costs
//! one load, as the bitmap of served ports did.

use crate::addr::Addr;
use crate::hash::{symmetric, ConnectionValue};

/// What the connection value of a shared port covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Affinity {
    /// The 4-tuple.
    #[default]
    None,
    /// The client address (and the VIP).
    Client,
    /// The client's /24 (IPv4) or /48 (IPv6) (and the VIP).
    Network,
}

/// How the ports of a rule are served.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PortMode {
    /// By the cluster, each connection by the owner of its bucket.
    Shared(Affinity),
    /// By one node: the owner of the rule's one bucket.
    Single,
    /// Not at all: dropped and counted.
    Disabled,
}

/// A rule over a range of ports of one VIP.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PortRule {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range (inclusive).
    pub last: u16,
    /// For TCP.
    pub tcp: bool,
    /// For UDP.
    pub udp: bool,
    /// How its ports are served.
    pub mode: PortMode,
}

/// The class of a port that is not served.
pub const NOT_SERVED: u8 = 0;
/// The class of a port served by the cluster with the 4-tuple as value.
pub const PLAIN: u8 = 1;

/// What a class stands for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Not served.
    NotServed,
    /// Shared, with this affinity.
    Shared(Affinity),
    /// One node: every connection has the value of this folded word.
    Single(u16),
    /// Dropped and counted.
    Disabled,
}

/// The ports of one VIP for one protocol: a class per port.
#[derive(Clone)]
pub struct PortRules {
    class: Box<[u8; 65536]>,
    kinds: Box<[Kind]>,
}

impl core::fmt::Debug for PortRules {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let served = self.class.iter().filter(|&&c| c != NOT_SERVED).count();
        write!(f, "PortRules({served} ports, {:?})", &self.kinds[2..])
    }
}

impl PortRules {
    /// `ports` served with the 4-tuple, then `rules` (of this protocol,
    /// already selected) over them: a later rule's port overrides an
    /// earlier one's (the configuration refuses overlaps). `vip` gives
    /// single-host rules their value. At most 254 rules; more are ignored.
    pub fn new(vip: Addr, ports: &[u16], rules: &[PortRule]) -> Self {
        let mut class = Box::new([NOT_SERVED; 65536]);
        for &p in ports {
            class[usize::from(p)] = PLAIN;
        }
        let mut kinds = vec![Kind::NotServed, Kind::Shared(Affinity::None)];
        for r in rules.iter().take(254) {
            let kind = match r.mode {
                PortMode::Shared(a) => Kind::Shared(a),
                PortMode::Disabled => Kind::Disabled,
                PortMode::Single => Kind::Single(single_folded(vip, r.first)),
            };
            let c = if kind == Kind::Shared(Affinity::None) {
                PLAIN
            } else {
                kinds.push(kind);
                (kinds.len() - 1) as u8
            };
            for p in r.first..=r.last {
                class[usize::from(p)] = c;
            }
        }
        PortRules {
            class,
            kinds: kinds.into_boxed_slice(),
        }
    }

    /// The class of `port`: [`NOT_SERVED`], [`PLAIN`] or a rule's.
    #[inline(always)]
    pub fn class(&self, port: u16) -> u8 {
        self.class[usize::from(port)]
    }

    /// What the class stands for.
    #[inline]
    pub fn kind(&self, class: u8) -> Kind {
        self.kinds.get(usize::from(class)).copied().unwrap_or(Kind::NotServed)
    }

    /// What `port` is.
    #[inline]
    pub fn kind_of(&self, port: u16) -> Kind {
        self.kind(self.class(port))
    }

    /// True when `port` is served (shared or single).
    #[inline]
    pub fn serves(&self, port: u16) -> bool {
        matches!(self.kind_of(port), Kind::Shared(_) | Kind::Single(_))
    }

    /// Appends the canonical description of the ports whose connection
    /// value is not the 4-tuple's: each run of ports of one such kind as
    /// first u16, last u16, kind u8 (1 client, 2 network, 3 single), the
    /// single rule's folded word u16 (else 0), big-endian. Two members
    /// whose descriptions are equal give every connection they both serve
    /// the same value; served, disabled and unserved 4-tuple ports are
    /// left out (they cannot make two members take one connection).
    pub fn value_runs(&self, out: &mut Vec<u8>) {
        let tag = |port: u32| match self.kind_of(port as u16) {
            Kind::Shared(Affinity::Client) => Some((1u8, 0u16)),
            Kind::Shared(Affinity::Network) => Some((2, 0)),
            Kind::Single(f) => Some((3, f)),
            Kind::Shared(Affinity::None) | Kind::NotServed | Kind::Disabled => None,
        };
        let mut port = 0u32;
        while port <= 0xffff {
            let first = port;
            let kind = tag(port);
            while port < 0xffff && tag(port + 1) == kind {
                port += 1;
            }
            if let Some((t, f)) = kind {
                out.extend_from_slice(&(first as u16).to_be_bytes());
                out.extend_from_slice(&(port as u16).to_be_bytes());
                out.push(t);
                out.extend_from_slice(&f.to_be_bytes());
            }
            port += 1;
        }
    }
}

impl Kind {
    /// The folded word (see [`symmetric::fold`]) of a connection's value:
    /// `addresses` client then VIP as on the wire (8 or 32 bytes), `ports`
    /// client port then VIP port as one big-endian word. None when the
    /// port is not served or disabled.
    #[inline]
    pub fn folded(self, addresses: &[u8], ports: u32) -> Option<u16> {
        match self {
            Kind::Shared(Affinity::None) => Some(symmetric::fold(addresses) ^ symmetric::fold32(ports)),
            Kind::Shared(Affinity::Client) => Some(symmetric::fold(addresses)),
            Kind::Shared(Affinity::Network) => Some(network_folded(addresses)),
            Kind::Single(f) => Some(f),
            Kind::NotServed | Kind::Disabled => None,
        }
    }

    /// The connection value of client → VIP under this kind; None when
    /// the port is not served or disabled (or the pair is mixed).
    #[inline]
    pub fn value(self, client: Addr, vip: Addr, client_port: u16, vip_port: u16) -> Option<ConnectionValue> {
        let mut a = [0u8; 32];
        let n = match (client, vip) {
            (Addr::V4(c), Addr::V4(v)) => {
                a[..4].copy_from_slice(&c);
                a[4..8].copy_from_slice(&v);
                8
            }
            (Addr::V6(c), Addr::V6(v)) => {
                a[..16].copy_from_slice(&c);
                a[16..].copy_from_slice(&v);
                32
            }
            _ => return None,
        };
        let ports = u32::from(client_port) << 16 | u32::from(vip_port);
        self.folded(&a[..n], ports).map(symmetric::of_folded)
    }

    /// True when a NIC's RSS hash of the 4-tuple is this kind's value.
    #[inline]
    pub fn is_tuple(self) -> bool {
        self == Kind::Shared(Affinity::None)
    }
}

/// The connection value of every connection of a single-host rule of
/// `vip` whose first port is `first`: one value, so one bucket.
pub fn single_value(vip: Addr, first: u16) -> ConnectionValue {
    symmetric::of_folded(single_folded(vip, first))
}

/// The folded word of the client's network (/24, /48) and the VIP.
#[inline]
fn network_folded(addresses: &[u8]) -> u16 {
    if addresses.len() == 8 {
        let c = u32::from_be_bytes([addresses[0], addresses[1], addresses[2], 0]);
        let v = u32::from_be_bytes([addresses[4], addresses[5], addresses[6], addresses[7]]);
        symmetric::fold32(c ^ v)
    } else {
        symmetric::fold(&addresses[..6]) ^ symmetric::fold(&addresses[16..])
    }
}

/// The folded word of a single-host rule: the Toeplitz input (VIP, first
/// port), the same on every node.
fn single_folded(vip: Addr, first: u16) -> u16 {
    match vip {
        Addr::V4(v) => symmetric::fold(&v) ^ first,
        Addr::V6(v) => symmetric::fold(&v) ^ first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{Toeplitz, SYMMETRIC_KEY};

    const VIP4: Addr = Addr::V4([192, 0, 2, 100]);

    fn runs(ports: &[u16], rules: &[PortRule]) -> Vec<u8> {
        let mut out = Vec::new();
        PortRules::new(VIP4, ports, rules).value_runs(&mut out);
        out
    }

    fn rule(first: u16, last: u16, mode: PortMode) -> PortRule {
        PortRule {
            first,
            last,
            tcp: true,
            udp: false,
            mode,
        }
    }

    #[test]
    fn the_value_description_names_every_port_whose_value_is_not_the_tuple() {
        let client = PortMode::Shared(Affinity::Client);
        // 4-tuple, disabled and unserved ports: nothing to agree on.
        assert!(runs(&[80, 443], &[]).is_empty());
        assert!(runs(
            &[80],
            &[
                rule(8000, 8099, PortMode::Disabled),
                rule(9000, 9000, PortMode::Shared(Affinity::None))
            ]
        )
        .is_empty());
        // One run per range, with its kind.
        let a = runs(
            &[80],
            &[
                rule(80, 80, client),
                rule(8000, 8099, PortMode::Shared(Affinity::Network)),
            ],
        );
        assert_eq!(a, [0, 80, 0, 80, 1, 0, 0, 0x1f, 0x40, 0x1f, 0xa3, 2, 0, 0]);
        // Another affinity, range or single port gives another description;
        // the same rules written as two adjacent ranges give the same one.
        assert_ne!(
            a,
            runs(
                &[80],
                &[
                    rule(80, 80, PortMode::Shared(Affinity::Network)),
                    rule(8000, 8099, PortMode::Shared(Affinity::Network))
                ]
            )
        );
        assert_ne!(
            a,
            runs(
                &[80],
                &[
                    rule(80, 80, client),
                    rule(8000, 8098, PortMode::Shared(Affinity::Network))
                ]
            )
        );
        assert_eq!(
            a,
            runs(
                &[],
                &[
                    rule(80, 80, client),
                    rule(8000, 8049, PortMode::Shared(Affinity::Network)),
                    rule(8050, 8099, PortMode::Shared(Affinity::Network))
                ]
            )
        );
        let single = runs(&[], &[rule(8080, 8081, PortMode::Single)]);
        assert_eq!(single[..5], [0x1f, 0x90, 0x1f, 0x91, 3]);
        assert_ne!(single, runs(&[], &[rule(8081, 8081, PortMode::Single)]));
        // The edges of the port space.
        let edge = runs(&[], &[rule(1, 1, client), rule(65535, 65535, client)]);
        assert_eq!(edge, [0, 1, 0, 1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 0]);
    }

    fn v6(last: u16, mid: u16) -> Addr {
        let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        a[4..6].copy_from_slice(&mid.to_be_bytes());
        a[14..16].copy_from_slice(&last.to_be_bytes());
        Addr::V6(a)
    }

    #[test]
    fn client_affinity_is_the_l3_toeplitz_for_any_port() {
        let t = Toeplitz::new(&SYMMETRIC_KEY);
        let vip6 = v6(0x100, 0);
        for (client, vip) in [
            (Addr::V4([192, 0, 2, 10]), VIP4),
            (Addr::V4([192, 0, 2, 77]), VIP4),
            (v6(0x10, 0), vip6),
            (v6(0xbeef, 0x1234), vip6),
        ] {
            // What a NIC hashing IPv4/IPv6 on addresses alone gives.
            let l3 = t.addresses(client, vip);
            for (p, q) in [(1024, 80), (40000, 80), (65535, 443), (1, 8080)] {
                assert_eq!(Kind::Shared(Affinity::Client).value(client, vip, p, q), Some(l3));
            }
            // And the 4-tuple differs with the ports.
            assert_eq!(
                Kind::Shared(Affinity::None).value(client, vip, 1024, 80),
                Some(t.tuple(client, vip, 1024, 80))
            );
        }
    }

    #[test]
    fn network_affinity_is_the_same_in_a_24_or_a_48() {
        let t = Toeplitz::new(&SYMMETRIC_KEY);
        let k = Kind::Shared(Affinity::Network);
        let want = t.addresses(Addr::V4([192, 0, 2, 0]), VIP4);
        for host in 0..=255u8 {
            for (p, q) in [(1024, 80), (50000, 443)] {
                assert_eq!(k.value(Addr::V4([192, 0, 2, host]), VIP4, p, q), Some(want));
            }
        }
        // Another /24 is another network (and here another value).
        assert_ne!(k.value(Addr::V4([192, 0, 3, 1]), VIP4, 1, 80), Some(want));
        let vip6 = v6(0x100, 0);
        let want6 = t.addresses(v6(0, 0), vip6);
        for last in [0u16, 1, 0x10, 0xffff] {
            assert_eq!(k.value(v6(last, 0), vip6, 7, 80), Some(want6));
            // Bits 48 to 63 are the subnet's: the same /48.
            let Addr::V6(mut a) = v6(last, 0) else { unreachable!() };
            a[6] = 0xab;
            a[7] = last as u8;
            assert_eq!(k.value(Addr::V6(a), vip6, 7, 80), Some(want6));
        }
        // Bits 32 to 47 are the network's.
        assert_ne!(k.value(v6(0, 1), vip6, 7, 80), Some(want6));
        assert_eq!(k.value(Addr::V4([192, 0, 2, 1]), vip6, 7, 80), None, "mixed");
    }

    #[test]
    fn a_single_host_rule_has_one_value_and_classes_follow_the_rules() {
        let rules = [
            PortRule {
                first: 8000,
                last: 8009,
                tcp: true,
                udp: false,
                mode: PortMode::Single,
            },
            PortRule {
                first: 81,
                last: 81,
                tcp: true,
                udp: false,
                mode: PortMode::Disabled,
            },
            PortRule {
                first: 443,
                last: 443,
                tcp: true,
                udp: false,
                mode: PortMode::Shared(Affinity::Client),
            },
            PortRule {
                first: 9000,
                last: 9001,
                tcp: true,
                udp: false,
                mode: PortMode::Shared(Affinity::None),
            },
        ];
        let r = PortRules::new(VIP4, &[80, 443], &rules);
        assert_eq!(r.class(80), PLAIN);
        assert_eq!(r.class(9001), PLAIN, "a 4-tuple rule serves its ports plainly");
        assert_eq!(r.class(82), NOT_SERVED);
        assert_eq!(r.kind_of(81), Kind::Disabled);
        assert!(!r.serves(81) && r.serves(8005) && r.serves(443) && !r.serves(7999));
        assert_eq!(r.kind_of(443), Kind::Shared(Affinity::Client));
        let single = r.kind_of(8003);
        let v = single.value(Addr::V4([192, 0, 2, 10]), VIP4, 1234, 8003);
        assert!(v.is_some());
        for (c, p, q) in [([192, 0, 2, 11], 5, 8000), ([198, 51, 100, 1], 65535, 8009)] {
            assert_eq!(single.value(Addr::V4(c), VIP4, p, q), v);
        }
        // The Toeplitz of (VIP, first port).
        let input = [192, 0, 2, 100, (8000u16 >> 8) as u8, 8000u16 as u8];
        assert_eq!(
            v,
            Some(ConnectionValue(Toeplitz::new(&SYMMETRIC_KEY).hash_bytes(&input)))
        );
        assert_eq!(Kind::Disabled.value(VIP4, VIP4, 1, 2), None);
        assert_eq!(r.kind(200), Kind::NotServed, "an unknown class is not served");
    }
}
