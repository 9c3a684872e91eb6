//! Publication of ownership views to the workers, RCU-style, with no lock
//! and no reference count on the packet path.
//!
//! Each worker owns its current view outright. The publisher hands every
//! worker a fresh copy through a one-slot channel; the worker looks once
//! per burst (one atomic load when nothing is new), swaps the new view in
//! between bursts, and sends the old one back to be freed on the
//! publisher's thread. A view the worker has not picked up yet is replaced
//! by the newer one: workers only ever see the latest.
//!
//! Each worker says which view it uses (one relaxed store per swap), so the
//! control side knows when a release is in force on every worker before it
//! tells the other members; and every worker reads the node's lease deadline
//! once per burst (one load): past it, the worker takes no new connections,
//! whatever its view says, so a stalled control thread cannot keep it open.

use crate::ownership::OwnershipView;
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The node's lease: a deadline in TSC cycles (0: none, `u64::MAX`: static
/// shares, for ever), written by the control side, read by every worker.
#[derive(Clone, Debug)]
pub struct Lease(Arc<AtomicU64>);

impl Lease {
    /// A lease that never ends (static shares).
    pub fn forever() -> Lease {
        Lease(Arc::new(AtomicU64::new(u64::MAX)))
    }

    /// No lease yet.
    pub fn none() -> Lease {
        Lease(Arc::new(AtomicU64::new(0)))
    }

    /// Sets the deadline (TSC cycles; 0: none).
    pub fn set(&self, deadline_tsc: u64) {
        self.0.store(deadline_tsc, Ordering::Release);
    }

    /// Whether the lease is valid at `tsc`.
    #[inline]
    pub fn valid_at(&self, tsc: u64) -> bool {
        tsc < self.0.load(Ordering::Acquire)
    }
}

/// The control core's end.
pub struct Publisher {
    workers: Vec<WorkerSlot>,
}

struct WorkerSlot {
    to_worker: Sender<Box<OwnershipView>>,
    /// A second receiver of the same slot, to take back a view the worker
    /// has not picked up when a newer one arrives.
    unclaimed: Receiver<Box<OwnershipView>>,
    retired: Receiver<Box<OwnershipView>>,
    in_use: Arc<AtomicU64>,
}

/// A worker's end: the view in use.
pub struct Subscriber {
    current: Box<OwnershipView>,
    from_publisher: Receiver<Box<OwnershipView>>,
    retire: Sender<Box<OwnershipView>>,
    in_use: Arc<AtomicU64>,
}

impl Publisher {
    /// A publisher for `workers` workers, each starting with `initial`.
    pub fn new(workers: usize, initial: &OwnershipView) -> (Publisher, Vec<Subscriber>) {
        let mut slots = Vec::with_capacity(workers);
        let mut subs = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = bounded(1);
            let (retire_tx, retire_rx) = bounded(4);
            let in_use = Arc::new(AtomicU64::new(initial.epoch()));
            slots.push(WorkerSlot {
                to_worker: tx,
                unclaimed: rx.clone(),
                retired: retire_rx,
                in_use: Arc::clone(&in_use),
            });
            subs.push(Subscriber {
                current: Box::new(initial.clone()),
                from_publisher: rx,
                retire: retire_tx,
                in_use,
            });
        }
        (Publisher { workers: slots }, subs)
    }

    /// Hands `view` to every worker. Never blocks.
    pub fn publish(&self, view: &OwnershipView) {
        for slot in &self.workers {
            self.collect_slot(slot);
            // Take back a view the worker has not picked up yet.
            while let Ok(stale) = slot.unclaimed.try_recv() {
                drop(stale);
            }
            // The slot is empty now and only we send into it.
            let _ = slot.to_worker.try_send(Box::new(view.clone()));
        }
    }

    /// The oldest view epoch any worker still uses.
    pub fn in_force(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.in_use.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Frees the views the workers have retired.
    pub fn collect(&self) {
        for slot in &self.workers {
            self.collect_slot(slot);
        }
    }

    fn collect_slot(&self, slot: &WorkerSlot) {
        while let Ok(old) = slot.retired.try_recv() {
            drop(old);
        }
    }
}

impl Subscriber {
    /// Picks up a newer view if one was published; call once per burst.
    #[inline]
    pub fn refresh(&mut self) -> &OwnershipView {
        match self.from_publisher.try_recv() {
            Ok(new) => {
                let old = core::mem::replace(&mut self.current, new);
                self.in_use.store(self.current.epoch(), Ordering::Release);
                // If the publisher has not collected for a while, the old
                // view is freed here; that happens only after four
                // publications in a row without a collect.
                let _ = self.retire.try_send(old);
            }
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
        }
        &self.current
    }

    /// The view in use.
    #[inline]
    pub fn view(&self) -> &OwnershipView {
        &self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Bucket;
    use crate::ownership::BucketState;

    #[test]
    fn a_lease_is_valid_before_its_deadline_only() {
        let l = Lease::none();
        assert!(!l.valid_at(0));
        l.set(1000);
        assert!(l.valid_at(999) && !l.valid_at(1000));
        assert!(Lease::forever().valid_at(u64::MAX - 1));
    }

    #[test]
    fn workers_see_only_the_latest_view_and_old_ones_come_back() {
        let v1 = OwnershipView::new(16, 1);
        let (publisher, mut subs) = Publisher::new(2, &v1);
        assert_eq!(subs[0].refresh().epoch(), 1);
        let mut v2 = OwnershipView::new(16, 2);
        v2.set(Bucket(3), BucketState::Claimed);
        let v3 = OwnershipView::from_states(
            (0..16)
                .map(|b| {
                    if b == 3 {
                        BucketState::Settled
                    } else {
                        BucketState::Foreign
                    }
                })
                .collect(),
            3,
        )
        .expect("16 is a power of two");
        publisher.publish(&v2);
        publisher.publish(&v3);
        assert_eq!(publisher.in_force(), 1, "nobody has picked up a newer view");
        for s in subs.iter_mut() {
            let v = s.refresh();
            assert_eq!(v.epoch(), 3, "the newest view wins");
            assert_eq!(v.state(Bucket(3)), BucketState::Settled);
            // Nothing more pending.
            assert_eq!(s.refresh().epoch(), 3);
        }
        assert_eq!(publisher.in_force(), 3, "every worker uses view 3");
        // Each worker retired its initial view; the publisher frees them.
        for slot in &publisher.workers {
            assert_eq!(slot.retired.len(), 1);
        }
        publisher.collect();
        for slot in &publisher.workers {
            assert_eq!(slot.retired.len(), 0);
        }
    }
}
