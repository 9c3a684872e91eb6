//! The ownership view lookup: connection value → bucket → this node's state,
//! over 65,536 buckets, as the worker does it per packet.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use synshare_dataplane::hash::{Bucket, ConnectionValue};
use synshare_dataplane::ownership::{BucketState, OwnershipView};

fn ownership(c: &mut Criterion) {
    let mut view = OwnershipView::new(65536, 1);
    for b in (0..65536).step_by(3) {
        view.set(Bucket(b), BucketState::Settled);
    }
    let mut g = c.benchmark_group("ownership");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(1));
    let mut x = 0x1234_5678u32;
    g.bench_function("view_lookup_65536", |b| {
        b.iter(|| {
            // xorshift: values spread over every bucket.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = black_box(ConnectionValue(x));
            view.state(v.bucket(view.mask()))
        })
    });
    g.finish();
}

criterion_group!(benches, ownership);
criterion_main!(benches);
