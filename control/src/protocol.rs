//! The availability exchange and bucket ownership, as a deterministic state
//! machine: no sockets, no clock. The driver passes `now` (ms, monotonic)
//! in, hands received datagrams to [`Agent::receive`], sends what
//! [`Agent::tick`] returns (after saving [`Agent::take_persist`]), and
//! publishes [`Agent::rights`] with [`Agent::lease_until`] to the workers.
//!
//! # The guarantee
//! No bucket is ever open for new connections on two nodes at once, under
//! any pattern of loss, duplication, delay, one-way links, partitions,
//! stalls, restarts and clock steps, as long as every clock's rate is within
//! [`CLOCK_RATE_BOUND`] of real time. It rests on three pieces:
//!
//! - **One table history, agreed by consensus.** Tables (members and their
//!   weights: an *epoch*) and voter changes are entries of a Raft log (TiKV's
//!   `raft` crate, a deterministic tick/step state machine). Only the
//!   leader proposes; an entry exists once a majority of the voters has it.
//!   A cut-off member cannot make tables of its own.
//! - **Leases.** A node holds buckets of the table at its applied index `i`
//!   only while a majority of the voters has, within the last `lease_ms`
//!   (by the node's own clock, counted from when it *sent* the heartbeat
//!   they answer), said "I heard you, and my log has no change beyond `i`".
//!   The next change after `i` is committed by a majority too, and that
//!   majority shares a voter with every majority that could still renew the
//!   old lease: once that voter has the change, it renews no lease at `i`.
//!   So every lease at `i` ends within `lease_ms` (with the clock bound) of
//!   the commit of the change after it. The workers read the lease deadline
//!   themselves, so a stalled control thread cannot keep them open.
//! - **Claims wait for the old holders.** A node claims buckets that the
//!   table at `j` gives it only once every member that held buckets in a
//!   table replaced within the last [`Settings::claim_wait_ms`] has said it
//!   enforces `j` (the normal hand-off: one message delay), or that wait has
//!   passed (a silent member: its lease has ended).
//!
//! Liveness: a member counts as live for the leader's tables only while it
//! is heard *and* says it hears the leader (one-way links are seen). A
//! silent voter leaves the voter set after `remove_after_ms`, so members that
//! fail one after another leave the last ones with a majority; two voters
//! cannot lose one (neither is a majority): give such a cluster a witness
//! (a coordinator), which votes and holds no buckets.

use crate::directory::{Change, Directory};
use crate::layout::{Layout, MemberId, Table, Weighted};
use crate::wire::{self, Agreed, Datagram, DecodeError, Heard, Heartbeat, Keys, Role, Sender, Serving};
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message,
    MessageType, Snapshot,
};
use raft::storage::{MemStorage, RaftState};
use raft::{Config, GetEntriesContext, RawNode, SnapshotStatus, StateRole, StorageError};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// The largest difference in rate between any clock and real time that the
/// guarantee tolerates: 1% (real clocks are within a few hundred ppm).
pub const CLOCK_RATE_BOUND: f64 = 0.01;

