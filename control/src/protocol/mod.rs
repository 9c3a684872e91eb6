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

mod agent;
mod epoch;
mod events;
mod lease;
mod peers;
mod raft_node;
mod settings;
mod state;

pub use agent::{Agent, Bootstrap};
pub use epoch::Epoch;
pub use events::{BucketState, Event, ExchangeStats, Outgoing, Reject};
pub use lease::CLOCK_RATE_BOUND;
pub use peers::Peer;
pub use settings::Settings;
pub use state::Persisted;

#[cfg(test)]
mod tests;
