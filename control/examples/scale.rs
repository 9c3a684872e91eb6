//! Cluster scale in simulation: the exchange protocol with 8 to 64
//! members (the most a segment may have: heartbeats fit one MTU). For each size: time to converge after a start, time until a
//! dead member's buckets are held again, heartbeat bytes per second per
//! member, and table computations per second at 65,536 buckets.
//!
//!   cargo run --release -p synshare-control --example scale [MAX_MEMBERS]

use std::time::Instant;
use synshare_control::layout::{Layout, MemberId, Table, Weighted};
use synshare_control::protocol::Settings;
use synshare_control::sim::Sim;
use synshare_control::wire::{Heard, Heartbeat, Keys, Role, Sender};

fn main() {
    let max: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(synshare_control::wire::MAX_MEMBERS);
    println!("members | converge ms | failover ms | leader failover ms | heartbeat B | B/s sent per member | tables/s rendezvous | tables/s ranges");
    println!("--------|-------------|-------------|--------------------|-------------|---------------------|---------------------|----------------");
    let mut n = 8;
    while n <= max {
        // The simulation uses 4,096 buckets so that 256 agents each
        // computing every table stays quick; table cost at 65,536 buckets
        // is measured apart below.
        let settings = Settings {
            buckets: 4096,
            drain_ms: 1_000,
            // The protocol does not depend on the layout; ranges keep 256
            // simulated agents cheap. Table cost is measured below.
            layout: Layout::Ranges,
            ..Settings::default()
        };
        let weights: Vec<u32> = (0..n).map(|i| 500 + (i as u32 * 37) % 1500).collect();
        let mut sim = Sim::new(&weights, settings.clone(), n as u64);
        sim.delay = (1, 5);
        let mut converged = None;
        for _ in 0..10_000 {
            sim.step();
            if sim.all_held_count() {
                converged = Some(sim.now);
                break;
            }
        }
        sim.run(1_000);
        let bytes0: u64 = sim.bytes_sent.iter().sum();
        let t0 = sim.now;
        sim.run(2_000);
        let per_member =
            (sim.bytes_sent.iter().sum::<u64>() - bytes0) as f64 / n as f64 / ((sim.now - t0) as f64 / 1000.0);
        let hb = synshare_control::wire::encode_heartbeat(
            &Heartbeat {
                from: Sender {
                    segment: 0,
                    member: 1,
                    incarnation: 1,
                    nonce: 0,
                    role: Role::Node,
                    draining: false,
                },
                seq: 1,
                weight_milli: 1000,
                connections: 0,
                held: 0,
                applied: 1,
                log_last: 1,
                agreed: Settings::default().agreed(),
                serving: 0,
                heard: (2..=n as u32)
                    .map(|m| Heard {
                        member: m,
                        incarnation: u64::MAX,
                        seq: 1,
                        lease: true,
                    })
                    .collect(),
            },
            &Keys::single(b"k"),
        )
        .map_or(0, |b| b.len());
        // Another member's death, then (in a fresh run of the same size)
        // the leader's.
        let failover = failover_after_kill(&mut sim, |s| {
            let leader = s.agent(0).and_then(|a| a.leader()).map(|m| m.0 as usize - 1);
            if leader == Some(n / 2) {
                (n / 2 + 1) % n
            } else {
                n / 2
            }
        });
        let mut sim = Sim::new(&weights, settings, n as u64 + 1000);
        sim.delay = (1, 5);
        sim.run_until_served(&(0..n).collect::<Vec<_>>(), 10_000);
        sim.run(1_000);
        let failover_leader = failover_after_kill(&mut sim, |s| {
            (0..n)
                .find_map(|i| s.agent(i).and_then(|a| a.leader()))
                .map_or(0, |m| m.0 as usize - 1)
        });
        let members: Vec<Weighted> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Weighted {
                id: MemberId(i as u32 + 1),
                weight: f64::from(w),
            })
            .collect();
        let rate = |layout: Layout| {
            let start = Instant::now();
            let mut k = 0;
            while start.elapsed().as_millis() < 300 || k < 2 {
                std::hint::black_box(Table::build(layout, &members, 65_536));
                k += 1;
            }
            k as f64 / start.elapsed().as_secs_f64()
        };
        println!(
            "{n:>7} | {:>11} | {:>11} | {:>18} | {hb:>11} | {:>19.0} | {:>19.1} | {:>14.1}",
            converged.map_or("-".into(), |v| v.to_string()),
            failover.map_or("-".into(), |v| v.to_string()),
            failover_leader.map_or("-".into(), |v| v.to_string()),
            per_member,
            rate(Layout::Rendezvous),
            rate(Layout::Ranges),
        );
        n *= 2;
    }
    println!("(simulated network: 1-5 ms delay, no loss; heartbeat interval 100 ms, timeout and lease 400 ms;");
    println!(" peer mode sends each heartbeat to every other member, so bytes grow with members squared)");
}

/// Kills the member `pick` names and returns how long until every bucket
/// is held again by the survivors (None: not within 10 s).
fn failover_after_kill(sim: &mut Sim, pick: impl Fn(&Sim) -> usize) -> Option<u64> {
    let victim = pick(sim);
    sim.kill(victim);
    let killed = sim.now;
    for _ in 0..10_000 {
        sim.step();
        if sim.all_held_count() {
            return Some(sim.now - killed);
        }
    }
    None
}
