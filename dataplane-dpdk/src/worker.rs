//! The poll-mode loop of one worker lcore: wire → decisions → kernel, and
//! kernel → wire, in bursts, with no lock and no allocation per packet.

use crate::{Burst, FreeBatch, HugeSlice, Mbuf, RxQueue, TxBatch, TxQueue, BURST};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use synshare_dataplane::classify::{Action, Classifier, Context, IpChecksum, Look};
use synshare_dataplane::counters::{Counter, Counts, Tally, WorkerStats};
use synshare_dataplane::flow::{FlowRef, FlowTable, Group};
use synshare_dataplane::hash::nic::RssTypes;
use synshare_dataplane::ownership::OwnershipView;
use synshare_dataplane::publish::{Lease, Subscriber};

/// A worker's flow table: its groups on transparent huge pages where the
/// kernel gives them, so a random lookup misses the cache but not also the
/// TLB.
pub type NodeFlows = FlowTable<HugeSlice<Group>>;

/// How a worker idles and keeps house.
#[derive(Clone, Debug)]
pub struct WorkerTuning {
    /// Empty polls in a row before the worker starts sleeping.
    pub idle_polls: u32,
    /// Sleep after that many empty polls, in microseconds (0: never sleep).
    pub idle_sleep_us: u32,
    /// Flow-table groups swept per millisecond.
    pub sweep_groups: usize,
    /// How often counters are published, in milliseconds.
    pub stats_interval_ms: u32,
    /// What the wire port's NIC gives in each mbuf, when the worker is told
    /// rather than asking the port (a benchmark that stamps mbufs as a NIC
    /// would: [`crate::replay`]). None: ask the port.
    pub offloads: Option<Offloads>,
}

/// What a port gives in each mbuf that the worker uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// The packet types whose RSS hash is the connection value.
    pub rss: RssTypes,
    /// The IPv4 header checksum flags are the NIC's verdict.
    pub ip_checksum: bool,
}

impl Default for WorkerTuning {
    fn default() -> Self {
        WorkerTuning {
            idle_polls: 256,
            idle_sleep_us: 100,
            sweep_groups: 128,
            stats_interval_ms: 10,
            offloads: None,
        }
    }
}

/// Everything one worker owns.
pub struct Worker {
    /// Index of the worker (and of its queues).
    pub index: u16,
    /// The node's decisions (shared, read-only).
    pub classifier: Arc<Classifier>,
    /// This worker's ownership view.
    pub view: Subscriber,
    /// The node's lease: past its deadline the worker acts as if it held
    /// no bucket (known flows go on, nothing new is taken).
    pub lease: Lease,
    /// This worker's flow table.
    pub flows: NodeFlows,
    /// Wire RX queue.
    pub wire_rx: RxQueue,
    /// Wire TX queue.
    pub wire_tx: TxQueue,
    /// Exception port RX queue (frames from the kernel).
    pub kernel_rx: RxQueue,
    /// Exception port TX queue (frames to the kernel).
    pub kernel_tx: TxQueue,
    /// Use the NIC's RSS hash as the connection value, for the frames of
    /// the types the port hashes on the 4-tuple with the cluster's key
    /// ([`RxQueue::rss_types`], asked once when the loop starts); the value
    /// is computed for every other frame.
    pub use_rss: bool,
    /// Where the worker publishes its counters.
    pub stats: Arc<WorkerStats>,
    /// Set to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// Idle and housekeeping settings.
    pub tuning: WorkerTuning,
}

/// Watches the bursts of a worker, for benchmarks: [`Worker::run_observed`]
/// calls it once per loop iteration that received frames from the wire. It
/// runs on the packet path, so it must not lock or allocate.
pub trait BurstObserver {
    /// False for an observer that ignores every call: the worker then does
    /// not even read the clock for it.
    const ACTIVE: bool = true;
    /// One loop iteration handled `wire` frames from the wire and `kernel`
    /// frames from the kernel in `cycles` TSC cycles, from before the wire
    /// receive to after the last transmit.
    fn burst(&mut self, wire: usize, kernel: usize, cycles: u64);
    /// The wire frames of a burst are decided and about to be delivered
    /// (tests stand for a stall here, during which the lease runs out).
    #[inline(always)]
    fn decided(&mut self) {}
}

/// The observer of a normal run: nothing.
pub struct NoObserver;

impl BurstObserver for NoObserver {
    const ACTIVE: bool = false;
    #[inline(always)]
    fn burst(&mut self, _wire: usize, _kernel: usize, _cycles: u64) {}
}

/// Sends what a batch holds and counts what the queue refused.
#[inline]
fn flush(queue: &mut TxQueue, batch: &mut TxBatch, counts: &mut Counts, full: Counter) {
    let dropped = queue.send(batch);
    if dropped > 0 {
        counts.add_n(full, dropped as u64);
    }
}

