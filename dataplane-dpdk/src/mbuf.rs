//! Mempools, mbufs and bursts.
//!
//! Every mbuf pointer has exactly one owner: an [`Mbuf`], a [`Burst`] slot
//! or a [`TxBatch`] slot. Moving an mbuf between them moves ownership, and
//! whatever an owner still holds when it is dropped is freed once. A double
//! free or a leak would need unsafe code outside this module.

use crate::DpdkError;
use dpdk_sys::{rte_mbuf, rte_mempool};
use std::ffi::CString;
use std::ptr::NonNull;
use synshare_dataplane::classify::{IpChecksum, PacketBuf};
use synshare_dataplane::hash::nic::{ptype, RssTypes};

/// Packets per burst.
pub const BURST: usize = 32;
// A batch's positions are the bits of a u32 (`TxBatch::take_marked`).
const _: () = assert!(BURST <= 32);

/// How many frames ahead of the one looked at [`Burst::sift`] prefetches.
const PREFETCH_AHEAD: usize = 3;

/// A pool of packet buffers.
pub struct Mempool {
    raw: NonNull<rte_mempool>,
}

// SAFETY: a DPDK mempool is designed for concurrent use from many lcores
// (per-lcore caches, lock-free ring); the pointer stays valid until Drop.
unsafe impl Send for Mempool {}
// SAFETY: as above; all operations through &Mempool are thread-safe.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `count` mbufs with `data_room` bytes each, with a
    /// per-lcore cache of `cache` and the memory of `socket`.
    pub fn new(name: &str, count: u32, cache: u32, data_room: u16, socket: i32) -> Result<Mempool, DpdkError> {
        let c = CString::new(name).map_err(|_| DpdkError::new("mempool name contains NUL", 22))?;
        // SAFETY: c is valid for the call; EAL is initialised (callers get
        // here only after Eal::init).
        let raw = unsafe { dpdk_sys::rte_pktmbuf_pool_create(c.as_ptr(), count, cache, 0, data_room, socket) };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| DpdkError::last(format!("rte_pktmbuf_pool_create({name}, {count} mbufs)")))
    }

    pub(crate) fn as_ptr(&self) -> *mut rte_mempool {
        self.raw.as_ptr()
    }

    /// Takes one mbuf from the pool.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid; the returned mbuf (if any) is ours.
        let m = unsafe { dpdk_sys::ss_pktmbuf_alloc(self.raw.as_ptr()) };
        NonNull::new(m).map(|raw| Mbuf { raw })
    }

    /// Mbufs currently in the pool (not in use).
    pub fn available(&self) -> u32 {
        // SAFETY: reads the pool's counters.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool is ours; ports using it are stopped before (the
        // node drops them first).
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}

/// One packet buffer (single segment as far as we read or write it).
pub struct Mbuf {
    raw: NonNull<rte_mbuf>,
}

// SAFETY: an mbuf is owned memory from a thread-safe pool; moving its sole
// owner to another thread is fine.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Gives up ownership, for a TX burst.
    fn into_raw(self) -> *mut rte_mbuf {
        let p = self.raw.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Number of segments.
    #[inline]
    pub fn segments(&self) -> u16 {
        // SAFETY: reads a plain field of a valid mbuf we own (the bindings'
        // layout is DPDK's, generated from its headers with its cflags).
        unsafe { (*self.raw.as_ptr()).nb_segs }
    }

    /// Length of the whole packet over all segments.
    pub fn pkt_len(&self) -> u32 {
        // SAFETY: reads a field of a valid mbuf we own.
        unsafe { dpdk_sys::ss_pktmbuf_pkt_len(self.raw.as_ptr()) }
    }

    /// The NIC's RSS hash, when the port delivered one (whatever it
    /// hashed: see [`Mbuf::connection_rss`]).
    #[inline]
    pub fn rss(&self) -> Option<u32> {
        // SAFETY: a valid mbuf we own.
        unsafe { rss_of(self.raw.as_ptr()) }
    }

    /// The packet type the driver reported (`RTE_PTYPE_*` bits; 0 when it
    /// reports none).
    #[inline]
    pub fn packet_type(&self) -> u32 {
        // SAFETY: reads a field of a valid mbuf we own; `packet_type` is a
        // plain u32 of its union (any bit pattern is valid), which the
        // driver sets on receive.
        unsafe { (*self.raw.as_ptr()).__bindgen_anon_1.packet_type }
    }

    /// The NIC's RSS hash when it is the connection value: a frame of a
    /// type in `hashed` (the types the port hashes on the 4-tuple with the
    /// cluster's key) by its reported packet type (see
    /// [`synshare_dataplane::hash::nic`]). None: compute the value.
    #[inline]
    pub fn connection_rss(&self, hashed: RssTypes) -> Option<u32> {
        if hashed.is_empty() {
            return None;
        }
        hashed.value(self.packet_type(), self.rss()?)
    }

    /// Copies `frame` into a fresh mbuf from `pool`.
    pub fn from_bytes(pool: &Mempool, frame: &[u8]) -> Option<Mbuf> {
        let mut m = pool.alloc()?;
        if !m.set_len(frame.len()) {
            return None;
        }
        m.bytes_mut().copy_from_slice(frame);
        Some(m)
    }

    /// Prefetches the start of the packet data.
    #[inline]
    pub fn prefetch(&self) {
        // SAFETY: computes the data pointer of a valid mbuf we own; a
        // prefetch hint never faults.
        unsafe { prefetch0(data_ptr(self.raw.as_ptr())) }
    }
}

