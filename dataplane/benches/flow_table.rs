//! The flow table at 1M and 10M entries: lookup of a known flow, lookup of
//! an unknown one, insert of a new half-open flow into the full table, the
//! sweeper's per-millisecond pass, and expiry of the whole table.
//!
//! Keys are computed in the loop (`FlowKey::new`, a few ns), as the worker
//! computes them per packet. `SS_BENCH_SIZES=1000000` limits the sizes.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use std::time::{Duration, Instant};
use synshare_dataplane::flow::{FlowKey, FlowState, FlowTable, FlowTimeouts};
use synshare_dataplane::packet::Addr;

fn key(i: u64) -> FlowKey {
    let mut a = [0u8; 16];
    a[0..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0x0c]);
    a[8..16].copy_from_slice(&i.to_be_bytes());
    FlowKey::new(
        Addr::V6(a),
        1024 + (i % 60_000) as u16,
        Addr::V6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
        80,
    )
}

/// A spread of indices over 0..n without a division per call: a fixed
/// large stride modulo n.
struct Walk {
    i: u64,
    n: u64,
    stride: u64,
}

impl Walk {
    fn new(n: u64) -> Walk {
        Walk {
            i: 0,
            n,
            stride: 0x9e37_79b9 % n,
        }
    }

    #[inline]
    fn next(&mut self) -> u64 {
        self.i += self.stride;
        if self.i >= self.n {
            self.i -= self.n;
        }
        self.i
    }
}

fn fill(n: u64) -> FlowTable {
    let mut t = FlowTable::new((n + n / 4) as usize, FlowTimeouts::default());
    for i in 0..n {
        t.insert(key(i), FlowState::Established, 0);
    }
    t
}

fn sizes() -> Vec<u64> {
    std::env::var("SS_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000_000, 10_000_000])
}

fn flow_table(c: &mut Criterion) {
    for n in sizes() {
        let mut t = fill(n);
        let mut g = c.benchmark_group(format!("flow_table/{n}"));
        g.measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
        g.throughput(Throughput::Elements(1));
        let mut w = Walk::new(n);
        g.bench_function("lookup_hit", |b| b.iter(|| t.get(black_box(&key(w.next())), 1)));
        let mut miss = n;
        g.bench_function("lookup_miss", |b| {
            b.iter(|| {
                miss += 1;
                t.get(black_box(&key(miss)), 1)
            })
        });
        // New half-open flows into the loaded table, the clock advancing
        // 1 ms per 1,024 inserts: they expire after 5 s of that clock and
        // their slots are taken again (or evicted when a group is full).
        let mut fresh = 1u64 << 40;
        let mut now = 0u32;
        g.bench_function("insert_half_open", |b| {
            b.iter(|| {
                fresh += 1;
                if fresh.is_multiple_of(1024) {
                    now += 1;
                }
                t.insert(black_box(key(fresh)), FlowState::HalfOpen, now)
            })
        });
        // The worker's per-millisecond sweep: 64 groups, nothing expired.
        g.bench_function("sweep_64_groups", |b| b.iter(|| t.sweep(black_box(now), 64)));
        g.finish();

        // Expiry of every entry: refill (not timed), then one full sweep
        // (timed), per iteration.
        let mut g = c.benchmark_group(format!("flow_table/{n}"));
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .measurement_time(Duration::from_secs(1))
            .warm_up_time(Duration::from_millis(100));
        g.throughput(Throughput::Elements(n));
        drop(t);
        let mut t = fill(n);
        g.bench_with_input(BenchmarkId::new("expire_all", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    if t.is_empty() {
                        for i in 0..n {
                            t.insert(key(i), FlowState::Established, 0);
                        }
                    }
                    let start = Instant::now();
                    // Past the established timeout: everything expires.
                    black_box(t.sweep(400_000, usize::MAX));
                    timed += start.elapsed();
                }
                timed
            })
        });
        g.finish();
    }
}

criterion_group!(benches, flow_table);
criterion_main!(benches);
