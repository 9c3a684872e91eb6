//! What happened to every frame, counted per worker.
//!
//! Every frame a worker handles ends in exactly one [`Counter`]; the worker
//! adds one to a plain array (no atomics per packet) and copies the array
//! to a shared [`WorkerStats`] every few milliseconds, where the control
//! core, the status command and the metrics endpoint read it.

use crate::packet::ParseError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a frame goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Up to the host kernel through the exception port.
    ToKernel,
    /// Out of the wire port (an in-place reply, or the kernel's traffic).
    ToWire,
    /// Freed.
    Drop,
}

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident = $text:literal => $action:ident, )*) => {
        /// The outcome of one frame.
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
        #[repr(u8)]
        pub enum Counter {
            $( $(#[$doc])* $name, )*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[ $( Counter::$name, )* ];
            /// How many counters there are.
            pub const COUNT: usize = Counter::ALL.len();

            /// The counter's name in metrics and status output.
            pub fn name(self) -> &'static str {
                match self { $( Counter::$name => $text, )* }
            }

            /// What the worker does with the frame.
            #[inline]
            pub fn action(self) -> Action {
                match self { $( Counter::$name => Action::$action, )* }
            }
        }
    };
}

counters! {
    /// A frame for the node itself (its addresses, broadcast, multicast).
    KernelLocal = "kernel_local" => ToKernel,
    /// An exchange datagram (heartbeat, consensus) from a member's address,
    /// to the node's exchange port.
    KernelExchange = "kernel_exchange" => ToKernel,
    /// A datagram to the node's exchange port from an address that is no
    /// member's: dropped before the exception path (a flood there would
    /// crowd out the heartbeats).
    DropExchangeNotMember = "drop_exchange_not_member" => Drop,
    /// A SYN to a VIP in a bucket this node holds; flow recorded.
    KernelVipSyn = "kernel_vip_syn" => ToKernel,
    /// As above, but the flow table had no room (counted, still accepted).
    KernelVipSynUntracked = "kernel_vip_syn_untracked" => ToKernel,
    /// A packet of a flow in this worker's flow table.
    KernelVipFlow = "kernel_vip_flow" => ToKernel,
    /// A RST, FIN or SYN on an established flow of this worker: passed to
    /// the kernel, which checks it; the flow is contested, not ended (only
    /// the kernel's RST or FIN, or the idle timeout, end it).
    KernelVipFlowContested = "kernel_vip_flow_contested" => ToKernel,
    /// An unknown non-SYN packet in a settled bucket of this node; with
    /// ACK (and neither RST nor FIN) it is recorded as provisional until
    /// the kernel answers.
    KernelVipAdopted = "kernel_vip_adopted" => ToKernel,
    /// As above, but the flow table had no room (free, expired or
    /// provisional slot) for it: not recorded, still passed up.
    KernelVipAdoptedUntracked = "kernel_vip_adopted_untracked" => ToKernel,
    /// A packet of a provisional flow (adopted, not yet answered by the
    /// kernel) in a settled bucket of this node.
    KernelVipProvisional = "kernel_vip_provisional" => ToKernel,
    /// A UDP datagram to a VIP in a bucket of this node.
    KernelVipUdp = "kernel_vip_udp" => ToKernel,
    /// An ICMP echo or error for a VIP connection of this node.
    KernelVipIcmp = "kernel_vip_icmp" => ToKernel,
    /// An ARP request for a VIP, answered with the cluster MAC.
    ReplyArp = "reply_arp" => ToWire,
    /// A neighbour solicitation for a VIP, answered with the cluster MAC.
    ReplyNdp = "reply_ndp" => ToWire,
    /// A frame from the kernel, sent out of the wire port.
    WireFromKernel = "wire_from_kernel" => ToWire,
    /// The kernel's first SYN-ACK to a SYN this node accepted, sent under
    /// the lease (checked again just before the burst leaves): the client
    /// may hold the connection from now on.
    WireFromKernelAnswer = "wire_from_kernel_answer" => ToWire,
    /// The kernel's RST on a flow of this worker, sent: the flow ends.
    WireFromKernelReset = "wire_from_kernel_reset" => ToWire,
    /// The kernel's RST on a provisional flow, sent: the kernel refused
    /// the adopted segment (a forged one, or a connection it does not
    /// hold), and the entry goes.
    WireFromKernelRefused = "wire_from_kernel_refused" => ToWire,
    /// Unicast to another node's MAC (flooded by the switch).
    DropNotForUs = "drop_not_for_us" => Drop,
    /// A source MAC that is ours, the cluster's, or a group address.
    DropSpoofedSource = "drop_spoofed_source" => Drop,
    /// Sent to the cluster MAC but not to a VIP.
    DropClusterMacNotVip = "drop_cluster_mac_not_vip" => Drop,
    /// A SYN in a bucket this node does not hold.
    DropSynNotOwner = "drop_syn_not_owner" => Drop,
    /// A frame accepted under the lease (a new connection, an adopted
    /// segment, a datagram) that did not reach the kernel: the lease ran
    /// out between the decision and the delivery (the worker stalled).
    DropLeaseRanOut = "drop_lease_ran_out" => Drop,
    /// An unknown non-SYN packet in a bucket of another node.
    DropNotOwner = "drop_not_owner" => Drop,
    /// An unknown non-SYN packet in a bucket this node acquired recently:
    /// it may belong to the previous owner.
    DropRecentBucket = "drop_recent_bucket" => Drop,
    /// SYN together with FIN or RST.
    DropTcpBadFlags = "drop_tcp_bad_flags" => Drop,
    /// A UDP datagram in a bucket of another node.
    DropUdpNotOwner = "drop_udp_not_owner" => Drop,
    /// An ICMP echo or error for another node's connection.
    DropIcmpNotOwner = "drop_icmp_not_owner" => Drop,
    /// An ICMP error whose quoted packet is not a VIP's TCP or UDP.
    DropIcmpBad = "drop_icmp_bad" => Drop,
    /// A fragment to a VIP (no node can place later fragments).
    DropVipFragment = "drop_vip_fragment" => Drop,
    /// A port the VIP does not serve.
    DropVipPortNotServed = "drop_vip_port_not_served" => Drop,
    /// A port a rule of the VIP disables (every node counts it).
    DropVipPortDisabled = "drop_vip_port_disabled" => Drop,
    /// A protocol the VIP does not serve.
    DropVipProtocol = "drop_vip_protocol" => Drop,
    /// An ARP packet whose sender claims a VIP at another MAC.
    DropArpVipConflict = "drop_arp_vip_conflict" => Drop,
    /// The cluster's own ARP reply for a VIP, seen flooded.
    DropArpVipPeer = "drop_arp_vip_peer" => Drop,
    /// An ARP request for a VIP whose sender fields are inconsistent.
    DropArpBad = "drop_arp_bad" => Drop,
    /// A neighbour solicitation for a VIP that fails RFC 4861 checks.
    DropNdpBad = "drop_ndp_bad" => Drop,
    /// The kernel tried to announce a VIP (ARP or NDP): never sent.
    DropKernelVipAdvert = "drop_kernel_vip_advert" => Drop,
    /// The kernel's RST or SYN-ACK on a contested flow in a bucket this
    /// node does not hold: the kernel no longer holds the connection the
    /// flow was (the client reset it), and its answer would reach a new
    /// connection on the same port, another node's. Not sent; the flow
    /// ends.
    DropKernelStaleFlow = "drop_kernel_stale_flow" => Drop,
    /// The kernel's RST answering a segment of a connection it does not
    /// hold (no ACK flag: not an abort of its own connection), in a bucket
    /// this node holds while another member may still serve flows there:
    /// the segment is that member's connection's (its client's ACK to a
    /// forged SYN this node's kernel answered, say). Not sent.
    DropKernelResetClaimed = "drop_kernel_reset_claimed" => Drop,
    /// The kernel's SYN-ACK, never answered before, in a bucket this node
    /// does not hold under a valid lease (its process stopped after the
    /// SYN went up, or the bucket moved): another node may have answered
    /// the client's SYN. Not sent; the frame goes back to the kernel as
    /// the client's RST, which ends the half-open connection, and the flow
    /// ends.
    DropKernelSynAckNotHeld = "drop_kernel_synack_not_held" => ToKernel,
    /// Wire: shorter than a header it announces.
    DropTruncated = "drop_truncated" => Drop,
    /// Wire: more than two VLAN tags.
    DropTooManyVlans = "drop_too_many_vlans" => Drop,
    /// Wire: ARP that is not Ethernet/IPv4.
    DropBadArp = "drop_bad_arp" => Drop,
    /// Wire: IPv4 header fields wrong.
    DropBadIpv4Header = "drop_bad_ipv4_header" => Drop,
    /// Wire: IPv4 header checksum wrong.
    DropBadIpv4Checksum = "drop_bad_ipv4_checksum" => Drop,
    /// Wire: IPv6 header fields wrong.
    DropBadIpv6Header = "drop_bad_ipv6_header" => Drop,
    /// Wire: IPv6 extension headers malformed or too many.
    DropBadIpv6Extension = "drop_bad_ipv6_extension" => Drop,
    /// Wire: TCP header malformed.
    DropBadTcpHeader = "drop_bad_tcp_header" => Drop,
    /// Wire: UDP header malformed.
    DropBadUdpHeader = "drop_bad_udp_header" => Drop,
    /// Kernel: a frame we could not parse, sent on unchecked.
    WireFromKernelUnparsed = "wire_from_kernel_unparsed" => ToWire,
    /// A chained (multi-segment) mbuf from the wire.
    DropMultiSegment = "drop_multi_segment" => Drop,
    /// The exception port's TX queue was full.
    DropKernelTxFull = "drop_kernel_tx_full" => Drop,
    /// The wire port's TX queue was full.
    DropWireTxFull = "drop_wire_tx_full" => Drop,
}

