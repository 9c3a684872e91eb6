//! One member's exchange: the [`Agent`], its start, and what follows from
//! time and news. The rest of its work is in the submodules.

mod buckets;
mod consensus;
mod heartbeat;
mod lead;
mod receive;
mod serving;

use super::epoch::Epoch;
use super::events::{Event, ExchangeStats, Outgoing};
use super::lease::lease_end;
use super::peers::Peer;
use super::raft_node::{election_offset, member_of, raft_node};
use super::settings::Settings;
use super::state::{Persisted, Store};
use crate::directory::Directory;
use crate::layout::{Layout, MemberId, Table};
use crate::wire::{Keys, Role};
use raft::{RawNode, StateRole};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// One member's exchange. See the module documentation.
pub struct Agent {
    me: MemberId,
    incarnation: u64,
    nonce: u32,
    /// The leader (and its term) that this member campaigned against.
    campaigned: Option<(MemberId, u64)>,
    settings: Settings,
    keys: Keys,
    pub(super) raft: RawNode<Store>,
    seq: u64,
    sent: VecDeque<(u64, u64)>,
    weight_milli: u32,
    draining: bool,
    connections: u32,
    epoch: Epoch,
    table: Table,
    held: Vec<bool>,
    held_count: u32,
    /// Per bucket held: from when it may settle (adopt unknown segments) as
    /// far as time goes: at once when its previous holder was live and
    /// says what it still serves, a drain period after the claim otherwise.
    settle_at: Vec<u64>,
    /// The table before the one in force: who held each bucket before.
    prev_table: Table,
    /// Buckets with flows on this node's workers, one bit each (from the
    /// driver).
    presence: Vec<u64>,
    /// Buckets another member (live, or silent for less than the drain
    /// period) still serves flows in, or may: not settled here.
    served_elsewhere: Vec<u64>,
    /// What this member served outside its held buckets when last told.
    last_serving: Vec<u64>,
    /// When this agent started.
    started: u64,
    peers: BTreeMap<MemberId, Peer>,
    /// Tables replaced here: (when, members that held buckets in the old
    /// one). A claim waits for those members or for `claim_wait_ms`.
    replaced: VecDeque<(u64, Vec<MemberId>)>,
    /// The index of the last applied change.
    pub(super) applied: u64,
    /// (view version, applied index) published but not yet confirmed by
    /// every worker.
    unconfirmed: VecDeque<(u64, u64)>,
    view_version: u64,
    enforced: u64,
    fenced_duplicate: bool,
    lease_was_valid: bool,
    /// The last moment our own log held no change beyond what our workers
    /// enforce: our own grant while it holds one.
    self_grant: Option<u64>,
    last_tick: u64,
    last_sent: Option<u64>,
    last_proposal: Option<(Vec<(MemberId, u32)>, u64)>,
    last_epoch_at: u64,
    live: Vec<MemberId>,
    leader: Option<MemberId>,
    voters: Vec<MemberId>,
    dirty: bool,
    view_changed: bool,
    persist: bool,
    /// When buckets claimed here from silent holders settle (a drain period
    /// after each such claim), in order: each one republishes the view, so
    /// every claim settles at its own time.
    settles: VecDeque<u64>,
    events: VecDeque<Event>,
    out: Vec<Outgoing>,
    stats: ExchangeStats,
    /// The member directory at `applied`.
    directory: Directory,
    /// Where to find the cluster while this member is not in its own
    /// directory (a node started with `join`).
    join: Option<SocketAddr>,
    /// While joining: where members not yet in our directory were heard
    /// from (authentic datagrams only), so we can answer them.
    heard_at: BTreeMap<MemberId, SocketAddr>,
    /// Members dropped from the directory: (when, as last heard). What they
    /// said they serve counts for a drain period after they were last
    /// heard, as for any silent member.
    departed: Vec<(u64, MemberId, Peer)>,
    /// The log's compacted base must reach at least this index (once
    /// applied): a member was added, who must be sent a snapshot.
    compact_base_at_least: u64,
}

/// How a member finds its cluster at its first start (a saved state's
/// directory wins over both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// The members of a new cluster, as configured (every one a voter).
    Members(Vec<(MemberId, SocketAddr)>),
    /// A member added at run time: it knows one member's address, and
    /// learns the directory from the leader once a member proposed it.
    Join(SocketAddr),
}

