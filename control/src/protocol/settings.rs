//! The exchange's settings, and the part of them every member must share.

use super::lease::CLOCK_RATE_BOUND;
use crate::layout::{Layout, Pin};
use crate::wire::{Agreed, Role};

/// The exchange's settings, the same on every member. Their defaults are the
/// product's defaults (the configuration takes them from here).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The segment this agent runs on.
    pub segment: u16,
    /// Heartbeat interval.
    pub interval_ms: u64,
    /// A member not heard (both ways) for this long is not live.
    pub timeout_ms: u64,
    /// A lease lasts this long after the heartbeat that renewed it was sent.
    pub lease_ms: u64,
    /// A bucket held for less than this is `Claimed`, then `Settled`.
    pub drain_ms: u64,
    /// Buckets (a power of two).
    pub buckets: u32,
    /// Table layout.
    pub layout: Layout,
    /// The digest of the port rules that choose connection values
    /// ([`crate::wire::rules_digest`]); 0 for a member with no rules (a
    /// coordinator, and the simulator's nodes).
    pub rules_digest: u32,
    /// New tables for weight changes at most this often.
    pub min_epoch_ms: u64,
    /// Weight changes up to this (thousandths) make no new table.
    pub hysteresis_milli: u32,
    /// Node or coordinator.
    pub role: Role,
    /// The consensus tick.
    pub tick_ms: u64,
    /// Consensus heartbeats every this many ticks.
    pub heartbeat_ticks: usize,
    /// Elections after this many ticks without a leader (each member adds
    /// its own fixed offset of up to as many again, so votes rarely split).
    pub election_ticks: usize,
    /// A voter silent this long leaves the voter set.
    pub remove_after_ms: u64,
    /// Consensus log entries kept below the applied index when the log is
    /// compacted, which it is once twice as many are there: the log (and
    /// the state file) stays small, and a member further behind than this
    /// is sent a snapshot (the table in force) instead of the entries.
    pub log_keep: u64,
    /// Buckets pinned to members in priority order (single-host port rules
    /// with a priority list): part of the rules' digest, so every member
    /// pins alike.
    pub pins: Vec<Pin>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            segment: 0,
            interval_ms: 100,
            timeout_ms: 400,
            lease_ms: 400,
            drain_ms: 60_000,
            buckets: 65_536,
            layout: Layout::Rendezvous,
            rules_digest: 0,
            min_epoch_ms: 250,
            hysteresis_milli: 20,
            role: Role::Node,
            tick_ms: 10,
            heartbeat_ticks: 5,
            election_ticks: 20,
            remove_after_ms: 1_200,
            log_keep: 64,
            pins: Vec::new(),
        }
    }
}

impl Settings {
    /// How much sooner than the agent's lease the workers' deadline ends:
    /// a frame a worker accepts is still on its way to the kernel for a
    /// moment after the worker checked the lease, and a worker that stalls
    /// longer than this in that moment drops what it accepted (one eighth
    /// of the lease: 50 ms by default).
    pub fn worker_guard_ms(&self) -> u64 {
        self.lease_ms / 8
    }

    /// How long a claim waits for silent former holders: their leases have
    /// surely ended by then, whatever the clocks' rates (within the bound).
    pub fn claim_wait_ms(&self) -> u64 {
        let f = (1.0 + CLOCK_RATE_BOUND) / (1.0 - CLOCK_RATE_BOUND);
        (self.lease_ms as f64 * f).ceil() as u64 + 1
    }

    /// The settings every member must share, as heartbeats carry them: a
    /// member with a longer lease than the others would keep taking
    /// connections in buckets they have already claimed.
    pub fn agreed(&self) -> Agreed {
        let ms = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Agreed {
            lease_ms: ms(self.lease_ms),
            timeout_ms: ms(self.timeout_ms),
            interval_ms: ms(self.interval_ms),
            drain_ms: ms(self.drain_ms),
            buckets: self.buckets,
            layout: match self.layout {
                Layout::Ranges => 0,
                Layout::Rendezvous => 1,
            },
            rules: self.rules_digest,
        }
    }
}