impl Counter {
    /// The counter of a frame from the wire that did not parse.
    #[inline]
    pub fn malformed(e: ParseError) -> Counter {
        match e {
            ParseError::Truncated => Counter::DropTruncated,
            ParseError::TooManyVlans => Counter::DropTooManyVlans,
            ParseError::BadArp => Counter::DropBadArp,
            ParseError::BadIpv4Header => Counter::DropBadIpv4Header,
            ParseError::BadIpv4Checksum => Counter::DropBadIpv4Checksum,
            ParseError::BadIpv6Header => Counter::DropBadIpv6Header,
            ParseError::BadIpv6Extension => Counter::DropBadIpv6Extension,
            ParseError::BadTcpHeader => Counter::DropBadTcpHeader,
            ParseError::BadUdpHeader => Counter::DropBadUdpHeader,
        }
    }

    /// True for the acceptances that rest on holding the bucket (a new
    /// connection, an unknown segment adopted, a datagram) rather than on
    /// a flow of this node's: a worker delivers them only while the lease
    /// is valid, and otherwise drops them as [`Counter::DropLeaseRanOut`].
    #[inline]
    pub fn rests_on_lease(self) -> bool {
        matches!(
            self,
            Counter::KernelVipSyn
                | Counter::KernelVipSynUntracked
                | Counter::KernelVipAdopted
                | Counter::KernelVipAdoptedUntracked
                | Counter::KernelVipProvisional
                | Counter::KernelVipUdp
        )
    }

