//! Prometheus text exposition of a node's status, served over plain HTTP on
//! a local address (`metrics` in the configuration).

use crate::exchange::{ExchangeStatus, PeerStatus};
use crate::status::{MemberStatus, NodeStatus};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;
use tracing::info;

/// A metric family: HELP and TYPE once, then its samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP synshare_{name} {help}\n# TYPE synshare_{name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let _ = writeln!(self.out, "synshare_{}{{{}}} {value}", self.name, l.join(","));
    }
}

/// The exposition of `s` and all its segments, by Prometheus conventions:
/// one metric per unit and meaning, base units (seconds, bytes, ratios),
/// `_total` for counters, every series present from the start (zeros
/// included), a `segment` label on everything per segment.
pub fn render(s: &NodeStatus) -> String {
    let mut o = String::with_capacity(16384);
    let node = s.name.as_str();
    let segs: Vec<&NodeStatus> = std::iter::once(s).chain(s.segments.iter()).collect();
    let seg_ids: Vec<String> = segs.iter().map(|x| x.segment.to_string()).collect();
    let each = |f: &mut dyn FnMut(&NodeStatus, &str)| {
        for (x, id) in segs.iter().zip(&seg_ids) {
            f(x, id);
        }
    };

    let mut m = Family::new(
        &mut o,
        "build_info",
        "gauge",
        "Version of synshare and of DPDK; always 1.",
    );
    m.sample(
        &[
            ("node", node),
            ("version", env!("CARGO_PKG_VERSION")),
            ("dpdk", &s.dpdk),
        ],
        1,
    );
    let mut m = Family::new(&mut o, "uptime_seconds", "gauge", "Seconds since the node started.");
    m.sample(&[("node", node)], format!("{:.3}", s.uptime_s));

    type PerPort = fn(&crate::status::PortStatus) -> (u64, u64);
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
        let mut m = Family::new(&mut o, name, "counter", help);
        each(&mut |x, seg| {
            for (port, p) in [("wire", &x.wire), ("exception", &x.exception)] {
                let (rx, tx) = value(p);
                for (direction, v) in [("rx", rx), ("tx", tx)] {
                    m.sample(
                        &[
                            ("node", node),
                            ("segment", seg),
                            ("port", port),
                            ("direction", direction),
                        ],
                        v,
                    );
                }
            }
        });
    }
    let mut m = Family::new(
        &mut o,
        "port_dropped_packets_total",
        "counter",
        "Packets a port dropped, by reason (RX ring full, errors, no mbuf).",
    );
    each(&mut |x, seg| {
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
    });
    let mut m = Family::new(
        &mut o,
        "worker_packets_total",
        "counter",
        "Packets a worker received, by source.",
    );
    each(&mut |x, seg| {
        for w in &x.workers {
            let i = w.index.to_string();
            for (source, v) in [("wire", w.wire_rx), ("kernel", w.kernel_rx)] {
                m.sample(
                    &[("node", node), ("segment", seg), ("worker", &i), ("source", source)],
                    v,
                );
            }
        }
    });
    let mut m = Family::new(
        &mut o,
        "frames_total",
        "counter",
        "Frames by outcome: to the kernel, answered, or dropped with a reason.",
    );
    each(&mut |x, seg| {
        for w in &x.workers {
            let i = w.index.to_string();
            for (k, v) in &w.counters {
                m.sample(&[("node", node), ("segment", seg), ("worker", &i), ("outcome", k)], v);
            }
        }
    });
    type PerWorker = fn(&crate::status::WorkerStatus) -> u64;
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
        let mut m = Family::new(&mut o, name, kind, help);
        each(&mut |x, seg| {
            for w in &x.workers {
                m.sample(
                    &[("node", node), ("segment", seg), ("worker", &w.index.to_string())],
                    value(w),
                );
            }
        });
    }
    type PerSegment = fn(&NodeStatus) -> u64;
    let per_segment: [(&'static str, &str, PerSegment); 3] = [
        ("table_epoch", "Log index of the bucket table in force.", |x| x.epoch),
        ("held_buckets", "Buckets this node holds.", |x| x.held.into()),
        ("buckets", "Buckets of the segment's table.", |x| x.buckets.into()),
    ];
    for (name, help, value) in per_segment {
        let mut m = Family::new(&mut o, name, "gauge", help);
        each(&mut |x, seg| m.sample(&[("node", node), ("segment", seg)], value(x)));
    }
    let members: Vec<(&str, &[MemberStatus])> = segs
        .iter()
        .zip(&seg_ids)
        .map(|(x, id)| (id.as_str(), x.members.as_slice()))
        .collect();
    member_families(&mut o, node, &members);

    // The exchange, per segment that has one.
    let xs: Vec<(&ExchangeStatus, &str)> = segs
        .iter()
        .zip(&seg_ids)
        .filter_map(|(x, id)| x.exchange.as_ref().map(|e| (e, id.as_str())))
        .collect();
    exchange_families(&mut o, node, s.id, &xs);

    if let Some(a) = &s.availability {
        let mut m = Family::new(
            &mut o,
            "availability_ratio",
            "gauge",
            "Availability from 0 to 1: the raw sample and the smoothed value that is advertised (before the capacity).",
        );
        for (kind, v) in [("raw", a.raw), ("smoothed", a.smoothed)] {
            m.sample(
                &[("node", node), ("kind", kind)],
                format!("{:.6}", if a.capacity > 0.0 { v / a.capacity } else { 0.0 }),
            );
        }
        for (name, help, value) in [
            (
                "capacity_weight",
                "Configured capacity weight.",
                format!("{:.6}", a.capacity),
            ),
            (
                "advertised_weight",
                "Capacity times smoothed availability: the weight this node advertises.",
                format!("{:.6}", a.smoothed),
            ),
            (
                "cpu_busy_ratio",
                "CPU busy, 0 to 1, as the availability formula sees it.",
                format!("{:.6}", a.cpu_busy.unwrap_or(0.0)),
            ),
            (
                "connections",
                "Connections this node holds (flow-table entries).",
                a.connections.to_string(),
            ),
            (
                "service_up",
                "1 while the local service answers its probe.",
                u8::from(a.service_up).to_string(),
            ),
            (
                "draining",
                "1 while this node is draining.",
                u8::from(a.draining).to_string(),
            ),
        ] {
            Family::new(&mut o, name, "gauge", help).sample(&[("node", node)], value);
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
                Family::new(&mut o, name, "gauge", help).sample(&[("node", node)], format!("{v:.3}"));
            }
        }
    }
    o
}

