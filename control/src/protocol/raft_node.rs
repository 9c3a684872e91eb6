//! Consensus's side of a member: its raft id, configuration-change entries,
//! and the raft node it starts from a saved state (or a fresh one).

use super::settings::Settings;
use super::state::{Persisted, Store};
use crate::directory::{Change, Directory};
use crate::layout::MemberId;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState};
use raft::storage::MemStorage;
use raft::{Config, RawNode};

/// A member's id in consensus (raft's 0 is "none").
pub(super) fn raft_id(m: MemberId) -> u64 {
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
pub(super) fn conf_change(id: MemberId, ty: ConfChangeType, context: Vec<u8>) -> ConfChangeV2 {
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
pub(super) fn conf_change_for(change: &Change, version: u64) -> ConfChangeV2 {
    conf_change(change.id(), change_type_for(change), change.encode(version))
}

/// The member of a raft id.
pub(super) fn member_of(raft: u64) -> MemberId {
    MemberId(raft.saturating_sub(1) as u32)
}

/// A fixed election offset per member and incarnation (deterministic, so
/// simulations replay; different, so votes rarely split).
pub(super) fn election_offset(me: MemberId, incarnation: u64, range: usize) -> usize {
    let mut x = (u64::from(me.0) << 32) ^ incarnation ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % range.max(1) as u64) as usize
}

/// Consensus for member `me`: its log as saved, else a fresh one (every
/// member of `directory` a voter; none while joining).
pub(super) fn raft_node(
    me: MemberId,
    incarnation: u64,
    settings: &Settings,
    saved: Option<&Persisted>,
    joining: bool,
    directory: &Directory,
) -> Result<RawNode<Store>, String> {
    let log = match saved {
        Some(p) => p.raft_log()?,
        // A joining member: no voters known yet (raft waits for the
        // leader's snapshot).
        None if joining => MemStorage::new(),
        None => {
            let voters: Vec<u64> = directory.members().keys().map(|m| raft_id(*m)).collect();
            MemStorage::new_with_conf_state(ConfState::from((voters, Vec::<u64>::new())))
        }
    };
    let applied = saved.map_or(0, |p| p.applied);
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
    RawNode::new(&config, storage, &logger).map_err(|e| format!("consensus: {e}"))
}