impl Bootstrap {
    /// The member directory to start with (the saved one wins), and where
    /// to join when joining.
    fn directory(self, saved: Option<&Persisted>) -> (Directory, Option<SocketAddr>) {
        let (bootstrap_directory, join) = match self {
            Bootstrap::Members(m) => (Directory::of(m), None),
            Bootstrap::Join(at) => (Directory::default(), Some(at)),
        };
        let directory = saved
            .and_then(|p| p.directory.clone())
            .unwrap_or_else(|| bootstrap_directory.clone());
        (directory, join)
    }
}

/// Stands for the unknown holders of tables this member skipped (it
/// installed a snapshot): never a configured member, so a claim waits the
/// whole claim wait for it.
const UNKNOWN_HOLDER: MemberId = MemberId(u32::MAX);

/// Members joining but not yet in our directory we keep an address of, at
/// most (only authentic datagrams make one).
const MAX_HEARD_AT: usize = 64;

impl Agent {
    /// A member `me` among the configured `members` (the others; a
    /// coordinator is member 0), each at its placeholder address
    /// ([`crate::directory::placeholder_address`]: simulations and tests);
    /// see [`Agent::start`].
    #[allow(clippy::too_many_arguments)] // each is a distinct input of a start
    pub fn new(
        me: MemberId,
        members: &[MemberId],
        incarnation: u64,
        settings: Settings,
        keys: Keys,
        weight_milli: u32,
        saved: Option<Persisted>,
        now: u64,
    ) -> Result<Agent, String> {
        let members = members
            .iter()
            .chain(std::iter::once(&me))
            .map(|m| (*m, crate::directory::placeholder_address(*m)))
            .collect();
        Agent::start(
            me,
            Bootstrap::Members(members),
            incarnation,
            settings,
            keys,
            weight_milli,
            saved,
            now,
        )
    }

    /// Member `me`, from its saved state if it has one, else as `bootstrap`
    /// says (a fresh cluster: every configured member is a voter; a joining
    /// member: none yet, it learns them from the leader). `incarnation` must
    /// be larger than the saved one (the driver uses saved + 1).
    #[allow(clippy::too_many_arguments)] // each is a distinct input of a start
    pub fn start(
        me: MemberId,
        bootstrap: Bootstrap,
        incarnation: u64,
        settings: Settings,
        keys: Keys,
        weight_milli: u32,
        saved: Option<Persisted>,
        now: u64,
    ) -> Result<Agent, String> {
        let (directory, join) = bootstrap.directory(saved.as_ref());
        let applied = saved.as_ref().map_or(0, |p| p.applied);
        let raft = raft_node(me, incarnation, &settings, saved.as_ref(), join.is_some(), &directory)?;
        let buckets = settings.buckets;
        let mut agent = Agent {
            me,
            incarnation,
            // Replaced by the driver's random one (`set_nonce`); this one
            // keeps simulations deterministic.
            nonce: election_offset(me, incarnation, u32::MAX as usize) as u32,
            campaigned: None,
            table: Table::build(settings.layout, &[], buckets),
            epoch: Epoch::none(me, &settings),
            settings,
            keys,
            raft,
            seq: 0,
            sent: VecDeque::new(),
            weight_milli,
            draining: false,
            connections: 0,
            held: vec![false; buckets as usize],
            held_count: 0,
            settle_at: vec![0; buckets as usize],
            prev_table: Table::build(Layout::Rendezvous, &[], buckets),
            presence: Vec::new(),
            served_elsewhere: vec![u64::MAX; (buckets as usize).div_ceil(64)],
            last_serving: Vec::new(),
            started: now,
            peers: directory
                .members()
                .keys()
                .filter(|m| **m != me)
                .map(|m| (*m, Peer::default()))
                .collect(),
            replaced: VecDeque::new(),
            applied,
            unconfirmed: VecDeque::new(),
            view_version: 0,
            enforced: applied,
            fenced_duplicate: false,
            lease_was_valid: false,
            self_grant: None,
            last_tick: now,
            last_sent: None,
            last_proposal: None,
            last_epoch_at: 0,
            live: Vec::new(),
            leader: None,
            voters: Vec::new(),
            dirty: true,
            view_changed: true,
            persist: true,
            settles: VecDeque::new(),
            events: VecDeque::new(),
            out: Vec::new(),
            stats: ExchangeStats::default(),
            directory,
            join,
            heard_at: BTreeMap::new(),
            departed: Vec::new(),
            compact_base_at_least: 0,
        };
        agent.resume(saved.as_ref(), now);
        Ok(agent)
    }

