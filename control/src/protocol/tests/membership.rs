//! Runtime membership in simulation: members added (learners first, then
//! voters) and removed (their buckets handed off, then dropped from the
//! directory) through the log, under loss, partitions and a leader change,
//! with the ownership oracle checking every simulated millisecond.

use super::*;
use crate::directory::{placeholder_address, Change};

fn add(id: u32) -> Change {
    Change::Add {
        id: MemberId(id),
        address: placeholder_address(MemberId(id)),
        weight_milli: 1000,
    }
}

/// The index of the node that leads now, if one does.
fn leader(sim: &Sim) -> Option<usize> {
    (0..sim.nodes.len()).find(|&i| {
        sim.agent(i)
            .is_some_and(|a| a.leader() == Some(a.me()) && a.voters().contains(&a.me()))
    })
}

/// Proposes `change` at node `i`, retrying (every 200 ms, at most `limit`
/// ms) while it cannot be proposed yet (no leader, another change under
/// way), until `done`.
fn propose_until(sim: &mut Sim, i: usize, change: &Change, limit: u64, done: impl Fn(&Sim) -> bool) {
    let start = sim.now;
    while !done(sim) {
        assert!(sim.now < start + limit, "{change:?} at node {i} never took effect");
        if (sim.now - start).is_multiple_of(200) {
            if let Some(a) = sim.agent_mut(i) {
                let _ = a.propose_change(change.clone());
            }
        }
        sim.step();
    }
}

fn in_directory(sim: &Sim, i: usize, id: u32) -> bool {
    sim.agent(i).is_some_and(|a| a.directory().contains(MemberId(id)))
}

#[test]
fn a_member_added_at_run_time_learns_the_directory_gets_its_share_and_becomes_a_voter() {
    let mut sim = converged(&[1000, 1000, 1000], 41);
    let new = sim.add_joiner(MemberId(4), 1000, 0, Keys::single(KEY));
    // Proposed at a follower: forwarded to the leader.
    let follower = (0..3).find(|&i| Some(i) != leader(&sim)).unwrap();
    propose_until(&mut sim, follower, &add(4), 3_000, |s| {
        (0..3).all(|i| in_directory(s, i, 4))
    });
    step_until(&mut sim, 10_000, "the new member never learned the directory", |s| {
        in_directory(s, new, 4) && in_directory(s, new, 1)
    });
    rejoins(&mut sim, new, 0.2);
    step_until(&mut sim, 10_000, "the new member never became a voter", |s| {
        (0..4).all(|i| s.agent(i).unwrap().voters().contains(&MemberId(4)))
    });
    served(&mut sim, &[0, 1, 2, 3]);
    assert_eq!(
        sim.agent(new).unwrap().stats().snapshots_installed,
        1,
        "the directory came by snapshot"
    );
    assert_exclusive(&sim, "member added");
}

#[test]
fn a_member_removed_at_run_time_hands_its_buckets_off_and_leaves_the_directory() {
    let mut sim = converged(&[1000, 1000, 1000], 42);
    let gone = 2;
    propose_until(&mut sim, 0, &Change::Leave { id: MemberId(3) }, 3_000, |s| {
        s.agent(0)
            .unwrap()
            .directory()
            .get(MemberId(3))
            .is_none_or(|m| m.leaving)
    });
    step_until(&mut sim, 10_000, "the removed member never left the directory", |s| {
        (0..2).all(|i| !in_directory(s, i, 3))
    });
    assert!(closed(&sim, gone));
    assert_eq!(sim.agent(gone).unwrap().held_count(), 0);
    served(&mut sim, &[0, 1]);
    assert!(!sim.agent(0).unwrap().voters().contains(&MemberId(3)));
    // It runs on and holds nothing.
    sim.run(5_000);
    assert!(closed(&sim, gone));
    assert!(sim.all_open_once(&[0, 1]));
    assert_exclusive(&sim, "member removed");
}

#[test]
fn a_node_not_added_cannot_join_by_itself() {
    let mut sim = converged(&[1000, 1000, 1000], 43);
    // It has the key and a member's address; nobody proposed it.
    let lone = sim.add_joiner(MemberId(4), 5000, 0, Keys::single(KEY));
    sim.run(10_000);
    assert!(closed(&sim, lone));
    let a = sim.agent(lone).unwrap();
    assert_eq!(a.held_count(), 0);
    assert!(a.directory().is_empty(), "it learned nothing");
    assert!(a.voters().is_empty());
    assert!((0..3).all(|i| !in_directory(&sim, i, 4)));
    assert!(sim.agent(0).unwrap().stats().rejected_unknown_member > 0);
    assert!(sim.all_open_once(&[0, 1, 2]));
    assert!((0..3).all(|i| sim.agent(i).unwrap().epoch().members.len() == 3));
    assert_exclusive(&sim, "a node nobody added");
}

