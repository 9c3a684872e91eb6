//! The safe DPDK layer under a real EAL, with --no-huge and virtual
//! devices: net_ring (a loopback: what is sent on a queue is received on
//! it) and net_null (a sink). Needs root for EAL's memory set-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use synshare_dataplane::classify::{Classifier, Context, NodeAddresses, PacketBuf, Vip};
use synshare_dataplane::counters::{Counter, Counts, WorkerStats};
use synshare_dataplane::flow::{FlowState, FlowTimeouts};
use synshare_dataplane::hash::{symmetric, Toeplitz, MICROSOFT_KEY, SYMMETRIC_KEY};
use synshare_dataplane::ownership::{BucketState, OwnershipView};
use synshare_dataplane::packet::{tcp_flags, Addr};
use synshare_dataplane::publish::{Lease, Publisher};
use synshare_dataplane::synth::*;
use synshare_dpdk::worker::{BurstObserver, NodeFlows, Worker, WorkerTuning};
use synshare_dpdk::{self as dpdk, Burst, Eal, FreeBatch, Mbuf, Mempool, Port, PortConfig, TxBatch, TxQueue, BURST};

fn port_config() -> PortConfig {
    PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 256,
        tx_desc: 256,
        rss_key: None,
        promiscuous: true,
    }
}

