//! synshare's dataplane.
//!
//! The packet decisions ([`packet`], [`hash`], [`flow`], [`ownership`],
//! [`classify`]) are plain code over byte slices: no EAL, no I/O, no clock.
//! [`dpdk`] is the small safe layer over DPDK, the only place with unsafe
//! code; [`worker`] is the poll-mode loop that joins the two.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod classify;
pub mod counters;
pub mod dpdk;
pub mod flow;
pub mod hash;
pub mod ownership;
pub mod packet;
pub mod publish;
pub mod synth;
pub mod worker;
