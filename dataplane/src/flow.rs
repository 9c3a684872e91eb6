//! The per-worker flow table: which connections this node has accepted.
//!
//! Bounded and allocated once. Groups of four 16-byte slots fill exactly one
//! cache line; a flow lives in its primary group, or in a second-choice
//! group when the primary is full (one move of a resident to its own other
//! group makes room when both are). A group counts the flows that overflowed
//! from it, so a lookup reads a second line only when the first group has
//! sent some away: a lookup, a touch and an insert of a flow at home read
//! one line.
//!
//! A slot holds no key: only the key's 64-bit hash ([`FlowKey::hash`]) and
//! the connection value, compared together. Two different connections
//! collide only when their 64-bit hashes are equal and their connection
//! values are too: for a lookup among the up to eight flows of its two
//! groups, with `2^g` groups, that is at most `8 · 2^-(64-g) · 2^-16`
//! (2^-58 at a million flows, a false match per 900 years at 10 Mpps of
//! lookups), and only a false match in a bucket this node does not hold
//! would pass a packet it should have dropped.
//!
//! Timestamps are coarse ticks (a power of two milliseconds, at most a
//! sixteenth of the shortest timeout; 256 ms with the defaults), rewritten
//! by a packet only when they are more than a 32nd of the state's timeout
//! old (an established flow's line is written once in 9 s, not on every
//! packet). An entry expires at least its timeout and at most a 32nd of it
//! plus two ticks after its last packet. Expired entries are free slots to
//! inserts, and a sweeper walks a few groups per call to keep the live
//! count honest. Under pressure a new flow may evict an entry of its two
//! groups: the oldest provisional one first, else the oldest half-open,
//! closing, or contested one whose grace has passed; never an established
//! one. When both hold only established flows (and none can move), the
//! insert fails and is counted. A provisional entry (an adopted segment the
//! kernel has not answered yet) evicts only another provisional one, so a
//! flood of segments nobody answers takes free slots alone, and only for the
//! provisional timeout.
//!
//! A flow's state changes only on evidence the kernel accepts (see
//! [`FlowTable::touch`] for segments from the wire and
//! [`FlowTable::from_kernel`] for the kernel's): a RST, FIN or SYN from the
//! wire, which anyone who knows a client's address can forge, only makes an
//! established flow *contested*; the kernel's own RST ends a flow, its FIN
//! closes it, and the idle timeout ends it.
//!
//! The table also keeps, per bucket, the number of its flows, folded with
//! this node's rights on the bucket ([`FlowTable::follow`]) into one byte
//! per bucket, the [`BucketGate`]: a frame in a bucket that is neither held
//! nor has flows here is dropped on that byte alone.
//!
//! Time is a `u32` in milliseconds passed in by the caller; ages are taken
//! with wrapping arithmetic, so the clock may wrap.

use crate::addr::Addr;
use crate::hash::{symmetric, ConnectionValue};
use crate::ownership::{BucketState, OwnershipView};

/// Slots per group: 4 x 16 bytes, one cache line.
const WAYS: usize = 4;

/// A connection as seen from the VIP: client address and port, VIP and port.
/// IPv4 addresses are stored IPv4-mapped, so the key has one shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowKey([u32; 9]);

impl PartialEq for FlowKey {
    /// Branch-free and inline: a slice comparison would call `memcmp` on
    /// the packet path.
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u32, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Eq for FlowKey {}

impl FlowKey {
    /// The key of the connection from `client:client_port` to `vip:vip_port`.
    #[inline]
    pub fn new(client: Addr, client_port: u16, vip: Addr, vip_port: u16) -> Self {
        let mut words = [0u32; 9];
        mapped(&mut words[0..4], client);
        mapped(&mut words[4..8], vip);
        let p = client_port.to_be_bytes();
        let q = vip_port.to_be_bytes();
        words[8] = u32::from_ne_bytes([p[0], p[1], q[0], q[1]]);
        FlowKey(words)
    }

    /// A 64-bit hash for the table's groups and the slot's tag. The
    /// connection value is not used for this: with the symmetric key it has
    /// only 16 bits of entropy. Two independent multiply-xorshift lanes over
    /// the key's 64-bit words, joined with the ports: each step is a
    /// bijection of its input, and the lanes overlap in the CPU (half the
    /// latency of one chain over nine words).
    #[inline]
    pub fn hash(&self) -> u64 {
        const M: u64 = 0xff51_afd7_ed55_8ccd;
        const N: u64 = 0xc4ce_b9fe_1a85_ec53;
        let w = |i: usize| u64::from(self.0[i]) | (u64::from(self.0[i + 1]) << 32);
        let step = |h: u64, x: u64| {
            let h = (h ^ x).wrapping_mul(M);
            h ^ (h >> 32)
        };
        let a = step(step(0x9e37_79b9_7f4a_7c15, w(0)), w(4));
        let b = step(step(0x6a09_e667_f3bc_c908, w(2)), w(6));
        let mut h = (a ^ b.rotate_left(32) ^ u64::from(self.0[8])).wrapping_mul(N);
        h ^= h >> 29;
        h = h.wrapping_mul(M);
        h ^ (h >> 32)
    }

    /// The connection value of the key, as software Toeplitz computes it
    /// from the packet (the IPv4-mapped prefixes cancel in the fold, so an
    /// IPv4 key gives the IPv4 value).
    #[inline]
    pub fn connection_value(&self) -> ConnectionValue {
        let x = self.0.iter().fold(0u32, |acc, w| acc ^ w);
        symmetric::of_folded(symmetric::fold32(u32::from_be_bytes(x.to_ne_bytes())))
    }
}

/// Stores `addr` as four native-endian words of its 16-byte (IPv4-mapped
/// for IPv4) form.
#[inline]
fn mapped(out: &mut [u32], addr: Addr) {
    let word = |c: &[u8]| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    match addr {
        Addr::V4(a) => {
            out[0] = 0;
            out[1] = 0;
            out[2] = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
            out[3] = u32::from_ne_bytes(a);
        }
        Addr::V6(a) => {
            for (o, c) in out.iter_mut().zip(a.chunks_exact(4)) {
                *o = word(c);
            }
        }
    }
}

/// Where a flow lives: its key's hash and its connection value, computed
/// once per frame and carried to every table operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowRef {
    hash: u64,
    value: u32,
}

impl FlowRef {
    /// The place of `key`, whose connection value (software or the NIC's
    /// RSS hash) is `value`.
    #[inline]
    pub fn new(key: &FlowKey, value: ConnectionValue) -> Self {
        FlowRef {
            hash: key.hash(),
            value: value.0,
        }
    }

    /// The connection value it was made with.
    #[inline]
    pub fn value(&self) -> ConnectionValue {
        ConnectionValue(self.value)
    }
}

impl From<&FlowKey> for FlowRef {
    /// With the software connection value.
    #[inline]
    fn from(key: &FlowKey) -> Self {
        FlowRef::new(key, key.connection_value())
    }
}

impl From<FlowKey> for FlowRef {
    /// With the software connection value.
    #[inline]
    fn from(key: FlowKey) -> Self {
        FlowRef::from(&key)
    }
}

impl From<&FlowRef> for FlowRef {
    #[inline]
    fn from(r: &FlowRef) -> Self {
        *r
    }
}

/// One byte per bucket for the packet path: this node's rights on the
/// bucket (from the ownership view) and whether this worker has flows in
/// it. See [`FlowTable::follow`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BucketGate(u8);

impl BucketGate {
    const STATE: u8 = 0b011;
    const HAS_FLOWS: u8 = 0b100;

    /// A gate for `state`, with or without flows.
    pub fn new(state: BucketState, has_flows: bool) -> Self {
        BucketGate(state as u8 | if has_flows { Self::HAS_FLOWS } else { 0 })
    }

    /// This node's rights on the bucket.
    #[inline]
    pub fn state(self) -> BucketState {
        match self.0 & Self::STATE {
            1 => BucketState::Claimed,
            2 => BucketState::Settled,
            _ => BucketState::Foreign,
        }
    }

    /// This worker has flows (live or not yet swept) in the bucket.
    #[inline]
    pub fn has_flows(self) -> bool {
        self.0 & Self::HAS_FLOWS != 0
    }

    /// Neither held nor with flows here: nothing in the flow table can
    /// change what happens to a frame of this bucket.
    #[inline]
    pub fn is_closed(self) -> bool {
        self.0 == 0
    }
}

