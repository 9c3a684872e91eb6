//! What the fuzz targets and the seed writer share: the node the classifier
//! target runs (addresses, a view with buckets in every state, a flow table
//! under pressure), the heartbeat target's input format, and the checks of
//! what a decision may do to a frame.

use synshare_control::layout::Layout;
use synshare_control::layout::MemberId;
use synshare_control::protocol::{Agent, Settings};
use synshare_control::wire::{Keys, Role};
use synshare_dataplane::classify::Action;
use synshare_dataplane::counters::Counter;
use synshare_dataplane::flow::{FlowKey, FlowState, FlowTable, FlowTimeouts};
use synshare_dataplane::hash::Bucket;
use synshare_dataplane::ownership::{BucketState, OwnershipView};
use synshare_dataplane::packet::{self, proto, Addr, Mac, Payload, L4};
use synshare_dataplane::synth::{CLIENT_V4, CLUSTER_MAC, KERNEL_MAC, NODE_MAC, V4_VIP, V6_CLIENT, V6_VIP};

/// Buckets of the fuzzed node's view (small: every state is a few hashes away).
pub const BUCKETS: u32 = 64;

/// The classifier of a node serving TCP 80 and UDP 53 on both VIPs.
pub use synshare_dataplane::synth::classifier;

/// A view with buckets in all three states (bucket i: i mod 3).
pub fn view() -> OwnershipView {
    let mut v = OwnershipView::new(BUCKETS, 7);
    for b in 0..BUCKETS {
        let state = match b % 3 {
            0 => BucketState::Foreign,
            1 => BucketState::Claimed,
            _ => BucketState::Settled,
        };
        v.set(Bucket(b), state);
    }
    v
}

/// A small flow table holding the example client's connections in every
/// state, and enough established flows that some groups are full (so
/// eviction and failed inserts happen).
pub fn flows(now: u32) -> FlowTable {
    let mut t = FlowTable::new(64, FlowTimeouts::default());
    let states = [FlowState::Established, FlowState::HalfOpen, FlowState::Closing];
    for (i, state) in states.iter().enumerate() {
        let port = 40000 + i as u16;
        t.insert(
            FlowKey::new(Addr::V4(CLIENT_V4), port, Addr::V4(V4_VIP), 80),
            *state,
            now,
        );
        t.insert(
            FlowKey::new(Addr::V6(V6_CLIENT), port, Addr::V6(V6_VIP), 80),
            *state,
            now,
        );
    }
    for port in 1000..1048u16 {
        t.insert(
            FlowKey::new(Addr::V4([192, 0, 2, 200]), port, Addr::V4(V4_VIP), 80),
            FlowState::Established,
            now,
        );
    }
    t
}

fn is_vip(a: Addr) -> bool {
    a == Addr::V4(V4_VIP) || a == Addr::V6(V6_VIP)
}

/// The ICMPv6 checksum over the pseudo-header and `b[l4..end]` (zero when
/// the message verifies). Written here again, independently of the
/// classifier's.
pub fn icmpv6_sum(b: &[u8], l3: usize, l4: usize, end: usize) -> u16 {
    let mut acc = packet::ones_sum(0, &b[l3 + 8..l3 + 40]);
    acc = packet::ones_sum(acc, &((end - l4) as u32).to_be_bytes());
    acc = packet::ones_sum(acc, &[0, 0, 0, proto::ICMPV6]);
    acc = packet::ones_sum(acc, &b[l4..end]);
    !(acc as u16)
}