/// Queues `m`, flushing first when the batch is full.
#[inline]
fn enqueue(queue: &mut TxQueue, batch: &mut TxBatch, m: Mbuf, counts: &mut Counts, full: Counter) {
    if let Err(m) = batch.push(m) {
        flush(queue, batch, counts, full);
        if batch.push(m).is_err() {
            counts.add(full);
        }
    }
}

impl Worker {
    /// Runs until `stop` is set. Returns 0.
    pub fn run(self) -> i32 {
        self.run_observed(&mut NoObserver)
    }

    /// Runs until `stop` is set, reporting each busy iteration to
    /// `observer` (see [`BurstObserver`]). Returns 0.
    pub fn run_observed<O: BurstObserver>(mut self, observer: &mut O) -> i32 {
        let hz = crate::tsc_hz().max(1_000);
        // Milliseconds from TSC cycles by a multiply and a shift, not a
        // 64-bit division per burst: `ms_per_cycle` is 2^64 / cycles per
        // ms (the result drifts by less than one part in 2^40).
        let ms_per_cycle = (u128::from(u64::MAX) / u128::from(hz / 1_000)) as u64;
        let ms_of = |tsc: u64| ((u128::from(tsc) * u128::from(ms_per_cycle)) >> 64) as u32;
        let mut counts = Counts::default();
        let mut wire_burst = Burst::default();
        let mut kernel_burst = Burst::default();
        let mut to_kernel = TxBatch::default();
        // Members' exchange datagrams, sent up ahead of the rest of each
        // burst: when the kernel's queue is full (a flood at the node's
        // address), the heartbeats are what gets in.
        let mut to_kernel_first = TxBatch::default();
        // The frames of `to_kernel` accepted under the lease (bit i: the
        // batch's position i): delivered only if the lease is still valid
        // just before they go. And the outcome of every frame of the batch,
        // by position.
        let mut leased_frames = 0u32;
        let mut kernel_outcomes = [Counter::KernelVipSyn; BURST];
        let mut to_wire = TxBatch::default();
        // The kernel's first SYN-ACKs of flows, which leave only if the
        // lease is still valid just before the burst goes (at most one
        // kernel burst: never full); and the kernel's SYN-ACKs not sent,
        // rewritten as the client's RST, back to the kernel.
        let mut answers = TxBatch::default();
        let mut resets = TxBatch::default();
        let mut drops = FreeBatch::default();
        let mut tally = Tally::default();
        let mut looks = [Look::FULL; BURST];
        let mut idle = 0u32;
        let mut idle_total = 0u64;
        // Allocated once: what the worker enforces without a lease.
        let closed = OwnershipView::new(self.view.view().len() as u32, 0);
        let offloads = self.tuning.offloads.unwrap_or_else(|| Offloads {
            rss: if self.use_rss {
                self.wire_rx.rss_types()
            } else {
                RssTypes::NONE
            },
            ip_checksum: self.wire_rx.ip_checksum_offload(),
        });
        let rss_types = offloads.rss;
        let mut wire_rx_total = 0u64;
        let mut kernel_rx_total = 0u64;
        let mut last_ms = 0u32;
        let mut last_stats_ms = 0u32;
        self.stats
            .flow_capacity
            .store(self.flows.capacity() as u64, Ordering::Relaxed);

        while !self.stop.load(Ordering::Relaxed) {
            let started = if O::ACTIVE { crate::tsc() } else { 0 };
            let n = self.wire_rx.receive(&mut wire_burst);
            wire_rx_total += n as u64;
            // The clock is read once the frames are in hand: a stall in the
            // receive (a stopped process, a preempted core) must not leave
            // frames that queued during it decided under a lease read
            // before it. One snapshot of the ownership view per burst, and
            // one look at the lease: without a lease the worker enforces a
            // view that holds nothing (known flows go on). The view in
            // force is folded into the flow table's bucket gates when it
            // changes.
            let decided_at = crate::tsc();
            let now_ms = ms_of(decided_at);
            let leased = self.lease.valid_at(decided_at);
            let current = self.view.refresh();
            let view = if leased { current } else { &closed };
            self.flows.follow(view);
            // Look at the whole burst before deciding any of it (the
            // bucket from fixed offsets, then for open buckets the fast
            // parse, connection value, gate, and a prefetch of the flow's
            // table line): with a table larger than the cache, the misses
            // then overlap instead of stalling one packet at a time. Frames
            // the look alone decides (most of a node that is one of many:
            // a bucket of another's) go to the drops there, counted,
            // without a branch per frame; the rest stay, in order, with
            // their looks.
            {
                let (classifier, flows) = (&*self.classifier, &self.flows);
                wire_burst.sift(&mut drops, |kept, frame| {
                    let look = if frame.segments != 1 {
                        Look::decided(Counter::DropMultiSegment)
                    } else {
                        let checksum = if offloads.ip_checksum {
                            frame.ip_checksum
                        } else {
                            IpChecksum::Unknown
                        };
                        classifier.look_offloaded(frame.bytes, frame.connection_rss(rss_types), checksum, flows)
                    };
                    looks[kept % BURST] = look;
                    let outcome = look.outcome();
                    let dropped = outcome.is_some();
                    counts.add_n(outcome.unwrap_or(Counter::DropMultiSegment), u64::from(dropped));
                    dropped
                });
            }
            let mut cx = Context {
                view,
                flows: &mut self.flows,
                now_ms,
                rss: None,
            };
            for (look, mut m) in looks.iter().zip(wire_burst.drain()) {
                cx.rss = m.connection_rss(rss_types);
                let outcome = self.classifier.decide(&mut m, *look, &mut cx);
                tally.add(outcome, &mut counts);
                match outcome.action() {
                    Action::ToKernel if outcome == Counter::KernelExchange => enqueue(
                        &mut self.kernel_tx,
                        &mut to_kernel_first,
                        m,
                        &mut counts,
                        Counter::DropKernelTxFull,
                    ),
                    Action::ToKernel => {
                        // The batch starts every burst empty and a burst
                        // fits in it: the position is where it will stay.
                        let slot = to_kernel.len();
                        if slot < BURST {
                            kernel_outcomes[slot] = outcome;
                            if outcome.rests_on_lease() {
                                leased_frames |= 1 << slot;
                            }
                        }
                        enqueue(
                            &mut self.kernel_tx,
                            &mut to_kernel,
                            m,
                            &mut counts,
                            Counter::DropKernelTxFull,
                        )
                    }
                    Action::ToWire => enqueue(&mut self.wire_tx, &mut to_wire, m, &mut counts, Counter::DropWireTxFull),
                    Action::Drop => drops.push(m),
                }
            }

            let k = self.kernel_rx.receive(&mut kernel_burst);
            kernel_rx_total += k as u64;
            for _ in 0..k {
                kernel_burst.prefetch(3);
                let Some(mut m) = kernel_burst.next() else { break };
                // The kernel's segments are its word on its flows (its RST
                // ends one, any other answer confirms an adopted one).
                let outcome = self.classifier.from_kernel(&mut m, &mut self.flows, now_ms);
                tally.add(outcome, &mut counts);
                match outcome.action() {
                    Action::ToWire if outcome == Counter::WireFromKernelAnswer => {
                        enqueue(&mut self.wire_tx, &mut answers, m, &mut counts, Counter::DropWireTxFull)
                    }
                    Action::ToWire => enqueue(&mut self.wire_tx, &mut to_wire, m, &mut counts, Counter::DropWireTxFull),
                    Action::ToKernel => enqueue(
                        &mut self.kernel_tx,
                        &mut resets,
                        m,
                        &mut counts,
                        Counter::DropKernelTxFull,
                    ),
                    Action::Drop => drops.push(m),
                }
            }
            tally.flush(&mut counts);
            if O::ACTIVE && n > 0 {
                observer.decided();
            }
            // What rests on the lease reaches the kernel only if the lease
            // is still valid now: a stall since the decision (longer than
            // the guard the control side takes off the lease) would
            // otherwise open a connection in a bucket another node has
            // taken meanwhile. Such frames are dropped instead, and their
            // flows forgotten.
            // The kernel's first SYN-ACKs likewise: one that has waited
            // out the lease becomes the client's RST to the kernel.
            if (leased_frames != 0 || !answers.is_empty()) && !self.lease.valid_at(crate::tsc()) {
                self.withdraw(
                    &mut to_kernel,
                    leased_frames,
                    &kernel_outcomes,
                    rss_types,
                    now_ms,
                    &mut counts,
                    &mut drops,
                );
                self.retract_answers(&mut answers, &mut resets, now_ms, &mut counts, &mut drops);
            }
            leased_frames = 0;
            // The SYN-ACKs leave first, right after the check: a stall
            // between the check and their send (the window the guard must
            // cover) is then as short as it can be, not the kernel
            // writes' too.
            if !answers.is_empty() {
                flush(&mut self.wire_tx, &mut answers, &mut counts, Counter::DropWireTxFull);
            }
            drops.free();

            if !to_kernel_first.is_empty() {
                flush(
                    &mut self.kernel_tx,
                    &mut to_kernel_first,
                    &mut counts,
                    Counter::DropKernelTxFull,
                );
            }
            flush(
                &mut self.kernel_tx,
                &mut to_kernel,
                &mut counts,
                Counter::DropKernelTxFull,
            );
            if !resets.is_empty() {
                flush(&mut self.kernel_tx, &mut resets, &mut counts, Counter::DropKernelTxFull);
            }
            flush(&mut self.wire_tx, &mut to_wire, &mut counts, Counter::DropWireTxFull);
            if O::ACTIVE && n + k > 0 {
                observer.burst(n, k, crate::tsc().wrapping_sub(started));
            }

            if now_ms != last_ms {
                last_ms = now_ms;
                self.flows.sweep(now_ms, self.tuning.sweep_groups);
                if now_ms.wrapping_sub(last_stats_ms) >= self.tuning.stats_interval_ms {
                    last_stats_ms = now_ms;
                    self.publish_stats(&counts, wire_rx_total, kernel_rx_total, idle_total);
                }
            }

            if n + k == 0 {
                idle += 1;
                idle_total += 1;
                if self.tuning.idle_sleep_us > 0 && idle >= self.tuning.idle_polls {
                    // Off the packet path: nothing arrived for a while.
                    std::thread::sleep(Duration::from_micros(u64::from(self.tuning.idle_sleep_us)));
                }
            } else {
                idle = 0;
            }
        }
        self.publish_stats(&counts, wire_rx_total, kernel_rx_total, idle_total);
        0
    }

