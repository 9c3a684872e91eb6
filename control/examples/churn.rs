//! Churn: buckets moved by one event, for both layouts, against the
//! total-variation minimum (the fewest any layout could move).
//!
//! Events: one member's weight changes (up or down by up to half), one
//! member leaves, one member joins. Members have random weights from 10 to
//! 100; each line is the sum over `TRIALS` random events.
//!
//!     cargo run --release -p synshare-control --example churn

use std::collections::BTreeMap;
use synshare_control::layout::{minimum_moves, Layout, MemberId, Table, Weighted};

/// The fewest moves between the shares two tables actually give (half the
/// L1 distance of their bucket counts): rendezvous shares carry sampling
/// noise, so this, not the exact apportionment, bounds what it can move.
fn realized_minimum(a: &Table, b: &Table) -> u64 {
    let mut counts: BTreeMap<Option<MemberId>, (i64, i64)> = BTreeMap::new();
    for o in a.owners() {
        counts.entry(*o).or_default().0 += 1;
    }
    for o in b.owners() {
        counts.entry(*o).or_default().1 += 1;
    }
    (counts.values().map(|(x, y)| (x - y).abs()).sum::<i64>() / 2) as u64
}

const BUCKETS: u32 = 65536;
const TRIALS: usize = 10;

/// splitmix64, seeded: the same table every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy)]
enum Event {
    Weight,
    Leave,
    Join,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Weight => "weight change",
            Event::Leave => "member removal",
            Event::Join => "member join",
        }
    }
}

fn members(rng: &mut Rng, n: u32) -> Vec<Weighted> {
    (1..=n)
        .map(|i| Weighted {
            id: MemberId(i),
            weight: 10.0 + rng.below(91) as f64,
        })
        .collect()
}

fn after(rng: &mut Rng, before: &[Weighted], event: Event) -> Vec<Weighted> {
    let mut v = before.to_vec();
    let k = rng.below(v.len() as u64) as usize;
    match event {
        Event::Weight => {
            // A factor from 0.5 to 1.5, never 1.
            let factor = 0.5 + (1 + rng.below(100)) as f64 / 100.0;
            v[k].weight *= if (factor - 1.0).abs() < 1e-9 { 1.25 } else { factor };
        }
        Event::Leave => {
            v.remove(k);
        }
        Event::Join => {
            let id = MemberId(v.len() as u32 + 1);
            v.push(Weighted {
                id,
                weight: 10.0 + rng.below(91) as f64,
            });
        }
    }
    v
}

fn main() {
    println!("Buckets moved per event ({BUCKETS} buckets; sums over {TRIALS} random events per line)");
    println!();
    println!("minimum: the total-variation minimum between the exact shares (control::layout::minimum_moves);");
    println!("own min: the same between the shares the rendezvous tables actually give (sampling noise).");
    println!();
    println!("| members | event | minimum | rendezvous | rendezvous / min | own min | rendezvous / own min | ranges | ranges / min |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut totals = [(0u64, 0u64, 0u64); 3];
    for n in [3u32, 8, 32, 128] {
        for (e, event) in [Event::Weight, Event::Leave, Event::Join].into_iter().enumerate() {
            let mut rng = Rng(u64::from(n) * 1000 + e as u64);
            let (mut min, mut rv, mut rg, mut own) = (0u64, 0u64, 0u64, 0u64);
            for _ in 0..TRIALS {
                let a = members(&mut rng, n);
                let b = after(&mut rng, &a, event);
                min += u64::from(minimum_moves(&a, &b, BUCKETS));
                for (layout, sum) in [(Layout::Rendezvous, &mut rv), (Layout::Ranges, &mut rg)] {
                    let ta = Table::build(layout, &a, BUCKETS);
                    let tb = Table::build(layout, &b, BUCKETS);
                    *sum += ta.moved(&tb) as u64;
                    if layout == Layout::Rendezvous {
                        own += realized_minimum(&ta, &tb);
                    }
                }
            }
            totals[e].0 += min;
            totals[e].1 += rv;
            totals[e].2 += rg;
            println!(
                "| {n} | {} | {min} | {rv} | {:.3} | {own} | {:.3} | {rg} | {:.3} |",
                event.name(),
                rv as f64 / min.max(1) as f64,
                rv as f64 / own.max(1) as f64,
                rg as f64 / min.max(1) as f64
            );
        }
    }
    println!();
    for (e, event) in [Event::Weight, Event::Leave, Event::Join].into_iter().enumerate() {
        let (min, rv, rg) = totals[e];
        println!(
            "all sizes, {}: rendezvous {:.3} x minimum, ranges {:.3} x minimum",
            event.name(),
            rv as f64 / min.max(1) as f64,
            rg as f64 / min.max(1) as f64
        );
    }
}