    /// True for frames that came from the wire (as opposed to the kernel or
    /// the TX path).
    pub fn is_wire_rx(self) -> bool {
        !matches!(
            self,
            Counter::WireFromKernel
                | Counter::WireFromKernelAnswer
                | Counter::WireFromKernelReset
                | Counter::WireFromKernelRefused
                | Counter::WireFromKernelUnparsed
                | Counter::DropKernelVipAdvert
                | Counter::DropKernelStaleFlow
                | Counter::DropKernelResetClaimed
                | Counter::DropKernelSynAckNotHeld
                | Counter::DropKernelTxFull
                | Counter::DropWireTxFull
        )
    }
}

/// A worker's counters as plain numbers, owned by the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts(pub [u64; Counter::COUNT]);

impl Default for Counts {
    fn default() -> Self {
        Counts([0; Counter::COUNT])
    }
}

impl Counts {
    /// Adds one to `c`.
    #[inline]
    pub fn add(&mut self, c: Counter) {
        self.0[c as usize] += 1;
    }

    /// Adds `n` to `c`.
    #[inline]
    pub fn add_n(&mut self, c: Counter, n: u64) {
        self.0[c as usize] += n;
    }

    /// Moves one count from `from` to `to`: a frame's outcome changed
    /// after it was counted.
    #[inline]
    pub fn recount(&mut self, from: Counter, to: Counter) {
        self.0[from as usize] = self.0[from as usize].saturating_sub(1);
        self.0[to as usize] += 1;
    }