    /// Takes out of `batch` the frames at the positions `leased` (their
    /// acceptance rested on a lease that ran out before the flush), forgets
    /// their flows, and also takes out any later frame of the burst decided
    /// on one of those flows (and only those: a RST of another flow has
    /// ended its own entry, and still goes). Off the packet path: only
    /// after a stall.
    #[allow(clippy::too_many_arguments)] // the burst's state, passed apart to keep the hot loop's borrows simple
    fn withdraw(
        &mut self,
        batch: &mut TxBatch,
        leased: u32,
        outcomes: &[Counter; BURST],
        rss_types: RssTypes,
        now_ms: u32,
        counts: &mut Counts,
        drops: &mut FreeBatch,
    ) {
        let mut revoked: [Option<FlowRef>; BURST] = [None; BURST];
        let mut n = 0;
        for (slot, f) in batch.frames().enumerate() {
            if leased & (1 << slot) != 0 {
                let rss = f.connection_rss(rss_types);
                if let Some(flow) = self.classifier.revoke(f.bytes, rss, &mut self.flows, now_ms) {
                    revoked[n] = Some(flow);
                    n += 1;
                }
            }
        }
        let mut out = leased;
        for (slot, f) in batch.frames().enumerate() {
            let rss = f.connection_rss(rss_types);
            if outcomes[slot] == Counter::KernelVipFlow
                && n > 0
                && self
                    .classifier
                    .flow_of(f.bytes, rss)
                    .is_some_and(|flow| revoked[..n].contains(&Some(flow)))
            {
                out |= 1 << slot;
            }
        }
        batch.take_marked(out, |slot, m| {
            counts.recount(outcomes[slot], Counter::DropLeaseRanOut);
            drops.push(m);
        });
    }

