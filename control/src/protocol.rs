//! The availability exchange and the bucket hand-off, as a deterministic
//! state machine: no sockets, no clock. The driver passes `now` (ms) in,
//! hands received datagrams to [`Agent::receive`], sends what
//! [`Agent::tick`] returns, and publishes [`Agent::rights`] to the workers
//! when [`Agent::take_view_changed`] says so.
//!
//! # How the table moves
//! - Every heartbeat carries the sender's *epoch*: the inputs of the bucket
//!   table it enforces (members and weights), identified by (number,
//!   creator). Everybody adopts the highest epoch it hears, so one table
//!   spreads by gossip.
//! - The *leader* (the live member with the lowest id; a coordinator, when
//!   one runs, has id 0 and leads) creates new epochs: at once when the
//!   live membership changes, and for weight changes larger than the
//!   hysteresis at most every `min_epoch_ms`.
//! - **Release then claim.** On adopting an epoch a node releases at once
//!   the buckets it no longer owns, and says so (a heartbeat goes out
//!   immediately). It claims the buckets it gained only when every live
//!   node's latest heartbeat shows the same epoch: each of them has then
//!   released what the epoch does not give it. No bucket is held by two
//!   nodes that hear each other, and the gap in which nobody accepts a
//!   moving bucket is one message delay.
//! - A member not heard for `timeout_ms` is dead; the leader drops it from
//!   the next epoch and, one more timeout later (time for a member wrongly
//!   declared dead to hear the new epoch, or to fence itself), its buckets
//!   are claimed by the others. A member that hears nobody lets all its
//!   buckets go (fencing). A restarted member has a higher incarnation and
//!   starts holding nothing.
//! - A member that has just started listens for `timeout_ms` before it may
//!   lead, so a node joining a running cluster never makes a table of its
//!   own.
//!
//! Under a partition of a cluster into groups that each still hear someone,
//! longer than the timeout, both sides declare the other dead and may hold
//! the same buckets; when it heals, the higher epoch wins everywhere and the
//! holdings converge within a few message delays.

use crate::layout::{MemberId, Table, Weighted};
use crate::wire::{self, DecodeError, Epoch, Heartbeat, Role};
use std::collections::BTreeMap;

pub use crate::layout::Layout;

/// The exchange's settings, the same on every member.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The segment this agent runs on.
    pub segment: u16,
    /// Heartbeat interval.
    pub interval_ms: u64,
    /// A member not heard for this long is dead.
    pub timeout_ms: u64,
    /// A bucket held for less than this is `Claimed`, then `Settled`.
    pub drain_ms: u64,
    /// Buckets (a power of two).
    pub buckets: u32,
    /// Table layout.
    pub layout: Layout,
    /// New epochs for weight changes at most this often.
    pub min_epoch_ms: u64,
    /// Weight changes up to this (thousandths) make no new epoch.
    pub hysteresis_milli: u32,
    /// Node or coordinator.
    pub role: Role,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            segment: 0,
            interval_ms: 100,
            timeout_ms: 400,
            drain_ms: 60_000,
            buckets: 65_536,
            layout: Layout::Rendezvous,
            min_epoch_ms: 100,
            hysteresis_milli: 20,
            role: Role::Node,
        }
    }
}

/// This node's right on one bucket, for the dataplane.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Right {
    /// Not held.
    None,
    /// Held for less than the drain period.
    Claimed,
    /// Held for longer.
    Settled,
}

/// What the exchange counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Heartbeats sent.
    pub sent: u64,
    /// Datagrams received.
    pub received: u64,
    /// Heartbeats accepted.
    pub accepted: u64,
    /// Rejected: length.
    pub rejected_bad_length: u64,
    /// Rejected: not a heartbeat.
    pub rejected_not_heartbeat: u64,
    /// Rejected: authentication failed.
    pub rejected_bad_tag: u64,
    /// Rejected: authentic but inconsistent.
    pub rejected_malformed: u64,
    /// Rejected: a sequence number already seen (replay or duplicate).
    pub rejected_replayed: u64,
    /// Rejected: an older incarnation of the sender.
    pub rejected_stale: u64,
    /// Rejected: another segment, or an epoch of another bucket count.
    pub rejected_foreign: u64,
    /// Rejected: claims to be this member.
    pub rejected_own_id: u64,
    /// Epochs adopted (created here or heard).
    pub epochs_adopted: u64,
    /// Epochs created as leader.
    pub epochs_created: u64,
    /// Buckets released.
    pub buckets_released: u64,
    /// Buckets claimed.
    pub buckets_claimed: u64,
    /// Members declared dead.
    pub failovers: u64,
    /// Times this node let all its buckets go because it heard no one.
    pub fenced: u64,
    /// Members heard for the first time, or with a new incarnation.
    pub joins: u64,
}

