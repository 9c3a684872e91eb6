//! Publication of ownership views to the workers, RCU-style, with no lock
//! and no reference count on the packet path.
//!
//! Each worker owns its current view outright. The publisher hands every
//! worker a fresh copy through a one-slot channel; the worker looks once
//! per burst (one atomic load when nothing is new), swaps the new view in
//! between bursts, and sends the old one back to be freed on the
//! publisher's thread. A view the worker has not picked up yet is replaced
//! by the newer one: workers only ever see the latest.

use crate::ownership::OwnershipView;
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};

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
}

/// A worker's end: the view in use.
pub struct Subscriber {
    current: Box<OwnershipView>,
    from_publisher: Receiver<Box<OwnershipView>>,
    retire: Sender<Box<OwnershipView>>,
}

impl Publisher {
    /// A publisher for `workers` workers, each starting with `initial`.
    pub fn new(workers: usize, initial: &OwnershipView) -> (Publisher, Vec<Subscriber>) {
        let mut slots = Vec::with_capacity(workers);
        let mut subs = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = bounded(1);
            let (retire_tx, retire_rx) = bounded(4);
            slots.push(WorkerSlot {
                to_worker: tx,
                unclaimed: rx.clone(),
                retired: retire_rx,
            });
            subs.push(Subscriber {
                current: Box::new(initial.clone()),
                from_publisher: rx,
                retire: retire_tx,
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
        for s in subs.iter_mut() {
            let v = s.refresh();
            assert_eq!(v.epoch(), 3, "the newest view wins");
            assert_eq!(v.state(Bucket(3)), BucketState::Settled);
            // Nothing more pending.
            assert_eq!(s.refresh().epoch(), 3);
        }
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
