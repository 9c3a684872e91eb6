//! Another member as last heard, and its replay window.

use crate::wire::Role;

/// A configured member as last heard.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Peer {
    /// Its incarnation (0: never heard).
    pub incarnation: u64,
    /// The nonce of that start.
    pub nonce: u32,
    /// Its settings differ from ours (first field, ours, theirs): refused.
    pub refused: Option<(&'static str, u32, u32)>,
    /// When this start of it was first heard: it gets no grant from us
    /// before the claim wait has passed since, so whatever lease our grants
    /// gave an earlier start of it (or another process with its id) has
    /// ended before they give it one.
    pub first_heard: u64,
    /// Highest sequence number seen.
    pub max_seq: u64,
    /// Bit i: sequence number max_seq - 1 - i was seen.
    window: u64,
    /// When last heard (ms); meaningful once `incarnation > 0`.
    pub last_heard: u64,
    /// When its heartbeat last showed it hears a recent one of ours: the
    /// send time (ours) of the newest of ours it has heard.
    pub hears_us_sent_at: Option<u64>,
    /// Its most recent lease grant to us: the send time (ours) of the
    /// heartbeat it answered.
    pub grant_sent_at: Option<u64>,
    /// Node or coordinator.
    pub role: Option<Role>,
    /// The digest of its port rules (0: none, a coordinator's).
    pub rules: u32,
    /// A coordinator leaves it out of its tables: its rules differ from
    /// the other nodes'.
    pub rules_left_out: bool,
    /// Draining.
    pub draining: bool,
    /// Its weight (thousandths).
    pub weight_milli: u32,
    /// Its connections.
    pub connections: u32,
    /// Buckets it holds.
    pub held: u32,
    /// The log index its workers enforce.
    pub applied: u64,
    /// The last change in its log.
    pub log_last: u64,
    /// The seq of the heartbeat its serving news last came with.
    pub serving_seq: u64,
    /// The table index its workers enforced then.
    pub serving_applied: u64,
    /// Buckets it does not hold and still serves flows in, one bit each
    /// (empty: none).
    pub serving: Vec<u64>,
    /// Too many to list: take it as serving every bucket.
    pub serving_all: bool,
}

/// Where a sequence number falls against those seen before.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Seen {
    /// Newer than any: news.
    Newest,
    /// Older than the newest, not seen before: only the window learns.
    Older,
    /// Seen before, or too old for the window to tell: a replay.
    Before,
}

impl Peer {
    /// A start first heard at `now` whose settings differ from ours:
    /// refused.
    pub(super) fn refused(incarnation: u64, nonce: u32, refused: (&'static str, u32, u32), now: u64) -> Peer {
        Peer {
            incarnation,
            nonce,
            refused: Some(refused),
            first_heard: now,
            ..Peer::default()
        }
    }

    /// A start first heard at `now`, in its heartbeat `seq`: it holds
    /// nothing it did not claim since.
    pub(super) fn heard(incarnation: u64, nonce: u32, seq: u64, now: u64) -> Peer {
        Peer {
            incarnation,
            nonce,
            max_seq: seq,
            first_heard: now,
            ..Peer::default()
        }
    }

    /// Marks `seq` (of this start) seen in the replay window.
    pub(super) fn see(&mut self, seq: u64) -> Seen {
        if seq > self.max_seq {
            let shift = seq - self.max_seq;
            self.window = if shift >= 64 {
                0
            } else {
                (self.window << shift) | (1 << (shift - 1))
            };
            self.max_seq = seq;
            Seen::Newest
        } else {
            let back = self.max_seq - seq;
            if back == 0 || back > 64 || self.window & (1 << (back - 1)) != 0 {
                return Seen::Before;
            }
            self.window |= 1 << (back - 1);
            Seen::Older
        }
    }
}
