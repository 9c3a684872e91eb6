//! The buckets this member holds: a table installed (releases), claims,
//! and the rights and view the dataplane enforces.

use super::Agent;
use crate::layout::{MemberId, Table, Weighted};
use crate::protocol::epoch::Epoch;
use crate::protocol::events::{BucketState, Event};
use crate::wire::Role;

impl Agent {
    /// This member's right on every bucket at `now`.
    pub fn rights(&self, now: u64) -> Vec<BucketState> {
        self.held
            .iter()
            .zip(&self.settle_at)
            .enumerate()
            .map(|(b, (&held, &at))| match held {
                false => BucketState::Foreign,
                true if now >= at
                    && self
                        .served_elsewhere
                        .get(b / 64)
                        .is_some_and(|w| w & (1 << (b % 64)) == 0) =>
                {
                    BucketState::Settled
                }
                true => BucketState::Claimed,
            })
            .collect()
    }

    /// Every worker now enforces the view of `version` (or a newer one).
    pub fn confirm_view(&mut self, version: u64) {
        while let Some(&(v, applied)) = self.unconfirmed.front() {
            if v > version {
                break;
            }
            self.enforced = self.enforced.max(applied);
            self.unconfirmed.pop_front();
            self.dirty = true;
        }
    }

    /// True once when the dataplane view must be republished; the view
    /// published then has version [`Agent::view_version`].
    pub fn take_view_changed(&mut self) -> bool {
        std::mem::take(&mut self.view_changed)
    }

    /// The version of the view [`Agent::rights`] describes now.
    pub fn view_version(&self) -> u64 {
        self.view_version
    }

    pub(super) fn release_all(&mut self) {
        if self.held_count > 0 {
            self.stats.buckets_released += u64::from(self.held_count);
            self.events.push_back(Event::Released {
                buckets: self.held_count,
            });
            self.held.iter_mut().for_each(|h| *h = false);
            self.held_count = 0;
            self.bump_view();
        }
    }

    pub(super) fn bump_view(&mut self) {
        self.view_version += 1;
        self.view_changed = true;
        self.unconfirmed.push_back((self.view_version, self.applied));
    }

    /// Installs an applied table: releases at once what it does not give us.
    pub(super) fn install(&mut self, epoch: Epoch, now: u64) {
        let members: Vec<Weighted> = epoch
            .members
            .iter()
            .map(|&(id, w)| Weighted {
                id,
                weight: f64::from(w),
            })
            .collect();
        let holders: Vec<MemberId> = self.epoch.members.iter().map(|m| m.0).collect();
        self.replaced.push_back((now, holders));
        let mut table = Table::build(epoch.layout, &members, epoch.buckets);
        table.pin(&self.settings.pins, |m| {
            epoch.members.iter().any(|(e, w)| *e == m && *w > 0)
        });
        self.prev_table = std::mem::replace(&mut self.table, table);
        self.raft.mut_store().table = Some((epoch.index, epoch.encode()));
        self.events.push_back(Event::NewEpoch {
            index: epoch.index,
            creator: epoch.creator,
            members: epoch.members.clone(),
        });
        self.epoch = epoch;
        self.stats.epochs_adopted += 1;
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
            self.events.push_back(Event::Released { buckets: released });
        }
        self.dirty = true;
    }

    pub(super) fn claim(&mut self, now: u64) {
        if self.settings.role != Role::Node || self.epoch.index == 0 || self.fenced_duplicate {
            return;
        }
        let wait = self.settings.claim_wait_ms();
        while self.replaced.front().is_some_and(|(at, _)| now >= at + wait) {
            self.replaced.pop_front();
        }
        let target = self.applied;
        let waiting = self.replaced.iter().flat_map(|(_, m)| m).any(|m| {
            *m != self.me
                && self
                    .peers
                    .get(m)
                    .is_none_or(|p| p.incarnation == 0 || p.applied < target)
        });
        if waiting {
            return;
        }
        let mut claimed = 0;
        let mut later = false;
        for b in 0..self.held.len() {
            if !self.held[b] && self.table.owner(b as u32) == Some(self.me) {
                self.held[b] = true;
                // A live previous holder says what it still serves there;
                // a silent one (or one unknown) cannot: a drain period.
                let told = match self.prev_table.owner(b as u32) {
                    Some(m) => m == self.me || self.live.contains(&m),
                    None => false,
                };
                self.settle_at[b] = if told { now } else { now + self.settings.drain_ms };
                later |= !told;
                claimed += 1;
            }
        }
        if claimed > 0 {
            self.held_count += claimed;
            self.stats.buckets_claimed += u64::from(claimed);
            self.events.push_back(Event::Claimed { buckets: claimed });
            self.dirty = true;
            self.bump_view();
            let settle = now + self.settings.drain_ms;
            if later && self.settles.back().is_none_or(|t| *t < settle) {
                self.settles.push_back(settle);
            }
        }
    }
}
