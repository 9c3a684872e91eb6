//! What a NIC writes into each mbuf, stamped into the mbufs of a replayed
//! capture: for benchmarks on virtual devices (`net_pcap`), which deliver
//! bare frames, to measure what a port with RSS and checksum offload gives
//! the worker.
//!
//! `net_pcap` with `infinite_rx=1` delivers the frames of its file in the
//! file's order, again and again; an RX callback on the queue stamps each
//! received mbuf with the next stamp (RSS hash, packet type, IPv4 checksum
//! flag), as the NIC would have filled them in before the worker's
//! receive returned. A stamp whose frame length differs from the frame's
//! is not applied (counted): the replay and the stamps have gone out of
//! step, and the worker then computes what it would for a bare frame.

use crate::mbuf::BURST;
use crate::{DpdkError, RxQueue};
use dpdk_sys::rte_mbuf;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use synshare_dataplane::classify::IpChecksum;

/// What a NIC would report for one frame of the capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicStamp {
    /// The frame's length (to check the replay is in step).
    pub len: u16,
    /// The RSS hash (Toeplitz with the port's key) of the frames it hashes.
    pub rss: Option<u32>,
    /// The packet type (`RTE_PTYPE_*`).
    pub packet_type: u32,
    /// The IPv4 header checksum's verdict.
    pub ip_checksum: IpChecksum,
}

/// The state the callback reads: the stamps in the capture's order, the
/// position of the next frame, and how many frames were out of step.
struct Stamper {
    stamps: Box<[Stamp]>,
    kinds: Kinds,
    next: AtomicUsize,
    out_of_step: AtomicU64,
}

/// A stamp as the callback applies it: 8 bytes, so the stream of stamps
/// the callback reads costs little next to the frames (`kind` indexes
/// `KINDS`).
#[derive(Clone, Copy)]
struct Stamp {
    rss: u32,
    len: u16,
    kind: u16,
}

/// The (packet type, ol_flags) pairs of the stamps.
struct Kinds {
    packet_type: Box<[u32]>,
    ol_flags: Box<[u64]>,
}

/// A callback installed on an RX queue (see [`RxQueue::stamp_replay`]).
pub struct Stamping {
    stamper: &'static Stamper,
}

impl Stamping {
    /// Frames whose length differed from their stamp's (not stamped).
    pub fn out_of_step(&self) -> u64 {
        self.stamper.out_of_step.load(Ordering::Relaxed)
    }
}

/// The RX callback: stamps `n` mbufs as the NIC would have.
///
/// # Safety
/// Called by DPDK's receive on the queue it was installed on, with `pkts`
/// holding `n` valid mbufs and `user` the `Stamper` given at install.
unsafe extern "C" fn stamp(
    _port: u16,
    _queue: u16,
    pkts: *mut *mut rte_mbuf,
    n: u16,
    _max: u16,
    user: *mut c_void,
) -> u16 {
    // SAFETY: `user` is the leaked `Stamper` of `stamp_replay`, valid for
    // the process's life; only the queue's one polling lcore calls this.
    let s = unsafe { &*(user as *const Stamper) };
    let total = s.stamps.len();
    let mut at = s.next.load(Ordering::Relaxed);
    let mut out = 0;
    for i in 0..usize::from(n).min(BURST) {
        // `at` stays below `total` (no division per frame).
        let Some(&st) = s.stamps.get(at) else { break };
        let kind = usize::from(st.kind);
        let (Some(&packet_type), Some(&ol_flags)) = (s.kinds.packet_type.get(kind), s.kinds.ol_flags.get(kind)) else {
            break;
        };
        // SAFETY: the first `n` pointers are valid mbufs the receive just
        // filled; the callback runs before the caller sees them.
        unsafe {
            let m = *pkts.add(i);
            if (*m).data_len == st.len {
                (*m).ol_flags |= ol_flags;
                (*m).__bindgen_anon_1.packet_type = packet_type;
                (*m).__bindgen_anon_2.hash.rss = st.rss;
            } else {
                out += 1;
            }
        }
        at = if at + 1 >= total { 0 } else { at + 1 };
    }
    s.next.store(at, Ordering::Relaxed);
    if out > 0 {
        s.out_of_step.fetch_add(out, Ordering::Relaxed);
    }
    n
}

impl RxQueue {
    /// Stamps every frame this queue receives with the next of `stamps`,
    /// in order and round again (see the module documentation). For
    /// benchmarks: the stamps live as long as the process.
    pub fn stamp_replay(&self, stamps: &[NicStamp]) -> Result<Stamping, DpdkError> {
        if stamps.is_empty() {
            return Err(DpdkError::new("no stamps", 22));
        }
        let mut kinds: Vec<(u32, u64)> = Vec::new();
        let mut packed = Vec::with_capacity(stamps.len());
        for s in stamps {
            let kind = (
                s.packet_type,
                s.rss.map_or(0, |_| u64::from(dpdk_sys::RTE_MBUF_F_RX_RSS_HASH))
                    | match s.ip_checksum {
                        IpChecksum::Good => u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD),
                        IpChecksum::Bad => u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_BAD),
                        IpChecksum::Unknown => 0,
                    },
            );
            let index = match kinds.iter().position(|k| *k == kind) {
                Some(i) => i,
                None => {
                    kinds.push(kind);
                    kinds.len() - 1
                }
            };
            packed.push(Stamp {
                rss: s.rss.unwrap_or(0),
                len: s.len,
                kind: u16::try_from(index).map_err(|_| DpdkError::new("too many kinds of stamps", 22))?,
            });
        }
        let stamper: &'static Stamper = Box::leak(Box::new(Stamper {
            stamps: packed.into_boxed_slice(),
            kinds: Kinds {
                packet_type: kinds.iter().map(|k| k.0).collect(),
                ol_flags: kinds.iter().map(|k| k.1).collect(),
            },
            next: AtomicUsize::new(0),
            out_of_step: AtomicU64::new(0),
        }));
        let (port, queue) = self.ids();
        // SAFETY: `stamp` matches rte_rx_callback_fn; its user parameter
        // lives for the process (leaked above) and is only read, but for
        // its atomics.
        let cb = unsafe {
            dpdk_sys::rte_eth_add_rx_callback(port, queue, Some(stamp), stamper as *const Stamper as *mut c_void)
        };
        if cb.is_null() {
            return Err(DpdkError::last("rte_eth_add_rx_callback"));
        }
        Ok(Stamping { stamper })
    }
}
