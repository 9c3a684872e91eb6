//! What members serve outside the buckets they hold: told, heard, and what
//! it keeps from settling here.

use super::Agent;
use crate::layout::MemberId;
use crate::protocol::events::Outgoing;
use crate::protocol::events::Reject;
use crate::wire::{self, Heartbeat, Role, Serving};

impl Agent {
    /// What a peer still serves in buckets it does not hold: news only if
    /// newer than what we have of the same start (a replay of older news
    /// could make us adopt its connections' segments).
    pub(super) fn serving(&mut self, id: MemberId, sv: Serving) -> Result<(), Reject> {
        let buckets = self.settings.buckets;
        let p = self.peers.get_mut(&id).ok_or(Reject::UnknownMember)?;
        if p.refused.is_some() || (p.incarnation, p.nonce) != (sv.from.incarnation, sv.from.nonce) {
            return Err(Reject::NotYetHeard);
        }
        if sv.seq <= p.serving_seq {
            self.stats.rejected_replayed += 1;
            return Err(Reject::Replayed);
        }
        let mut bits = vec![0u64; (buckets as usize).div_ceil(64)];
        for (b, w) in bits.iter_mut().zip(&sv.bitmap) {
            *b = *w;
        }
        for &(first, count) in &sv.ranges {
            for b in u64::from(first)..(u64::from(first) + u64::from(count)).min(u64::from(buckets)) {
                bits[b as usize / 64] |= 1 << (b % 64);
            }
        }
        p.serving = bits;
        p.serving_all = sv.all;
        p.serving_seq = sv.seq;
        p.serving_applied = sv.applied;
        self.stats.accepted += 1;
        Ok(())
    }

    /// The buckets with flows on this node's workers, one bit each (the
    /// driver reads them after the workers confirmed the view, so flows
    /// made under an older view are in).
    pub fn set_flow_presence(&mut self, words: Vec<u64>) {
        if words != self.presence {
            self.presence = words;
            // Say so at once only when what it serves outside the buckets
            // it holds changed (flows come and go in held buckets all the
            // time).
            let serving = self.serving_here();
            if serving != self.last_serving {
                self.last_serving = serving;
                self.dirty = true;
            }
        }
    }

    /// Buckets this member does not hold and still serves flows in.
    pub(super) fn serving_here(&self) -> Vec<u64> {
        self.presence
            .iter()
            .enumerate()
            .map(|(w, bits)| {
                let mut held = 0u64;
                for k in 0..64 {
                    if self.held.get(w * 64 + k).copied().unwrap_or(false) {
                        held |= 1 << k;
                    }
                }
                bits & !held
            })
            .collect()
    }

    /// Recomputes which buckets another member still serves (or may);
    /// republishes the view when that changed.
    pub(super) fn update_served_elsewhere(&mut self, now: u64) {
        let words = (self.settings.buckets as usize).div_ceil(64);
        let mut blocked = vec![0u64; words];
        let drain = self.settings.drain_ms;
        for (id, p) in &self.peers {
            if p.role == Some(Role::Coordinator) {
                continue;
            }
            let all = if p.incarnation == 0 {
                // Never heard: it may serve anything, until a drain period
                // after our start.
                now < self.started + drain
            } else if p.refused.is_some() {
                // Refused (its settings differ): its word is not taken, yet
                // it may serve connections it had (a restart with another
                // setting picks them up from its kernel): a drain period.
                now < p.first_heard + drain
            } else if self.live.contains(id) || now < p.last_heard + drain {
                // Its news must be at least as new as our table, live or
                // not: a list from before says nothing of the buckets it
                // held then.
                p.serving_all || p.serving_applied < self.applied
            } else {
                continue;
            };
            if all {
                blocked.iter_mut().for_each(|w| *w = u64::MAX);
                break;
            }
            for (b, s) in blocked.iter_mut().zip(&p.serving) {
                *b |= s;
            }
        }
        // Members dropped from the directory: their last word counts for a
        // drain period after they were last heard (after they were dropped,
        // if never heard), as for any silent member; a word from before the
        // table that took their buckets away says nothing of those.
        self.departed.retain(|(at, _, p)| now < p.last_heard.max(*at) + drain);
        for (_, id, p) in &self.departed {
            let held_nothing = p.incarnation > 0
                && p.held == 0
                && !p.serving_all
                && p.serving_applied >= p.applied
                && !self.epoch.members.iter().any(|(m, _)| m == id);
            if !held_nothing {
                blocked.iter_mut().for_each(|w| *w = u64::MAX);
                break;
            }
            for (b, s) in blocked.iter_mut().zip(&p.serving) {
                *b |= s;
            }
        }
        if blocked != self.served_elsewhere {
            self.served_elsewhere = blocked;
            self.bump_view();
        }
    }

    /// Sends what this member serves in buckets it does not hold
    /// (`serving`, one bit each, and the same as `ranges`) with heartbeat
    /// `hb`.
    pub(super) fn send_serving(&mut self, hb: &Heartbeat, serving: Vec<u64>, ranges: Vec<(u32, u32)>) {
        // Ranges while they fit one datagram, else the bitmap (65,536
        // buckets: 8 KiB), else "every bucket" (over 130,000 buckets
        // scattered).
        let as_ranges = ranges.len() <= wire::MAX_SERVING_RANGES;
        let as_bitmap = !as_ranges && serving.len() <= wire::MAX_SERVING_RANGES;
        let sv = Serving {
            from: hb.from,
            seq: hb.seq,
            applied: hb.applied,
            all: !as_ranges && !as_bitmap,
            ranges: if as_ranges { ranges } else { Vec::new() },
            bitmap: if as_bitmap { serving } else { Vec::new() },
        };
        if let Ok(bytes) = wire::encode_serving(&sv, &self.keys) {
            self.out.push(Outgoing {
                to: None,
                addresses: self.broadcast_addresses(),
                bytes,
                durable: false,
            });
        }
    }

    /// What this member serves in buckets it does not hold, as ranges.
    pub(super) fn serving_ranges(bits: &[u64]) -> (Vec<(u32, u32)>, u32) {
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        let mut count = 0u32;
        for (w, word) in bits.iter().enumerate() {
            let mut word = *word;
            while word != 0 {
                let b = (w * 64) as u32 + word.trailing_zeros();
                word &= word - 1;
                count += 1;
                match ranges.last_mut() {
                    Some((first, n)) if *first + *n == b => *n += 1,
                    _ => ranges.push((b, 1)),
                }
            }
        }
        (ranges, count)
    }
}
