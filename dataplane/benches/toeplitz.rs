//! The connection value: software Toeplitz over IPv4 and IPv6 tuples, with
//! the general 36 KiB table and with the symmetric key's folded form (what
//! the packet path uses).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use synshare_dataplane::hash::{symmetric, Toeplitz, SYMMETRIC_KEY};
use synshare_dataplane::packet::Addr;

fn toeplitz(c: &mut Criterion) {
    let t = Toeplitz::new(&SYMMETRIC_KEY);
    let mut g = c.benchmark_group("toeplitz");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(1));
    let mut port = 0u16;
    g.bench_function("ipv4", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            t.tuple(
                black_box(Addr::V4([198, 51, 100, port as u8])),
                black_box(Addr::V4([192, 0, 2, 100])),
                black_box(port),
                80,
            )
        })
    });
    let client = [0x20, 0x01, 0x0d, 0xb8, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let vip = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    g.bench_function("ipv6", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            t.tuple(
                black_box(Addr::V6(client)),
                black_box(Addr::V6(vip)),
                black_box(port),
                80,
            )
        })
    });
    g.bench_function("symmetric_ipv4", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            symmetric::tuple(
                black_box(Addr::V4([198, 51, 100, port as u8])),
                black_box(Addr::V4([192, 0, 2, 100])),
                black_box(port),
                80,
            )
        })
    });
    g.bench_function("symmetric_ipv6", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            symmetric::tuple(
                black_box(Addr::V6(client)),
                black_box(Addr::V6(vip)),
                black_box(port),
                80,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, toeplitz);
criterion_main!(benches);
