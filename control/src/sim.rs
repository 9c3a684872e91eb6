//! A simulated cluster for the exchange: agents with clocks of their own
//! rates, simulated time in milliseconds, and a simulated network with loss,
//! duplication, delay (hence reordering), one-way links and partitions;
//! processes can be stalled, killed and restarted from their saved state.
//! Each node's *workers* are modelled apart from its agent: they keep the
//! last published view and lease deadline and judge it by their own clock,
//! so a stalled control loop is seen as it is in production.
//!
//! Used by the protocol's tests and by the cluster-scale benchmark (`cargo
//! run --release -p synshare-control --example scale`).

pub mod adversary;

use crate::directory::placeholder_address;
use crate::driver::{self, Io, Now};
use crate::layout::MemberId;
use crate::protocol::{Agent, Bootstrap, BucketState, Outgoing, Persisted, Settings};
use crate::wire::{Keys, Role};
use std::net::SocketAddr;

/// The key every simulated member shares unless told otherwise.
pub const KEY: &[u8] = b"test key";

struct InFlight {
    at: u64,
    from: SocketAddr,
    to: usize,
    bytes: Vec<u8>,
}

/// What a node's workers enforce: the last published view.
#[derive(Clone, Default)]
pub struct Workers {
    /// Buckets held, one bit each.
    pub held: Vec<u64>,
    /// Of those, the settled ones (unknown segments adopted), one bit each.
    pub settled: Vec<u64>,
    /// The version of that view.
    pub version: u64,
    /// Lease deadline, local ms.
    pub deadline: Option<u64>,
}

/// One simulated process's world during a driver step: the product's
/// driver sequence ([`driver::step`]) runs against it.
struct NodeIo<'a> {
    local: u64,
    out: &'a mut Vec<Outgoing>,
    saved: &'a mut Option<Persisted>,
    workers: &'a mut Workers,
    buckets: u32,
    /// The state cannot be saved in this step (the process dies in it).
    persist_fails: bool,
    /// Set once a save failed in this step.
    unsaved: bool,
    /// Durable messages sent after a failed save (must stay 0).
    durable_unsaved: &'a mut u64,
    /// The buckets its workers hold flows in (none: not modelled).
    presence: Option<Vec<u64>>,
}

impl Io for NodeIo<'_> {
    fn clock(&mut self) -> Now {
        Now {
            ms: self.local,
            stamp: self.local,
        }
    }

    fn send(&mut self, out: Outgoing) {
        if out.durable && self.unsaved {
            *self.durable_unsaved += 1;
        }
        self.out.push(out);
    }

    fn persist(&mut self, state: &Persisted) -> Result<(), String> {
        if self.persist_fails {
            self.unsaved = true;
            return Err("simulated crash in the write".into());
        }
        *self.saved = Some(state.clone());
        Ok(())
    }

    fn publish_view(&mut self, version: u64, rights: &[BucketState]) -> bool {
        let mut bits = vec![0u64; (self.buckets as usize).div_ceil(64)];
        let mut settled = bits.clone();
        for (b, r) in rights.iter().enumerate() {
            if *r != BucketState::Foreign {
                bits[b / 64] |= 1 << (b % 64);
            }
            if *r == BucketState::Settled {
                settled[b / 64] |= 1 << (b % 64);
            }
        }
        self.workers.held = bits;
        self.workers.settled = settled;
        self.workers.version = version;
        // The workers take it at once.
        true
    }

    fn in_force(&mut self) -> u64 {
        self.workers.version
    }

    fn set_deadline(&mut self, until: Option<u64>, at: Now, guard_ms: u64) {
        let d = driver::worker_deadline(until, at, guard_ms, 1);
        self.workers.deadline = (d > 0).then_some(d);
    }

    fn flow_presence(&mut self) -> Option<Vec<u64>> {
        self.presence.clone()
    }
}

/// One simulated process.
pub struct Node {
    /// Its member id.
    pub id: MemberId,
    /// Node or coordinator.
    pub role: Role,
    /// The agent; `None` while killed.
    pub agent: Option<Agent>,
    /// Configured weight.
    pub weight: u32,
    /// Its keys.
    pub keys: Keys,
    /// The members it is configured with.
    pub members: Vec<MemberId>,
    /// Its exchange address (datagrams are routed by address, as the
    /// agents' directories give them).
    pub address: SocketAddr,
    /// Started with `join` at this address instead of `members`.
    pub join: Option<SocketAddr>,
    /// Clock rate (local ms per real ms) and offset.
    pub clock: (f64, u64),
    /// Not run before this real time.
    pub stalled_until: u64,
    /// What it saved last.
    pub saved: Option<Persisted>,
    /// What its workers enforce.
    pub workers: Workers,
}