/// The exchange's settings, the same on every member. Their defaults are the
/// product's defaults (the configuration takes them from here).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The segment this agent runs on.
    pub segment: u16,
    /// Heartbeat interval.
    pub interval_ms: u64,
    /// A member not heard (both ways) for this long is not live.
    pub timeout_ms: u64,
    /// A lease lasts this long after the heartbeat that renewed it was sent.
    pub lease_ms: u64,
    /// A bucket held for less than this is `Claimed`, then `Settled`.
    pub drain_ms: u64,
    /// Buckets (a power of two).
    pub buckets: u32,
    /// Table layout.
    pub layout: Layout,
    /// The digest of the port rules that choose connection values
    /// ([`wire::rules_digest`]); 0 for a member with no rules (a
    /// coordinator, and the simulator's nodes).
    pub rules_digest: u32,
    /// New tables for weight changes at most this often.
    pub min_epoch_ms: u64,
    /// Weight changes up to this (thousandths) make no new table.
    pub hysteresis_milli: u32,
    /// Node or coordinator.
    pub role: Role,
    /// The consensus tick.
    pub tick_ms: u64,
    /// Consensus heartbeats every this many ticks.
    pub heartbeat_ticks: usize,
    /// Elections after this many ticks without a leader (each member adds
    /// its own fixed offset of up to as many again, so votes rarely split).
    pub election_ticks: usize,
    /// A voter silent this long leaves the voter set.
    pub remove_after_ms: u64,
    /// Consensus log entries kept below the applied index when the log is
    /// compacted, which it is once twice as many are there: the log (and
    /// the state file) stays small, and a member further behind than this
    /// is sent a snapshot (the table in force) instead of the entries.
    pub log_keep: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            segment: 0,
            interval_ms: 100,
            timeout_ms: 400,
            lease_ms: 400,
            drain_ms: 60_000,
            buckets: 65_536,
            layout: Layout::Rendezvous,
            rules_digest: 0,
            min_epoch_ms: 250,
            hysteresis_milli: 20,
            role: Role::Node,
            tick_ms: 10,
            heartbeat_ticks: 5,
            election_ticks: 20,
            remove_after_ms: 1_200,
            log_keep: 64,
        }
    }
}

impl Settings {
    /// How much sooner than the agent's lease the workers' deadline ends:
    /// a frame a worker accepts is still on its way to the kernel for a
    /// moment after the worker checked the lease, and a worker that stalls
    /// longer than this in that moment drops what it accepted (one eighth
    /// of the lease: 50 ms by default).
    pub fn worker_guard_ms(&self) -> u64 {
        self.lease_ms / 8
    }

    /// How long a claim waits for silent former holders: their leases have
    /// surely ended by then, whatever the clocks' rates (within the bound).
    pub fn claim_wait_ms(&self) -> u64 {
        let f = (1.0 + CLOCK_RATE_BOUND) / (1.0 - CLOCK_RATE_BOUND);
        (self.lease_ms as f64 * f).ceil() as u64 + 1
    }

    /// The settings every member must share, as heartbeats carry them: a
    /// member with a longer lease than the others would keep taking
    /// connections in buckets they have already claimed.
    pub fn agreed(&self) -> Agreed {
        let ms = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Agreed {
            lease_ms: ms(self.lease_ms),
            timeout_ms: ms(self.timeout_ms),
            interval_ms: ms(self.interval_ms),
            drain_ms: ms(self.drain_ms),
            buckets: self.buckets,
            layout: match self.layout {
                Layout::Ranges => 0,
                Layout::Rendezvous => 1,
            },
            rules: self.rules_digest,
        }
    }
}

/// This node's right on one bucket, for the dataplane.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Right {
    /// Not held.
    None,
    /// Held; unknown segments are not adopted (another member may still
    /// serve flows here).
    Claimed,
    /// Held, and no other member serves flows here: unknown segments (SYN
    /// cookies, evicted entries) are adopted.
    Settled,
}

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

/// A table as agreed: one entry of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// Its log index (0: none yet).
    pub index: u64,
    /// Who proposed it.
    pub creator: MemberId,
    /// Layout.
    pub layout: Layout,
    /// Buckets.
    pub buckets: u32,
    /// Members and weights (thousandths), sorted by id.
    pub members: Vec<(MemberId, u32)>,
}

const EPOCH_MAGIC: u8 = 0xE1;

