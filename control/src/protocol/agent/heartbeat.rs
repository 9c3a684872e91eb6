//! Heartbeats in and out: who hears whom, their grants, their news.

use super::Agent;
use crate::layout::MemberId;
use crate::protocol::events::Outgoing;
use crate::protocol::events::{Event, Reject};
use crate::protocol::peers::{Peer, Seen};
use crate::wire::{self, Heard, Heartbeat, Sender};
use std::net::SocketAddr;

impl Agent {
    /// A heartbeat from `id` (its sender checked): news of its start, of
    /// what it holds and enforces, and whether it hears us and grants us a
    /// lease.
    pub(super) fn heartbeat(&mut self, id: MemberId, hb: Heartbeat, now: u64) -> Result<(), Reject> {
        self.check_heartbeat(id, &hb, now)?;
        if self.see_heartbeat(id, &hb, now)? == Seen::Older {
            // Older news than what we know: only the window learns.
            self.stats.accepted += 1;
            return Ok(());
        }
        self.note_heartbeat(id, &hb, now)?;
        self.note_heard_us(id, &hb)?;
        self.stats.accepted += 1;
        Ok(())
    }

    /// Refuses a heartbeat that cannot be true, or whose settings that
    /// must agree differ from ours.
    fn check_heartbeat(&mut self, id: MemberId, hb: &Heartbeat, now: u64) -> Result<(), Reject> {
        // Sanity: a change index far beyond anything in our log is a lie or
        // corruption, even if authentic.
        let horizon = self
            .raft
            .raft
            .raft_log
            .last_index()
            .max(self.raft.raft.raft_log.committed)
            + (1 << 20);
        if hb.log_last > horizon {
            self.stats.rejected_malformed += 1;
            return Err(Reject::Malformed);
        }
        let ours = self.settings.agreed();
        let differs = ours.differs(&hb.agreed);
        let p = self.peers.get_mut(&id).ok_or(Reject::UnknownMember)?;
        if let Some((field, ours, theirs)) = differs {
            // Refused: never live here, so never in a table, and its
            // consensus messages are refused too. Said once per start.
            if (p.incarnation, p.nonce) != (hb.from.incarnation, hb.from.nonce) || p.refused.is_none() {
                *p = Peer::refused(hb.from.incarnation, hb.from.nonce, (field, ours, theirs), now);
                self.events.push_back(Event::SettingsDiffer {
                    member: id,
                    field,
                    ours,
                    theirs,
                });
            }
            self.stats.rejected_settings += 1;
            return Err(Reject::Settings);
        }
        Ok(())
    }

    /// Where the heartbeat's sequence number falls for its start: a new
    /// start begins afresh; a replay is refused.
    fn see_heartbeat(&mut self, id: MemberId, hb: &Heartbeat, now: u64) -> Result<Seen, Reject> {
        let p = self.peers.get_mut(&id).ok_or(Reject::UnknownMember)?;
        if (hb.from.incarnation, hb.from.nonce) == (p.incarnation, p.nonce) && p.refused.is_none() {
            match p.see(hb.seq) {
                Seen::Newest => {}
                Seen::Before => {
                    self.stats.rejected_replayed += 1;
                    return Err(Reject::Replayed);
                }
                Seen::Older => return Ok(Seen::Older),
            }
        } else {
            // A new start (or one whose settings now agree): it holds
            // nothing it did not claim since.
            *p = Peer::heard(hb.from.incarnation, hb.from.nonce, hb.seq, now);
            self.stats.joins += 1;
            self.events.push_back(Event::Joined {
                member: id,
                incarnation: hb.from.incarnation,
            });
            self.dirty = true;
        }
        Ok(Seen::Newest)
    }

    /// What the newest heartbeat of a start says of it.
    fn note_heartbeat(&mut self, id: MemberId, hb: &Heartbeat, now: u64) -> Result<(), Reject> {
        let p = self.peers.get_mut(&id).ok_or(Reject::UnknownMember)?;
        p.last_heard = now;
        p.role = Some(hb.from.role);
        p.rules = hb.agreed.rules;
        p.draining = hb.from.draining;
        p.weight_milli = hb.weight_milli;
        p.connections = hb.connections;
        p.held = hb.held;
        if hb.applied > p.applied {
            // It enforces a newer table: our grant to it may resume (or a
            // claim waiting for it may proceed); say so at once rather
            // than at the next interval.
            self.dirty = true;
        }
        let p = self.peers.get_mut(&id).ok_or(Reject::UnknownMember)?;
        p.applied = p.applied.max(hb.applied);
        p.log_last = hb.log_last;
        if hb.serving == 0 && hb.seq > p.serving_seq {
            // It serves nothing in buckets it does not hold.
            p.serving.clear();
            p.serving_all = false;
            p.serving_seq = hb.seq;
            p.serving_applied = hb.applied;
        }
        Ok(())
    }

