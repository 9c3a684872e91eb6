//! `synshare node`: one server's dataplane and control core.
//!
//! Start-up: EAL, the mbuf pool, the wire port (promiscuous: the switch
//! floods the cluster MAC), the exception TAP created with the wire port's
//! MAC, the bucket table, then one worker per worker lcore. The main lcore
//! stays as the control core: it publishes tables, answers the status
//! socket and stops everything on SIGINT/SIGTERM.
//!
//! - `eal`: EAL's arguments, the worker lcores and the mbuf pool;
//! - `segment`: one segment's bring-up (ports, TAP, shares, workers);
//! - `start`: [`Node::start`], everything up to serving;
//! - `run_loop`: the control loop, one named step after another;
//! - `reload`: SIGHUP, the configuration applied again;
//! - `requests`: the control socket's requests;
//! - `availability`: the measured availability and its smoothing;
//! - `snapshot`: the node's status; `publish`: the status socket, the
//!   metrics and the status page served from it;
//! - `shutdown`: leaving the cluster and stopping in order.

mod availability;
mod eal;
mod publish;
mod reload;
mod requests;
mod run_loop;
mod segment;
mod shutdown;
mod snapshot;
mod start;

use crate::config::NodeConfig;
use crate::exchange::ExchangeHandle;
use availability::{Availability, Measuring};
use publish::Publishing;
use run_loop::Watchdog;
use segment::Segment;
use start::Signals;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use synshare_control::layout::{MemberId, Table, Weighted};
use synshare_dataplane::hash::Bucket;
use synshare_dataplane::ownership::{BucketState, OwnershipView};
use synshare_dpdk::{Eal, Mempool};

/// Runs the node until SIGINT or SIGTERM.
pub fn run(c: NodeConfig, config_path: &Path) -> Result<(), String> {
    let mut node = Node::start(c, config_path)?;
    node.run_loop();
    node.shutdown()
}

/// A running node: its segments and the control core's state.
pub struct Node {
    config: NodeConfig,
    config_path: PathBuf,
    /// What a reload compares the file with.
    started_text: String,
    /// Whether EAL runs on hugepages.
    huge: bool,
    /// Since the workers were launched.
    started: Instant,
    signals: Signals,
    availability: Availability,
    measuring: Measuring,
    publishing: Publishing,
    watchdog: Watchdog,
    /// The status socket's path.
    socket: PathBuf,
    /// Stops every worker.
    worker_stop: Arc<AtomicBool>,
    /// SIGTERM's drain: since when.
    stopping: Option<Instant>,
    // Dropped in this order, last: the segments (ports), then the pool,
    // then EAL.
    segments: Vec<Segment>,
    pool: Arc<Mempool>,
    eal: Eal,
}

impl Node {
    /// Whether a segment has an exchange (shares that change at run time).
    fn dynamic(&self) -> bool {
        self.segments.iter().any(|s| s.sharing.exchange().is_some())
    }
}

/// Shares from the configuration, or from the exchange.
enum Sharing {
    Static { table: Table, view: OwnershipView },
    Dynamic(ExchangeHandle),
    Stopped,
}

impl Sharing {
    /// The exchange, with dynamic shares.
    fn exchange(&self) -> Option<&ExchangeHandle> {
        match self {
            Sharing::Dynamic(h) => Some(h),
            _ => None,
        }
    }

    /// The table in force: its epoch and each bucket's owner.
    fn owners(&self) -> (u64, Vec<Option<u32>>) {
        match self {
            Sharing::Static { table, .. } => (1, table.owners().iter().map(|o| o.map(|m| m.0)).collect()),
            Sharing::Dynamic(h) => h.owners(),
            Sharing::Stopped => (0, Vec::new()),
        }
    }
}

/// The table of the configured members with their configured weights
/// (and the buckets single-host rules pin).
fn static_table(v: &crate::config::SegmentView) -> Table {
    let sharing = v.sharing;
    let members: Vec<Weighted> = sharing
        .members
        .iter()
        .map(|m| Weighted {
            id: MemberId(m.id),
            weight: m.weight,
        })
        .collect();
    let mut table = Table::build(sharing.layout, &members, sharing.buckets);
    table.pin(&v.pins(), |m| members.iter().any(|w| w.id == m && w.weight > 0.0));
    table
}

/// This node's view of `table`: its own buckets settled, the rest foreign.
/// (Static shares: the node has owned its buckets since it was configured.)
fn static_view(table: &Table, me: MemberId, epoch: u64) -> OwnershipView {
    let mut view = OwnershipView::new(table.len() as u32, epoch);
    for (b, owner) in table.owners().iter().enumerate() {
        if *owner == Some(me) {
            view.set(Bucket(b as u32), BucketState::Settled);
        }
    }
    view
}

/// The status socket's path for `c`.
pub fn socket_path(c: &NodeConfig) -> PathBuf {
    c.status_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/run/synshare/{}.sock", c.name)))
}
