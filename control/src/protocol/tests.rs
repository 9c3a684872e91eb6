//! The protocol in simulation: simulated time, a simulated network with
//! loss, delay, duplication, reordering and partitions, and the properties
//! that matter checked at every millisecond.

use super::*;
use crate::sim::{Sim, KEY};
use crate::wire::encode;

fn settings() -> Settings {
    Settings {
        buckets: 1024,
        drain_ms: 2_000,
        ..Settings::default()
    }
}

#[test]
fn a_cluster_converges_to_shares_that_follow_weights() {
    let mut sim = Sim::new(&[1000, 2000, 3000], settings(), 1);
    sim.delay = (1, 5);
    sim.run(2_000);
    assert!(sim.all_held_once());
    for (i, want) in [(0, 1.0 / 6.0), (1, 2.0 / 6.0), (2, 3.0 / 6.0)] {
        assert!(
            (sim.share(i) - want).abs() < 0.04,
            "agent {i}: {} vs {want}",
            sim.share(i)
        );
    }
    let epochs: Vec<_> = sim.agents.iter().flatten().map(|a| a.epoch().id()).collect();
    assert!(epochs.windows(2).all(|w| w[0] == w[1]), "{epochs:?}");
    // Rights: held buckets are Claimed, then Settled after the drain.
    let a = sim.agents[0].as_ref().unwrap();
    let rights = a.rights(sim.now);
    assert_eq!(
        rights.iter().filter(|r| **r == Right::Claimed).count() as u32,
        a.held_count()
    );
    let later = a.rights(sim.now + 2_000);
    assert_eq!(
        later.iter().filter(|r| **r == Right::Settled).count() as u32,
        a.held_count()
    );
}

#[test]
fn no_bucket_is_ever_held_twice_under_loss_duplication_and_reordering() {
    for seed in 1..=16u64 {
        let n = 2 + (seed as usize % 5);
        let weights: Vec<u32> = (0..n).map(|i| 500 + 400 * i as u32).collect();
        let mut sim = Sim::new(&weights, settings(), seed);
        sim.loss = 0.05;
        sim.dup = 0.05;
        sim.delay = (1, 30);
        let mut killed: Option<(usize, u64)> = None;
        for t in 0..20_000u64 {
            sim.step();
            // Weight changes, a kill and a restart along the way.
            if t % 347 == 0 {
                let i = (sim.rand() % n as u64) as usize;
                let w = 100 + (sim.rand() % 3000) as u32;
                if let Some(a) = sim.agents[i].as_mut() {
                    a.set_weight(w);
                }
            }
            if t == 7_000 {
                let i = (sim.rand() % n as u64) as usize;
                sim.kill(i);
                killed = Some((i, t));
            }
            if let Some((i, at)) = killed {
                if t == at + 3_000 {
                    sim.restart(i);
                }
            }
            if !sim.exclusive() {
                let b = (0..sim.settings.buckets).find(|&b| sim.holders(b) > 1).unwrap_or(0);
                for a in sim.agents.iter().flatten() {
                    eprintln!(
                        "agent {} holds {}: {} epoch {:?} leader {} peers {:?}",
                        a.me(),
                        b,
                        a.holds(b),
                        a.epoch(),
                        a.leader(),
                        a.peers()
                            .iter()
                            .map(|(id, p)| (id.0, p.epoch_id, p.held, p.last_heard))
                            .collect::<Vec<_>>()
                    );
                    eprintln!("   stats {:?}", a.stats());
                }
                panic!(
                    "seed {seed}: bucket {b} held twice at {} ms (killed {killed:?})",
                    sim.now
                );
            }
        }
        // A quiet network: everything held once, within bounded time.
        sim.loss = 0.0;
        sim.dup = 0.0;
        sim.run(1_500);
        assert!(
            sim.all_held_once(),
            "seed {seed}: not every bucket held after the network settled"
        );
    }
}