    /// Takes up what the saved state says: the table in force at its
    /// applied index, and the voters.
    fn resume(&mut self, saved: Option<&Persisted>, now: u64) {
        // The table in force at the saved applied index.
        if let Some((index, data)) = saved.and_then(|p| p.table.as_ref()) {
            if let Some(e) = Epoch::decode(*index, data).filter(|e| e.buckets == self.settings.buckets) {
                self.install(e, now);
            }
        }
        // Who held what in the tables before the saved one (replaced within
        // the claim wait, maybe) is not saved: claims wait the whole claim
        // wait.
        self.replaced.clear();
        self.replaced.push_back((now, vec![UNKNOWN_HOLDER]));
        self.voters = self.voter_ids();
    }

    /// This member.
    pub fn me(&self) -> MemberId {
        self.me
    }

    /// Its incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Sets this start's nonce (drawn at random by the driver, before the
    /// first tick): it tells apart two processes started from one copy of
    /// a state file.
    pub fn set_nonce(&mut self, nonce: u32) {
        self.nonce = nonce;
    }

    /// This start's nonce.
    pub fn nonce(&self) -> u32 {
        self.nonce
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The table in force here.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// That table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Buckets held.
    pub fn held_count(&self) -> u32 {
        self.held_count
    }

    /// Whether `bucket` is held here (open only while the lease is valid).
    pub fn holds(&self, bucket: u32) -> bool {
        self.held.get(bucket as usize).copied().unwrap_or(false)
    }

    /// The other members of the directory as last heard (while joining,
    /// also members heard but not yet in our directory).
    pub fn peers(&self) -> &BTreeMap<MemberId, Peer> {
        &self.peers
    }

    /// The member directory in force here (at the applied index).
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Not in its own directory (yet, or any more): it holds nothing, and
    /// takes authentic datagrams from members it does not know, so it can
    /// learn the directory from the leader.
    pub fn joining(&self) -> bool {
        !self.directory.contains(self.me)
    }

    /// Where `id`'s exchange listens, as far as this member knows: its
    /// address in the directory, or where it was heard from (while we
    /// join, or when the directory has only an unspecified address for it,
    /// as a coordinator bound to every address bootstraps itself).
    pub fn address_of(&self, id: MemberId) -> Option<SocketAddr> {
        self.directory
            .get(id)
            .map(|m| m.address)
            .filter(|a| !a.ip().is_unspecified())
            .or_else(|| self.heard_at.get(&id).copied())
    }

    /// Members live here (heard both ways within the timeout).
    pub fn live(&self) -> &[MemberId] {
        &self.live
    }

    /// The current voters.
    pub fn voters(&self) -> &[MemberId] {
        &self.voters
    }

    /// What the exchange counted.
    pub fn stats(&self) -> &ExchangeStats {
        &self.stats
    }

    /// The weight this member advertises (thousandths): 0 once fenced as
    /// a duplicate, so the tables give its share to the others.
    pub fn weight_milli(&self) -> u32 {
        if self.fenced_duplicate {
            0
        } else {
            self.weight_milli
        }
    }

    /// Whether this member is draining.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Fenced for good: another process uses this member's id.
    pub fn duplicate(&self) -> bool {
        self.fenced_duplicate
    }

    /// The leader as known here.
    pub fn leader(&self) -> Option<MemberId> {
        self.leader
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Sets the advertised weight (availability × configured capacity).
    pub fn set_weight(&mut self, weight_milli: u32) {
        if weight_milli != self.weight_milli {
            self.weight_milli = weight_milli;
            self.dirty = true;
        }
    }

    /// Starts or stops draining: a draining member gets weight 0 in the next
    /// table and keeps serving its established connections.
    pub fn set_draining(&mut self, draining: bool) {
        if draining != self.draining {
            self.draining = draining;
            self.dirty = true;
        }
    }

    /// Replaces the keys (a rotation step).
    pub fn set_keys(&mut self, keys: Keys) {
        self.keys = keys;
    }

    /// Sets the number of connections this member holds (for status).
    pub fn set_connections(&mut self, connections: u32) {
        self.connections = connections;
    }

    /// Until when (local ms) this member may take new connections in the
    /// buckets it holds; `None`: not now.
    pub fn lease_until(&self, now: u64) -> Option<u64> {
        if self.fenced_duplicate || self.settings.role != Role::Node {
            return None;
        }
        // Our own grant is like any voter's: `now` while our log holds no
        // change beyond what our workers enforce, else the last moment it
        // held none.
        let own_log_clean = self.log_last() <= self.reported_applied();
        let grants: Vec<u64> = self
            .voters
            .iter()
            .filter_map(|v| {
                if *v == self.me {
                    if own_log_clean {
                        Some(now)
                    } else {
                        self.self_grant
                    }
                } else {
                    self.peers.get(v).and_then(|p| p.grant_sent_at)
                }
            })
            .collect();
        lease_end(grants, self.voters.len(), self.settings.lease_ms, now)
    }

    fn is_live(&self, p: &Peer, now: u64) -> bool {
        let t = self.settings.timeout_ms;
        p.incarnation > 0
            && p.refused.is_none()
            && now < p.last_heard + t
            && p.hears_us_sent_at.is_some_and(|at| now < at + t)
    }

    /// Everything that follows from time and news: liveness, leadership,
    /// proposals, claims, settling.
    fn after(&mut self, now: u64) {
        self.drive_raft(now);
        let live: Vec<MemberId> = self
            .peers
            .iter()
            .filter(|(_, p)| self.is_live(p, now))
            .map(|(id, _)| *id)
            .collect();
        for gone in self.live.iter().filter(|m| !live.contains(m)) {
            self.stats.failovers += 1;
            self.events.push_back(Event::Lost { member: *gone });
        }
        if live != self.live {
            self.dirty = true;
        }
        self.live = live;
        let leader = match self.raft.raft.leader_id {
            0 => None,
            id => Some(member_of(id)),
        };
        if leader != self.leader {
            self.leader = leader;
            self.events.push_back(Event::Leader { member: leader });
        }
        self.campaign_if_leader_silent(now);
        if self.raft.raft.state == StateRole::Leader {
            self.lead(now);
            self.drive_raft(now);
        }
        if !self.fenced_duplicate && self.log_last() <= self.reported_applied() {
            self.self_grant = Some(now);
        }
        let lease = self.lease_until(now);
        match (lease.is_some(), self.lease_was_valid) {
            (false, true) => {
                self.stats.fenced += 1;
                self.events.push_back(Event::LeaseLost);
            }
            (true, false) => self.events.push_back(Event::LeaseRegained),
            _ => {}
        }
        self.lease_was_valid = lease.is_some();
        if lease.is_some() {
            self.claim(now);
        }
        let mut settled = false;
        while self.settles.front().is_some_and(|t| now >= *t) {
            self.settles.pop_front();
            settled = true;
        }
        if settled {
            self.bump_view();
        }
    }

    /// Advances time; returns what to send (heartbeats to every member when
    /// one is due or something changed, consensus messages to one).
    pub fn tick(&mut self, now: u64) -> Vec<Outgoing> {
        self.tick_consensus(now);
        self.after(now);
        self.update_served_elsewhere(now);
        let due = self.last_sent.is_none_or(|t| now >= t + self.settings.interval_ms);
        if due || self.dirty {
            self.dirty = false;
            self.last_sent = Some(now);
            self.send_heartbeat(now);
        }
        std::mem::take(&mut self.out)
    }

    /// When `tick` next has something to do, at the latest.
    pub fn next_deadline(&self) -> u64 {
        let hb = self.last_sent.map_or(0, |t| t + self.settings.interval_ms);
        hb.min(self.last_tick + self.settings.tick_ms)
    }
}