    /// The value of `c`.
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
}

/// Adds a burst's outcomes to [`Counts`] a run at a time: consecutive equal
/// outcomes (a burst of another node's traffic, say) are added once, with
/// the run kept in registers instead of a load and store per frame.
#[derive(Debug, Default)]
pub struct Tally {
    run: Option<(Counter, u64)>,
}

impl Tally {
    /// Counts one outcome.
    #[inline]
    pub fn add(&mut self, c: Counter, counts: &mut Counts) {
        match &mut self.run {
            Some((last, n)) if *last == c => *n += 1,
            run => {
                if let Some((last, n)) = run.replace((c, 1)) {
                    counts.add_n(last, n);
                }
            }
        }
    }

    /// Adds the pending run to `counts` (at the end of each burst).
    #[inline]
    pub fn flush(&mut self, counts: &mut Counts) {
        if let Some((last, n)) = self.run.take() {
            counts.add_n(last, n);
        }
    }
}

/// A worker's counters and gauges as the rest of the node reads them.
/// Written only by the worker (relaxed stores, every few milliseconds).
#[repr(align(64))]
pub struct WorkerStats {
    counters: [AtomicU64; Counter::COUNT],
    /// Packets received from the wire port.
    pub wire_rx: AtomicU64,
    /// Packets received from the exception port.
    pub kernel_rx: AtomicU64,
    /// Live entries in the worker's flow table.
    pub flows: AtomicU64,
    /// Flow table capacity.
    pub flow_capacity: AtomicU64,
    /// Flows that could not be recorded (group full of established flows).
    pub flow_insert_failed: AtomicU64,
    /// Half-open entries evicted under pressure.
    pub flow_evicted: AtomicU64,
    /// The epoch of the ownership view the worker uses.
    pub view_epoch: AtomicU64,
    /// Loop iterations that found no packet.
    pub idle_polls: AtomicU64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            wire_rx: AtomicU64::new(0),
            kernel_rx: AtomicU64::new(0),
            flows: AtomicU64::new(0),
            flow_capacity: AtomicU64::new(0),
            flow_insert_failed: AtomicU64::new(0),
            flow_evicted: AtomicU64::new(0),
            view_epoch: AtomicU64::new(0),
            idle_polls: AtomicU64::new(0),
        }
    }
}

impl WorkerStats {
    /// Publishes the worker's counts.
    pub fn store(&self, counts: &Counts) {
        for (a, v) in self.counters.iter().zip(counts.0.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
    }

    /// Reads the last published counts.
    pub fn load(&self) -> Counts {
        let mut c = Counts::default();
        for (v, a) in c.0.iter_mut().zip(self.counters.iter()) {
            *v = a.load(Ordering::Relaxed);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_adds_up_to_one_add_per_outcome() {
        let outcomes = [
            Counter::DropNotOwner,
            Counter::DropNotOwner,
            Counter::KernelVipFlow,
            Counter::DropNotOwner,
            Counter::KernelVipSyn,
            Counter::KernelVipSyn,
            Counter::KernelVipSyn,
        ];
        let mut one_by_one = Counts::default();
        let mut tallied = Counts::default();
        let mut tally = Tally::default();
        for (i, c) in outcomes.iter().enumerate() {
            one_by_one.add(*c);
            tally.add(*c, &mut tallied);
            if i == 3 {
                // A burst ends mid-run.
                tally.flush(&mut tallied);
                assert_eq!(tallied, one_by_one);
            }
        }
        tally.flush(&mut tallied);
        assert_eq!(tallied, one_by_one);
        assert_eq!(tallied.get(Counter::DropNotOwner), 3);
        tally.flush(&mut tallied);
        assert_eq!(tallied, one_by_one, "a second flush adds nothing");
    }
}