    /// Takes every SYN-ACK out of `answers` (their lease ran out before
    /// they left), each rewritten as the client's RST into `resets` (see
    /// [`Classifier::retract_answer`]). Off the packet path: only after a
    /// stall.
    fn retract_answers(
        &mut self,
        answers: &mut TxBatch,
        resets: &mut TxBatch,
        now_ms: u32,
        counts: &mut Counts,
        drops: &mut FreeBatch,
    ) {
        let all = u32::MAX >> (32 - answers.len().clamp(1, 32) as u32);
        answers.take_marked(all, |_, mut m| {
            let outcome = self.classifier.retract_answer(&mut m, &mut self.flows, now_ms);
            counts.recount(Counter::WireFromKernelAnswer, outcome);
            match outcome.action() {
                Action::ToKernel => {
                    if let Err(m) = resets.push(m) {
                        counts.recount(outcome, Counter::DropKernelTxFull);
                        drops.push(m);
                    }
                }
                _ => drops.push(m),
            }
        });
    }

    fn publish_stats(&self, counts: &Counts, wire_rx: u64, kernel_rx: u64, idle: u64) {
        let s = &self.stats;
        s.store(counts);
        s.wire_rx.store(wire_rx, Ordering::Relaxed);
        s.kernel_rx.store(kernel_rx, Ordering::Relaxed);
        s.flows.store(self.flows.len() as u64, Ordering::Relaxed);
        let fs = self.flows.stats();
        s.flow_insert_failed.store(fs.insert_failed, Ordering::Relaxed);
        s.flow_evicted.store(fs.evicted, Ordering::Relaxed);
        s.view_epoch.store(self.view.view().epoch(), Ordering::Relaxed);
        s.idle_polls.store(idle, Ordering::Relaxed);
    }
}