/// The exchange's families for `xs` (status, segment label) as seen by
/// member `me` of `node`.
fn exchange_families(o: &mut String, node: &str, me: u32, xs: &[(&ExchangeStatus, &str)]) {
    if xs.is_empty() {
        return;
    }
    type PerSegment<'a> = &'a dyn Fn(&ExchangeStatus) -> String;
    let per_segment: [(&'static str, &str, PerSegment); 6] = [
        (
            "lease_seconds",
            "Lease left; 0: fenced (no majority heard both ways), no new connections taken.",
            &|x| format!("{:.3}", x.lease_ms.unwrap_or(0) as f64 / 1000.0),
        ),
        (
            "fenced",
            "1 while this node has no lease (or another process uses its id).",
            &|x| u8::from(x.lease_ms.is_none() || x.duplicate_id).to_string(),
        ),
        (
            "leader",
            "1 on the member that leads the segment's consensus, as seen here.",
            &|x| u8::from(x.leader >= 0 && x.leader as u64 == u64::from(me)).to_string(),
        ),
        ("voters", "Members that vote in the segment's consensus.", &|x| {
            x.voters.len().to_string()
        }),
        (
            "state_file_bytes",
            "Size of the segment's state file as last written (the consensus log is compacted past 128 entries, to 64).",
            &|x| x.stats.get("state_file_bytes").copied().unwrap_or(0).to_string(),
        ),
        (
            "consensus_log_entries",
            "Consensus log entries held in memory and in the state file.",
            &|x| x.stats.get("log_entries").copied().unwrap_or(0).to_string(),
        ),
    ];
    for (name, help, value) in per_segment {
        let mut m = Family::new(&mut *o, name, "gauge", help);
        for (x, seg) in xs {
            m.sample(&[("node", node), ("segment", seg)], value(x));
        }
    }
    type PerPeer = fn(&PeerStatus) -> Option<String>;
    let per_peer: [(&'static str, &str, PerPeer); 2] = [
        ("peer_up", "1 while a configured peer is heard both ways.", |p| {
            Some(u8::from(p.live).to_string())
        }),
        (
            "peer_last_heard_seconds",
            "Seconds since a peer's last heartbeat (absent: never heard).",
            |p| p.heard_ms_ago.map(|ms| format!("{:.3}", ms as f64 / 1000.0)),
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
    let stat = |x: &ExchangeStatus, k: &str| x.stats.get(k).copied().unwrap_or(0);
    let mut m = Family::new(
        &mut *o,
        "exchange_datagrams_total",
        "counter",
        "Exchange datagrams by kind and what happened to them.",
    );
    for (x, seg) in xs {
        for (kind, what, k) in [
            ("heartbeat", "sent", "sent"),
            ("heartbeat", "accepted", "accepted"),
            ("consensus", "sent", "consensus_sent"),
            ("consensus", "accepted", "consensus_accepted"),
            ("any", "received", "received"),
        ] {
            m.sample(
                &[("node", node), ("segment", seg), ("kind", kind), ("event", what)],
                stat(x, k),
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
        for (k, v) in x.stats.iter().filter(|(k, _)| k.starts_with("rejected_")) {
            m.sample(
                &[("node", node), ("segment", seg), ("reason", &k["rejected_".len()..])],
                v,
            );
        }
    }
    // Counters of the exchange's statistics: one series per label value, each a statistic.
    type Events = &'static [(&'static str, &'static str)];
    let by_stat: [(&'static str, &str, &str, Events); 4] = [
        (
            "buckets_handed_off_total",
            "Buckets claimed and released in hand-offs.",
            "direction",
            &[("claimed", "buckets_claimed"), ("released", "buckets_released")],
        ),
        (
            "tables_total",
            "Bucket tables applied here and proposed here.",
            "event",
            &[("applied", "epochs_adopted"), ("proposed", "epochs_created")],
        ),
        (
            "consensus_log_events_total",
            "Compactions of the consensus log, and snapshots installed here (this member was behind the compacted log) or sent to a member behind it.",
            "event",
            &[
                ("compacted", "log_compactions"),
                ("snapshot_installed", "snapshots_installed"),
                ("snapshot_sent", "snapshots_sent"),
            ],
        ),
        (
            "membership_events_total",
            "Members lost (not live), joined, lease losses (fencing), voter changes.",
            "event",
            &[
                ("lost", "failovers"),
                ("joined", "joins"),
                ("fenced", "fenced"),
                ("voters_changed", "voter_changes"),
            ],
        ),
    ];
    for (name, help, label, events) in by_stat {
        let mut m = Family::new(&mut *o, name, "counter", help);
        for (x, seg) in xs {
            for (value, key) in events {
                m.sample(&[("node", node), ("segment", seg), (label, value)], stat(x, key));
            }
        }
    }
}

/// The families of the members' shares and weights in the table in force,
/// for each (segment label, members).
fn member_families(o: &mut String, node: &str, segs: &[(&str, &[MemberStatus])]) {
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
                    format!("{:.6}", value(mem)),
                );
            }
        }
    }
}

/// The exposition of a coordinator: its exchange, the members' shares and
/// weights in the table it made.
pub fn render_coordinator(name: &str, uptime_s: f64, x: &ExchangeStatus) -> String {
    let mut o = String::with_capacity(8192);
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
    m.sample(&[("node", name)], format!("{uptime_s:.3}"));
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
    o
}

/// The status page: one HTML file, no external assets.
pub const STATUS_PAGE: &str = include_str!("web/status.html");

/// The non-blocking listener on `addr`, the configured metrics address
/// (none without one).
pub fn listen(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let l = TcpListener::bind(addr).map_err(|e| format!("metrics on {addr}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    info!(%addr, "metrics");
    Ok(Some(l))
}

/// Answers what is waiting on `listener` (non-blocking): `route` maps a
/// path to a content type and a body; anything else is 404. Each
/// connection has short deadlines.
pub fn serve(listener: &TcpListener, mut route: impl FnMut(&str) -> Option<(&'static str, String)>) {
    while let Ok((mut stream, _)) = listener.accept() {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        let mut req = [0u8; 1024];
        let n = stream.read(&mut req).unwrap_or(0);
        let head = String::from_utf8_lossy(&req[..n]);
        let path = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("");
        let (status, kind, body) = match route(path) {
            Some((kind, body)) => ("200 OK", kind, body),
            None => (
                "404 Not Found",
                "text/plain",
                "not found: GET /metrics, / (status page), /status.json, /table.json, /history.json\n".to_owned(),
            ),
        };
        let _ = write!(
            stream,
            "HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{AvailabilityStatus, WorkerStatus};

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
            exchange: Some(ExchangeStatus {
                segment: segment as u16,
                lease_ms: Some(300),
                peers: vec![PeerStatus {
                    id: 2,
                    live: true,
                    heard_ms_ago: Some(20),
                    ..PeerStatus::default()
                }],
                stats: [("rejected_unknown_source", 7u64), ("buckets_claimed", 3)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
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
            for seg in ["0", "1"] {
                assert!(
                    text.lines()
                        .any(|l| l.starts_with(&format!("synshare_{family}{{"))
                            && l.contains(&format!("segment=\"{seg}\""))),
                    "{family} segment {seg}"
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(l.to_owned()), "declared twice: {l}");
        }
        assert!(text.contains("synshare_availability_ratio{node=\"node1\",kind=\"smoothed\"} 0.500000"));
    }

    #[test]
    fn the_dashboard_and_the_alerts_use_only_metrics_that_exist() {
        let text = render(&sample());
        let families: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for (file, content) in [
            ("alerts", include_str!("../deploy/prometheus/synshare-alerts.yml")),
            ("dashboard", include_str!("../deploy/grafana/synshare-dashboard.json")),
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
}