/// `rte_pktmbuf_mtod(m, uint8_t *)`: the first segment's data, read from
/// the mbuf's fields rather than through a C call (it is a macro in DPDK,
/// and this runs several times per packet).
///
/// # Safety
/// `m` must point to a valid mbuf.
#[inline(always)]
unsafe fn data_ptr(m: *const rte_mbuf) -> *mut u8 {
    // SAFETY: the caller passes a valid mbuf; buf_addr + data_off stays
    // inside its buffer, as DPDK maintains it.
    unsafe { (*m).buf_addr.cast::<u8>().add(usize::from((*m).data_off)) }
}

/// The RSS hash of `m` when the driver set one (`RTE_MBUF_F_RX_RSS_HASH`),
/// read from the mbuf's fields rather than through a C call per packet.
///
/// # Safety
/// `m` must point to a valid mbuf.
#[inline(always)]
unsafe fn rss_of(m: *const rte_mbuf) -> Option<u32> {
    // SAFETY: the caller passes a valid mbuf; `hash.rss` is a plain u32 of
    // the union, meaningful when the flag says so (checked first).
    unsafe {
        if (*m).ol_flags & u64::from(dpdk_sys::RTE_MBUF_F_RX_RSS_HASH) != 0 {
            Some((*m).__bindgen_anon_2.hash.rss)
        } else {
            None
        }
    }
}

/// The driver's word on the IPv4 header checksum of `m`
/// (`RTE_MBUF_F_RX_IP_CKSUM_*`): good, bad, or unknown (not checked, not
/// IPv4, or "none", which says the checksum field itself is not right but
/// the header is: only the full parser decides that).
///
/// # Safety
/// `m` must point to a valid mbuf.
#[inline(always)]
unsafe fn ip_checksum_of(m: *const rte_mbuf) -> IpChecksum {
    // SAFETY: the caller passes a valid mbuf; ol_flags is a plain u64.
    let flags = unsafe { (*m).ol_flags } & u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_MASK);
    if flags == u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD) {
        IpChecksum::Good
    } else if flags == u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_BAD) {
        IpChecksum::Bad
    } else {
        IpChecksum::Unknown
    }
}

/// Returns `pkts` to their pools in one call.
///
/// # Safety
/// Every pointer must be a valid mbuf the caller owns and gives up.
#[inline]
unsafe fn free_bulk(pkts: &mut [*mut rte_mbuf]) {
    if !pkts.is_empty() {
        // SAFETY: the caller owns the mbufs; rte_pktmbuf_free_bulk frees each
        // (all segments, reference counts honoured), grouping puts by pool.
        unsafe { dpdk_sys::rte_pktmbuf_free_bulk(pkts.as_mut_ptr(), pkts.len() as u32) }
    }
}

