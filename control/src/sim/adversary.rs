//! An attacker on the segment, for the simulator: it has a capture of
//! every datagram the members ever sent but not the key, and it replays,
//! reorders, reflects and garbles them, while members restart, die, stall
//! and lose links. Driven by bytes, so the `exchange` fuzz target and a
//! unit test over random inputs run the same thing; checked by the
//! simulator's ownership oracle at every simulated millisecond, and at the
//! end by liveness: once links heal and the dead are restarted, every
//! bucket is open on exactly one member again.
//!
//! With [`Options::joiner`], a fourth node started with `join` is part of
//! it: added through the log (proposed at one member or another, while the
//! attack goes on), and attacked as the others are (it takes datagrams
//! from any source until it knows the directory); at the end it must be a
//! member and serve its share.

use super::{Sim, KEY};
use crate::directory::{placeholder_address, Change};
use crate::layout::{Layout, MemberId};
use crate::protocol::Settings;
use crate::wire::Keys;

/// Members in the simulated cluster.
pub const MEMBERS: usize = 3;
/// Buckets (few: the fuzzer runs many inputs a second).
pub const BUCKETS: u32 = 256;
/// Operations read from one input at most.
pub const MAX_OPS: usize = 256;
/// Datagrams the attacker keeps (the newest; older ones are overwritten
/// at random, so old and new stay mixed).
const POOL: usize = 1024;

/// What a run includes beyond the attack.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Operations from 240 up start and add a member with `join` (member
    /// `MEMBERS + 1`) instead of what they do otherwise.
    pub joiner: bool,
}

/// The joining member's id.
const JOINER: MemberId = MemberId(MEMBERS as u32 + 1);

fn add_joiner() -> Change {
    Change::Add {
        id: JOINER,
        address: placeholder_address(JOINER),
        weight_milli: 1000,
    }
}

/// What a run did, for a fuzzer's or a test's own checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Simulated milliseconds.
    pub ms: u64,
    /// Datagrams the attacker delivered.
    pub injected: u64,
    /// Of those, the ones an agent accepted.
    pub accepted: u64,
    /// Restarts.
    pub restarts: u64,
    /// Proposals to add the joining member.
    pub proposals: u64,
}

struct Attack {
    sim: Sim,
    /// Captured datagrams: (sender index, bytes).
    pool: Vec<(usize, Vec<u8>)>,
    out: Outcome,
}

impl Attack {
    /// One millisecond, capturing what everyone sent, and the oracle.
    fn step(&mut self) -> Result<(), String> {
        self.sim.step();
        self.out.ms += 1;
        for i in 0..self.sim.nodes.len() {
            for bytes in self.sim.sent_by(i) {
                if self.pool.len() < POOL {
                    self.pool.push((i, bytes));
                } else {
                    let at = (self.sim.rand() as usize) % POOL;
                    self.pool[at] = (i, bytes);
                }
            }
        }
        if self.sim.double_open_ms > 0 {
            return Err(format!(
                "a bucket open on two members at {:?} (ms, bucket)",
                self.sim.first_double
            ));
        }
        Ok(())
    }

    /// Delivers `bytes` to member `to` now, as if from the segment.
    fn deliver(&mut self, to: usize, bytes: &[u8]) {
        let local = self.sim.nodes[to].local(self.sim.now);
        if let Some(a) = self.sim.agent_mut(to) {
            self.out.injected += 1;
            if a.receive(bytes, local).is_ok() {
                self.out.accepted += 1;
            }
        }
    }

    fn pick(&self, k: u8, spread: u8) -> Option<Vec<u8>> {
        if self.pool.is_empty() {
            return None;
        }
        let at = (usize::from(k) * 4 + usize::from(spread)) % self.pool.len();
        Some(self.pool[at].1.clone())
    }
}

/// Runs the attack `data` describes: a seed byte, then operations of three
/// bytes each (`op`, `a`, `b`). Returns what it did, or what went wrong: a
/// bucket open on two members at some millisecond, or a cluster that does
/// not serve every bucket again once the attack ends.
pub fn run(data: &[u8]) -> Result<Outcome, String> {
    run_with(data, Options::default())
}

/// [`run`], with what `options` add.
pub fn run_with(data: &[u8], options: Options) -> Result<Outcome, String> {
    let Some((&seed, ops)) = data.split_first() else {
        return Ok(Outcome::default());
    };
    let mut at = Attack::converged(seed)?;
    for op in ops.chunks_exact(3).take(MAX_OPS) {
        if options.joiner && op[0] >= 240 {
            at.join(op[1], op[2])?;
        } else {
            at.op(op[0], op[1], op[2])?;
        }
    }
    at.end();
    at.add_joiner_for_good()?;
    at.until_served()
}