/// A peer as last heard.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    /// Its incarnation.
    pub incarnation: u64,
    /// Highest sequence number seen.
    pub max_seq: u64,
    /// Bit i: sequence number max_seq - 1 - i was seen.
    window: u64,
    /// When last heard (ms).
    pub last_heard: u64,
    /// Node or coordinator.
    pub role: Role,
    /// Draining.
    pub draining: bool,
    /// Its weight (thousandths).
    pub weight_milli: u32,
    /// Its connections.
    pub connections: u32,
    /// Buckets it holds.
    pub held: u32,
    /// Its epoch.
    pub epoch_id: (u64, u32),
}

/// One member's exchange. See the module documentation.
pub struct Agent {
    me: MemberId,
    incarnation: u64,
    settings: Settings,
    seq: u64,
    weight_milli: u32,
    draining: bool,
    connections: u32,
    epoch: Epoch,
    table: Table,
    held: Vec<bool>,
    held_count: u32,
    acquired_at: Vec<u64>,
    peers: BTreeMap<MemberId, Peer>,
    /// (incarnation, highest sequence) of members declared dead, so their
    /// old heartbeats stay rejected when they come back.
    departed: BTreeMap<MemberId, (u64, u64)>,
    /// Members declared dead less than a timeout ago: while any is, nothing
    /// is claimed, so that a member wrongly declared dead (lost heartbeats)
    /// has heard the new epoch, or fenced itself, before its buckets move.
    recently_dead: BTreeMap<MemberId, u64>,
    highest_epoch_seen: u64,
    started_at: u64,
    last_sent: Option<u64>,
    last_epoch_at: u64,
    dirty: bool,
    view_changed: bool,
    next_settle: Option<u64>,
    stats: ExchangeStats,
}

impl Agent {
    /// A member `me` in its `incarnation` (larger after every restart, e.g.
    /// the start time in ms), starting at `now`.
    pub fn new(me: MemberId, incarnation: u64, settings: Settings, weight_milli: u32, now: u64) -> Agent {
        let buckets = settings.buckets;
        let epoch = Epoch {
            number: 0,
            creator: me,
            layout: settings.layout,
            buckets,
            members: Vec::new(),
        };
        Agent {
            me,
            incarnation,
            table: Table::build(settings.layout, &[], buckets),
            settings,
            seq: 0,
            weight_milli,
            draining: false,
            connections: 0,
            epoch,
            held: vec![false; buckets as usize],
            held_count: 0,
            acquired_at: vec![0; buckets as usize],
            peers: BTreeMap::new(),
            departed: BTreeMap::new(),
            recently_dead: BTreeMap::new(),
            highest_epoch_seen: 0,
            started_at: now,
            last_sent: None,
            last_epoch_at: now,
            dirty: true,
            view_changed: true,
            next_settle: None,
            stats: ExchangeStats::default(),
        }
    }

