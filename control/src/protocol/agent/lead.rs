//! The leader's proposals: voter and directory changes, and tables.

use super::Agent;
use crate::directory::Change;
use crate::layout::MemberId;
use crate::protocol::epoch::Epoch;
use crate::protocol::events::Event;
use crate::protocol::raft_node::{conf_change, conf_change_for, raft_id};
use crate::wire::Role;
use raft::eraftpb::ConfChangeType;
use std::collections::BTreeMap;

impl Agent {
    /// The port rules a coordinator's table is for: the digest most live
    /// nodes advertise (a tie goes to the one most members of the current
    /// table have, then to the lower digest). Nodes check each other's
    /// rules themselves; a coordinator has none of its own, so it leaves
    /// out of its tables the nodes whose rules differ from the others':
    /// two nodes that give one connection two values would both take it.
    /// None for a node (its peers with other rules are never live here).
    fn cluster_rules(&mut self) -> Option<u32> {
        if self.settings.role != Role::Coordinator {
            return None;
        }
        let mut counts: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
        for m in &self.live {
            let Some(p) = self.peers.get(m).filter(|p| p.role == Some(Role::Node)) else {
                continue;
            };
            let c = counts.entry(p.rules).or_default();
            c.0 += 1;
            c.1 += usize::from(self.epoch.members.iter().any(|(e, _)| e == m));
        }
        // The highest count, then the most in the table, then the lowest
        // digest (max_by_key keeps the last of equals: iterate downwards).
        let chosen = counts.iter().rev().max_by_key(|(_, c)| **c).map(|(r, _)| *r)?;
        for m in &self.live {
            let Some(p) = self.peers.get_mut(m).filter(|p| p.role == Some(Role::Node)) else {
                continue;
            };
            let differs = p.rules != chosen;
            if differs && !p.rules_left_out {
                self.stats.rejected_settings += 1;
                self.events.push_back(Event::SettingsDiffer {
                    member: *m,
                    field: "rules",
                    ours: chosen,
                    theirs: p.rules,
                });
            }
            p.rules_left_out = differs;
        }
        Some(chosen)
    }

    /// The leader's work: hand the lead on when it should, else propose
    /// the next voter or directory change and the next table.
    pub(super) fn lead(&mut self, now: u64) {
        if self.hand_lead_on() {
            return;
        }
        self.propose_membership(now);
        self.propose_table(now);
    }

    /// Hands the lead on when this leader should not keep it; true when it
    /// proposes nothing now.
    fn hand_lead_on(&mut self) -> bool {
        // A coordinator leads while it lives.
        if self.settings.role == Role::Node {
            if let Some(c) = self
                .live
                .iter()
                .find(|m| self.peers.get(m).and_then(|p| p.role) == Some(Role::Coordinator))
            {
                if self.voters.contains(c) && self.raft.raft.lead_transferee.is_none() {
                    self.raft.transfer_leader(raft_id(*c));
                    return true;
                }
            }
        }
        // A leader that is no voter any more (it is leaving) hands the lead
        // to a live voter and proposes nothing: the next leader makes the
        // table without it.
        if !self.voters.contains(&self.me) {
            if self.raft.raft.lead_transferee.is_none() {
                if let Some(v) = self.voters.iter().find(|v| self.live.contains(v)) {
                    self.raft.transfer_leader(raft_id(*v));
                }
            }
            return true;
        }
        false
    }

    /// Voter and directory changes, one at a time.
    fn propose_membership(&mut self, now: u64) {
        if self.raft.raft.has_pending_conf() {
            return;
        }
        let silent = self.voters.iter().copied().find(|v| {
            *v != self.me
                && !self.live.contains(v)
                && self
                    .peers
                    .get(v)
                    .is_none_or(|p| p.incarnation == 0 || now >= p.last_heard + self.settings.remove_after_ms)
                && now >= self.settings.remove_after_ms
        });
        // A live member of the directory that is no voter: back from
        // a silence (a voter again at once), or a learner that joined
        // (a voter once it has caught up).
        let back = self.live.iter().copied().find(|m| {
            !self.voters.contains(m)
                && self.directory.get(*m).is_some_and(|d| !d.leaving)
                && (!self.is_learner(*m) || self.caught_up(*m))
        });
        let cc = match (silent, back) {
            (_, Some(m)) => Some(conf_change(m, ConfChangeType::AddNode, Vec::new())),
            (Some(v), None) if self.voters.len() > 1 => Some(conf_change(v, ConfChangeType::RemoveNode, Vec::new())),
            _ => self
                .directory
                .members()
                .iter()
                .find(|(id, d)| d.leaving && **id != self.me && !self.voters.contains(id) && self.has_left(**id, now))
                .map(|(id, _)| conf_change_for(&Change::Remove { id: *id }, self.directory.version())),
        };
        if let Some(cc) = cc {
            let _ = self.raft.propose_conf_change(Vec::new(), cc);
        }
    }

