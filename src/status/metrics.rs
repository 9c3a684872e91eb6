//! Prometheus exposition of a node's or a coordinator's status (encoded
//! by the Prometheus client library, OpenMetrics text); served by
//! [`super::http`].

use super::{AvailabilityStatus, MemberStatus, NodeStatus, PortStatus, WorkerStatus};
use crate::exchange::{ExchangeCounters, ExchangeStatus, PeerStatus};
use prometheus_client::metrics::counter::Counter as CounterMetric;
use prometheus_client::metrics::family::Family as Labelled;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

/// A series' labels, in the order written.
type Labels = Vec<(String, String)>;

/// A number of the exposition: counters take it whole, gauges as f64.
trait Num: Copy {
    fn as_f64(self) -> f64;
    fn as_u64(self) -> u64;
}

macro_rules! num {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn as_f64(self) -> f64 {
                self as f64
            }
            fn as_u64(self) -> u64 {
                self as u64
            }
        }
    )*};
}
num!(u64, u32, u8, i32, f64);

/// A metric family: registered once (HELP and TYPE), then its samples.
enum Family {
    Gauge(Labelled<Labels, Gauge<f64, AtomicU64>>),
    Counter(Labelled<Labels, CounterMetric<u64>>),
}

impl Family {
    /// A family named `synshare_NAME` of `kind` ("counter" or "gauge"). A
    /// counter's `_total` is the encoder's to add.
    fn new(registry: &mut Registry, name: &'static str, kind: &str, help: &str) -> Self {
        // The encoder ends the help with a full stop of its own.
        let help = help.strip_suffix('.').unwrap_or(help);
        if kind == "counter" {
            let f = Labelled::default();
            registry.register(name.strip_suffix("_total").unwrap_or(name), help, f.clone());
            Family::Counter(f)
        } else {
            let f = Labelled::default();
            registry.register(name, help, f.clone());
            Family::Gauge(f)
        }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: impl Num) {
        let labels: Labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        match self {
            Family::Gauge(f) => {
                f.get_or_create(&labels).set(value.as_f64());
            }
            Family::Counter(f) => {
                f.get_or_create(&labels).inc_by(value.as_u64());
            }
        }
    }
}

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry for one exposition: every series carries `cluster`.
fn registry(cluster: &str) -> Registry {
    Registry::with_prefix_and_labels(
        "synshare",
        std::iter::once((Cow::Borrowed("cluster"), Cow::Owned(cluster.to_owned()))),
    )
}

/// The text of `registry`.
fn encode(registry: &Registry) -> String {
    let mut text = String::with_capacity(16384);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// The exposition of `s` and all its segments, by Prometheus conventions:
/// one metric per unit and meaning, base units (seconds, bytes, ratios),
/// `_total` for counters, every series present from the start (zeros
/// included), a `segment` label on everything per segment.
pub fn render(s: &NodeStatus) -> String {
    let mut o = registry(&s.cluster);
    let node = s.name.as_str();
    // Every segment with the exchange's segment id, as the coordinator and
    // the other members label it (a segment with static shares has none:
    // its index here).
    let segs: Vec<(&NodeStatus, String)> = std::iter::once(s)
        .chain(s.segments.iter())
        .map(|x| {
            let id = x.exchange.as_ref().map_or(x.segment, |e| u32::from(e.segment));
            (x, id.to_string())
        })
        .collect();
    info_families(&mut o, s);
    port_families(&mut o, node, &segs);
    worker_families(&mut o, node, &segs);
    segment_families(&mut o, node, &segs);
    let members: Vec<(&str, &[MemberStatus])> =
        segs.iter().map(|(x, id)| (id.as_str(), x.members.as_slice())).collect();
    member_families(&mut o, node, &members);
    // The exchange, per segment that has one.
    let xs: Vec<(&ExchangeStatus, &str)> = segs
        .iter()
        .filter_map(|(x, id)| x.exchange.as_ref().map(|e| (e, id.as_str())))
        .collect();
    exchange_families(&mut o, node, s.id, &xs);
    if let Some(a) = &s.availability {
        availability_families(&mut o, node, a);
    }
    encode(&o)
}

/// Segments with their `segment` label.
type Segments<'a> = [(&'a NodeStatus, String)];

