//! Datagrams in: verified, their sender checked, handed on.

use super::{Agent, MAX_HEARD_AT};
use crate::layout::MemberId;
use crate::protocol::events::{Event, Reject};
use crate::protocol::peers::Peer;
use crate::protocol::raft_node::raft_id;
use crate::wire::{self, Datagram, DecodeError, Sender};
use protobuf::Message as _;
use raft::eraftpb::Message;
use std::net::SocketAddr;

impl Agent {
    /// Verifies, decodes and handles a datagram from the network (its
    /// source unknown).
    pub fn receive(&mut self, datagram: &[u8], now: u64) -> Result<(), Reject> {
        self.receive_at(datagram, None, now)
    }

    /// Verifies, decodes and handles a datagram from `from`: while this
    /// member is joining, a member not yet in its directory is answered
    /// there.
    pub fn receive_from(&mut self, datagram: &[u8], from: SocketAddr, now: u64) -> Result<(), Reject> {
        self.receive_at(datagram, Some(from), now)
    }

    fn receive_at(&mut self, datagram: &[u8], source: Option<SocketAddr>, now: u64) -> Result<(), Reject> {
        self.stats.received += 1;
        let d = wire::decode(datagram, &self.keys).map_err(|e| {
            match e {
                DecodeError::BadLength => self.stats.rejected_bad_length += 1,
                DecodeError::NotHeartbeat => self.stats.rejected_not_heartbeat += 1,
                DecodeError::UnknownKey => self.stats.rejected_unknown_key += 1,
                DecodeError::BadTag => self.stats.rejected_bad_tag += 1,
                DecodeError::Malformed => self.stats.rejected_malformed += 1,
            }
            Reject::Decode(e)
        })?;
        let id = MemberId(d.from().member);
        let r = self.handle(d, now);
        if let (Ok(()), Some(at)) = (r, source) {
            let unknown = match self.directory.get(id) {
                None => self.joining(),
                Some(m) => m.address.ip().is_unspecified(),
            };
            if unknown && (self.heard_at.len() < MAX_HEARD_AT || self.heard_at.contains_key(&id)) {
                self.heard_at.insert(id, at);
            }
        }
        self.after(now);
        r
    }

    fn check_sender(&mut self, from: &Sender) -> Result<MemberId, Reject> {
        if from.segment != self.settings.segment {
            self.stats.rejected_foreign += 1;
            return Err(Reject::Foreign);
        }
        let id = MemberId(from.member);
        if id == self.me {
            return Err(self.own_id(from));
        }
        if !self.peers.contains_key(&id) && self.joining() && self.peers.len() < MAX_HEARD_AT {
            // Joining: the members are not known yet; an authentic datagram
            // is from one (it holds the key). Nothing rests on it: a
            // joining member is no voter and holds nothing.
            self.peers.insert(id, Peer::default());
        }
        let Some(p) = self.peers.get(&id) else {
            self.stats.rejected_unknown_member += 1;
            return Err(Reject::UnknownMember);
        };
        if (from.incarnation, from.nonce) < (p.incarnation, p.nonce) {
            self.stats.rejected_stale += 1;
            return Err(Reject::Stale);
        }
        Ok(id)
    }

    /// An authentic datagram naming this member. Only evidence that a
    /// replay cannot make fences: a start newer than ours (a higher
    /// incarnation, or ours from a copy of our state file with a higher
    /// nonce). Our own past, our own datagrams reflected, and the losing
    /// copy of a duplicate are counted and ignored.
    fn own_id(&mut self, from: &Sender) -> Reject {
        let theirs = (from.incarnation, from.nonce);
        let ours = (self.incarnation, self.nonce);
        if theirs < ours && from.incarnation < self.incarnation {
            self.stats.rejected_own_past += 1;
            return Reject::OwnPast;
        }
        if theirs > ours && !self.fenced_duplicate {
            // Another, newer process runs with this id: it and we cannot
            // both hold buckets. Fence for good: hold nothing, advertise
            // weight 0, take no part in consensus; an operator must fix the
            // configuration (or stop the old process).
            self.fenced_duplicate = true;
            self.events.push_back(Event::DuplicateId {
                incarnation: from.incarnation,
            });
            self.release_all();
            self.dirty = true;
        }
        self.stats.rejected_own_id += 1;
        Reject::OwnId
    }

    fn handle(&mut self, d: Datagram, now: u64) -> Result<(), Reject> {
        let id = self.check_sender(d.from())?;
        match d {
            Datagram::Consensus { from, message } => {
                let Ok(m) = Message::parse_from_bytes(&message) else {
                    self.stats.rejected_malformed += 1;
                    return Err(Reject::Malformed);
                };
                if m.from != raft_id(id) || m.to != raft_id(self.me) || !self.sane(&m) {
                    self.stats.rejected_malformed += 1;
                    return Err(Reject::Malformed);
                }
                // Consensus only from a start whose heartbeat showed the
                // settings we share (its first heartbeat leaves before its
                // first consensus message; raft resends what is lost).
                let p = self.peers.get(&id).ok_or(Reject::UnknownMember)?;
                if p.refused.is_some() || (p.incarnation, p.nonce) != (from.incarnation, from.nonce) {
                    self.stats.rejected_settings += u64::from(p.refused.is_some());
                    return Err(Reject::NotYetHeard);
                }
                if self.fenced_duplicate {
                    return Err(Reject::OwnId);
                }
                self.stats.consensus_accepted += 1;
                let _ = self.raft.step(m);
                Ok(())
            }
            Datagram::Heartbeat(hb) => self.heartbeat(id, hb, now),
            Datagram::Serving(sv) => self.serving(id, sv),
        }
    }
}