#[test]
fn dpdk_layer_under_eal() {
    let prefix = format!("ss-test-{}", std::process::id());
    let eal = Eal::init(&[
        "-l",
        "0",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--file-prefix",
        &prefix,
        "--vdev",
        "net_ring0",
        "--vdev",
        "net_ring1",
        "--vdev",
        "net_null0",
        "--vdev",
        "net_null1,no-rx=1",
        "--log-level",
        "lib.eal:error",
    ])
    .expect("EAL init (run as root)");
    assert!(Eal::init(&["-l", "0"]).is_err(), "a second EAL init is refused");
    assert!(dpdk::tsc_hz() > 0);

    // Cache size 0: the pool's count is exact, so leaks would show.
    let pool = Arc::new(Mempool::new("test_pool", 1023, 0, 2176, 0).expect("mempool"));
    let full = pool.available();
    assert_eq!(full, 1023);

    let ring_id = Port::find("net_ring0").expect("net_ring0");
    let ring = Port::start(ring_id, "net_ring0", &port_config(), Arc::clone(&pool)).expect("start ring");
    assert!(Port::find("net_nonexistent9").is_err());

    // Three frames out and back through the ring.
    let frames = [
        to_vip4(40000, tcp_flags::SYN),
        arp_request(CLIENT_MAC, CLIENT_V4, V4_VIP),
        neighbour_solicit(CLIENT_MAC, V6_CLIENT, V6_VIP, false),
    ];
    let mut batch = TxBatch::default();
    for f in &frames {
        assert!(batch.push(Mbuf::from_bytes(&pool, f).expect("mbuf")).is_ok());
    }
    let mut tx = ring.tx_queue(0);
    let mut rx = ring.rx_queue(0);
    assert_eq!(tx.send(&mut batch), 0, "the ring took all three");
    assert!(batch.is_empty());
    let mut burst = Burst::default();
    assert_eq!(rx.receive(&mut burst), 3);
    // Looked at before they are taken: bytes, no RSS hash (net_ring has
    // none), one segment each.
    let seen: Vec<(Vec<u8>, Option<u32>, u16)> = burst
        .pending_frames()
        .map(|r| (r.bytes.to_vec(), r.rss, r.segments))
        .collect();
    assert_eq!(seen, frames.iter().map(|f| (f.clone(), None, 1)).collect::<Vec<_>>());

    // The example node, its VIPs serving TCP 80 only.
    let classifier = Classifier::new(NodeAddresses {
        vips: vec![
            Vip::new(Addr::V4(V4_VIP), &[80], &[]),
            Vip::new(Addr::V6(V6_VIP), &[80], &[]),
        ],
        ..node_addresses()
    });
    let mut view = OwnershipView::new(1024, 1);
    for b in 0..1024 {
        view.set(synshare_dataplane::hash::Bucket(b), BucketState::Settled);
    }
    let mut flows = NodeFlows::new_in(1024, FlowTimeouts::default());
    let mut outcomes = Vec::new();
    let mut replies = TxBatch::default();
    while let Some(mut m) = burst.next() {
        assert_eq!(m.segments(), 1);
        let before = m.bytes().to_vec();
        let mut cx = Context {
            view: &view,
            flows: &mut flows,
            now_ms: 1,
            rss: None,
        };
        let c = classifier.from_wire(&mut m, &mut cx);
        outcomes.push(c);
        if c == Counter::ReplyNdp {
            // The NS had no option: the reply grew the mbuf by 8 bytes.
            assert_eq!(m.bytes().len(), 14 + 40 + 32);
            assert_eq!(m.pkt_len() as usize, m.bytes().len());
            assert_ne!(m.bytes(), &before[..]);
        }
        if c.action() == synshare_dataplane::classify::Action::ToWire {
            assert!(replies.push(m).is_ok());
        }
    }
    assert_eq!(
        outcomes,
        vec![Counter::KernelVipSyn, Counter::ReplyArp, Counter::ReplyNdp]
    );
    assert_eq!(flows.len(), 1);
    // The replies go out and come back (loopback), then are dropped here.
    assert_eq!(tx.send(&mut replies), 0);
    assert_eq!(rx.receive(&mut burst), 2);
    // Draining takes them in order; what is not taken is freed.
    let mut drain = burst.drain();
    assert!(drain.next().is_some_and(|m| m.segments() == 1));
    drop(drain);
    assert!(burst.is_empty());
    drop(burst);
    assert_eq!(pool.available(), full, "every mbuf went back to the pool once");
    let stats = ring.stats().expect("stats");
    assert_eq!((stats.opackets, stats.ipackets), (5, 5));

    // A full batch gives the mbuf back instead of losing it.
    let null_id = Port::find("net_null0").expect("net_null0");
    let null = Port::start(null_id, "net_null0", &port_config(), Arc::clone(&pool)).expect("start null");
    let mut sink = null.tx_queue(0);
    let mut batch = TxBatch::default();
    for _ in 0..BURST {
        batch.push(pool.alloc().expect("alloc")).ok().expect("room");
    }
    assert!(batch.is_full());
    let extra = pool.alloc().expect("alloc");
    let extra = batch.push(extra).expect_err("full batch refuses");
    drop(extra);
    assert_eq!(sink.send(&mut batch), 0);
    // Unsent mbufs of a dropped batch are freed too.
    let mut pending = TxBatch::default();
    for _ in 0..5 {
        pending.push(pool.alloc().expect("alloc")).ok().expect("room");
    }
    drop(pending);
    assert_eq!(pool.available(), full, "no leak through TX or drops");

    // Marked packets are taken out with their positions; the rest stay in
    // order.
    let mut batch = TxBatch::default();
    for i in 0..5u8 {
        let m = Mbuf::from_bytes(&pool, &[i; 60]).expect("mbuf");
        batch.push(m).ok().expect("room");
    }
    let mut taken = Vec::new();
    batch.take_marked(0b10101, |at, m| taken.push((at, m.bytes()[0])));
    assert_eq!(taken, vec![(0, 0), (2, 2), (4, 4)]);
    assert_eq!(batch.len(), 2);
    let mut back = Burst::default();
    assert_eq!(tx.send(&mut batch), 0);
    assert_eq!(rx.receive(&mut back), 2);
    let kept: Vec<u8> = back.pending().map(|b| b[0]).collect();
    assert_eq!(kept, vec![1, 3]);
    drop(back);
    assert_eq!(pool.available(), full, "no leak through taking marked packets");

    // Drops are freed together: a full batch frees itself on the next push,
    // the rest on free() or drop.
    let mut drops = FreeBatch::default();
    for _ in 0..BURST + 3 {
        drops.push(pool.alloc().expect("alloc"));
    }
    assert_eq!(drops.len(), 3);
    assert_eq!(pool.available(), full - 3);
    drops.free();
    assert!(drops.is_empty());
    assert_eq!(pool.available(), full);
    drops.push(pool.alloc().expect("alloc"));
    drop(drops);
    assert_eq!(pool.available(), full, "no leak through bulk frees");

    // The worker loop: what rests on the lease is delivered only while the
    // lease is still valid after the decision.
    let kernel_id = Port::find("net_null1").expect("net_null1");
    let kernel = Port::start(kernel_id, "net_null1", &port_config(), Arc::clone(&pool)).expect("start kernel port");
    // A SYN, and a segment of the same connection in the same burst,
    // decided on the flow the SYN made.
    let syn = to_vip4(40000, tcp_flags::SYN);
    let ack = to_vip4(40000, tcp_flags::ACK);
    // And the RST of a connection known before the burst (it goes to the
    // kernel that holds the connection, which checks it; it contests the
    // entry without ending it, and rests on no lease: it goes).
    let known = to_vip4(40001, tcp_flags::ACK);
    let rst = to_vip4(40001, tcp_flags::RST | tcp_flags::ACK);
    let burst = [syn, ack, rst];
    let rig = Rig {
        ring: &ring,
        kernel: &kernel,
        pool: &pool,
        classifier: &classifier,
        view: &view,
    };
    let (stalled, flows) = rig.run(&known, &burst, true);
    let outcomes = |c: &Counts| {
        (
            c.get(Counter::KernelVipSyn),
            c.get(Counter::KernelVipFlow) + c.get(Counter::KernelVipFlowContested),
            c.get(Counter::DropLeaseRanOut),
        )
    };
    assert_eq!(
        outcomes(&stalled),
        (0, 1, 2),
        "neither the SYN decided before the stall nor the segment on its flow was delivered after it; the RST was"
    );
    let delivered = kernel.stats().expect("stats").opackets;
    assert_eq!(
        (delivered, flows),
        (1, 1),
        "only the RST reached the kernel; the SYN's flow did not stay (the known one, contested, did)"
    );
    let (on_time, flows) = rig.run(&known, &burst, false);
    assert_eq!(outcomes(&on_time), (1, 2, 0));
    let delivered = kernel.stats().expect("stats").opackets;
    assert_eq!((delivered, flows), (4, 2), "delivered and recorded without a stall");
    assert_eq!(pool.available(), full, "no leak through the worker");

    // A member's exchange datagram goes up to the kernel ahead of the rest
    // of its burst (a flood at the node's address cannot crowd it out of a
    // full queue). The kernel side here is a second ring, read back.
    let up_id = Port::find("net_ring1").expect("net_ring1");
    let up = Port::start(up_id, "net_ring1", &port_config(), Arc::clone(&pool)).expect("start ring1");
    let (peer, node) = ([192, 0, 2, 22], [192, 0, 2, 21]);
    let local = |port| udp4_to(NODE_MAC, CLIENT_V4, 40000, node, port);
    let burst = [
        local(53),
        local(54),
        udp4_to(NODE_MAC, peer, 7946, node, 7946),
        local(55),
    ];
    let mut guarded = Classifier::new(classifier.addresses().clone());
    guarded.guard_exchange(7946, vec![Addr::V4(peer)]);
    let flows = NodeFlows::new_in(1024, FlowTimeouts::default());
    let (counts, _) = rig.run_with(guarded, flows, &burst, false, up.tx_queue(0));
    assert_eq!(
        (counts.get(Counter::KernelExchange), counts.get(Counter::KernelLocal)),
        (1, 3)
    );
    let mut got = Burst::default();
    assert_eq!(up.rx_queue(0).receive(&mut got), 4);
    let ports: Vec<u16> = got.pending().map(|b| u16::from_be_bytes([b[36], b[37]])).collect();
    assert_eq!(
        ports,
        [7946, 53, 54, 55],
        "the member's datagram first, the rest in order"
    );
    drop(got);
    drop(up);
    assert_eq!(pool.available(), full, "no leak through the worker");

    drop(kernel);
    drop(null);
    drop(ring);
    drop(pool);
    drop(eal);
}