impl Node {
    /// Its local clock at real time `now`.
    pub fn local(&self, now: u64) -> u64 {
        self.clock.1 + (now as f64 * self.clock.0) as u64
    }

    /// Whether its workers take new connections in `bucket` at real `now`.
    pub fn open(&self, bucket: u32, now: u64) -> bool {
        self.agent.is_some()
            && self.workers.deadline.is_some_and(|d| self.local(now) < d)
            && self
                .workers
                .held
                .get(bucket as usize / 64)
                .is_some_and(|w| w & (1 << (bucket % 64)) != 0)
    }
}

/// A simulated cluster. Node `i` (index) has id `i + 1` unless built
/// otherwise.
pub struct Sim {
    /// Simulated (real) time, ms.
    pub now: u64,
    /// The processes.
    pub nodes: Vec<Node>,
    /// The settings every agent starts with.
    pub settings: Settings,
    rng: u64,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub dup: f64,
    /// Delivery delay range, ms (inclusive).
    pub delay: (u64, u64),
    in_flight: Vec<InFlight>,
    /// `blocked[a][b]`: nothing from a reaches b.
    pub blocked: Vec<Vec<bool>>,
    /// `blocked_consensus[a][b]`: a's consensus messages do not reach b
    /// (its heartbeats do).
    pub blocked_consensus: Vec<Vec<bool>>,
    /// Junk datagrams delivered to every node each millisecond.
    pub junk_per_ms: usize,
    /// Heartbeat bytes sent (UDP payload), per node.
    pub bytes_sent: Vec<u64>,
    /// Milliseconds in which some bucket was open on two nodes.
    pub double_open_ms: u64,
    /// The first such moment (for diagnostics).
    pub first_double: Option<(u64, u32)>,
    /// How long a frame a worker accepted may take to reach its kernel:
    /// a bucket counts as open on a node for this long after its workers
    /// closed it (the driver's guard must cover it).
    pub transit_ms: u64,
    /// Per node: buckets its workers closed when their lease deadline
    /// passed, recently: (real ms, view version then, bits).
    lingering: Vec<Vec<(u64, u64, Vec<u64>)>>,
    /// Per node: buckets open on its workers at the last step.
    open_before: Vec<Vec<u64>>,
    /// Per node: the view version its workers held at the last step.
    version_before: Vec<u64>,
    /// Nodes whose next state write fails: the process dies in it.
    pub crash_in_persist: Vec<usize>,
    /// Durable messages sent after a failed save (the driver must withhold
    /// them).
    pub durable_unsaved: u64,
    /// Per node: the datagrams it sent in the last step (a capture).
    last_out: Vec<Vec<Vec<u8>>>,
    /// How long connections live after their bucket was last open on a
    /// node (0: flows are not modelled): a node serves flows in a bucket
    /// for this long after it stopped taking new connections there.
    pub flow_life_ms: u64,
    /// Per node, per bucket: until when (real ms) it serves flows there.
    flows_until: Vec<Vec<u64>>,
    /// Milliseconds in which some node adopted unknown segments (settled)
    /// in a bucket where another running node still served flows.
    pub adopted_while_served_ms: u64,
    /// The first such moment: (real ms, bucket, adopting node, serving node).
    pub first_adopted_while_served: Option<(u64, u32, usize, usize)>,
    /// The longest a bucket stayed held but not settled on a node (under a
    /// lease) while no other node served flows in it, ms: how late a
    /// bucket settles once its previous holder stops serving it.
    pub settle_lag_max_ms: u64,
    /// Per node, per bucket: since when it has been held, unsettled and
    /// served nowhere else (0: not so).
    unsettled_since: Vec<Vec<u64>>,
}