/// `rte_prefetch0`.
///
/// # Safety
/// None beyond the pointer being any address: a prefetch hint never faults.
#[inline(always)]
unsafe fn prefetch0(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64; prefetching any address is harmless.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above, through DPDK's own helper.
    unsafe {
        dpdk_sys::ss_prefetch0(p.cast());
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn bytes(&self) -> &[u8] {
        // SAFETY: the first segment's data is `data_len` initialised bytes
        // at the mtod pointer, owned by this mbuf for the borrow's life.
        unsafe {
            let m = self.raw.as_ptr();
            std::slice::from_raw_parts(data_ptr(m), usize::from((*m).data_len))
        }
    }

    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and &mut self makes the borrow exclusive.
        unsafe {
            let m = self.raw.as_ptr();
            std::slice::from_raw_parts_mut(data_ptr(m), usize::from((*m).data_len))
        }
    }

    fn set_len(&mut self, len: usize) -> bool {
        let m = self.raw.as_ptr();
        if self.segments() != 1 {
            return false;
        }
        // SAFETY: single-segment mbuf we own; append/trim check the room
        // and keep data_len and pkt_len consistent.
        unsafe {
            let cur = usize::from(dpdk_sys::ss_pktmbuf_data_len(m));
            if len > cur {
                let Ok(extra) = u16::try_from(len - cur) else {
                    return false;
                };
                !dpdk_sys::ss_pktmbuf_append(m, extra).is_null()
            } else {
                let Ok(less) = u16::try_from(cur - len) else {
                    return false;
                };
                dpdk_sys::ss_pktmbuf_trim(m, less) == 0
            }
        }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we are the sole owner; the mbuf goes back to its pool once.
        unsafe { dpdk_sys::ss_pktmbuf_free(self.raw.as_ptr()) }
    }
}

/// Up to [`BURST`] received mbufs, owned.
pub struct Burst {
    pkts: [*mut rte_mbuf; BURST],
    len: usize,
    next: usize,
}

impl Default for Burst {
    fn default() -> Self {
        Burst {
            pkts: [std::ptr::null_mut(); BURST],
            len: 0,
            next: 0,
        }
    }
}

impl Burst {
    /// Packets received and not yet taken.
    pub fn len(&self) -> usize {
        self.len - self.next
    }

    /// True when nothing is left to take.
    pub fn is_empty(&self) -> bool {
        self.len == self.next
    }

    /// Frees what is left and prepares for the next burst; returns the raw
    /// array for the rx call.
    pub(crate) fn refill(&mut self) -> *mut *mut rte_mbuf {
        self.free_rest();
        self.len = 0;
        self.next = 0;
        self.pkts.as_mut_ptr()
    }

    pub(crate) fn set_received(&mut self, n: usize) {
        self.len = n.min(BURST);
    }

    /// Takes the next mbuf.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.len {
            return None;
        }
        let p = self.pkts[self.next];
        self.next += 1;
        NonNull::new(p).map(|raw| Mbuf { raw })
    }

    /// Takes every mbuf not yet taken, in order; those the iterator does
    /// not yield are freed when it is dropped. Its position lives in the
    /// iterator, not in the burst, so a loop over it keeps it in registers.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let (from, to) = (self.next, self.len);
        self.next = self.len;
        Drain {
            pkts: self.pkts[from..to].iter(),
        }
    }

    /// Looks at every frame not yet taken, in order, with `look` (the
    /// frame's index among those kept so far, and the frame): the frames
    /// for which it returns true move to `drops`, the others stay in the
    /// burst, in order. Without a branch per frame: each mbuf is written
    /// to both arrays and only one of the two lengths advances. The
    /// callee must not panic (an mbuf it was looking at would leak).
    #[inline]
    pub fn sift(&mut self, drops: &mut FreeBatch, mut look: impl FnMut(usize, Received<'_>) -> bool) {
        let (from, to) = (self.next, self.len);
        if drops.len + (to - from) > BURST {
            drops.free();
        }
        let mut pending = [std::ptr::null_mut(); BURST];
        pending[..to - from].copy_from_slice(&self.pkts[from..to]);
        // The burst gives the mbufs up; each goes to exactly one owner below.
        self.next = 0;
        self.len = 0;
        let n = to - from;
        for i in 0..n {
            let m = pending[i];
            if i + PREFETCH_AHEAD < n {
                // SAFETY: a valid mbuf of this burst; a prefetch hint never
                // faults.
                unsafe { prefetch0(data_ptr(pending[i + PREFETCH_AHEAD])) }
            }
            // SAFETY: `m` is a valid mbuf received in this burst, owned by
            // `pending` until placed below; its data stays unchanged while
            // `look` reads it.
            let drop = look(self.len, unsafe { received(m) });
            self.pkts[self.len % BURST] = m;
            drops.pkts[drops.len % BURST] = m;
            self.len += usize::from(!drop);
            drops.len += usize::from(drop);
        }
    }

    /// Prefetches the data of the mbuf `ahead` positions after the next.
    #[inline]
    pub fn prefetch(&self, ahead: usize) {
        let i = self.next + ahead;
        if i < self.len {
            // SAFETY: slot i < len holds a valid mbuf this burst owns; a
            // prefetch hint never faults.
            unsafe { prefetch0(data_ptr(self.pkts[i])) }
        }
    }

    /// The frames not yet taken (first segments), in order, to look at
    /// before taking them (e.g. to prefetch what deciding them will read).
    #[inline]
    pub fn pending(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.pending_frames().map(|r| r.bytes)
    }

    /// As [`Burst::pending`], with each frame's RSS hash and segment count.
    #[inline]
    pub fn pending_frames(&self) -> impl Iterator<Item = Received<'_>> + '_ {
        // SAFETY: slots next..len hold valid mbufs this burst owns, unchanged
        // while `self` is borrowed.
        self.pkts[self.next..self.len].iter().map(|&m| unsafe { received(m) })
    }

    fn free_rest(&mut self) {
        // SAFETY: slots next..len hold mbufs this burst still owns; they are
        // given up here (next = len below).
        unsafe { free_bulk(&mut self.pkts[self.next..self.len]) }
        self.next = self.len;
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.free_rest();
    }
}

