//! The exchange's driving sequence, once, for the node and the simulator
//! alike: the [`Agent`] is a state machine with no I/O; [`step`] is the
//! order in which its outputs meet the world, which the ownership guarantee
//! depends on as much as on the agent itself:
//!
//! 1. read the clock (the workers' stamp first, then the agent's ms);
//! 2. tick the agent;
//! 3. send what rests on nothing saved (heartbeats, a leader's appends);
//! 4. save the consensus state durably, and only then send what rests on it
//!    (votes, acknowledgements); if it cannot be saved, those never leave;
//! 5. publish the view when it changed, and the workers' lease deadline,
//!    counted from the clock reading of step 1 and ending a guard sooner;
//! 6. once every worker enforces a new view, tick again at once, so a
//!    release is announced without waiting for the next interval, with the
//!    buckets the workers still hold flows in read after they confirmed.
//!
//! [`Io`] is all a driver supplies: UDP, fsync and the dataplane's publisher
//! in the node (`src/exchange.rs`); memory in the simulator (`sim`).

use crate::protocol::{Agent, BucketState, Outgoing, Persisted};

/// One reading of the driver's clock: milliseconds for the agent, and the
/// workers' own clock (a TSC in the node) read just before them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Local monotonic milliseconds.
    pub ms: u64,
    /// The workers' clock, read first: any stall between the two readings,
    /// or after them before the deadline is published, only shortens the
    /// deadline counted from it.
    pub stamp: u64,
}

/// The world as a driver sees it.
pub trait Io {
    /// Reads the clock (see [`Now`]).
    fn clock(&mut self) -> Now;
    /// Sends one datagram (best effort: the exchange copes with loss).
    fn send(&mut self, out: Outgoing);
    /// Saves the state durably; an error means it may not be on disk.
    fn persist(&mut self, state: &Persisted) -> Result<(), String>;
    /// Publishes a new view (`version`, each bucket's right) to the
    /// workers; true when every worker has taken it before this returns.
    fn publish_view(&mut self, version: u64, rights: &[BucketState]) -> bool;
    /// The newest view version every worker enforces.
    fn in_force(&mut self) -> u64;
    /// Sets the workers' lease deadline: the agent's lease `until` (ms, or
    /// none) counted from the clock reading `at`, ending `guard_ms` sooner.
    fn set_deadline(&mut self, until: Option<u64>, at: Now, guard_ms: u64);
    /// The buckets with flows on the workers, one bit each (none: no
    /// workers).
    fn flow_presence(&mut self) -> Option<Vec<u64>>;
}

/// What one [`step`] did, for the driver's log and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Datagrams handed to [`Io::send`].
    pub sent: usize,
    /// Datagrams that rest on saved state and were not sent because the
    /// state could not be saved.
    pub withheld: usize,
    /// Why the state could not be saved, if it could not.
    pub persist_error: Option<String>,
}

/// One turn of the exchange loop (see the module documentation). The
/// driver hands received datagrams to [`Agent::receive`] before it.
pub fn step(agent: &mut Agent, io: &mut impl Io) -> StepReport {
    let mut report = StepReport::default();
    let clock = io.clock();
    presence(agent, io);
    let out = agent.tick(clock.ms);
    persist_and_send(agent, io, out, &mut report);
    if publish(agent, io, clock) {
        // A release is in force on every worker: say so at once, the new
        // holder is waiting for it, with the flows the workers hold now
        // (read after they confirmed: flows made under the old view are in).
        presence(agent, io);
        let out = agent.tick(io.clock().ms);
        persist_and_send(agent, io, out, &mut report);
    }
    report
}

/// Hands the workers' flow presence to the agent.
fn presence(agent: &mut Agent, io: &mut impl Io) {
    if let Some(p) = io.flow_presence() {
        agent.set_flow_presence(p);
    }
}

/// Sends what needs no saved state, saves, then sends the rest.
fn persist_and_send(agent: &mut Agent, io: &mut impl Io, out: Vec<Outgoing>, report: &mut StepReport) {
    let (durable, light): (Vec<_>, Vec<_>) = out.into_iter().partition(|o| o.durable);
    for o in light {
        report.sent += 1;
        io.send(o);
    }
    if let Some(state) = agent.take_persist() {
        if let Err(e) = io.persist(&state) {
            report.withheld += durable.len();
            // Saved next time round, before anything durable leaves.
            agent.persist_again();
            report.persist_error.get_or_insert(e);
            return;
        }
    }
    for o in durable {
        report.sent += 1;
        io.send(o);
    }
}

/// Publishes the view (when it changed) and the lease; true when a new
/// view was published and every worker took it at once.
fn publish(agent: &mut Agent, io: &mut impl Io, clock: Now) -> bool {
    let mut confirmed = false;
    if agent.take_view_changed() {
        let version = agent.view_version();
        confirmed = io.publish_view(version, &agent.rights(clock.ms));
    }
    let in_force = io.in_force();
    agent.confirm_view(in_force);
    let guard = agent.settings().worker_guard_ms();
    io.set_deadline(agent.lease_until(clock.ms), clock, guard);
    confirmed
}

/// The workers' lease deadline on their own clock (0: none) for the
/// agent's lease `until` (ms), counted from the reading `at` and ending
/// `guard_ms` sooner; `per_ms` workers' clock units per ms. Counted from
/// `at`, not from when it is published: a control thread stopped after
/// reading its clock (in a write of the state file, say) must not, once it
/// runs again, publish the old lease as if it had been granted just now.
/// (It did, once: a node stopped for 3 s took new connections for a moment
/// after it ran again, in buckets the others held.)
pub fn worker_deadline(until: Option<u64>, at: Now, guard_ms: u64, per_ms: u64) -> u64 {
    match until {
        Some(until) if until > at.ms + guard_ms => at
            .stamp
            .saturating_add((until - at.ms - guard_ms).saturating_mul(per_ms)),
        _ => 0,
    }
}
