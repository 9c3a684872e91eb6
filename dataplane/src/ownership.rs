//! What this node may do with each bucket, as the workers see it.
//!
//! The control plane turns the cluster's table (bucket → owner, plus the
//! hand-off state) into one byte per bucket for this node, and publishes it
//! to every worker (see [`crate::publish`]). Workers never see members,
//! weights or time: a bucket moves from `Claimed` to `Settled` when the
//! control plane republishes after the drain period.

use crate::hash::Bucket;

/// This node's rights on one bucket.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(u8)]
pub enum BucketState {
    /// Another node owns it, or this node owns it but has not yet been
    /// released the claim: accept only flows already in the flow table.
    #[default]
    Foreign = 0,
    /// Owned and claimed, recently: accept new connections (SYN), but drop
    /// unknown non-SYN packets, which may belong to the previous owner.
    Claimed = 1,
    /// Owned and claimed for longer than the drain period: also accept
    /// unknown non-SYN packets (SYN-cookie connections, evicted flows).
    Settled = 2,
}

/// One node's rights on every bucket, with the table epoch it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnershipView {
    epoch: u64,
    mask: u32,
    states: Box<[BucketState]>,
}

impl OwnershipView {
    /// A view of `buckets` buckets (a power of two), all `Foreign`.
    ///
    /// # Panics
    /// If `buckets` is not a power of two; configuration validation rejects
    /// that long before.
    pub fn new(buckets: u32, epoch: u64) -> Self {
        assert!(buckets.is_power_of_two(), "bucket count must be a power of two");
        OwnershipView {
            epoch,
            mask: buckets - 1,
            states: vec![BucketState::Foreign; buckets as usize].into_boxed_slice(),
        }
    }

    /// Builds a view from a state per bucket.
    pub fn from_states(states: Vec<BucketState>, epoch: u64) -> Option<Self> {
        let n = u32::try_from(states.len()).ok()?;
        if !n.is_power_of_two() {
            return None;
        }
        Some(OwnershipView {
            epoch,
            mask: n - 1,
            states: states.into_boxed_slice(),
        })
    }

    /// The table epoch this view was computed from.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Number of buckets minus one.
    #[inline]
    pub fn mask(&self) -> u32 {
        self.mask
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Always false: a view has at least one bucket.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The state of `bucket`.
    #[inline]
    pub fn state(&self, bucket: Bucket) -> BucketState {
        // The mask keeps the index in range whatever the caller passes.
        self.states[(bucket.0 & self.mask) as usize]
    }

    /// Sets the state of `bucket`.
    pub fn set(&mut self, bucket: Bucket, state: BucketState) {
        self.states[(bucket.0 & self.mask) as usize] = state;
    }

    /// Number of buckets in `state`.
    pub fn count(&self, state: BucketState) -> usize {
        self.states.iter().filter(|s| **s == state).count()
    }
}
