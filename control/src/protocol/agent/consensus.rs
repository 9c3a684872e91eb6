//! The agent's consensus: raft driven, its entries applied (tables, voter
//! and directory changes), its log compacted and saved.

use super::{Agent, UNKNOWN_HOLDER};
use crate::directory::Change;
use crate::layout::{MemberId, Table};
use crate::protocol::epoch::Epoch;
use crate::protocol::events::{Event, Outgoing};
use crate::protocol::raft_node::{conf_change_for, member_of};
use crate::protocol::state::{plain_conf_state, snapshot_at, snapshot_parts, Persisted};
use crate::wire;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{GetEntriesContext, SnapshotStatus, StateRole};

impl Agent {
    /// The members that are learners (follow the log, do not vote).
    pub fn learners(&self) -> Vec<MemberId> {
        let mut v: Vec<MemberId> = self
            .raft
            .raft
            .prs()
            .conf()
            .learners()
            .iter()
            .map(|r| member_of(*r))
            .collect();
        v.sort_unstable();
        v
    }

    /// Asks the cluster to change its directory: `Add` or `Leave` (the
    /// leader removes a leaving member by itself once it holds and serves
    /// nothing). Proposed here if this member leads, else forwarded to the
    /// leader by consensus; every member checks it again when it applies
    /// it (an error here is what this member can already tell).
    pub fn propose_change(&mut self, change: Change) -> Result<(), String> {
        if matches!(change, Change::Remove { .. }) {
            return Err("a member is removed with Leave; the leader drops it once it left".into());
        }
        self.directory.check(&change)?;
        if self.leader.is_none() {
            return Err("no leader known: try again once the cluster has one".into());
        }
        if self.raft.raft.state == StateRole::Leader && self.raft.raft.has_pending_conf() {
            return Err("another membership change is in progress: try again".into());
        }
        let cc = conf_change_for(&change, self.directory.version());
        self.raft
            .propose_conf_change(Vec::new(), cc)
            .map_err(|e| format!("not proposed: {e}"))?;
        self.drive_raft(self.last_tick);
        Ok(())
    }

    /// Consensus log entries held (after the last compaction).
    pub fn log_len(&self) -> u64 {
        let store = &self.raft.raft.raft_log.store;
        raft::Storage::last_index(store).unwrap_or(0) - store.base().0
    }