    /// This member.
    pub fn me(&self) -> MemberId {
        self.me
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The epoch in force here.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The table of that epoch.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Buckets held.
    pub fn held_count(&self) -> u32 {
        self.held_count
    }

    /// Whether `bucket` is held here.
    pub fn holds(&self, bucket: u32) -> bool {
        self.held.get(bucket as usize).copied().unwrap_or(false)
    }

    /// Peers heard within the timeout.
    pub fn peers(&self) -> &BTreeMap<MemberId, Peer> {
        &self.peers
    }

    /// What the exchange counted.
    pub fn stats(&self) -> &ExchangeStats {
        &self.stats
    }

    /// The weight this member advertises (thousandths).
    pub fn weight_milli(&self) -> u32 {
        self.weight_milli
    }

    /// Whether this member is draining.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// The current leader as seen here.
    pub fn leader(&self) -> MemberId {
        self.peers
            .keys()
            .copied()
            .chain(std::iter::once(self.me))
            .min()
            .unwrap_or(self.me)
    }

    /// Sets the advertised weight (availability × configured capacity).
    pub fn set_weight(&mut self, weight_milli: u32) {
        if weight_milli != self.weight_milli {
            self.weight_milli = weight_milli;
            self.dirty = true;
        }
    }

    /// Starts or stops draining: a draining member gets weight 0 in the next
    /// epoch and keeps serving its established connections.
    pub fn set_draining(&mut self, draining: bool) {
        if draining != self.draining {
            self.draining = draining;
            self.dirty = true;
        }
    }

    /// Sets the number of connections this member holds (for status).
    pub fn set_connections(&mut self, connections: u32) {
        self.connections = connections;
    }

    /// True once when the dataplane view must be republished.
    pub fn take_view_changed(&mut self) -> bool {
        std::mem::take(&mut self.view_changed)
    }

    /// This member's right on every bucket at `now`.
    pub fn rights(&self, now: u64) -> Vec<Right> {
        self.held
            .iter()
            .zip(&self.acquired_at)
            .map(|(&held, &at)| match held {
                false => Right::None,
                true if now >= at + self.settings.drain_ms => Right::Settled,
                true => Right::Claimed,
            })
            .collect()
    }

    /// Verifies, decodes and handles a datagram from the network.
    pub fn receive(&mut self, datagram: &[u8], key: &[u8], now: u64) -> Result<(), Reject> {
        self.stats.received += 1;
        let hb = wire::decode(datagram, key).map_err(|e| {
            match e {
                DecodeError::BadLength => self.stats.rejected_bad_length += 1,
                DecodeError::NotHeartbeat => self.stats.rejected_not_heartbeat += 1,
                DecodeError::BadTag => self.stats.rejected_bad_tag += 1,
                DecodeError::Malformed => self.stats.rejected_malformed += 1,
            }
            Reject::Decode(e)
        })?;
        self.handle(hb, now)
    }

    /// Handles an authenticated heartbeat.
    pub fn handle(&mut self, hb: Heartbeat, now: u64) -> Result<(), Reject> {
        if hb.segment != self.settings.segment || hb.epoch.buckets != self.settings.buckets {
            self.stats.rejected_foreign += 1;
            return Err(Reject::Foreign);
        }
        if hb.member == self.me {
            self.stats.rejected_own_id += 1;
            return Err(Reject::OwnId);
        }
        match self.peers.get_mut(&hb.member) {
            Some(p) if hb.incarnation < p.incarnation => {
                self.stats.rejected_stale += 1;
                return Err(Reject::Stale);
            }
            Some(p) if hb.incarnation == p.incarnation => {
                if hb.seq > p.max_seq {
                    let shift = hb.seq - p.max_seq;
                    p.window = if shift >= 64 {
                        0
                    } else {
                        (p.window << shift) | (1 << (shift - 1))
                    };
                    p.max_seq = hb.seq;
                } else {
                    let back = p.max_seq - hb.seq;
                    if back == 0 || back > 64 || p.window & (1 << (back - 1)) != 0 {
                        self.stats.rejected_replayed += 1;
                        return Err(Reject::Replayed);
                    }
                    p.window |= 1 << (back - 1);
                    // An old heartbeat out of order: its news is older than
                    // what we know; only the sequence window learns from it.
                    self.stats.accepted += 1;
                    return Ok(());
                }
                p.last_heard = now;
                p.role = hb.role;
                p.draining = hb.draining;
                p.weight_milli = hb.weight_milli;
                p.connections = hb.connections;
                p.held = hb.held;
                p.epoch_id = hb.epoch.id();
            }
            _ => {
                if let Some(&(inc, seq)) = self.departed.get(&hb.member) {
                    if hb.incarnation < inc || (hb.incarnation == inc && hb.seq <= seq) {
                        self.stats.rejected_stale += 1;
                        return Err(Reject::Stale);
                    }
                }
                // New member, or a new incarnation of one: it holds what it
                // says (nothing, after a restart).
                self.stats.joins += 1;
                self.dirty = true;
                self.peers.insert(
                    hb.member,
                    Peer {
                        incarnation: hb.incarnation,
                        max_seq: hb.seq,
                        window: 0,
                        last_heard: now,
                        role: hb.role,
                        draining: hb.draining,
                        weight_milli: hb.weight_milli,
                        connections: hb.connections,
                        held: hb.held,
                        epoch_id: hb.epoch.id(),
                    },
                );
            }
        }
        self.stats.accepted += 1;
        self.highest_epoch_seen = self.highest_epoch_seen.max(hb.epoch.number);
        if hb.epoch.id() > self.epoch.id() {
            self.adopt(hb.epoch, now);
        }
        self.evaluate(now);
        Ok(())
    }

    fn adopt(&mut self, epoch: Epoch, _now: u64) {
        self.highest_epoch_seen = self.highest_epoch_seen.max(epoch.number);
        let members: Vec<Weighted> = epoch
            .members
            .iter()
            .map(|&(id, w)| Weighted {
                id,
                weight: f64::from(w),
            })
            .collect();
        self.table = Table::build(epoch.layout, &members, epoch.buckets);
        self.epoch = epoch;
        self.stats.epochs_adopted += 1;
        // Release at once what the new table does not give us.
        let mut released = 0;
        for (b, held) in self.held.iter_mut().enumerate() {
            if *held && self.table.owner(b as u32) != Some(self.me) {
                *held = false;
                released += 1;
            }
        }
        if released > 0 {
            self.held_count -= released;
            self.stats.buckets_released += u64::from(released);
            self.view_changed = true;
        }
        self.dirty = true;
    }

    fn joining(&self, now: u64) -> bool {
        now < self.started_at + self.settings.timeout_ms
    }

    /// Declares silent peers dead, leads, claims, settles.
    fn evaluate(&mut self, now: u64) {
        let timeout = self.settings.timeout_ms;
        let dead: Vec<MemberId> = self
            .peers
            .iter()
            .filter(|(_, p)| now > p.last_heard + timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            if let Some(p) = self.peers.remove(id) {
                self.departed.insert(*id, (p.incarnation, p.max_seq));
                self.recently_dead.insert(*id, now);
            }
        }
        self.recently_dead.retain(|_, at| now < *at + timeout);
        if !dead.is_empty() {
            self.stats.failovers += dead.len() as u64;
            self.dirty = true;
            // Fencing: a node that hears no one any more may be the one cut
            // off; the others will take its buckets after their timeout, so
            // it lets them go now.
            let alone = self.peers.is_empty() && self.epoch.members.iter().any(|(m, _)| *m != self.me);
            if alone && self.held_count > 0 {
                self.stats.fenced += 1;
                self.stats.buckets_released += u64::from(self.held_count);
                self.held.iter_mut().for_each(|h| *h = false);
                self.held_count = 0;
                self.view_changed = true;
            }
        }
        self.lead(now);
        self.claim(now);
        if self.next_settle.is_some_and(|t| now >= t) {
            self.next_settle = None;
            self.view_changed = true;
        }
    }

    fn lead(&mut self, now: u64) {
        if self.joining(now) || self.leader() != self.me {
            return;
        }
        let mut desired: Vec<(MemberId, u32)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.role == Role::Node)
            .map(|(id, p)| (*id, if p.draining { 0 } else { p.weight_milli }))
            .collect();
        if self.settings.role == Role::Node {
            desired.push((self.me, if self.draining { 0 } else { self.weight_milli }));
        }
        desired.sort();
        if desired.is_empty() {
            return;
        }
        let same_members = desired.len() == self.epoch.members.len()
            && desired.iter().zip(&self.epoch.members).all(|(a, b)| a.0 == b.0);
        let weights_moved = same_members
            && desired
                .iter()
                .zip(&self.epoch.members)
                .any(|(a, b)| a.1.abs_diff(b.1) > self.settings.hysteresis_milli);
        let due = now >= self.last_epoch_at + self.settings.min_epoch_ms;
        // A coordinator that takes over issues the table in its own name.
        let take_over = self.settings.role == Role::Coordinator && self.epoch.creator != self.me;
        if self.epoch.number == 0 || !same_members || (weights_moved && due) || take_over {
            // An authentic heartbeat may carry any number; at the very end of
            // the space no newer epoch can be made (it would repeat an
            // identity already in use).
            let Some(number) = self.highest_epoch_seen.max(self.epoch.number).checked_add(1) else {
                return;
            };
            let epoch = Epoch {
                number,
                creator: self.me,
                layout: self.settings.layout,
                buckets: self.settings.buckets,
                members: desired,
            };
            self.stats.epochs_created += 1;
            self.last_epoch_at = now;
            self.adopt(epoch, now);
        }
    }

