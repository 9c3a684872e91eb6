//! The packet decisions of one node, apart from any packet I/O.
//!
//! [`Classifier::from_wire`] decides what happens to a frame received on the
//! wire port: up to the kernel, answered in place (ARP and neighbour
//! solicitations for a VIP), or dropped with a reason. A worker splits it in
//! two over a burst: [`Classifier::look`] at every frame first (a fast path
//! for plain TCP to a unicast MAC: fixed-offset loads, the connection
//! value, the bucket's gate, the flow table's line prefetched),
//! then [`Classifier::decide`] each one with what the look carried. Frames
//! off the fast path go through the full parser ([`packet::parse`]), so
//! every counter is the same either way ([`Classifier::from_wire_full`] is
//! that reference path, for tests and fuzzing).
//! [`Classifier::from_kernel`] decides what happens to a frame the kernel
//! sends through the exception port. Both read and rewrite the frame
//! through [`PacketBuf`], which a DPDK mbuf and a plain test buffer
//! implement, and return a [`Counter`] that names the outcome.

use crate::addr::{Addr, Mac};
pub use crate::counters::Action;
use crate::counters::Counter;
use crate::flow::{FlowKey, FlowRef, FlowState, FlowTable, Group, GroupStore, Touch};
use crate::hash::{symmetric, ConnectionValue};
use crate::header::{self, ethernet, icmp, ipv4, ipv6, tcp};
use crate::ownership::{BucketState, OwnershipView};
use crate::packet::{self, arp, ethertype, proto, tcp_flags, Frame, Ip, Payload, L4};
use crate::rules::{Kind, PortRule, PortRules, PLAIN};

/// A frame buffer the classifier can read and rewrite.
pub trait PacketBuf {
    /// The frame's bytes (the first segment's, for a chained mbuf).
    fn bytes(&self) -> &[u8];
    /// The frame's bytes, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Grows or shrinks the frame to `len` bytes; false when the buffer
    /// cannot hold that many.
    fn set_len(&mut self, len: usize) -> bool;
}

/// A frame in a fixed buffer of `N` bytes (2 KiB unless said), like an
/// mbuf's data room: for deciding frames outside a worker (tests,
/// fixtures, fuzzing, benchmarks).
#[derive(Clone)]
pub struct FrameBuf<const N: usize = 2048> {
    data: [u8; N],
    len: usize,
}

impl<const N: usize> FrameBuf<N> {
    /// A buffer holding `frame` (cut at `N` bytes).
    pub fn new(frame: &[u8]) -> Self {
        let mut b = FrameBuf { data: [0u8; N], len: 0 };
        b.load(frame);
        b
    }

    /// Replaces the content with `frame` (cut at `N` bytes).
    pub fn load(&mut self, frame: &[u8]) {
        let len = frame.len().min(N);
        self.data[..len].copy_from_slice(&frame[..len]);
        self.len = len;
    }
}

impl<const N: usize> PacketBuf for FrameBuf<N> {
    fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }
    fn set_len(&mut self, len: usize) -> bool {
        if len > self.data.len() {
            return false;
        }
        self.len = len;
        true
    }
}

/// A virtual IP served by the cluster.
#[derive(Clone, Debug)]
pub struct Vip {
    /// The address.
    pub addr: Addr,
    tcp_ports: PortRules,
    udp_ports: PortRules,
}

impl Vip {
    /// A VIP serving `tcp_ports` and `udp_ports`, shared with the 4-tuple
    /// as connection value.
    pub fn new(addr: Addr, tcp_ports: &[u16], udp_ports: &[u16]) -> Self {
        Vip::with_rules(addr, tcp_ports, udp_ports, &[])
    }

    /// A VIP serving `tcp_ports` and `udp_ports` with the 4-tuple, and the
    /// ports of `rules` as they say (see [`crate::rules`]): a rule's ports
    /// are served (or disabled) whether listed or not.
    pub fn with_rules(addr: Addr, tcp_ports: &[u16], udp_ports: &[u16], rules: &[PortRule]) -> Self {
        let tcp: Vec<PortRule> = rules.iter().filter(|r| r.tcp).copied().collect();
        let udp: Vec<PortRule> = rules.iter().filter(|r| r.udp).copied().collect();
        Vip {
            addr,
            tcp_ports: PortRules::new(addr, tcp_ports, &tcp),
            udp_ports: PortRules::new(addr, udp_ports, &udp),
        }
    }

    /// Appends the canonical description of this VIP's ports whose
    /// connection value is not the 4-tuple's (see
    /// [`PortRules::value_runs`]), behind the address: nothing when every
    /// served port takes the 4-tuple. Members must agree on it.
    pub fn value_rules(&self, out: &mut Vec<u8>) {
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        self.tcp_ports.value_runs(&mut tcp);
        self.udp_ports.value_runs(&mut udp);
        if tcp.is_empty() && udp.is_empty() {
            return;
        }
        let a = self.addr.bytes();
        out.push(a.len() as u8);
        out.extend_from_slice(a);
        for (proto, runs) in [(6u8, tcp), (17, udp)] {
            out.push(proto);
            out.extend_from_slice(&(runs.len() as u32).to_be_bytes());
            out.extend_from_slice(&runs);
        }
    }

    /// True when TCP `port` is served (shared or by one node).
    pub fn serves_tcp(&self, port: u16) -> bool {
        self.tcp_ports.serves(port)
    }

    /// What TCP `port` is.
    pub fn tcp_kind(&self, port: u16) -> Kind {
        self.tcp_ports.kind_of(port)
    }

    /// What UDP `port` is.
    pub fn udp_kind(&self, port: u16) -> Kind {
        self.udp_ports.kind_of(port)
    }
}

/// The connection value of a segment to a port of `kind`: the NIC's `rss`
/// only where the value is the 4-tuple's; the drop when the port is not
/// served or disabled.
#[inline]
fn rule_value(
    kind: Kind,
    rss: Option<u32>,
    client: Addr,
    vip: Addr,
    client_port: u16,
    vip_port: u16,
) -> Result<ConnectionValue, Counter> {
    match (kind, rss) {
        (Kind::NotServed, _) => Err(Counter::DropVipPortNotServed),
        (Kind::Disabled, _) => Err(Counter::DropVipPortDisabled),
        (Kind::Shared(crate::rules::Affinity::None), Some(v)) => Ok(ConnectionValue(v)),
        _ => kind
            .value(client, vip, client_port, vip_port)
            .ok_or(Counter::DropVipPortNotServed),
    }
}

/// The addresses a node's classifier works with.
#[derive(Clone, Debug)]
pub struct NodeAddresses {
    /// The MAC of the node's wire port: the source of everything it sends.
    pub node_mac: Mac,
    /// The MAC of the kernel's side of the exception port.
    pub kernel_mac: Mac,
    /// The MAC the VIPs resolve to (never used as a source).
    pub cluster_mac: Mac,
    /// The VIPs.
    pub vips: Vec<Vip>,
}

/// The state a worker passes in with each frame.
pub struct Context<'a, G = Box<[Group]>> {
    /// This node's rights on each bucket.
    pub view: &'a OwnershipView,
    /// This worker's flow table.
    pub flows: &'a mut FlowTable<G>,
    /// Now, in milliseconds (wrapping).
    pub now_ms: u32,
    /// The NIC's RSS hash of the frame, only when it is the connection
    /// value: the port hashes the frame's packet type with the Toeplitz
    /// function of the 4-tuple and the cluster's key (see
    /// [`crate::hash::nic`]); None to compute the value.
    pub rss: Option<u32>,
}

/// What [`Classifier::look`] found in a wire frame, carried to
/// [`Classifier::decide`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Look(Seen);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Seen {
    /// Not on the fast path: the full parser decides.
    Full,
    /// Decided already, after the same checks as the full parser's.
    Done(Counter),
    /// A TCP segment to a served VIP port (by its fixed offsets) in a
    /// closed bucket, decided before the frame was validated: every
    /// outcome of such a frame is a drop (a bucket neither held nor with
    /// flows here stays so for the burst, as only held buckets get new
    /// flows and the view changes between bursts), counted by its flags as
    /// a well-formed one would be ([`closed_tcp`]), malformed or not.
    Closed(Counter),
    /// A plain TCP segment to a served VIP port in an open bucket; its
    /// flow's group is prefetched. `to_node`: sent to the node's MAC, not
    /// the cluster's (for the rewrite on the way up).
    Tcp { flags: u8, flow: FlowRef, to_node: bool },
    /// A plain TCP segment for the node itself (its MAC, not a VIP).
    Local,
}

impl Look {
    /// A frame the full parser decides.
    pub const FULL: Look = Look(Seen::Full);

    /// A frame decided before [`Classifier::decide`] (e.g. a chained mbuf).
    pub fn decided(outcome: Counter) -> Look {
        Look(Seen::Done(outcome))
    }

    /// The outcome, when the look alone decided the frame (a drop, such
    /// as every frame of a closed bucket): [`Classifier::decide`] would
    /// return it unchanged, without touching the frame.
    #[inline(always)]
    pub fn outcome(&self) -> Option<Counter> {
        match self.0 {
            Seen::Done(c) | Seen::Closed(c) => Some(c),
            _ => None,
        }
    }

    /// True when the look dropped the frame as one of a closed bucket
    /// before validating it (see [`Classifier::look`]): the full parser
    /// may count a malformed one by another reason, but drops it too.
    pub fn is_closed_unvalidated(&self) -> bool {
        matches!(self.0, Seen::Closed(_))
    }

    /// True when the look took the fast path (for tests and benchmarks).
    pub fn is_fast(&self) -> bool {
        !matches!(self.0, Seen::Full)
    }
}

impl Default for Look {
    fn default() -> Self {
        Look::FULL
    }
}

/// The NIC's word on a frame's IPv4 header checksum, from a port that
/// verifies it (`RTE_MBUF_F_RX_IP_CKSUM_GOOD` / `_BAD`): the fast path then
/// trusts it instead of summing the header. `Unknown` for every other
/// frame and port.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum IpChecksum {
    /// Not verified: the fast path sums the header itself.
    #[default]
    Unknown,
    /// Verified good by the NIC.
    Good,
    /// Verified bad by the NIC: the full parser decides (and counts it).
    Bad,
}

/// Whom a fast-path frame is sent to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dest {
    /// The cluster MAC.
    Cluster,
    /// The node's own MAC.
    Node,
    /// Another unicast MAC (flooded by the switch).
    Other,
}

/// What the fast path read from a frame. The addresses stay in the frame
/// until a frame of an open bucket needs them for its flow's key (most
/// frames of a node that is one of many do not).
struct FastTcp<'a> {
    dest: Dest,
    /// Client then VIP address, as on the wire: 8 bytes (IPv4) or 32.
    addresses: &'a [u8],
    client_port: u16,
    vip_port: u16,
    flags: u8,
    /// XOR of the 16-bit words the connection value covers (see
    /// [`symmetric`]): the tuple's, unless a port rule says otherwise.
    folded: u16,
    /// The value is the 4-tuple's (a NIC's RSS hash may stand for it).
    tuple: bool,
}

impl FastTcp<'_> {
    /// The VIP address (the destination).
    #[inline(always)]
    fn vip(&self) -> Addr {
        self.address(1)
    }

    /// The client address (the source).
    #[inline(always)]
    fn client(&self) -> Addr {
        self.address(0)
    }

    /// Address `i` of the two (0 the client's, 1 the VIP's).
    #[inline(always)]
    fn address(&self, i: usize) -> Addr {
        let a = self.addresses;
        match a.len() {
            8 => {
                let mut v = [0u8; 4];
                v.copy_from_slice(&a[4 * i..4 * i + 4]);
                Addr::V4(v)
            }
            _ => {
                let mut v = [0u8; 16];
                v.copy_from_slice(&a[16 * i..16 * i + 16]);
                Addr::V6(v)
            }
        }
    }
}

/// The fixed header lengths the fast path and the first looks read at.
mod fixed_len {
    use crate::header::{ethernet, ipv4, ipv6, tcp};
    /// Ethernet, untagged.
    pub const ETH: usize = ethernet::Header::<&[u8]>::LEN;
    /// IPv4 without options.
    pub const V4: usize = ipv4::Header::<&[u8]>::LEN;
    /// IPv6 without extension headers.
    pub const V6: usize = ipv6::Header::<&[u8]>::LEN;
    /// TCP without options.
    pub const TCP: usize = tcp::Header::<&[u8]>::LEN;
}

/// What the first look reads of a TCP segment to a served VIP port from
/// fixed offsets alone (EtherType, version and IHL, protocol, destination
/// address, ports): enough to find its bucket, not to trust the frame.
struct Quick<'a> {
    /// The frame as read: client then VIP address, ports and flags.
    tcp: FastTcp<'a>,
    /// Offset of the TCP header.
    l4: usize,
}

/// The outcome of a TCP segment to a VIP port in a closed bucket (see
/// [`crate::flow::BucketGate::is_closed`]), as the accept rules give it.
#[inline]
fn closed_tcp(flags: u8) -> Counter {
    use tcp_flags::{ACK, FIN, RST, SYN};
    if flags & SYN == 0 {
        Counter::DropNotOwner
    } else if flags & (FIN | RST) != 0 {
        Counter::DropTcpBadFlags
    } else if flags & ACK == 0 {
        Counter::DropSynNotOwner
    } else {
        Counter::DropNotOwner
    }
}

/// A node's packet decisions. See the module documentation.
pub struct Classifier {
    addrs: NodeAddresses,
    /// The IPv4 VIPs and their TCP ports, for the first look (the ports
    /// beside the address: one load fewer than through `addrs.vips`).
    vips4: Box<[([u8; 4], PortRules)]>,
    /// The IPv6 VIPs, the same.
    vips6: Box<[([u8; 16], PortRules)]>,
    /// Frames going up to the cluster MAC get the kernel's MAC as
    /// destination (unless it is the kernel's own), also when the cluster
    /// MAC is a multicast one: the kernel's TCP takes only frames addressed
    /// to the host.
    rewrite_cluster_mac: bool,
    /// The same for the node's MAC.
    rewrite_node_mac: bool,
    /// The exchange's UDP port and the addresses allowed to reach it (its
    /// members and coordinator): anything else to that port is dropped
    /// here, before the exception path, so a flood from elsewhere cannot
    /// crowd out the heartbeats on their way to the kernel.
    exchange: Option<(u16, crate::exchange_guard::ExchangeSources)>,
}

impl Classifier {
    /// A classifier for a node with these addresses.
    pub fn new(addrs: NodeAddresses) -> Self {
        let vips4 = (addrs.vips.iter())
            .filter_map(|v| match v.addr {
                Addr::V4(a) => Some((a, v.tcp_ports.clone())),
                Addr::V6(_) => None,
            })
            .collect();
        let vips6 = (addrs.vips.iter())
            .filter_map(|v| match v.addr {
                Addr::V6(a) => Some((a, v.tcp_ports.clone())),
                Addr::V4(_) => None,
            })
            .collect();
        Classifier {
            vips4,
            vips6,
            rewrite_cluster_mac: addrs.cluster_mac != addrs.kernel_mac,
            rewrite_node_mac: !addrs.node_mac.is_group() && addrs.node_mac != addrs.kernel_mac,
            addrs,
            exchange: None,
        }
    }

    /// Lets only `members` reach the node's UDP `port` (the exchange):
    /// datagrams to that port from anywhere else are dropped and counted
    /// (`drop_exchange_not_member`), the members' counted apart
    /// (`kernel_exchange`). The set may change while the workers run (the
    /// member directory changed): every clone of it sees the change.
    pub fn guard_exchange(&mut self, port: u16, members: impl Into<crate::exchange_guard::ExchangeSources>) {
        self.exchange = Some((port, members.into()));
    }

    /// A frame for the node itself: the exchange's port only from members.
    #[inline]
    fn local(&self, ip: &Ip) -> Counter {
        match (&self.exchange, ip.l4) {
            (Some((port, members)), L4::Udp { dst_port, .. }) if dst_port == *port => {
                if members.contains(&ip.src) {
                    Counter::KernelExchange
                } else {
                    Counter::DropExchangeNotMember
                }
            }
            _ => Counter::KernelLocal,
        }
    }

    /// The node's addresses.
    pub fn addresses(&self) -> &NodeAddresses {
        &self.addrs
    }

