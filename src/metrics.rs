//! Prometheus text exposition of a node's status, served over plain HTTP on
//! a local address (`metrics` in the configuration).

use crate::status::NodeStatus;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP synshare_{name} {help}\n# TYPE synshare_{name} {kind}");
}

/// The exposition of `s`.
pub fn render(s: &NodeStatus) -> String {
    let mut o = String::with_capacity(8192);
    let node = &s.name;
    metric(
        &mut o,
        "port_packets_total",
        "counter",
        "Packets through a port, as its driver counts them.",
    );
    for (port, p) in [("wire", &s.wire), ("exception", &s.exception)] {
        let _ = writeln!(
            o,
            "synshare_port_packets_total{{node=\"{node}\",port=\"{port}\",dir=\"rx\"}} {}",
            p.ipackets
        );
        let _ = writeln!(
            o,
            "synshare_port_packets_total{{node=\"{node}\",port=\"{port}\",dir=\"tx\"}} {}",
            p.opackets
        );
    }
    metric(
        &mut o,
        "port_dropped_total",
        "counter",
        "Packets a port dropped (RX ring full, errors, no mbuf).",
    );
    for (port, p) in [("wire", &s.wire), ("exception", &s.exception)] {
        for (why, v) in [
            ("missed", p.imissed),
            ("rx_error", p.ierrors),
            ("tx_error", p.oerrors),
            ("no_mbuf", p.rx_nombuf),
        ] {
            let _ = writeln!(
                o,
                "synshare_port_dropped_total{{node=\"{node}\",port=\"{port}\",reason=\"{why}\"}} {v}"
            );
        }
    }
    metric(
        &mut o,
        "worker_packets_total",
        "counter",
        "Packets a worker received, by source.",
    );
    for w in &s.workers {
        let i = w.index;
        let _ = writeln!(
            o,
            "synshare_worker_packets_total{{node=\"{node}\",worker=\"{i}\",source=\"wire\"}} {}",
            w.wire_rx
        );
        let _ = writeln!(
            o,
            "synshare_worker_packets_total{{node=\"{node}\",worker=\"{i}\",source=\"kernel\"}} {}",
            w.kernel_rx
        );
    }
    metric(
        &mut o,
        "frames_total",
        "counter",
        "Frames by outcome: accepted to the kernel, answered, or dropped with a reason.",
    );
    for w in &s.workers {
        for (k, v) in &w.counters {
            let _ = writeln!(
                o,
                "synshare_frames_total{{node=\"{node}\",worker=\"{}\",outcome=\"{k}\"}} {v}",
                w.index
            );
        }
    }
    metric(&mut o, "flows", "gauge", "Entries in a worker's flow table.");
    for w in &s.workers {
        let _ = writeln!(
            o,
            "synshare_flows{{node=\"{node}\",worker=\"{}\"}} {}",
            w.index, w.flows
        );
    }
    metric(&mut o, "flow_capacity", "gauge", "Capacity of a worker's flow table.");
    for w in &s.workers {
        let _ = writeln!(
            o,
            "synshare_flow_capacity{{node=\"{node}\",worker=\"{}\"}} {}",
            w.index, w.flow_capacity
        );
    }
    metric(
        &mut o,
        "flow_insert_failed_total",
        "counter",
        "Flows not recorded: their group held only established flows.",
    );
    for w in &s.workers {
        let _ = writeln!(
            o,
            "synshare_flow_insert_failed_total{{node=\"{node}\",worker=\"{}\"}} {}",
            w.index, w.flow_insert_failed
        );
    }
    metric(
        &mut o,
        "flow_evicted_total",
        "counter",
        "Half-open flows evicted under pressure.",
    );
    for w in &s.workers {
        let _ = writeln!(
            o,
            "synshare_flow_evicted_total{{node=\"{node}\",worker=\"{}\"}} {}",
            w.index, w.flow_evicted
        );
    }
    metric(&mut o, "table_epoch", "gauge", "Epoch of the bucket table in force.");
    let _ = writeln!(o, "synshare_table_epoch{{node=\"{node}\"}} {}", s.epoch);
    metric(&mut o, "held_buckets", "gauge", "Buckets this node holds.");
    let _ = writeln!(o, "synshare_held_buckets{{node=\"{node}\"}} {}", s.held);
    metric(
        &mut o,
        "member_share_ratio",
        "gauge",
        "Each member's share of the buckets in the table in force.",
    );
    for m in &s.members {
        let _ = writeln!(
            o,
            "synshare_member_share_ratio{{node=\"{node}\",member=\"{}\"}} {:.6}",
            m.id,
            m.share_pct / 100.0
        );
    }
    metric(
        &mut o,
        "member_weight",
        "gauge",
        "Each member's weight in the table in force.",
    );
    for m in &s.members {
        let _ = writeln!(
            o,
            "synshare_member_weight{{node=\"{node}\",member=\"{}\"}} {:.6}",
            m.id, m.weight
        );
    }
    if let Some(a) = &s.availability {
        metric(
            &mut o,
            "availability",
            "gauge",
            "Availability: raw sample, smoothed (advertised), configured capacity.",
        );
        for (k, v) in [("raw", a.raw), ("smoothed", a.smoothed), ("capacity", a.capacity)] {
            let _ = writeln!(o, "synshare_availability{{node=\"{node}\",kind=\"{k}\"}} {v:.6}");
        }
        metric(
            &mut o,
            "availability_input",
            "gauge",
            "Inputs of the availability formula.",
        );
        let _ = writeln!(
            o,
            "synshare_availability_input{{node=\"{node}\",input=\"cpu_busy\"}} {:.6}",
            a.cpu_busy.unwrap_or(0.0)
        );
        let _ = writeln!(
            o,
            "synshare_availability_input{{node=\"{node}\",input=\"connections\"}} {}",
            a.connections
        );
        let _ = writeln!(
            o,
            "synshare_availability_input{{node=\"{node}\",input=\"service_up\"}} {}",
            u8::from(a.service_up)
        );
        let _ = writeln!(
            o,
            "synshare_availability_input{{node=\"{node}\",input=\"draining\"}} {}",
            u8::from(a.draining)
        );
        if let Some(t) = a.temperature_c {
            let _ = writeln!(
                o,
                "synshare_availability_input{{node=\"{node}\",input=\"temperature_c\"}} {t:.3}"
            );
        }
        if let Some(p) = a.power_w {
            let _ = writeln!(
                o,
                "synshare_availability_input{{node=\"{node}\",input=\"power_w\"}} {p:.3}"
            );
        }
    }
    if let Some(x) = &s.exchange {
        metric(
            &mut o,
            "heartbeats_total",
            "counter",
            "Heartbeats sent, received, accepted and rejected by reason; hand-offs and failovers.",
        );
        for (k, v) in &x.stats {
            let _ = writeln!(o, "synshare_heartbeats_total{{node=\"{node}\",event=\"{k}\"}} {v}");
        }
        metric(
            &mut o,
            "peer_heard_seconds",
            "gauge",
            "Seconds since each live peer was last heard.",
        );
        for p in &x.peers {
            if let Some(ms) = p.heard_ms_ago {
                let _ = writeln!(
                    o,
                    "synshare_peer_heard_seconds{{node=\"{node}\",peer=\"{}\"}} {:.3}",
                    p.id,
                    ms as f64 / 1000.0
                );
            }
        }
        metric(
            &mut o,
            "peer_up",
            "gauge",
            "1 while a configured peer is heard both ways.",
        );
        for p in &x.peers {
            let _ = writeln!(
                o,
                "synshare_peer_up{{node=\"{node}\",peer=\"{}\"}} {}",
                p.id,
                u8::from(p.live)
            );
        }
        metric(
            &mut o,
            "lease_seconds",
            "gauge",
            "Seconds of lease left; 0: fenced (no majority heard), taking no new connections.",
        );
        let _ = writeln!(
            o,
            "synshare_lease_seconds{{node=\"{node}\"}} {:.3}",
            x.lease_ms.unwrap_or(0) as f64 / 1000.0
        );
    }
    metric(&mut o, "uptime_seconds", "gauge", "Seconds since the node started.");
    let _ = writeln!(o, "synshare_uptime_seconds{{node=\"{node}\"}} {:.3}", s.uptime_s);
    o
}

/// Answers every waiting scrape with the exposition `render` gives.
pub fn serve(listener: &TcpListener, mut render: impl FnMut() -> String) {
    while let Ok((mut stream, _)) = listener.accept() {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        let mut req = [0u8; 1024];
        let n = stream.read(&mut req).unwrap_or(0);
        let ok = req[..n].starts_with(b"GET /metrics") || req[..n].starts_with(b"GET / ");
        let body = if ok {
            render()
        } else {
            "not found: GET /metrics\n".to_owned()
        };
        let status = if ok { "200 OK" } else { "404 Not Found" };
        let _ = write!(
            stream,
            "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}