    /// Tables: proposes the table the live members make, when it is due.
    fn propose_table(&mut self, now: u64) {
        let desired = self.desired_table();
        if desired.is_empty() {
            return;
        }
        if !self.table_due(&desired, now) {
            return;
        }
        if let Some((last, at)) = &self.last_proposal {
            if *last == desired && now < at + self.settings.timeout_ms {
                return;
            }
        }
        let epoch = Epoch {
            index: 0,
            creator: self.me,
            layout: self.settings.layout,
            buckets: self.settings.buckets,
            members: desired.clone(),
        };
        if self.raft.propose(Vec::new(), epoch.encode()).is_ok() {
            self.stats.epochs_created += 1;
            self.last_proposal = Some((desired, now));
            self.last_epoch_at = now;
        }
    }

    /// The members and weights of the table the live members make, sorted.
    fn desired_table(&mut self) -> Vec<(MemberId, u32)> {
        // Members of the directory only, and not leaving; the directory's
        // factor scales the weight each advertises.
        let scaled = |w: u32, factor: u32| (u64::from(w) * u64::from(factor) / 1000).min(u64::from(u32::MAX)) as u32;
        let rules = self.cluster_rules();
        let mut desired: Vec<(MemberId, u32)> = self
            .live
            .iter()
            .filter_map(|m| {
                let p = self.peers.get(m)?;
                if rules.is_some_and(|r| p.rules != r) {
                    return None;
                }
                let d = self.directory.get(*m).filter(|d| !d.leaving)?;
                let w = if p.draining {
                    0
                } else {
                    scaled(p.weight_milli, d.weight_milli)
                };
                (p.role == Some(Role::Node)).then_some((*m, w))
            })
            .collect();
        if self.settings.role == Role::Node {
            if let Some(d) = self.directory.get(self.me).filter(|d| !d.leaving) {
                let w = if self.draining {
                    0
                } else {
                    scaled(self.weight_milli(), d.weight_milli)
                };
                desired.push((self.me, w));
            }
        }
        desired.sort();
        desired
    }

    /// Whether a table of `desired` is due: for other members soon, for
    /// weights moved beyond the hysteresis no more often than
    /// `min_epoch_ms`.
    fn table_due(&self, desired: &[(MemberId, u32)], now: u64) -> bool {
        let current = &self.epoch.members;
        let same_members = desired.len() == current.len() && desired.iter().zip(current).all(|(a, b)| a.0 == b.0);
        let weights_moved = desired
            .iter()
            .zip(current)
            .any(|(a, b)| a.1.abs_diff(b.1) > self.settings.hysteresis_milli);
        if same_members {
            weights_moved && now >= self.last_epoch_at + self.settings.min_epoch_ms
        } else {
            // Membership: at once, but no faster than one table per
            // heartbeat interval (no storms while liveness flaps).
            self.epoch.index == 0 || now >= self.last_epoch_at + self.settings.interval_ms
        }
    }

    fn is_learner(&self, m: MemberId) -> bool {
        self.raft.raft.prs().conf().learners().contains(&raft_id(m))
    }

    /// A learner has the log up to our commit and enforces our last change.
    fn caught_up(&self, m: MemberId) -> bool {
        let committed = self.raft.raft.raft_log.committed;
        self.raft
            .raft
            .prs()
            .get(raft_id(m))
            .is_some_and(|pr| pr.matched >= committed)
            && self.peers.get(&m).is_some_and(|p| p.applied >= self.applied)
    }

    /// A leaving member has left: no share in the table in force, and it
    /// says it enforces that table, holds nothing and serves no flows (or
    /// it has been silent for `remove_after_ms`: its lease ended long ago,
    /// and its last word on its flows counts for a drain period after).
    fn has_left(&self, m: MemberId, now: u64) -> bool {
        if self.epoch.members.iter().any(|(id, _)| *id == m) {
            return false;
        }
        let Some(p) = self.peers.get(&m) else { return true };
        let drained = self.live.contains(&m)
            && p.applied >= self.epoch.index
            && p.held == 0
            && !p.serving_all
            && p.serving.iter().all(|w| *w == 0)
            && p.serving_applied >= self.epoch.index;
        let silent = (p.incarnation == 0 || now >= p.last_heard + self.settings.remove_after_ms)
            && now >= self.settings.remove_after_ms;
        drained || silent
    }
}
