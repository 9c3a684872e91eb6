//! The per-worker flow table: which connections this node has accepted.
//!
//! Bounded and allocated once. Slots are grouped by eight; a flow lives in
//! the group its key hashes to. Entries expire lazily (an expired entry is a
//! free slot) and a sweeper walks a few groups per call to keep the live
//! count honest. Under pressure a new flow may evict the oldest half-open
//! or closing entry of its group, never an established one: when a group
//! holds eight established flows the insert fails and is counted.
//!
//! Time is a `u32` in milliseconds passed in by the caller; ages are taken
//! with wrapping arithmetic, so the clock may wrap.

use crate::packet::Addr;

/// Slots per group: one tag line and six entry lines.
const WAYS: usize = 8;

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

    /// A 64-bit hash for the table's index and tag. The connection value is
    /// not used for this: with the symmetric key it has only 16 bits of
    /// entropy. Two independent multiply-xorshift lanes over the key's
    /// 64-bit words, joined with the ports: each step is a bijection of its
    /// input, and the lanes overlap in the CPU (half the latency of one
    /// chain over nine words).
    #[inline]
    fn hash(&self) -> u64 {
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

/// The state of a tracked connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(u8)]
pub enum FlowState {
    /// Free slot.
    #[default]
    Empty = 0,
    /// A SYN was accepted; nothing else seen yet.
    HalfOpen = 1,
    /// The client sent a packet after its SYN.
    Established = 2,
    /// A FIN was seen; kept briefly for the last ACKs.
    Closing = 3,
}

/// How long each state lives without traffic, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// Half-open entries (SYN seen, nothing else).
    pub half_open_ms: u32,
    /// Established entries with no packet.
    pub established_ms: u32,
    /// Entries after a FIN.
    pub closing_ms: u32,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        FlowTimeouts {
            half_open_ms: 5_000,
            established_ms: 300_000,
            closing_ms: 10_000,
        }
    }
}