    /// What the heartbeat says of us: it hears us, and maybe grants us a
    /// lease.
    fn note_heard_us(&mut self, id: MemberId, hb: &Heartbeat) -> Result<(), Reject> {
        let p = self.peers.get_mut(&id).ok_or(Reject::UnknownMember)?;
        // What it says of us counts only if it is about this start: a grant
        // to an earlier incarnation (replayed from a capture of our past
        // run, whose sequence numbers this run reuses) is nothing.
        if let Some(h) = hb
            .heard
            .iter()
            .find(|h| h.member == self.me.0 && h.incarnation == self.incarnation)
        {
            if let Some(at) = self.sent.iter().find(|(s, _)| *s == h.seq).map(|(_, at)| *at) {
                p.hears_us_sent_at = Some(p.hears_us_sent_at.map_or(at, |o| o.max(at)));
                if h.lease {
                    p.grant_sent_at = Some(p.grant_sent_at.map_or(at, |o| o.max(at)));
                }
            }
        }
        Ok(())
    }

    /// Sends a heartbeat to every member, and what this member serves in
    /// buckets it does not hold, if anything.
    pub(super) fn send_heartbeat(&mut self, now: u64) {
        self.seq += 1;
        self.sent.push_back((self.seq, now));
        if self.sent.len() > 256 {
            self.sent.pop_front();
        }
        let log_last = self.log_last();
        let heard = self.heard(log_last, now);
        let hb = Heartbeat {
            from: self.sender(),
            seq: self.seq,
            weight_milli: self.weight_milli(),
            connections: self.connections,
            held: self.held_count,
            applied: self.reported_applied(),
            log_last: log_last.max(self.reported_applied()),
            agreed: self.settings.agreed(),
            serving: 0,
            heard,
        };
        let serving = self.serving_here();
        let (ranges, count) = Self::serving_ranges(&serving);
        let hb = Heartbeat { serving: count, ..hb };
        if let Ok(bytes) = wire::encode_heartbeat(&hb, &self.keys) {
            self.stats.sent += 1;
            self.out.push(Outgoing {
                to: None,
                addresses: self.broadcast_addresses(),
                bytes,
                durable: false,
            });
        }
        if count > 0 {
            self.send_serving(&hb, serving, ranges);
        }
    }

    /// The members we hear, as a heartbeat says: for each, the newest of
    /// its heartbeats, and whether we grant it a lease.
    fn heard(&self, log_last: u64, now: u64) -> Vec<Heard> {
        let probation = self.settings.claim_wait_ms();
        self.peers
            .iter()
            .filter(|(_, p)| p.incarnation > 0 && p.refused.is_none())
            .map(|(id, p)| Heard {
                member: id.0,
                incarnation: p.incarnation,
                seq: p.max_seq,
                // Their lease may count on this: nothing in our log
                // beyond what they enforce.
                lease: !self.fenced_duplicate
                    && log_last <= p.applied
                    && (p.first_heard == 0 || now >= p.first_heard + probation),
            })
            .collect()
    }

    pub(super) fn sender(&self) -> Sender {
        Sender {
            segment: self.settings.segment,
            member: self.me.0,
            incarnation: self.incarnation,
            nonce: self.nonce,
            role: self.settings.role,
            draining: self.draining,
        }
    }

    /// Where a datagram to every other member goes.
    pub(super) fn broadcast_addresses(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self
            .directory
            .members()
            .keys()
            .filter(|id| **id != self.me)
            .filter_map(|id| self.address_of(*id))
            .filter(|a| !a.ip().is_unspecified())
            .collect();
        if self.joining() {
            v.extend(self.heard_at.values());
            v.extend(self.join);
        }
        v.sort_unstable();
        v.dedup();
        v
    }
}