impl Epoch {
    /// No table yet (index 0): nothing is claimed under it.
    fn none(creator: MemberId, settings: &Settings) -> Epoch {
        Epoch {
            index: 0,
            creator,
            layout: settings.layout,
            buckets: settings.buckets,
            members: Vec::new(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = vec![EPOCH_MAGIC];
        b.extend_from_slice(&self.creator.0.to_be_bytes());
        b.push(match self.layout {
            Layout::Ranges => 0,
            Layout::Rendezvous => 1,
        });
        b.extend_from_slice(&self.buckets.to_be_bytes());
        b.extend_from_slice(&(self.members.len() as u16).to_be_bytes());
        for (m, w) in &self.members {
            b.extend_from_slice(&m.0.to_be_bytes());
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    fn decode(index: u64, b: &[u8]) -> Option<Epoch> {
        let u32_at = |at: usize| b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
        if b.first() != Some(&EPOCH_MAGIC) {
            return None;
        }
        let creator = MemberId(u32_at(1)?);
        let layout = match *b.get(5)? {
            0 => Layout::Ranges,
            1 => Layout::Rendezvous,
            _ => return None,
        };
        let buckets = u32_at(6)?;
        let n = usize::from(u16::from_be_bytes([*b.get(10)?, *b.get(11)?]));
        if b.len() != 12 + n * 8 || !buckets.is_power_of_two() {
            return None;
        }
        let members: Vec<(MemberId, u32)> = (0..n)
            .map(|i| Some((MemberId(u32_at(12 + i * 8)?), u32_at(16 + i * 8)?)))
            .collect::<Option<_>>()?;
        members.windows(2).all(|w| w[0].0 < w[1].0).then_some(Epoch {
            index,
            creator,
            layout,
            buckets,
            members,
        })
    }
}

/// What survives a restart: the consensus state and the incarnation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Persisted {
    /// The incarnation of the process that saved it.
    pub incarnation: u64,
    hard_state: HardState,
    conf_state: ConfState,
    applied: u64,
    /// The index and term of the last entry compacted away (0, 0: none).
    base: (u64, u64),
    /// The table in force at `applied` (its entry's index and data), when
    /// there is one.
    table: Option<(u64, Vec<u8>)>,
    /// The member directory at `applied` (none: a state file of a format
    /// before the directory; the configuration's members then).
    directory: Option<Directory>,
    /// The log after `base`.
    entries: Vec<Entry>,
}

/// The first format: the whole log, never compacted (read, not written).
const PERSIST_MAGIC_1: &[u8; 8] = b"SSSTATE1";
/// The log after its compacted base, and the table in force (read, not
/// written).
const PERSIST_MAGIC_2: &[u8; 8] = b"SSSTATE2";
/// That, and the member directory.
const PERSIST_MAGIC: &[u8; 8] = b"SSSTATE3";

impl Persisted {
    /// Consensus log entries held (those after the last compaction).
    pub fn log_entries(&self) -> usize {
        self.entries.len()
    }

    /// Serialises (for a state file).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = PERSIST_MAGIC.to_vec();
        b.extend_from_slice(&self.incarnation.to_be_bytes());
        b.extend_from_slice(&self.applied.to_be_bytes());
        let mut put = |bytes: Vec<u8>| {
            b.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            b.extend_from_slice(&bytes);
        };
        put(self.hard_state.write_to_bytes().unwrap_or_default());
        put(self.conf_state.write_to_bytes().unwrap_or_default());
        put([self.base.0.to_be_bytes(), self.base.1.to_be_bytes()].concat());
        put(encode_table(self.table.as_ref()));
        put(self.directory.as_ref().map_or_else(Vec::new, Directory::encode));
        for e in &self.entries {
            put(e.write_to_bytes().unwrap_or_default());
        }
        b
    }

    /// Reads what [`Persisted::encode`] wrote (or the first format).
    pub fn decode(b: &[u8]) -> Result<Persisted, String> {
        let bad = |what: &str| format!("state file: {what}");
        let first_format = b.get(..8) == Some(&PERSIST_MAGIC_1[..]);
        let second_format = b.get(..8) == Some(&PERSIST_MAGIC_2[..]);
        if b.get(..7) == Some(&PERSIST_MAGIC[..7]) && !(first_format || second_format || &b[..8] == PERSIST_MAGIC) {
            return Err(bad(
                "not a synshare state file of a format this version reads (a later version wrote it?): \
                 upgrade, or move the file aside to start as a fresh member",
            ));
        }
        if b.len() < 24 || !(first_format || second_format || &b[..8] == PERSIST_MAGIC) {
            return Err(bad("not a synshare state file"));
        }
        let incarnation = u64::from_be_bytes(b[8..16].try_into().map_err(|_| bad("short"))?);
        let applied = u64::from_be_bytes(b[16..24].try_into().map_err(|_| bad("short"))?);
        let mut at = 24;
        let mut items = Vec::new();
        while at < b.len() {
            let len = b
                .get(at..at + 4)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
                .ok_or_else(|| bad("truncated"))?;
            let item = b.get(at + 4..at + 4 + len).ok_or_else(|| bad("truncated"))?;
            items.push(item);
            at += 4 + len;
        }
        let fixed = if first_format {
            2
        } else if second_format {
            4
        } else {
            5
        };
        if items.len() < fixed {
            return Err(bad("truncated"));
        }
        let hard_state = HardState::parse_from_bytes(items[0]).map_err(|e| bad(&e.to_string()))?;
        let conf_state = ConfState::parse_from_bytes(items[1]).map_err(|e| bad(&e.to_string()))?;
        let entries = items[fixed..]
            .iter()
            .map(|i| Entry::parse_from_bytes(i).map_err(|e| bad(&e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let (base, table) = if first_format {
            // The table in force: the last one applied.
            let table = entries
                .iter()
                .rev()
                .filter(|e| e.index <= applied && e.get_entry_type() == EntryType::EntryNormal)
                .find(|e| Epoch::decode(e.index, &e.data).is_some())
                .map(|e| (e.index, e.data.to_vec()));
            ((0, 0), table)
        } else {
            let u64_at = |item: &[u8], at: usize| {
                item.get(at..at + 8)
                    .and_then(|s| s.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| bad("bad base"))
            };
            let base = (u64_at(items[2], 0)?, u64_at(items[2], 8)?);
            let table = decode_table(items[3])
                .ok_or_else(|| bad("bad base or table"))?
                .map(|(i, d)| (i, d.to_vec()));
            (base, table)
        };
        let directory = match items.get(4) {
            Some(d) if !first_format && !second_format && !d.is_empty() => {
                Some(Directory::decode(d).ok_or_else(|| bad("bad member directory"))?)
            }
            _ => None,
        };
        let last = entries.last().map_or(base.0, |e| e.index);
        if entries
            .windows(2)
            .any(|w| w[1].index != w[0].index + 1 || w[1].term < w[0].term)
            || entries
                .first()
                .is_some_and(|e| e.index != base.0 + 1 || e.term < base.1)
            || hard_state.commit > last
            || entries.last().is_some_and(|e| e.term > hard_state.term)
            || !(plain_conf_state(&conf_state) || conf_state == ConfState::default())
            || applied > hard_state.commit
            || applied < base.0
            || table
                .as_ref()
                .is_some_and(|(i, d)| *i > applied || Epoch::decode(*i, d).is_none())
        {
            return Err(bad("inconsistent log"));
        }
        Ok(Persisted {
            incarnation,
            hard_state,
            conf_state,
            applied,
            base,
            table,
            directory,
            entries,
        })
    }
}

/// Raft's storage: its log in memory, and what a snapshot of this member
/// holds (sent to a member whose next entry was compacted away): the applied
/// index, the voters there and the table in force there.
struct Store {
    log: MemStorage,
    applied: u64,
    /// The table in force at `applied`: its entry's index and data.
    table: Option<(u64, Vec<u8>)>,
    /// The member directory at `applied`.
    directory: Directory,
}

/// Snapshot data that carries the directory as well as the table (a
/// snapshot of the earlier kind is the table alone, whose first byte, the
/// top of a log index, is 0).
const SNAPSHOT_MAGIC: u8 = 0xD5;

impl Store {
    /// A snapshot's data: the table in force and the directory.
    fn snapshot_data(&self) -> Vec<u8> {
        let table = encode_table(self.table.as_ref());
        let mut b = vec![SNAPSHOT_MAGIC];
        b.extend_from_slice(&(table.len() as u32).to_be_bytes());
        b.extend_from_slice(&table);
        b.extend_from_slice(&self.directory.encode());
        b
    }

    /// The index and term of the last entry compacted away.
    fn base(&self) -> (u64, u64) {
        let first = raft::Storage::first_index(&self.log).unwrap_or(1);
        let index = first.saturating_sub(1);
        (index, raft::Storage::term(&self.log, index).unwrap_or(0))
    }
}

/// A table in force as the state file and snapshots carry it: its entry's
/// index, then its data (nothing: no table).
fn encode_table(table: Option<&(u64, Vec<u8>)>) -> Vec<u8> {
    table.map_or_else(Vec::new, |(i, d)| [&i.to_be_bytes()[..], d].concat())
}

/// What [`encode_table`] wrote: `None` when malformed, else the index and
/// data of the table (if any).
fn decode_table(b: &[u8]) -> Option<Option<(u64, &[u8])>> {
    match b {
        [] => Some(None),
        b if b.len() > 8 => Some(Some((u64::from_be_bytes(b[..8].try_into().ok()?), &b[8..]))),
        _ => None,
    }
}

/// What a snapshot's data says: `None` when malformed, else the table in
/// force (if any) and the directory (none in a snapshot of the earlier
/// kind).
fn snapshot_parts(data: &[u8]) -> Option<(Option<Epoch>, Option<Directory>)> {
    let (table, directory) = match data.split_first() {
        Some((&SNAPSHOT_MAGIC, rest)) => {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let table = rest.get(4..4usize.checked_add(len)?)?;
            let directory = Directory::decode(rest.get(4 + len..)?)?;
            (table, Some(directory))
        }
        _ => (data, None),
    };
    let table = match decode_table(table)? {
        None => None,
        Some((index, d)) => Some(Epoch::decode(index, d)?),
    };
    Some((table, directory))
}

/// A conf state of plain voters and learners, as this agent makes them (no
/// joint configuration): one raft restores without stopping the process.
fn plain_conf_state(cs: &ConfState) -> bool {
    !cs.voters.is_empty()
        && cs.voters_outgoing.is_empty()
        && cs.learners_next.is_empty()
        && !cs.auto_leave
        && cs.voters.iter().chain(&cs.learners).all(|id| *id != 0)
        && cs.learners.iter().all(|l| !cs.voters.contains(l))
}

/// A snapshot with no data at `index` of `term`, with `conf_state`.
fn snapshot_at(index: u64, term: u64, conf_state: ConfState) -> Snapshot {
    let mut snap = Snapshot::default();
    let meta = snap.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf_state);
    snap
}

impl raft::Storage for Store {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.log.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.log.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.log.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.log.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.log.last_index()
    }

    /// A snapshot at the applied index (raft asks only after compaction,
    /// which leaves entries below it). Anything else is "not now", never
    /// an error: raft treats other errors as fatal.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let unavailable = raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let index = self.applied;
        if index == 0 || index < request_index {
            return Err(unavailable);
        }
        let (Ok(term), Ok(state)) = (self.log.term(index), self.log.initial_state()) else {
            return Err(unavailable);
        };
        let mut snap = snapshot_at(index, term, state.conf_state);
        snap.data = self.snapshot_data().into();
        Ok(snap)
    }
}

fn raft_id(m: MemberId) -> u64 {
    u64::from(m.0) + 1
}

/// The raft change a directory change goes with.
fn change_type_for(change: &Change) -> ConfChangeType {
    match change {
        Change::Add { .. } | Change::Leave { .. } => ConfChangeType::AddLearnerNode,
        Change::Remove { .. } => ConfChangeType::RemoveNode,
    }
}

/// A single raft configuration change of `ty` for `id`, with `context`.
fn conf_change(id: MemberId, ty: ConfChangeType, context: Vec<u8>) -> ConfChangeV2 {
    let mut single = ConfChangeSingle {
        node_id: raft_id(id),
        ..Default::default()
    };
    single.set_change_type(ty);
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(single);
    cc.context = context.into();
    cc
}

/// The configuration change entry that carries a directory change asked
/// against the directory of `version`.
fn conf_change_for(change: &Change, version: u64) -> ConfChangeV2 {
    conf_change(change.id(), change_type_for(change), change.encode(version))
}

fn member_of(raft: u64) -> MemberId {
    MemberId(raft.saturating_sub(1) as u32)
}

/// Stands for the unknown holders of tables this member skipped (it
/// installed a snapshot): never a configured member, so a claim waits the
/// whole claim wait for it.
const UNKNOWN_HOLDER: MemberId = MemberId(u32::MAX);

/// A fixed election offset per member and incarnation (deterministic, so
/// simulations replay; different, so votes rarely split).
fn election_offset(me: MemberId, incarnation: u64, range: usize) -> usize {
    let mut x = (u64::from(me.0) << 32) ^ incarnation ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % range.max(1) as u64) as usize
}

/// One member's exchange. See the module documentation.
pub struct Agent {
    me: MemberId,
    incarnation: u64,
    nonce: u32,
    /// The leader (and its term) that this member campaigned against.
    campaigned: Option<(MemberId, u64)>,
    settings: Settings,
    keys: Keys,
    raft: RawNode<Store>,
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
    applied: u64,
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
        let (bootstrap_directory, join) = match bootstrap {
            Bootstrap::Members(m) => (Directory::of(m), None),
            Bootstrap::Join(at) => (Directory::default(), Some(at)),
        };
        let directory = saved
            .as_ref()
            .and_then(|p| p.directory.clone())
            .unwrap_or_else(|| bootstrap_directory.clone());
        let log = match &saved {
            Some(p) => {
                let s = MemStorage::new_with_conf_state(p.conf_state.clone());
                if p.base.0 > 0 {
                    // The compacted prefix, as a snapshot at its last entry.
                    let base = snapshot_at(p.base.0, p.base.1, p.conf_state.clone());
                    s.wl().apply_snapshot(base).map_err(|e| format!("state: {e}"))?;
                }
                s.wl().append(&p.entries).map_err(|e| format!("state: {e}"))?;
                s.wl().set_hardstate(p.hard_state.clone());
                s.wl().set_conf_state(p.conf_state.clone());
                s
            }
            // A joining member: no voters known yet (raft waits for the
            // leader's snapshot).
            None if join.is_some() => MemStorage::new(),
            None => {
                let voters: Vec<u64> = directory.members().keys().map(|m| raft_id(*m)).collect();
                MemStorage::new_with_conf_state(ConfState::from((voters, Vec::<u64>::new())))
            }
        };
        let applied = saved.as_ref().map_or(0, |p| p.applied);
        let storage = Store {
            log,
            applied,
            table: None,
            directory: directory.clone(),
        };
        let offset = election_offset(me, incarnation, settings.election_ticks);
        let config = Config {
            id: raft_id(me),
            election_tick: settings.election_ticks,
            heartbeat_tick: settings.heartbeat_ticks,
            min_election_tick: settings.election_ticks + offset,
            max_election_tick: settings.election_ticks + offset + 1,
            applied,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 8 * 1024,
            max_inflight_msgs: 64,
            ..Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raft = RawNode::new(&config, storage, &logger).map_err(|e| format!("consensus: {e}"))?;
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
        // The table in force at the saved applied index.
        if let Some((index, data)) = saved.as_ref().and_then(|p| p.table.as_ref()) {
            if let Some(e) = Epoch::decode(*index, data).filter(|e| e.buckets == agent.settings.buckets) {
                agent.install(e, now);
            }
        }
        // Who held what in the tables before the saved one (replaced within
        // the claim wait, maybe) is not saved: claims wait the whole claim
        // wait.
        agent.replaced.clear();
        agent.replaced.push_back((now, vec![UNKNOWN_HOLDER]));
        agent.voters = agent.voter_ids();
        Ok(agent)
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

    /// Where a datagram to every other member goes.
    fn broadcast_addresses(&self) -> Vec<SocketAddr> {
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

    /// Members live here (heard both ways within the timeout).
    pub fn live(&self) -> &[MemberId] {
        &self.live
    }

    /// The current voters.
    pub fn voters(&self) -> &[MemberId] {
        &self.voters
    }

    /// Consensus log entries held (after the last compaction).
    pub fn log_len(&self) -> u64 {
        let store = &self.raft.raft.raft_log.store;
        raft::Storage::last_index(store).unwrap_or(0) - store.base().0
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

    /// True once when the dataplane view must be republished; the view
    /// published then has version [`Agent::view_version`].
    pub fn take_view_changed(&mut self) -> bool {
        std::mem::take(&mut self.view_changed)
    }

    /// The version of the view [`Agent::rights`] describes now.
    pub fn view_version(&self) -> u64 {
        self.view_version
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

    /// This member's right on every bucket at `now`.
    pub fn rights(&self, now: u64) -> Vec<Right> {
        self.held
            .iter()
            .zip(&self.settle_at)
            .enumerate()
            .map(|(b, (&held, &at))| match held {
                false => Right::None,
                true if now >= at
                    && self
                        .served_elsewhere
                        .get(b / 64)
                        .is_some_and(|w| w & (1 << (b % 64)) == 0) =>
                {
                    Right::Settled
                }
                true => Right::Claimed,
            })
            .collect()
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
    fn serving_here(&self) -> Vec<u64> {
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
    fn update_served_elsewhere(&mut self, now: u64) {
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

    /// What this member serves in buckets it does not hold, as ranges.
    fn serving_ranges(bits: &[u64]) -> (Vec<(u32, u32)>, u32) {
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

    fn voter_ids(&self) -> Vec<MemberId> {
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
    fn log_last(&self) -> u64 {
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
    fn reported_applied(&self) -> u64 {
        self.enforced.min(self.applied)
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
        let mut grants: Vec<u64> = self
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
        let quorum = self.voters.len() / 2 + 1;
        if grants.len() < quorum {
            return None;
        }
        grants.sort_unstable_by(|a, b| b.cmp(a));
        let until = grants[quorum - 1] + self.settings.lease_ms;
        (until > now).then_some(until)
    }

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

    /// Whether a consensus message is one a peer may send and consistent
    /// with our log where the consensus library would otherwise stop the
    /// process (it treats those cases as bugs; here they can come from a
    /// duplicate member id or a member that lost its state).
    fn sane(&self, m: &Message) -> bool {
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

    fn heartbeat(&mut self, id: MemberId, hb: Heartbeat, now: u64) -> Result<(), Reject> {
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
                *p = Peer {
                    incarnation: hb.from.incarnation,
                    nonce: hb.from.nonce,
                    refused: Some((field, ours, theirs)),
                    first_heard: now,
                    ..Peer::default()
                };
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
        if (hb.from.incarnation, hb.from.nonce) == (p.incarnation, p.nonce) && p.refused.is_none() {
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
                // Older news than what we know: only the window learns.
                self.stats.accepted += 1;
                return Ok(());
            }
        } else {
            // A new start (or one whose settings now agree): it holds
            // nothing it did not claim since.
            *p = Peer {
                incarnation: hb.from.incarnation,
                nonce: hb.from.nonce,
                max_seq: hb.seq,
                first_heard: now,
                ..Peer::default()
            };
            self.stats.joins += 1;
            self.events.push_back(Event::Joined {
                member: id,
                incarnation: hb.from.incarnation,
            });
            self.dirty = true;
        }
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
        self.stats.accepted += 1;
        Ok(())
    }

    /// What a peer still serves in buckets it does not hold: news only if
    /// newer than what we have of the same start (a replay of older news
    /// could make us adopt its connections' segments).
    fn serving(&mut self, id: MemberId, sv: Serving) -> Result<(), Reject> {
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

    fn release_all(&mut self) {
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

    fn bump_view(&mut self) {
        self.view_version += 1;
        self.view_changed = true;
        self.unconfirmed.push_back((self.view_version, self.applied));
    }

    /// Installs an applied table: releases at once what it does not give us.
    fn install(&mut self, epoch: Epoch, now: u64) {
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
        self.prev_table = std::mem::replace(&mut self.table, Table::build(epoch.layout, &members, epoch.buckets));
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

    /// Processes what consensus has ready: persist, send, apply.
    fn drive_raft(&mut self, now: u64) {
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

    fn sender(&self) -> Sender {
        Sender {
            segment: self.settings.segment,
            member: self.me.0,
            incarnation: self.incarnation,
            nonce: self.nonce,
            role: self.settings.role,
            draining: self.draining,
        }
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

    /// Once the heartbeats say the leader is silent (not heard for the
    /// timeout), the lowest live voter starts an election at once rather
    /// than after consensus's own election timeout: a leader's death then
    /// costs one election round trip more than any other member's. Pre-vote
    /// stays on, so a member that still hears the leader refuses, and only
    /// one member asks (the lowest id), so votes do not split.
    fn campaign_if_leader_silent(&mut self, now: u64) {
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

    fn lead(&mut self, now: u64) {
        // A coordinator leads while it lives.
        if self.settings.role == Role::Node {
            if let Some(c) = self
                .live
                .iter()
                .find(|m| self.peers.get(m).and_then(|p| p.role) == Some(Role::Coordinator))
            {
                if self.voters.contains(c) && self.raft.raft.lead_transferee.is_none() {
                    self.raft.transfer_leader(raft_id(*c));
                    return;
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
            return;
        }
        // Voter and directory changes, one at a time.
        if !self.raft.raft.has_pending_conf() {
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
                (Some(v), None) if self.voters.len() > 1 => {
                    Some(conf_change(v, ConfChangeType::RemoveNode, Vec::new()))
                }
                _ => self
                    .directory
                    .members()
                    .iter()
                    .find(|(id, d)| {
                        d.leaving && **id != self.me && !self.voters.contains(id) && self.has_left(**id, now)
                    })
                    .map(|(id, _)| conf_change_for(&Change::Remove { id: *id }, self.directory.version())),
            };
            if let Some(cc) = cc {
                let _ = self.raft.propose_conf_change(Vec::new(), cc);
            }
        }
        // Tables.
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
        if desired.is_empty() {
            return;
        }
        let current = &self.epoch.members;
        let same_members = desired.len() == current.len() && desired.iter().zip(current).all(|(a, b)| a.0 == b.0);
        let weights_moved = desired
            .iter()
            .zip(current)
            .any(|(a, b)| a.1.abs_diff(b.1) > self.settings.hysteresis_milli);
        let due = if same_members {
            weights_moved && now >= self.last_epoch_at + self.settings.min_epoch_ms
        } else {
            // Membership: at once, but no faster than one table per
            // heartbeat interval (no storms while liveness flaps).
            self.epoch.index == 0 || now >= self.last_epoch_at + self.settings.interval_ms
        };
        if !due {
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

    fn claim(&mut self, now: u64) {
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

    /// Advances time; returns what to send (heartbeats to every member when
    /// one is due or something changed, consensus messages to one).
    pub fn tick(&mut self, now: u64) -> Vec<Outgoing> {
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
        self.after(now);
        self.update_served_elsewhere(now);
        let due = self.last_sent.is_none_or(|t| now >= t + self.settings.interval_ms);
        if due || self.dirty {
            self.dirty = false;
            self.last_sent = Some(now);
            self.seq += 1;
            self.sent.push_back((self.seq, now));
            if self.sent.len() > 256 {
                self.sent.pop_front();
            }
            let log_last = self.log_last();
            let probation = self.settings.claim_wait_ms();
            let heard = self
                .peers
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
                .collect();
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
        }
        std::mem::take(&mut self.out)
    }

    /// When `tick` next has something to do, at the latest.
    pub fn next_deadline(&self) -> u64 {
        let hb = self.last_sent.map_or(0, |t| t + self.settings.interval_ms);
        hb.min(self.last_tick + self.settings.tick_ms)
    }
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

#[cfg(test)]
mod tests;