impl FlowTimeouts {
    fn of(&self, state: FlowState) -> u32 {
        match state {
            FlowState::Empty => 0,
            FlowState::HalfOpen => self.half_open_ms,
            FlowState::Established => self.established_ms,
            FlowState::Closing => self.closing_ms,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Entry {
    key: FlowKey,
    last_seen: u32,
    state: FlowState,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Group {
    /// Non-zero tag of the key in each slot, zero for a free slot.
    tags: [u32; WAYS],
    entries: [Entry; WAYS],
}

impl Default for Group {
    fn default() -> Self {
        Group {
            tags: [0; WAYS],
            entries: [Entry::default(); WAYS],
        }
    }
}

/// Counts of what the table did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// New entries.
    pub inserted: u64,
    /// Half-open or closing entries evicted to make room.
    pub evicted: u64,
    /// Inserts refused because the group held only established flows.
    pub insert_failed: u64,
    /// Entries removed by the sweeper after their timeout.
    pub expired: u64,
    /// Entries removed on RST.
    pub reset: u64,
}

/// What [`FlowTable::touch`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Touch {
    /// Not in the table (or expired).
    Unknown,
    /// Known; its state before this packet.
    Known(FlowState),
}

/// A bounded flow table. See the module documentation.
pub struct FlowTable {
    groups: Box<[Group]>,
    group_mask: usize,
    timeouts: FlowTimeouts,
    live: usize,
    sweep_cursor: usize,
    stats: FlowStats,
}

impl FlowTable {
    /// A table with room for at least `capacity` flows (rounded up to a
    /// power of two number of eight-slot groups).
    pub fn new(capacity: usize, timeouts: FlowTimeouts) -> Self {
        let groups = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        FlowTable {
            groups: vec![Group::default(); groups].into_boxed_slice(),
            group_mask: groups - 1,
            timeouts,
            live: 0,
            sweep_cursor: 0,
            stats: FlowStats::default(),
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

    /// Bytes of memory the slots take.
    pub fn memory_bytes(&self) -> usize {
        self.groups.len() * core::mem::size_of::<Group>()
    }

    #[inline]
    fn locate(&self, key: &FlowKey) -> (usize, u32) {
        let h = key.hash();
        let group = (h as usize) & self.group_mask;
        let tag = ((h >> 32) as u32) | 1;
        (group, tag)
    }

    #[inline]
    fn expired(&self, e: &Entry, now: u32) -> bool {
        now.wrapping_sub(e.last_seen) > self.timeouts.of(e.state)
    }

    #[inline]
    fn find(&self, g: usize, tag: u32, key: &FlowKey, now: u32) -> Option<usize> {
        let group = &self.groups[g];
        (0..WAYS)
            .find(|&i| group.tags[i] == tag && group.entries[i].key == *key && !self.expired(&group.entries[i], now))
    }

    /// Hints the group `key` would live in into the cache, ahead of a
    /// lookup (a burst's worth of these overlaps the memory latency of a
    /// table much larger than the cache).
    #[inline]
    pub fn prefetch(&self, key: &FlowKey) {
        let (g, _) = self.locate(key);
        crate::dpdk::prefetch(&self.groups[g]);
    }

    /// Looks `key` up without changing anything.
    pub fn get(&self, key: &FlowKey, now: u32) -> Option<FlowState> {
        let (g, tag) = self.locate(key);
        self.find(g, tag, key, now).map(|i| self.groups[g].entries[i].state)
    }

    /// Records a packet of a known flow with TCP `flags`: refreshes it and
    /// moves its state (RST removes it, FIN starts closing, anything after
    /// the SYN establishes it). Unknown flows are left alone.
    #[inline]
    pub fn touch(&mut self, key: &FlowKey, flags: u8, now: u32) -> Touch {
        use crate::packet::tcp_flags::{FIN, RST, SYN};
        let (g, tag) = self.locate(key);
        let Some(i) = self.find(g, tag, key, now) else {
            return Touch::Unknown;
        };
        let group = &mut self.groups[g];
        let before = group.entries[i].state;
        if flags & RST != 0 {
            group.tags[i] = 0;
            group.entries[i].state = FlowState::Empty;
            self.live -= 1;
            self.stats.reset += 1;
        } else {
            let entry = &mut group.entries[i];
            entry.last_seen = now;
            entry.state = if flags & FIN != 0 || before == FlowState::Closing {
                FlowState::Closing
            } else if flags & SYN != 0 {
                FlowState::HalfOpen
            } else {
                FlowState::Established
            };
        }
        Touch::Known(before)
    }

    /// Forgets `key` if present.
    pub fn remove(&mut self, key: &FlowKey, now: u32) -> bool {
        let (g, tag) = self.locate(key);
        match self.find(g, tag, key, now) {
            Some(i) => {
                self.groups[g].tags[i] = 0;
                self.groups[g].entries[i].state = FlowState::Empty;
                self.live -= 1;
                true
            }
            None => false,
        }
    }

    /// Records a new flow in `state`. Returns false (and counts it) when
    /// the flow's group holds only live established flows.
    #[inline]
    pub fn insert(&mut self, key: FlowKey, state: FlowState, now: u32) -> bool {
        let (g, tag) = self.locate(&key);
        if let Some(i) = self.find(g, tag, &key, now) {
            let e = &mut self.groups[g].entries[i];
            e.state = state;
            e.last_seen = now;
            return true;
        }
        // A free or expired slot first; else the oldest half-open or
        // closing entry; never an established one.
        let mut free = None;
        let mut victim: Option<(usize, u32)> = None;
        for i in 0..WAYS {
            let e = &self.groups[g].entries[i];
            if self.groups[g].tags[i] == 0 || self.expired(e, now) {
                free = Some(i);
                break;
            }
            if e.state != FlowState::Established {
                let age = now.wrapping_sub(e.last_seen);
                if victim.is_none_or(|(_, a)| age > a) {
                    victim = Some((i, age));
                }
            }
        }
        let slot = match (free, victim) {
            (Some(i), _) => {
                if self.groups[g].tags[i] == 0 {
                    self.live += 1;
                }
                i
            }
            (None, Some((i, _))) => {
                self.stats.evicted += 1;
                i
            }
            (None, None) => {
                self.stats.insert_failed += 1;
                return false;
            }
        };
        self.stats.inserted += 1;
        let group = &mut self.groups[g];
        group.tags[slot] = tag;
        group.entries[slot] = Entry {
            key,
            last_seen: now,
            state,
        };
        true
    }

    /// Frees the expired entries of the next `groups` groups. Returns how
    /// many it freed.
    pub fn sweep(&mut self, now: u32, groups: usize) -> usize {
        let mut freed = 0;
        for _ in 0..groups.min(self.groups.len()) {
            let g = self.sweep_cursor;
            self.sweep_cursor = (g + 1) & self.group_mask;
            for i in 0..WAYS {
                if self.groups[g].tags[i] != 0 && self.expired(&self.groups[g].entries[i], now) {
                    self.groups[g].tags[i] = 0;
                    self.groups[g].entries[i].state = FlowState::Empty;
                    freed += 1;
                }
            }
        }
        self.live -= freed;
        self.stats.expired += freed as u64;
        freed
    }

    /// Counts live (unexpired) flows by state; walks the whole table, so it
    /// is for the control core and tests, not the packet path.
    pub fn census(&self, now: u32) -> [usize; 4] {
        let mut counts = [0usize; 4];
        for group in self.groups.iter() {
            for i in 0..WAYS {
                if group.tags[i] != 0 && !self.expired(&group.entries[i], now) {
                    counts[group.entries[i].state as usize] += 1;
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        }
    }

    #[test]
    fn states_follow_tcp_flags() {
        let mut t = FlowTable::new(64, timeouts());
        let k = key(1);
        assert_eq!(t.touch(&k, ACK, 0), Touch::Unknown);
        assert!(t.insert(k, FlowState::HalfOpen, 0));
        assert_eq!(t.touch(&k, ACK, 10), Touch::Known(FlowState::HalfOpen));
        assert_eq!(t.get(&k, 10), Some(FlowState::Established));
        assert_eq!(t.touch(&k, FIN | ACK, 20), Touch::Known(FlowState::Established));
        assert_eq!(t.get(&k, 20), Some(FlowState::Closing));
        // ACK after FIN stays closing.
        t.touch(&k, ACK, 30);
        assert_eq!(t.get(&k, 30), Some(FlowState::Closing));
        assert_eq!(t.get(&k, 30 + 51), None, "closing entries expire fast");
        assert!(t.insert(k, FlowState::HalfOpen, 200));
        assert_eq!(t.touch(&k, RST, 201), Touch::Known(FlowState::HalfOpen));
        assert_eq!(t.get(&k, 201), None);
        assert_eq!(t.len(), 0);
        let _ = SYN;
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
        assert_eq!(t.census(150), [0, 0, 50, 0]);
        t.sweep(1_001, usize::MAX);
        assert!(t.is_empty());
    }

    #[test]
    fn pressure_evicts_half_open_never_established() {
        // One group only: eight slots.
        let mut t = FlowTable::new(8, timeouts());
        for n in 0..6 {
            assert!(t.insert(key(n), FlowState::Established, 0));
        }
        assert!(t.insert(key(100), FlowState::HalfOpen, 1));
        assert!(t.insert(key(101), FlowState::HalfOpen, 2));
        // Full: the next insert evicts the oldest half-open (key 100).
        assert!(t.insert(key(102), FlowState::HalfOpen, 3));
        assert_eq!(t.get(&key(100), 3), None);
        assert_eq!(t.get(&key(101), 3), Some(FlowState::HalfOpen));
        assert_eq!(t.stats().evicted, 1);
        // Fill with established flows only: inserts then fail.
        assert!(t.insert(key(103), FlowState::Established, 4));
        assert!(t.insert(key(104), FlowState::Established, 5));
        assert!(!t.insert(key(105), FlowState::HalfOpen, 6));
        assert_eq!(t.stats().insert_failed, 1);
        for n in 0..6 {
            assert_eq!(t.get(&key(n), 6), Some(FlowState::Established));
        }
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
    fn the_hash_spreads_sequential_clients_over_groups() {
        // Sequential IPv6 clients and ports, as a load generator makes them,
        // spread like random keys.
        let t = FlowTable::new(4096 * WAYS, timeouts());
        let mut per_group = vec![0u32; 4096];
        for n in 0..4096 * 4u64 {
            let mut a = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            a[8..16].copy_from_slice(&n.to_be_bytes());
            let k = FlowKey::new(Addr::V6(a), 1024 + (n % 7) as u16, Addr::V4([192, 0, 2, 100]), 80);
            per_group[t.locate(&k).0] += 1;
        }
        // Four per group on average: a random hash leaves e^-4 (1.8%) of
        // the groups empty and fills none with more than about 13.
        let empty = per_group.iter().filter(|&&c| c == 0).count();
        assert!(empty < 150, "{empty} empty groups");
        assert!(per_group.iter().all(|&c| c <= 16), "max {:?}", per_group.iter().max());
    }

    #[test]
    fn clock_wrap_does_not_expire_fresh_entries() {
        let mut t = FlowTable::new(64, timeouts());
        let now = u32::MAX - 10;
        t.insert(key(7), FlowState::Established, now);
        assert_eq!(t.get(&key(7), now.wrapping_add(500)), Some(FlowState::Established));
        assert_eq!(t.get(&key(7), now.wrapping_add(1_001)), None);
    }

    #[test]
    fn fills_to_most_of_its_capacity_under_random_keys() {
        let mut t = FlowTable::new(1 << 14, timeouts());
        let cap = t.capacity();
        let mut ok = 0;
        for n in 0..cap as u32 {
            if t.insert(key(n.wrapping_mul(2654435761)), FlowState::Established, 0) {
                ok += 1;
            }
        }
        // Eight-way groups hold well over 80% of slots before a group fills.
        assert!(ok * 100 / cap >= 80, "only {ok} of {cap}");
        assert_eq!(t.len(), ok);
    }
}