#[test]
fn a_dead_members_buckets_are_held_again_within_a_second() {
    let mut sim = Sim::new(&[1000, 1000, 1000], settings(), 3);
    sim.delay = (1, 3);
    sim.run(2_000);
    assert!(sim.all_held_once());
    sim.kill(1);
    let killed_at = sim.now;
    let mut recovered = None;
    for _ in 0..2_000 {
        sim.step();
        if sim.all_held_once() {
            recovered = Some(sim.now - killed_at);
            break;
        }
    }
    let ms = recovered.expect("recovered");
    assert!(ms < 1_000, "failover took {ms} ms");
    let earliest = sim.settings.timeout_ms - sim.settings.interval_ms;
    assert!(ms >= earliest, "declared dead before the timeout ({ms} ms)");
    // Its restart returns it to the cluster.
    sim.restart(1);
    sim.run(1_500);
    assert!(sim.all_held_once());
    assert!(sim.share(1) > 0.25, "restarted member has {}", sim.share(1));
}

#[test]
fn a_moving_bucket_is_unheld_for_about_one_message_delay() {
    let mut s = settings();
    s.drain_ms = 1;
    let mut sim = Sim::new(&[1000, 1000, 1000, 1000], s, 5);
    sim.delay = (5, 5);
    sim.run(2_000);
    assert!(sim.all_held_once());
    // Track unheld periods per bucket after a weight change.
    sim.agents[2].as_mut().unwrap().set_weight(3000);
    let mut unheld_since: Vec<Option<u64>> = vec![None; 1024];
    let mut worst = 0;
    let mut moves = 0;
    for _ in 0..500 {
        sim.step();
        for b in 0..1024u32 {
            let held = sim.holders(b) == 1;
            match (held, unheld_since[b as usize]) {
                (false, None) => unheld_since[b as usize] = Some(sim.now),
                (true, Some(t)) => {
                    worst = worst.max(sim.now - t);
                    moves += 1;
                    unheld_since[b as usize] = None;
                }
                _ => {}
            }
        }
    }
    assert!(moves > 100, "only {moves} buckets moved");
    assert!(unheld_since.iter().all(Option::is_none));
    // Released when the new epoch arrives (one delay after the leader made
    // it), claimed when the release is heard (one more delay).
    assert!(worst <= 2 * 5 + 2, "a bucket was unheld for {worst} ms");
}

#[test]
fn a_partition_heals_to_one_holder_per_bucket() {
    let mut sim = Sim::new(&[1000, 1000, 1000, 1000], settings(), 9);
    sim.delay = (1, 10);
    sim.run(2_000);
    assert!(sim.all_held_once());
    sim.partition = Some(vec![0, 0, 1, 1]);
    sim.run(2_000);
    // Each side has taken the other's buckets.
    assert!(sim.agents.iter().flatten().all(|a| a.held_count() > 0));
    sim.partition = None;
    let healed_at = sim.now;
    let mut converged = None;
    for _ in 0..3_000 {
        sim.step();
        if converged.is_none() && sim.all_held_once() {
            converged = Some(sim.now - healed_at);
        }
        if converged.is_some() {
            assert!(sim.exclusive(), "double holding after convergence at {}", sim.now);
        }
    }
    let ms = converged.expect("converged after the partition healed");
    assert!(ms < 1_000, "took {ms} ms");
}

#[test]
fn a_joining_member_takes_its_share_without_double_holding() {
    let mut sim = Sim::new(&[1000, 1000, 1000, 1000], settings(), 11);
    sim.delay = (1, 8);
    sim.kill(3);
    sim.run(2_000);
    assert!(sim.all_held_once());
    sim.restart(3);
    for _ in 0..2_000 {
        sim.step();
        assert!(sim.exclusive());
    }
    assert!(sim.all_held_once());
    assert!((sim.share(3) - 0.25).abs() < 0.06, "{}", sim.share(3));
}

