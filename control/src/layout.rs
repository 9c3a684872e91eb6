//! Bucket tables: which member owns each bucket, computed the same way on
//! every node from the member list and the members' weights.
//!
//! Two layouts:
//! - [`Layout::Ranges`]: the patent's contiguous sub-ranges, one per member
//!   in id order, sized in proportion to weight (largest remainder). Exact
//!   shares, but a weight change shifts every range after it.
//! - [`Layout::Rendezvous`]: weighted rendezvous hashing. Each bucket goes
//!   to the member with the best score `w / -ln(u)`, `u` a hash of (member,
//!   bucket). Changing one member's weight only moves buckets between that
//!   member and the others, as few as the change in its share requires (the
//!   total-variation minimum, up to sampling noise); removing a member moves
//!   only its own buckets. Shares are proportional up to that noise (about
//!   0.2 points with 65,536 buckets).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A member's identifier, unique in its cluster and segment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberId(pub u32);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A member and its weight (configured capacity times availability).
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Weighted {
    /// Who.
    pub id: MemberId,
    /// Non-negative weight; zero takes no buckets.
    pub weight: f64,
}

/// How buckets are laid out over members.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Contiguous sub-ranges in member-id order (the patent's layout).
    Ranges,
    /// Weighted rendezvous hashing: minimal movement.
    #[default]
    Rendezvous,
}

/// A pinned bucket and its members in priority order (the first with
/// weight in the table owns it).
pub type Pin = (u32, Vec<MemberId>);

/// Bucket → owner. `None` when no member has any weight.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Table {
    owners: Vec<Option<MemberId>>,
}

impl Table {
    /// Computes the table of `buckets` buckets for `members` with `layout`.
    /// Members with zero (or negative, or not finite) weight get nothing;
    /// when no member has weight, every member with an entry gets an equal
    /// share rather than the cluster refusing everything.
    pub fn build(layout: Layout, members: &[Weighted], buckets: u32) -> Table {
        let mut ms: Vec<Weighted> = members
            .iter()
            .map(|m| Weighted {
                id: m.id,
                weight: if m.weight.is_finite() && m.weight > 0.0 {
                    m.weight
                } else {
                    0.0
                },
            })
            .collect();
        ms.sort_by_key(|m| m.id);
        ms.dedup_by_key(|m| m.id);
        if ms.iter().all(|m| m.weight == 0.0) {
            for m in ms.iter_mut() {
                m.weight = 1.0;
            }
        }
        let owners = match layout {
            Layout::Ranges => ranges(&ms, buckets),
            Layout::Rendezvous => rendezvous(&ms, buckets),
        };
        Table { owners }
    }

    /// The owner of `bucket`.
    pub fn owner(&self, bucket: u32) -> Option<MemberId> {
        self.owners.get(bucket as usize).copied().flatten()
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True for a table of no buckets.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Owners in bucket order.
    pub fn owners(&self) -> &[Option<MemberId>] {
        &self.owners
    }

    /// Buckets owned by `id`.
    pub fn count(&self, id: MemberId) -> usize {
        self.owners.iter().filter(|o| **o == Some(id)).count()
    }

    /// Gives each pinned bucket to the first member of its priority list
    /// that `weighted` says has weight in the table (none: the bucket keeps
    /// the owner the layout gave it). A single-host port rule with a
    /// priority list pins the one bucket all its connections fall in.
    pub fn pin(&mut self, pins: &[Pin], weighted: impl Fn(MemberId) -> bool) {
        for (bucket, priority) in pins {
            if let (Some(owner), Some(m)) = (
                self.owners.get_mut(*bucket as usize),
                priority.iter().find(|m| weighted(**m)),
            ) {
                *owner = Some(*m);
            }
        }
    }

    /// Buckets whose owner differs between `self` and `other`.
    pub fn moved(&self, other: &Table) -> usize {
        self.owners.iter().zip(&other.owners).filter(|(a, b)| a != b).count()
    }
}

/// Largest-remainder apportionment of `buckets` over weights.
pub fn apportion(members: &[Weighted], buckets: u32) -> Vec<u32> {
    let total: f64 = members.iter().map(|m| m.weight).sum();
    if total <= 0.0 {
        return vec![0; members.len()];
    }
    let exact: Vec<f64> = members.iter().map(|m| m.weight / total * f64::from(buckets)).collect();
    let mut counts: Vec<u32> = exact.iter().map(|e| e.floor() as u32).collect();
    let given: u32 = counts.iter().sum();
    let mut order: Vec<usize> = (0..members.len()).collect();
    // Largest remainder first; ties by member id, so every node agrees.
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(members[a].id.cmp(&members[b].id))
    });
    for &i in order.iter().take((buckets - given) as usize) {
        counts[i] += 1;
    }
    counts
}

