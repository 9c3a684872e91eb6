//! The exchange against an attacker on the segment, in the simulator: a
//! capture of every datagram three members sent, replayed, reordered,
//! reflected and garbled, across restarts, deaths, stalls, one-way and
//! consensus-only link cuts, loss and duplication (the input chooses).
//! Checked by the simulator's ownership oracle at every simulated
//! millisecond (no bucket open on two members, frames on their way to a
//! kernel included), and by liveness once the attack ends (every bucket
//! open on exactly one member again). An odd first byte adds a fourth
//! node started with `join`, proposed and attacked amid the rest (it must
//! be a member that serves at the end). See
//! `synshare_control::sim::adversary`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use synshare_control::sim::adversary::{run_with, Options};
    let joiner = data.first().is_some_and(|s| s & 1 == 1);
    if let Err(e) = run_with(data, Options { joiner }) {
        panic!("{e}");
    }
});