    /// The saved state, when it changed: write it durably before sending
    /// what [`Agent::tick`] returned.
    pub fn take_persist(&mut self) -> Option<Persisted> {
        if !std::mem::take(&mut self.persist) {
            return None;
        }
        let store = &self.raft.raft.raft_log.store;
        let base = store.base();
        let last = raft::Storage::last_index(store).unwrap_or(0);
        let entries = if last > base.0 {
            raft::Storage::entries(store, base.0 + 1, last + 1, None, GetEntriesContext::empty(false))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let state = raft::Storage::initial_state(store).unwrap_or_default();
        Some(Persisted {
            incarnation: self.incarnation,
            hard_state: state.hard_state,
            conf_state: state.conf_state,
            // The last table or voter change applied, not consensus's own
            // applied index: that one also counts empty entries (a new
            // leader's), which `apply` passes over, so a member restarted
            // from it would report an index that members which applied
            // the same entries without a restart never reach, and none of
            // them would grant the other a lease again (found by the
            // simulator's adversary). Consensus gives the empty entries
            // after it again at the restart; they change nothing.
            applied: self.applied,
            base,
            table: store.table.clone(),
            directory: Some(self.directory.clone()),
            entries,
        })
    }

    /// The state taken by [`Agent::take_persist`] could not be saved: offer
    /// it again next time.
    pub fn persist_again(&mut self) {
        self.persist = true;
    }

    pub(super) fn voter_ids(&self) -> Vec<MemberId> {
        let mut v: Vec<MemberId> = self
            .raft
            .raft
            .prs()
            .conf()
            .to_conf_state()
            .voters
            .iter()
            .map(|r| member_of(*r))
            .collect();
        v.sort_unstable();
        v
    }

    /// The last table or voter change in the local log.
    pub(in crate::protocol) fn log_last(&self) -> u64 {
        let log = &self.raft.raft.raft_log;
        let from = log.applied + 1;
        log.entries(from, None, GetEntriesContext::empty(false))
            .unwrap_or_default()
            .iter()
            .rev()
            .find(|e| !e.data.is_empty())
            .map_or(self.applied, |e| e.index)
    }

    /// The index this member reports as enforced by all its workers.
    pub(super) fn reported_applied(&self) -> u64 {
        self.enforced.min(self.applied)
    }

    /// Consensus ticks for the time since the last.
    pub(super) fn tick_consensus(&mut self, now: u64) {
        // Consensus ticks; after a stall, at most one election's worth.
        let elapsed = now.saturating_sub(self.last_tick) / self.settings.tick_ms;
        let ticks = elapsed.min(self.settings.election_ticks as u64) as usize;
        if ticks > 0 {
            // The remainder carries over, so consensus time runs at the
            // clock's rate however late each wake-up is; after a stall, at
            // most one election's worth.
            self.last_tick = if elapsed > ticks as u64 {
                now
            } else {
                self.last_tick + elapsed * self.settings.tick_ms
            };
            if !self.fenced_duplicate {
                for _ in 0..ticks {
                    self.raft.tick();
                }
            }
        }
    }

    /// Whether a consensus message is one a peer may send and consistent
    /// with our log where the consensus library would otherwise stop the
    /// process (it treats those cases as bugs; here they can come from a
    /// duplicate member id or a member that lost its state).
    pub(super) fn sane(&self, m: &Message) -> bool {
        use raft::eraftpb::MessageType as T;
        let log = &self.raft.raft.raft_log;
        match m.get_msg_type() {
            T::MsgHeartbeat => m.commit <= log.last_index(),
            T::MsgAppend => {
                let mut term = m.log_term;
                m.entries.iter().enumerate().all(|(k, e)| {
                    let ok = e.index == m.index + 1 + k as u64 && e.term >= term && e.term <= m.term;
                    term = e.term;
                    ok
                })
            }
            T::MsgAppendResponse
            | T::MsgRequestVote
            | T::MsgRequestVoteResponse
            | T::MsgRequestPreVote
            | T::MsgRequestPreVoteResponse
            | T::MsgHeartbeatResponse
            | T::MsgTransferLeader
            | T::MsgTimeoutNow => m.term > 0 || m.get_msg_type() == T::MsgTransferLeader,
            T::MsgSnapshot => {
                // What raft would stop the process over, and what we
                // could not use: a conf state it cannot restore, data that
                // is not a table, an index out of all proportion.
                let snap = m.get_snapshot();
                let meta = snap.get_metadata();
                let cs = meta.get_conf_state();
                let horizon = log.last_index().max(log.committed) + (1 << 20);
                let table_fits = match snapshot_parts(&snap.data) {
                    Some((Some(e), _)) => e.index > 0 && e.index <= meta.index,
                    Some((None, _)) => true,
                    None => false,
                };
                m.term > 0
                    && meta.index > log.committed
                    && meta.index <= horizon
                    && meta.term > 0
                    && meta.term <= m.term
                    && table_fits
                    && plain_conf_state(cs)
            }
            // A member's request forwarded to the leader: only directory
            // changes a member may ask for (tables and voter changes are
            // the leader's own).
            T::MsgPropose => {
                !m.entries.is_empty() && m.entries.iter().all(|e| {
                    let mut cc = ConfChangeV2::default();
                    e.get_entry_type() == EntryType::EntryConfChangeV2
                        && cc.merge_from_bytes(&e.data).is_ok()
                        && matches!(
                            Change::decode(&cc.context),
                            Some((c @ (Change::Add { .. } | Change::Leave { .. }), v)) if conf_change_for(&c, v) == cc
                        )
                })
            }
            _ => false,
        }
    }

    /// Processes what consensus has ready: persist, send, apply.
    pub(super) fn drive_raft(&mut self, now: u64) {
        if !self.raft.has_ready() {
            return;
        }
        let store = self.raft.raft.raft_log.store.log.clone();
        let mut ready = self.raft.ready();
        // Messages raft lets leave before its state is saved.
        self.queue_messages(ready.take_messages(), false);
        if !ready.snapshot().is_empty() {
            self.restore(ready.snapshot().clone(), now);
        }
        let committed = ready.take_committed_entries();
        self.apply(committed, now);
        if !ready.entries().is_empty() {
            let _ = store.wl().append(ready.entries());
            self.persist = true;
        }
        if let Some(hs) = ready.hs() {
            store.wl().set_hardstate(hs.clone());
            self.persist = true;
        }
        self.queue_messages(ready.take_persisted_messages(), true);
        let mut light = self.raft.advance(ready);
        if let Some(commit) = light.commit_index() {
            store.wl().mut_hard_state().set_commit(commit);
            self.persist = true;
        }
        self.queue_messages(light.take_messages(), true);
        let committed = light.take_committed_entries();
        self.apply(committed, now);
        self.raft.advance_apply();
        self.compact();
    }

    /// Installs a snapshot from the leader (this member was behind its
    /// compacted log): the voters and the table in force at its index.
    fn restore(&mut self, snap: Snapshot, now: u64) {
        let index = snap.get_metadata().index;
        let parts = snapshot_parts(&snap.data);
        if self.raft.mut_store().log.wl().apply_snapshot(snap).is_err() {
            return;
        }
        let (table, directory) = match parts {
            Some((table, directory)) => (Some(table), directory),
            None => (None, None),
        };
        if let Some(mut d) = directory {
            // A coordinator that leads bootstrapped its own address as the
            // wildcard it binds: keep the address we know for it.
            d.fill_unspecified_from(&self.directory);
            if d != self.directory {
                self.directory = d.clone();
                self.raft.mut_store().directory = d;
                self.stats.directory_changes += 1;
                self.events.push_back(Event::Directory { change: None });
                self.sync_peers(now);
            }
        }
        self.stats.snapshots_installed += 1;
        // What was held under the tables before is given up, whatever the
        // new one says: those in between may have moved any bucket away and
        // back, so every bucket goes through a claim again (its wait, and a
        // drain period from now).
        self.release_all();
        match table {
            Some(Some(epoch)) if epoch.buckets == self.settings.buckets => {
                if epoch.index != self.epoch.index {
                    self.install(epoch, now);
                }
            }
            // No table there, or one this member cannot use: none at all,
            // so it claims nothing until the next one.
            _ => {
                self.raft.mut_store().table = None;
                self.table = Table::build(self.settings.layout, &[], self.settings.buckets);
                self.prev_table = self.table.clone();
                self.epoch = Epoch::none(self.me, &self.settings);
            }
        }
        // The tables in between were never seen here, nor who held what in
        // them: claims wait the whole claim wait (and settle a drain period
        // later).
        self.prev_table = Table::build(self.settings.layout, &[], self.settings.buckets);
        self.replaced.push_back((now, vec![UNKNOWN_HOLDER]));
        self.applied = index;
        self.raft.mut_store().applied = index;
        self.voters = self.voter_ids();
        self.events.push_back(Event::Voters {
            voters: self.voters.clone(),
        });
        self.persist = true;
        self.dirty = true;
        self.bump_view();
    }

    /// Compacts the log once it holds twice `log_keep` applied entries,
    /// keeping `log_keep` below the applied index: it is rebuilt on a
    /// snapshot at the new base (MemStorage's own compaction forgets the
    /// base's term, which raft needs), then the kept entries and the hard
    /// state go back.
    fn compact(&mut self) {
        let keep = self.settings.log_keep.max(1);
        let store = &self.raft.raft.raft_log.store;
        let (base, _) = store.base();
        let last = raft::Storage::last_index(store).unwrap_or(0);
        let applied = self.applied.min(last);
        let to = if applied >= base + 2 * keep {
            applied - keep
        } else if base < self.compact_base_at_least && applied >= self.compact_base_at_least {
            self.compact_base_at_least
        } else {
            return;
        };
        let (Ok(term), Ok(kept), Ok(state)) = (
            raft::Storage::term(store, to),
            raft::Storage::entries(store, to + 1, last + 1, None, GetEntriesContext::empty(false)),
            raft::Storage::initial_state(store),
        ) else {
            return;
        };
        let mut log = store.log.wl();
        if log
            .apply_snapshot(snapshot_at(to, term, state.conf_state.clone()))
            .is_err()
            || log.append(&kept).is_err()
        {
            return;
        }
        log.set_hardstate(state.hard_state);
        log.set_conf_state(state.conf_state);
        drop(log);
        self.stats.log_compactions += 1;
        self.persist = true;
    }

    fn queue_messages(&mut self, msgs: Vec<Message>, durable: bool) {
        let from = self.sender();
        for m in msgs {
            let to = member_of(m.to);
            if m.get_msg_type() == MessageType::MsgSnapshot {
                // Sent once over a lossy network: raft is told it went, and
                // probes from its index; if it was lost, the member's
                // rejection brings another.
                self.stats.snapshots_sent += 1;
                self.raft.report_snapshot(m.to, SnapshotStatus::Finish);
            }
            let Ok(bytes) = m.write_to_bytes() else { continue };
            if let Ok(d) = wire::encode_consensus(&from, &bytes, &self.keys) {
                self.stats.consensus_sent += 1;
                self.out.push(Outgoing {
                    to: Some(to),
                    addresses: self.address_of(to).into_iter().collect(),
                    bytes: d,
                    durable,
                });
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>, now: u64) {
        for e in entries {
            if e.data.is_empty() {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    if cc.merge_from_bytes(&e.data).is_ok() {
                        self.dirty = true;
                        if let Ok(cs) = self.raft.apply_conf_change(&cc) {
                            self.raft.raft.raft_log.store.log.wl().set_conf_state(cs);
                            self.voters = self.voter_ids();
                            self.stats.voter_changes += 1;
                            self.events.push_back(Event::Voters {
                                voters: self.voters.clone(),
                            });
                        }
                    }
                }
                EntryType::EntryNormal => {
                    if let Some(epoch) = Epoch::decode(e.index, &e.data) {
                        if epoch.buckets == self.settings.buckets {
                            self.install(epoch, now);
                        }
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    if cc.merge_from_bytes(&e.data).is_ok() {
                        self.dirty = true;
                        self.apply_conf_change_v2(&cc, e.index, now);
                    }
                }
            }
            self.applied = e.index;
            self.raft.mut_store().applied = e.index;
            self.persist = true;
            self.bump_view();
        }
    }

    /// Applies a configuration change of the log: a voter change of the
    /// leader's own (no context), or a directory change with the raft
    /// change it goes with. Every member applies the same entries to the
    /// same directory, so all accept a change or all refuse it.
    fn apply_conf_change_v2(&mut self, cc: &ConfChangeV2, index: u64, now: u64) {
        let (change, version) = if cc.context.is_empty() {
            (None, 0)
        } else {
            match Change::decode(&cc.context) {
                Some((c, v)) => (Some(c), v),
                None => return,
            }
        };
        let refuse = |agent: &mut Agent, reason: String| {
            if let Some(change) = change.clone() {
                agent.events.push_back(Event::ChangeRefused { change, reason });
            }
        };
        let [single] = cc.changes.as_slice() else {
            return refuse(self, "not a single change".into());
        };
        let target = member_of(single.node_id);
        match &change {
            Some(c) => {
                if conf_change_for(c, version) != *cc {
                    return refuse(self, "the raft change does not match".into());
                }
                if version != self.directory.version() {
                    return refuse(
                        self,
                        "the directory changed since it was asked (a replay, or two changes at once): ask again".into(),
                    );
                }
                if let Err(reason) = self.directory.check(c) {
                    return refuse(self, reason);
                }
            }
            // The leader's own voter changes: a voter only from the
            // directory's members that are not leaving.
            None => match single.get_change_type() {
                ConfChangeType::AddNode if self.directory.get(target).is_some_and(|m| !m.leaving) => {}
                ConfChangeType::RemoveNode => {}
                _ => return,
            },
        }
        let cs = match self.raft.apply_conf_change(cc) {
            Ok(cs) => cs,
            Err(e) => return refuse(self, format!("consensus: {e}")),
        };
        self.raft.raft.raft_log.store.log.wl().set_conf_state(cs);
        let voters = self.voter_ids();
        if voters != self.voters {
            self.voters = voters;
            self.stats.voter_changes += 1;
            self.events.push_back(Event::Voters {
                voters: self.voters.clone(),
            });
        }
        if let Some(c) = change {
            self.directory.apply(&c, index);
            self.raft.mut_store().directory = self.directory.clone();
            self.stats.directory_changes += 1;
            self.sync_peers(now);
            if matches!(c, Change::Add { .. }) {
                // A joining member must get a snapshot (the directory and
                // the voters are not in the log's first entries): no
                // entry below the one that added it stays.
                self.compact_base_at_least = self.compact_base_at_least.max(1);
            }
            self.events.push_back(Event::Directory { change: Some(c) });
        }
    }

    /// The peers follow the directory (while joining, members heard but not
    /// yet in it stay too); a member dropped from it is remembered for a
    /// drain period (what it said it serves).
    fn sync_peers(&mut self, now: u64) {
        let joining = self.joining();
        let gone: Vec<MemberId> = self
            .peers
            .keys()
            .filter(|id| !(self.directory.contains(**id) || joining && self.heard_at.contains_key(id)))
            .copied()
            .collect();
        for id in gone {
            if let Some(p) = self.peers.remove(&id) {
                self.departed.push((now, id, p));
            }
        }
        if !joining {
            let directory = &self.directory;
            self.heard_at
                .retain(|id, _| directory.get(*id).is_some_and(|m| m.address.ip().is_unspecified()));
        }
        for id in self.directory.members().keys() {
            if *id != self.me {
                self.peers.entry(*id).or_default();
            }
        }
        self.live.retain(|m| self.peers.contains_key(m));
        self.dirty = true;
    }

    /// Once the heartbeats say the leader is silent (not heard for the
    /// timeout), the lowest live voter starts an election at once rather
    /// than after consensus's own election timeout: a leader's death then
    /// costs one election round trip more than any other member's. Pre-vote
    /// stays on, so a member that still hears the leader refuses, and only
    /// one member asks (the lowest id), so votes do not split.
    pub(super) fn campaign_if_leader_silent(&mut self, now: u64) {
        if self.fenced_duplicate || self.raft.raft.state != StateRole::Follower {
            return;
        }
        let Some(leader) = self.leader.filter(|l| *l != self.me) else {
            return;
        };
        let silent = self
            .peers
            .get(&leader)
            .is_some_and(|p| p.incarnation > 0 && now >= p.last_heard + self.settings.timeout_ms);
        let term = self.raft.raft.term;
        if !silent || self.campaigned == Some((leader, term)) || !self.voters.contains(&self.me) {
            return;
        }
        let live_voters: Vec<MemberId> = self
            .voters
            .iter()
            .copied()
            .filter(|v| *v == self.me || self.live.contains(v))
            .collect();
        if live_voters.len() < self.voters.len() / 2 + 1 || live_voters.iter().min() != Some(&self.me) {
            return;
        }
        self.campaigned = Some((leader, term));
        if self.raft.campaign().is_ok() {
            self.stats.campaigns += 1;
            self.events.push_back(Event::Campaign);
            self.drive_raft(now);
        }
    }
}
