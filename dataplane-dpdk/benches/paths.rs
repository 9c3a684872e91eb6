//! Cycles per frame of the classifier's three hot paths, in bursts of 32
//! as the worker runs them (look at the whole burst and prefetch, then
//! decide each frame), without DPDK devices:
//!
//! - **foreign drop**: the node is member 1 of 8 (it holds every eighth
//!   bucket), its table holds its own 125,000 flows, and the frames are
//!   ACKs of the other members' flows;
//! - **owned established**: the node holds every bucket, its table holds
//!   1,000,000 flows, and the frames are ACKs of those flows in random
//!   order;
//! - **owned SYN**: as above, and the frames are SYNs of new connections
//!   (the clock advances 1 ms per 1,024 frames, so half-open entries expire
//!   and their slots are taken again).
//!
//! Each frame is first copied into a buffer, as a NIC or `net_pcap` writes
//! it into an mbuf. 80% IPv4, 20% IPv6. Frames the look decides go to the
//! drops there (as the worker sifts a burst); the others are decided. Each
//! path runs twice: as from a port that gives nothing, and as from a NIC
//! that gives the RSS hash (the connection value) and the IPv4 checksum
//! verdict. Prints TSC cycles and ns per frame, the median of five
//! one-second runs. `SS_PATHS_FLOWS=N` changes the 1M.

use std::time::{Duration, Instant};
use synshare_dataplane::classify::{Classifier, Context, FrameBuf, IpChecksum, Look, PacketBuf};
use synshare_dataplane::counters::Counter;
use synshare_dataplane::flow::{FlowKey, FlowState, FlowTimeouts};
use synshare_dataplane::hash::Bucket;
use synshare_dataplane::ownership::{BucketState, OwnershipView};
use synshare_dataplane::packet::{tcp_flags, Addr};
use synshare_dataplane::synth::{classifier, tcp4_to, tcp6_to, Rng, CLUSTER_MAC, V4_VIP, V6_VIP};
use synshare_dpdk as dpdk;
use synshare_dpdk::worker::NodeFlows;

const BURST: usize = 32;
const BUCKETS: u32 = 65536;

/// A frame buffer like an mbuf's data room, inline.
type Buf = FrameBuf<128>;

/// Client `i`: every fifth is IPv6.
fn client(i: u64) -> (Addr, u16) {
    let port = 1024 + (i % 60_000) as u16;
    let host = i / 60_000;
    if i % 5 == 4 {
        let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        a[8..16].copy_from_slice(&(host + 1).to_be_bytes());
        (Addr::V6(a), port)
    } else {
        let h = (host as u32 + 1).to_be_bytes();
        (Addr::V4([198, 18 + (h[1] & 1), h[2], h[3]]), port)
    }
}

fn vip_of(a: Addr) -> Addr {
    match a {
        Addr::V4(_) => Addr::V4(V4_VIP),
        Addr::V6(_) => Addr::V6(V6_VIP),
    }
}

fn frame(c: Addr, port: u16, flags: u8) -> Vec<u8> {
    match c {
        Addr::V4(a) => tcp4_to(CLUSTER_MAC, a, port, V4_VIP, 80, flags),
        Addr::V6(a) => tcp6_to(CLUSTER_MAC, a, port, V6_VIP, 80, flags),
    }
}

fn view(every: u32) -> OwnershipView {
    let mut v = OwnershipView::new(BUCKETS, 1);
    for b in (0..BUCKETS).step_by(every as usize) {
        v.set(Bucket(b), BucketState::Settled);
    }
    v
}

struct Setup {
    c: Classifier,
    view: OwnershipView,
    flows: NodeFlows,
    frames: Vec<Vec<u8>>,
    /// Each frame's connection value, as a NIC's RSS hash gives it.
    rss: Vec<u32>,
    expect: Counter,
    advance_clock: bool,
}