/// Checks what [`Classifier::from_wire`] did with `before` (the buffer's
/// bytes as it received them): one wire outcome, malformed frames counted by
/// their parse error (or, when the look dropped the frame as one of a closed
/// bucket before validating it, `closed_unvalidated`, by that bucket's
/// drop), replies well formed and from the node's MAC, frames going up
/// addressed to the kernel and otherwise untouched, dropped frames
/// untouched.
pub fn check_from_wire(before: &[u8], after: &[u8], outcome: Counter, closed_unvalidated: bool) {
    assert!(outcome.is_wire_rx(), "{outcome:?} is not a wire outcome");
    if closed_unvalidated {
        assert!(
            matches!(
                outcome,
                Counter::DropNotOwner | Counter::DropSynNotOwner | Counter::DropTcpBadFlags
            ),
            "a closed bucket's frame counted as {outcome:?}"
        );
        assert_eq!(before, after, "a dropped frame is not touched");
        return;
    }
    let parsed = match packet::parse(before) {
        Err(e) => {
            assert_eq!(outcome, Counter::malformed(e), "unparsable frame: counted by its error");
            assert_eq!(before, after, "an unparsable frame is not touched");
            return;
        }
        Ok(f) => f,
    };
    if parsed.src == NODE_MAC || parsed.src == CLUSTER_MAC || parsed.src.is_group() {
        assert_eq!(outcome, Counter::DropSpoofedSource);
    }
    match outcome.action() {
        Action::Drop => assert_eq!(before, after, "{outcome:?}: a dropped frame is not touched"),
        Action::ToKernel => {
            let dst = Mac(after[0..6].try_into().unwrap());
            if parsed.dst.is_group() {
                assert_eq!(dst, parsed.dst, "group frames go up unchanged");
            } else {
                assert_eq!(dst, KERNEL_MAC, "{outcome:?}: unicast goes up to the kernel's MAC");
            }
            assert_eq!(before[6..], after[6..], "{outcome:?}: only the destination MAC changes");
        }
        Action::ToWire => {
            let reply = packet::parse(after).expect("a reply parses");
            assert_eq!(reply.src, NODE_MAC, "replies leave from the node's MAC");
            match (outcome, reply.payload) {
                (Counter::ReplyArp, Payload::Arp(a)) => {
                    assert_eq!(a.oper, packet::arp::REPLY);
                    assert_eq!(a.sha, CLUSTER_MAC);
                    assert!(is_vip(Addr::V4(a.spa)));
                    assert_eq!(reply.dst, parsed.src);
                }
                (Counter::ReplyNdp, Payload::Ipv6(ip)) => {
                    assert!(is_vip(ip.src));
                    assert_eq!(ip.hop_limit, 255);
                    assert_eq!(ip.l4, L4::Icmp { kind: 136, code: 0 });
                    let (l3, l4, end) = (
                        usize::from(reply.l3_offset),
                        usize::from(ip.l4_offset),
                        usize::from(ip.end),
                    );
                    assert_eq!(end, l4 + 32);
                    assert_eq!(
                        icmpv6_sum(after, l3, l4, end),
                        0,
                        "the advertisement's checksum verifies"
                    );
                    assert_eq!(after[l4 + 26..l4 + 32], CLUSTER_MAC.0);
                }
                (o, p) => panic!("{o:?} sent {p:?} to the wire"),
            }
        }
    }
}