impl Attack {
    /// A converged cluster of [`MEMBERS`] to attack, from `seed`.
    fn converged(seed: u8) -> Result<Attack, String> {
        let settings = Settings {
            buckets: BUCKETS,
            layout: Layout::Ranges,
            drain_ms: 1_000,
            ..Settings::default()
        };
        let mut sim = Sim::new(&[1000; MEMBERS], settings, u64::from(seed) + 1);
        sim.delay = (1, 3);
        let all: Vec<usize> = (0..MEMBERS).collect();
        if sim.run_until_served(&all, 10_000).is_none() {
            return Err("the cluster did not converge before the attack".into());
        }
        Ok(Attack {
            sim,
            pool: Vec::new(),
            out: Outcome::default(),
        })
    }

    /// The joiner starts (once, at a member's address), and a member
    /// proposes to add it (again: most proposals find no leader, another
    /// change under way, or it added already).
    fn join(&mut self, a: u8, b: u8) -> Result<(), String> {
        if self.sim.nodes.len() == MEMBERS {
            self.sim
                .add_joiner(JOINER, 1000, usize::from(a) % MEMBERS, Keys::single(KEY));
        }
        if let Some(m) = self.sim.agent_mut(usize::from(b) % MEMBERS) {
            let _ = m.propose_change(add_joiner());
            self.out.proposals += 1;
        }
        self.step()
    }

    /// One operation of the attack: `code` says which, `a` and `b` how.
    fn op(&mut self, code: u8, a: u8, b: u8) -> Result<(), String> {
        let n = self.sim.nodes.len();
        let node = usize::from(a) % n;
        match code % 12 {
            // Time passes.
            0..=2 => {
                for _ in 0..=(b % 128) {
                    self.step()?;
                }
            }
            // A captured datagram replayed to a member (its own: reflected).
            3 | 4 => {
                if let Some(d) = self.pick(b, a >> 2) {
                    self.deliver(node, &d);
                }
                self.step()?;
            }
            // Garbled: one byte flipped.
            5 => {
                if let Some(mut d) = self.pick(b, 0) {
                    let i = usize::from(a) % d.len().max(1);
                    if let Some(x) = d.get_mut(i) {
                        *x ^= 1 << (b % 8);
                    }
                    self.deliver(node, &d);
                }
                self.step()?;
            }
            // Reordered: a run of captured datagrams, newest first.
            6 => {
                let n = self.pool.len();
                for k in 0..(usize::from(b % 16)).min(n) {
                    let d = self.pool[n - 1 - k].1.clone();
                    self.deliver(node, &d);
                }
                self.step()?;
            }
            // A restart (of a dead member too).
            7 => {
                self.sim.restart(node);
                self.out.restarts += 1;
                self.step()?;
            }
            // A death.
            8 => {
                self.sim.kill(node);
                self.step()?;
            }
            // Links: cut both ways, one way, or healed.
            9 => {
                let other = (node + 1 + usize::from(b) % (n - 1)) % n;
                match b % 4 {
                    0 => self.sim.isolate(node, true),
                    1 => self.sim.blocked[node][other] = true,
                    2 => self.sim.blocked_consensus[node][other] = true,
                    _ => self.sim.heal(),
                }
                self.step()?;
            }
            // A stall of the whole process.
            10 => {
                self.sim.stall(node, u64::from(b) * 4);
                self.step()?;
            }
            // Loss and duplication on the network.
            _ => {
                self.sim.loss = f64::from(b % 64) / 256.0;
                self.sim.dup = f64::from(a % 64) / 256.0;
                self.step()?;
            }
        }
        Ok(())
    }

    /// The attack ends: links heal, the network is clean, the dead restart.
    fn end(&mut self) {
        self.sim.heal();
        for row in self.sim.blocked_consensus.iter_mut() {
            row.iter_mut().for_each(|x| *x = false);
        }
        self.sim.loss = 0.0;
        self.sim.dup = 0.0;
        for i in 0..self.sim.nodes.len() {
            if self.sim.agent(i).is_none() {
                self.sim.restart(i);
                self.out.restarts += 1;
            }
        }
    }

    /// A joiner started is added for good (the attack may have cut its
    /// addition short).
    fn add_joiner_for_good(&mut self) -> Result<(), String> {
        let n = self.sim.nodes.len();
        if n == MEMBERS {
            return Ok(());
        }
        for t in 0..20_000u64 {
            if (0..n).all(|i| self.sim.agent(i).is_some_and(|a| a.directory().contains(JOINER))) {
                return Ok(());
            }
            if t % 200 == 0 {
                if let Some(m) = self.sim.agent_mut((t / 200) as usize % MEMBERS) {
                    let _ = m.propose_change(add_joiner());
                }
            }
            self.step()?;
        }
        Err("20 s after the attack the joining member is not in every directory".into())
    }

