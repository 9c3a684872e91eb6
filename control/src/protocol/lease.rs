//! The lease's arithmetic: how long a grant lasts, and the clock bound it
//! rests on (see the module documentation of [`crate::protocol`]).

/// The largest difference in rate between any clock and real time that the
/// guarantee tolerates: 1% (real clocks are within a few hundred ppm).
pub const CLOCK_RATE_BOUND: f64 = 0.01;