/// Checks what [`Classifier::from_kernel`] did: the kernel's frames leave
/// from the node's MAC, and never announce a VIP.
pub fn check_from_kernel(before: &[u8], after: &[u8], outcome: Counter) {
    match outcome {
        Counter::WireFromKernelUnparsed => {
            assert!(packet::parse(before).is_err());
            assert_eq!(before, after);
        }
        Counter::DropKernelVipAdvert | Counter::DropKernelStaleFlow => assert_eq!(before, after),
        Counter::DropKernelSynAckNotHeld => {
            // The kernel's SYN-ACK from a VIP, back to the kernel as its
            // client's bare RST to that VIP.
            let was = packet::parse(before).expect("a parsed SYN-ACK");
            let (Payload::Ipv4(b) | Payload::Ipv6(b)) = was.payload else {
                panic!("{was:?} refused as a SYN-ACK")
            };
            assert!(is_vip(b.src), "a SYN-ACK from a VIP");
            let f = packet::parse(after).expect("the RST parses");
            let (Payload::Ipv4(ip) | Payload::Ipv6(ip)) = f.payload else {
                panic!("{f:?} sent to the kernel as a RST")
            };
            assert!(is_vip(ip.dst) && ip.src == b.dst, "the client's RST to the VIP");
            assert!(matches!(ip.l4, L4::Tcp { flags: 0x04, .. }), "a bare RST: {:?}", ip.l4);
            assert_eq!(after[0..6], KERNEL_MAC.0, "to the kernel's MAC");
        }
        Counter::WireFromKernel
        | Counter::WireFromKernelAnswer
        | Counter::WireFromKernelReset
        | Counter::WireFromKernelRefused => {
            assert_eq!(after[6..12], NODE_MAC.0, "kernel frames leave from the node's MAC");
            let f = packet::parse(after).expect("still parses");
            match f.payload {
                Payload::Arp(a) => assert!(!is_vip(Addr::V4(a.spa)), "the kernel announced a VIP"),
                Payload::Ipv6(ip) => {
                    if let L4::Icmp { kind: 133..=137, .. } = ip.l4 {
                        assert!(!is_vip(ip.src), "the kernel sent NDP from a VIP");
                    }
                }
                _ => {}
            }
        }
        other => panic!("{other:?} from the kernel"),
    }
}

/// The shared key of the heartbeat target.
pub const KEY: &[u8] = b"synshare fuzz key";

/// The heartbeat target's agents' settings: 64 buckets, the product's
/// timings otherwise.
pub fn settings(role: Role) -> Settings {
    Settings {
        drain_ms: 1000,
        buckets: BUCKETS,
        layout: Layout::Rendezvous,
        role,
        ..Settings::default()
    }
}

/// Two agents (members 1 and 3, configured with 1, 2, 3 and a coordinator)
/// that the heartbeat target drives.
pub fn agents() -> (Agent, Agent) {
    let members: Vec<MemberId> = (0..=3).map(MemberId).collect();
    let agent = |me: u32, w: u32| {
        Agent::new(
            MemberId(me),
            &members,
            1,
            settings(Role::Node),
            Keys::single(KEY),
            w,
            None,
            0,
        )
        .expect("a fresh agent starts")
    };
    (agent(1, 1000), agent(3, 2000))
}

/// One record of the heartbeat target's input: `[op][len: u16 BE][bytes]`.
/// `op` bit 0: append a valid tag (so the body's fields are fuzzed past the
/// authentication); bit 1: the datagram goes to the second agent instead of
/// the first; bits 2..8: milliseconds to advance first, in units of 25 ms.
pub struct Record<'a> {
    /// Sign the bytes with [`KEY`].
    pub sign: bool,
    /// Deliver to the second agent.
    pub to_second: bool,
    /// Milliseconds to advance before delivering.
    pub advance_ms: u64,
    /// The datagram (or body, when signing).
    pub bytes: &'a [u8],
}

/// Splits the heartbeat target's input into records.
pub fn records(mut data: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    while data.len() >= 3 {
        let op = data[0];
        let len = usize::from(u16::from_be_bytes([data[1], data[2]])).min(data.len() - 3);
        out.push(Record {
            sign: op & 1 != 0,
            to_second: op & 2 != 0,
            advance_ms: u64::from(op >> 2) * 25,
            bytes: &data[3..3 + len],
        });
        data = &data[3 + len..];
    }
    out
}

/// Writes a record (for the seeds).
pub fn record(out: &mut Vec<u8>, sign: bool, to_second: bool, advance_ms: u64, bytes: &[u8]) {
    let op = u8::from(sign) | (u8::from(to_second) << 1) | (((advance_ms / 25).min(63) as u8) << 2);
    out.push(op);
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// `body` followed by its valid truncated HMAC-SHA256 tag under `key`,
/// computed here independently of the codec.
pub fn sign(body: &[u8], key: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac as _};
    let mut mac = <Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key).expect("any key length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = body.to_vec();
    out.extend_from_slice(&tag[..synshare_control::wire::TAG_LEN]);
    out
}