/// `flows` own flows loaded; frames: `kind` of `pool` random tuples.
fn setup(own_every: u32, flows: u64, kind: &str) -> Setup {
    let c = classifier();
    let view = view(own_every);
    let owned = |a: Addr, p: u16| {
        view.state(c.connection_value(a, vip_of(a), p, 80).bucket(view.mask())) != BucketState::Foreign
    };
    let mut table = NodeFlows::new_in((flows + flows / 4) as usize, FlowTimeouts::default());
    let mut own = Vec::with_capacity(flows as usize);
    let mut foreign = Vec::new();
    let mut i = 0u64;
    while (own.len() as u64) < flows {
        let (a, p) = client(i);
        i += 1;
        if owned(a, p) {
            table.insert(FlowKey::new(a, p, vip_of(a), 80), FlowState::Established, 0);
            own.push((a, p));
        } else if foreign.len() < 1 << 16 {
            foreign.push((a, p));
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pool = 1 << 16;
    let (frames, expect, advance_clock): (Vec<Vec<u8>>, Counter, bool) = match kind {
        "foreign" => (
            foreign.iter().map(|&(a, p)| frame(a, p, tcp_flags::ACK)).collect(),
            Counter::DropNotOwner,
            false,
        ),
        "established" => (
            (0..pool)
                .map(|_| {
                    let (a, p) = own[(rng.next_u64() % own.len() as u64) as usize];
                    frame(a, p, tcp_flags::ACK)
                })
                .collect(),
            Counter::KernelVipFlow,
            false,
        ),
        _ => {
            // New clients, beyond the loaded ones.
            let mut v = Vec::with_capacity(pool);
            while v.len() < pool {
                let (a, p) = client(i);
                i += 1;
                if owned(a, p) {
                    v.push(frame(a, p, tcp_flags::SYN));
                }
            }
            (v, Counter::KernelVipSyn, true)
        }
    };
    let rss = frames
        .iter()
        .map(|f| {
            let p = synshare_dataplane::packet::parse(f).expect("a valid frame");
            let (synshare_dataplane::packet::Payload::Ipv4(ip) | synshare_dataplane::packet::Payload::Ipv6(ip)) =
                p.payload
            else {
                unreachable!()
            };
            let synshare_dataplane::packet::L4::Tcp { src_port, dst_port, .. } = ip.l4 else {
                unreachable!()
            };
            c.connection_value(ip.src, ip.dst, src_port, dst_port).0
        })
        .collect();
    Setup {
        c,
        view,
        flows: table,
        frames,
        rss,
        expect,
        advance_clock,
    }
}

/// Runs the burst loop over the frames for `secs`; returns (frames, TSC
/// cycles, wall time).
fn run(s: &mut Setup, secs: f64, nic: bool) -> (u64, u64, Duration) {
    let mut bufs: Vec<Buf> = (0..BURST).map(|_| Buf::new(&[])).collect();
    let mut hashes = [0u32; BURST];
    let mut looks = [Look::FULL; BURST];
    let mut kept = [0usize; BURST];
    let mut now = 1u32;
    let mut done = 0u64;
    let mut next = 0usize;
    let mut wrong = 0u64;
    let start = Instant::now();
    let t0 = dpdk::tsc();
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            for (b, h) in bufs.iter_mut().zip(hashes.iter_mut()) {
                let f = &s.frames[next];
                *h = s.rss[next];
                next = (next + 1) % s.frames.len();
                b.load(f);
            }
            s.flows.follow(&s.view);
            // As the worker's sift: decided frames are counted and left
            // there, the others kept (by index) with their looks.
            let mut n = 0;
            for (i, (b, h)) in bufs.iter().zip(hashes).enumerate() {
                let look = if nic {
                    s.c.look_offloaded(b.bytes(), Some(h), IpChecksum::Good, &s.flows)
                } else {
                    s.c.look(b.bytes(), None, &s.flows)
                };
                looks[n % BURST] = look;
                kept[n % BURST] = i;
                let outcome = look.outcome();
                wrong += u64::from(outcome.is_some_and(|o| o.action() != s.expect.action()));
                n += usize::from(outcome.is_none());
            }
            let mut cx = Context {
                view: &s.view,
                flows: &mut s.flows,
                now_ms: now,
                rss: None,
            };
            for (&i, look) in kept[..n].iter().zip(looks) {
                cx.rss = nic.then_some(hashes[i]);
                let outcome = s.c.decide(&mut bufs[i], look, &mut cx);
                wrong += u64::from(outcome.action() != s.expect.action());
            }
            done += BURST as u64;
            if s.advance_clock && done.is_multiple_of(1024) {
                now += 1;
            }
        }
    }
    let cycles = dpdk::tsc().wrapping_sub(t0);
    let wall = start.elapsed();
    assert!(
        wrong * 100 <= done,
        "{wrong} of {done} frames did not go where {:?} goes",
        s.expect
    );
    (done, cycles, wall)
}

fn main() {
    // Criterion-style arguments (`--bench`) are ignored.
    let flows: u64 = std::env::var("SS_PATHS_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("paths: {flows} flows, bursts of {BURST}, median of 5 runs of 1 s");
    for (name, every, n, kind) in [
        ("foreign drop (member 1 of 8)", 8, flows / 8, "foreign"),
        ("owned established (member 1 of 1)", 1, flows, "established"),
        ("owned SYN (member 1 of 1)", 1, flows, "syn"),
    ] {
        let mut s = setup(every, n, kind);
        for (nic, how) in [(false, ""), (true, ", NIC hash")] {
            let name = format!("{name}{how}");
            run(&mut s, 0.3, nic);
            let mut results: Vec<(f64, f64)> = (0..5)
                .map(|_| {
                    let (frames, cycles, wall) = run(&mut s, 1.0, nic);
                    (cycles as f64 / frames as f64, wall.as_nanos() as f64 / frames as f64)
                })
                .collect();
            results.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (cycles, ns) = results[2];
            println!("  {name:<47} {cycles:7.1} cycles/frame {ns:7.1} ns/frame");
        }
    }
}