#[test]
fn a_draining_member_ends_up_with_no_buckets() {
    let mut sim = Sim::new(&[1000, 1000, 1000], settings(), 13);
    sim.run(2_000);
    sim.agents[0].as_mut().unwrap().set_draining(true);
    sim.run(1_000);
    assert_eq!(sim.agents[0].as_ref().unwrap().held_count(), 0);
    assert!(sim.all_held_once());
    sim.agents[0].as_mut().unwrap().set_draining(false);
    sim.run(1_000);
    assert!(sim.share(0) > 0.25);
}

#[test]
fn a_coordinator_leads_and_holds_nothing_and_nodes_go_on_without_it() {
    let mut s = settings();
    let mut sim = Sim::new(&[1000, 1000, 1000], s.clone(), 17);
    s.role = Role::Coordinator;
    // The coordinator is member 0: the lowest id leads.
    sim.agents.insert(0, Some(Agent::new(MemberId(0), 1, s, 0, 0)));
    sim.weights.insert(0, 0);
    // Agent ids are index + 1 for restarts; keep the coordinator's apart.
    sim.run(2_000);
    assert!(sim.all_held_once());
    let coord = sim.agents[0].as_ref().unwrap();
    assert_eq!(coord.held_count(), 0);
    assert_eq!(coord.epoch().creator, MemberId(0), "the coordinator made the table");
    assert!(coord.stats().epochs_created >= 1);
    // The coordinator goes away: the nodes keep the table and fail over.
    sim.kill(0);
    sim.run(1_000);
    assert!(sim.all_held_once());
    sim.kill(2);
    sim.run(1_000);
    assert!(sim.all_held_once());
    assert!(sim.agents[1].as_ref().unwrap().held_count() > 400);
}

#[test]
fn forged_replayed_stale_and_foreign_heartbeats_change_nothing() {
    let mut sim = Sim::new(&[1000, 1000], settings(), 19);
    sim.run(2_000);
    let hb = sim.agents[1]
        .as_mut()
        .unwrap()
        .tick(sim.now + 100)
        .expect("a heartbeat");
    let a = sim.agents[0].as_mut().unwrap();
    let now = sim.now;
    let good = encode(&hb, KEY);
    assert!(a.receive(&good, KEY, now).is_ok());
    let (epoch, held) = (a.epoch().clone(), a.held_count());
    assert_eq!(a.receive(&good, KEY, now), Err(Reject::Replayed));
    assert_eq!(
        a.receive(&encode(&hb, b"wrong key"), KEY, now),
        Err(Reject::Decode(DecodeError::BadTag))
    );
    assert_eq!(
        a.receive(b"garbage", KEY, now),
        Err(Reject::Decode(DecodeError::BadLength))
    );
    let mut forged_epoch = hb.clone();
    forged_epoch.seq += 1;
    forged_epoch.epoch.number += 100;
    forged_epoch.epoch.members = vec![(MemberId(2), 1000)];
    assert!(a.receive(&encode(&forged_epoch, b"attacker"), KEY, now).is_err());
    let mut stale = hb.clone();
    stale.incarnation -= 1;
    stale.seq += 50;
    assert_eq!(a.receive(&encode(&stale, KEY), KEY, now), Err(Reject::Stale));
    let mut other_segment = hb.clone();
    other_segment.seq += 60;
    other_segment.segment = 7;
    assert_eq!(a.receive(&encode(&other_segment, KEY), KEY, now), Err(Reject::Foreign));
    let mut me = hb.clone();
    me.member = MemberId(1);
    assert_eq!(a.receive(&encode(&me, KEY), KEY, now), Err(Reject::OwnId));
    assert_eq!(a.epoch(), &epoch);
    assert_eq!(a.held_count(), held);
    let s = a.stats();
    assert_eq!(
        (
            s.rejected_replayed,
            s.rejected_bad_tag,
            s.rejected_bad_length,
            s.rejected_stale
        ),
        (1, 2, 1, 1)
    );
    assert_eq!((s.rejected_foreign, s.rejected_own_id), (1, 1));
}