/// Stands for a worker stalled between deciding a burst and delivering
/// it, long enough for the lease to run out; stops the worker after its
/// first burst from the wire.
struct Stall {
    lease: Lease,
    stop: Arc<AtomicBool>,
    stall: bool,
}

impl BurstObserver for Stall {
    fn burst(&mut self, wire: usize, _kernel: usize, _cycles: u64) {
        if wire > 0 {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    fn decided(&mut self) {
        if self.stall {
            // The deadline passes while the worker stands still.
            self.lease.set(dpdk::tsc());
        }
    }
}

/// What a worker runs on: the ring as its wire, `kernel` as its kernel.
struct Rig<'a> {
    ring: &'a Port,
    kernel: &'a Port,
    pool: &'a Arc<Mempool>,
    classifier: &'a Classifier,
    view: &'a OwnershipView,
}

impl Rig<'_> {
    /// Runs a worker holding every bucket under a valid lease, its flow
    /// table holding `known`'s flow, on `frames` looped through the ring,
    /// with or without a stall after the decision. Returns its counts and
    /// the size of its flow table at the end.
    fn run(&self, known: &[u8], frames: &[Vec<u8>], stall: bool) -> (Counts, u64) {
        let mut flows = NodeFlows::new_in(1024, FlowTimeouts::default());
        let flow = self.classifier.flow_of(known, None).expect("a VIP's TCP");
        assert!(flows.insert(
            flow,
            FlowState::Established,
            (dpdk::tsc() / (dpdk::tsc_hz() / 1000)) as u32
        ));
        let classifier = Classifier::new(self.classifier.addresses().clone());
        self.run_with(classifier, flows, frames, stall, self.kernel.tx_queue(0))
    }

