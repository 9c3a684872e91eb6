//! One segment of a node: its wire port and exception TAP, its decisions,
//! its shares (static or from its exchange) and its workers.

use super::eal::wire_port_name;
use super::{static_table, static_view, Sharing};
use crate::config::{ExchangeConfig, NodeConfig, SegmentView};
use crate::exchange::{self, AgentParams, WorkerLink};
use crate::kernel_flows::{self, KernelFlow};
use crate::membership::{self, Membership};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use synshare_control::layout::MemberId;
use synshare_control::wire::Role;
use synshare_dataplane::classify::{Classifier, NodeAddresses};
use synshare_dataplane::counters::WorkerStats;
use synshare_dataplane::exchange_guard::ExchangeSources;
use synshare_dataplane::flow::{FlowState, FlowTimeouts};
use synshare_dataplane::hash::SYMMETRIC_KEY;
use synshare_dataplane::ownership::{BucketState, OwnershipView};
use synshare_dataplane::packet::{Addr, Mac};
use synshare_dataplane::presence::FlowPresence;
use synshare_dataplane::publish::{Lease, Publisher, Subscriber};
use synshare_dpdk::worker::{NodeFlows, Worker, WorkerTuning};
use synshare_dpdk::{self as dpdk, Eal, Mempool, Port, PortConfig};
use tracing::{info, warn};

/// One segment of a running node: its ports, decisions, shares, workers.
pub(super) struct Segment {
    pub index: usize,
    pub wire_name: String,
    pub wire: Port,
    pub tap: Port,
    pub node_mac: Mac,
    pub sharing: Sharing,
    pub stats: Vec<Arc<WorkerStats>>,
    /// Multicast mode: the cluster group membership on the TAP.
    pub membership: Option<Membership>,
}

/// What every segment's workers are given, built once from the
/// configuration.
pub(super) struct WorkerSettings {
    /// Workers per segment (and queues per port).
    pub queues: u16,
    pub flow_capacity: usize,
    pub timeouts: FlowTimeouts,
    pub tuning: WorkerTuning,
    /// Stops every worker of the node.
    pub stop: Arc<AtomicBool>,
}