#[test]
fn a_change_that_makes_no_sense_is_refused_where_it_is_asked() {
    let mut sim = converged(&[1000, 1000, 1000], 44);
    let a = sim.agent_mut(0).unwrap();
    assert!(a.propose_change(add(2)).unwrap_err().contains("already"));
    assert!(a.propose_change(Change::Leave { id: MemberId(9) }).is_err());
    assert!(a.propose_change(Change::Remove { id: MemberId(2) }).is_err());
    let taken = Change::Add {
        id: MemberId(7),
        address: placeholder_address(MemberId(1)),
        weight_milli: 1000,
    };
    assert!(a.propose_change(taken).unwrap_err().contains("member 1's"));
}

/// Adds member 4 (joining through node `via`) and then removes member
/// `leaving`, under loss, duplication and reordering, with a partition
/// that cuts the leader off during the addition (a leader change) and
/// another member isolated for a while during the removal.
fn add_then_remove_under_faults(seed: u64, via: usize, remove_leader: bool) {
    let mut sim = converged(&[1000, 1000, 1000], seed);
    sim.loss = 0.05;
    sim.dup = 0.02;
    sim.delay = (1, 4);
    let new = sim.add_joiner(MemberId(4), 1000, via, Keys::single(KEY));
    let first_leader = leader(&sim).expect("a converged cluster has a leader");
    let asker = (0..3).find(|&i| i != first_leader).unwrap();
    // Asked at a follower; the leader is cut off from the others (not
    // from the new node) for 1.5 s soon after.
    let mut cut = false;
    let mut healed = false;
    let mut other_leader = false;
    let start = sim.now;
    while !(healed && (0..4).all(|i| in_directory(&sim, i, 4) && sim.agent(i).unwrap().voters().contains(&MemberId(4))))
    {
        assert!(
            sim.now < start + 20_000,
            "seed {seed}: member 4 never joined as a voter"
        );
        let t = sim.now - start;
        if t.is_multiple_of(200) && !in_directory(&sim, asker, 4) {
            let _ = sim.agent_mut(asker).unwrap().propose_change(add(4));
        }
        if t == 30 {
            for j in 0..3 {
                if j != first_leader {
                    sim.blocked[first_leader][j] = true;
                    sim.blocked[j][first_leader] = true;
                }
            }
            cut = true;
        }
        other_leader |= cut && leader(&sim).is_some_and(|l| l != first_leader);
        if cut && !healed && t >= 1_530 {
            sim.heal();
            healed = true;
        }
        sim.step();
    }
    sim.heal();
    assert_exclusive(&sim, &format!("seed {seed}: adding under faults"));
    step_until(&mut sim, 10_000, "the new member never got its share", |s| {
        s.share(new) > 0.15
    });
    assert!(other_leader, "seed {seed}: the partition made another leader");
    // Remove a member: the leader, or another one.
    let leaving = match (remove_leader, leader(&sim)) {
        (true, Some(l)) => l,
        _ => (0..4).find(|&i| Some(i) != leader(&sim)).unwrap(),
    };
    let id = sim.nodes[leaving].id;
    eprintln!(
        "seed {seed}: added at {} ms; removing member {} (leader: {remove_leader})",
        sim.now, id.0
    );
    let asker = (0..4).find(|&i| i != leaving).unwrap();
    let isolated = (0..4).find(|&i| i != leaving && i != asker).unwrap();
    let rest: Vec<usize> = (0..4).filter(|&i| i != leaving).collect();
    let start = sim.now;
    while !rest.iter().all(|&i| !in_directory(&sim, i, id.0)) {
        assert!(
            sim.now < start + 30_000,
            "seed {seed}: member {} never left: directories {:?}",
            id.0,
            rest.iter()
                .map(|&i| sim.agent(i).unwrap().directory().get(id).cloned())
                .collect::<Vec<_>>()
        );
        let t = sim.now - start;
        if t.is_multiple_of(200)
            && sim
                .agent(asker)
                .unwrap()
                .directory()
                .get(id)
                .is_some_and(|m| !m.leaving)
        {
            let _ = sim.agent_mut(asker).unwrap().propose_change(Change::Leave { id });
        }
        if t == 300 {
            sim.isolate(isolated, true);
        }
        if t == 1_500 {
            sim.isolate(isolated, false);
        }
        sim.step();
    }
    sim.heal();
    assert_eq!(sim.agent(leaving).unwrap().held_count(), 0, "seed {seed}");
    assert!(closed(&sim, leaving));
    served(&mut sim, &rest);
    sim.run(3_000);
    assert!(closed(&sim, leaving), "seed {seed}: the removed member holds nothing");
    assert!(sim.all_open_once(&rest), "seed {seed}: the others cover every bucket");
    for &i in &rest {
        let a = sim.agent(i).unwrap();
        assert!(!a.voters().contains(&id) && !a.peers().contains_key(&id), "seed {seed}");
        assert!(a.epoch().members.iter().all(|(m, _)| *m != id));
    }
    eprintln!(
        "seed {seed}: removed by {} ms; shares {:?}",
        sim.now,
        (0..4).map(|i| sim.share(i)).collect::<Vec<_>>()
    );
    assert_exclusive(&sim, &format!("seed {seed}: removing under faults"));
    assert_eq!(sim.durable_unsaved, 0);
}