impl Sim {
    /// Nodes with these weights (thousandths), ids 1.., all started at 0.
    pub fn new(weights: &[u32], settings: Settings, seed: u64) -> Sim {
        let ids: Vec<MemberId> = (0..weights.len()).map(|i| MemberId(i as u32 + 1)).collect();
        let mut sim = Sim {
            now: 0,
            nodes: Vec::new(),
            settings,
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            loss: 0.0,
            dup: 0.0,
            delay: (1, 1),
            in_flight: Vec::new(),
            blocked: Vec::new(),
            blocked_consensus: Vec::new(),
            junk_per_ms: 0,
            bytes_sent: Vec::new(),
            double_open_ms: 0,
            first_double: None,
            transit_ms: 0,
            lingering: Vec::new(),
            open_before: Vec::new(),
            version_before: Vec::new(),
            crash_in_persist: Vec::new(),
            durable_unsaved: 0,
            last_out: Vec::new(),
            flow_life_ms: 0,
            flows_until: Vec::new(),
            adopted_while_served_ms: 0,
            first_adopted_while_served: None,
            settle_lag_max_ms: 0,
            unsettled_since: Vec::new(),
        };
        sim.transit_ms = sim.settings.worker_guard_ms();
        for (i, &w) in weights.iter().enumerate() {
            sim.add(ids[i], Role::Node, w, &ids, Keys::single(KEY));
        }
        sim
    }

    /// Adds a process with `id`, configured with `members`.
    pub fn add(&mut self, id: MemberId, role: Role, weight: u32, members: &[MemberId], keys: Keys) -> usize {
        let settings = self.settings_of(role);
        let agent = Agent::new(id, members, 1, settings, keys.clone(), weight, None, 0).expect("a fresh agent starts");
        self.push_node(id, role, agent, weight, keys, members.to_vec(), None)
    }

    /// Adds a node with `id` started with `join` at node `via`'s address
    /// (it knows the key and that address, nothing else), at the current
    /// time: it holds nothing until a member proposes it
    /// ([`crate::protocol::Agent::propose_change`]).
    pub fn add_joiner(&mut self, id: MemberId, weight: u32, via: usize, keys: Keys) -> usize {
        let settings = self.settings_of(Role::Node);
        let join = self.nodes[via].address;
        // Its clock reads the simulated time (rate 1, no offset).
        let agent = Agent::start(
            id,
            Bootstrap::Join(join),
            1,
            settings,
            keys.clone(),
            weight,
            None,
            self.now,
        )
        .expect("a joining agent starts");
        self.push_node(id, Role::Node, agent, weight, keys, Vec::new(), Some(join))
    }

    #[allow(clippy::too_many_arguments)]
    fn push_node(
        &mut self,
        id: MemberId,
        role: Role,
        agent: Agent,
        weight: u32,
        keys: Keys,
        members: Vec<MemberId>,
        join: Option<SocketAddr>,
    ) -> usize {
        self.nodes.push(Node {
            id,
            role,
            agent: Some(agent),
            weight,
            keys,
            members,
            address: placeholder_address(id),
            join,
            clock: (1.0, 0),
            stalled_until: 0,
            saved: None,
            workers: Workers::default(),
        });
        let n = self.nodes.len();
        for matrix in [&mut self.blocked, &mut self.blocked_consensus] {
            for row in matrix.iter_mut() {
                row.resize(n, false);
            }
            matrix.push(vec![false; n]);
        }
        self.bytes_sent.resize(n, 0);
        self.lingering.resize(n, Vec::new());
        self.open_before.resize(n, Vec::new());
        self.version_before.resize(n, 0);
        self.last_out.resize(n, Vec::new());
        self.flows_until.resize(n, Vec::new());
        self.unsettled_since.resize(n, Vec::new());
        n - 1
    }

    /// The settings a process of `role` starts with: a coordinator's as the
    /// product gives it (it holds nothing, so no drain period).
    fn settings_of(&self, role: Role) -> Settings {
        Self::settings_for(&self.settings, role)
    }

    fn settings_for(base: &Settings, role: Role) -> Settings {
        let mut settings = base.clone();
        settings.role = role;
        if role == Role::Coordinator {
            settings.drain_ms = 0;
            settings.rules_digest = 0;
        }
        settings
    }