/// The mbufs of a burst, taken one by one (see [`Burst::drain`]).
pub struct Drain<'a> {
    /// Mbufs not yet yielded, owned by the iterator.
    pkts: core::slice::Iter<'a, *mut rte_mbuf>,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        // Slots hold the driver's non-null mbufs; a null one would end the
        // iteration (and leak nothing: there is nothing to free).
        self.pkts.next().and_then(|&p| NonNull::new(p)).map(|raw| Mbuf { raw })
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        let rest = self.pkts.as_slice();
        let mut left = [std::ptr::null_mut(); BURST];
        let n = rest.len().min(BURST);
        left[..n].copy_from_slice(&rest[..n]);
        // SAFETY: the iterator owns the mbufs it has not yielded (the
        // burst gave them up in `drain`); they are freed once, here.
        unsafe { free_bulk(&mut left[..n]) }
    }
}

/// What `m` holds.
///
/// # Safety
/// `m` must be a valid mbuf whose first segment's `data_len` bytes at the
/// mtod pointer stay valid and unchanged for `'a`.
unsafe fn received<'a>(m: *mut rte_mbuf) -> Received<'a> {
    // SAFETY: as the caller promises.
    unsafe {
        Received {
            bytes: std::slice::from_raw_parts(data_ptr(m), usize::from((*m).data_len)),
            rss: rss_of(m),
            packet_type: (*m).__bindgen_anon_1.packet_type,
            ip_checksum: ip_checksum_of(m),
            segments: (*m).nb_segs,
        }
    }
}

/// A received frame, looked at before its mbuf is taken from the burst.
pub struct Received<'a> {
    /// The first segment's bytes.
    pub bytes: &'a [u8],
    /// The NIC's RSS hash, when the port delivered one (whatever it
    /// hashed: see [`Received::connection_rss`]).
    pub rss: Option<u32>,
    /// The packet type the driver reported (`RTE_PTYPE_*` bits; 0: none).
    pub packet_type: u32,
    /// The driver's word on the IPv4 header checksum (trust it only from a
    /// port that checks it: [`crate::RxQueue::ip_checksum_offload`]).
    pub ip_checksum: IpChecksum,
    /// Number of segments.
    pub segments: u16,
}

impl Received<'_> {
    /// As [`Mbuf::connection_rss`].
    #[inline]
    pub fn connection_rss(&self, hashed: RssTypes) -> Option<u32> {
        if hashed.is_empty() {
            return None;
        }
        hashed.value(self.packet_type, self.rss?)
    }
}