impl WorkerSettings {
    pub fn new(c: &NodeConfig) -> WorkerSettings {
        WorkerSettings {
            queues: c.workers,
            flow_capacity: c.flow_table.capacity as usize,
            timeouts: FlowTimeouts {
                half_open_ms: c.flow_table.half_open_ms,
                established_ms: c.flow_table.established_s.saturating_mul(1000),
                closing_ms: c.flow_table.closing_ms,
                provisional_ms: c.flow_table.provisional_ms,
                grace_ms: c.flow_table.grace_ms,
            },
            tuning: WorkerTuning {
                idle_polls: c.idle.empty_polls,
                idle_sleep_us: c.idle.sleep_us,
                ..WorkerTuning::default()
            },
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What every segment's bring-up reads.
pub(super) struct BringUp<'a> {
    pub eal: &'a Eal,
    pub pool: &'a Arc<Mempool>,
    pub config: &'a NodeConfig,
    pub workers: &'a WorkerSettings,
    /// The weight an exchange starts with.
    pub initial_weight: u32,
}

/// A segment's two ports.
struct Ports {
    wire_name: String,
    wire: Port,
    tap: Port,
    node_mac: Mac,
    kernel_mac: Mac,
}

/// A segment's shares.
struct Shares {
    sharing: Sharing,
    workers: WorkerShares,
}

/// What a segment's workers read of its shares, and write.
struct WorkerShares {
    /// One ownership view per worker.
    subscribers: Vec<Subscriber>,
    lease: Lease,
    /// Each worker tells the exchange which buckets it holds flows in.
    presence: Vec<Arc<FlowPresence>>,
}

impl Segment {
    /// Brings segment `v` up: its ports, TAP, decisions and shares (an
    /// exchange starts here), and its workers, to be launched.
    pub fn start(up: &BringUp, v: &SegmentView) -> Result<(Segment, Vec<Worker>), String> {
        let ports = Ports::open(up, v)?;
        if !v.exception.addresses.is_empty() {
            setup_tap(&v.exception.iface, &v.exception.addresses)
                .map_err(|e| format!("segment {} exception port {}: {e}", v.index, v.exception.iface))?;
            info!(segment = v.index, tap = %v.exception.iface, addresses = ?v.exception.addresses, "TAP set up");
        }
        let membership = cluster_membership(v)?;
        // The exchange binds the node's own address unless told otherwise.
        let exchange = v.exchange.map(|x| ExchangeConfig {
            bind: Some(x.bind_addr(&v.exception.own_ips())),
            ..x.clone()
        });
        let (classifier, sources) = classifier(v, &ports, exchange.as_ref());
        let shares = Shares::start(up, v, exchange.as_ref(), sources)?;
        let kernel_flows = adopted_flows(v, &classifier);
        let (stats, workers) = workers(up.workers, &ports, &classifier, shares.workers, &kernel_flows);
        let segment = Segment {
            index: v.index,
            wire_name: ports.wire_name,
            wire: ports.wire,
            tap: ports.tap,
            node_mac: ports.node_mac,
            sharing: shares.sharing,
            stats,
            membership,
        };
        Ok((segment, workers))
    }

    /// The flows its workers hold.
    pub fn flows(&self) -> u64 {
        self.stats.iter().map(|s| s.flows.load(Ordering::Relaxed)).sum()
    }

    /// Multicast mode: in the cluster group while holding buckets or
    /// serving flows of the segment.
    pub fn follow_membership(&mut self) {
        let Some(m) = self.membership.as_mut() else { return };
        let held = match &self.sharing {
            Sharing::Static { view, .. } => view.count(BucketState::Settled) as u32,
            Sharing::Dynamic(h) => h.status().held,
            Sharing::Stopped => 0,
        };
        let seg_flows: u64 = self.stats.iter().map(|s| s.flows.load(Ordering::Relaxed)).sum();
        let want = held > 0 || seg_flows > 0;
        if want != m.joined() {
            match m.set(want) {
                Ok(()) => info!(
                    segment = self.index,
                    held,
                    flows = seg_flows,
                    joined = want,
                    "cluster group membership"
                ),
                Err(e) => warn!(segment = self.index, error = %e, "cluster group membership"),
            }
        }
    }
}

impl Ports {
    /// Starts the wire port and creates and starts the exception TAP.
    fn open(up: &BringUp, v: &SegmentView) -> Result<Ports, String> {
        let queues = up.workers.queues;
        let wire_name = wire_port_name(&v.wire.device);
        let wire_id = Port::find(&wire_name).map_err(|e| format!("segment {} wire port: {e}", v.index))?;
        let wire_config = PortConfig {
            rx_queues: queues,
            tx_queues: queues,
            rx_desc: v.wire.rx_desc,
            tx_desc: v.wire.tx_desc,
            rss_key: v.wire.rss.then_some(SYMMETRIC_KEY),
            promiscuous: true,
        };
        let wire = Port::start(wire_id, &wire_name, &wire_config, Arc::clone(up.pool))
            .map_err(|e| format!("segment {} wire port: {e}", v.index))?;
        let node_mac = wire.mac().map_err(|e| e.to_string())?;
        let kernel_mac = v.exception.mac.unwrap_or(node_mac);
        let tap_name = format!("net_tap{}", v.index);
        let tap_error = |e: dpdk::DpdkError| format!("segment {} exception port: {e}", v.index);
        up.eal
            .probe(&format!("{tap_name},iface={},mac={kernel_mac}", v.exception.iface))
            .map_err(tap_error)?;
        let tap_id = Port::find(&tap_name).map_err(tap_error)?;
        let tap_config = PortConfig {
            rx_queues: queues,
            tx_queues: queues,
            rx_desc: 512,
            tx_desc: 512,
            rss_key: None,
            promiscuous: false,
        };
        let tap = Port::start(tap_id, &tap_name, &tap_config, Arc::clone(up.pool)).map_err(tap_error)?;
        info!(
            segment = v.index, wire = %wire_name, driver = %wire.driver(), mac = %node_mac, rss = wire.rss_hash(),
            tap = %v.exception.iface, kernel_mac = %kernel_mac, "ports up"
        );
        Ok(Ports {
            wire_name,
            wire,
            tap,
            node_mac,
            kernel_mac,
        })
    }
}

/// Sets the kernel's side of the TAP up, as the node re-creates it on every
/// start: ARP answers and announcements only for its own addresses (the
/// VIPs are the dataplane's to answer), no duplicate address detection
/// (the cluster's addresses are configured, not discovered), the
/// addresses, checksum offload off (the wire computes no checksum), link
/// up. iproute2 and ethtool do the work: they are what an operator would
/// run by hand, and their errors say what is wrong.
fn setup_tap(iface: &str, addresses: &[String]) -> Result<(), String> {
    let sysctl = |path: String, value: &str| std::fs::write(&path, value).map_err(|e| format!("{path}: {e}"));
    sysctl(format!("/proc/sys/net/ipv4/conf/{iface}/arp_ignore"), "1")?;
    sysctl(format!("/proc/sys/net/ipv4/conf/{iface}/arp_announce"), "2")?;
    // IPv6 may be off on the host: then only the IPv4 settings apply.
    let _ = sysctl(format!("/proc/sys/net/ipv6/conf/{iface}/accept_dad"), "0");
    let _ = sysctl(format!("/proc/sys/net/ipv6/conf/{iface}/dad_transmits"), "0");
    let run = |args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| format!("{}: {e}", args[0]))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    for a in addresses {
        if a.contains(':') {
            run(&["ip", "addr", "replace", a, "dev", iface, "nodad"])?;
        } else {
            run(&["ip", "addr", "replace", a, "dev", iface])?;
        }
    }
    run(&["ip", "link", "set", iface, "up"])?;
    run(&["ethtool", "-K", iface, "tx", "off"])
}

/// Multicast mode (a multicast cluster MAC): the segment's cluster group
/// membership, joined while serving.
fn cluster_membership(v: &SegmentView) -> Result<Option<Membership>, String> {
    let groups =
        membership::groups(v.cluster_mac, v.vips).map_err(|e| format!("segment {} cluster_mac: {e}", v.index))?;
    Ok(groups.map(|g| {
        info!(segment = v.index, group = %g.v4, group6 = %g.v6, "multicast cluster MAC: joining the cluster group while serving");
        Membership::new(g, &v.exception.iface, &v.exception.addresses)
    }))
}

/// The segment's decisions, and the sources its exchange port takes
/// heartbeats from.
fn classifier(v: &SegmentView, ports: &Ports, exchange: Option<&ExchangeConfig>) -> (Arc<Classifier>, ExchangeSources) {
    let mut classifier = Classifier::new(NodeAddresses {
        node_mac: ports.node_mac,
        kernel_mac: ports.kernel_mac,
        cluster_mac: v.cluster_mac,
        vips: v.vips.iter().map(|x| x.dataplane()).collect(),
    });
    // The exchange's port only from its members, dropped in the
    // dataplane otherwise: a flood cannot crowd the heartbeats out of
    // the exception path. The exchange republishes the set when its
    // member directory changes (the configuration's are the first).
    let sources = ExchangeSources::new();
    if let Some(x) = exchange {
        let bind = x.bind_addr(&[]);
        let members: Vec<Addr> = x.addresses().values().map(|a| Addr::from(a.ip())).collect();
        info!(
            segment = v.index,
            port = bind.port(),
            members = members.len(),
            "exchange port guarded"
        );
        sources.set(&members);
        classifier.guard_exchange(bind.port(), sources.clone());
    }
    (Arc::new(classifier), sources)
}

impl Shares {
    /// Static shares: the configured table, held since start, for ever.
    /// With an exchange: nothing until the segment's table gives this node
    /// buckets, and only under a lease.
    fn start(
        up: &BringUp,
        v: &SegmentView,
        exchange: Option<&ExchangeConfig>,
        sources: ExchangeSources,
    ) -> Result<Shares, String> {
        let me = MemberId(up.config.id);
        let workers = usize::from(up.workers.queues);
        let presence: Vec<Arc<FlowPresence>> = (0..up.workers.queues)
            .map(|_| Arc::new(FlowPresence::new(v.sharing.buckets)))
            .collect();
        let Some(x) = exchange else {
            let table = static_table(v);
            let view = static_view(&table, me, 1);
            info!(segment = v.index, layout = ?v.sharing.layout, buckets = table.len(),
                  owned = view.count(BucketState::Settled), members = v.sharing.members.len(), "static bucket table");
            let (_, subscribers) = Publisher::new(workers, &view);
            let sharing = Sharing::Static { table, view };
            let workers = WorkerShares {
                subscribers,
                lease: Lease::forever(),
                presence,
            };
            return Ok(Shares { sharing, workers });
        };
        let lease = Lease::none();
        let (publisher, subscribers) = Publisher::new(workers, &OwnershipView::new(v.sharing.buckets, 0));
        let params = AgentParams {
            role: Role::Node,
            buckets: v.sharing.buckets,
            layout: v.sharing.layout,
            drain_ms: u64::from(v.sharing.drain_ms),
            name: up.config.name.clone(),
            rules_digest: v.rules_digest(),
            pins: v.pins(),
        };
        let link = WorkerLink {
            publisher,
            lease: lease.clone(),
            tsc_per_ms: (dpdk::tsc_hz() / 1000).max(1),
            tsc: dpdk::tsc,
            presence: presence.clone(),
            sources,
        };
        let handle = exchange::start(x, me, params, up.initial_weight, Some(link))?;
        info!(segment = v.index, bind = %x.bind_addr(&[]), peers = ?x.peers, coordinator = ?x.coordinator,
              segment_id = x.segment, interval_ms = x.interval_ms, timeout_ms = x.timeout_ms, "availability exchange");
        let workers = WorkerShares {
            subscribers,
            lease,
            presence,
        };
        Ok(Shares {
            sharing: Sharing::Dynamic(handle),
            workers,
        })
    }
}

/// The connections the kernel still holds for this segment's VIPs (a
/// restart): every worker knows them from the start, so their packets are
/// accepted although this node holds no bucket yet.
fn adopted_flows(v: &SegmentView, classifier: &Classifier) -> Vec<KernelFlow> {
    let flows = match kernel_flows::connections_to(|vip, port| classifier.serves_tcp(Addr::from(vip), port)) {
        Ok(f) => f,
        Err(e) => {
            warn!(segment = v.index, error = %e, "cannot read the kernel's connections: none adopted");
            Vec::new()
        }
    };
    if !flows.is_empty() {
        info!(
            segment = v.index,
            connections = flows.len(),
            "adopting the kernel's connections to the VIPs"
        );
    }
    flows
}

/// The segment's workers, one per queue, each with the kernel's flows,
/// and the counters they publish.
fn workers(
    settings: &WorkerSettings,
    ports: &Ports,
    classifier: &Arc<Classifier>,
    shares: WorkerShares,
    kernel_flows: &[KernelFlow],
) -> (Vec<Arc<WorkerStats>>, Vec<Worker>) {
    let per_ms = (dpdk::tsc_hz() / 1000).max(1);
    let mut stats = Vec::new();
    let mut workers = Vec::new();
    for (i, sub) in shares.subscribers.into_iter().enumerate() {
        let mut flows = NodeFlows::new_in(settings.flow_capacity, settings.timeouts);
        let now_ms = (dpdk::tsc() / per_ms) as u32;
        for f in kernel_flows {
            // With the value of the port's rule, as the wire places it.
            let flow = classifier.flow_ref(Addr::from(f.client), f.client_port, Addr::from(f.vip), f.vip_port);
            flows.insert(flow, FlowState::Established, now_ms);
        }
        flows.share_presence(Arc::clone(&shares.presence[i]));
        let q = i as u16;
        let s = Arc::new(WorkerStats::default());
        stats.push(Arc::clone(&s));
        workers.push(Worker {
            index: q,
            classifier: Arc::clone(classifier),
            view: sub,
            lease: shares.lease.clone(),
            flows,
            wire_rx: ports.wire.rx_queue(q),
            wire_tx: ports.wire.tx_queue(q),
            kernel_rx: ports.tap.rx_queue(q),
            kernel_tx: ports.tap.tx_queue(q),
            use_rss: ports.wire.rss_hash(),
            stats: s,
            stop: Arc::clone(&settings.stop),
            tuning: settings.tuning.clone(),
        });
    }
    (stats, workers)
}