    /// The connection value of TCP client → VIP, as every node computes
    /// it: by the port's rule (see [`crate::rules`]); the 4-tuple's for a
    /// port that is not served.
    #[inline]
    pub fn connection_value(&self, client: Addr, vip: Addr, client_port: u16, vip_port: u16) -> ConnectionValue {
        self.vip(vip)
            .and_then(|v| v.tcp_ports.kind_of(vip_port).value(client, vip, client_port, vip_port))
            .unwrap_or_else(|| symmetric::tuple(client, vip, client_port, vip_port))
    }

    /// The place in the flow table of the TCP connection client → VIP,
    /// with its value by the port's rule (for flows learnt elsewhere, such
    /// as the kernel's at start).
    pub fn flow_ref(&self, client: Addr, client_port: u16, vip: Addr, vip_port: u16) -> FlowRef {
        let value = self.connection_value(client, vip, client_port, vip_port);
        FlowRef::new(&FlowKey::new(client, client_port, vip, vip_port), value)
    }

    /// True when `vip` is a VIP serving TCP `port`.
    pub fn serves_tcp(&self, vip: Addr, port: u16) -> bool {
        self.vip(vip).is_some_and(|v| v.serves_tcp(port))
    }

    #[inline]
    fn vip(&self, addr: Addr) -> Option<&Vip> {
        self.addrs.vips.iter().find(|v| v.addr == addr)
    }

