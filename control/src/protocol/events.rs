//! What the agent tells its driver: events, counts, datagrams to send, its
//! right on each bucket, and why a datagram was not taken.

use crate::directory::Change;
use crate::layout::MemberId;
use crate::wire::DecodeError;
use std::net::SocketAddr;

/// This node's right on one bucket, as the agent gives it to the
/// workers: the dataplane's own type (`Foreign`: not held; `Claimed`: held,
/// unknown segments not adopted since another member may still serve
/// flows here; `Settled`: held, and no other member serves flows here).
pub use synshare_dataplane::ownership::BucketState;

/// What happened, for the driver to log and count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member was heard for the first time, or with a new incarnation.
    Joined {
        /// Who.
        member: MemberId,
        /// Its incarnation.
        incarnation: u64,
    },
    /// A live member stopped being live (silent, or not hearing us).
    Lost {
        /// Who.
        member: MemberId,
    },
    /// A new table is in force here.
    NewEpoch {
        /// Its log index.
        index: u64,
        /// Who proposed it.
        creator: MemberId,
        /// Members and weights (thousandths).
        members: Vec<(MemberId, u32)>,
    },
    /// Buckets given up because the table moved them.
    Released {
        /// How many.
        buckets: u32,
    },
    /// Buckets taken.
    Claimed {
        /// How many.
        buckets: u32,
    },
    /// The lease ran out: no new connections until a majority is heard.
    LeaseLost,
    /// The lease is valid again.
    LeaseRegained,
    /// This member's id is in use by a newer process (a higher
    /// incarnation, or the same one started from a copy of the state file
    /// with a higher nonce): fenced for good, weight 0, no consensus.
    DuplicateId {
        /// The other process's incarnation.
        incarnation: u64,
    },
    /// A member's settings that must agree differ from ours: it is
    /// refused (said once per incarnation of that member).
    SettingsDiffer {
        /// Who.
        member: MemberId,
        /// The first field that differs.
        field: &'static str,
        /// Our value.
        ours: u32,
        /// Its value.
        theirs: u32,
    },
    /// The leader went silent: this member, the lowest live voter, starts
    /// an election at once instead of waiting for the election timeout.
    Campaign,
    /// The leader changed (0: none known).
    Leader {
        /// The leader.
        member: Option<MemberId>,
    },
    /// The voter set changed.
    Voters {
        /// The voters now.
        voters: Vec<MemberId>,
    },
    /// The member directory changed: by this change, or (none) replaced
    /// whole by a snapshot from the leader.
    Directory {
        /// The change applied.
        change: Option<Change>,
    },
    /// A directory change in the log was refused (by every member alike).
    ChangeRefused {
        /// The change.
        change: Change,
        /// Why.
        reason: String,
    },
}

/// What the exchange counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Heartbeats sent.
    pub sent: u64,
    /// Consensus messages sent.
    pub consensus_sent: u64,
    /// Datagrams received.
    pub received: u64,
    /// Heartbeats accepted.
    pub accepted: u64,
    /// Consensus messages accepted.
    pub consensus_accepted: u64,
    /// Rejected: length.
    pub rejected_bad_length: u64,
    /// Rejected: not ours.
    pub rejected_not_heartbeat: u64,
    /// Rejected: a key id not accepted.
    pub rejected_unknown_key: u64,
    /// Rejected: authentication failed.
    pub rejected_bad_tag: u64,
    /// Rejected: authentic but inconsistent or insane.
    pub rejected_malformed: u64,
    /// Rejected: a sequence number already seen (replay or duplicate).
    pub rejected_replayed: u64,
    /// Rejected: an older incarnation of the sender.
    pub rejected_stale: u64,
    /// Rejected: another segment.
    pub rejected_foreign: u64,
    /// Rejected: a member id not configured.
    pub rejected_unknown_member: u64,
    /// Rejected: claims to be this member (our own datagram reflected, or
    /// the losing copy of a duplicate).
    pub rejected_own_id: u64,
    /// Rejected: this member's own past (an earlier incarnation), e.g. a
    /// replay of a capture: never a reason to fence.
    pub rejected_own_past: u64,
    /// Rejected: a member whose settings that must agree differ from ours.
    pub rejected_settings: u64,
    /// Elections started at once because the leader went silent.
    pub campaigns: u64,
    /// Tables applied.
    pub epochs_adopted: u64,
    /// Tables proposed as leader.
    pub epochs_created: u64,
    /// Buckets released.
    pub buckets_released: u64,
    /// Buckets claimed.
    pub buckets_claimed: u64,
    /// Members that stopped being live.
    pub failovers: u64,
    /// Times the lease ran out.
    pub fenced: u64,
    /// Members heard for the first time, or with a new incarnation.
    pub joins: u64,
    /// Voter set changes applied.
    pub voter_changes: u64,
    /// Times the consensus log was compacted.
    pub log_compactions: u64,
    /// Snapshots installed (this member was behind the leader's log).
    pub snapshots_installed: u64,
    /// Snapshots sent to a member behind the log.
    pub snapshots_sent: u64,
    /// Directory changes applied.
    pub directory_changes: u64,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// To every member of the directory, or to one.
    pub to: Option<MemberId>,
    /// Where it goes: the addresses of those members (from the directory;
    /// while joining, also where we were told to join and where members
    /// not yet in our directory were heard from).
    pub addresses: Vec<SocketAddr>,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// It rests on consensus state that must be on disk before it leaves
    /// (a vote, an append acknowledged); heartbeats and a leader's appends
    /// do not.
    pub durable: bool,
}

/// Why a datagram was not taken.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reject {
    /// It did not decode or authenticate.
    Decode(DecodeError),
    /// Another segment.
    Foreign,
    /// It claims to come from this member.
    OwnId,
    /// A member not configured.
    UnknownMember,
    /// An older incarnation of its sender.
    Stale,
    /// A sequence number already seen.
    Replayed,
    /// This member's own earlier incarnation (a replay of its past).
    OwnPast,
    /// Its settings that must agree differ from ours.
    Settings,
    /// Consensus from a start not yet heard in a heartbeat.
    NotYetHeard,
    /// Authentic but insane.
    Malformed,
}