    /// Liveness: within 20 s every bucket is open on exactly one member,
    /// and a joiner holds some.
    fn until_served(mut self) -> Result<Outcome, String> {
        let n = self.sim.nodes.len();
        let all: Vec<usize> = (0..n).collect();
        for _ in 0..20_000 {
            if self.sim.all_open_once(&all) && (n == MEMBERS || self.sim.share(MEMBERS) > 0.0) {
                return Ok(self.out);
            }
            self.step()?;
        }
        Err(format!(
            "20 s after the attack not every bucket is open on exactly one member (or the joiner holds none): shares {:?}, fenced {:?}",
            (0..n).map(|i| self.sim.share(i)).collect::<Vec<_>>(),
            (0..n)
                .map(|i| self.sim.agent(i).is_some_and(|a| a.duplicate()))
                .collect::<Vec<_>>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seed byte and 64 operations from the xorshift state `x`.
    fn random_input(x: &mut u64) -> Vec<u8> {
        (0..1 + 3 * 64)
            .map(|_| {
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                *x as u8
            })
            .collect()
    }

    /// Random attacks: none opens a bucket twice or leaves the cluster
    /// unable to serve. (The fuzz target `exchange` searches further.)
    #[test]
    fn random_attacks_on_the_exchange_break_neither_ownership_nor_service() {
        let mut x: u64 = 0x5eed_1234_abcd_0001;
        let mut totals = Outcome::default();
        for case in 0..300 {
            let data = random_input(&mut x);
            match run(&data) {
                Ok(o) => {
                    totals.ms += o.ms;
                    totals.injected += o.injected;
                    totals.accepted += o.accepted;
                    totals.restarts += o.restarts;
                }
                Err(e) => panic!("case {case}: {e}\ninput: {data:?}"),
            }
        }
        // The attacks did happen: datagrams delivered, some of them
        // authentic and fresh enough to be taken, restarts.
        assert!(totals.injected > 500, "{totals:?}");
        assert!(totals.restarts > 10, "{totals:?}");
    }

    /// Random attacks while a member joins: it starts with `join`, is
    /// proposed at one member or another amid replays, restarts, deaths
    /// and cut links, and is attacked as the others; no bucket is ever
    /// open twice, and at the end it is a member that serves.
    #[test]
    fn random_attacks_while_a_member_joins_break_neither_ownership_nor_service() {
        let mut x: u64 = 0x5eed_1234_abcd_0002;
        let mut totals = Outcome::default();
        let mut joined = 0;
        for case in 0..150 {
            let mut data = random_input(&mut x);
            // A join early in most cases (the rest of the ops may add
            // more proposals).
            if case % 4 != 0 {
                data[1 + 3 * (case % 8)] = 250;
            }
            match run_with(&data, Options { joiner: true }) {
                Ok(o) => {
                    totals.injected += o.injected;
                    totals.restarts += o.restarts;
                    totals.proposals += o.proposals;
                    joined += usize::from(o.proposals > 0);
                }
                Err(e) => panic!("case {case}: {e}\ninput: {data:?}"),
            }
        }
        assert!(joined > 100, "{joined} runs with a joiner, {totals:?}");
        assert!(totals.injected > 500 && totals.restarts > 10, "{totals:?}");
    }

    /// Found by the random attacks: a member down while a new leader's
    /// empty entry was applied, the others restarted after it, could not
    /// get a lease back (the applied index a restart started from counted
    /// the empty entry; those that applied it live did not).
    #[test]
    fn a_member_back_after_the_others_restarted_past_an_empty_entry_serves_again() {
        const INPUT: [u8; 115] = [
            91, 43, 83, 159, 30, 178, 145, 26, 144, 95, 9, 231, 86, 38, 204, 67, 179, 20, 4, 232, 205, 144, 1, 69, 23,
            131, 60, 216, 65, 121, 133, 176, 147, 124, 196, 233, 168, 51, 41, 57, 197, 124, 96, 12, 22, 230, 243, 162,
            119, 53, 1, 77, 211, 158, 123, 119, 47, 105, 3, 215, 60, 58, 162, 157, 138, 171, 18, 204, 177, 44, 236, 61,
            69, 201, 86, 40, 104, 146, 51, 31, 229, 240, 33, 211, 242, 243, 204, 103, 95, 23, 69, 91, 83, 185, 232,
            109, 251, 110, 192, 27, 57, 253, 250, 119, 195, 194, 189, 10, 94, 84, 30, 238, 205, 152, 217,
        ];
        let out = run(&INPUT).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.restarts >= 5, "{out:?}");
    }

    /// The oracle sees a double open when there is one: two members given
    /// the same bucket by hand (the attack's check is not vacuous).
    #[test]
    fn the_attack_oracle_reports_a_bucket_open_twice() {
        let settings = Settings {
            buckets: BUCKETS,
            layout: Layout::Ranges,
            ..Settings::default()
        };
        let mut sim = Sim::new(&[1000; MEMBERS], settings, 7);
        sim.run_until_served(&[0, 1, 2], 10_000).expect("converges");
        assert_eq!(sim.double_open_ms, 0);
        let mut at = Attack {
            sim,
            pool: Vec::new(),
            out: Outcome::default(),
        };
        let held0 = at.sim.nodes[0].workers.held.clone();
        // Node 1's workers told they hold node 0's buckets too, under a
        // long lease.
        let w = &mut at.sim.nodes[1].workers;
        w.held.iter_mut().zip(&held0).for_each(|(h, o)| *h |= o);
        w.deadline = Some(u64::MAX);
        assert!(at.step().is_err());
    }
}