    /// A pseudo-random number.
    pub fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.rand() % 1_000_000) as f64 / 1_000_000.0 < p
    }

    fn delay(&mut self) -> u64 {
        let (lo, hi) = self.delay;
        lo + self.rand() % (hi - lo + 1)
    }

    /// Cuts `a` off from everyone, both ways (or heals it).
    pub fn isolate(&mut self, a: usize, cut: bool) {
        for b in 0..self.nodes.len() {
            if a != b {
                self.blocked[a][b] = cut;
                self.blocked[b][a] = cut;
            }
        }
    }

    /// Splits the cluster into the sides given (node → side).
    pub fn partition(&mut self, side: &[u8]) {
        for a in 0..self.nodes.len() {
            for b in 0..self.nodes.len() {
                self.blocked[a][b] = side[a] != side[b];
            }
        }
    }

    /// Heals every link.
    pub fn heal(&mut self) {
        for row in self.blocked.iter_mut() {
            row.iter_mut().for_each(|x| *x = false);
        }
    }

    fn running(&self, i: usize) -> bool {
        self.nodes[i].agent.is_some() && self.now >= self.nodes[i].stalled_until
    }

    /// Advances one millisecond: delivers what is due, lets every running
    /// agent tick, sends what it says, publishes to its workers, and checks
    /// that no bucket is open on two nodes.
    pub fn step(&mut self) {
        self.now += 1;
        let now = self.now;
        self.deliver_due(now);
        self.deliver_junk(now);
        for i in 0..self.nodes.len() {
            self.last_out[i].clear();
            if let Some(out) = self.drive(i, now) {
                self.last_out[i] = out.iter().map(|o| o.bytes.clone()).collect();
                self.send(i, out, now);
            }
        }
        self.linger();
        self.serve_flows();
        if let Some(b) = self.double_open() {
            self.double_open_ms += 1;
            self.first_double.get_or_insert((now, b));
        }
    }

    /// Delivers the datagrams due at `now` to nodes not stalled.
    fn deliver_due(&mut self, now: u64) {
        let mut due = Vec::new();
        let mut keep = Vec::new();
        for m in self.in_flight.drain(..) {
            if m.at <= now && now >= self.nodes[m.to].stalled_until {
                due.push(m);
            } else {
                keep.push(m);
            }
        }
        self.in_flight = keep;
        for m in due {
            let local = self.nodes[m.to].local(now);
            if let Some(a) = self.nodes[m.to].agent.as_mut() {
                let _ = a.receive_from(&m.bytes, m.from, local);
            }
        }
    }

    /// Garbage to every node, `junk_per_ms` datagrams each.
    fn deliver_junk(&mut self, now: u64) {
        if self.junk_per_ms > 0 {
            for i in 0..self.nodes.len() {
                for k in 0..self.junk_per_ms {
                    let junk: Vec<u8> = (0..64 + k % 200).map(|j| (self.rand() as u8) ^ j as u8).collect();
                    let local = self.nodes[i].local(now);
                    if let Some(a) = self.nodes[i].agent.as_mut() {
                        let _ = a.receive(&junk, local);
                    }
                }
            }
        }
    }

    /// Runs node `i`'s driver once: what it sends, or None when it does
    /// not run (dead or stalled).
    fn drive(&mut self, i: usize, now: u64) -> Option<Vec<Outgoing>> {
        if !self.running(i) {
            return None;
        }
        let local = self.nodes[i].local(now);
        let crash = self.crash_in_persist.contains(&i);
        let buckets = self.settings.buckets;
        let presence = self.presence_of(i);
        let mut out = Vec::new();
        let node = &mut self.nodes[i];
        let agent = node.agent.as_mut()?;
        let mut io = NodeIo {
            local,
            out: &mut out,
            saved: &mut node.saved,
            workers: &mut node.workers,
            buckets,
            persist_fails: crash,
            unsaved: false,
            durable_unsaved: &mut self.durable_unsaved,
            presence,
        };
        let report = driver::step(agent, &mut io);
        if crash && report.persist_error.is_some() {
            // What left before the write failed is on its way; the
            // process is gone.
            self.crash_in_persist.retain(|&c| c != i);
            self.kill(i);
        }
        Some(out)
    }

    /// Puts node `i`'s datagrams `out` on their way: by address, through
    /// the links' cuts, loss, delay and duplication.
    fn send(&mut self, i: usize, out: Vec<Outgoing>, now: u64) {
        for o in out {
            // By address; a broadcast also reaches another process with
            // the sender's id (a duplicate: on one segment it would
            // hear the sender's heartbeats).
            let targets: Vec<usize> = (0..self.nodes.len())
                .filter(|&j| {
                    j != i
                        && (o.addresses.contains(&self.nodes[j].address)
                            || (o.to.is_none() && self.nodes[j].id == self.nodes[i].id))
                })
                .collect();
            let from = self.nodes[i].address;
            for j in targets {
                self.bytes_sent[i] += o.bytes.len() as u64;
                // Consensus messages go to one member, heartbeats to all.
                let consensus = o.to.is_some();
                if self.blocked[i][j] || (consensus && self.blocked_consensus[i][j]) || self.chance(self.loss) {
                    continue;
                }
                // The delay, then whether it is duplicated and the
                // copy's delay: the random draws in the order they were.
                let at = now + self.delay();
                let copy_at = self.chance(self.dup).then(|| now + self.delay());
                for at in std::iter::once(at).chain(copy_at) {
                    self.in_flight.push(InFlight {
                        at,
                        from,
                        to: j,
                        bytes: o.bytes.clone(),
                    });
                }
            }
        }
    }

    /// The buckets node `i` serves flows in now (none when flows are not
    /// modelled).
    fn presence_of(&self, i: usize) -> Option<Vec<u64>> {
        if self.flow_life_ms == 0 {
            return None;
        }
        let mut bits = vec![0u64; (self.settings.buckets as usize).div_ceil(64)];
        for (b, until) in self.flows_until[i].iter().enumerate() {
            if *until > self.now {
                bits[b / 64] |= 1 << (b % 64);
            }
        }
        Some(bits)
    }

    /// Flows follow the workers: a bucket open on a node gets connections
    /// that live `flow_life_ms` past its last moment open there (a dead
    /// process's end with it). Checks that no node adopts unknown segments
    /// (its workers hold the bucket settled, under a lease) where another
    /// running node still serves flows.
    fn serve_flows(&mut self) {
        if self.flow_life_ms == 0 {
            return;
        }
        let buckets = self.settings.buckets as usize;
        for i in 0..self.nodes.len() {
            if self.nodes[i].agent.is_none() {
                self.flows_until[i].clear();
                continue;
            }
            self.flows_until[i].resize(buckets, 0);
            for b in 0..buckets {
                if self.nodes[i].open(b as u32, self.now) {
                    self.flows_until[i][b] = self.now + self.flow_life_ms;
                }
            }
        }
        for a in 0..self.nodes.len() {
            let n = &self.nodes[a];
            if !(n.agent.is_some() && n.workers.deadline.is_some_and(|d| n.local(self.now) < d)) {
                self.unsettled_since[a].clear();
                continue;
            }
            self.unsettled_since[a].resize(buckets, 0);
            for b in 0..buckets.min(n.workers.settled.len() * 64) {
                let held = n.workers.held.get(b / 64).is_some_and(|w| w & (1 << (b % 64)) != 0);
                let settled = n.workers.settled[b / 64] & (1 << (b % 64)) != 0;
                let served_elsewhere =
                    (0..self.nodes.len()).any(|s| s != a && self.flows_until[s].get(b).is_some_and(|u| *u > self.now));
                if held && !settled && !served_elsewhere {
                    let since = &mut self.unsettled_since[a][b];
                    if *since == 0 {
                        *since = self.now;
                    }
                    self.settle_lag_max_ms = self.settle_lag_max_ms.max(self.now - *since);
                } else {
                    self.unsettled_since[a][b] = 0;
                }
                if !settled {
                    continue;
                }
                if let Some(s) =
                    (0..self.nodes.len()).find(|&s| s != a && self.flows_until[s].get(b).is_some_and(|u| *u > self.now))
                {
                    self.adopted_while_served_ms += 1;
                    self.first_adopted_while_served
                        .get_or_insert((self.now, b as u32, a, s));
                    return;
                }
            }
        }
    }

    /// Buckets open on node `i`'s workers now, one bit each.
    fn open_bits(&self, i: usize) -> Vec<u64> {
        let n = &self.nodes[i];
        let words = (self.settings.buckets as usize).div_ceil(64);
        if n.agent.is_some() && n.workers.deadline.is_some_and(|d| n.local(self.now) < d) {
            let mut bits = n.workers.held.clone();
            bits.resize(words, 0);
            bits
        } else {
            vec![0; words]
        }
    }

    /// Records which nodes' workers closed for want of a lease since the
    /// last step: a frame a worker accepted just before its deadline may
    /// still be on its way to the kernel for `transit_ms` (a worker that
    /// stalls between its lease check and its transmit). A view a worker
    /// confirmed needs no such allowance: it takes a view between bursts,
    /// after everything decided under the old one was transmitted (so a
    /// newer view confirmed ends the allowance too).
    fn linger(&mut self) {
        for i in 0..self.nodes.len() {
            let open = self.open_bits(i);
            let n = &self.nodes[i];
            let leased = n.agent.is_some() && n.workers.deadline.is_some_and(|d| n.local(self.now) < d);
            let version = n.workers.version;
            let before = std::mem::replace(&mut self.open_before[i], open);
            let same_view = std::mem::replace(&mut self.version_before[i], version) == version;
            if n.agent.is_some() && !leased && same_view && before.iter().any(|w| *w != 0) {
                self.lingering[i].push((self.now, version, before));
            }
            let horizon = self.now.saturating_sub(self.transit_ms);
            self.lingering[i].retain(|(at, v, _)| *at > horizon && *v == version);
        }
    }

    /// A bucket open on two nodes now (counting frames still on their way
    /// to a kernel), if any.
    pub fn double_open(&self) -> Option<u32> {
        let words = (self.settings.buckets as usize).div_ceil(64);
        let mut seen = vec![0u64; words];
        for i in 0..self.nodes.len() {
            let mut open = self.open_bits(i);
            for (_, _, closed) in &self.lingering[i] {
                open.iter_mut().zip(closed).for_each(|(o, c)| *o |= c);
            }
            for (w, (s, h)) in seen.iter_mut().zip(&open).enumerate() {
                if *s & h != 0 {
                    return Some((w * 64) as u32 + (*s & h).trailing_zeros());
                }
                *s |= h;
            }
        }
        None
    }

    /// Runs `ms` milliseconds.
    pub fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    /// Runs until every bucket is open on exactly one of `nodes` (at most
    /// `limit` ms); returns how long it took.
    pub fn run_until_served(&mut self, nodes: &[usize], limit: u64) -> Option<u64> {
        let start = self.now;
        while self.now < start + limit {
            if self.all_open_once(nodes) {
                return Some(self.now - start);
            }
            self.step();
        }
        self.all_open_once(nodes).then_some(self.now - start)
    }

    /// On how many nodes `bucket` is open now.
    pub fn open_count(&self, bucket: u32) -> usize {
        self.nodes.iter().filter(|n| n.open(bucket, self.now)).count()
    }

    /// Every bucket open on exactly one of `nodes` (and on no other node).
    pub fn all_open_once(&self, nodes: &[usize]) -> bool {
        (0..self.settings.buckets)
            .all(|b| self.open_count(b) == 1 && nodes.iter().filter(|&&i| self.nodes[i].open(b, self.now)).count() == 1)
    }

    /// Every bucket held by exactly one live agent (by counts only: cheap,
    /// for large clusters).
    pub fn all_held_count(&self) -> bool {
        self.nodes
            .iter()
            .filter_map(|n| n.agent.as_ref())
            .map(|a| u64::from(a.held_count()))
            .sum::<u64>()
            == u64::from(self.settings.buckets)
    }

    /// Kills node `i` (it sends and receives nothing more).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].agent = None;
        self.nodes[i].workers = Workers::default();
    }

    /// Stops node `i` (the whole process, workers too) for `ms`.
    pub fn stall(&mut self, i: usize, ms: u64) {
        self.nodes[i].stalled_until = self.now + ms;
    }

    /// Restarts node `i` from its saved state, with the next incarnation.
    pub fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let saved = n.saved.clone();
        let incarnation = saved.as_ref().map_or(1, |p| p.incarnation) + 1;
        let settings = Self::settings_for(&self.settings, n.role);
        let local = n.local(self.now);
        let bootstrap = match n.join {
            Some(at) => Bootstrap::Join(at),
            None => Bootstrap::Members(
                n.members
                    .iter()
                    .chain(std::iter::once(&n.id))
                    .map(|m| (*m, placeholder_address(*m)))
                    .collect(),
            ),
        };
        n.agent = Some(
            Agent::start(
                n.id,
                bootstrap,
                incarnation,
                settings,
                n.keys.clone(),
                n.weight,
                saved,
                local,
            )
            .expect("a saved state restarts"),
        );
        n.workers = Workers::default();
    }

    /// What node `i` sent in the last step, as captured on the segment.
    pub fn sent_by(&self, i: usize) -> Vec<Vec<u8>> {
        self.last_out[i].clone()
    }

    /// Node `i`'s agent.
    pub fn agent(&self, i: usize) -> Option<&Agent> {
        self.nodes[i].agent.as_ref()
    }

    /// Node `i`'s agent, mutably.
    pub fn agent_mut(&mut self, i: usize) -> Option<&mut Agent> {
        self.nodes[i].agent.as_mut()
    }

    /// Node `i`'s share of the buckets (held).
    pub fn share(&self, i: usize) -> f64 {
        self.agent(i)
            .map_or(0.0, |a| f64::from(a.held_count()) / f64::from(self.settings.buckets))
    }
}
