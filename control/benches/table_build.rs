//! Table::build for 2 … 256 members, both layouts, 65,536 buckets.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use std::time::Duration;
use synshare_control::layout::{Layout, MemberId, Table, Weighted};

fn table_build(c: &mut Criterion) {
    for layout in [Layout::Ranges, Layout::Rendezvous] {
        let mut g = c.benchmark_group(format!("table_build/{layout:?}").to_lowercase());
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(300));
        for n in [2u32, 4, 8, 16, 32, 64, 128, 256] {
            let members: Vec<Weighted> = (1..=n)
                .map(|i| Weighted {
                    id: MemberId(i),
                    weight: 1.0 + f64::from(i % 7),
                })
                .collect();
            g.bench_with_input(BenchmarkId::from_parameter(n), &members, |b, m| {
                b.iter(|| Table::build(layout, black_box(m), 65536))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, table_build);
criterion_main!(benches);