/// Build information and uptime.
fn info_families(o: &mut Registry, s: &NodeStatus) {
    let node = s.name.as_str();
    let mut m = Family::new(o, "build_info", "gauge", "Version of synshare and of DPDK; always 1.");
    m.sample(
        &[
            ("node", node),
            ("version", env!("CARGO_PKG_VERSION")),
            ("dpdk", &s.dpdk),
        ],
        1,
    );
    let mut m = Family::new(o, "uptime_seconds", "gauge", "Seconds since the node started.");
    m.sample(&[("node", node)], s.uptime_s);
}

/// The ports' packets, bytes and drops, per segment.
fn port_families(o: &mut Registry, node: &str, segs: &Segments) {
    type PerPort = fn(&PortStatus) -> (u64, u64);
    let per_port: [(&'static str, &str, PerPort); 2] = [
        (
            "port_packets_total",
            "Packets through a port, as its driver counts them.",
            |p| (p.stats.ipackets, p.stats.opackets),
        ),
        (
            "port_bytes_total",
            "Bytes through a port, as its driver counts them.",
            |p| (p.stats.ibytes, p.stats.obytes),
        ),
    ];
    for (name, help, value) in per_port {
        let mut m = Family::new(o, name, "counter", help);
        for (x, seg) in segs {
            for (port, p) in [("wire", &x.wire), ("exception", &x.exception)] {
                let (rx, tx) = value(p);
                for (direction, v) in [("rx", rx), ("tx", tx)] {
                    let labels = [
                        ("node", node),
                        ("segment", seg),
                        ("port", port),
                        ("direction", direction),
                    ];
                    m.sample(&labels, v);
                }
            }
        }
    }
    let mut m = Family::new(
        o,
        "port_dropped_packets_total",
        "counter",
        "Packets a port dropped, by reason (RX ring full, errors, no mbuf).",
    );
    for (x, seg) in segs {
        for (port, p) in [("wire", &x.wire.stats), ("exception", &x.exception.stats)] {
            for (why, v) in [
                ("missed", p.imissed),
                ("rx_error", p.ierrors),
                ("tx_error", p.oerrors),
                ("no_mbuf", p.rx_nombuf),
            ] {
                m.sample(&[("node", node), ("segment", seg), ("port", port), ("reason", why)], v);
            }
        }
    }
}

/// The workers' packets, frames by outcome and flow tables, per segment.
fn worker_families(o: &mut Registry, node: &str, segs: &Segments) {
    let mut m = Family::new(
        o,
        "worker_packets_total",
        "counter",
        "Packets a worker received, by source.",
    );
    sample_workers(&mut m, node, segs, "source", |w| {
        [("wire", w.wire_rx), ("kernel", w.kernel_rx)]
    });
    let mut m = Family::new(
        o,
        "frames_total",
        "counter",
        "Frames by outcome: to the kernel, answered, or dropped with a reason.",
    );
    // Every outcome, zeros included (the status lists non-zero ones).
    sample_workers(&mut m, node, segs, "outcome", |w| {
        (synshare_dataplane::counters::Counter::ALL.iter())
            .map(|c| (c.name(), w.counters.get(c.name()).copied().unwrap_or(0)))
    });
    type PerWorker = fn(&WorkerStatus) -> u64;
    let per_worker: [(&'static str, &str, &str, PerWorker); 4] = [
        ("flows", "gauge", "Entries in a worker's flow table.", |w| w.flows),
        ("flow_capacity", "gauge", "Capacity of a worker's flow table.", |w| {
            w.flow_capacity
        }),
        (
            "flow_insert_failed_total",
            "counter",
            "Flows not recorded: their group was full of established flows.",
            |w| w.flow_insert_failed,
        ),
        (
            "flow_evicted_total",
            "counter",
            "Half-open flows evicted under pressure.",
            |w| w.flow_evicted,
        ),
    ];
    for (name, kind, help, value) in per_worker {
        let mut m = Family::new(o, name, kind, help);
        for (x, seg) in segs {
            for w in &x.workers {
                m.sample(
                    &[("node", node), ("segment", seg), ("worker", &w.index.to_string())],
                    value(w),
                );
            }
        }
    }
}

/// Samples `m` for every worker of every segment: one series per
/// (`label` value, value) that `values` gives for the worker.
fn sample_workers<'a, I>(
    m: &mut Family,
    node: &str,
    segs: &'a Segments,
    label: &str,
    values: impl Fn(&'a WorkerStatus) -> I,
) where
    I: IntoIterator<Item = (&'a str, u64)>,
{
    for (x, seg) in segs {
        for w in &x.workers {
            let i = w.index.to_string();
            for (value, v) in values(w) {
                m.sample(&[("node", node), ("segment", seg), ("worker", &i), (label, value)], v);
            }
        }
    }
}

/// Each segment's table epoch and buckets.
fn segment_families(o: &mut Registry, node: &str, segs: &Segments) {
    type PerSegment = fn(&NodeStatus) -> u64;
    let per_segment: [(&'static str, &str, PerSegment); 3] = [
        ("table_epoch", "Log index of the bucket table in force.", |x| x.epoch),
        ("held_buckets", "Buckets this node holds.", |x| x.held.into()),
        ("buckets", "Buckets of the segment's table.", |x| x.buckets.into()),
    ];
    for (name, help, value) in per_segment {
        let mut m = Family::new(o, name, "gauge", help);
        for (x, seg) in segs {
            m.sample(&[("node", node), ("segment", seg)], value(x));
        }
    }
}

/// The availability formula's inputs and outputs.
fn availability_families(o: &mut Registry, node: &str, a: &AvailabilityStatus) {
    let mut m = Family::new(
        o,
        "availability_ratio",
        "gauge",
        "Availability from 0 to 1: the raw sample and the smoothed value that is advertised (before the capacity).",
    );
    for (kind, v) in [("raw", a.raw), ("smoothed", a.smoothed)] {
        m.sample(
            &[("node", node), ("kind", kind)],
            if a.capacity > 0.0 { v / a.capacity } else { 0.0 },
        );
    }
    for (name, help, value) in [
        ("capacity_weight", "Configured capacity weight.", a.capacity),
        (
            "advertised_weight",
            "Capacity times smoothed availability: the weight this node advertises.",
            a.smoothed,
        ),
        (
            "cpu_busy_ratio",
            "CPU busy, 0 to 1, as the availability formula sees it.",
            a.cpu_busy.unwrap_or(0.0),
        ),
        (
            "connections",
            "Connections this node holds (flow-table entries).",
            a.connections as f64,
        ),
        (
            "service_up",
            "1 while the local service answers its probe.",
            f64::from(u8::from(a.service_up)),
        ),
        (
            "draining",
            "1 while this node is draining.",
            f64::from(u8::from(a.draining)),
        ),
    ] {
        Family::new(o, name, "gauge", help).sample(&[("node", node)], value);
    }
    for (name, help, value) in [
        (
            "temperature_celsius",
            "Temperature the availability formula reads.",
            a.temperature_c,
        ),
        ("power_watts", "Power the availability formula reads.", a.power_w),
    ] {
        if let Some(v) = value {
            Family::new(o, name, "gauge", help).sample(&[("node", node)], v);
        }
    }
}

/// The exchange's families for `xs` (status, segment label) as seen by
/// member `me` of `node`.
fn exchange_families(o: &mut Registry, node: &str, me: u32, xs: &[(&ExchangeStatus, &str)]) {
    if xs.is_empty() {
        return;
    }
    type PerSegment<'a> = &'a dyn Fn(&ExchangeStatus) -> f64;
    let per_segment: [(&'static str, &str, PerSegment); 6] = [
        (
            "lease_seconds",
            "Lease left; 0: fenced (no majority heard both ways), no new connections taken.",
            &|x| x.lease_ms.unwrap_or(0) as f64 / 1000.0,
        ),
        (
            "fenced",
            "1 while this node has no lease (or another process uses its id).",
            &|x| f64::from(u8::from(x.lease_ms.is_none() || x.duplicate_id)),
        ),
        (
            "leader",
            "1 on the member that leads the segment's consensus, as seen here.",
            &|x| f64::from(u8::from(x.leader >= 0 && x.leader as u64 == u64::from(me))),
        ),
        ("voters", "Members that vote in the segment's consensus.", &|x| {
            x.voters.len() as f64
        }),
        (
            "state_file_bytes",
            "Size of the segment's state file as last written (the consensus log is compacted past 128 entries, to 64).",
            &|x| x.stats.state_file_bytes as f64,
        ),
        (
            "consensus_log_entries",
            "Consensus log entries held in memory and in the state file.",
            &|x| x.stats.log_entries as f64,
        ),
    ];
    for (name, help, value) in per_segment {
        let mut m = Family::new(&mut *o, name, "gauge", help);
        for (x, seg) in xs {
            m.sample(&[("node", node), ("segment", seg)], value(x));
        }
    }
    type PerPeer = fn(&PeerStatus) -> Option<f64>;
    let per_peer: [(&'static str, &str, PerPeer); 2] = [
        ("peer_up", "1 while a configured peer is heard both ways.", |p| {
            Some(f64::from(u8::from(p.live)))
        }),
        (
            "peer_last_heard_seconds",
            "Seconds since a peer's last heartbeat (absent: never heard).",
            |p| p.heard_ms_ago.map(|ms| ms as f64 / 1000.0),
        ),
    ];
    for (name, help, value) in per_peer {
        let mut m = Family::new(&mut *o, name, "gauge", help);
        for (x, seg) in xs {
            for p in &x.peers {
                if let Some(v) = value(p) {
                    m.sample(&[("node", node), ("segment", seg), ("peer", &p.id.to_string())], v);
                }
            }
        }
    }
    exchange_counter_families(o, node, xs);
}

/// One of the exchange's counters.
type Stat = fn(&ExchangeCounters) -> u64;

/// The exchange's datagram counters: (kind, event, the statistic).
const EXCHANGE_DATAGRAMS: &[(&str, &str, Stat)] = &[
    ("heartbeat", "sent", |s| s.sent),
    ("heartbeat", "accepted", |s| s.accepted),
    ("consensus", "sent", |s| s.consensus_sent),
    ("consensus", "accepted", |s| s.consensus_accepted),
    ("any", "received", |s| s.received),
];

/// A counter family of the exchange's statistics: its name, help and
/// label, and one series per (label value, the statistic).
type StatFamily = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, Stat)],
);

/// The exchange's hand-offs, tables, log and membership counters.
const EXCHANGE_STAT_FAMILIES: &[StatFamily] = &[
    (
        "buckets_handed_off_total",
        "Buckets claimed and released in hand-offs.",
        "direction",
        &[("claimed", |s| s.buckets_claimed), ("released", |s| s.buckets_released)],
    ),
    (
        "tables_total",
        "Bucket tables applied here and proposed here.",
        "event",
        &[("applied", |s| s.epochs_adopted), ("proposed", |s| s.epochs_created)],
    ),
    (
        "consensus_log_events_total",
        "Compactions of the consensus log, and snapshots installed here (this member was behind the compacted log) or sent to a member behind it.",
        "event",
        &[
            ("compacted", |s| s.log_compactions),
            ("snapshot_installed", |s| s.snapshots_installed),
            ("snapshot_sent", |s| s.snapshots_sent),
        ],
    ),
    (
        "membership_events_total",
        "Members lost (not live), joined, lease losses (fencing), voter changes, member directory changes (added, leaving, removed).",
        "event",
        &[
            ("lost", |s| s.failovers),
            ("joined", |s| s.joins),
            ("fenced", |s| s.fenced),
            ("voters_changed", |s| s.voter_changes),
            ("directory_changed", |s| s.directory_changes),
        ],
    ),
];

/// The exchange's counters (datagrams, rejections, hand-offs, tables,
/// the log, membership) for `xs` as in [`exchange_families`].
fn exchange_counter_families(o: &mut Registry, node: &str, xs: &[(&ExchangeStatus, &str)]) {
    let mut m = Family::new(
        &mut *o,
        "exchange_datagrams_total",
        "counter",
        "Exchange datagrams by kind and what happened to them.",
    );
    for (x, seg) in xs {
        for (kind, what, k) in EXCHANGE_DATAGRAMS {
            m.sample(
                &[("node", node), ("segment", seg), ("kind", kind), ("event", what)],
                k(&x.stats),
            );
        }
    }
    let mut m = Family::new(
        &mut *o,
        "exchange_rejected_total",
        "counter",
        "Exchange datagrams dropped, by reason (a flood shows as unknown_source).",
    );
    for (x, seg) in xs {
        for (reason, v) in x.stats.rejected() {
            m.sample(&[("node", node), ("segment", seg), ("reason", reason)], v);
        }
    }
    for (name, help, label, events) in EXCHANGE_STAT_FAMILIES {
        let mut m = Family::new(&mut *o, name, "counter", help);
        for (x, seg) in xs {
            for (value, stat) in *events {
                m.sample(&[("node", node), ("segment", seg), (label, value)], stat(&x.stats));
            }
        }
    }
}

/// The families of the members' shares and weights in the table in force,
/// for each (segment label, members).
fn member_families(o: &mut Registry, node: &str, segs: &[(&str, &[MemberStatus])]) {
    type PerMember = fn(&MemberStatus) -> f64;
    let per_member: [(&'static str, &str, PerMember); 2] = [
        (
            "member_share_ratio",
            "Each member's share of the buckets in the table in force.",
            |m| m.share_pct / 100.0,
        ),
        ("member_weight", "Each member's weight in the table in force.", |m| {
            m.weight
        }),
    ];
    for (name, help, value) in per_member {
        let mut m = Family::new(&mut *o, name, "gauge", help);
        for (seg, members) in segs {
            for mem in *members {
                m.sample(
                    &[("node", node), ("segment", seg), ("member", &mem.id.to_string())],
                    value(mem),
                );
            }
        }
    }
}

/// The exposition of a coordinator: its exchange, the members' shares and
/// weights in the table it made.
pub fn render_coordinator(name: &str, cluster: &str, uptime_s: f64, x: &ExchangeStatus) -> String {
    let mut o = registry(cluster);
    let seg = x.segment.to_string();
    let mut m = Family::new(&mut o, "build_info", "gauge", "Version of synshare; always 1.");
    m.sample(
        &[
            ("node", name),
            ("version", env!("CARGO_PKG_VERSION")),
            ("role", "coordinator"),
        ],
        1,
    );
    let mut m = Family::new(&mut o, "uptime_seconds", "gauge", "Seconds since the process started.");
    m.sample(&[("node", name)], uptime_s);
    let mut m = Family::new(
        &mut o,
        "table_epoch",
        "gauge",
        "Log index of the bucket table in force.",
    );
    m.sample(&[("node", name), ("segment", &seg)], x.epoch);
    let members: Vec<MemberStatus> = x.members.iter().map(MemberStatus::from).collect();
    member_families(&mut o, name, &[(seg.as_str(), &members)]);
    exchange_families(&mut o, name, 0, &[(x, seg.as_str())]);
    encode(&o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeStatus {
        let seg = |segment: u32| NodeStatus {
            name: "node1".into(),
            id: 1,
            segment,
            buckets: 65536,
            held: 100,
            members: vec![MemberStatus {
                id: 1,
                weight: 1.0,
                buckets: 65536,
                share_pct: 100.0,
            }],
            workers: vec![WorkerStatus::default()],
            cluster: "web".into(),
            exchange: Some(ExchangeStatus {
                // The exchange's id, not the index on this node.
                segment: segment as u16 + 7,
                lease_ms: Some(300),
                peers: vec![PeerStatus {
                    id: 2,
                    live: true,
                    heard_ms_ago: Some(20),
                    ..PeerStatus::default()
                }],
                stats: crate::exchange::ExchangeCounters {
                    rejected_unknown_source: 7,
                    buckets_claimed: 3,
                    ..Default::default()
                },
                ..ExchangeStatus::default()
            }),
            availability: Some(AvailabilityStatus {
                capacity: 2.0,
                smoothed: 1.0,
                raw: 1.0,
                service_up: true,
                ..AvailabilityStatus::default()
            }),
            ..NodeStatus::default()
        };
        let mut s = seg(0);
        s.segments = vec![seg(1)];
        s
    }

    #[test]
    fn every_segment_is_exported_and_each_family_is_declared_once() {
        let text = render(&sample());
        for family in [
            "held_buckets",
            "lease_seconds",
            "peer_up",
            "exchange_rejected_total",
            "state_file_bytes",
            "consensus_log_entries",
        ] {
            for seg in ["7", "8"] {
                assert!(
                    text.lines()
                        .any(|l| l.starts_with(&format!("synshare_{family}{{"))
                            && l.contains(&format!("segment=\"{seg}\""))),
                    "{family} segment {seg}"
                );
            }
        }
        assert!(
            !text.contains("segment=\"0\"") && !text.contains("segment=\"1\""),
            "an index as segment"
        );
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.contains("cluster=\"web\""), "no cluster label: {l}");
        }
        let mut seen = std::collections::BTreeSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(l.to_owned()), "declared twice: {l}");
        }
        assert!(
            text.contains("synshare_availability_ratio{cluster=\"web\",node=\"node1\",kind=\"smoothed\"} 0.5\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    }

    #[test]
    fn the_dashboard_and_the_alerts_use_only_metrics_that_exist() {
        let text = render(&sample());
        // The names samples carry (a counter's with its `_total`).
        let families: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        for (file, content) in [
            ("alerts", include_str!("../../deploy/prometheus/synshare-alerts.yml")),
            (
                "dashboard",
                include_str!("../../deploy/grafana/synshare-dashboard.json"),
            ),
        ] {
            let mut used = 0;
            for (i, _) in content.match_indices("synshare_") {
                let name: String = content[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    families.contains(name.as_str()),
                    "{file} uses {name}, which is not exported"
                );
                used += 1;
            }
            assert!(used > 3, "{file} uses {used} metrics");
        }
    }

    #[test]
    fn label_values_are_escaped_and_every_outcome_is_present_from_the_start() {
        let mut s = sample();
        s.name = "a\"b\\c\nd".into();
        let text = render(&s);
        assert!(
            text.contains(r#"synshare_uptime_seconds{cluster="web",node="a\"b\\c\nd"}"#),
            "{text}"
        );
        let outcomes = text
            .lines()
            .filter(|l| l.starts_with("synshare_frames_total{") && l.contains("segment=\"7\""))
            .count();
        assert_eq!(outcomes, synshare_dataplane::counters::Counter::ALL.len());
    }
}