    /// Reads a plain TCP segment to a unicast MAC with fixed-offset loads:
    /// untagged, IPv4 with a 20-byte header and a good checksum or IPv6
    /// with no extension header, not a fragment, lengths consistent, a
    /// source MAC that is not spoofed. Anything else is None, for the full
    /// parser: every frame the fast path takes, the full path would parse
    /// to the same fields.
    #[inline]
    fn fast_tcp<'a>(&self, frame: &'a [u8], checksum: IpChecksum) -> Option<FastTcp<'a>> {
        // As the full parser: never look past 64 KiB.
        let frame = &frame[..frame.len().min(usize::from(u16::MAX))];
        use fixed_len::{ETH, TCP, V4, V6};
        if frame.len() < ETH + V4 + TCP {
            return None;
        }
        let eth = ethernet::Header::new_unchecked(frame);
        if eth.dst_is_group() || eth.src_is_group() {
            return None;
        }
        let dst = eth.dst();
        let dest = if dst == self.addrs.cluster_mac {
            Dest::Cluster
        } else if dst == self.addrs.node_mac {
            Dest::Node
        } else {
            Dest::Other
        };
        let src = eth.src();
        if src == self.addrs.cluster_mac || src == self.addrs.node_mac {
            return None;
        }
        let l3 = &frame[ETH..];
        let (l4, addresses) = match eth.ethertype() {
            ethertype::IPV4 => {
                let ip = ipv4::Header::new_unchecked(l3);
                let total = ip.total_len();
                if ip.version_ihl() != ipv4::VERSION_IHL_PLAIN
                    || total < V4 + TCP
                    || total > l3.len()
                    || ip.fragment() & (ipv4::MORE_FRAGMENTS | ipv4::OFFSET_MASK) != 0
                    || ip.protocol() != proto::TCP
                    || !checksum_ok(&ip, checksum)
                {
                    return None;
                }
                (&l3[V4..total], &l3[ipv4::field::ADDRESSES])
            }
            ethertype::IPV6 => {
                let ip = ipv6::Header::new_checked(l3)?;
                let payload = ip.payload_len();
                if ip.version() != 6 || ip.next_header() != proto::TCP || payload < TCP || V6 + payload > l3.len() {
                    return None;
                }
                (&l3[V6..V6 + payload], &l3[ipv6::field::ADDRESSES])
            }
            _ => return None,
        };
        let t = tcp::Header::new_unchecked(l4);
        let data_offset = t.header_len();
        if data_offset < TCP || data_offset > l4.len() {
            return None;
        }
        let ports = t.ports();
        Some(FastTcp {
            dest,
            addresses,
            client_port: (ports >> 16) as u16,
            vip_port: ports as u16,
            flags: t.flags(),
            folded: symmetric::fold(addresses) ^ symmetric::fold32(ports),
            tuple: true,
        })
    }

    /// Reads a TCP segment to a served VIP port from fixed offsets only:
    /// an IPv4 header of 20 bytes or an IPv6 header, protocol TCP, the
    /// destination a VIP, the destination port served by it. Nothing else
    /// is checked (MACs, lengths, fragments, checksum): enough to find the
    /// frame's bucket, not to send it anywhere. None for anything else.
    #[inline(always)]
    fn quick<'a>(&self, frame: &'a [u8]) -> Option<Quick<'a>> {
        use fixed_len::{ETH, TCP, V4, V6};
        if frame.len() < ETH + V4 + TCP {
            return None;
        }
        let eth = ethernet::Header::new_unchecked(frame);
        let l3 = &frame[ETH..];
        let (ports_served, addresses, l4) = match eth.ethertype() {
            ethertype::IPV4 => {
                let ip = ipv4::Header::new_unchecked(l3);
                if ip.version_ihl() != ipv4::VERSION_IHL_PLAIN || ip.protocol() != proto::TCP {
                    return None;
                }
                let dst = ip.dst();
                let (_, ports) = self.vips4.iter().find(|(a, _)| *a == dst)?;
                (ports, &l3[ipv4::field::ADDRESSES], ETH + V4)
            }
            ethertype::IPV6 => {
                if frame.len() < ETH + V6 + TCP {
                    return None;
                }
                let ip = ipv6::Header::new_unchecked(l3);
                if ip.version() != 6 || ip.next_header() != proto::TCP {
                    return None;
                }
                let dst = ip.dst();
                let (_, ports) = self.vips6.iter().find(|(a, _)| *a == dst)?;
                (ports, &l3[ipv6::field::ADDRESSES], ETH + V6)
            }
            _ => return None,
        };
        let t = tcp::Header::new_unchecked(&frame[l4..]);
        let ports = t.ports();
        // One byte per port: the common case (4-tuple) is one compare; a
        // port of a rule costs its kind's fold, one not served or disabled
        // goes to the checks that count it.
        let class = ports_served.class(ports as u16);
        let (folded, tuple) = if class == PLAIN {
            (symmetric::fold(addresses) ^ symmetric::fold32(ports), true)
        } else {
            (ports_served.kind(class).folded(addresses, ports)?, false)
        };
        Some(Quick {
            tcp: FastTcp {
                dest: Dest::Other,
                addresses,
                client_port: (ports >> 16) as u16,
                vip_port: ports as u16,
                flags: t.flags(),
                folded,
                tuple,
            },
            l4,
        })
    }

    /// The rest of the fast path's checks on a frame [`Classifier::quick`]
    /// read (see [`Classifier::fast_tcp`]): its destination, or None for
    /// the full parser.
    #[inline(always)]
    fn validate(&self, frame: &[u8], q: &Quick<'_>, checksum: IpChecksum) -> Option<Dest> {
        use fixed_len::{ETH, TCP, V4, V6};
        // As the full parser: never look past 64 KiB.
        let frame = &frame[..frame.len().min(usize::from(u16::MAX))];
        let eth = ethernet::Header::new_unchecked(frame);
        if eth.dst_is_group() || eth.src_is_group() {
            return None;
        }
        let src = eth.src();
        if src == self.addrs.cluster_mac || src == self.addrs.node_mac {
            return None;
        }
        let l3 = &frame[ETH..];
        let end = if q.l4 == ETH + V4 {
            let ip = ipv4::Header::new_unchecked(l3);
            let total = ip.total_len();
            if total < V4 + TCP
                || total > l3.len()
                || ip.fragment() & (ipv4::MORE_FRAGMENTS | ipv4::OFFSET_MASK) != 0
                || !checksum_ok(&ip, checksum)
            {
                return None;
            }
            ETH + total
        } else {
            let payload = ipv6::Header::new_unchecked(l3).payload_len();
            if payload < TCP || V6 + payload > l3.len() {
                return None;
            }
            ETH + V6 + payload
        };
        let data_offset = tcp::Header::new_unchecked(&frame[q.l4..]).header_len();
        if data_offset < TCP || q.l4 + data_offset > end {
            return None;
        }
        let dst = eth.dst();
        Some(if dst == self.addrs.cluster_mac {
            Dest::Cluster
        } else if dst == self.addrs.node_mac {
            Dest::Node
        } else {
            Dest::Other
        })
    }

    /// The first look at a wire frame, for a whole burst before any of it
    /// is decided. A TCP segment to a served VIP port is placed first,
    /// from fixed offsets (`Classifier::quick`): the connection value's
    /// bucket (the NIC's `rss` when given, else the bitmap indexed by the
    /// tuple's folded word), and a frame of a closed bucket is dropped
    /// there, unvalidated (see [`Look::is_closed_unvalidated`]). Frames
    /// of open buckets, and every other frame, are validated as the full
    /// parser would (the fast path, see the module documentation; else the
    /// full parser decides): the connection value, and the flow's place in
    /// the table, whose line is prefetched. Changes nothing. `flows` must
    /// have followed the burst's view ([`FlowTable::follow`]).
    #[inline]
    pub fn look<G: GroupStore>(&self, frame: &[u8], rss: Option<u32>, flows: &FlowTable<G>) -> Look {
        self.look_offloaded(frame, rss, IpChecksum::Unknown, flows)
    }

    /// [`Classifier::look`] with the NIC's word on the IPv4 header
    /// checksum (see [`IpChecksum`]).
    #[inline]
    pub fn look_offloaded<G: GroupStore>(
        &self,
        frame: &[u8],
        rss: Option<u32>,
        checksum: IpChecksum,
        flows: &FlowTable<G>,
    ) -> Look {
        if let Some(q) = self.quick(frame) {
            let rss = rss.filter(|_| q.tcp.tuple);
            let open = match rss {
                Some(v) => flows.is_open(ConnectionValue(v)),
                None => flows.is_open_folded(q.tcp.folded),
            };
            if !open {
                return Look(Seen::Closed(closed_tcp(q.tcp.flags)));
            }
            let Some(dest) = self.validate(frame, &q, checksum) else {
                return Look::FULL;
            };
            return self.look_vip_tcp(FastTcp { dest, ..q.tcp }, rss, true, flows);
        }
        let Some(t) = self.fast_tcp(frame, checksum) else {
            return Look::FULL;
        };
        // As the full path: not for us, then the destination address.
        if t.dest == Dest::Other {
            return Look(Seen::Done(Counter::DropNotForUs));
        }
        let Some(vip) = self.vip(t.vip()) else {
            return Look(match t.dest {
                Dest::Cluster => Seen::Done(Counter::DropClusterMacNotVip),
                _ => Seen::Local,
            });
        };
        let kind = vip.tcp_ports.kind_of(t.vip_port);
        let t = match kind {
            Kind::NotServed => return Look(Seen::Done(Counter::DropVipPortNotServed)),
            Kind::Disabled => return Look(Seen::Done(Counter::DropVipPortDisabled)),
            _ if kind.is_tuple() => t,
            _ => {
                let ports = u32::from(t.client_port) << 16 | u32::from(t.vip_port);
                let Some(folded) = kind.folded(t.addresses, ports) else {
                    return Look::FULL;
                };
                FastTcp {
                    folded,
                    tuple: false,
                    ..t
                }
            }
        };
        let rss = rss.filter(|_| t.tuple);
        self.look_vip_tcp(t, rss, false, flows)
    }

    /// The look at a valid TCP segment to a served VIP port (`open`: its
    /// bucket is known to be open).
    #[inline(always)]
    fn look_vip_tcp<G: GroupStore>(&self, t: FastTcp<'_>, rss: Option<u32>, open: bool, flows: &FlowTable<G>) -> Look {
        if t.dest == Dest::Other {
            return Look(Seen::Done(Counter::DropNotForUs));
        }
        let value = rss
            .map(ConnectionValue)
            .unwrap_or_else(|| symmetric::of_folded(t.folded));
        if !open && !flows.is_open(value) {
            return Look(Seen::Done(closed_tcp(t.flags)));
        }
        let flow = FlowRef::new(&FlowKey::new(t.client(), t.client_port, t.vip(), t.vip_port), value);
        flows.prefetch(&flow);
        Look(Seen::Tcp {
            flags: t.flags,
            flow,
            to_node: t.dest == Dest::Node,
        })
    }

    /// Decides a frame from the wire with what [`Classifier::look`] found
    /// in it (the frame must be the one looked at, unchanged since). The
    /// frame may be rewritten, as by [`Classifier::from_wire`].
    #[inline]
    pub fn decide<B: PacketBuf, G: GroupStore>(&self, buf: &mut B, look: Look, cx: &mut Context<'_, G>) -> Counter {
        match look.0 {
            Seen::Full => self.from_wire_full(buf, cx),
            Seen::Done(outcome) | Seen::Closed(outcome) => outcome,
            Seen::Tcp { flags, flow, to_node } => {
                let outcome = self.vip_tcp(flags, Some(&flow), cx);
                let rewrite = if to_node {
                    self.rewrite_node_mac
                } else {
                    self.rewrite_cluster_mac
                };
                if outcome.action() == Action::ToKernel && rewrite {
                    ethernet::Header::new_unchecked(buf.bytes_mut()).set_dst(self.addrs.kernel_mac);
                }
                outcome
            }
            Seen::Local => {
                if self.rewrite_node_mac {
                    ethernet::Header::new_unchecked(buf.bytes_mut()).set_dst(self.addrs.kernel_mac);
                }
                Counter::KernelLocal
            }
        }
    }

    /// Decides a frame received on the wire port. The frame may be
    /// rewritten: destination MAC of frames going up, or a whole reply.
    pub fn from_wire<B: PacketBuf, G: GroupStore>(&self, buf: &mut B, cx: &mut Context<'_, G>) -> Counter {
        cx.flows.follow(cx.view);
        let look = self.look(buf.bytes(), cx.rss, cx.flows);
        self.decide(buf, look, cx)
    }

    /// [`Classifier::from_wire`] through the full parser only: the
    /// reference the fast path is tested against.
    pub fn from_wire_full<B: PacketBuf, G: GroupStore>(&self, buf: &mut B, cx: &mut Context<'_, G>) -> Counter {
        cx.flows.follow(cx.view);
        let frame = match packet::parse(buf.bytes()) {
            Ok(f) => f,
            Err(e) => return Counter::malformed(e),
        };
        if frame.src == self.addrs.node_mac || frame.src == self.addrs.cluster_mac || frame.src.is_group() {
            return Counter::DropSpoofedSource;
        }
        let for_cluster = frame.dst == self.addrs.cluster_mac;
        let for_node = frame.dst == self.addrs.node_mac;
        if !for_cluster && !for_node && !frame.dst.is_group() {
            return Counter::DropNotForUs;
        }
        match frame.payload {
            Payload::Arp(a) => self.wire_arp(buf, &frame, &a),
            Payload::Ipv4(ip) | Payload::Ipv6(ip) => match self.vip(ip.dst) {
                Some(vip) => self.wire_vip(buf, &frame, &ip, vip, cx),
                None if ip.l4
                    == (L4::Icmp {
                        kind: icmp::nd::NEIGHBOUR_SOLICIT,
                        code: 0,
                    }) =>
                {
                    self.wire_ndp_solicit(buf, &frame, &ip)
                }
                None if for_cluster => Counter::DropClusterMacNotVip,
                None => match self.local(&ip) {
                    Counter::DropExchangeNotMember => Counter::DropExchangeNotMember,
                    outcome => self.up(buf, &frame, outcome),
                },
            },
            Payload::Other(_) if for_cluster => Counter::DropClusterMacNotVip,
            Payload::Other(_) => self.up(buf, &frame, Counter::KernelLocal),
        }
    }

    /// Takes back what deciding `frame` wrote in the flow table, for a
    /// frame accepted under the lease ([`Counter::rests_on_lease`]) that is
    /// not delivered because the lease ran out before it reached the
    /// kernel: the flow of a new connection or of an adopted segment is
    /// forgotten, so the segments that follow (the new owner's connection)
    /// are decided as another node's and never reach this kernel. `frame`
    /// is the frame as decided (only its destination MAC may differ);
    /// `rss` as given when it was decided. Returns the flow's place, when
    /// the frame is a VIP's TCP.
    pub fn revoke<G: GroupStore>(
        &self,
        frame: &[u8],
        rss: Option<u32>,
        flows: &mut FlowTable<G>,
        now_ms: u32,
    ) -> Option<FlowRef> {
        let flow = self.flow_of(frame, rss)?;
        flows.remove(flow, now_ms);
        Some(flow)
    }

    /// The place in the flow table of `frame`'s connection, when it is TCP
    /// to a VIP (`frame` and `rss` as for [`Classifier::revoke`]).
    pub fn flow_of(&self, frame: &[u8], rss: Option<u32>) -> Option<FlowRef> {
        let f = packet::parse(frame).ok()?;
        let (Payload::Ipv4(ip) | Payload::Ipv6(ip)) = f.payload else {
            return None;
        };
        let L4::Tcp { src_port, dst_port, .. } = ip.l4 else {
            return None;
        };
        let vip = self.vip(ip.dst)?;
        let value = rule_value(vip.tcp_ports.kind_of(dst_port), rss, ip.src, ip.dst, src_port, dst_port).ok()?;
        Some(FlowRef::new(&FlowKey::new(ip.src, src_port, ip.dst, dst_port), value))
    }

    /// Sends a frame up: unicast frames and frames to the cluster MAC get
    /// the kernel's MAC as destination; other multicast (queries, neighbour
    /// discovery) stays as it is.
    #[inline]
    fn up<B: PacketBuf>(&self, buf: &mut B, frame: &Frame, outcome: Counter) -> Counter {
        if (!frame.dst.is_group() || frame.dst == self.addrs.cluster_mac) && frame.dst != self.addrs.kernel_mac {
            ethernet::Header::new_unchecked(buf.bytes_mut()).set_dst(self.addrs.kernel_mac);
        }
        outcome
    }

    fn wire_arp<B: PacketBuf>(&self, buf: &mut B, frame: &Frame, a: &packet::Arp) -> Counter {
        let spa = Addr::V4(a.spa);
        if self.vip(spa).is_some() {
            // Someone speaks for a VIP. Our own replies (sender = cluster
            // MAC) may come back flooded; anything else is a conflict.
            return if a.sha == self.addrs.cluster_mac {
                Counter::DropArpVipPeer
            } else {
                Counter::DropArpVipConflict
            };
        }
        if self.vip(Addr::V4(a.tpa)).is_some() {
            if a.oper != arp::REQUEST {
                return Counter::DropArpVipConflict;
            }
            if a.sha != frame.src || a.sha.is_group() {
                return Counter::DropArpBad;
            }
            // Answer in place: sender = VIP at the cluster MAC, from the
            // node's own MAC.
            let l3 = usize::from(frame.l3_offset);
            let b = buf.bytes_mut();
            let mut eth = ethernet::Header::new_unchecked(&mut *b);
            eth.set_dst(frame.src);
            eth.set_src(self.addrs.node_mac);
            let mut reply = header::arp::Packet::new_unchecked(&mut b[l3..l3 + arp::LEN]);
            reply.set_oper(arp::REPLY);
            reply.set_target(a.sha, a.spa);
            reply.set_sender(self.addrs.cluster_mac, a.tpa);
            return Counter::ReplyArp;
        }
        self.up(buf, frame, Counter::KernelLocal)
    }

    /// A neighbour solicitation not addressed to a VIP's own address: it
    /// may still ask for a VIP (solicited-node multicast destination).
    fn wire_ndp_solicit<B: PacketBuf>(&self, buf: &mut B, frame: &Frame, ip: &Ip) -> Counter {
        let message = icmp::Header::new_unchecked(&buf.bytes()[usize::from(ip.l4_offset)..usize::from(ip.end)]);
        let Some(target) = message.nd_target() else {
            return Counter::DropNdpBad;
        };
        match self.vip(Addr::V6(target)) {
            Some(_) => self.answer_solicit(buf, frame, ip, target),
            None => self.up(buf, frame, Counter::KernelLocal),
        }
    }

    /// Answers a neighbour solicitation for the VIP `target` in place with
    /// an advertisement of the cluster MAC.
    fn answer_solicit<B: PacketBuf>(&self, buf: &mut B, frame: &Frame, ip: &Ip, target: [u8; 16]) -> Counter {
        let l3 = usize::from(frame.l3_offset);
        let l4 = usize::from(ip.l4_offset);
        let end = usize::from(ip.end);
        let Addr::V6(src) = ip.src else {
            return Counter::DropNdpBad;
        };
        // RFC 4861 7.1.1: hop limit 255, code 0, at least 24 bytes, a valid
        // checksum, no extension headers in what we answer.
        if ip.hop_limit != 255
            || l4 != l3 + ipv6::Header::<&[u8]>::LEN
            || end - l4 < icmp::field::ND_OPTIONS
            || icmpv6_checksum(buf.bytes(), l3, l4, end) != 0
        {
            return Counter::DropNdpBad;
        }
        use icmp::{field, nd};
        let dad = src == [0u8; 16];
        let (dst_ip, dst_mac) = if dad {
            (ALL_NODES, ALL_NODES_MAC)
        } else {
            (src, frame.src)
        };
        let new_end = l4 + nd::ADVERT_WITH_LL_LEN;
        if !buf.set_len(new_end) {
            return Counter::DropNdpBad;
        }
        let b = buf.bytes_mut();
        let mut eth = ethernet::Header::new_unchecked(&mut *b);
        eth.set_dst(dst_mac);
        eth.set_src(self.addrs.node_mac);
        let mut h = ipv6::Header::new_unchecked(&mut b[l3..l4]);
        h.set_payload(nd::ADVERT_WITH_LL_LEN as u16, proto::ICMPV6, 255);
        h.set_addresses(target, dst_ip);
        let m = &mut b[l4..new_end];
        m[field::KIND] = nd::NEIGHBOUR_ADVERT;
        m[field::CODE] = 0;
        m[field::CHECKSUM].fill(0);
        // Solicited (unless answering DAD) and override.
        m[field::ND_FLAGS] = if dad {
            nd::FLAG_OVERRIDE
        } else {
            nd::FLAG_SOLICITED | nd::FLAG_OVERRIDE
        };
        m[field::ND_RESERVED].fill(0);
        m[field::ND_TARGET].copy_from_slice(&target);
        let option = &mut m[field::ND_OPTIONS..];
        option[nd::OPT_KIND] = nd::OPT_TARGET_LL;
        option[nd::OPT_LEN] = 1;
        option[nd::OPT_LL_ADDR].copy_from_slice(&self.addrs.cluster_mac.0);
        let sum = icmpv6_checksum(b, l3, l4, new_end);
        icmp::Header::new_unchecked(&mut b[l4..new_end]).set_checksum(sum);
        Counter::ReplyNdp
    }

    fn wire_vip<B: PacketBuf, G: GroupStore>(
        &self,
        buf: &mut B,
        frame: &Frame,
        ip: &Ip,
        vip: &Vip,
        cx: &mut Context<'_, G>,
    ) -> Counter {
        if ip.fragment {
            // Later fragments carry no ports, so no node could place them
            // consistently: fragments to a VIP are dropped and counted.
            return Counter::DropVipFragment;
        }
        match ip.l4 {
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                let kind = vip.tcp_ports.kind_of(dst_port);
                let value = match rule_value(kind, cx.rss, ip.src, ip.dst, src_port, dst_port) {
                    Ok(v) => v,
                    Err(drop) => return drop,
                };
                let flow = cx
                    .flows
                    .is_open(value)
                    .then(|| FlowRef::new(&FlowKey::new(ip.src, src_port, ip.dst, dst_port), value));
                let outcome = self.vip_tcp(flags, flow.as_ref(), cx);
                if outcome.action() == Action::ToKernel {
                    self.up(buf, frame, outcome)
                } else {
                    outcome
                }
            }
            L4::Udp { src_port, dst_port } => {
                let kind = vip.udp_ports.kind_of(dst_port);
                let value = match rule_value(kind, cx.rss, ip.src, ip.dst, src_port, dst_port) {
                    Ok(v) => v,
                    Err(drop) => return drop,
                };
                match cx.view.state(value.bucket(cx.view.mask())) {
                    BucketState::Foreign => Counter::DropUdpNotOwner,
                    _ => self.up(buf, frame, Counter::KernelVipUdp),
                }
            }
            L4::Icmp { .. } => self.wire_vip_icmp(buf, frame, ip, vip, cx),
            L4::Fragment => Counter::DropVipFragment,
            L4::Other(_) => Counter::DropVipProtocol,
        }
    }

    /// The accept rules for TCP to a VIP (see DESIGN.md), for a segment
    /// with `flags`. `flow` is the segment's place in the flow table
    /// (with its connection value), needed only when the bucket's gate is
    /// open (held, or with flows here); None means the caller found it
    /// closed, and a closed gate decides without the table.
    #[inline]
    fn vip_tcp<G: GroupStore>(&self, flags: u8, flow: Option<&FlowRef>, cx: &mut Context<'_, G>) -> Counter {
        use tcp_flags::{ACK, FIN, RST, SYN};
        let syn = flags & SYN != 0;
        if syn && flags & (FIN | RST) != 0 {
            return Counter::DropTcpBadFlags;
        }
        let new_connection = syn && flags & ACK == 0;
        // Another node's bucket with no flow of ours in it.
        let Some(flow) = flow else { return closed_tcp(flags) };
        let gate = cx.flows.gate(flow.value());
        if gate.is_closed() {
            // Closed by an earlier frame of the burst (its last flow ended).
            return closed_tcp(flags);
        }
        let state = gate.state();
        if gate.has_flows() {
            match cx.flows.touch(flow, flags, cx.now_ms) {
                // The kernel holds this connection: whatever the wire
                // says goes to it, and only its answer changes the flow.
                // A SYN included: the kernel answers it with a challenge
                // ACK (RFC 5961), so a client that really reused the port
                // resets the old connection itself.
                Touch::Known(FlowState::Established | FlowState::Contested) => {
                    return if flags & (RST | FIN | SYN) != 0 {
                        Counter::KernelVipFlowContested
                    } else {
                        Counter::KernelVipFlow
                    };
                }
                // Adopted, not yet answered: valid only while this node
                // holds the bucket settled, as when it was adopted.
                Touch::Known(FlowState::Provisional) if !new_connection => {
                    return match state {
                        BucketState::Settled => Counter::KernelVipProvisional,
                        BucketState::Claimed => {
                            cx.flows.remove(flow, cx.now_ms);
                            Counter::DropRecentBucket
                        }
                        BucketState::Foreign => {
                            cx.flows.remove(flow, cx.now_ms);
                            Counter::DropNotOwner
                        }
                    };
                }
                Touch::Known(_) if !new_connection => return Counter::KernelVipFlow,
                // Unknown; or a SYN on a half-open flow (retransmitted), a
                // closed one or a provisional one: a new connection.
                _ => {}
            }
        }
        if new_connection {
            // A SYN is accepted only where this node holds the claim, even
            // for a flow it knows: a retransmitted SYN in a bucket it has
            // released belongs to the new owner now.
            if state == BucketState::Foreign {
                cx.flows.remove(flow, cx.now_ms);
                return Counter::DropSynNotOwner;
            }
            return if cx.flows.insert(flow, FlowState::HalfOpen, cx.now_ms) {
                Counter::KernelVipSyn
            } else {
                Counter::KernelVipSynUntracked
            };
        }
        match state {
            BucketState::Settled => {
                // A connection we do not know in a bucket we have held
                // for longer than the drain period: a SYN-cookie
                // connection or an evicted entry, or a forgery. The kernel
                // decides: the flow is provisional until it answers.
                // Only a segment with ACK (and neither RST nor FIN) can
                // belong to a live connection: flagless or odd segments
                // are not recorded at all.
                let odd = flags & (RST | FIN) != 0 || flags & ACK == 0;
                if odd || cx.flows.insert(flow, FlowState::Provisional, cx.now_ms) {
                    Counter::KernelVipAdopted
                } else {
                    Counter::KernelVipAdoptedUntracked
                }
            }
            BucketState::Claimed => Counter::DropRecentBucket,
            BucketState::Foreign => Counter::DropNotOwner,
        }
    }

    fn wire_vip_icmp<B: PacketBuf, G: GroupStore>(
        &self,
        buf: &mut B,
        frame: &Frame,
        ip: &Ip,
        vip: &Vip,
        cx: &mut Context<'_, G>,
    ) -> Counter {
        let L4::Icmp { kind, code } = ip.l4 else {
            return Counter::DropVipProtocol;
        };
        let v6 = matches!(ip.src, Addr::V6(_));
        let echo = if v6 { kind == 128 } else { kind == 8 };
        let error = if v6 {
            (1..=4).contains(&kind)
        } else {
            matches!(kind, 3 | 11 | 12)
        };
        if v6 && kind == 135 && code == 0 {
            let Addr::V6(target) = ip.dst else {
                return Counter::DropNdpBad;
            };
            return self.answer_solicit(buf, frame, ip, target);
        }
        let state = if echo {
            let value = symmetric::addresses(ip.src, ip.dst);
            cx.view.state(value.bucket(cx.view.mask()))
        } else if error {
            // An error about a packet the VIP sent: it quotes that packet,
            // VIP → client. Place it by the quoted connection.
            // Its value by the quoted port's rule, as the connection's.
            match self.quoted_flow(buf.bytes(), ip) {
                Some((protocol, client, client_port, vip_port)) => {
                    let rule = if protocol == proto::UDP {
                        vip.udp_ports.kind_of(vip_port)
                    } else {
                        vip.tcp_ports.kind_of(vip_port)
                    };
                    let value = rule
                        .value(client, ip.dst, client_port, vip_port)
                        .unwrap_or_else(|| symmetric::tuple(client, ip.dst, client_port, vip_port));
                    let key = FlowKey::new(client, client_port, ip.dst, vip_port);
                    if protocol == proto::TCP && cx.flows.get(FlowRef::new(&key, value), cx.now_ms).is_some() {
                        return self.up(buf, frame, Counter::KernelVipIcmp);
                    }
                    cx.view.state(value.bucket(cx.view.mask()))
                }
                None => return Counter::DropIcmpBad,
            }
        } else {
            return Counter::DropVipProtocol;
        };
        match state {
            BucketState::Foreign => Counter::DropIcmpNotOwner,
            _ => self.up(buf, frame, Counter::KernelVipIcmp),
        }
    }

    /// The (protocol, client, client port, VIP port) quoted in an ICMP
    /// error.
    fn quoted_flow(&self, b: &[u8], ip: &Ip) -> Option<(u8, Addr, u16, u16)> {
        let message = icmp::Header::new_checked(b.get(usize::from(ip.l4_offset)..usize::from(ip.end))?)?;
        let (protocol, src, dst, src_port, dst_port) =
            header::quoted_transport(message.quoted()?, matches!(ip.src, Addr::V6(_)))?;
        // The quoted packet went VIP → client.
        if src != ip.dst {
            return None;
        }
        Some((protocol, dst, dst_port, src_port))
    }

    /// Decides a frame the kernel sent through the exception port: out to
    /// the wire from the node's own MAC, unless it would announce a VIP.
    /// A TCP segment from a VIP is the kernel's word on its flow in
    /// `flows` (see [`FlowTable::from_kernel`]): its RST ends the flow, its
    /// FIN closes it, any other segment confirms it (a provisional flow is
    /// promoted, a contested one established again). Its RST or SYN-ACK on
    /// a contested flow in a bucket this node does not hold is dropped
    /// ([`Counter::DropKernelStaleFlow`]).
    ///
    /// A SYN-ACK leaves only under the lease: the first one of a flow
    /// ([`Counter::WireFromKernelAnswer`], which the worker sends only if
    /// the lease is still valid when the burst leaves, see
    /// [`Classifier::retract_answer`]) in a bucket this node holds; in a
    /// bucket it does not hold under a valid lease (the closed view when the
    /// lease has run out) it is not sent, and the frame becomes the client's
    /// RST to the kernel ([`Counter::DropKernelSynAckNotHeld`], action
    /// to-kernel): another node may have answered the client's SYN, and a
    /// client must never see two servers' answers. A retransmitted SYN-ACK of
    /// a flow already answered goes out whatever the bucket's state: the
    /// client may hold that connection.
    pub fn from_kernel<B: PacketBuf, G: GroupStore>(
        &self,
        buf: &mut B,
        flows: &mut FlowTable<G>,
        now_ms: u32,
    ) -> Counter {
        let frame = match packet::parse(buf.bytes()) {
            Ok(f) => f,
            // The kernel's own frames are not input to distrust, but what we
            // cannot parse we cannot check either: sent on, counted.
            Err(_) => return Counter::WireFromKernelUnparsed,
        };
        let l3 = usize::from(frame.l3_offset);
        let mut outcome = Counter::WireFromKernel;
        match frame.payload {
            Payload::Ipv4(ip) | Payload::Ipv6(ip) if matches!(ip.l4, L4::Tcp { .. }) => {
                outcome = self.kernel_tcp(&ip, flows, now_ms);
                if outcome == Counter::DropKernelSynAckNotHeld {
                    return if self.reset_to_kernel(buf, l3, &ip) {
                        outcome
                    } else {
                        Counter::DropKernelStaleFlow
                    };
                }
                if outcome.action() == Action::Drop {
                    return outcome;
                }
            }
            Payload::Arp(a) => {
                if self.vip(Addr::V4(a.spa)).is_some() {
                    return Counter::DropKernelVipAdvert;
                }
                if a.sha == self.addrs.kernel_mac && self.addrs.kernel_mac != self.addrs.node_mac {
                    header::arp::Packet::new_unchecked(&mut buf.bytes_mut()[l3..]).set_sha(self.addrs.node_mac);
                }
            }
            Payload::Ipv6(ip) => {
                if let L4::Icmp {
                    kind: icmp::nd::ROUTER_SOLICIT..=icmp::nd::REDIRECT,
                    ..
                } = ip.l4
                {
                    if self.vip(ip.src).is_some() {
                        return Counter::DropKernelVipAdvert;
                    }
                    let message =
                        icmp::Header::new_unchecked(&buf.bytes()[usize::from(ip.l4_offset)..usize::from(ip.end)]);
                    if ip.l4
                        == (L4::Icmp {
                            kind: icmp::nd::NEIGHBOUR_ADVERT,
                            code: 0,
                        })
                    {
                        if let Some(target) = message.nd_target() {
                            if self.vip(Addr::V6(target)).is_some() {
                                return Counter::DropKernelVipAdvert;
                            }
                        }
                    }
                    if self.addrs.kernel_mac != self.addrs.node_mac {
                        self.rewrite_ndp_options(buf, l3, &ip);
                    }
                }
            }
            _ => {}
        }
        ethernet::Header::new_unchecked(buf.bytes_mut()).set_src(self.addrs.node_mac);
        outcome
    }

    /// The connection value of a TCP segment the kernel sends from `vip`
    /// (port `vip_port`) to `client` (port `client_port`): by the port's
    /// rule, as the wire side places the connection.
    #[inline]
    fn kernel_value(vip: &Vip, client: Addr, client_port: u16, vip_port: u16) -> ConnectionValue {
        (vip.tcp_ports.kind_of(vip_port))
            .value(client, vip.addr, client_port, vip_port)
            .unwrap_or_else(|| symmetric::tuple(client, vip.addr, client_port, vip_port))
    }

    /// The outcome of a TCP segment the kernel sends, after recording it on
    /// its flow when it is a VIP's. The connection value is the software
    /// one: the wire side uses the NIC's only where it is the same (see
    /// [`Context::rss`]).
    #[inline]
    fn kernel_tcp<G: GroupStore>(&self, ip: &Ip, flows: &mut FlowTable<G>, now_ms: u32) -> Counter {
        let L4::Tcp {
            src_port,
            dst_port,
            flags,
        } = ip.l4
        else {
            return Counter::WireFromKernel;
        };
        // VIP → client: the client is the destination.
        let Some(vip) = self.vip(ip.src) else {
            return Counter::WireFromKernel;
        };
        let value = Self::kernel_value(vip, ip.dst, dst_port, src_port);
        let gate = flows.gate(value);
        let syn_ack = flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN | tcp_flags::ACK;
        if syn_ack && gate.state() == BucketState::Foreign {
            // Not held under a valid lease: only a flow already answered
            // may answer again (see `from_kernel`).
            let flow = FlowRef::new(&FlowKey::new(ip.dst, dst_port, vip.addr, src_port), value);
            let answered = gate.has_flows()
                && flows
                    .get(flow, now_ms)
                    .is_some_and(|state| state != FlowState::HalfOpen);
            if !answered {
                if gate.has_flows() {
                    flows.remove(flow, now_ms);
                }
                return Counter::DropKernelSynAckNotHeld;
            }
        }
        if flags & tcp_flags::RST != 0 && flags & tcp_flags::ACK == 0 && gate.state() == BucketState::Claimed {
            // A RST answering a segment of a connection the kernel does not
            // hold, in a bucket another member may still serve: that
            // member's connection's. (A forged SYN with a client's tuple
            // reaches this node's kernel as a new connection; its SYN-ACK
            // makes the client's kernel send an ACK, which this kernel
            // would answer with a RST that ends the real connection.)
            if gate.has_flows() {
                let flow = FlowRef::new(&FlowKey::new(ip.dst, dst_port, vip.addr, src_port), value);
                flows.remove(flow, now_ms);
            }
            return Counter::DropKernelResetClaimed;
        }
        if !gate.has_flows() {
            return if syn_ack {
                Counter::WireFromKernelAnswer
            } else {
                Counter::WireFromKernel
            };
        }
        let flow = FlowRef::new(&FlowKey::new(ip.dst, dst_port, vip.addr, src_port), value);
        let reset = flags & tcp_flags::RST != 0;
        match flows.from_kernel(flow, flags, now_ms) {
            // The kernel answers a contested flow with a RST or a SYN-ACK:
            // it no longer holds the connection (the client's RST was
            // genuine). In a bucket of another node the segment it answers
            // is a new connection on the same port, that node's.
            Touch::Known(FlowState::Contested)
                if (reset || flags & tcp_flags::SYN != 0) && flows.gate(value).state() == BucketState::Foreign =>
            {
                flows.remove(flow, now_ms);
                Counter::DropKernelStaleFlow
            }
            Touch::Known(FlowState::Provisional) if reset => Counter::WireFromKernelRefused,
            Touch::Known(_) if reset => Counter::WireFromKernelReset,
            Touch::Known(FlowState::HalfOpen) | Touch::Unknown if syn_ack => Counter::WireFromKernelAnswer,
            _ => Counter::WireFromKernel,
        }
    }

    /// Takes back a SYN-ACK decided as [`Counter::WireFromKernelAnswer`]
    /// whose lease ran out before it left (the worker stalled in between):
    /// forgets its flow and rewrites the frame into the client's RST to the
    /// kernel, as [`Classifier::from_kernel`] does for a bucket not held.
    /// Returns [`Counter::DropKernelSynAckNotHeld`], or
    /// [`Counter::DropKernelStaleFlow`] (to be dropped) when the frame is
    /// not such a SYN-ACK.
    pub fn retract_answer<B: PacketBuf, G: GroupStore>(
        &self,
        buf: &mut B,
        flows: &mut FlowTable<G>,
        now_ms: u32,
    ) -> Counter {
        let Ok(frame) = packet::parse(buf.bytes()) else {
            return Counter::DropKernelStaleFlow;
        };
        let (Payload::Ipv4(ip) | Payload::Ipv6(ip)) = frame.payload else {
            return Counter::DropKernelStaleFlow;
        };
        let (L4::Tcp { src_port, dst_port, .. }, Some(vip)) = (ip.l4, self.vip(ip.src)) else {
            return Counter::DropKernelStaleFlow;
        };
        let value = Self::kernel_value(vip, ip.dst, dst_port, src_port);
        flows.remove(
            FlowRef::new(&FlowKey::new(ip.dst, dst_port, vip.addr, src_port), value),
            now_ms,
        );
        if self.reset_to_kernel(buf, usize::from(frame.l3_offset), &ip) {
            Counter::DropKernelSynAckNotHeld
        } else {
            Counter::DropKernelStaleFlow
        }
    }

    /// Rewrites the kernel's SYN-ACK in `buf` (`ip`, its IP header at
    /// `l3`) into the RST its client sends to refuse it: client to VIP, its
    /// sequence number the SYN-ACK's acknowledgement (the next the kernel
    /// expects, so in the window of the half-open connection, which the
    /// kernel then drops), no options, to the kernel's MAC. False when the
    /// frame is not an IPv4 or IPv6 TCP segment.
    fn reset_to_kernel<B: PacketBuf>(&self, buf: &mut B, l3: usize, ip: &Ip) -> bool {
        let L4::Tcp { src_port, dst_port, .. } = ip.l4 else {
            return false;
        };
        let Some(seq) = buf
            .bytes()
            .get(usize::from(ip.l4_offset)..)
            .and_then(tcp::Header::new_checked)
            .map(|t| t.ack())
        else {
            return false;
        };
        const TCP_LEN: u16 = 20;
        let (l4, pseudo) = match (ip.src, ip.dst) {
            (Addr::V4(vip), Addr::V4(client)) => {
                let l4 = l3 + ipv4::Header::<&[u8]>::LEN;
                if l4 + usize::from(TCP_LEN) > buf.bytes().len() {
                    return false;
                }
                let total = ipv4::Header::<&[u8]>::LEN as u16 + TCP_LEN;
                ipv4::Header::new_unchecked(&mut buf.bytes_mut()[l3..]).set_plain(total, proto::TCP, client, vip);
                (l4, packet::ones_sum(packet::ones_sum(0, &client), &vip))
            }
            (Addr::V6(vip), Addr::V6(client)) => {
                let l4 = l3 + ipv6::Header::<&[u8]>::LEN;
                if l4 + usize::from(TCP_LEN) > buf.bytes().len() {
                    return false;
                }
                let b = buf.bytes_mut();
                b[l3..l3 + 4].copy_from_slice(&[0x60, 0, 0, 0]);
                let mut h = ipv6::Header::new_unchecked(&mut b[l3..]);
                h.set_payload(TCP_LEN, proto::TCP, 64);
                h.set_addresses(client, vip);
                (l4, packet::ones_sum(packet::ones_sum(0, &client), &vip))
            }
            _ => return false,
        };
        let end = l4 + usize::from(TCP_LEN);
        let b = buf.bytes_mut();
        let mut t = tcp::Header::new_unchecked(&mut b[l4..end]);
        t.set_reset(dst_port, src_port, seq);
        let sum = packet::ones_sum(pseudo + u32::from(proto::TCP) + u32::from(TCP_LEN), &b[l4..end]);
        tcp::Header::new_unchecked(&mut b[l4..end]).set_checksum(!(sum as u16));
        let client_mac = ethernet::Header::new_unchecked(&b[..]).dst();
        let mut eth = ethernet::Header::new_unchecked(&mut b[..]);
        eth.set_dst(self.addrs.kernel_mac);
        eth.set_src(client_mac);
        buf.set_len(end)
    }

    /// Replaces the kernel's MAC by the node's in NDP link-layer address
    /// options, and fixes the checksum.
    fn rewrite_ndp_options<B: PacketBuf>(&self, buf: &mut B, l3: usize, ip: &Ip) {
        let l4 = usize::from(ip.l4_offset);
        let end = usize::from(ip.end);
        use icmp::nd;
        let L4::Icmp { kind, .. } = ip.l4 else { return };
        let Some(first_option) = nd::first_option(kind) else {
            return;
        };
        let b = buf.bytes_mut();
        let mut at = l4 + first_option;
        let mut changed = false;
        while at + 8 <= end {
            let option = &mut b[at..end];
            let len = usize::from(option[nd::OPT_LEN]) * 8;
            if len == 0 || len > option.len() {
                break;
            }
            let kind = option[nd::OPT_KIND];
            if (kind == nd::OPT_SOURCE_LL || kind == nd::OPT_TARGET_LL)
                && option[nd::OPT_LL_ADDR] == self.addrs.kernel_mac.0
            {
                option[nd::OPT_LL_ADDR].copy_from_slice(&self.addrs.node_mac.0);
                changed = true;
            }
            at += len;
        }
        if changed {
            icmp::Header::new_unchecked(&mut b[l4..end]).set_checksum(0);
            let sum = icmpv6_checksum(b, l3, l4, end);
            icmp::Header::new_unchecked(&mut b[l4..end]).set_checksum(sum);
        }
    }
}