    fn claim(&mut self, now: u64) {
        if self.settings.role != Role::Node || self.epoch.number == 0 {
            return;
        }
        if !self.recently_dead.is_empty() {
            return;
        }
        let id = self.epoch.id();
        if self.peers.values().any(|p| p.role == Role::Node && p.epoch_id != id) {
            return;
        }
        // A member of the epoch we have not heard may hold buckets: only
        // after listening for a whole timeout is its silence death.
        if self.joining(now)
            && self
                .epoch
                .members
                .iter()
                .any(|(m, _)| *m != self.me && !self.peers.contains_key(m))
        {
            return;
        }
        let mut claimed = 0;
        for b in 0..self.held.len() {
            if !self.held[b] && self.table.owner(b as u32) == Some(self.me) {
                self.held[b] = true;
                self.acquired_at[b] = now;
                claimed += 1;
            }
        }
        if claimed > 0 {
            self.held_count += claimed;
            self.stats.buckets_claimed += u64::from(claimed);
            self.dirty = true;
            self.view_changed = true;
            let settle = now + self.settings.drain_ms;
            self.next_settle = Some(self.next_settle.map_or(settle, |t| t.min(settle)));
        }
    }

    /// Advances time: returns a heartbeat to send to every peer when one is
    /// due (interval) or something changed.
    pub fn tick(&mut self, now: u64) -> Option<Heartbeat> {
        self.evaluate(now);
        let due = self.last_sent.is_none_or(|t| now >= t + self.settings.interval_ms);
        if !(due || self.dirty) {
            return None;
        }
        self.dirty = false;
        self.last_sent = Some(now);
        self.seq += 1;
        self.stats.sent += 1;
        Some(Heartbeat {
            segment: self.settings.segment,
            member: self.me,
            incarnation: self.incarnation,
            seq: self.seq,
            role: self.settings.role,
            draining: self.draining,
            weight_milli: self.weight_milli,
            connections: self.connections,
            held: self.held_count,
            epoch: self.epoch.clone(),
        })
    }

    /// When `tick` next has something to do, at the latest.
    pub fn next_deadline(&self) -> u64 {
        let hb = self.last_sent.map_or(0, |t| t + self.settings.interval_ms);
        let dead = self
            .peers
            .values()
            .map(|p| p.last_heard + self.settings.timeout_ms + 1)
            .min()
            .unwrap_or(u64::MAX);
        let settle = self.next_settle.unwrap_or(u64::MAX);
        let grace = self
            .recently_dead
            .values()
            .map(|at| at + self.settings.timeout_ms)
            .min()
            .unwrap_or(u64::MAX);
        let join = self.started_at + self.settings.timeout_ms;
        let mut next = hb.min(dead).min(settle).min(grace);
        if join > 0 && self.epoch.number == 0 {
            next = next.min(join);
        }
        next
    }
}

/// Why a heartbeat was not taken.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reject {
    /// It did not decode or authenticate.
    Decode(DecodeError),
    /// Another segment, or another bucket space.
    Foreign,
    /// It claims to come from this member.
    OwnId,
    /// An older incarnation of its sender.
    Stale,
    /// A sequence number already seen.
    Replayed,
}

#[cfg(test)]
mod tests;