/// The state of a tracked connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(u8)]
pub enum FlowState {
    /// Free slot.
    #[default]
    Empty = 0,
    /// A SYN was accepted; nothing else seen yet.
    HalfOpen = 1,
    /// The client sent a packet after its SYN, or the kernel answered a
    /// segment of the flow.
    Established = 2,
    /// The kernel sent a FIN; kept briefly for the last ACKs.
    Closing = 3,
    /// An unknown segment adopted in a settled bucket, not yet answered by
    /// the kernel: it becomes established when the kernel sends a segment
    /// other than a RST on the flow, and goes when the kernel resets it or
    /// after the (short) provisional timeout. The first entry evicted.
    Provisional = 4,
    /// An established flow on which the wire brought a RST, FIN or SYN: a
    /// claim that it ended, which the kernel checks and the dataplane does
    /// not believe by itself. Still known and passed to the kernel for the
    /// established timeout; any later segment in either direction makes it
    /// established again. Once the grace has passed without one (the
    /// kernel most likely took a genuine RST), it may be evicted to make
    /// room for a new flow.
    Contested = 5,
    /// A half-open flow the kernel has answered: its SYN-ACK left under the
    /// lease, so the client may hold the connection from then on, and the
    /// kernel's retransmitted SYN-ACKs go out whatever the bucket's state
    /// (see [`FlowTable::from_kernel`]). Otherwise as half-open.
    Answered = 6,
}

impl FlowState {
    /// Every state, in index order (the index of [`FlowTable::census`]).
    pub const ALL: [FlowState; 7] = [
        FlowState::Empty,
        FlowState::HalfOpen,
        FlowState::Established,
        FlowState::Closing,
        FlowState::Provisional,
        FlowState::Contested,
        FlowState::Answered,
    ];

    /// True for the states of a flow the kernel holds (established, or
    /// established and contested).
    #[inline]
    pub fn is_established(self) -> bool {
        matches!(self, FlowState::Established | FlowState::Contested)
    }
}

/// How long each state lives without traffic, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// Half-open entries (SYN seen, nothing else).
    pub half_open_ms: u32,
    /// Established entries with no packet.
    pub established_ms: u32,
    /// Entries after the kernel's FIN.
    pub closing_ms: u32,
    /// Provisional entries (adopted, not yet answered by the kernel),
    /// counted from the adoption: the kernel answers at once, so a few
    /// seconds.
    pub provisional_ms: u32,
    /// How long a contested flow is kept from eviction after the RST, FIN
    /// or SYN from the wire (about one round trip and the kernel's answer).
    /// Not a timeout: a contested flow lives for `established_ms`.
    pub grace_ms: u32,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        FlowTimeouts {
            half_open_ms: 5_000,
            established_ms: 300_000,
            closing_ms: 10_000,
            provisional_ms: 3_000,
            grace_ms: 1_000,
        }
    }
}

impl FlowTimeouts {
    /// The timeout of `state` (0 for a free slot).
    pub fn of(&self, state: FlowState) -> u32 {
        match state {
            FlowState::Empty => 0,
            FlowState::HalfOpen | FlowState::Answered => self.half_open_ms,
            FlowState::Established | FlowState::Contested => self.established_ms,
            FlowState::Closing => self.closing_ms,
            FlowState::Provisional => self.provisional_ms,
        }
    }
}

/// One flow: 16 bytes.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Slot {
    /// The key's 64-bit hash.
    tag: u64,
    /// The connection value.
    value: u32,
    /// Bits 0-2: the [`FlowState`] (0: free). Bits 3-7: in slot 0, the
    /// group's overflow count (see [`Group`]); kept as they are in the
    /// other slots. Bits 8-31: the tick of the last packet.
    meta: u32,
}

const STATE_BITS: u32 = 0b111;
const GROUP_BITS: u32 = 0b1111_1000;
const GROUP_SHIFT: u32 = 3;
const TICK_SHIFT_IN_META: u32 = 8;
/// The overflow count saturates here and then stays: the group's lookups
/// always read the second line from then on (never wrong, only slower).
const OVERFLOW_STICKY: u32 = 31;
/// Timeouts and refresh intervals are kept per value of the state bits.
const STATE_VALUES: usize = 8;

impl Slot {
    #[inline]
    fn state_bits(&self) -> u32 {
        self.meta & STATE_BITS
    }

    #[inline]
    fn state(&self) -> FlowState {
        match self.meta & STATE_BITS {
            1 => FlowState::HalfOpen,
            2 => FlowState::Established,
            3 => FlowState::Closing,
            4 => FlowState::Provisional,
            5 => FlowState::Contested,
            6 => FlowState::Answered,
            _ => FlowState::Empty,
        }
    }

    #[inline]
    fn tick(&self) -> u32 {
        self.meta >> TICK_SHIFT_IN_META
    }

    #[inline]
    fn set(&mut self, state: FlowState, tick: u32) {
        self.meta = (self.meta & GROUP_BITS) | (tick << TICK_SHIFT_IN_META) | state as u32;
    }

    #[inline]
    fn clear(&mut self) {
        self.meta &= GROUP_BITS;
    }
}

/// Four slots in one cache line. Slot 0's group bits count the flows whose
/// primary group this is but which live in their second-choice group.
/// Opaque outside this module: only [`GroupStore`]s hold them.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct Group {
    slots: [Slot; WAYS],
}

const _: () = assert!(core::mem::size_of::<Group>() == 64);

impl Group {
    #[inline]
    fn overflow(&self) -> u32 {
        (self.slots[0].meta & GROUP_BITS) >> GROUP_SHIFT
    }

    fn set_overflow(&mut self, n: u32) {
        self.slots[0].meta = (self.slots[0].meta & !GROUP_BITS) | (n << GROUP_SHIFT);
    }
}

/// Counts of what the table did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// New entries.
    pub inserted: u64,
    /// Provisional, half-open, closing or contested entries evicted to
    /// make room.
    pub evicted: u64,
    /// Inserts refused because both groups held only established flows
    /// (provisional inserts: only flows that are not provisional).
    pub insert_failed: u64,
    /// Entries removed by the sweeper after their timeout.
    pub expired: u64,
    /// Entries removed on the kernel's RST.
    pub reset: u64,
    /// Entries moved to their other group to make room.
    pub moved: u64,
    /// Provisional entries the kernel answered (now established).
    pub promoted: u64,
    /// Provisional entries the kernel answered with a RST (removed; also
    /// counted in `reset`).
    pub refused: u64,
    /// Established flows contested by a RST, FIN or SYN from the wire.
    pub contested: u64,
}

/// What [`FlowTable::touch`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Touch {
    /// Not in the table (or expired).
    Unknown,
    /// Known; its state before this packet.
    Known(FlowState),
}

/// The memory a flow table's groups live in, and how a group's line is
/// brought into the cache ahead of a lookup.
///
/// `Box<[Group]>` is plain memory with no prefetch (tests, benchmarks of
/// the decisions alone); the node's workers use `synshare-dpdk`'s
/// huge-page backed store, whose prefetch is a real one.
pub trait GroupStore: core::ops::DerefMut<Target = [Group]> {
    /// `len` empty groups.
    fn with_len(len: usize) -> Self;

    /// Hints `group`'s line into the cache (a hint: never faults, changes
    /// nothing).
    #[inline(always)]
    fn prefetch(&self, _group: usize) {}
}

impl GroupStore for Box<[Group]> {
    fn with_len(len: usize) -> Self {
        vec![Group::default(); len].into_boxed_slice()
    }
}

/// Buckets of a table before it first follows a view.
const DEFAULT_BUCKETS: usize = 65536;

/// Words of the bitmap indexed by folded word (65,536 bits).
const FOLDED_WORDS: usize = 1 << 16 >> 6;