#[test]
fn members_added_and_removed_under_loss_partitions_and_a_leader_change() {
    for seed in 0..6 {
        add_then_remove_under_faults(100 + seed, seed as usize % 3, seed % 2 == 0);
    }
}

#[test]
fn the_directory_survives_restarts_and_a_joiner_restarted_mid_way_still_joins() {
    let mut sim = converged(&[1000, 1000, 1000], 45);
    let new = sim.add_joiner(MemberId(4), 1000, 2, Keys::single(KEY));
    sim.run(300);
    // Restarted before anyone proposed it: it knows nothing yet.
    sim.kill(new);
    sim.restart(new);
    propose_until(&mut sim, 1, &add(4), 3_000, |s| (0..3).all(|i| in_directory(s, i, 4)));
    rejoins(&mut sim, new, 0.2);
    // Every member restarts from its state file: the directory is there.
    for i in 0..4 {
        sim.kill(i);
        sim.restart(i);
        assert!(in_directory(&sim, i, 4), "member {i} restarted without member 4");
        rejoins(&mut sim, i, 0.15);
    }
    served(&mut sim, &[0, 1, 2, 3]);
    assert_exclusive(&sim, "restarts after an addition");
}

#[test]
fn a_removed_member_leaves_only_once_its_connections_ended_and_nobody_adopts_them() {
    // Connections last 5 s past the last moment their bucket was open on
    // their node (longer than the drain period, 2 s).
    let mut sim = converged(&[1000, 1000, 1000], 46);
    sim.run(sim.settings.drain_ms + 200);
    sim.flow_life_ms = 5_000;
    sim.run(1_000);
    let new = sim.add_joiner(MemberId(4), 1000, 0, Keys::single(KEY));
    propose_until(&mut sim, 0, &add(4), 3_000, |s| (0..3).all(|i| in_directory(s, i, 4)));
    rejoins(&mut sim, new, 0.2);
    sim.run(1_000);
    propose_until(&mut sim, 1, &Change::Leave { id: MemberId(3) }, 3_000, |s| {
        s.agent(0)
            .unwrap()
            .directory()
            .get(MemberId(3))
            .is_none_or(|m| m.leaving)
    });
    let asked = sim.now;
    step_until(&mut sim, 5_000, "the leaving member kept buckets", |s| {
        s.agent(2).unwrap().held_count() == 0
    });
    let released = sim.now;
    let took = step_until(&mut sim, 15_000, "the leaving member never left", |s| {
        [0, 1, 3].iter().all(|&i| !in_directory(s, i, 3))
    });
    assert!(
        released + took >= asked + sim.flow_life_ms,
        "it left {} ms after it was asked to, before its connections ended",
        released + took - asked
    );
    served(&mut sim, &[0, 1, 3]);
    sim.run(8_000);
    assert_eq!(
        sim.adopted_while_served_ms, 0,
        "adopted where another served flows (first: ms, bucket, adopter, server) {:?}",
        sim.first_adopted_while_served
    );
    assert!(sim.all_open_once(&[0, 1, 3]));
    assert_exclusive(&sim, "a removal with connections");
}

#[test]
fn a_request_replayed_from_a_capture_changes_nothing() {
    let mut sim = converged(&[1000, 1000, 1000], 47);
    let new = sim.add_joiner(MemberId(4), 1000, 0, Keys::single(KEY));
    let follower = (0..3).find(|&i| Some(i) != leader(&sim)).unwrap();
    // What the follower sends when it asks (its request, forwarded to the
    // leader), as captured on the segment.
    let mut capture = Vec::new();
    let start = sim.now;
    while !(0..3).all(|i| in_directory(&sim, i, 4)) {
        assert!(sim.now < start + 3_000, "never added");
        if (sim.now - start).is_multiple_of(200) {
            let _ = sim.agent_mut(follower).unwrap().propose_change(add(4));
        }
        sim.step();
        capture.extend(sim.sent_by(follower));
    }
    rejoins(&mut sim, new, 0.2);
    propose_until(&mut sim, follower, &Change::Leave { id: MemberId(4) }, 3_000, |s| {
        (0..3).all(|i| !in_directory(s, i, 4))
    });
    served(&mut sim, &[0, 1, 2]);
    // Every captured datagram, the request among them, to every member.
    for bytes in &capture {
        for i in 0..3 {
            let local = sim.nodes[i].local(sim.now);
            let _ = sim.agent_mut(i).unwrap().receive(bytes, local);
        }
        sim.step();
    }
    sim.run(3_000);
    assert!(
        (0..3).all(|i| !in_directory(&sim, i, 4)),
        "a replayed request added it again"
    );
    assert!(closed(&sim, new));
    assert!(sim.all_open_once(&[0, 1, 2]));
    assert_exclusive(&sim, "replayed requests");
}
