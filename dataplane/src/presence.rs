//! Which buckets a node's workers hold flows in, for the exchange: a member
//! that still serves flows in buckets it no longer owns says so, and the
//! new owner adopts no unknown segment there until it stops (a connection
//! outlives any move of its bucket).
//!
//! One bit per bucket, set by a worker when its first flow in the bucket
//! arrives and cleared when its last one goes (a relaxed atomic OR or AND
//! on those transitions only, never per packet); the control thread reads
//! the bits after the workers confirmed a view, so a flow created under the
//! previous view is seen.

use std::sync::atomic::{AtomicU64, Ordering};

/// The buckets one worker holds flows in.
pub struct FlowPresence {
    words: Box<[AtomicU64]>,
}

impl FlowPresence {
    /// For `buckets` buckets, none with flows.
    pub fn new(buckets: u32) -> Self {
        FlowPresence {
            words: (0..(buckets as usize).div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// Buckets covered.
    pub fn buckets(&self) -> usize {
        self.words.len() * 64
    }

    /// Marks bucket `b` as having flows or not (out of range: ignored).
    #[inline]
    pub fn set(&self, b: usize, has_flows: bool) {
        if let Some(w) = self.words.get(b / 64) {
            let bit = 1u64 << (b % 64);
            if has_flows {
                w.fetch_or(bit, Ordering::Relaxed);
            } else {
                w.fetch_and(!bit, Ordering::Relaxed);
            }
        }
    }

    /// ORs the bits into `out` (as many words as both have).
    pub fn or_into(&self, out: &mut [u64]) {
        for (o, w) in out.iter_mut().zip(self.words.iter()) {
            *o |= w.load(Ordering::Relaxed);
        }
    }

    /// The bits, one u64 per 64 buckets.
    pub fn snapshot(&self) -> Vec<u64> {
        self.words.iter().map(|w| w.load(Ordering::Relaxed)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_follow_set_and_or_into_merges() {
        let p = FlowPresence::new(130);
        assert_eq!(p.buckets(), 192);
        p.set(0, true);
        p.set(129, true);
        p.set(5000, true);
        let mut out = vec![0u64, 0, 1 << 7];
        p.or_into(&mut out);
        assert_eq!(out, vec![1, 0, (1 << 7) | (1 << 1)]);
        p.set(0, false);
        assert_eq!(p.snapshot(), vec![0, 0, 1 << 1]);
    }
}
