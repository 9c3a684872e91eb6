//! The human-readable summary of a node's or a coordinator's status.

use super::NodeStatus;
use crate::exchange::ExchangeStatus;

/// A human-readable summary.
pub fn summary(s: &NodeStatus) -> String {
    let mut out = format!(
        "node {} (id {}{}) up {:.0}s, {}, hugepages {}, table epoch {} ({} buckets, {})\n",
        s.name,
        s.id,
        if s.segment > 0 || !s.segments.is_empty() {
            format!(", segment {}", s.segment)
        } else {
            String::new()
        },
        s.uptime_s,
        s.dpdk,
        s.hugepages,
        s.epoch,
        s.buckets,
        s.layout
    );
    for m in &s.members {
        out += &format!(
            "  member {:>3} weight {:>6.2} buckets {:>6} share {:>5.1}%{}\n",
            m.id,
            m.weight,
            m.buckets,
            m.share_pct,
            if m.id == s.id { "  (this node)" } else { "" }
        );
    }
    for p in [&s.wire, &s.exception] {
        out += &format!(
            "  port {:<16} {:<12} rx {:>10} tx {:>10} missed {} errors {}/{} nombuf {}\n",
            p.name,
            p.driver,
            p.stats.ipackets,
            p.stats.opackets,
            p.stats.imissed,
            p.stats.ierrors,
            p.stats.oerrors,
            p.stats.rx_nombuf
        );
    }
    if let Some(a) = &s.availability {
        out += &format!(
            "  availability {:.3} (raw {:.3}) of capacity {:.2}: cpu {} service {} connections {}{}\n",
            a.smoothed,
            a.raw,
            a.capacity,
            a.cpu_busy.map_or("-".into(), |b| format!("{:.0}%", b * 100.0)),
            if a.service_up { "up" } else { "DOWN" },
            a.connections,
            if a.draining { " DRAINING" } else { "" }
        );
    }
    if let Some(x) = &s.exchange {
        out += &exchange_summary(x);
    }
    let flows: u64 = s.workers.iter().map(|w| w.flows).sum();
    let cap: u64 = s.workers.iter().map(|w| w.flow_capacity).sum();
    out += &format!("  flows {flows} of {cap}\n");
    for (k, v) in s.totals() {
        out += &format!("  {k:<28} {v}\n");
    }
    for seg in &s.segments {
        out += &summary(seg);
    }
    out
}

/// The exchange's part of the summary.
pub fn exchange_summary(x: &ExchangeStatus) -> String {
    let mut out = String::new();
    out += &format!(
        "  exchange: segment {} epoch {} (by {}) leader {} holding {} buckets, {}, voters {:?}\n",
        x.segment,
        x.epoch,
        x.epoch_creator,
        x.leader,
        x.held,
        match x.lease_ms {
            Some(ms) => format!("lease {ms} ms"),
            None => "FENCED (no lease: no majority heard both ways)".to_owned(),
        },
        x.voters
    );
    for p in &x.peers {
        out += &format!(
            "    peer {:>3}{}{} heard {} ago, epoch {}, holds {}, weight {:.3}{}\n",
            p.id,
            if p.coordinator { " (coordinator)" } else { "" },
            if p.live { " live" } else { " NOT LIVE" },
            p.heard_ms_ago.map_or("never".to_owned(), |ms| format!("{ms:>4} ms")),
            p.epoch,
            p.held,
            p.weight,
            if p.draining { " draining" } else { "" }
        );
    }
    let mut nonzero: Vec<(&str, u64)> = x.stats.all().into_iter().filter(|(_, v)| *v > 0).collect();
    nonzero.sort_unstable();
    let nonzero: Vec<String> = nonzero.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out += &format!("    heartbeats: {}\n", nonzero.join(" "));
    out
}