/// A bounded flow table. See the module documentation. `G` is where its
/// groups live (see [`GroupStore`]).
pub struct FlowTable<G = Box<[Group]>> {
    groups: G,
    group_mask: usize,
    timeouts: FlowTimeouts,
    /// A tick is `1 << tick_shift` milliseconds.
    tick_shift: u32,
    /// Ticks wrap at `tick_mask + 1` (as milliseconds wrap at 2^32).
    tick_mask: u32,
    /// Per state: expired when more ticks than this have passed.
    timeout_ticks: [u32; STATE_VALUES],
    /// Per state: a packet rewrites the tick when more ticks than this
    /// have passed (0: whenever it changed).
    refresh_ticks: [u32; STATE_VALUES],
    /// A contested flow may be evicted once more ticks than this have
    /// passed since the segment that contested it.
    grace_ticks: u32,
    live: usize,
    sweep_cursor: usize,
    stats: FlowStats,
    /// Per bucket: this node's rights and whether flows are here.
    gates: Box<[u8]>,
    /// Per bucket, one bit: the gate is open (not zero). 8 KiB for 65,536
    /// buckets, for values a NIC gave.
    open: Box<[u64]>,
    /// The same bits indexed by the folded word of the frame's tuple (see
    /// [`symmetric::unfold`]): bit `f` is the open bit of the bucket of
    /// `of_folded(f)`. 8 KiB; the foreign path tests it straight from the
    /// frame's words, before any table lookup of the value.
    open_folded: Box<[u64; FOLDED_WORDS]>,
    /// Per bucket: the slots in use (live or not yet swept).
    bucket_flows: Box<[u32]>,
    bucket_mask: u32,
    /// The view folded into `gates`: its address and epoch.
    followed: Option<(usize, u64)>,
    /// Where the buckets with flows are told to the exchange.
    presence: Option<std::sync::Arc<crate::presence::FlowPresence>>,
}

impl FlowTable {
    /// A table in plain memory with room for at least `capacity` flows
    /// (see [`FlowTable::new_in`]).
    pub fn new(capacity: usize, timeouts: FlowTimeouts) -> Self {
        FlowTable::new_in(capacity, timeouts)
    }

    /// Bytes of memory per slot.
    pub const fn bytes_per_slot() -> usize {
        core::mem::size_of::<Group>() / WAYS
    }
}