fn ranges(members: &[Weighted], buckets: u32) -> Vec<Option<MemberId>> {
    let counts = apportion(members, buckets);
    let mut owners = Vec::with_capacity(buckets as usize);
    for (m, n) in members.iter().zip(counts) {
        owners.extend(std::iter::repeat_n(Some(m.id), n as usize));
    }
    owners.resize(buckets as usize, None);
    owners
}

/// splitmix64: a fixed, portable mix so every node scores alike.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn rendezvous(members: &[Weighted], buckets: u32) -> Vec<Option<MemberId>> {
    let live: Vec<(MemberId, f64, u64)> = members
        .iter()
        .filter(|m| m.weight > 0.0)
        .map(|m| (m.id, m.weight, mix(u64::from(m.id.0) ^ 0x5359_4e53_4841_5245)))
        .collect();
    (0..buckets)
        .map(|b| {
            let mut best: Option<(MemberId, f64)> = None;
            for &(id, w, seed) in &live {
                // u in (0, 1): 53 random bits, never 0 or 1.
                let h = mix(seed ^ u64::from(b));
                let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                // Larger is better: w / -ln(u).
                let score = w / -u.ln();
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((id, score));
                }
            }
            best.map(|(id, _)| id)
        })
        .collect()
}

/// The fewest buckets any layout must move to go from the shares of `a` to
/// those of `b` (both with `buckets` buckets): half the L1 distance of the
/// exact apportionments, i.e. the total-variation distance in buckets.
pub fn minimum_moves(a: &[Weighted], b: &[Weighted], buckets: u32) -> u32 {
    use std::collections::BTreeMap;
    let mut shares: BTreeMap<MemberId, (i64, i64)> = BTreeMap::new();
    let norm = |ms: &[Weighted]| -> Vec<Weighted> {
        let mut v: Vec<Weighted> = ms.to_vec();
        v.sort_by_key(|m| m.id);
        v
    };
    let (a, b) = (norm(a), norm(b));
    for (m, c) in a.iter().zip(apportion(&a, buckets)) {
        shares.entry(m.id).or_default().0 = i64::from(c);
    }
    for (m, c) in b.iter().zip(apportion(&b, buckets)) {
        shares.entry(m.id).or_default().1 = i64::from(c);
    }
    let l1: i64 = shares.values().map(|(x, y)| (x - y).abs()).sum();
    (l1 / 2) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(list: &[(u32, f64)]) -> Vec<Weighted> {
        list.iter()
            .map(|&(id, weight)| Weighted {
                id: MemberId(id),
                weight,
            })
            .collect()
    }

    /// A small deterministic PRNG for property tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = mix(self.0);
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// Members 1 to n, n from 2 to `max`, each weighing `min` plus
        /// less than `spread`.
        fn members(&mut self, max: u64, min: f64, spread: u64) -> Vec<Weighted> {
            let n = 2 + self.below(max - 1) as u32;
            (0..n)
                .map(|i| Weighted {
                    id: MemberId(i + 1),
                    weight: min + self.below(spread) as f64,
                })
                .collect()
        }
    }

    /// An independent oracle for the ranges layout: walk the buckets and
    /// hand each to the member whose cumulative quota covers it.
    fn ranges_oracle(ms: &[Weighted], buckets: u32) -> Vec<Option<MemberId>> {
        let quotas = apportion(ms, buckets);
        let mut out = vec![None; buckets as usize];
        let mut start = 0usize;
        for (m, q) in ms.iter().zip(quotas) {
            for slot in out.iter_mut().skip(start).take(q as usize) {
                *slot = Some(m.id);
            }
            start += q as usize;
        }
        out
    }

    #[test]
    fn ranges_are_contiguous_and_exact() {
        let ms = w(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        let t = Table::build(Layout::Ranges, &ms, 65536);
        assert_eq!(t.owners(), ranges_oracle(&ms, 65536).as_slice());
        let counts: Vec<usize> = (1..=3).map(|i| t.count(MemberId(i))).collect();
        assert_eq!(counts.iter().sum::<usize>(), 65536);
        for (c, share) in counts.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
            assert!((*c as f64 - share * 65536.0).abs() <= 1.0, "{counts:?}");
        }
        assert_eq!(t.owner(0), Some(MemberId(1)));
        assert_eq!(t.owner(65535), Some(MemberId(3)));
    }

    #[test]
    fn rendezvous_shares_follow_weights() {
        let ms = w(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        let t = Table::build(Layout::Rendezvous, &ms, 65536);
        for (i, share) in [(1, 1.0 / 6.0), (2, 2.0 / 6.0), (3, 3.0 / 6.0)] {
            let got = t.count(MemberId(i)) as f64 / 65536.0;
            assert!((got - share).abs() < 0.01, "member {i}: {got} vs {share}");
        }
        assert!(t.owners().iter().all(|o| o.is_some()));
    }

    #[test]
    fn the_same_inputs_give_the_same_table_in_any_order() {
        let a = w(&[(3, 3.0), (1, 1.0), (2, 2.0)]);
        let b = w(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        for layout in [Layout::Ranges, Layout::Rendezvous] {
            assert_eq!(Table::build(layout, &a, 4096), Table::build(layout, &b, 4096));
        }
    }

    #[test]
    fn removing_a_member_moves_only_its_buckets_under_rendezvous() {
        let mut rng = Rng(7);
        for _ in 0..20 {
            let ms = rng.members(11, 1.0, 100);
            let gone = MemberId(1 + rng.below(ms.len() as u64) as u32);
            let rest: Vec<Weighted> = ms.iter().copied().filter(|m| m.id != gone).collect();
            let before = Table::build(Layout::Rendezvous, &ms, 8192);
            let after = Table::build(Layout::Rendezvous, &rest, 8192);
            for b in 0..8192 {
                if before.owner(b) != Some(gone) {
                    assert_eq!(before.owner(b), after.owner(b), "bucket {b} moved needlessly");
                } else {
                    assert_ne!(after.owner(b), Some(gone));
                }
            }
        }
    }

    #[test]
    fn a_weight_change_moves_close_to_the_minimum_under_rendezvous() {
        let mut rng = Rng(11);
        let buckets = 65536;
        let mut total_moved = 0u64;
        let mut total_min = 0u64;
        for _ in 0..30 {
            let ms = rng.members(9, 10.0, 90);
            let mut changed = ms.clone();
            let k = rng.below(ms.len() as u64) as usize;
            changed[k].weight = 10.0 + rng.below(90) as f64;
            let before = Table::build(Layout::Rendezvous, &ms, buckets);
            let after = Table::build(Layout::Rendezvous, &changed, buckets);
            // Only the changed member gains or loses.
            for b in 0..buckets {
                if before.owner(b) != after.owner(b) {
                    assert!(before.owner(b) == Some(changed[k].id) || after.owner(b) == Some(changed[k].id));
                }
            }
            total_moved += before.moved(&after) as u64;
            total_min += u64::from(minimum_moves(&ms, &changed, buckets));
        }
        // Within a few percent of the total-variation minimum overall.
        assert!(
            total_moved as f64 <= total_min as f64 * 1.05 + 200.0,
            "moved {total_moved}, minimum {total_min}"
        );
    }

    #[test]
    fn zero_weights_take_nothing_unless_everyone_is_zero() {
        let t = Table::build(Layout::Rendezvous, &w(&[(1, 0.0), (2, 1.0)]), 1024);
        assert_eq!(t.count(MemberId(2)), 1024);
        let t = Table::build(Layout::Ranges, &w(&[(1, 0.0), (2, f64::NAN), (3, 0.0)]), 1024);
        assert_eq!(t.count(MemberId(1)) + t.count(MemberId(2)) + t.count(MemberId(3)), 1024);
        let t = Table::build(Layout::Ranges, &[], 16);
        assert!(t.owners().iter().all(|o| o.is_none()));
    }

    #[test]
    fn minimum_moves_is_the_total_variation() {
        let a = w(&[(1, 1.0), (2, 1.0)]);
        let b = w(&[(1, 1.0), (2, 3.0)]);
        // 1/2 → 1/4 of 1024 buckets: 256 must move.
        assert_eq!(minimum_moves(&a, &b, 1024), 256);
        let c = w(&[(1, 1.0)]);
        assert_eq!(minimum_moves(&a, &c, 1024), 512);
    }
}