// The packet type bits the decision reads are DPDK's.
const _: () = {
    use dpdk_sys as d;
    assert!(ptype::L3_MASK == d::RTE_PTYPE_L3_MASK);
    assert!(ptype::L3_IPV4 == d::RTE_PTYPE_L3_IPV4);
    assert!(ptype::L3_IPV6 == d::RTE_PTYPE_L3_IPV6);
    assert!(ptype::L4_MASK == d::RTE_PTYPE_L4_MASK);
    assert!(ptype::L4_TCP == d::RTE_PTYPE_L4_TCP);
    assert!(ptype::L4_UDP == d::RTE_PTYPE_L4_UDP);
    assert!(ptype::TUNNEL_MASK == d::RTE_PTYPE_TUNNEL_MASK);
    assert!(ptype::INNER_MASK == d::RTE_PTYPE_INNER_L2_MASK | d::RTE_PTYPE_INNER_L3_MASK | d::RTE_PTYPE_INNER_L4_MASK);
};

/// Mbufs to free, owned until freed together (one call per burst instead
/// of one per packet).
pub struct FreeBatch {
    pkts: [*mut rte_mbuf; BURST],
    len: usize,
}

impl Default for FreeBatch {
    fn default() -> Self {
        FreeBatch {
            pkts: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }
}

impl FreeBatch {
    /// Adds `m`, freeing the batch first when it is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) {
        if self.len == BURST {
            self.free();
        }
        self.pkts[self.len] = m.into_raw();
        self.len += 1;
    }

    /// Mbufs waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frees every mbuf held.
    #[inline]
    pub fn free(&mut self) {
        // SAFETY: slots 0..len hold mbufs the batch owns (taken from their
        // owners by `push`); they are given up here (len = 0 below).
        unsafe { free_bulk(&mut self.pkts[..self.len]) }
        self.len = 0;
    }
}

impl Drop for FreeBatch {
    fn drop(&mut self) {
        self.free();
    }
}

/// Mbufs waiting to be sent on one TX queue, owned until sent.
pub struct TxBatch {
    pkts: [*mut rte_mbuf; BURST],
    len: usize,
}

impl Default for TxBatch {
    fn default() -> Self {
        TxBatch {
            pkts: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }
}

impl TxBatch {
    /// Adds `m`; gives it back when the batch is full (flush first).
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST {
            return Err(m);
        }
        self.pkts[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the batch holds a full burst.
    pub fn is_full(&self) -> bool {
        self.len == BURST
    }

    /// The packets waiting, in order, to look at.
    pub fn frames(&self) -> impl Iterator<Item = Received<'_>> + '_ {
        // SAFETY: slots 0..len hold valid mbufs the batch owns, unchanged
        // while `self` is borrowed.
        self.pkts[..self.len].iter().map(|&m| unsafe { received(m) })
    }

    /// Takes out, unsent, the packets at the positions set in `marked`
    /// (bit i: position i), handing each to `f` with its position; the
    /// others stay, in order.
    pub fn take_marked(&mut self, marked: u32, mut f: impl FnMut(usize, Mbuf)) {
        let mut taken = [std::ptr::null_mut(); BURST];
        let mut positions = [0usize; BURST];
        let (mut t, mut kept) = (0, 0);
        for i in 0..self.len {
            let p = self.pkts[i];
            if marked & (1 << i) != 0 {
                taken[t] = p;
                positions[t] = i;
                t += 1;
            } else {
                self.pkts[kept] = p;
                kept += 1;
            }
        }
        self.len = kept;
        // Owned by the iterator from here: what `f` does not get (if it
        // panics) is freed with it.
        let mut mbufs = Drain {
            pkts: taken[..t].iter(),
        };
        for &at in &positions[..t] {
            if let Some(m) = mbufs.next() {
                f(at, m);
            }
        }
    }

    pub(crate) fn raw(&mut self) -> (*mut *mut rte_mbuf, u16) {
        (self.pkts.as_mut_ptr(), self.len as u16)
    }

    /// After a TX call that took `sent` packets: frees the rest (they
    /// could not be queued) and returns how many were freed.
    pub(crate) fn sent(&mut self, sent: usize) -> usize {
        let sent = sent.min(self.len);
        // SAFETY: slots sent..len were not taken by the driver; the batch
        // still owns them and gives them up here (len = 0 below).
        unsafe { free_bulk(&mut self.pkts[sent..self.len]) }
        let dropped = self.len - sent;
        self.len = 0;
        dropped
    }
}

impl Drop for TxBatch {
    fn drop(&mut self) {
        self.sent(0);
    }
}