impl<G: GroupStore> FlowTable<G> {
    /// A table with room for at least `capacity` flows (rounded up to a
    /// power of two number of four-slot groups), its groups in a `G`.
    pub fn new_in(capacity: usize, timeouts: FlowTimeouts) -> Self {
        let groups = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        // A tick of at most a sixteenth of the shortest timeout, at most
        // 1,024 ms.
        let shortest = timeouts
            .half_open_ms
            .min(timeouts.established_ms)
            .min(timeouts.closing_ms)
            .min(timeouts.provisional_ms);
        let tick_shift = (shortest / 16).max(1).ilog2().min(10);
        let tick_mask = (1u32 << (32 - tick_shift).min(24)) - 1;
        let ticks = |ms: u32| ms.div_ceil(1 << tick_shift).min(tick_mask / 2);
        // A packet rewrites its slot's tick only once it is more than a
        // 32nd of the timeout old; expiry waits that much longer, so it is
        // never early. Values of the state bits that name no state keep
        // zeros (never stored).
        let mut refresh_ticks = [0u32; STATE_VALUES];
        let mut timeout_ticks = [0u32; STATE_VALUES];
        for state in FlowState::ALL {
            let t = ticks(timeouts.of(state));
            refresh_ticks[state as usize] = t / 32;
            timeout_ticks[state as usize] = t + t / 32;
        }
        FlowTable {
            groups: G::with_len(groups),
            group_mask: groups - 1,
            timeouts,
            tick_shift,
            tick_mask,
            timeout_ticks,
            refresh_ticks,
            grace_ticks: ticks(timeouts.grace_ms),
            live: 0,
            sweep_cursor: 0,
            stats: FlowStats::default(),
            gates: vec![0; DEFAULT_BUCKETS].into_boxed_slice(),
            open: vec![0; DEFAULT_BUCKETS.div_ceil(64)].into_boxed_slice(),
            open_folded: Box::new([0; FOLDED_WORDS]),
            bucket_flows: vec![0; DEFAULT_BUCKETS].into_boxed_slice(),
            bucket_mask: DEFAULT_BUCKETS as u32 - 1,
            followed: None,
            presence: None,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.groups.len() * WAYS
    }

    /// Entries not yet swept: live flows plus expired ones the sweeper has
    /// not reached.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no slot is in use.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// What the table did so far.
    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// The timeouts the table was made with.
    pub fn timeouts(&self) -> FlowTimeouts {
        self.timeouts
    }

    /// The length of a timestamp tick in milliseconds.
    pub fn tick_ms(&self) -> u32 {
        1 << self.tick_shift
    }

    /// Bytes of memory the slots take.
    pub fn memory_bytes(&self) -> usize {
        self.groups.len() * core::mem::size_of::<Group>()
    }

    /// Bytes of the per-bucket gates and counts (independent of the
    /// number of slots).
    pub fn bucket_memory_bytes(&self) -> usize {
        self.gates.len() + (self.open.len() + FOLDED_WORDS) * 8 + self.bucket_flows.len() * core::mem::size_of::<u32>()
    }

    /// Folds `view` into the bucket gates, unless it is the view folded
    /// last (the same object with the same epoch). A worker calls it with
    /// each burst's view; views are published as new objects, never changed
    /// in place.
    #[inline]
    pub fn follow(&mut self, view: &OwnershipView) {
        let id = (view as *const OwnershipView as usize, view.epoch());
        if self.followed != Some(id) || self.gates.len() != view.len() {
            self.refold(view, id);
        }
    }

    #[cold]
    fn refold(&mut self, view: &OwnershipView, id: (usize, u64)) {
        if self.gates.len() != view.len() {
            // Another bucket count: count the flows per bucket again.
            self.gates = vec![0; view.len()].into_boxed_slice();
            self.open = vec![0; view.len().div_ceil(64)].into_boxed_slice();
            self.bucket_flows = vec![0; view.len()].into_boxed_slice();
            self.bucket_mask = view.mask();
            for group in self.groups.iter() {
                for slot in group.slots.iter().filter(|s| s.state_bits() != 0) {
                    self.bucket_flows[(slot.value & self.bucket_mask) as usize] += 1;
                }
            }
            self.tell_presence();
        }
        for (b, (gate, count)) in self.gates.iter_mut().zip(self.bucket_flows.iter()).enumerate() {
            *gate = BucketGate::new(view.state(crate::hash::Bucket(b as u32)), *count > 0).0;
        }
        for (word, gates) in self.open.iter_mut().zip(self.gates.chunks(64)) {
            *word = gates
                .iter()
                .enumerate()
                .fold(0, |w, (i, &g)| w | (u64::from(g != 0) << i));
        }
        let open = &self.open;
        for (w, word) in self.open_folded.iter_mut().enumerate() {
            *word = (0..64).fold(0, |acc, i| {
                let b = (symmetric::of_folded((w * 64 + i) as u16).0 & self.bucket_mask) as usize;
                acc | (((open[b / 64] >> (b % 64)) & 1) << i)
            });
        }
        self.followed = Some(id);
    }

    /// Tells the buckets with flows to `presence` from now on (the
    /// exchange reads them; see [`crate::presence`]).
    pub fn share_presence(&mut self, presence: std::sync::Arc<crate::presence::FlowPresence>) {
        self.presence = Some(presence);
        self.tell_presence();
    }

    #[cold]
    fn tell_presence(&self) {
        if let Some(p) = &self.presence {
            for (b, count) in self.bucket_flows.iter().enumerate() {
                p.set(b, *count > 0);
            }
        }
    }

    /// Sets bucket `b`'s gate byte and its open bits.
    #[inline]
    fn set_gate(&mut self, b: usize, gate: u8) {
        let was_open = self.gates[b] != 0;
        self.gates[b] = gate;
        if was_open != (gate != 0) {
            self.flip_open(b);
        }
    }

    /// Flips bucket `b`'s open bit, and those of the folded words that
    /// land in it: one word at 65,536 buckets (the map is a bijection);
    /// with fewer buckets, each takes `65,536 / buckets` words (the low
    /// bits `b + k · buckets`, a coset of a subspace, walked in Gray code
    /// order); with more, the one folded word whose value's bucket is `b`,
    /// if any.
    #[inline]
    fn flip_open(&mut self, b: usize) {
        self.open[b / 64] ^= 1u64 << (b % 64);
        let buckets_log = (self.bucket_mask + 1).trailing_zeros();
        let mut f = symmetric::unfold(b as u16);
        if buckets_log >= 16 {
            if (symmetric::of_folded(f).0 & self.bucket_mask) as usize == b {
                self.open_folded[usize::from(f >> 6)] ^= 1u64 << (f % 64);
            }
            return;
        }
        let mut k = 0u32;
        loop {
            self.open_folded[usize::from(f >> 6)] ^= 1u64 << (f % 64);
            k += 1;
            if k >> (16 - buckets_log) != 0 {
                break;
            }
            f ^= symmetric::unfold_bit(buckets_log + k.trailing_zeros());
        }
    }

    /// False when the bucket of the value whose tuple folds to `folded`
    /// (see [`symmetric::fold`]) is closed: as [`FlowTable::is_open`] of
    /// `symmetric::of_folded(folded)`, one bit of an 8 KiB bitmap with no
    /// lookup of the value first.
    #[inline(always)]
    pub fn is_open_folded(&self, folded: u16) -> bool {
        self.open_folded[usize::from(folded >> 6)] & (1 << (folded % 64)) != 0
    }

    /// False when the bucket of `value` is closed (see
    /// [`BucketGate::is_closed`]): one bit of an 8 KiB bitmap.
    #[inline]
    pub fn is_open(&self, value: ConnectionValue) -> bool {
        let b = (value.0 & self.bucket_mask) as usize;
        self.open[b / 64] & (1 << (b % 64)) != 0
    }

    /// The gate of the bucket of `value`.
    #[inline]
    pub fn gate(&self, value: ConnectionValue) -> BucketGate {
        BucketGate(self.gates[(value.0 & self.bucket_mask) as usize])
    }

    /// Slots in use in the bucket of `value` (live or not yet swept).
    pub fn flows_in_bucket(&self, value: ConnectionValue) -> u32 {
        self.bucket_flows[(value.0 & self.bucket_mask) as usize]
    }

    #[inline]
    fn now_tick(&self, now: u32) -> u32 {
        (now >> self.tick_shift) & self.tick_mask
    }

    #[inline]
    fn primary(&self, hash: u64) -> usize {
        hash as usize & self.group_mask
    }

    #[inline]
    fn alternate(&self, primary: usize, hash: u64) -> usize {
        primary ^ (((hash >> 32) as usize | 1) & self.group_mask)
    }

    /// The other group a resident of group `g` may live in.
    #[inline]
    fn other(&self, g: usize, hash: u64) -> usize {
        let p = self.primary(hash);
        if g == p {
            self.alternate(p, hash)
        } else {
            p
        }
    }

    #[inline]
    fn expired(&self, slot: &Slot, now_tick: u32) -> bool {
        now_tick.wrapping_sub(slot.tick()) & self.tick_mask > self.timeout_ticks[slot.state_bits() as usize]
    }

    /// A live, unexpired slot of group `g` holding `r`.
    #[inline]
    fn probe(&self, g: usize, r: &FlowRef, now_tick: u32) -> Option<usize> {
        let group = &self.groups[g];
        (0..WAYS).find(|&i| {
            let s = &group.slots[i];
            s.tag == r.hash && s.value == r.value && s.state_bits() != 0 && !self.expired(s, now_tick)
        })
    }

    #[inline]
    fn find(&self, r: &FlowRef, now_tick: u32) -> Option<(usize, usize)> {
        let p = self.primary(r.hash);
        if let Some(i) = self.probe(p, r, now_tick) {
            return Some((p, i));
        }
        if self.groups[p].overflow() == 0 {
            return None;
        }
        let a = self.alternate(p, r.hash);
        self.probe(a, r, now_tick).map(|i| (a, i))
    }

    /// As [`FlowTable::find`] at time `now`: the group and slot of `r`,
    /// the tick of `now` and the flow's state.
    #[inline]
    fn find_at(&self, r: &FlowRef, now: u32) -> Option<(usize, usize, u32, FlowState)> {
        let now_tick = self.now_tick(now);
        let (g, i) = self.find(r, now_tick)?;
        Some((g, i, now_tick, self.groups[g].slots[i].state()))
    }

    /// Hints the line `r`'s primary group lives in into the cache, ahead of
    /// a lookup (a burst's worth of these overlaps the memory latency of a
    /// table much larger than the cache).
    #[inline]
    pub fn prefetch(&self, r: &FlowRef) {
        self.groups.prefetch(self.primary(r.hash));
    }

    /// Looks a flow up without changing anything.
    pub fn get(&self, flow: impl Into<FlowRef>, now: u32) -> Option<FlowState> {
        let r = flow.into();
        self.find(&r, self.now_tick(now))
            .map(|(g, i)| self.groups[g].slots[i].state())
    }

    /// Records a segment from the wire of a known flow with TCP `flags`,
    /// and returns its state before. Nothing from the wire ends a flow: a
    /// RST, FIN or SYN makes an established flow [`FlowState::Contested`]
    /// (the kernel, which checks sequence numbers, decides; see
    /// [`FlowTable::from_kernel`]); any other segment makes a half-open
    /// flow established. Only the kernel's answer settles a contested flow:
    /// a segment from the wire is as easily forged as the claim, and after
    /// a genuine RST the client's next segments may be a new connection on
    /// the same port, which another node holds. A provisional flow changes
    /// only on the kernel's answer, and the wire does not keep it alive.
    /// Writes the slot only when its state or tick changes. Unknown flows
    /// are left alone.
    #[inline]
    pub fn touch(&mut self, flow: impl Into<FlowRef>, flags: u8, now: u32) -> Touch {
        use crate::packet::tcp_flags::{FIN, RST, SYN};
        let Some((g, i, now_tick, before)) = self.find_at(&flow.into(), now) else {
            return Touch::Unknown;
        };
        let claims_end = flags & (RST | FIN | SYN) != 0;
        let after = match before {
            FlowState::Established | FlowState::Contested if claims_end => {
                if before == FlowState::Established {
                    self.stats.contested += 1;
                }
                FlowState::Contested
            }
            FlowState::HalfOpen | FlowState::Answered if !claims_end => FlowState::Established,
            FlowState::Provisional => return Touch::Known(before),
            other => other,
        };
        self.refresh(g, i, before, after, now_tick);
        Touch::Known(before)
    }

    /// Records a segment the kernel sent on a known flow with TCP `flags`,
    /// and returns its state before: the kernel's word on the flow. Its RST
    /// ends the flow (a provisional one: the kernel refused the adopted
    /// segment); its FIN closes it; its SYN (a SYN-ACK) opens the tuple
    /// anew, answered ([`FlowState::Answered`]); anything else shows it
    /// holds the connection: a provisional or contested flow becomes
    /// established. Unknown flows are left alone.
    #[inline]
    pub fn from_kernel(&mut self, flow: impl Into<FlowRef>, flags: u8, now: u32) -> Touch {
        use crate::packet::tcp_flags::{FIN, RST, SYN};
        let Some((g, i, now_tick, before)) = self.find_at(&flow.into(), now) else {
            return Touch::Unknown;
        };
        if flags & RST != 0 {
            self.free_slot(g, i);
            self.stats.reset += 1;
            if before == FlowState::Provisional {
                self.stats.refused += 1;
            }
            return Touch::Known(before);
        }
        if before == FlowState::Provisional {
            self.stats.promoted += 1;
        }
        let after = if flags & FIN != 0 {
            FlowState::Closing
        } else if flags & SYN != 0 {
            FlowState::Answered
        } else {
            match before {
                FlowState::HalfOpen | FlowState::Answered | FlowState::Closing => before,
                _ => FlowState::Established,
            }
        };
        self.refresh(g, i, before, after, now_tick);
        Touch::Known(before)
    }

    /// Moves slot `i` of group `g` from `before` to `after` at `now_tick`,
    /// writing the line only when the state changes or the tick is old
    /// enough to matter (see the module documentation).
    #[inline]
    fn refresh(&mut self, g: usize, i: usize, before: FlowState, after: FlowState, now_tick: u32) {
        let slot = &mut self.groups[g].slots[i];
        let age = now_tick.wrapping_sub(slot.tick()) & self.tick_mask;
        if after != before || age > self.refresh_ticks[after as usize] {
            slot.set(after, now_tick);
        }
    }

    /// Forgets a flow if present.
    pub fn remove(&mut self, flow: impl Into<FlowRef>, now: u32) -> bool {
        let r = flow.into();
        match self.find(&r, self.now_tick(now)) {
            Some((g, i)) => {
                self.free_slot(g, i);
                true
            }
            None => false,
        }
    }

    /// Empties slot `i` of group `g`, which is in use.
    #[inline]
    fn free_slot(&mut self, g: usize, i: usize) {
        let slot = self.groups[g].slots[i];
        let p = self.primary(slot.tag);
        if p != g {
            let group = &mut self.groups[p];
            let n = group.overflow();
            if n > 0 && n < OVERFLOW_STICKY {
                group.set_overflow(n - 1);
            }
        }
        self.groups[g].slots[i].clear();
        self.live -= 1;
        let b = (slot.value & self.bucket_mask) as usize;
        self.bucket_flows[b] -= 1;
        if self.bucket_flows[b] == 0 {
            self.set_gate(b, self.gates[b] & !BucketGate::HAS_FLOWS);
            if let Some(p) = &self.presence {
                p.set(b, false);
            }
        }
    }

    /// Fills free slot `i` of group `g`.
    #[inline]
    fn place(&mut self, g: usize, i: usize, r: &FlowRef, state: FlowState, tick: u32) {
        let p = self.primary(r.hash);
        if p != g {
            let group = &mut self.groups[p];
            let n = group.overflow();
            if n < OVERFLOW_STICKY {
                group.set_overflow(n + 1);
            }
        }
        let slot = &mut self.groups[g].slots[i];
        slot.tag = r.hash;
        slot.value = r.value;
        slot.set(state, tick);
        self.live += 1;
        let b = (r.value & self.bucket_mask) as usize;
        self.bucket_flows[b] += 1;
        if self.bucket_flows[b] == 1 {
            self.set_gate(b, self.gates[b] | BucketGate::HAS_FLOWS);
            if let Some(p) = &self.presence {
                p.set(b, true);
            }
        }
    }

    /// The first free or expired slot of group `g`, freed.
    #[inline]
    fn room_in(&mut self, g: usize, now_tick: u32) -> Option<usize> {
        let group = &self.groups[g];
        let i = (0..WAYS).find(|&i| {
            let s = &group.slots[i];
            s.state_bits() == 0 || self.expired(s, now_tick)
        })?;
        if group.slots[i].state_bits() != 0 {
            self.free_slot(g, i);
        }
        Some(i)
    }

    /// Makes room in group `g` by moving one resident to its other group,
    /// if that has room.
    fn move_out(&mut self, g: usize, now_tick: u32) -> Option<usize> {
        for i in 0..WAYS {
            let slot = self.groups[g].slots[i];
            let o = self.other(g, slot.tag);
            if o == g {
                continue;
            }
            if let Some(j) = self.room_in(o, now_tick) {
                let r = FlowRef {
                    hash: slot.tag,
                    value: slot.value,
                };
                self.free_slot(g, i);
                self.place(o, j, &r, slot.state(), slot.tick());
                self.stats.moved += 1;
                return Some(i);
            }
        }
        None
    }

    /// Records a new flow in `state`. Returns false (and counts it) when
    /// both of the flow's groups hold only live established flows.
    #[inline]
    pub fn insert(&mut self, flow: impl Into<FlowRef>, state: FlowState, now: u32) -> bool {
        let r = flow.into();
        let now_tick = self.now_tick(now);
        if let Some((g, i)) = self.find(&r, now_tick) {
            self.groups[g].slots[i].set(state, now_tick);
            return true;
        }
        let p = self.primary(r.hash);
        let a = self.alternate(p, r.hash);
        let spot = match self.room_in(p, now_tick) {
            Some(i) => Some((p, i)),
            None => self.room_in(a, now_tick).map(|i| (a, i)),
        };
        // Both full: move a resident to its other group, unless the table
        // is nearly full (then every insert would read eight more lines in
        // vain: a SYN flood must stay cheap).
        let spot = spot.or_else(|| {
            if self.live >= self.capacity() - self.capacity() / 16 {
                return None;
            }
            self.move_out(p, now_tick)
                .map(|i| (p, i))
                .or_else(|| self.move_out(a, now_tick).map(|i| (a, i)))
        });
        let (g, i) = match spot {
            Some(spot) => spot,
            None => {
                // The oldest provisional entry of both groups, else the
                // oldest half-open, closing or contested one past its
                // grace; never an established one. A provisional flow
                // takes only a provisional one's place.
                let least = if state == FlowState::Provisional { 2 } else { 1 };
                let mut victim: Option<(usize, usize, (u8, u32))> = None;
                for g in [p, a] {
                    for i in 0..WAYS {
                        let s = &self.groups[g].slots[i];
                        let age = now_tick.wrapping_sub(s.tick()) & self.tick_mask;
                        let rank = self.eviction_rank(s.state(), age);
                        if rank >= least && victim.is_none_or(|(_, _, v)| (rank, age) > v) {
                            victim = Some((g, i, (rank, age)));
                        }
                    }
                }
                let Some((g, i, _)) = victim else {
                    self.stats.insert_failed += 1;
                    return false;
                };
                self.free_slot(g, i);
                self.stats.evicted += 1;
                (g, i)
            }
        };
        self.place(g, i, &r, state, now_tick);
        self.stats.inserted += 1;
        true
    }

    /// How readily an entry in `state`, `age` ticks after its last
    /// packet, gives its slot to a new flow: 2 first (provisional), then 1
    /// (half-open, closing, contested past its grace), 0 never.
    #[inline]
    fn eviction_rank(&self, state: FlowState, age: u32) -> u8 {
        match state {
            FlowState::Provisional => 2,
            FlowState::HalfOpen | FlowState::Answered | FlowState::Closing => 1,
            FlowState::Contested if age > self.grace_ticks => 1,
            _ => 0,
        }
    }

    /// Frees the expired entries of the next `groups` groups. Returns how
    /// many it freed.
    pub fn sweep(&mut self, now: u32, groups: usize) -> usize {
        let now_tick = self.now_tick(now);
        let mut freed = 0;
        for _ in 0..groups.min(self.groups.len()) {
            let g = self.sweep_cursor;
            self.sweep_cursor = (g + 1) & self.group_mask;
            for i in 0..WAYS {
                let s = &self.groups[g].slots[i];
                if s.state_bits() != 0 && self.expired(s, now_tick) {
                    self.free_slot(g, i);
                    freed += 1;
                }
            }
        }
        self.stats.expired += freed as u64;
        freed
    }

    /// Counts live (unexpired) flows by state; walks the whole table, so it
    /// is for the control core and tests, not the packet path.
    pub fn census(&self, now: u32) -> [usize; FlowState::ALL.len()] {
        let now_tick = self.now_tick(now);
        let mut counts = [0usize; FlowState::ALL.len()];
        for group in self.groups.iter() {
            for s in group.slots.iter() {
                if s.state_bits() != 0 && !self.expired(s, now_tick) {
                    counts[s.state() as usize] += 1;
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Bucket;
    use crate::packet::tcp_flags::{ACK, FIN, RST, SYN};

    fn key(n: u32) -> FlowKey {
        let b = n.to_be_bytes();
        FlowKey::new(
            Addr::V4([10, b[1], b[2], b[3]]),
            (n >> 8) as u16,
            Addr::V4([192, 0, 2, 100]),
            80,
        )
    }

    fn timeouts() -> FlowTimeouts {
        FlowTimeouts {
            half_open_ms: 100,
            established_ms: 1_000,
            closing_ms: 50,
            provisional_ms: 80,
            grace_ms: 20,
        }
    }

    #[test]
    fn slots_take_sixteen_bytes_and_groups_one_line() {
        assert_eq!(FlowTable::bytes_per_slot(), 16);
        assert_eq!(core::mem::align_of::<Group>(), 64);
        let t = FlowTable::new(1 << 20, FlowTimeouts::default());
        assert_eq!(t.memory_bytes(), 16 << 20);
        assert_eq!(
            t.tick_ms(),
            128,
            "a sixteenth of 3 s (provisional), rounded down to a power of two"
        );
    }

    #[test]
    fn states_follow_tcp_flags() {
        let mut t = FlowTable::new(64, timeouts());
        assert_eq!(t.tick_ms(), 2);
        let k = key(1);
        assert_eq!(t.touch(k, ACK, 0), Touch::Unknown);
        assert_eq!(t.from_kernel(k, ACK, 0), Touch::Unknown);
        assert!(t.insert(k, FlowState::HalfOpen, 0));
        assert_eq!(t.touch(k, SYN, 5), Touch::Known(FlowState::HalfOpen));
        assert_eq!(t.get(k, 5), Some(FlowState::HalfOpen), "a retransmitted SYN");
        assert_eq!(t.touch(k, ACK, 10), Touch::Known(FlowState::HalfOpen));
        assert_eq!(t.get(k, 10), Some(FlowState::Established));
        // The client's FIN is a claim, not the end: the kernel answers it.
        assert_eq!(t.touch(k, FIN | ACK, 20), Touch::Known(FlowState::Established));
        assert_eq!(t.get(k, 20), Some(FlowState::Contested));
        assert_eq!(t.from_kernel(k, ACK, 21), Touch::Known(FlowState::Contested));
        assert_eq!(t.get(k, 21), Some(FlowState::Established), "the kernel answered");
        // The kernel's FIN closes the flow; the wire's ACK after it stays
        // closing.
        assert_eq!(t.from_kernel(k, FIN | ACK, 25), Touch::Known(FlowState::Established));
        assert_eq!(t.get(k, 25), Some(FlowState::Closing));
        t.touch(k, ACK, 30);
        assert_eq!(t.get(k, 30), Some(FlowState::Closing));
        // Never before its timeout, at most two ticks after it.
        assert_eq!(t.get(k, 30 + 49), Some(FlowState::Closing));
        assert_eq!(t.get(k, 30 + 50 + 2 * 2), None, "closing entries expire fast");
        // A RST from the wire ends nothing; the kernel's does.
        assert!(t.insert(k, FlowState::Established, 200));
        assert_eq!(t.touch(k, RST, 201), Touch::Known(FlowState::Established));
        assert_eq!(t.get(k, 201), Some(FlowState::Contested));
        // Only the kernel's answer settles it.
        assert_eq!(t.touch(k, ACK, 202), Touch::Known(FlowState::Contested));
        assert_eq!(t.get(k, 202), Some(FlowState::Contested));
        assert_eq!(t.from_kernel(k, ACK, 202), Touch::Known(FlowState::Contested));
        assert_eq!(t.get(k, 202), Some(FlowState::Established), "the kernel goes on");
        assert_eq!(t.touch(k, SYN, 203), Touch::Known(FlowState::Established));
        assert_eq!(t.get(k, 203), Some(FlowState::Contested));
        assert_eq!(t.stats().contested, 3);
        assert_eq!(t.stats().reset, 0);
        // Silence after a wire RST leaves the flow for its idle timeout.
        assert_eq!(t.get(k, 203 + 999), Some(FlowState::Contested));
        assert_eq!(t.from_kernel(k, RST | ACK, 204), Touch::Known(FlowState::Contested));
        assert_eq!(t.get(k, 204), None);
        assert_eq!(t.len(), 0);
        assert_eq!(t.stats().reset, 1);
        // RST or FIN from the wire on a half-open flow changes nothing.
        assert!(t.insert(k, FlowState::HalfOpen, 300));
        assert_eq!(t.touch(k, RST, 301), Touch::Known(FlowState::HalfOpen));
        assert_eq!(t.touch(k, FIN, 302), Touch::Known(FlowState::HalfOpen));
        assert_eq!(t.get(k, 302), Some(FlowState::HalfOpen));
        // The kernel's SYN-ACK makes it answered (still half-open); its ACK
        // (a reused tuple the kernel opened anew) keeps it so.
        assert_eq!(t.from_kernel(k, SYN | ACK, 303), Touch::Known(FlowState::HalfOpen));
        assert_eq!(t.get(k, 303), Some(FlowState::Answered));
        assert_eq!(t.from_kernel(k, ACK, 304), Touch::Known(FlowState::Answered));
        assert_eq!(t.get(k, 304), Some(FlowState::Answered));
        // The client's ACK establishes it.
        assert_eq!(t.touch(k, ACK, 305), Touch::Known(FlowState::Answered));
        assert_eq!(t.get(k, 305), Some(FlowState::Established));
    }

    #[test]
    fn provisional_flows_wait_for_the_kernels_word() {
        let mut t = FlowTable::new(64, timeouts());
        let (a, b, c) = (key(1), key(2), key(3));
        for k in [a, b, c] {
            assert!(t.insert(k, FlowState::Provisional, 0));
        }
        // The wire neither promotes nor ends nor keeps them alive.
        for k in [a, b, c] {
            assert_eq!(t.touch(k, ACK, 40), Touch::Known(FlowState::Provisional));
            assert_eq!(t.touch(k, RST, 41), Touch::Known(FlowState::Provisional));
            assert_eq!(t.touch(k, FIN | ACK, 42), Touch::Known(FlowState::Provisional));
            assert_eq!(t.get(k, 42), Some(FlowState::Provisional));
        }
        // The kernel answers a: established. It resets b: gone.
        assert_eq!(t.from_kernel(a, ACK, 50), Touch::Known(FlowState::Provisional));
        assert_eq!(t.get(a, 50), Some(FlowState::Established));
        assert_eq!(t.from_kernel(b, RST, 50), Touch::Known(FlowState::Provisional));
        assert_eq!(t.get(b, 50), None);
        let s = t.stats();
        assert_eq!((s.promoted, s.refused, s.reset), (1, 1, 1));
        // c, never answered, expires with the provisional timeout counted
        // from its adoption (80 ms, plus a 32nd and two ticks at most),
        // though the wire sent more.
        assert_eq!(t.get(c, 80), Some(FlowState::Provisional));
        assert_eq!(t.get(c, 80 + 80 / 32 + 2 * 2 + 1), None);
        assert_eq!(t.get(a, 80 + 80 / 32 + 2 * 2 + 1), Some(FlowState::Established));
        t.sweep(200, usize::MAX);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn entries_expire_after_their_timeout_never_before() {
        // Random packet times, then check times around each timeout after
        // the last packet.
        let mut seed = 0x5eed_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for shortest in [16u32, 50, 100, 5_000] {
            for to in [
                FlowTimeouts {
                    half_open_ms: shortest,
                    established_ms: shortest * 7,
                    closing_ms: shortest * 2,
                    provisional_ms: shortest * 3,
                    grace_ms: shortest,
                },
                FlowTimeouts {
                    half_open_ms: shortest,
                    established_ms: shortest * 60,
                    closing_ms: shortest * 2,
                    provisional_ms: shortest,
                    grace_ms: shortest / 2,
                },
            ] {
                let mut t = FlowTable::new(1024, to);
                for n in 0..500u32 {
                    let state = [
                        FlowState::HalfOpen,
                        FlowState::Established,
                        FlowState::Closing,
                        FlowState::Contested,
                        FlowState::Provisional,
                    ][n as usize % 5];
                    // Flags that keep the state (a provisional flow is
                    // not kept alive by the wire: not touched here).
                    let flags = [SYN, ACK, FIN | ACK, RST, ACK][n as usize % 5];
                    let touches = if state == FlowState::Provisional { 0 } else { next() % 6 };
                    let limit = to.of(state);
                    let mut last = next() as u32;
                    assert!(t.insert(key(n), state, last));
                    for _ in 0..touches {
                        last = last.wrapping_add(next() as u32 % limit);
                        assert_eq!(t.touch(key(n), flags, last), Touch::Known(state));
                    }
                    let slack = limit / 32 + 2 * t.tick_ms();
                    let late = next() as u32 % (limit + 2 * slack);
                    let found = t.get(key(n), last.wrapping_add(late)).is_some();
                    if late <= limit {
                        assert!(found, "{state:?} gone {late} ms after, timeout {limit}");
                    }
                    if late > limit + slack {
                        assert!(!found, "{state:?} kept {late} ms after, timeout {limit}");
                    }
                    t.remove(key(n), last);
                }
            }
        }
    }

    #[test]
    fn half_open_expire_fast_and_established_stay() {
        let mut t = FlowTable::new(1024, timeouts());
        for n in 0..100 {
            t.insert(
                key(n),
                if n % 2 == 0 {
                    FlowState::HalfOpen
                } else {
                    FlowState::Established
                },
                0,
            );
        }
        assert_eq!(t.len(), 100);
        let freed = t.sweep(150, usize::MAX);
        assert_eq!(freed, 50);
        assert_eq!(t.len(), 50);
        assert_eq!(t.census(150), [0, 0, 50, 0, 0, 0, 0]);
        t.sweep(1_000 + 1_000 / 32 + 2 * 2, usize::MAX);
        assert!(t.is_empty());
        assert_eq!(t.stats().expired, 100);
    }

    #[test]
    fn pressure_evicts_half_open_never_established() {
        // Two groups: every key may live in either, eight slots in all.
        let mut t = FlowTable::new(8, timeouts());
        assert_eq!(t.capacity(), 8);
        for n in 0..6 {
            assert!(t.insert(key(n), FlowState::Established, 0));
        }
        assert!(t.insert(key(100), FlowState::HalfOpen, 1));
        assert!(t.insert(key(101), FlowState::HalfOpen, 2));
        // Full: the next insert evicts the oldest half-open (key 100).
        assert!(t.insert(key(102), FlowState::HalfOpen, 3));
        assert_eq!(t.get(key(100), 3), None);
        assert_eq!(t.get(key(101), 3), Some(FlowState::HalfOpen));
        assert_eq!(t.stats().evicted, 1);
        // Fill with established flows only: inserts then fail.
        assert!(t.insert(key(103), FlowState::Established, 4));
        assert!(t.insert(key(104), FlowState::Established, 5));
        assert!(!t.insert(key(105), FlowState::HalfOpen, 6));
        assert_eq!(t.stats().insert_failed, 1);
        for n in (0..6).chain(103..105) {
            assert_eq!(t.get(key(n), 6), Some(FlowState::Established));
        }
        assert_eq!(t.len(), 8);
    }

    #[test]
    fn provisional_entries_go_first_and_take_only_each_others_place() {
        // Two groups, eight slots: every key may live in either.
        let mut t = FlowTable::new(8, timeouts());
        for n in 0..4 {
            assert!(t.insert(key(n), FlowState::Established, 0));
        }
        assert!(t.insert(key(10), FlowState::HalfOpen, 0));
        assert!(t.insert(key(11), FlowState::Contested, 0));
        assert!(t.insert(key(20), FlowState::Provisional, 5));
        assert!(t.insert(key(21), FlowState::Provisional, 6));
        // Full. A provisional flow takes the oldest provisional one's
        // place, never another's, however old.
        assert!(t.insert(key(22), FlowState::Provisional, 10));
        assert_eq!(t.get(key(20), 10), None);
        assert_eq!(t.get(key(21), 10), Some(FlowState::Provisional));
        assert_eq!(t.get(key(10), 10), Some(FlowState::HalfOpen));
        // A SYN takes a provisional one's place before the older half-open
        // one's.
        assert!(t.insert(key(30), FlowState::HalfOpen, 12));
        assert!(t.insert(key(31), FlowState::HalfOpen, 13));
        assert_eq!(t.get(key(21), 13), None);
        assert_eq!(t.get(key(22), 13), None);
        assert_eq!(t.get(key(10), 13), Some(FlowState::HalfOpen));
        // No provisional entry left: a provisional insert fails, the rest
        // stays.
        assert!(!t.insert(key(23), FlowState::Provisional, 14));
        assert_eq!(t.stats().insert_failed, 1);
        // Within its grace, the contested flow is kept; the oldest
        // half-open one goes.
        assert!(t.insert(key(32), FlowState::HalfOpen, 15));
        assert_eq!(t.get(key(10), 15), None);
        assert_eq!(t.get(key(11), 15), Some(FlowState::Contested));
        // Past its grace (20 ms) it is the oldest that may go.
        t.touch(key(30), SYN, 60);
        t.touch(key(31), SYN, 60);
        t.touch(key(32), SYN, 60);
        assert!(t.insert(key(33), FlowState::HalfOpen, 60));
        assert_eq!(t.get(key(11), 60), None);
        for n in 0..4 {
            assert_eq!(t.get(key(n), 60), Some(FlowState::Established));
        }
        assert_eq!(t.stats().evicted, 5);
    }

    #[test]
    fn keys_keep_their_layout_and_compare_every_field() {
        let v4 = FlowKey::new(Addr::V4([198, 51, 100, 7]), 1234, Addr::V4([192, 0, 2, 100]), 80);
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..16].copy_from_slice(&[198, 51, 100, 7]);
        let mut vip = [0u8; 16];
        vip[10] = 0xff;
        vip[11] = 0xff;
        vip[12..16].copy_from_slice(&[192, 0, 2, 100]);
        // IPv4 is stored IPv4-mapped: the same key as the mapped IPv6 form.
        assert_eq!(v4, FlowKey::new(Addr::V6(mapped), 1234, Addr::V6(vip), 80));
        assert_eq!(
            v4.hash(),
            FlowKey::new(Addr::V6(mapped), 1234, Addr::V6(vip), 80).hash()
        );
        assert_ne!(
            v4,
            FlowKey::new(Addr::V4([198, 51, 100, 7]), 1235, Addr::V4([192, 0, 2, 100]), 80)
        );
        assert_ne!(
            v4,
            FlowKey::new(Addr::V4([198, 51, 100, 7]), 1234, Addr::V4([192, 0, 2, 100]), 81)
        );
        assert_ne!(
            v4,
            FlowKey::new(Addr::V4([198, 51, 100, 8]), 1234, Addr::V4([192, 0, 2, 100]), 80)
        );
        for i in 0..16 {
            let mut a = mapped;
            a[i] ^= 0x40;
            assert_ne!(v4, FlowKey::new(Addr::V6(a), 1234, Addr::V6(vip), 80), "byte {i}");
            let mut b = vip;
            b[i] ^= 0x40;
            assert_ne!(v4, FlowKey::new(Addr::V6(mapped), 1234, Addr::V6(b), 80), "byte {i}");
        }
    }

    #[test]
    fn a_keys_value_is_the_packets_software_value() {
        let mut seed = 0x1357_9bdf_u64;
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let b = seed.to_be_bytes();
            let (p, q) = ((seed >> 7) as u16, (seed >> 29) as u16);
            let (c, v) = (Addr::V4([b[0], b[1], b[2], b[3]]), Addr::V4([b[4], b[5], b[6], b[7]]));
            assert_eq!(
                FlowKey::new(c, p, v, q).connection_value(),
                symmetric::tuple(c, v, p, q)
            );
            let mut c6 = [0u8; 16];
            c6[..8].copy_from_slice(&b);
            c6[8..].copy_from_slice(&seed.rotate_left(17).to_be_bytes());
            let (c, v) = (Addr::V6(c6), Addr::V6([b[3]; 16]));
            assert_eq!(
                FlowKey::new(c, p, v, q).connection_value(),
                symmetric::tuple(c, v, p, q)
            );
        }
    }

    #[test]
    fn the_hash_spreads_sequential_clients_over_groups() {
        // Sequential IPv6 clients and ports, as a load generator makes them,
        // spread like random keys.
        let t = FlowTable::new(4096 * WAYS, timeouts());
        let mut per_group = vec![0u32; 4096];
        for n in 0..4096 * 4u64 {
            let mut a = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            a[8..16].copy_from_slice(&n.to_be_bytes());
            let k = FlowKey::new(Addr::V6(a), 1024 + (n % 7) as u16, Addr::V4([192, 0, 2, 100]), 80);
            per_group[t.primary(k.hash())] += 1;
        }
        // Four per group on average: a random hash leaves e^-4 (1.8%) of
        // the groups empty and fills none with more than about 13.
        let empty = per_group.iter().filter(|&&c| c == 0).count();
        assert!(empty < 150, "{empty} empty groups");
        assert!(per_group.iter().all(|&c| c <= 16), "max {:?}", per_group.iter().max());
    }

    #[test]
    fn clock_wrap_does_not_expire_fresh_entries() {
        for to in [timeouts(), FlowTimeouts::default()] {
            let mut t = FlowTable::new(64, to);
            let now = u32::MAX - 10;
            let limit = to.established_ms;
            t.insert(key(7), FlowState::Established, now);
            assert_eq!(t.get(key(7), now.wrapping_add(limit / 2)), Some(FlowState::Established));
            assert_eq!(t.get(key(7), now.wrapping_add(limit)), Some(FlowState::Established));
            let slack = limit / 32 + 2 * t.tick_ms();
            assert_eq!(t.get(key(7), now.wrapping_add(limit + slack + 1)), None);
        }
    }

    #[test]
    fn fills_to_most_of_its_capacity_under_random_keys() {
        let mut t = FlowTable::new(1 << 14, timeouts());
        let cap = t.capacity();
        let mut ok = 0;
        let mut first_failure = None;
        for n in 0..cap as u32 {
            if t.insert(key(n.wrapping_mul(2654435761)), FlowState::Established, 0) {
                ok += 1;
            } else if first_failure.is_none() {
                first_failure = Some(n as usize);
            }
        }
        // Two four-slot groups per flow, and one move, hold over 90% of
        // the slots; no insert fails before 60%.
        assert!(ok * 100 / cap >= 90, "only {ok} of {cap}");
        assert!(
            first_failure.unwrap_or(cap) * 100 / cap >= 60,
            "first failure at {first_failure:?}"
        );
        assert_eq!(t.len(), ok);
        assert_eq!(t.census(0)[FlowState::Established as usize], ok);
    }

    #[test]
    fn no_insert_fails_at_half_load() {
        for (shift, seed) in [(10u32, 1u32), (14, 2), (18, 3)] {
            let mut t = FlowTable::new(1 << shift, FlowTimeouts::default());
            let half = t.capacity() / 2;
            for n in 0..half as u32 {
                assert!(t.insert(key(n.wrapping_mul(2654435761) ^ seed), FlowState::Established, 0));
            }
            assert_eq!(t.stats().insert_failed, 0);
            assert_eq!(t.len(), half);
        }
    }

    #[test]
    fn most_flows_live_in_their_first_group() {
        // At the bench's load (1.25 slots per flow, rounded up to a power
        // of two: about half full), lookups of most flows read one line.
        let mut t = FlowTable::new(1 << 16, FlowTimeouts::default());
        let n = t.capacity() / 2;
        for i in 0..n as u32 {
            t.insert(key(i.wrapping_mul(2654435761)), FlowState::Established, 0);
        }
        let at_home = (0..n as u32)
            .filter(|&i| {
                let r = FlowRef::from(key(i.wrapping_mul(2654435761)));
                t.probe(t.primary(r.hash), &r, 0).is_some()
            })
            .count();
        assert!(at_home * 100 / n >= 85, "{at_home} of {n} at home");
    }

    #[test]
    fn no_false_matches_among_many_keys() {
        let mut t = FlowTable::new(1 << 18, FlowTimeouts::default());
        for n in 0..100_000u32 {
            assert!(t.insert(key(n), FlowState::Established, 0));
        }
        for n in 100_000..1_100_000u32 {
            assert_eq!(t.get(key(n), 0), None, "key {n}");
        }
        for n in 0..100_000u32 {
            assert_eq!(t.get(key(n), 0), Some(FlowState::Established));
        }
    }

    #[test]
    fn counts_and_overflow_return_to_zero_when_flows_leave() {
        let mut t = FlowTable::new(1 << 10, timeouts());
        let n = t.capacity() * 9 / 10;
        let mut kept = Vec::new();
        for i in 0..n as u32 {
            let k = key(i.wrapping_mul(2654435761));
            if t.insert(k, FlowState::Established, 0) {
                kept.push(k);
            }
        }
        assert!(t.stats().moved > 0, "at 90% load some flows moved");
        assert!(t.groups.iter().any(|g| g.overflow() > 0));
        // Remove half by the kernel's RST, let the rest expire.
        for k in kept.iter().step_by(2) {
            assert_eq!(t.from_kernel(k, RST, 1), Touch::Known(FlowState::Established));
        }
        for k in kept.iter().skip(1).step_by(2) {
            assert_eq!(t.get(k, 1), Some(FlowState::Established), "moved flows are still found");
        }
        // Past the timeout and its slack (a 32nd, two ticks).
        t.sweep(1_000 + 1_000 / 32 + 2 * 2 + 1, usize::MAX);
        assert!(t.is_empty());
        assert!(t.groups.iter().all(|g| g.overflow() == 0));
        assert!(t.bucket_flows.iter().all(|&c| c == 0));
        assert!(t.gates.iter().all(|&g| g & BucketGate::HAS_FLOWS == 0));
        assert!(t.open.iter().all(|&w| w == 0), "every bucket foreign and empty");
    }

    #[test]
    fn gates_fold_the_view_with_the_flows_of_each_bucket() {
        let mut t = FlowTable::new(256, timeouts());
        let mut view = OwnershipView::new(64, 1);
        view.set(Bucket(1), BucketState::Claimed);
        view.set(Bucket(2), BucketState::Settled);
        t.follow(&view);
        let k = key(5);
        let value = k.connection_value();
        let b = value.bucket(63);
        assert_eq!(t.gate(value), BucketGate::new(view.state(b), false));
        assert!(t.insert(k, FlowState::Established, 0));
        assert_eq!(t.flows_in_bucket(value), 1);
        assert!(t.gate(value).has_flows());
        assert_eq!(t.gate(value).state(), view.state(b));
        for v in 0..64 {
            let v = ConnectionValue(v);
            assert_eq!(t.is_open(v), !t.gate(v).is_closed(), "bucket {v:?}");
        }
        // A new view keeps the flows' marks.
        let mut next = OwnershipView::new(64, 2);
        next.set(b, BucketState::Settled);
        t.follow(&next);
        assert_eq!(t.gate(value), BucketGate::new(BucketState::Settled, true));
        // Another bucket count recounts.
        let wide = OwnershipView::new(1024, 3);
        t.follow(&wide);
        assert_eq!(t.gate(value), BucketGate::new(BucketState::Foreign, true));
        assert_eq!(t.flows_in_bucket(value), 1);
        assert!(!t.gate(ConnectionValue(value.0 ^ 1)).has_flows());
        assert!(t.gate(ConnectionValue(value.0 ^ 1)).is_closed());
        assert!(t.remove(k, 1));
        assert!(t.gate(value).is_closed());
        assert!(!t.is_open(value));
        for v in 0..1024 {
            let v = ConnectionValue(v);
            assert_eq!(t.is_open(v), !t.gate(v).is_closed(), "bucket {v:?}");
        }
        // The RSS value a NIC gave is what counts, not the software one.
        let r = FlowRef::new(&k, ConnectionValue(7));
        assert!(t.insert(r, FlowState::HalfOpen, 2));
        assert!(t.gate(ConnectionValue(7)).has_flows());
        assert!(!t.gate(value).has_flows());
        assert_eq!(t.get(r, 2), Some(FlowState::HalfOpen));
        assert_eq!(t.get(k, 2), None, "another connection value is another flow");
    }

    #[test]
    fn the_bitmap_by_folded_word_agrees_with_the_buckets_at_every_bucket_count() {
        // Inserts and removals open and close buckets one by one (each
        // flips its folded words); views refold everything. After each, for
        // every folded word, its bit is the open bit of its value's bucket.
        for buckets in [16u32, 64, 65536, 1 << 18] {
            let mut t = FlowTable::new(256, timeouts());
            let mut view = OwnershipView::new(buckets, 1);
            for b in (0..buckets).step_by(7) {
                view.set(Bucket(b), BucketState::Settled);
            }
            t.follow(&view);
            let check = |t: &FlowTable, what: &str| {
                for f in 0..=u16::MAX {
                    let v = symmetric::of_folded(f);
                    assert_eq!(
                        t.is_open_folded(f),
                        t.is_open(v),
                        "{buckets} buckets, {what}, folded {f}"
                    );
                }
            };
            check(&t, "view");
            let keys: Vec<FlowKey> = (0..40).map(key).collect();
            for (i, k) in keys.iter().enumerate() {
                assert!(t.insert(*k, FlowState::Established, 0));
                if i % 8 == 0 {
                    check(&t, "inserts");
                }
            }
            check(&t, "inserts");
            for k in keys.iter().step_by(2) {
                assert!(t.remove(*k, 1));
            }
            check(&t, "removals");
            let mut next = OwnershipView::new(buckets, 2);
            next.set(Bucket(3), BucketState::Claimed);
            t.follow(&next);
            check(&t, "a new view");
        }
    }

    #[test]
    fn presence_follows_the_first_and_last_flow_of_a_bucket() {
        let mut t = FlowTable::new(64, timeouts());
        let presence = std::sync::Arc::new(crate::presence::FlowPresence::new(DEFAULT_BUCKETS as u32));
        let a = key(7);
        t.insert(a, FlowState::Established, 0);
        t.share_presence(std::sync::Arc::clone(&presence));
        let b = (FlowRef::from(&a).value().0 as usize) & (DEFAULT_BUCKETS - 1);
        let has = |p: &crate::presence::FlowPresence| p.snapshot()[b / 64] & (1 << (b % 64)) != 0;
        assert!(has(&presence), "flows from before sharing are told");
        assert_eq!(presence.snapshot().iter().map(|w| w.count_ones()).sum::<u32>(), 1);
        assert!(t.remove(a, 1));
        assert!(!has(&presence), "the last flow gone");
        t.insert(a, FlowState::HalfOpen, 1);
        assert!(has(&presence), "the first flow again");
    }
}
