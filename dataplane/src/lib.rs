//! synshare's packet decisions.
//!
//! [`addr`], [`header`], [`packet`], [`hash`], [`flow`], [`ownership`],
//! [`rules`], [`classify`], [`counters`] and [`publish`] are plain code
//! over byte slices: no EAL, no I/O, no clock, no unsafe code, and no DPDK
//! headers to build or test them. The DPDK layer and the poll-mode worker
//! loop that joins the two are the crate `synshare-dpdk`. `synth` (feature
//! `synth`) builds test frames.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod classify;
pub mod counters;
pub mod exchange_guard;
pub mod flow;
pub mod hash;
pub mod header;
pub mod ownership;
pub mod packet;
pub mod presence;
pub mod publish;
pub mod rules;
#[cfg(any(test, feature = "synth"))]
pub mod synth;
