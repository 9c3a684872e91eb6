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