/// The IPv4 header's checksum holds, by the NIC's word when it gave one.
#[inline(always)]
fn checksum_ok(ip: &ipv4::Header<&[u8]>, nic: IpChecksum) -> bool {
    match nic {
        IpChecksum::Good => true,
        IpChecksum::Bad => false,
        IpChecksum::Unknown => ip.plain_checksum_ok(),
    }
}

/// ff02::1, all nodes.
const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// The Ethernet group of ff02::1.
const ALL_NODES_MAC: Mac = Mac([0x33, 0x33, 0, 0, 0, 1]);

/// The ICMPv6 checksum over the IPv6 pseudo-header and `b[l4..end]`: zero
/// when a received message verifies; the value to store when the checksum
/// field is zero.
fn icmpv6_checksum(b: &[u8], l3: usize, l4: usize, end: usize) -> u16 {
    let mut acc = packet::ones_sum(
        0,
        &b[l3 + ipv6::field::ADDRESSES.start..l3 + ipv6::field::ADDRESSES.end],
    );
    let len = (end - l4) as u32;
    acc = packet::ones_sum(acc, &len.to_be_bytes());
    acc = packet::ones_sum(acc, &[0, 0, 0, proto::ICMPV6]);
    acc = packet::ones_sum(acc, &b[l4..end]);
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowTimeouts;
    use crate::synth::*;

    /// A classifier whose kernel has `kernel_mac` (the node's own, for a
    /// tap that shares it: then nothing is rewritten on the way up).
    fn classifier_with_kernel(kernel_mac: Mac) -> Classifier {
        Classifier::new(NodeAddresses {
            kernel_mac,
            ..node_addresses()
        })
    }

    struct Node {
        c: Classifier,
        view: OwnershipView,
        flows: FlowTable,
        now: u32,
    }

    impl Node {
        fn new(state: BucketState) -> Self {
            let mut view = OwnershipView::new(64, 1);
            for b in 0..64 {
                view.set(crate::hash::Bucket(b), state);
            }
            Node {
                c: classifier(),
                view,
                flows: FlowTable::new(1024, FlowTimeouts::default()),
                now: 1000,
            }
        }

        fn wire(&mut self, frame: &[u8]) -> (Counter, TestBuf) {
            let mut buf = TestBuf::new(frame);
            let mut cx = Context {
                view: &self.view,
                flows: &mut self.flows,
                now_ms: self.now,
                rss: None,
            };
            let outcome = self.c.from_wire(&mut buf, &mut cx);
            (outcome, buf)
        }

        /// The kernel sends `frame` (its outcome).
        fn kernel(&mut self, frame: &[u8]) -> Counter {
            self.kernel_buf(frame).0
        }

        /// As [`Node::kernel`], with the frame as it leaves.
        fn kernel_buf(&mut self, frame: &[u8]) -> (Counter, TestBuf) {
            self.flows.follow(&self.view);
            let mut buf = TestBuf::new(frame);
            let outcome = self.c.from_kernel(&mut buf, &mut self.flows, self.now);
            (outcome, buf)
        }

        /// Every bucket in `state` (the closed view of a lease run out:
        /// all foreign).
        fn set_all(&mut self, state: BucketState) {
            // A new view, as the control side publishes (the flow table
            // follows a view by its epoch).
            let mut view = OwnershipView::new(64, self.view.epoch() + 1);
            for b in 0..64 {
                view.set(crate::hash::Bucket(b), state);
            }
            self.view = view;
        }

        /// As [`Node::wire`], through the full parser only, with `rss`.
        fn wire_full(&mut self, frame: &[u8], rss: Option<u32>) -> (Counter, TestBuf) {
            let mut buf = TestBuf::new(frame);
            let mut cx = Context {
                view: &self.view,
                flows: &mut self.flows,
                now_ms: self.now,
                rss,
            };
            let outcome = self.c.from_wire_full(&mut buf, &mut cx);
            (outcome, buf)
        }

        /// As [`Node::wire`], with `rss`; also gives the look.
        fn wire_fast(&mut self, frame: &[u8], rss: Option<u32>) -> (Counter, TestBuf, Look) {
            let mut buf = TestBuf::new(frame);
            let mut cx = Context {
                view: &self.view,
                flows: &mut self.flows,
                now_ms: self.now,
                rss,
            };
            cx.flows.follow(cx.view);
            let look = self.c.look(buf.bytes(), rss, cx.flows);
            let outcome = self.c.decide(&mut buf, look, &mut cx);
            (outcome, buf, look)
        }
    }

    /// A segment the kernel sends from the IPv4 VIP's port 80 to the
    /// client's `port`.
    fn from_vip(port: u16, flags: u8) -> Vec<u8> {
        let mut f = tcp4_to(CLIENT_MAC, V4_VIP, 80, CLIENT_V4, port, flags);
        f[6..12].copy_from_slice(&KERNEL_MAC.0);
        f
    }

    /// Recomputes the IPv4 header checksum of an untagged frame.
    fn fix_ipv4_checksum(f: &mut [u8]) {
        if f.len() >= 34 && f[12..14] == [8, 0] {
            let ihl = (usize::from(f[14] & 0x0f) * 4).clamp(20, f.len() - 14);
            f[24] = 0;
            f[25] = 0;
            let sum = packet::checksum(&f[14..14 + ihl]);
            f[24..26].copy_from_slice(&sum.to_be_bytes());
        }
    }

    /// A frame a client, a neighbour or an attacker might send: mostly TCP
    /// to a VIP, often broken in one of the places the fast path reads.
    fn random_frame(rng: &mut Rng) -> Vec<u8> {
        let any = rng.next_u64() as u8;
        let flags = rng.pick(&[
            tcp_flags::SYN,
            tcp_flags::ACK,
            tcp_flags::ACK,
            tcp_flags::ACK | tcp_flags::FIN,
            tcp_flags::RST,
            tcp_flags::SYN | tcp_flags::ACK,
            tcp_flags::SYN | tcp_flags::FIN,
            0,
            any,
        ]);
        // Few clients and ports, so flows repeat and meet their entries.
        let port = 40000 + rng.below(24) as u16;
        let host = [192, 0, 2, 10 + rng.below(3) as u8];
        let mut v6 = V6_CLIENT;
        v6[15] = rng.below(3) as u8;
        let vip_port = rng.pick(&[80, 80, 80, 81, PORT_CLIENT, PORT_NETWORK, PORT_SINGLE, PORT_DISABLED]);
        let mut f = match rng.below(16) {
            0..=6 => tcp4_to(CLUSTER_MAC, host, port, V4_VIP, vip_port, flags),
            7..=10 => tcp6_to(CLUSTER_MAC, v6, port, V6_VIP, vip_port, flags),
            11 => match rng.below(3) {
                0 => tcp4_to(NODE_MAC, host, port, V4_VIP, 80, flags),
                1 => tcp6_to(
                    NODE_MAC,
                    v6,
                    port,
                    [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x21],
                    80,
                    flags,
                ),
                _ => tcp4_to(Mac([2, 7, 7, 7, 7, 7]), host, port, V4_VIP, 80, flags),
            },
            12 => add_vlan(&tcp4_to(CLUSTER_MAC, host, port, V4_VIP, 80, flags), 5),
            13 => tcp6_with_ext(&[(0, 8)], flags),
            14 => udp4_to(
                CLUSTER_MAC,
                host,
                port,
                V4_VIP,
                rng.pick(&[53, 53, UDP_PORT_CLIENT, PORT_DISABLED]),
            ),
            _ => tcp4_to(CLUSTER_MAC, host, port, [192, 0, 2, 99], 80, flags),
        };
        let v6_frame = f[12..14] == [0x86, 0xdd];
        // Up to three hostile changes, in the fields the fast path reads.
        for _ in 0..rng.below(4) {
            let at = match rng.below(12) {
                0 => rng.below(12) as usize,     // MACs
                1 => 12 + rng.below(2) as usize, // EtherType
                2 => 14,                         // version, IHL
                3 => 16 + rng.below(2) as usize, // IPv4 total / IPv6 payload length
                4 => 20 + rng.below(2) as usize, // fragment / next header
                5 => 23,                         // IPv4 protocol
                6 => 24 + rng.below(2) as usize, // IPv4 checksum
                7 if v6_frame => 54 + 12,        // TCP data offset
                7 => 34 + 12,
                8 => rng.below(f.len() as u64 + 1) as usize,
                _ => usize::MAX,
            };
            match (at, rng.below(5)) {
                (usize::MAX, 0) => f.truncate(rng.below(f.len() as u64 + 1) as usize),
                (usize::MAX, 1) => f.extend((0..rng.below(40)).map(|_| rng.next_u64() as u8)),
                (usize::MAX, 2) if f.len() >= 12 => {
                    let mac = rng.pick(&[CLUSTER_MAC, NODE_MAC, Mac::BROADCAST]);
                    f[6..12].copy_from_slice(&mac.0);
                }
                (usize::MAX, _) => {}
                (i, _) if i < f.len() => f[i] = rng.next_u64() as u8,
                _ => {}
            }
        }
        if rng.below(2) == 0 {
            fix_ipv4_checksum(&mut f);
        }
        f
    }

    #[test]
    fn the_fast_path_decides_as_the_full_parser_on_random_and_hostile_frames() {
        // Two nodes with the same view (buckets in all three states) and
        // the same table: one decides through the fast path where it can,
        // the other through the full parser only. Every outcome, every
        // rewritten byte and every change to the flow table must agree,
        // frame after frame; but a frame the look drops as one of a closed
        // bucket before validating it is only a drop on both sides when
        // the full parser finds it malformed (or not sent to this node):
        // then it counts that reason, the look counts the closed bucket's.
        for (kernel_mac, seed) in [(KERNEL_MAC, 0x5eed_f00d_1234_5678), (NODE_MAC, 0x0dd_ba11)] {
            fast_and_full_agree(kernel_mac, seed, 100_000);
        }
    }

    fn fast_and_full_agree(kernel_mac: Mac, seed: u64, rounds: usize) {
        let mut rng = Rng(seed);
        let mut fast = Node::new(BucketState::Foreign);
        fast.c = classifier_with_kernel(kernel_mac);
        for b in 0..64u32 {
            let state = [BucketState::Foreign, BucketState::Claimed, BucketState::Settled][b as usize % 3];
            fast.view.set(crate::hash::Bucket(b), state);
        }
        let mut full = Node {
            c: classifier_with_kernel(kernel_mac),
            view: fast.view.clone(),
            flows: FlowTable::new(1024, FlowTimeouts::default()),
            now: fast.now,
        };
        let mut took_fast = 0;
        let (mut closed, mut closed_invalid) = (0, 0);
        for i in 0..rounds {
            let f = random_frame(&mut rng);
            let rss = (rng.below(8) == 0).then(|| rng.next_u64() as u32);
            let (a, buf_a, look) = fast.wire_fast(&f, rss);
            let (b, buf_b) = full.wire_full(&f, rss);
            if look.is_closed_unvalidated() {
                closed += 1;
                assert!(
                    matches!(
                        a,
                        Counter::DropNotOwner | Counter::DropSynNotOwner | Counter::DropTcpBadFlags
                    ),
                    "frame {i}: {a:?}"
                );
                assert_eq!(b.action(), Action::Drop, "frame {i}: {f:02x?}");
                if !matches!(
                    b,
                    Counter::DropNotOwner | Counter::DropSynNotOwner | Counter::DropTcpBadFlags
                ) {
                    closed_invalid += 1;
                } else {
                    assert_eq!(a, b, "frame {i}: {f:02x?}");
                }
                assert_eq!(buf_a.bytes(), f, "frame {i}: a dropped frame is not rewritten");
            } else {
                assert_eq!(a, b, "frame {i}: {f:02x?}");
            }
            assert_eq!(buf_a.bytes(), buf_b.bytes(), "frame {i}");
            assert_eq!(fast.flows.len(), full.flows.len(), "frame {i}");
            assert_eq!(fast.flows.stats(), full.flows.stats(), "frame {i}");
            took_fast += usize::from(look.is_fast());
            if i % 1000 == 999 {
                fast.now += 700;
                full.now += 700;
            }
        }
        assert_eq!(fast.flows.census(fast.now), full.flows.census(full.now));
        assert!(fast.flows.stats().inserted > 100, "{:?}", fast.flows.stats());
        // Both paths had plenty to do.
        assert!(took_fast > rounds / 5 && took_fast < rounds * 4 / 5, "{took_fast} fast");
        // Closed buckets were met often, malformed frames among them.
        assert!(
            closed > rounds / 10 && closed_invalid > rounds / 100,
            "{closed} closed, {closed_invalid} invalid"
        );
    }

    #[test]
    fn a_nic_hash_is_the_value_only_for_the_types_hashed_on_the_tuple() {
        use crate::hash::nic::{ptype, RssTypes};
        // Frames whose mbuf carries a hash that is not the Toeplitz of
        // their 4-tuple: one that puts them in a bucket of another node,
        // while their own value is in a bucket this node holds. Where the
        // reported packet type is the 4-tuple Toeplitz's (and the port
        // hashes that type), the hash is taken; everywhere else the
        // computed value decides, whatever the hash says.
        const TCP4: u32 = ptype::L3_IPV4 | ptype::L4_TCP;
        const UDP4: u32 = ptype::L3_IPV4 | ptype::L4_UDP;
        const TCP6: u32 = ptype::L3_IPV6 | ptype::L4_TCP;
        const IPV4_OPTIONS: u32 = 0x30;
        const IPV6_EXT: u32 = 0xc0;
        const L4_FRAG: u32 = 0x300;
        const TUNNEL_VXLAN: u32 = 0x3000;
        let syn4 = to_vip4(40000, tcp_flags::SYN);
        let syn6 = tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, 80, tcp_flags::SYN);
        let syn6_ext = tcp6_with_ext(&[(0, 8)], tcp_flags::SYN);
        let dns = udp4_to(CLUSTER_MAC, CLIENT_V4, 5353, V4_VIP, 53);
        let cases: [(&[u8], u32, RssTypes, bool); 12] = [
            (&syn4, TCP4, RssTypes::ALL, true),
            (&syn6, TCP6, RssTypes::ALL, true),
            (&dns, UDP4, RssTypes::ALL, true),
            // The port does not hash that type on the tuple (addresses
            // only, say), or at all.
            (&syn4, TCP4, RssTypes::IPV6_TCP.with(RssTypes::IPV4_UDP), false),
            (&dns, UDP4, RssTypes::IPV4_TCP, false),
            (&syn4, TCP4, RssTypes::NONE, false),
            // Packet types a NIC hashes otherwise, or no type reported.
            (&syn4, IPV4_OPTIONS | ptype::L4_TCP, RssTypes::ALL, false),
            (&syn6_ext, IPV6_EXT | ptype::L4_TCP, RssTypes::ALL, false),
            (&syn6, ptype::L3_IPV6 | L4_FRAG, RssTypes::ALL, false),
            (&syn4, ptype::L3_IPV4, RssTypes::ALL, false),
            (&syn4, TCP4 | TUNNEL_VXLAN, RssTypes::ALL, false),
            (&syn4, 0, RssTypes::ALL, false),
        ];
        let c = classifier();
        for (i, (frame, packet_type, hashed, taken)) in cases.into_iter().enumerate() {
            let computed = {
                let f = packet::parse(frame).unwrap();
                let (Payload::Ipv4(ip) | Payload::Ipv6(ip)) = f.payload else {
                    panic!()
                };
                let (L4::Tcp { src_port, dst_port, .. } | L4::Udp { src_port, dst_port }) = ip.l4 else {
                    panic!()
                };
                c.connection_value(ip.src, ip.dst, src_port, dst_port)
            };
            // This node holds only the computed value's bucket; the hash
            // points at the next one.
            let mut n = Node::new(BucketState::Foreign);
            let own = computed.bucket(n.view.mask());
            n.view.set(own, BucketState::Settled);
            let wrong = computed.0 ^ 1;
            assert_ne!(ConnectionValue(wrong).bucket(n.view.mask()), own);
            let rss = hashed.value(packet_type, wrong);
            assert_eq!(rss.is_some(), taken, "case {i}: type {packet_type:#x}");
            let (outcome, _, _) = n.wire_fast(frame, rss);
            let (reference, _) = Node::new(BucketState::Foreign).wire_full(frame, None);
            let mut owner = Node::new(BucketState::Foreign);
            owner.view.set(own, BucketState::Settled);
            let (computed_outcome, _) = owner.wire_full(frame, None);
            assert_eq!(computed_outcome.action(), Action::ToKernel, "case {i}");
            if taken {
                assert_eq!(outcome, reference, "case {i}: the hash decides");
            } else {
                assert_eq!(outcome, computed_outcome, "case {i}: the computed value decides");
            }
        }
        // No other packet type ever lets a hash through.
        let mut rng = Rng(0x7e57_4a54);
        for _ in 0..100_000 {
            let t = rng.next_u64() as u32;
            if RssTypes::ALL.value(t, 7).is_some() {
                assert!(
                    t & 0xffff_f000 == 0 && [TCP4, UDP4, TCP6, ptype::L3_IPV6 | ptype::L4_UDP].contains(&(t & 0xff0))
                );
            }
        }
    }

    /// Checks that `buf` is the client's RST to the kernel refusing the
    /// SYN-ACK of `port` (see `Classifier::reset_to_kernel`): addresses and
    /// ports reversed, the SYN-ACK's acknowledgement as its sequence
    /// number, both checksums good, to the kernel's MAC.
    fn assert_reset_to_kernel(buf: &TestBuf, client: Addr, vip: Addr, port: u16) {
        let b = buf.bytes();
        let f = packet::parse(b).expect("the RST parses");
        let (Payload::Ipv4(ip) | Payload::Ipv6(ip)) = f.payload else {
            panic!("not IP: {f:?}")
        };
        assert_eq!((ip.src, ip.dst), (client, vip));
        assert_eq!(
            ip.l4,
            L4::Tcp {
                src_port: port,
                dst_port: 80,
                flags: tcp_flags::RST
            }
        );
        assert_eq!(usize::from(ip.end), b.len(), "no options, no payload, no padding");
        let t = &b[usize::from(ip.l4_offset)..];
        assert_eq!(t.len(), 20);
        assert_eq!(&t[4..8], &0x2000_0000u32.to_be_bytes(), "seq = the SYN-ACK's ack");
        let mut acc = packet::ones_sum(packet::ones_sum(0, client.bytes()), vip.bytes());
        acc = packet::ones_sum(acc + u32::from(proto::TCP) + 20, t);
        assert_eq!(acc, 0xffff, "TCP checksum");
        if let Addr::V4(_) = client {
            assert!(
                ipv4::Header::new_unchecked(&b[14..]).plain_checksum_ok(),
                "IPv4 checksum"
            );
        }
        assert_eq!(&b[0..6], &KERNEL_MAC.0, "to the kernel");
        assert_eq!(&b[6..12], &CLIENT_MAC.0, "from the client");
    }

    #[test]
    fn a_syn_ack_leaves_only_under_the_lease() {
        let syn = to_vip4(40000, tcp_flags::SYN);
        let syn_ack = from_vip(40000, tcp_flags::SYN | tcp_flags::ACK);
        // Held: the first SYN-ACK is an answer (the worker checks the lease
        // once more before it leaves), a retransmission is not.
        let mut n = Node::new(BucketState::Settled);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        assert_eq!(n.kernel(&syn_ack), Counter::WireFromKernelAnswer);
        assert_eq!(n.flows.census(n.now)[FlowState::Answered as usize], 1);
        assert_eq!(n.kernel(&syn_ack), Counter::WireFromKernel);
        // Once answered, the lease may lapse: a retransmitted SYN-ACK still
        // goes (the client may hold the connection), and the client's ACK
        // establishes the flow.
        n.set_all(BucketState::Foreign);
        assert_eq!(n.kernel(&syn_ack), Counter::WireFromKernel);
        let ack = to_vip4(40000, tcp_flags::ACK);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        assert_eq!(n.flows.census(n.now)[FlowState::Established as usize], 1);

        // Accepted under the lease, answered after it ran out (the process
        // stopped in between): not sent, the kernel gets the client's RST,
        // the flow goes, so the client's retransmitted SYN is the new
        // holder's alone.
        let mut n = Node::new(BucketState::Claimed);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        n.set_all(BucketState::Foreign);
        let (outcome, buf) = n.kernel_buf(&syn_ack);
        assert_eq!(outcome, Counter::DropKernelSynAckNotHeld);
        assert_eq!(outcome.action(), Action::ToKernel);
        assert_reset_to_kernel(&buf, Addr::V4(CLIENT_V4), Addr::V4(V4_VIP), 40000);
        assert!(n.flows.is_empty());
        assert_eq!(n.wire(&syn).0, Counter::DropSynNotOwner);
        // A SYN-ACK with options (or data) shrinks to a bare RST; one with
        // no flow at all (an untracked SYN) is refused the same way.
        let long = tcp4_payload_to(
            CLIENT_MAC,
            V4_VIP,
            80,
            CLIENT_V4,
            40001,
            tcp_flags::SYN | tcp_flags::ACK,
            &[1; 12],
        );
        let mut long = long;
        long[6..12].copy_from_slice(&KERNEL_MAC.0);
        let (outcome, buf) = n.kernel_buf(&long);
        assert_eq!(outcome, Counter::DropKernelSynAckNotHeld);
        assert_reset_to_kernel(&buf, Addr::V4(CLIENT_V4), Addr::V4(V4_VIP), 40001);

        // IPv6 alike.
        let mut n = Node::new(BucketState::Settled);
        let syn6 = tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, 80, tcp_flags::SYN);
        assert_eq!(n.wire(&syn6).0, Counter::KernelVipSyn);
        n.set_all(BucketState::Foreign);
        let mut syn_ack6 = tcp6_to(
            CLIENT_MAC,
            V6_VIP,
            80,
            V6_CLIENT,
            40000,
            tcp_flags::SYN | tcp_flags::ACK,
        );
        syn_ack6[6..12].copy_from_slice(&KERNEL_MAC.0);
        let (outcome, buf) = n.kernel_buf(&syn_ack6);
        assert_eq!(outcome, Counter::DropKernelSynAckNotHeld);
        assert_reset_to_kernel(&buf, Addr::V6(V6_CLIENT), Addr::V6(V6_VIP), 40000);
        assert!(n.flows.is_empty());
    }

    #[test]
    fn a_syn_ack_on_a_rule_port_finds_its_flow_by_the_rules_value() {
        // Client affinity: the flow is placed by the addresses alone; the
        // kernel's SYN-ACK must find it there, answered or refused.
        let syn = tcp4_to(CLUSTER_MAC, CLIENT_V4, 40000, V4_VIP, PORT_CLIENT, tcp_flags::SYN);
        let mut syn_ack = tcp4_to(
            CLIENT_MAC,
            V4_VIP,
            PORT_CLIENT,
            CLIENT_V4,
            40000,
            tcp_flags::SYN | tcp_flags::ACK,
        );
        syn_ack[6..12].copy_from_slice(&KERNEL_MAC.0);
        let mut n = Node::new(BucketState::Settled);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        assert_eq!(n.kernel(&syn_ack), Counter::WireFromKernelAnswer);
        assert_eq!(n.flows.census(n.now)[FlowState::Answered as usize], 1);
        let mut n = Node::new(BucketState::Settled);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        n.set_all(BucketState::Foreign);
        assert_eq!(n.kernel(&syn_ack), Counter::DropKernelSynAckNotHeld);
        assert!(n.flows.is_empty(), "the flow was found by the rule's value and ended");
        let mut n = Node::new(BucketState::Settled);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        let (_, mut buf) = n.kernel_buf(&syn_ack);
        assert_eq!(
            n.c.retract_answer(&mut buf, &mut n.flows, n.now),
            Counter::DropKernelSynAckNotHeld
        );
        assert!(n.flows.is_empty(), "retracted by the rule's value");
    }

    #[test]
    fn an_answer_whose_lease_ran_out_before_it_left_is_retracted() {
        let mut n = Node::new(BucketState::Settled);
        let syn = to_vip4(40000, tcp_flags::SYN);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        let (outcome, mut buf) = n.kernel_buf(&from_vip(40000, tcp_flags::SYN | tcp_flags::ACK));
        assert_eq!(outcome, Counter::WireFromKernelAnswer);
        assert_eq!(
            n.c.retract_answer(&mut buf, &mut n.flows, n.now),
            Counter::DropKernelSynAckNotHeld
        );
        assert_reset_to_kernel(&buf, Addr::V4(CLIENT_V4), Addr::V4(V4_VIP), 40000);
        assert!(n.flows.is_empty());
        // Not a SYN-ACK of a VIP: nothing to retract, dropped.
        let mut arp = TestBuf::new(&arp_request(CLIENT_MAC, CLIENT_V4, V4_VIP));
        assert_eq!(
            n.c.retract_answer(&mut arp, &mut n.flows, n.now),
            Counter::DropKernelStaleFlow
        );
    }

    #[test]
    fn a_burst_decides_as_frame_by_frame() {
        // A SYN and the handshake's ACK in the same burst, in a bucket with
        // no flows at the look: the ACK must find the flow the SYN made.
        let syn = to_vip4(40000, tcp_flags::SYN);
        let ack = to_vip4(40000, tcp_flags::ACK);
        let mut n = Node::new(BucketState::Claimed);
        n.flows.follow(&n.view);
        let looks = [n.c.look(&syn, None, &n.flows), n.c.look(&ack, None, &n.flows)];
        let mut cx = Context {
            view: &n.view,
            flows: &mut n.flows,
            now_ms: n.now,
            rss: None,
        };
        let outcomes: Vec<Counter> = [&syn, &ack]
            .iter()
            .zip(looks)
            .map(|(f, look)| n.c.decide(&mut TestBuf::new(f), look, &mut cx))
            .collect();
        assert_eq!(outcomes, [Counter::KernelVipSyn, Counter::KernelVipFlow]);
    }

    #[test]
    fn a_closed_gate_drops_without_the_table() {
        // A bucket neither held nor with flows: decided from its gate; one
        // of our flows in a released bucket opens it again.
        let syn = to_vip4(40000, tcp_flags::SYN);
        let ack = to_vip4(40000, tcp_flags::ACK);
        let mut n = Node::new(BucketState::Claimed);
        let value = n.c.connection_value(Addr::V4(CLIENT_V4), Addr::V4(V4_VIP), 40000, 80);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        n.view = OwnershipView::new(64, 2);
        n.flows.follow(&n.view);
        assert!(n.flows.gate(value).has_flows());
        assert!(!n.flows.gate(value).is_closed());
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        let other = to_vip4(40001, tcp_flags::ACK);
        let other_value = n.c.connection_value(Addr::V4(CLIENT_V4), Addr::V4(V4_VIP), 40001, 80);
        assert!(n.flows.gate(other_value).is_closed());
        assert_eq!(
            n.c.look(&other, None, &n.flows),
            Look(Seen::Closed(Counter::DropNotOwner)),
            "decided at the look"
        );
        // Before validating it: a bad checksum or another node's MAC is
        // still a closed bucket's drop.
        let mut bad = other.clone();
        bad[24] ^= 0xff;
        assert_eq!(
            n.c.look(&bad, None, &n.flows),
            Look(Seen::Closed(Counter::DropNotOwner))
        );
        assert_eq!(n.wire(&bad).0, Counter::DropNotOwner);
        assert_eq!(n.wire_full(&bad, None).0, Counter::DropBadIpv4Checksum);
        let elsewhere = tcp4_to(Mac([2, 7, 7, 7, 7, 7]), CLIENT_V4, 40001, V4_VIP, 80, tcp_flags::SYN);
        assert_eq!(n.wire(&elsewhere).0, Counter::DropSynNotOwner);
        assert_eq!(n.wire_full(&elsewhere, None).0, Counter::DropNotForUs);
        // The same frames in an open bucket are validated first.
        let mut bad_own = ack.clone();
        bad_own[24] ^= 0xff;
        assert_eq!(n.wire(&bad_own).0, Counter::DropBadIpv4Checksum);
        let own_elsewhere = tcp4_to(Mac([2, 7, 7, 7, 7, 7]), CLIENT_V4, 40000, V4_VIP, 80, tcp_flags::ACK);
        assert_eq!(n.wire(&own_elsewhere).0, Counter::DropNotForUs);
        assert_eq!(n.wire(&other).0, Counter::DropNotOwner);
        // A RST from the wire ends nothing; the kernel's RST ends our
        // flow: the gate closes.
        let rst = to_vip4(40000, tcp_flags::RST);
        assert_eq!(n.wire(&rst).0, Counter::KernelVipFlowContested);
        assert!(!n.flows.gate(value).is_closed());
        assert_eq!(n.kernel(&from_vip(40000, tcp_flags::ACK)), Counter::WireFromKernel);
        assert_eq!(n.kernel(&from_vip(40000, tcp_flags::RST)), Counter::WireFromKernelReset);
        assert!(n.flows.gate(value).is_closed());
        assert_eq!(n.wire(&ack).0, Counter::DropNotOwner);
    }

    #[test]
    fn answers_arp_for_the_vip_with_the_cluster_mac_from_the_node_mac() {
        let mut n = Node::new(BucketState::Settled);
        let (outcome, buf) = n.wire(&arp_request(CLIENT_MAC, CLIENT_V4, V4_VIP));
        assert_eq!(outcome, Counter::ReplyArp);
        assert_eq!(outcome.action(), Action::ToWire);
        let f = packet::parse(buf.bytes()).unwrap();
        assert_eq!(f.dst, CLIENT_MAC);
        assert_eq!(f.src, NODE_MAC, "never the cluster MAC as source");
        match f.payload {
            Payload::Arp(a) => {
                assert_eq!(a.oper, arp::REPLY);
                assert_eq!(a.sha, CLUSTER_MAC);
                assert_eq!(a.spa, V4_VIP);
                assert_eq!(a.tha, CLIENT_MAC);
                assert_eq!(a.tpa, CLIENT_V4);
            }
            other => panic!("{other:?}"),
        }
        // Even a node that owns nothing answers: ARP is for the cluster.
        let mut n = Node::new(BucketState::Foreign);
        assert_eq!(n.wire(&arp_request(CLIENT_MAC, CLIENT_V4, V4_VIP)).0, Counter::ReplyArp);
    }

    #[test]
    fn arp_claiming_the_vip_is_dropped_and_other_arp_goes_up() {
        let mut n = Node::new(BucketState::Settled);
        let mut spoof = arp_request(CLIENT_MAC, V4_VIP, [192, 0, 2, 1]);
        assert_eq!(n.wire(&spoof).0, Counter::DropArpVipConflict);
        // Our own cluster's reply seen again.
        spoof[6..12].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
        spoof[14 + 8..14 + 14].copy_from_slice(&CLUSTER_MAC.0);
        assert_eq!(n.wire(&spoof).0, Counter::DropArpVipPeer);
        let (outcome, buf) = n.wire(&arp_request(CLIENT_MAC, CLIENT_V4, [192, 0, 2, 21]));
        assert_eq!(outcome, Counter::KernelLocal);
        assert_eq!(
            buf.bytes(),
            &arp_request(CLIENT_MAC, CLIENT_V4, [192, 0, 2, 21])[..],
            "broadcast goes up unchanged"
        );
    }

    #[test]
    fn answers_neighbour_solicitation_for_the_vip() {
        let mut n = Node::new(BucketState::Foreign);
        let ns = neighbour_solicit(CLIENT_MAC, V6_CLIENT, V6_VIP, true);
        let (outcome, buf) = n.wire(&ns);
        assert_eq!(outcome, Counter::ReplyNdp);
        let b = buf.bytes();
        let f = packet::parse(b).unwrap();
        assert_eq!(f.dst, CLIENT_MAC);
        assert_eq!(f.src, NODE_MAC);
        let Payload::Ipv6(ip) = f.payload else { panic!() };
        assert_eq!(ip.src, Addr::V6(V6_VIP));
        assert_eq!(ip.dst, Addr::V6(V6_CLIENT));
        assert_eq!(ip.hop_limit, 255);
        assert_eq!(ip.l4, L4::Icmp { kind: 136, code: 0 });
        let l4 = usize::from(ip.l4_offset);
        assert_eq!(icmpv6_checksum(b, 14, l4, usize::from(ip.end)), 0, "checksum verifies");
        assert_eq!(&b[l4 + 8..l4 + 24], &V6_VIP);
        assert_eq!(&b[l4 + 24..l4 + 26], &[2, 1]);
        assert_eq!(&b[l4 + 26..l4 + 32], &CLUSTER_MAC.0);
        // Without the source link-layer option (shorter) it is answered too.
        let ns = neighbour_solicit(CLIENT_MAC, V6_CLIENT, V6_VIP, false);
        assert_eq!(n.wire(&ns).0, Counter::ReplyNdp);
        // A corrupted checksum or hop limit is not answered.
        let mut bad = neighbour_solicit(CLIENT_MAC, V6_CLIENT, V6_VIP, true);
        bad[14 + 40 + 2] ^= 1;
        assert_eq!(n.wire(&bad).0, Counter::DropNdpBad);
        let mut bad = neighbour_solicit(CLIENT_MAC, V6_CLIENT, V6_VIP, true);
        bad[14 + 7] = 64;
        assert_eq!(n.wire(&bad).0, Counter::DropNdpBad);
    }

    #[test]
    fn syn_accepted_only_where_the_node_holds_the_claim() {
        let syn = to_vip4(40000, tcp_flags::SYN);
        let mut owner = Node::new(BucketState::Claimed);
        let (outcome, buf) = owner.wire(&syn);
        assert_eq!(outcome, Counter::KernelVipSyn);
        assert_eq!(&buf.bytes()[0..6], &KERNEL_MAC.0, "VIP frames reach the kernel's MAC");
        assert_eq!(owner.flows.len(), 1);
        let mut other = Node::new(BucketState::Foreign);
        assert_eq!(other.wire(&syn).0, Counter::DropSynNotOwner);
        assert!(other.flows.is_empty());
    }

    #[test]
    fn non_syn_rules_protect_the_previous_owner() {
        let ack = to_vip4(40000, tcp_flags::ACK);
        // Recently acquired: an unknown ACK may be the old owner's: drop.
        assert_eq!(Node::new(BucketState::Claimed).wire(&ack).0, Counter::DropRecentBucket);
        assert_eq!(Node::new(BucketState::Foreign).wire(&ack).0, Counter::DropNotOwner);
        // Settled: adopted (SYN cookies, evicted entries), provisional
        // until the kernel answers, then tracked.
        let mut settled = Node::new(BucketState::Settled);
        assert_eq!(settled.wire(&ack).0, Counter::KernelVipAdopted);
        assert_eq!(settled.wire(&ack).0, Counter::KernelVipProvisional);
        assert_eq!(settled.flows.census(settled.now)[FlowState::Provisional as usize], 1);
        assert_eq!(
            settled.kernel(&from_vip(40000, tcp_flags::ACK)),
            Counter::WireFromKernel
        );
        assert_eq!(settled.wire(&ack).0, Counter::KernelVipFlow);
        assert_eq!(settled.flows.census(settled.now)[FlowState::Established as usize], 1);
        assert_eq!(settled.flows.stats().promoted, 1);
    }

    #[test]
    fn known_flows_survive_losing_the_bucket_and_syns_do_not() {
        let syn = to_vip4(40000, tcp_flags::SYN);
        let ack = to_vip4(40000, tcp_flags::ACK);
        let mut n = Node::new(BucketState::Claimed);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        // The bucket is released.
        n.view = OwnershipView::new(64, 2);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow, "established flow kept");
        // A SYN for the same tuple goes to the kernel that holds the
        // connection: it answers with a challenge ACK (RFC 5961), and the
        // flow stays.
        assert_eq!(n.wire(&syn).0, Counter::KernelVipFlowContested);
        assert_eq!(n.kernel(&from_vip(40000, tcp_flags::ACK)), Counter::WireFromKernel);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        // A client that really reused the port resets the old connection
        // itself (its RST answers the challenge ACK; the kernel takes it
        // silently); its SYN comes again, and the kernel, which no longer
        // holds the connection, answers with a SYN-ACK: not sent (the new
        // owner answers it), and our stale entry must not capture the new
        // connection's packets.
        let rst = to_vip4(40000, tcp_flags::RST);
        assert_eq!(n.wire(&rst).0, Counter::KernelVipFlowContested);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipFlowContested);
        assert_eq!(
            n.kernel(&from_vip(40000, tcp_flags::SYN | tcp_flags::ACK)),
            Counter::DropKernelStaleFlow
        );
        assert_eq!(n.wire(&ack).0, Counter::DropNotOwner);
        assert_eq!(n.wire(&syn).0, Counter::DropSynNotOwner);
    }

    #[test]
    fn the_kernels_rst_on_a_contested_flow_of_a_moved_bucket_is_not_sent() {
        // The client reset the connection (genuinely) and opened a new one
        // on the same port with the bucket's new owner, whose SYN we did
        // not see (lost here). Its segments reach our kernel as our flow's;
        // the kernel answers with a RST, which would end the new owner's
        // connection.
        let syn = to_vip4(40000, tcp_flags::SYN);
        let ack = to_vip4(40000, tcp_flags::ACK);
        let rst = to_vip4(40000, tcp_flags::RST);
        let mut n = Node::new(BucketState::Claimed);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        n.view = OwnershipView::new(64, 2);
        assert_eq!(n.wire(&rst).0, Counter::KernelVipFlowContested);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow, "a later segment still goes up");
        assert_eq!(n.kernel(&from_vip(40000, tcp_flags::RST)), Counter::DropKernelStaleFlow);
        assert_eq!(n.wire(&ack).0, Counter::DropNotOwner);
        assert!(n.flows.is_empty());
        // In a bucket this node holds, the kernel's RST is sent.
        let mut n = Node::new(BucketState::Settled);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        assert_eq!(n.wire(&rst).0, Counter::KernelVipFlowContested);
        assert_eq!(n.kernel(&from_vip(40000, tcp_flags::RST)), Counter::WireFromKernelReset);
        assert!(n.flows.is_empty());
    }

    #[test]
    fn forged_rst_fin_and_syn_never_end_a_known_flow() {
        // For each forged segment, in a bucket still held and in one
        // released since: the flow stays known through the grace and long
        // after (the kernel ignored the forgery and said nothing), and the
        // client's segments keep reaching the kernel.
        for forged in [
            tcp_flags::RST,
            tcp_flags::RST | tcp_flags::ACK,
            tcp_flags::FIN | tcp_flags::ACK,
            tcp_flags::SYN,
        ] {
            for released in [false, true] {
                let syn = tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, 80, tcp_flags::SYN);
                let ack = tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, 80, tcp_flags::ACK);
                let bad = tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, 80, forged);
                let mut n = Node::new(BucketState::Settled);
                assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
                assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
                if released {
                    n.view = OwnershipView::new(64, 2);
                }
                for _ in 0..3 {
                    assert_eq!(n.wire(&bad).0, Counter::KernelVipFlowContested, "{forged:#x}");
                }
                n.now += 5_000;
                assert_eq!(
                    n.wire(&ack).0,
                    Counter::KernelVipFlow,
                    "{forged:#x} released {released}"
                );
                n.now += 200_000;
                n.flows.sweep(n.now, usize::MAX);
                assert_eq!(
                    n.wire(&ack).0,
                    Counter::KernelVipFlow,
                    "{forged:#x} released {released}"
                );
                assert_eq!(n.flows.len(), 1);
                assert_eq!(n.flows.stats().reset, 0);
                // The kernel answers the client: no longer contested.
                n.kernel(&tcp6_to(CLIENT_MAC, V6_VIP, 80, V6_CLIENT, 40000, tcp_flags::ACK));
                assert_eq!(n.flows.census(n.now)[FlowState::Established as usize], 1);
            }
        }
    }

    #[test]
    fn the_exchange_port_takes_only_its_members() {
        let peer = [192, 0, 2, 22];
        let mut n = Node::new(BucketState::Settled);
        n.c.guard_exchange(7946, vec![Addr::V4(peer)]);
        let node = [192, 0, 2, 21];
        let (outcome, buf) = n.wire(&udp4_to(NODE_MAC, peer, 7946, node, 7946));
        assert_eq!(outcome, Counter::KernelExchange);
        assert_eq!(&buf.bytes()[..6], &KERNEL_MAC.0, "up to the kernel");
        assert_eq!(
            n.wire(&udp4_to(NODE_MAC, CLIENT_V4, 40000, node, 7946)).0,
            Counter::DropExchangeNotMember
        );
        // Other ports of the node, and the exchange's port unguarded.
        assert_eq!(
            n.wire(&udp4_to(NODE_MAC, CLIENT_V4, 40000, node, 53)).0,
            Counter::KernelLocal
        );
        let mut open = Node::new(BucketState::Settled);
        assert_eq!(
            open.wire(&udp4_to(NODE_MAC, CLIENT_V4, 40000, node, 7946)).0,
            Counter::KernelLocal
        );
    }

    #[test]
    fn the_kernels_reset_of_a_forged_syns_handshake_in_a_claimed_bucket_is_not_sent() {
        // A forged SYN with the tuple of a connection another member still
        // serves reaches this node's kernel as a new connection; the client
        // answers its SYN-ACK with an ACK of its own connection, which this
        // kernel answers with a bare RST. Sent, it would end the client's
        // real connection: not while the bucket is claimed, not settled.
        let syn = to_vip4(40000, tcp_flags::SYN);
        let ack = to_vip4(40000, tcp_flags::ACK);
        for (state, want) in [
            (BucketState::Claimed, Counter::DropKernelResetClaimed),
            (BucketState::Settled, Counter::WireFromKernelReset),
        ] {
            let mut n = Node::new(state);
            assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
            assert_eq!(
                n.kernel(&from_vip(40000, tcp_flags::SYN | tcp_flags::ACK)),
                Counter::WireFromKernelAnswer
            );
            assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
            assert_eq!(n.kernel(&from_vip(40000, tcp_flags::RST)), want, "{state:?}");
            assert_eq!(n.flows.len(), 0, "{state:?}: the flow ends either way");
        }
        // The kernel's abort of its own connection (RST with ACK) still goes.
        let mut n = Node::new(BucketState::Claimed);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        assert_eq!(
            n.kernel(&from_vip(40000, tcp_flags::RST | tcp_flags::ACK)),
            Counter::WireFromKernelReset
        );
    }

    #[test]
    fn the_kernels_fin_closes_a_flow_and_its_rst_ends_it() {
        let syn = to_vip4(40000, tcp_flags::SYN);
        let ack = to_vip4(40000, tcp_flags::ACK);
        let fin = to_vip4(40000, tcp_flags::FIN | tcp_flags::ACK);
        let mut n = Node::new(BucketState::Claimed);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        assert_eq!(
            n.kernel(&from_vip(40000, tcp_flags::SYN | tcp_flags::ACK)),
            Counter::WireFromKernelAnswer
        );
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        n.view = OwnershipView::new(64, 2);
        // Both FINs: the client's, then the kernel's.
        assert_eq!(n.wire(&fin).0, Counter::KernelVipFlowContested);
        assert_eq!(
            n.kernel(&from_vip(40000, tcp_flags::FIN | tcp_flags::ACK)),
            Counter::WireFromKernel
        );
        assert_eq!(n.flows.census(n.now)[FlowState::Closing as usize], 1);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow, "the last ACK");
        // Closing entries go after the closing timeout.
        n.now += FlowTimeouts::default().closing_ms * 2;
        assert_eq!(n.wire(&ack).0, Counter::DropNotOwner);
        // The kernel's RST ends a flow at once.
        let mut n = Node::new(BucketState::Claimed);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        n.view = OwnershipView::new(64, 2);
        assert_eq!(
            n.kernel(&from_vip(40000, tcp_flags::RST | tcp_flags::ACK)),
            Counter::WireFromKernelReset
        );
        assert_eq!(n.wire(&ack).0, Counter::DropNotOwner);
        // A kernel frame of a flow we do not know changes nothing.
        assert_eq!(n.kernel(&from_vip(40001, tcp_flags::RST)), Counter::WireFromKernel);
    }

    #[test]
    fn adoption_is_provisional_until_the_kernel_answers() {
        let ack = |port| to_vip4(port, tcp_flags::ACK);
        let mut n = Node::new(BucketState::Settled);
        // Refused: the kernel answers with a RST; the entry goes at once.
        assert_eq!(n.wire(&ack(40000)).0, Counter::KernelVipAdopted);
        assert_eq!(
            n.kernel(&from_vip(40000, tcp_flags::RST)),
            Counter::WireFromKernelRefused
        );
        assert!(n.flows.is_empty());
        assert_eq!(n.flows.stats().refused, 1);
        // Never answered (a bad checksum): gone after the provisional
        // timeout, however often the wire repeats it.
        assert_eq!(n.wire(&ack(40001)).0, Counter::KernelVipAdopted);
        for _ in 0..10 {
            n.now += 250;
            assert_eq!(n.wire(&ack(40001)).0, Counter::KernelVipProvisional);
        }
        n.now += FlowTimeouts::default().provisional_ms;
        n.flows.sweep(n.now, usize::MAX);
        assert!(n.flows.is_empty());
        assert_eq!(n.wire(&ack(40001)).0, Counter::KernelVipAdopted, "adopted again");
        // A provisional flow of a bucket no longer held is dropped and
        // forgotten, like an unknown one.
        n.view = OwnershipView::new(64, 2);
        assert_eq!(n.wire(&ack(40001)).0, Counter::DropNotOwner);
        assert!(n.flows.is_empty());
        for state in [BucketState::Claimed, BucketState::Foreign] {
            let mut n = Node::new(BucketState::Settled);
            assert_eq!(n.wire(&ack(40002)).0, Counter::KernelVipAdopted);
            n.view = OwnershipView::new(64, 2);
            for b in 0..64 {
                n.view.set(crate::hash::Bucket(b), state);
            }
            let expected = if state == BucketState::Claimed {
                Counter::DropRecentBucket
            } else {
                Counter::DropNotOwner
            };
            assert_eq!(n.wire(&ack(40002)).0, expected);
            assert!(n.flows.is_empty());
        }
        // A SYN on a provisional tuple is a new connection.
        let mut n = Node::new(BucketState::Settled);
        assert_eq!(n.wire(&ack(40003)).0, Counter::KernelVipAdopted);
        let syn = to_vip4(40003, tcp_flags::SYN);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        assert_eq!(n.flows.census(n.now)[FlowState::HalfOpen as usize], 1);
    }

    #[test]
    fn a_flood_of_spoofed_acks_leaves_the_flow_table_as_it_was() {
        // 20,000 established connections in a 65,536-slot table, then
        // 150,000 bare ACKs from spoofed clients over 1.5 s, all in settled
        // buckets, the sweeper running as a worker runs it (128 groups a
        // millisecond). Half of the ACKs carry a good checksum, and the
        // kernel answers them with a RST; the other half nobody answers.
        // New connections keep arriving throughout and are all tracked.
        let mut n = Node::new(BucketState::Settled);
        n.flows = FlowTable::new(65_536, FlowTimeouts::default());
        let mut rng = Rng(0xf100_d5ee_d000_0001);
        let client = |rng: &mut Rng| {
            let r = rng.next_u64();
            (
                [198, 18 + (r & 1) as u8, (r >> 8) as u8, (r >> 16) as u8],
                (r >> 24) as u16 | 1024,
            )
        };
        let mut established = Vec::new();
        for _ in 0..20_000 {
            let (a, p) = client(&mut rng);
            if n.wire(&tcp4_to(CLUSTER_MAC, a, p, V4_VIP, 80, tcp_flags::SYN)).0 == Counter::KernelVipSyn {
                assert_eq!(
                    n.wire(&tcp4_to(CLUSTER_MAC, a, p, V4_VIP, 80, tcp_flags::ACK)).0,
                    Counter::KernelVipFlow
                );
                established.push((a, p));
            }
        }
        let before = n.flows.len();
        assert!(before > 19_900, "{before}");
        let mut counts = crate::counters::Counts::default();
        let mut new_connections = 0;
        let start = n.now;
        for i in 0..150_000u32 {
            n.now = start + i / 100;
            if i % 100 == 0 {
                n.flows.sweep(n.now, 128);
            }
            let r = rng.next_u64();
            let a = [203, 0, (r >> 8) as u8, (r >> 16) as u8];
            let p = (r >> 24) as u16;
            let (outcome, _) = n.wire(&tcp4_to(CLUSTER_MAC, a, p, V4_VIP, 80, tcp_flags::ACK));
            counts.add(outcome);
            if i % 2 == 0 {
                let reply = tcp4_to(CLIENT_MAC, V4_VIP, 80, a, p, tcp_flags::RST);
                let answer = n.kernel(&reply);
                counts.add(answer);
                if outcome == Counter::KernelVipAdopted {
                    assert_eq!(answer, Counter::WireFromKernelRefused);
                }
            }
            if i % 500 == 0 {
                let (a, p) = client(&mut rng);
                let syn = tcp4_to(CLUSTER_MAC, a, p, V4_VIP, 80, tcp_flags::SYN);
                assert_eq!(
                    n.wire(&syn).0,
                    Counter::KernelVipSyn,
                    "a new connection during the flood"
                );
                let ack = tcp4_to(CLUSTER_MAC, a, p, V4_VIP, 80, tcp_flags::ACK);
                assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
                established.push((a, p));
                new_connections += 1;
            }
        }
        // Every frame of the flood was passed up, once each, and every one
        // the kernel answered was refused.
        let adopted = counts.get(Counter::KernelVipAdopted) + counts.get(Counter::KernelVipAdoptedUntracked);
        assert_eq!(adopted, 150_000);
        // A few found no free, expired or provisional slot in their two
        // groups (full of established flows): passed up, not recorded.
        let untracked = counts.get(Counter::KernelVipAdoptedUntracked);
        assert!(untracked < 100, "{untracked} untracked");
        let refused = counts.get(Counter::WireFromKernelRefused);
        assert!(refused + untracked >= 75_000 && refused <= 75_000, "{refused} refused");
        assert_eq!(n.flows.stats().refused, refused);
        assert_eq!(
            n.flows.stats().insert_failed,
            untracked,
            "no new connection went untracked"
        );
        // The unanswered half filled the free slots, no more.
        assert!(n.flows.stats().evicted > 10_000, "{:?}", n.flows.stats());
        // No connection was lost.
        for &(a, p) in &established {
            let ack = tcp4_to(CLUSTER_MAC, a, p, V4_VIP, 80, tcp_flags::ACK);
            assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        }
        // After the provisional timeout (and its slack), with the sweeper
        // having gone round once more, the table is as it was plus the new
        // connections, within 1%.
        let timeouts = n.flows.timeouts();
        n.now += timeouts.provisional_ms + timeouts.provisional_ms / 32 + 2 * n.flows.tick_ms() + 1;
        for _ in 0..65_536 / 4 / 128 + 1 {
            n.flows.sweep(n.now, 128);
        }
        let after = n.flows.len();
        let expected = before + new_connections;
        assert!(
            after.abs_diff(expected) * 100 <= expected,
            "{after} entries, {expected} expected"
        );
        assert_eq!(n.flows.census(n.now)[FlowState::Provisional as usize], 0);
    }

    #[test]
    fn a_revoked_acceptance_leaves_no_flow_behind() {
        // A SYN and an adopted segment are accepted, then not delivered
        // (the lease ran out before they reached the kernel); the bucket is
        // then another node's. Their flows must be gone, or the new owner's
        // connection would reach this kernel and be reset by it.
        let syn = to_vip4(40000, tcp_flags::SYN);
        let ack = to_vip4(40000, tcp_flags::ACK);
        let ack6 = tcp6_to(CLUSTER_MAC, V6_CLIENT, 40001, V6_VIP, 80, tcp_flags::ACK);
        let other = to_vip4(40002, tcp_flags::ACK);
        let mut n = Node::new(BucketState::Settled);
        let (outcome, sent) = n.wire(&syn);
        assert!(outcome.rests_on_lease());
        assert_eq!(n.wire(&other).0, Counter::KernelVipAdopted);
        assert_eq!(n.kernel(&from_vip(40002, tcp_flags::ACK)), Counter::WireFromKernel);
        let (outcome6, sent6) = n.wire(&ack6);
        assert_eq!(outcome6, Counter::KernelVipAdopted);
        assert!(outcome6.rests_on_lease());
        n.c.revoke(sent.bytes(), None, &mut n.flows, n.now);
        n.c.revoke(sent6.bytes(), None, &mut n.flows, n.now);
        n.view = OwnershipView::new(64, 2);
        assert_eq!(n.wire(&ack).0, Counter::DropNotOwner);
        assert_eq!(n.wire(&ack6).0, Counter::DropNotOwner);
        // What was not revoked stays.
        assert_eq!(n.wire(&other).0, Counter::KernelVipFlow);
        assert!(!Counter::KernelVipFlow.rests_on_lease());
        // A frame that is not a VIP's TCP changes nothing.
        n.c.revoke(&syn[..20], None, &mut n.flows, n.now);
        assert_eq!(n.wire(&other).0, Counter::KernelVipFlow);
    }

    /// Three nodes over 64 buckets, node `i` holding the buckets `b % 3
    /// == i` settled: which nodes take `frame` (fast path, and the same
    /// through the full parser, with a NIC hash that is not the value).
    fn takers(frame: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        for i in 0..3usize {
            let mut n = Node::new(BucketState::Foreign);
            for b in 0..64u32 {
                if b as usize % 3 == i {
                    n.view.set(crate::hash::Bucket(b), BucketState::Settled);
                }
            }
            let (a, _) = n.wire(frame);
            let (b, _) = n.wire_full(frame, None);
            assert_eq!(a, b, "node {i}");
            if a.action() == Action::ToKernel {
                out.push(i);
            }
        }
        out
    }

    #[test]
    fn port_rules_choose_what_the_value_covers() {
        use tcp_flags::SYN;
        let mut spread80 = std::collections::BTreeSet::new();
        let mut single_node = std::collections::BTreeSet::new();
        let mut client_nodes = std::collections::BTreeSet::new();
        let mut network_nodes = std::collections::BTreeSet::new();
        for host in 1..=40u8 {
            let client = [192, 0, 2, host];
            let mut v6 = V6_CLIENT;
            v6[9] = host;
            let mut by_client = std::collections::BTreeSet::new();
            let mut by_client6 = std::collections::BTreeSet::new();
            let mut by_network = std::collections::BTreeSet::new();
            for port in (1024..65535u16).step_by(4099) {
                // Client affinity: one node for every port of the client,
                // and exactly one node.
                let t = takers(&tcp4_to(CLUSTER_MAC, client, port, V4_VIP, PORT_CLIENT, SYN));
                assert_eq!(t.len(), 1, "{client:?}:{port}");
                by_client.insert(t[0]);
                let t = takers(&tcp6_to(CLUSTER_MAC, v6, port, V6_VIP, PORT_CLIENT, SYN));
                assert_eq!(t.len(), 1);
                by_client6.insert(t[0]);
                // Network: one node for the whole /24.
                let t = takers(&tcp4_to(CLUSTER_MAC, client, port, V4_VIP, PORT_NETWORK, SYN));
                assert_eq!(t.len(), 1);
                by_network.insert(t[0]);
                // Single host: one node for everything.
                let t = takers(&tcp4_to(CLUSTER_MAC, client, port, V4_VIP, PORT_SINGLE, SYN));
                assert_eq!(t.len(), 1);
                single_node.insert(t[0]);
                if host == 1 {
                    let t = takers(&tcp4_to(CLUSTER_MAC, client, port, V4_VIP, 80, SYN));
                    assert_eq!(t.len(), 1);
                    spread80.insert(t[0]);
                }
            }
            assert_eq!(by_client.len(), 1, "client {client:?} on {by_client:?}");
            assert_eq!(by_client6.len(), 1, "client {v6:?} on {by_client6:?}");
            client_nodes.extend(by_client);
            network_nodes.extend(by_network);
        }
        assert_eq!(single_node.len(), 1, "single host: {single_node:?}");
        assert_eq!(network_nodes.len(), 1, "one /24: {network_nodes:?}");
        assert_eq!(client_nodes.len(), 3, "clients spread over the nodes");
        assert!(spread80.len() > 1, "the 4-tuple spreads one client: {spread80:?}");
        // The value is the rule's, everywhere it is computed.
        let c = classifier();
        let (client, vip) = (Addr::V4([192, 0, 2, 7]), Addr::V4(V4_VIP));
        assert_eq!(
            c.connection_value(client, vip, 1, PORT_CLIENT),
            symmetric::addresses(client, vip)
        );
        assert_eq!(
            c.connection_value(client, vip, 1, PORT_NETWORK),
            symmetric::addresses(Addr::V4([192, 0, 2, 0]), vip)
        );
        assert_eq!(
            c.connection_value(client, vip, 1, 80),
            symmetric::tuple(client, vip, 1, 80)
        );
    }

    #[test]
    fn a_disabled_port_is_dropped_and_counted_on_every_node() {
        let mut n = Node::new(BucketState::Settled);
        for f in [
            tcp4_to(CLUSTER_MAC, CLIENT_V4, 1, V4_VIP, PORT_DISABLED, tcp_flags::SYN),
            tcp6_to(CLUSTER_MAC, V6_CLIENT, 1, V6_VIP, PORT_DISABLED, tcp_flags::ACK),
            udp4_to(CLUSTER_MAC, CLIENT_V4, 1, V4_VIP, PORT_DISABLED),
        ] {
            assert_eq!(n.wire(&f).0, Counter::DropVipPortDisabled);
            assert_eq!(n.wire_full(&f, Some(7)).0, Counter::DropVipPortDisabled);
        }
        assert!(n.flows.is_empty());
        assert!(!n.c.serves_tcp(Addr::V4(V4_VIP), PORT_DISABLED));
        assert!(n.c.serves_tcp(Addr::V4(V4_VIP), PORT_SINGLE));
    }

    #[test]
    fn a_nic_hash_never_stands_for_a_rules_value() {
        // A NIC hashes the 4-tuple: on a rule's port its hash is not the
        // value, so the node computes it (and decides as without a hash).
        let client = [192, 0, 2, 33];
        for port in [PORT_CLIENT, PORT_NETWORK, PORT_SINGLE] {
            for rss in [0u32, 1, 2, 0xdead_beef] {
                let f = tcp4_to(CLUSTER_MAC, client, 4000, V4_VIP, port, tcp_flags::SYN);
                let mut with = Node::new(BucketState::Foreign);
                let mut without = Node::new(BucketState::Foreign);
                for b in 0..64u32 {
                    let state = [BucketState::Foreign, BucketState::Settled][b as usize % 2];
                    with.view.set(crate::hash::Bucket(b), state);
                    without.view.set(crate::hash::Bucket(b), state);
                }
                assert_eq!(with.wire_fast(&f, Some(rss)).0, without.wire_fast(&f, None).0);
                assert_eq!(with.wire_full(&f, Some(rss)).0, without.wire_full(&f, None).0);
            }
        }
        // UDP too.
        let mut n = Node::new(BucketState::Foreign);
        let value = symmetric::addresses(Addr::V4(client), Addr::V4(V4_VIP));
        n.view.set(value.bucket(n.view.mask()), BucketState::Settled);
        let dgram = udp4_to(CLUSTER_MAC, client, 999, V4_VIP, UDP_PORT_CLIENT);
        let other = (value.0 + 1) & n.view.mask();
        assert_eq!(n.wire_full(&dgram, Some(other)).0, Counter::KernelVipUdp);
    }

    #[test]
    fn flows_learnt_elsewhere_and_icmp_errors_use_the_rules_value() {
        // The kernel's connection to a client-affinity port, learnt at
        // start: found by its segments although the bucket is another's.
        let mut n = Node::new(BucketState::Foreign);
        let client = Addr::V4([192, 0, 2, 44]);
        let flow = n.c.flow_ref(client, 5555, Addr::V4(V4_VIP), PORT_CLIENT);
        assert_eq!(flow.value(), symmetric::addresses(client, Addr::V4(V4_VIP)));
        n.flows.follow(&n.view);
        n.flows.insert(flow, FlowState::Established, n.now);
        let ack = tcp4_to(CLUSTER_MAC, [192, 0, 2, 44], 5555, V4_VIP, PORT_CLIENT, tcp_flags::ACK);
        assert_eq!(n.wire(&ack).0, Counter::KernelVipFlow);
        // The kernel's segments on it are recorded on that flow: its RST
        // ends it.
        let mut rst = tcp4_to(
            CLIENT_MAC,
            V4_VIP,
            PORT_CLIENT,
            [192, 0, 2, 44],
            5555,
            tcp_flags::RST | tcp_flags::ACK,
        );
        rst[6..12].copy_from_slice(&KERNEL_MAC.0);
        assert_eq!(n.kernel(&rst), Counter::WireFromKernelReset);
        assert_eq!(n.wire(&ack).0, Counter::DropNotOwner);
        // An ICMP error quoting a connection of that port is the owner's
        // of the client's value, whatever the ports.
        let value = symmetric::addresses(client, Addr::V4(V4_VIP));
        n.view.set(value.bucket(n.view.mask()), BucketState::Settled);
        for port in [1, 5555, 65000] {
            let err = icmp4_frag_needed_to(CLUSTER_MAC, [192, 0, 2, 1], V4_VIP, PORT_CLIENT, [192, 0, 2, 44], port);
            assert_eq!(n.wire(&err).0, Counter::KernelVipIcmp);
            let other = icmp4_frag_needed_to(CLUSTER_MAC, [192, 0, 2, 1], V4_VIP, PORT_CLIENT, [192, 0, 2, 45], port);
            let v45 = symmetric::addresses(Addr::V4([192, 0, 2, 45]), Addr::V4(V4_VIP));
            if v45.bucket(n.view.mask()) != value.bucket(n.view.mask()) {
                assert_eq!(n.wire(&other).0, Counter::DropIcmpNotOwner);
            }
        }
    }

    #[test]
    fn odd_flags_ports_fragments_and_protocols_are_dropped_by_reason() {
        let mut n = Node::new(BucketState::Settled);
        let synfin = to_vip4(1, tcp_flags::SYN | tcp_flags::FIN);
        assert_eq!(n.wire(&synfin).0, Counter::DropTcpBadFlags);
        let port = tcp4_to(CLUSTER_MAC, CLIENT_V4, 1, V4_VIP, 81, tcp_flags::SYN);
        assert_eq!(n.wire(&port).0, Counter::DropVipPortNotServed);
        let mut frag = to_vip4(1, tcp_flags::SYN);
        set_ipv4_more_fragments(&mut frag);
        assert_eq!(n.wire(&frag).0, Counter::DropVipFragment);
        let mut other = tcp4_to(CLUSTER_MAC, CLIENT_V4, 1, [192, 0, 2, 99], 80, tcp_flags::SYN);
        assert_eq!(n.wire(&other).0, Counter::DropClusterMacNotVip);
        other[0..6].copy_from_slice(&[2, 7, 7, 7, 7, 7]);
        assert_eq!(n.wire(&other).0, Counter::DropNotForUs);
        let mut spoofed = to_vip4(1, tcp_flags::SYN);
        spoofed[6..12].copy_from_slice(&CLUSTER_MAC.0);
        assert_eq!(n.wire(&spoofed).0, Counter::DropSpoofedSource);
    }

    #[test]
    fn udp_and_icmp_go_to_the_bucket_owner() {
        let dns = udp4_to(CLUSTER_MAC, CLIENT_V4, 5353, V4_VIP, 53);
        assert_eq!(Node::new(BucketState::Claimed).wire(&dns).0, Counter::KernelVipUdp);
        assert_eq!(Node::new(BucketState::Foreign).wire(&dns).0, Counter::DropUdpNotOwner);
        let ping = icmp4_echo_to(CLUSTER_MAC, CLIENT_V4, V4_VIP);
        assert_eq!(Node::new(BucketState::Settled).wire(&ping).0, Counter::KernelVipIcmp);
        assert_eq!(Node::new(BucketState::Foreign).wire(&ping).0, Counter::DropIcmpNotOwner);
    }

    #[test]
    fn ipv6_connections_follow_the_same_rules() {
        let syn = tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, 80, tcp_flags::SYN);
        assert_eq!(Node::new(BucketState::Claimed).wire(&syn).0, Counter::KernelVipSyn);
        assert_eq!(Node::new(BucketState::Foreign).wire(&syn).0, Counter::DropSynNotOwner);
    }

    #[test]
    fn exactly_one_of_several_nodes_accepts_each_syn() {
        // Three nodes splitting 64 buckets; every SYN lands on exactly one.
        let mut nodes: Vec<Node> = (0..3).map(|_| Node::new(BucketState::Foreign)).collect();
        for b in 0..64u32 {
            nodes[(b % 3) as usize]
                .view
                .set(crate::hash::Bucket(b), BucketState::Settled);
        }
        let mut per_node = [0usize; 3];
        for port in 1000..4000u16 {
            let syn = to_vip4(port, tcp_flags::SYN);
            let accepted: Vec<usize> = (0..3)
                .filter(|&i| nodes[i].wire(&syn).0.action() == Action::ToKernel)
                .collect();
            assert_eq!(accepted.len(), 1, "port {port}: {accepted:?}");
            per_node[accepted[0]] += 1;
        }
        assert!(per_node.iter().all(|&n| n > 800), "{per_node:?}");
    }

    #[test]
    fn kernel_frames_leave_from_the_node_mac_and_never_announce_a_vip() {
        let c = classifier();
        let mut flows = FlowTable::new(64, FlowTimeouts::default());
        let mut from_kernel = tcp4_to(CLIENT_MAC, V4_VIP, 80, CLIENT_V4, 40000, tcp_flags::ACK);
        from_kernel[6..12].copy_from_slice(&KERNEL_MAC.0);
        let mut buf = TestBuf::new(&from_kernel);
        assert_eq!(c.from_kernel(&mut buf, &mut flows, 0), Counter::WireFromKernel);
        assert_eq!(&buf.bytes()[6..12], &NODE_MAC.0);
        let mut garp = arp_request(KERNEL_MAC, V4_VIP, V4_VIP);
        garp[6..12].copy_from_slice(&KERNEL_MAC.0);
        assert_eq!(
            c.from_kernel(&mut TestBuf::new(&garp), &mut flows, 0),
            Counter::DropKernelVipAdvert
        );
        // The kernel's ARP request carries the node MAC as sender.
        let req = arp_request(KERNEL_MAC, [192, 0, 2, 21], CLIENT_V4);
        let mut buf = TestBuf::new(&req);
        assert_eq!(c.from_kernel(&mut buf, &mut flows, 0), Counter::WireFromKernel);
        assert_eq!(&buf.bytes()[14 + 8..14 + 14], &NODE_MAC.0);
        // Its neighbour solicitations carry the node MAC, checksum fixed.
        let ns = neighbour_solicit(
            KERNEL_MAC,
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x21],
            V6_CLIENT,
            true,
        );
        let mut buf = TestBuf::new(&ns);
        assert_eq!(c.from_kernel(&mut buf, &mut flows, 0), Counter::WireFromKernel);
        let b = buf.bytes();
        assert_eq!(&b[14 + 40 + 26..14 + 40 + 32], &NODE_MAC.0);
        assert_eq!(icmpv6_checksum(b, 14, 54, b.len()), 0);
        // A neighbour advertisement for a VIP is never sent.
        let mut na = neighbour_solicit(KERNEL_MAC, V6_VIP, V6_CLIENT, true);
        na[14 + 40] = 136;
        assert_eq!(
            c.from_kernel(&mut TestBuf::new(&na), &mut flows, 0),
            Counter::DropKernelVipAdvert
        );
    }

    #[test]
    fn looking_reads_any_frame_safely_and_changes_nothing() {
        let c = classifier();
        let mut n = Node::new(BucketState::Settled);
        n.flows.follow(&n.view);
        let frames = [
            to_vip4(40000, tcp_flags::SYN),
            tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, 80, tcp_flags::ACK),
            arp_request(CLIENT_MAC, CLIENT_V4, V4_VIP),
            tcp6_with_ext(&[(0, 8)], tcp_flags::SYN),
            add_vlan(&to_vip4(1, tcp_flags::SYN), 7),
        ];
        for f in &frames {
            // Every prefix, and garbage in the IPv4 header length.
            for len in 0..=f.len() {
                if c.look(&f[..len], None, &n.flows).is_fast() {
                    assert!(packet::parse(&f[..len]).is_ok(), "prefix {len} of {f:?}");
                }
            }
            let mut g = f.clone();
            if g.len() > 14 {
                g[14] = 0x4f;
            }
            assert!(!c.look(&g, None, &n.flows).is_fast());
        }
        assert!(c.look(&frames[0], None, &n.flows).is_fast());
        assert!(c.look(&frames[1], None, &n.flows).is_fast());
        assert!(
            !c.look(&frames[3], None, &n.flows).is_fast(),
            "extension headers: full path"
        );
        assert!(!c.look(&frames[4], None, &n.flows).is_fast(), "VLAN: full path");
        assert!(n.flows.is_empty());
        assert_eq!(n.wire(&frames[0]).0, Counter::KernelVipSyn);
    }

    #[test]
    fn icmp_errors_follow_the_quoted_connection() {
        let mut n = Node::new(BucketState::Claimed);
        let syn = to_vip4(40000, tcp_flags::SYN);
        assert_eq!(n.wire(&syn).0, Counter::KernelVipSyn);
        n.view = OwnershipView::new(64, 2);
        let err = icmp4_frag_needed_to(CLUSTER_MAC, [192, 0, 2, 1], V4_VIP, 80, CLIENT_V4, 40000);
        assert_eq!(n.wire(&err).0, Counter::KernelVipIcmp, "known flow");
        let err = icmp4_frag_needed_to(CLUSTER_MAC, [192, 0, 2, 1], V4_VIP, 80, CLIENT_V4, 40001);
        assert_eq!(n.wire(&err).0, Counter::DropIcmpNotOwner);
    }
}
