//! The connection value: software Toeplitz over IPv4 and IPv6 tuples, with
//! the general 36 KiB table and with the symmetric key's folded form (what
//! the packet path uses).

use criterion::measurement::WallTime;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use std::time::Duration;
use synshare_dataplane::hash::{symmetric, ConnectionValue, Toeplitz, SYMMETRIC_KEY};
use synshare_dataplane::packet::Addr;

/// Benchmarks `hash` over a tuple to port 80 from a new client port each
/// time (`port`, shared by the benchmarks), the client and VIP addresses
/// as `addrs` gives them for that port.
fn tuples(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    port: &mut u16,
    addrs: impl Fn(u16) -> (Addr, Addr),
    hash: impl Fn(Addr, Addr, u16, u16) -> ConnectionValue,
) {
    g.bench_function(name, |b| {
        b.iter(|| {
            *port = port.wrapping_add(1);
            let (client, vip) = addrs(*port);
            hash(black_box(client), black_box(vip), black_box(*port), 80)
        })
    });
}

fn toeplitz(c: &mut Criterion) {
    let t = Toeplitz::new(&SYMMETRIC_KEY);
    let mut g = c.benchmark_group("toeplitz");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(1));
    let mut port = 0u16;
    let v4 = |port: u16| (Addr::V4([198, 51, 100, port as u8]), Addr::V4([192, 0, 2, 100]));
    let client = [0x20, 0x01, 0x0d, 0xb8, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let vip = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let v6 = |_: u16| (Addr::V6(client), Addr::V6(vip));
    let general = |src, dst, src_port, dst_port| t.tuple(src, dst, src_port, dst_port);
    tuples(&mut g, "ipv4", &mut port, v4, general);
    tuples(&mut g, "ipv6", &mut port, v6, general);
    tuples(&mut g, "symmetric_ipv4", &mut port, v4, symmetric::tuple);
    tuples(&mut g, "symmetric_ipv6", &mut port, v6, symmetric::tuple);
    g.finish();
}

criterion_group!(benches, toeplitz);
criterion_main!(benches);
