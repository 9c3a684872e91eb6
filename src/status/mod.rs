//! The status wing: what a node (or a coordinator) is, owns and counted,
//! and every way it is shown.
//!
//! - this module: the status types, built by the node's control loop;
//! - [`text`]: the human-readable summary `synshare status` prints;
//! - [`metrics`]: the Prometheus exposition;
//! - [`http`]: the metrics port (metrics, status page, JSON), on a thread
//!   of its own;
//! - [`server`]: the local status socket, and who may change things
//!   through it;
//! - [`request`]: what that socket is asked (one serde enum) and its
//!   plain answer;
//! - [`client`]: what `synshare` sends to that socket.
//!
//! Imports point one way: `text` and `metrics` read the types, `http`
//! serves what `metrics` renders, `client` and `server` share only
//! `request`.

pub mod client;
pub mod http;
pub mod metrics;
pub mod request;
pub mod server;
pub mod text;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use synshare_control::layout::{MemberId, Table};
use synshare_dataplane::counters::{Counter, Counts, WorkerStats};
use synshare_dpdk::{Port, PortStats};

/// A port's driver counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PortStatus {
    /// DPDK port name.
    pub name: String,
    /// Driver.
    pub driver: String,
    /// The counters (fields of the port's own object in JSON).
    #[serde(flatten)]
    pub stats: PortStats,
}

/// One worker's figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerStatus {
    /// Worker index.
    pub index: usize,
    /// Frames from the wire.
    pub wire_rx: u64,
    /// Frames from the kernel.
    pub kernel_rx: u64,
    /// Flow-table entries.
    pub flows: u64,
    /// Flow-table capacity.
    pub flow_capacity: u64,
    /// Flows not recorded (group full of established flows).
    pub flow_insert_failed: u64,
    /// Half-open entries evicted under pressure.
    pub flow_evicted: u64,
    /// Epoch of the ownership view in use.
    pub view_epoch: u64,
    /// Outcome counters (non-zero ones).
    pub counters: BTreeMap<String, u64>,
}

/// A member as this node sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MemberStatus {
    /// Member id.
    pub id: u32,
    /// Weight used for the table.
    pub weight: f64,
    /// Buckets it owns.
    pub buckets: u32,
    /// Its share of the buckets, in percent.
    pub share_pct: f64,
}

impl From<&crate::exchange::EpochMember> for MemberStatus {
    fn from(m: &crate::exchange::EpochMember) -> Self {
        MemberStatus {
            id: m.id,
            weight: m.weight,
            buckets: m.buckets,
            share_pct: m.share_pct,
        }
    }
}

/// The node's availability and its inputs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AvailabilityStatus {
    /// Configured capacity weight in force.
    pub capacity: f64,
    /// CPU busy share of the quota, last sample.
    pub cpu_busy: Option<f64>,
    /// Connections held.
    pub connections: u64,
    /// Temperature, °C.
    pub temperature_c: Option<f64>,
    /// Power, W.
    pub power_w: Option<f64>,
    /// The local service answered its probe.
    pub service_up: bool,
    /// Availability of the last sample.
    pub raw: f64,
    /// After smoothing: the weight advertised.
    pub smoothed: f64,
    /// Draining.
    pub draining: bool,
}

/// Everything `synshare status` shows.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// The cluster's name (`cluster` in the configuration).
    #[serde(default)]
    pub cluster: String,
    /// Member id.
    pub id: u32,
    /// Segment index on this node (0: the first).
    #[serde(default)]
    pub segment: u32,
    /// DPDK version.
    pub dpdk: String,
    /// Running on hugepages.
    pub hugepages: bool,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Table epoch.
    pub epoch: u64,
    /// Table layout.
    pub layout: String,
    /// Buckets in the table.
    pub buckets: u32,
    /// Members and shares.
    pub members: Vec<MemberStatus>,
    /// The node's own MAC.
    pub node_mac: String,
    /// The cluster MAC.
    pub cluster_mac: String,
    /// The wire port.
    pub wire: PortStatus,
    /// The exception port.
    pub exception: PortStatus,
    /// Workers.
    pub workers: Vec<WorkerStatus>,
    /// Buckets this node holds.
    #[serde(default)]
    pub held: u32,
    /// The availability exchange, when configured.
    #[serde(default)]
    pub exchange: Option<crate::exchange::ExchangeStatus>,
    /// Availability, when measured.
    #[serde(default)]
    pub availability: Option<AvailabilityStatus>,
    /// The node's other segments.
    #[serde(default)]
    pub segments: Vec<NodeStatus>,
}

impl NodeStatus {
    /// Counters summed over workers.
    pub fn totals(&self) -> BTreeMap<String, u64> {
        let mut t = BTreeMap::new();
        for w in &self.workers {
            for (k, v) in &w.counters {
                *t.entry(k.clone()).or_insert(0) += v;
            }
        }
        t
    }
}

/// A port's status now.
pub fn port(p: &Port) -> PortStatus {
    PortStatus {
        name: p.name().to_owned(),
        driver: p.driver(),
        stats: p.stats().unwrap_or_default(),
    }
}

/// A worker's status from what it last published.
pub fn worker(index: usize, s: &WorkerStats) -> WorkerStatus {
    let counts: Counts = s.load();
    WorkerStatus {
        index,
        wire_rx: s.wire_rx.load(Ordering::Relaxed),
        kernel_rx: s.kernel_rx.load(Ordering::Relaxed),
        flows: s.flows.load(Ordering::Relaxed),
        flow_capacity: s.flow_capacity.load(Ordering::Relaxed),
        flow_insert_failed: s.flow_insert_failed.load(Ordering::Relaxed),
        flow_evicted: s.flow_evicted.load(Ordering::Relaxed),
        view_epoch: s.view_epoch.load(Ordering::Relaxed),
        counters: Counter::ALL
            .iter()
            .filter(|c| counts.get(**c) > 0)
            .map(|c| (c.name().to_owned(), counts.get(*c)))
            .collect(),
    }
}

/// The configured members with their shares of `table`.
pub fn members(configured: &[crate::config::MemberConfig], table: &Table) -> Vec<MemberStatus> {
    configured
        .iter()
        .map(|m| {
            let n = table.count(MemberId(m.id)) as u32;
            MemberStatus {
                id: m.id,
                weight: m.weight,
                buckets: n,
                share_pct: 100.0 * f64::from(n) / table.len().max(1) as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ports_counters_are_its_own_fields_in_json() {
        // The namespace tests and the status page read `wire.ipackets`.
        let p = PortStatus {
            name: "net_tap0".into(),
            driver: "net_tap".into(),
            stats: PortStats {
                ipackets: 1,
                rx_nombuf: 8,
                ..PortStats::default()
            },
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"name":"net_tap0","driver":"net_tap","ipackets":1,"opackets":0,"ibytes":0,"obytes":0,"imissed":0,"ierrors":0,"oerrors":0,"rx_nombuf":8}"#
        );
        assert_eq!(serde_json::from_str::<PortStatus>(&json).unwrap(), p);
    }
}
