//! synshare's DPDK side: a small safe layer over DPDK (EAL, mempools,
//! ports with their queues and statistics, mbufs and bursts with single
//! ownership, lcore launch, huge-page backed memory for the packet path's
//! large tables) and the poll-mode [`worker`] loop that joins it to the
//! packet decisions of `synshare-dataplane`.
//!
//! This crate is the only code of the dataplane allowed to use `unsafe`;
//! every block says why it is sound. The decisions crate builds and tests
//! with no DPDK headers.

#![warn(missing_docs)]

mod eal;
mod lcore;
mod mbuf;
mod memory;
mod port;
pub mod replay;
pub mod worker;

pub use eal::Eal;
pub use lcore::{launch, wait_all, LaunchError};
pub use mbuf::{Burst, Drain, FreeBatch, Mbuf, Mempool, Received, TxBatch, BURST};
pub use memory::HugeSlice;
pub use port::{Port, PortConfig, PortId, PortStats, RxQueue, TxQueue};

use std::ffi::CStr;
use std::fmt;

/// A DPDK call that failed: which one, and the errno it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    /// What we were doing.
    pub op: String,
    /// The (positive) errno.
    pub errno: i32,
}

impl DpdkError {
    /// An error for `op` from a negative return value or `rte_errno`.
    #[cold]
    pub(crate) fn new(op: impl Into<String>, errno: i32) -> Self {
        DpdkError {
            op: op.into(),
            errno: errno.abs(),
        }
    }

    /// An error for `op` with the current `rte_errno`.
    #[cold]
    pub(crate) fn last(op: impl Into<String>) -> Self {
        // SAFETY: ss_errno reads the calling thread's rte_errno; no
        // arguments, no side effects.
        let errno = unsafe { dpdk_sys::ss_errno() };
        DpdkError::new(op, errno)
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: rte_strerror returns a pointer to a static or thread-local
        // NUL-terminated string for any errno value.
        let text = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(self.errno)) };
        write!(f, "{}: {} (errno {})", self.op, text.to_string_lossy(), self.errno)
    }
}

impl std::error::Error for DpdkError {}

/// DPDK's version string, e.g. "DPDK 22.11.11".
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated
    // string; it may be called before EAL initialisation.
    unsafe { CStr::from_ptr(dpdk_sys::ss_version()) }
        .to_string_lossy()
        .into_owned()
}

/// The TSC, and its frequency in Hz.
#[inline(always)]
pub fn tsc() -> u64 {
    // What rte_get_tsc_cycles does on x86_64, without a call per read.
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC reads the time-stamp counter; no memory is touched.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the time-stamp counter; no memory is touched.
    unsafe {
        dpdk_sys::ss_tsc()
    }
}

/// The TSC frequency EAL measured (valid after [`Eal::init`]).
pub fn tsc_hz() -> u64 {
    // SAFETY: returns a value EAL computed at init; no memory is touched.
    unsafe { dpdk_sys::ss_tsc_hz() }
}

/// Hints the cache lines of `*r` (up to eight) into the cache, for data
/// the caller will read soon. A hint: it never faults and changes nothing.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    let p = (r as *const T).cast::<u8>();
    let lines = core::mem::size_of::<T>().div_ceil(64).min(8);
    for i in 0..lines {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE is part of x86_64; the addresses lie within `*r`
        // (and a prefetch of any address is harmless anyway).
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.wrapping_add(i * 64).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (p, i);
    }
}

/// DPDK's own software Toeplitz (`rte_softrss`), the reference a NIC's
/// RSS hash is documented against. `tuple` is in host byte order, as
/// DPDK expects.
pub fn softrss(tuple: &[u32], key: &[u8; 40]) -> u32 {
    // SAFETY: rte_softrss reads `tuple.len()` words from `tuple` and 40
    // bytes from `key` (enough for any tuple up to 36 bytes); both live
    // for the call. It needs no EAL.
    unsafe { dpdk_sys::ss_softrss(tuple.as_ptr(), tuple.len() as u32, key.as_ptr()) }
}
