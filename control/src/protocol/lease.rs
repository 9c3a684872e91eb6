//! The lease's arithmetic: how long a grant lasts, and the clock bound it
//! rests on (see the module documentation of [`crate::protocol`]).

/// The largest difference in rate between any clock and real time that the
/// guarantee tolerates: 1% (real clocks are within a few hundred ppm).
pub const CLOCK_RATE_BOUND: f64 = 0.01;

/// Until when a lease lasts that `grants` (when each voter that granted
/// one sent the heartbeat it answered) give among `voters` voters: until
/// `lease_ms` after the newest moment a majority granted; `None` when that
/// is not after `now`.
pub(super) fn lease_end(mut grants: Vec<u64>, voters: usize, lease_ms: u64, now: u64) -> Option<u64> {
    let quorum = voters / 2 + 1;
    if grants.len() < quorum {
        return None;
    }
    grants.sort_unstable_by(|a, b| b.cmp(a));
    let until = grants[quorum - 1] + lease_ms;
    (until > now).then_some(until)
}

#[cfg(test)]
mod tests {
    use super::lease_end;

    #[test]
    fn a_lease_lasts_from_the_newest_moment_a_majority_granted() {
        // Three voters: the second newest grant is the one a majority shares.
        assert_eq!(lease_end(vec![100, 300, 200], 3, 400, 350), Some(600));
        // Two grants of four voters are no majority.
        assert_eq!(lease_end(vec![300, 200], 4, 400, 350), None);
        // Ended: a lease ends at `until`, not after.
        assert_eq!(lease_end(vec![100, 200, 300], 3, 400, 600), None);
        assert_eq!(lease_end(vec![100, 200, 300], 3, 400, 599), Some(600));
    }
}
