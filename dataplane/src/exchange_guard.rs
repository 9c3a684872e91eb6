//! The addresses allowed to reach the exchange's port, changed at run time
//! (the member directory is state, agreed through the exchange's log) and
//! read by every worker per frame to that port with no lock and no
//! allocation: a sequence lock over a fixed array of atomics. The exchange
//! thread is the only writer, and writes only when the directory changes.

use crate::addr::Addr;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

/// Addresses held at most (the exchange allows 64 members per segment and
/// a coordinator).
pub const CAPACITY: usize = 128;

#[derive(Default)]
struct Slot {
    /// 4 or 6 (0: empty).
    family: AtomicU8,
    hi: AtomicU64,
    lo: AtomicU64,
}

impl Slot {
    fn set(&self, a: &Addr) {
        let (family, hi, lo) = split(a);
        self.family.store(family, Ordering::Relaxed);
        self.hi.store(hi, Ordering::Relaxed);
        self.lo.store(lo, Ordering::Relaxed);
    }

    fn is(&self, family: u8, hi: u64, lo: u64) -> bool {
        self.family.load(Ordering::Relaxed) == family
            && self.hi.load(Ordering::Relaxed) == hi
            && self.lo.load(Ordering::Relaxed) == lo
    }
}

fn split(a: &Addr) -> (u8, u64, u64) {
    match a {
        Addr::V4(b) => (4, 0, u64::from(u32::from_be_bytes(*b))),
        Addr::V6(b) => {
            let v = u128::from_be_bytes(*b);
            (6, (v >> 64) as u64, v as u64)
        }
    }
}

struct Inner {
    /// Odd while the writer changes the slots.
    seq: AtomicU64,
    len: AtomicUsize,
    /// Any source may reach the port (a member joining: it does not know
    /// the others' addresses yet).
    open: AtomicBool,
    slots: Box<[Slot]>,
}

/// A shared, changeable set of source addresses (cheap to clone: every
/// clone sees the same set).
#[derive(Clone)]
pub struct ExchangeSources(Arc<Inner>);

impl std::fmt::Debug for ExchangeSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeSources")
            .field("len", &self.0.len.load(Ordering::Relaxed))
            .field("open", &self.0.open.load(Ordering::Relaxed))
            .finish()
    }
}

impl From<Vec<Addr>> for ExchangeSources {
    fn from(members: Vec<Addr>) -> Self {
        let s = ExchangeSources::new();
        s.set(&members);
        s
    }
}

impl Default for ExchangeSources {
    fn default() -> Self {
        Self::new()
    }
}

impl ExchangeSources {
    /// An empty set (nothing reaches the port).
    pub fn new() -> Self {
        ExchangeSources(Arc::new(Inner {
            seq: AtomicU64::new(0),
            len: AtomicUsize::new(0),
            open: AtomicBool::new(false),
            slots: (0..CAPACITY).map(|_| Slot::default()).collect(),
        }))
    }

    /// Replaces the set (one writer at a time: the exchange thread). More
    /// than [`CAPACITY`] addresses: the first ones, and false.
    pub fn set(&self, members: &[Addr]) -> bool {
        let i = &self.0;
        i.seq.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        let n = members.len().min(CAPACITY);
        for (slot, a) in i.slots.iter().zip(&members[..n]) {
            slot.set(a);
        }
        i.len.store(n, Ordering::Relaxed);
        i.open.store(false, Ordering::Relaxed);
        i.seq.fetch_add(1, Ordering::Release);
        members.len() <= CAPACITY
    }

    /// Lets any source reach the port (while the member joins), or stops.
    pub fn set_open(&self, open: bool) {
        self.0.open.store(open, Ordering::Release);
    }

    /// Whether `a` may reach the port.
    #[inline]
    pub fn contains(&self, a: &Addr) -> bool {
        let i = &self.0;
        let (family, hi, lo) = split(a);
        loop {
            let before = i.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let found = i.open.load(Ordering::Acquire)
                || i.slots[..i.len.load(Ordering::Relaxed).min(CAPACITY)]
                    .iter()
                    .any(|s| s.is(family, hi, lo));
            fence(Ordering::Acquire);
            if i.seq.load(Ordering::Relaxed) == before {
                return found;
            }
        }
    }

    /// The addresses now.
    pub fn addresses(&self) -> Vec<Addr> {
        let i = &self.0;
        let n = i.len.load(Ordering::Acquire).min(CAPACITY);
        i.slots[..n]
            .iter()
            .map(|s| {
                let (hi, lo) = (s.hi.load(Ordering::Relaxed), s.lo.load(Ordering::Relaxed));
                match s.family.load(Ordering::Relaxed) {
                    4 => Addr::V4((lo as u32).to_be_bytes()),
                    _ => Addr::V6(((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_follows_changes_and_every_clone_sees_them() {
        let a = Addr::V4([192, 0, 2, 21]);
        let b = Addr::V6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x22]);
        let c = Addr::V4([192, 0, 2, 23]);
        let s = ExchangeSources::from(vec![a, b]);
        let worker = s.clone();
        assert!(worker.contains(&a) && worker.contains(&b) && !worker.contains(&c));
        assert!(!worker.contains(&Addr::V6([0; 16])));
        s.set(&[c]);
        assert!(!worker.contains(&a) && worker.contains(&c));
        assert_eq!(worker.addresses(), vec![c]);
        s.set_open(true);
        assert!(worker.contains(&a), "open while joining");
        s.set(&[a]);
        assert!(!worker.contains(&c), "a directory closes it again");
        let many: Vec<Addr> = (0..200u32).map(|k| Addr::V4(k.to_be_bytes())).collect();
        assert!(!s.set(&many));
        assert!(worker.contains(&many[CAPACITY - 1]) && !worker.contains(&many[CAPACITY]));
    }

    #[test]
    fn readers_see_a_whole_set_while_it_changes() {
        let s = ExchangeSources::from(vec![Addr::V4([10, 0, 0, 1])]);
        let r = s.clone();
        let reads = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (stop, reads) = (Arc::clone(&stop), Arc::clone(&reads));
            std::thread::spawn(move || {
                // The first address is in every set written.
                while !stop.load(Ordering::Relaxed) {
                    assert!(r.contains(&Addr::V4([10, 0, 0, 1])));
                    assert!(!r.contains(&Addr::V4([10, 0, 0, 2])));
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let mut k = 0u32;
        while k < 20_000 || reads.load(Ordering::Relaxed) < 10_000 {
            let mut all = vec![Addr::V4([10, 0, 0, 1])];
            all.extend((0..(k % 7)).map(|j| Addr::V4((0x0b00_0000 + k * 8 + j).to_be_bytes())));
            s.set(&all);
            k += 1;
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
    }
}
