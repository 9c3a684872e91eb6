//! Rates for `synshare status --watch`: per-second differences of a node's
//! counters between two status replies, timed by the node's own uptime
//! (not the client's clock, which also counts the socket's round trip).

use crate::exchange::ExchangeStatus;
use crate::status::NodeStatus;
use serde::Serialize;
use std::collections::BTreeMap;

/// What a status reply holds: a node's, or a coordinator's exchange.
pub enum Reply {
    /// A node.
    Node(Box<NodeStatus>),
    /// A coordinator.
    Coordinator(Box<ExchangeStatus>),
}

/// Every monotonic counter of a reply by name, with the clock they were
/// read at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// The node's uptime, seconds (a coordinator reports none).
    pub uptime_s: Option<f64>,
    /// Counter name → value.
    pub counters: BTreeMap<String, u64>,
}

/// The reading of a reply.
pub fn counters(reply: &Reply) -> Reading {
    let mut c = BTreeMap::new();
    match reply {
        Reply::Node(s) => {
            for seg in std::iter::once(s.as_ref()).chain(s.segments.iter()) {
                let at = if seg.segment == 0 {
                    String::new()
                } else {
                    format!("segment{}.", seg.segment)
                };
                for (port, p) in [("wire", &seg.wire.stats), ("kernel", &seg.exception.stats)] {
                    c.insert(format!("{at}{port}.rx_packets"), p.ipackets);
                    c.insert(format!("{at}{port}.tx_packets"), p.opackets);
                    c.insert(format!("{at}{port}.rx_bytes"), p.ibytes);
                    c.insert(format!("{at}{port}.tx_bytes"), p.obytes);
                    c.insert(format!("{at}{port}.rx_missed"), p.imissed);
                }
                for (k, v) in seg.totals() {
                    c.insert(format!("{at}frames.{k}"), v);
                }
                if let Some(x) = &seg.exchange {
                    for (k, v) in x.stats.all() {
                        c.insert(format!("{at}exchange.{k}"), v);
                    }
                }
            }
            Reading {
                uptime_s: Some(s.uptime_s),
                counters: c,
            }
        }
        Reply::Coordinator(x) => {
            for (k, v) in x.stats.all() {
                c.insert(format!("exchange.{k}"), v);
            }
            Reading {
                uptime_s: None,
                counters: c,
            }
        }
    }
}

/// Per-second rates between two readings.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Rates {
    /// Seconds between the readings.
    pub interval_s: f64,
    /// Counter name → per second (every counter of the later reading).
    pub per_s: BTreeMap<String, f64>,
}

/// Rates from `before` to `after` (as [`counters`] gives them), over
/// `elapsed_s` by the client's clock when the node gives no uptime. None
/// when the node restarted in between (its uptime or a counter went back).
pub fn rates(before: &Reading, after: &Reading, elapsed_s: f64) -> Option<Rates> {
    let dt = match (before.uptime_s, after.uptime_s) {
        (Some(t0), Some(t1)) => t1 - t0,
        _ => elapsed_s,
    };
    if !dt.is_finite() || dt <= 0.0 {
        return None;
    }
    let mut per_s = BTreeMap::new();
    for (k, v1) in &after.counters {
        let v0 = before.counters.get(k).copied().unwrap_or(0);
        if *v1 < v0 {
            return None;
        }
        per_s.insert(k.clone(), (v1 - v0) as f64 / dt);
    }
    Some(Rates { interval_s: dt, per_s })
}

/// The rates as text: ports first, then the counters that moved.
pub fn summary(r: &Rates) -> String {
    let get = |k: &str| r.per_s.get(k).copied().unwrap_or(0.0);
    let mut out = format!("  rates over {:.2} s:\n", r.interval_s);
    let prefixes: Vec<String> = r
        .per_s
        .keys()
        .filter_map(|k| k.strip_suffix("wire.rx_packets").map(str::to_owned))
        .collect();
    for at in &prefixes {
        for port in ["wire", "kernel"] {
            out += &format!(
                "    {at}{port:<6} rx {:>10.0} pkt/s {:>9.1} Mbit/s  tx {:>10.0} pkt/s {:>9.1} Mbit/s  missed {:.0}/s\n",
                get(&format!("{at}{port}.rx_packets")),
                get(&format!("{at}{port}.rx_bytes")) * 8.0 / 1e6,
                get(&format!("{at}{port}.tx_packets")),
                get(&format!("{at}{port}.tx_bytes")) * 8.0 / 1e6,
                get(&format!("{at}{port}.rx_missed")),
            );
        }
    }
    for (k, v) in &r.per_s {
        let port = k.contains("wire.") || k.contains("kernel.");
        if !port && *v > 0.0 {
            out += &format!("    {k:<40} {v:>12.1}/s\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{PortStatus, WorkerStatus};
    use synshare_dpdk::PortStats;

    fn node(uptime_s: f64, rx: u64, syn: u64) -> Reply {
        Reply::Node(Box::new(NodeStatus {
            uptime_s,
            wire: PortStatus {
                stats: PortStats {
                    ipackets: rx,
                    ibytes: rx * 100,
                    ..PortStats::default()
                },
                ..PortStatus::default()
            },
            workers: vec![WorkerStatus {
                counters: [("kernel_vip_syn".to_owned(), syn)].into(),
                ..WorkerStatus::default()
            }],
            ..NodeStatus::default()
        }))
    }

    #[test]
    fn rates_are_counter_differences_over_the_nodes_uptime() {
        let a = counters(&node(10.0, 1_000, 50));
        let b = counters(&node(12.0, 21_000, 250));
        // The client's clock (5 s) is not used when the node gives its own.
        let r = rates(&a, &b, 5.0).unwrap();
        assert_eq!(r.interval_s, 2.0);
        assert_eq!(r.per_s["wire.rx_packets"], 10_000.0);
        assert_eq!(r.per_s["wire.rx_bytes"], 1_000_000.0);
        assert_eq!(r.per_s["frames.kernel_vip_syn"], 100.0);
        let text = summary(&r);
        assert!(text.contains("10000 pkt/s") && text.contains("8.0 Mbit/s"), "{text}");
        assert!(
            text.contains("frames.kernel_vip_syn") && text.contains("100.0/s"),
            "{text}"
        );
    }

    #[test]
    fn a_restart_in_between_gives_no_rates() {
        let a = counters(&node(100.0, 1_000, 50));
        assert!(rates(&a, &counters(&node(1.0, 10, 0)), 1.0).is_none());
        assert!(rates(&a, &counters(&node(101.0, 10, 0)), 1.0).is_none());
        assert!(rates(&a, &a, 1.0).is_none());
    }

    #[test]
    fn a_counter_that_first_appears_counts_from_zero() {
        let a = counters(&node(1.0, 0, 0));
        let b = counters(&node(2.0, 0, 7));
        assert_eq!(a.counters.get("frames.kernel_vip_syn").copied().unwrap_or(0), 0);
        assert_eq!(rates(&a, &b, 1.0).unwrap().per_s["frames.kernel_vip_syn"], 7.0);
    }
}
