//! What survives a restart (the state file) and consensus's storage (the
//! raft `Store`), with the encodings they share: the table in force and
//! snapshots.

use super::epoch::Epoch;
use crate::directory::Directory;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::storage::{MemStorage, RaftState};
use raft::{GetEntriesContext, StorageError};

/// What survives a restart: the consensus state and the incarnation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Persisted {
    /// The incarnation of the process that saved it.
    pub incarnation: u64,
    pub(super) hard_state: HardState,
    pub(super) conf_state: ConfState,
    pub(super) applied: u64,
    /// The index and term of the last entry compacted away (0, 0: none).
    pub(super) base: (u64, u64),
    /// The table in force at `applied` (its entry's index and data), when
    /// there is one.
    pub(super) table: Option<(u64, Vec<u8>)>,
    /// The member directory at `applied` (none: a state file of a format
    /// before the directory; the configuration's members then).
    pub(super) directory: Option<Directory>,
    /// The log after `base`.
    pub(super) entries: Vec<Entry>,
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

    /// Consensus's log as saved: the compacted prefix as a snapshot at its
    /// last entry, then the entries after it.
    pub(super) fn raft_log(&self) -> Result<MemStorage, String> {
        let s = MemStorage::new_with_conf_state(self.conf_state.clone());
        if self.base.0 > 0 {
            // The compacted prefix, as a snapshot at its last entry.
            let base = snapshot_at(self.base.0, self.base.1, self.conf_state.clone());
            s.wl().apply_snapshot(base).map_err(|e| format!("state: {e}"))?;
        }
        s.wl().append(&self.entries).map_err(|e| format!("state: {e}"))?;
        s.wl().set_hardstate(self.hard_state.clone());
        s.wl().set_conf_state(self.conf_state.clone());
        Ok(s)
    }

    /// Reads what [`Persisted::encode`] wrote (or the first format).
    pub fn decode(b: &[u8]) -> Result<Persisted, String> {
        let (first_format, second_format) = format_of(b)?;
        let incarnation = u64::from_be_bytes(b[8..16].try_into().map_err(|_| bad("short"))?);
        let applied = u64::from_be_bytes(b[16..24].try_into().map_err(|_| bad("short"))?);
        let items = items_of(b)?;
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
            ((0, 0), table_in_log(&entries, applied))
        } else {
            base_and_table(&items)?
        };
        let directory = match items.get(4) {
            Some(d) if !first_format && !second_format && !d.is_empty() => {
                Some(Directory::decode(d).ok_or_else(|| bad("bad member directory"))?)
            }
            _ => None,
        };
        let p = Persisted {
            incarnation,
            hard_state,
            conf_state,
            applied,
            base,
            table,
            directory,
            entries,
        };
        if p.inconsistent() {
            return Err(bad("inconsistent log"));
        }
        Ok(p)
    }

    /// A log raft could not start from, or a table it does not hold.
    fn inconsistent(&self) -> bool {
        let Persisted {
            hard_state,
            conf_state,
            applied,
            base,
            table,
            entries,
            ..
        } = self;
        let (applied, base) = (*applied, *base);
        let last = entries.last().map_or(base.0, |e| e.index);
        entries
            .windows(2)
            .any(|w| w[1].index != w[0].index + 1 || w[1].term < w[0].term)
            || entries
                .first()
                .is_some_and(|e| e.index != base.0 + 1 || e.term < base.1)
            || hard_state.commit > last
            || entries.last().is_some_and(|e| e.term > hard_state.term)
            || !(plain_conf_state(conf_state) || *conf_state == ConfState::default())
            || applied > hard_state.commit
            || applied < base.0
            || table
                .as_ref()
                .is_some_and(|(i, d)| *i > applied || Epoch::decode(*i, d).is_none())
    }
}

/// A table in force: its entry's index and data.
type TableInForce = (u64, Vec<u8>);

/// A state file error.
fn bad(what: &str) -> String {
    format!("state file: {what}")
}

/// Which format a state file is of: (the first, the second); neither is
/// the current one. An error for anything else.
fn format_of(b: &[u8]) -> Result<(bool, bool), String> {
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
    Ok((first_format, second_format))
}

/// The length-prefixed items after a state file's fixed header.
fn items_of(b: &[u8]) -> Result<Vec<&[u8]>, String> {
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
    Ok(items)
}

/// The table in force in a state file of the first format: the last one
/// applied.
fn table_in_log(entries: &[Entry], applied: u64) -> Option<TableInForce> {
    entries
        .iter()
        .rev()
        .filter(|e| e.index <= applied && e.get_entry_type() == EntryType::EntryNormal)
        .find(|e| Epoch::decode(e.index, &e.data).is_some())
        .map(|e| (e.index, e.data.to_vec()))
}

/// The compacted base and the table in force, as a state file of the
/// second format or later has them.
fn base_and_table(items: &[&[u8]]) -> Result<((u64, u64), Option<TableInForce>), String> {
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
    Ok((base, table))
}

/// Raft's storage: its log in memory, and what a snapshot of this member
/// holds (sent to a member whose next entry was compacted away): the applied
/// index, the voters there and the table in force there.
pub(super) struct Store {
    pub(super) log: MemStorage,
    pub(super) applied: u64,
    /// The table in force at `applied`: its entry's index and data.
    pub(super) table: Option<(u64, Vec<u8>)>,
    /// The member directory at `applied`.
    pub(super) directory: Directory,
}

/// Snapshot data that carries the directory as well as the table (a
/// snapshot of the earlier kind is the table alone, whose first byte, the
/// top of a log index, is 0).
const SNAPSHOT_MAGIC: u8 = 0xD5;

impl Store {
    /// A snapshot's data: the table in force and the directory.
    pub(super) fn snapshot_data(&self) -> Vec<u8> {
        let table = encode_table(self.table.as_ref());
        let mut b = vec![SNAPSHOT_MAGIC];
        b.extend_from_slice(&(table.len() as u32).to_be_bytes());
        b.extend_from_slice(&table);
        b.extend_from_slice(&self.directory.encode());
        b
    }

    /// The index and term of the last entry compacted away.
    pub(super) fn base(&self) -> (u64, u64) {
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
pub(super) fn snapshot_parts(data: &[u8]) -> Option<(Option<Epoch>, Option<Directory>)> {
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
pub(super) fn plain_conf_state(cs: &ConfState) -> bool {
    !cs.voters.is_empty()
        && cs.voters_outgoing.is_empty()
        && cs.learners_next.is_empty()
        && !cs.auto_leave
        && cs.voters.iter().chain(&cs.learners).all(|id| *id != 0)
        && cs.learners.iter().all(|l| !cs.voters.contains(l))
}

/// A snapshot with no data at `index` of `term`, with `conf_state`.
pub(super) fn snapshot_at(index: u64, term: u64, conf_state: ConfState) -> Snapshot {
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