    /// The same with this classifier and flow table, the kernel's frames
    /// sent on `kernel_tx`.
    fn run_with(
        &self,
        classifier: Classifier,
        flows: NodeFlows,
        frames: &[Vec<u8>],
        stall: bool,
        kernel_tx: TxQueue,
    ) -> (Counts, u64) {
        let (ring, pool) = (self.ring, self.pool);
        let mut batch = TxBatch::default();
        for f in frames {
            assert!(batch.push(Mbuf::from_bytes(pool, f).expect("mbuf")).is_ok());
        }
        assert_eq!(ring.tx_queue(0).send(&mut batch), 0);
        let (_publisher, mut subscribers) = Publisher::new(1, self.view);
        let lease = Lease::none();
        lease.set(dpdk::tsc() + 60 * dpdk::tsc_hz());
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WorkerStats::default());
        let worker = Worker {
            index: 0,
            classifier: Arc::new(classifier),
            view: subscribers.pop().expect("subscriber"),
            lease: lease.clone(),
            flows,
            wire_rx: ring.rx_queue(0),
            wire_tx: ring.tx_queue(0),
            kernel_rx: self.kernel.rx_queue(0),
            kernel_tx,
            use_rss: false,
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
            tuning: WorkerTuning::default(),
        };
        let mut observer = Stall { lease, stop, stall };
        assert_eq!(worker.run_observed(&mut observer), 0);
        (stats.load(), stats.flows.load(Ordering::Relaxed))
    }
}

/// Our software Toeplitz against DPDK's own `rte_softrss`, the
/// hardware-style reference, for IPv4 and IPv6 4-tuples and both keys; and
/// the table-free form the packet path uses (symmetric key only) against
/// both, with and without ports.
#[test]
fn software_toeplitz_matches_dpdk_softrss() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for key in [SYMMETRIC_KEY, MICROSOFT_KEY] {
        let t = Toeplitz::new(&key);
        for _ in 0..20_000 {
            let (a, b, p) = (next(), next(), next());
            let (sport, dport) = (p as u16, (p >> 16) as u16);
            // DPDK takes host-order words: the source's, the destination's,
            // then (sport << 16 | dport).
            let check = |src: Addr, dst: Addr, words: &[u32]| {
                let addresses = &words[..words.len() - 1];
                assert_eq!(t.tuple(src, dst, sport, dport).0, dpdk::softrss(words, &key));
                if key == SYMMETRIC_KEY {
                    assert_eq!(symmetric::tuple(src, dst, sport, dport).0, dpdk::softrss(words, &key));
                    assert_eq!(symmetric::addresses(src, dst).0, dpdk::softrss(addresses, &key));
                }
            };
            let ports = (u32::from(sport) << 16) | u32::from(dport);
            let (s4, d4) = ((a as u32).to_be_bytes(), (b as u32).to_be_bytes());
            check(
                Addr::V4(s4),
                Addr::V4(d4),
                &[u32::from_be_bytes(s4), u32::from_be_bytes(d4), ports],
            );
            let mut s6 = [0u8; 16];
            let mut d6 = [0u8; 16];
            s6[..8].copy_from_slice(&a.to_be_bytes());
            s6[8..].copy_from_slice(&next().to_be_bytes());
            d6[..8].copy_from_slice(&b.to_be_bytes());
            d6[8..].copy_from_slice(&next().to_be_bytes());
            let mut w6 = Vec::with_capacity(9);
            for c in s6.chunks(4).chain(d6.chunks(4)) {
                w6.push(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
            }
            w6.push(ports);
            check(Addr::V6(s6), Addr::V6(d6), &w6);
        }
    }
}
