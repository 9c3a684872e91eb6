//! `synshare node`: one server's dataplane and control core.
//!
//! Start-up: EAL, the mbuf pool, the wire port (promiscuous: the switch
//! floods the cluster MAC), the exception TAP created with the wire port's
//! MAC, the bucket table, then one worker per worker lcore. The main lcore
//! stays as the control core: it publishes tables, answers the status
//! socket and stops everything on SIGINT/SIGTERM.

use crate::config::{CpuSource, ExchangeConfig, Hugepages, NodeConfig};
use crate::exchange::{self, AgentParams, Command, ExchangeHandle, WorkerLink};
use crate::kernel_flows;
use crate::measure::{self, Measured};
use crate::membership::{self, Membership};
use crate::status::{self, NodeStatus};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synshare_control::availability::{Formula, Inputs, Smoother};
use synshare_control::layout::{MemberId, Table, Weighted};
use synshare_control::wire::Role;
use synshare_dataplane::classify::{Classifier, NodeAddresses};
use synshare_dataplane::counters::WorkerStats;
use synshare_dataplane::flow::{FlowState, FlowTimeouts};
use synshare_dataplane::hash::{Bucket, SYMMETRIC_KEY};
use synshare_dataplane::ownership::{BucketState, OwnershipView};
use synshare_dataplane::packet::Addr;
use synshare_dataplane::presence::FlowPresence;
use synshare_dataplane::publish::{Lease, Publisher};
use synshare_dpdk::worker::{NodeFlows, Worker, WorkerTuning};
use synshare_dpdk::{self as dpdk, Eal, Mempool, Port, PortConfig};
use tracing::{info, warn};

const HUGEPAGE_DIR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";

/// True when enough free 2 MiB hugepages and a hugetlbfs mount exist.
fn hugepages_available(memory_mb: u32) -> bool {
    let free: u64 = std::fs::read_to_string(format!("{HUGEPAGE_DIR}/free_hugepages"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs")))
        .unwrap_or(false);
    mounted && free * 2 >= u64::from(memory_mb)
}

/// Whether `device` names a virtual device (as opposed to a PCI address).
fn is_vdev(device: &str) -> bool {
    device.starts_with("net_")
}

/// The DPDK port name of the wire device.
fn wire_port_name(device: &str) -> String {
    let first = device.split(',').next().unwrap_or(device);
    if is_vdev(device) || first.matches(':').count() >= 2 {
        first.to_owned()
    } else {
        format!("0000:{first}")
    }
}

/// EAL's arguments for this node, and whether it runs on hugepages.
pub fn eal_args(c: &NodeConfig) -> (Vec<String>, bool) {
    // "0,1" or "0-3" is EAL's -l; a mapping of lcores to CPUs such as
    // "0@0,1@1,2@1" (more lcores than CPUs) is EAL's --lcores.
    let lcores_flag = if c.eal.lcores.contains('@') { "--lcores" } else { "-l" };
    let mut args: Vec<String> = vec![
        lcores_flag.into(),
        c.eal.lcores.clone(),
        "--file-prefix".into(),
        c.eal.file_prefix.clone(),
    ];
    let huge = match c.eal.hugepages {
        Hugepages::On => true,
        Hugepages::Off => false,
        Hugepages::Auto => hugepages_available(c.eal.memory_mb),
    };
    if let Some(main) = c.eal.main_lcore {
        args.extend(["--main-lcore".into(), main.to_string()]);
    }
    if huge {
        args.extend(["--in-memory".into(), "-m".into(), c.eal.memory_mb.to_string()]);
    } else {
        args.extend(["--no-huge".into(), "-m".into(), c.eal.memory_mb.to_string()]);
    }
    let segments = c.all_segments();
    if segments.iter().all(|s| is_vdev(&s.wire.device)) {
        args.push("--no-pci".into());
    }
    for s in &segments {
        if is_vdev(&s.wire.device) {
            args.extend(["--vdev".into(), s.wire.device.clone()]);
        } else {
            args.extend(["-a".into(), s.wire.device.clone()]);
        }
    }
    args.extend(c.eal.extra_args.iter().cloned());
    (args, huge)
}

/// The table of the configured members with their configured weights.
pub fn static_table(sharing: &crate::config::SharingConfig) -> Table {
    let members: Vec<Weighted> = sharing
        .members
        .iter()
        .map(|m| Weighted {
            id: MemberId(m.id),
            weight: m.weight,
        })
        .collect();
    Table::build(sharing.layout, &members, sharing.buckets)
}

/// This node's view of `table`: its own buckets settled, the rest foreign.
/// (Static shares: the node has owned its buckets since it was configured.)
pub fn static_view(table: &Table, me: MemberId, epoch: u64) -> OwnershipView {
    let mut view = OwnershipView::new(table.len() as u32, epoch);
    for (b, owner) in table.owners().iter().enumerate() {
        if *owner == Some(me) {
            view.set(Bucket(b as u32), BucketState::Settled);
        }
    }
    view
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

/// The status socket's path for `c`.
pub fn socket_path(c: &NodeConfig) -> PathBuf {
    c.status_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/run/synshare/{}.sock", c.name)))
}

/// One segment of a running node: its ports, decisions, shares, workers.
struct Segment {
    index: usize,
    wire_name: String,
    wire: Port,
    tap: Port,
    node_mac: synshare_dataplane::packet::Mac,
    sharing: Sharing,
    stats: Vec<Arc<WorkerStats>>,
    /// Multicast mode: the cluster group membership on the TAP.
    membership: Option<Membership>,
}

/// Node-wide availability state, shared by every segment's exchange.
struct Availability {
    formula: Formula,
    smoother: Smoother,
    last_inputs: Option<Inputs>,
    raw: f64,
    capacity: f64,
}

/// Runs the node until SIGINT or SIGTERM.
pub fn run(c: NodeConfig, config_path: &Path) -> Result<(), String> {
    // SIGTERM drains first (see `stop_drain_s`); SIGINT stops at once.
    let stop = Arc::new(AtomicBool::new(false));
    let interrupt = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
        .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupt))
        .map_err(|e| format!("cannot handle SIGINT: {e}"))?;

    // What a reload compares the file with.
    let started_text = std::fs::read_to_string(config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let (args, huge) = eal_args(&c);
    info!(node = %c.name, config = %config_path.display(), eal = ?args, hugepages = huge, "starting");
    // Locals drop in reverse order: segments (ports), then the pool, then EAL.
    let eal = Eal::init(&args).map_err(|e| format!("EAL: {e}"))?;
    let views = c.all_segments();
    let workers_lcores = eal.worker_lcores();
    let needed = usize::from(c.workers) * views.len();
    if workers_lcores.len() < needed {
        return Err(format!(
            "eal.lcores {:?} gives {} worker lcore(s); {} workers x {} segment(s) need {needed}",
            c.eal.lcores,
            workers_lcores.len(),
            c.workers,
            views.len()
        ));
    }
    let queues = c.workers;
    let descs: u32 = views
        .iter()
        .map(|v| u32::from(v.wire.rx_desc) + u32::from(v.wire.tx_desc) + 1024)
        .sum();
    let mbufs = (u32::from(queues) * descs * 2 + 4096).next_power_of_two() - 1;
    let pool = Arc::new(Mempool::new("ss_mbufs", mbufs, 256, 2048 + 128, 0).map_err(|e| e.to_string())?);
    let me = MemberId(c.id);

    let mut availability = Availability {
        formula: formula(&c, c.availability.capacity),
        smoother: Smoother::new(c.availability.alpha, c.availability.max_step),
        last_inputs: None,
        raw: 0.0,
        capacity: c.availability.capacity,
    };
    let initial_weight = (availability.formula.availability(&Inputs {
        service_up: true,
        ..Inputs::default()
    }) * 1000.0) as u32;

    let mut segments: Vec<Segment> = Vec::new();
    let mut pending_workers: Vec<Vec<Worker>> = Vec::new();
    for v in &views {
        let wire_name = wire_port_name(&v.wire.device);
        let wire_id = Port::find(&wire_name).map_err(|e| format!("segment {} wire port: {e}", v.index))?;
        let wire = Port::start(
            wire_id,
            &wire_name,
            &PortConfig {
                rx_queues: queues,
                tx_queues: queues,
                rx_desc: v.wire.rx_desc,
                tx_desc: v.wire.tx_desc,
                rss_key: v.wire.rss.then_some(SYMMETRIC_KEY),
                promiscuous: true,
            },
            Arc::clone(&pool),
        )
        .map_err(|e| format!("segment {} wire port: {e}", v.index))?;
        let node_mac = wire.mac().map_err(|e| e.to_string())?;
        let kernel_mac = v.exception.mac.unwrap_or(node_mac);
        let tap_name = format!("net_tap{}", v.index);
        eal.probe(&format!("{tap_name},iface={},mac={kernel_mac}", v.exception.iface))
            .map_err(|e| format!("segment {} exception port: {e}", v.index))?;
        let tap_id = Port::find(&tap_name).map_err(|e| format!("segment {} exception port: {e}", v.index))?;
        let tap = Port::start(
            tap_id,
            &tap_name,
            &PortConfig {
                rx_queues: queues,
                tx_queues: queues,
                rx_desc: 512,
                tx_desc: 512,
                rss_key: None,
                promiscuous: false,
            },
            Arc::clone(&pool),
        )
        .map_err(|e| format!("segment {} exception port: {e}", v.index))?;
        info!(
            segment = v.index, wire = %wire_name, driver = %wire.driver(), mac = %node_mac, rss = wire.rss_hash(),
            tap = %v.exception.iface, kernel_mac = %kernel_mac, "ports up"
        );
        if !v.exception.addresses.is_empty() {
            setup_tap(&v.exception.iface, &v.exception.addresses)
                .map_err(|e| format!("segment {} exception port {}: {e}", v.index, v.exception.iface))?;
            info!(segment = v.index, tap = %v.exception.iface, addresses = ?v.exception.addresses, "TAP set up");
        }
        let membership = membership::groups(v.cluster_mac, v.vips)
            .map_err(|e| format!("segment {} cluster_mac: {e}", v.index))?
            .map(|g| {
                info!(segment = v.index, group = %g.v4, group6 = %g.v6, "multicast cluster MAC: joining the cluster group while serving");
                Membership::new(g, &v.exception.iface, &v.exception.addresses)
            });
        let mut classifier = Classifier::new(NodeAddresses {
            node_mac,
            kernel_mac,
            cluster_mac: v.cluster_mac,
            vips: v.vips.iter().map(|x| x.dataplane()).collect(),
        });
        // The exchange binds the node's own address unless told otherwise.
        let exchange = v.exchange.map(|x| ExchangeConfig {
            bind: Some(x.bind_addr(&v.exception.own_ips())),
            ..x.clone()
        });
        // The exchange's port only from its members, dropped in the
        // dataplane otherwise: a flood cannot crowd the heartbeats out of
        // the exception path. The exchange republishes the set when its
        // member directory changes (the configuration's are the first).
        let exchange_sources = synshare_dataplane::exchange_guard::ExchangeSources::new();
        if let Some(x) = &exchange {
            let bind = x.bind_addr(&[]);
            let members: Vec<Addr> = x.addresses().values().map(|a| Addr::from(a.ip())).collect();
            info!(
                segment = v.index,
                port = bind.port(),
                members = members.len(),
                "exchange port guarded"
            );
            exchange_sources.set(&members);
            classifier.guard_exchange(bind.port(), exchange_sources.clone());
        }
        let classifier = Arc::new(classifier);
        // Static shares: the configured table, held since start, for ever.
        // With an exchange: nothing until the segment's table gives this
        // node buckets, and only under a lease.
        let (initial, lease) = match v.exchange {
            None => {
                let table = static_table(v.sharing);
                let view = static_view(&table, me, 1);
                info!(segment = v.index, layout = ?v.sharing.layout, buckets = table.len(),
                      owned = view.count(BucketState::Settled), members = v.sharing.members.len(), "static bucket table");
                (view, Lease::forever())
            }
            Some(_) => (OwnershipView::new(v.sharing.buckets, 0), Lease::none()),
        };
        let (publisher, subscribers) = Publisher::new(usize::from(c.workers), &initial);
        // Each worker tells the exchange which buckets it holds flows in.
        let presence: Vec<Arc<FlowPresence>> = (0..c.workers)
            .map(|_| Arc::new(FlowPresence::new(v.sharing.buckets)))
            .collect();
        let sharing = match &exchange {
            None => Sharing::Static {
                table: static_table(v.sharing),
                view: initial,
            },
            Some(x) => {
                let handle = exchange::start(
                    x,
                    me,
                    AgentParams {
                        role: Role::Node,
                        buckets: v.sharing.buckets,
                        layout: v.sharing.layout,
                        drain_ms: u64::from(v.sharing.drain_ms),
                        name: c.name.clone(),
                        rules_digest: v.rules_digest(),
                    },
                    initial_weight,
                    Some(WorkerLink {
                        publisher,
                        lease: lease.clone(),
                        tsc_per_ms: (dpdk::tsc_hz() / 1000).max(1),
                        tsc: dpdk::tsc,
                        presence: presence.clone(),
                        sources: exchange_sources.clone(),
                    }),
                )?;
                info!(segment = v.index, bind = %x.bind_addr(&[]), peers = ?x.peers, coordinator = ?x.coordinator,
                      segment_id = x.segment, interval_ms = x.interval_ms, timeout_ms = x.timeout_ms, "availability exchange");
                Sharing::Dynamic(handle)
            }
        };
        let timeouts = FlowTimeouts {
            half_open_ms: c.flow_table.half_open_ms,
            established_ms: c.flow_table.established_s.saturating_mul(1000),
            closing_ms: c.flow_table.closing_ms,
            provisional_ms: c.flow_table.provisional_ms,
            grace_ms: c.flow_table.grace_ms,
        };
        // The connections the kernel still holds for this segment's VIPs
        // (a restart): every worker knows them from the start, so their
        // packets are accepted although this node holds no bucket yet.
        let kernel_flows = match kernel_flows::connections_to(|vip, port| classifier.serves_tcp(Addr::from(vip), port))
        {
            Ok(f) => f,
            Err(e) => {
                warn!(segment = v.index, error = %e, "cannot read the kernel's connections: none adopted");
                Vec::new()
            }
        };
        if !kernel_flows.is_empty() {
            info!(
                segment = v.index,
                connections = kernel_flows.len(),
                "adopting the kernel's connections to the VIPs"
            );
        }
        let per_ms = (dpdk::tsc_hz() / 1000).max(1);
        let mut stats = Vec::new();
        let mut workers = Vec::new();
        for (i, sub) in subscribers.into_iter().enumerate() {
            let mut flows = NodeFlows::new_in(c.flow_table.capacity as usize, timeouts);
            let now_ms = (dpdk::tsc() / per_ms) as u32;
            for f in &kernel_flows {
                // With the value of the port's rule, as the wire places it.
                let flow = classifier.flow_ref(Addr::from(f.client), f.client_port, Addr::from(f.vip), f.vip_port);
                flows.insert(flow, FlowState::Established, now_ms);
            }
            flows.share_presence(Arc::clone(&presence[i]));
            let q = i as u16;
            let s = Arc::new(WorkerStats::default());
            stats.push(Arc::clone(&s));
            workers.push(Worker {
                index: q,
                classifier: Arc::clone(&classifier),
                view: sub,
                lease: lease.clone(),
                flows,
                wire_rx: wire.rx_queue(q),
                wire_tx: wire.tx_queue(q),
                kernel_rx: tap.rx_queue(q),
                kernel_tx: tap.tx_queue(q),
                use_rss: wire.rss_hash(),
                stats: s,
                stop: Arc::new(AtomicBool::new(false)),
                tuning: WorkerTuning::default(),
            });
        }
        pending_workers.push(workers);
        segments.push(Segment {
            index: v.index,
            wire_name,
            wire,
            tap,
            node_mac,
            sharing,
            stats,
            membership,
        });
    }

    // Measuring runs on its own thread (a probe may block); its samples
    // come here.
    let connections = Arc::new(AtomicU64::new(0));
    let measured = Arc::new(Measured::default());
    let (inputs_tx, inputs_rx) = mpsc::channel();
    let measure_stop = Arc::new(AtomicBool::new(false));
    // The health check in force (a reload replaces it).
    let health_check = Arc::new(std::sync::RwLock::new(c.availability.health()));
    let dynamic = segments.iter().any(|s| matches!(s.sharing, Sharing::Dynamic(_)));
    let measure_thread = if dynamic {
        Some(measure::start(
            &c.availability,
            Arc::clone(&connections),
            inputs_tx,
            Arc::clone(&measure_stop),
            Arc::clone(&measured),
            &health_check,
        )?)
    } else {
        None
    };
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    let socket = socket_path(&c);
    let group = c.status_group.as_deref().map(status::group_id).transpose()?;
    let listener = status::listen(&socket, group).map_err(|e| format!("status socket {}: {e}", socket.display()))?;
    let metrics_listener = crate::metrics::listen(c.metrics)?;

    // Every fallible step is done: launch the workers.
    let worker_stop = Arc::new(AtomicBool::new(false));
    let tuning = WorkerTuning {
        idle_polls: c.idle.empty_polls,
        idle_sleep_us: c.idle.sleep_us,
        ..WorkerTuning::default()
    };
    let mut lcores = workers_lcores.into_iter();
    for workers in pending_workers.drain(..) {
        for mut w in workers {
            w.stop = Arc::clone(&worker_stop);
            w.tuning = tuning.clone();
            let Some(lcore) = lcores.next() else { break };
            if let Err(e) = dpdk::launch(lcore, move || w.run()) {
                worker_stop.store(true, Ordering::Relaxed);
                dpdk::wait_all();
                return Err(e.to_string());
            }
        }
    }

    let started = Instant::now();
    info!(socket = %socket.display(), segments = segments.len(), "serving");
    for s in &segments {
        println!(
            "synshare node {} segment {} up: wire {} ({}), {}, status {}",
            c.name,
            s.index,
            s.wire_name,
            s.node_mac,
            match &s.sharing {
                Sharing::Static { .. } | Sharing::Stopped => "static shares".to_owned(),
                Sharing::Dynamic(h) => format!("exchange segment {}", h.segment),
            },
            socket.display()
        );
    }

    // Status and metrics are served on a thread of their own from a
    // snapshot refreshed here; requests that change something come back
    // here through a channel. A slow or idle client stalls neither this
    // loop nor the exchange.
    let snapshot_cell: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let page = status::PageData::default();
    let mut page_epoch = u64::MAX;
    let mut history: std::collections::VecDeque<serde_json::Value> = std::collections::VecDeque::new();
    let mut last_history: Option<Instant> = None;
    let mut handed: (u64, u64) = (0, 0);
    let metrics_cell: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let (requests_tx, requests_rx) = mpsc::channel::<(String, mpsc::Sender<String>)>();
    let service_stop = Arc::new(AtomicBool::new(false));
    let service = status::spawn_service(
        listener,
        Arc::clone(&snapshot_cell),
        requests_tx,
        Arc::clone(&service_stop),
    )
    .map_err(|e| format!("status thread: {e}"))?;
    let route = status::page_route(Arc::clone(&metrics_cell), Arc::clone(&snapshot_cell), page.clone());
    let mut metrics_server = metrics_listener
        .map(|l| crate::metrics::MetricsServer::spawn(l, route))
        .transpose()
        .map_err(|e| format!("metrics thread: {e}"))?;
    let mut metrics_addr = c.metrics;
    // systemd: ready now; the watchdog is fed from this loop while every
    // exchange thread is alive (no-ops without NOTIFY_SOCKET).
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("serving")]);
    let watchdog = sd_notify::watchdog_enabled();
    let mut last_watchdog = Instant::now();
    let mut last_snapshot: Option<Instant> = None;
    let mut stopping: Option<Instant> = None;
    loop {
        let flows: u64 = segments
            .iter()
            .flat_map(|s| &s.stats)
            .map(|s| s.flows.load(Ordering::Relaxed))
            .sum();
        connections.store(flows, Ordering::Relaxed);
        if interrupt.load(Ordering::Relaxed) {
            info!("SIGINT: stopping now");
            break;
        }
        // Multicast mode: in the cluster group while holding buckets or
        // serving flows of the segment.
        for seg in segments.iter_mut() {
            let Some(m) = seg.membership.as_mut() else { continue };
            let held = match &seg.sharing {
                Sharing::Static { view, .. } => view.count(BucketState::Settled) as u32,
                Sharing::Dynamic(h) => h.status().held,
                Sharing::Stopped => 0,
            };
            let seg_flows: u64 = seg.stats.iter().map(|s| s.flows.load(Ordering::Relaxed)).sum();
            let want = held > 0 || seg_flows > 0;
            if want != m.joined() {
                match m.set(want) {
                    Ok(()) => info!(
                        segment = seg.index,
                        held,
                        flows = seg_flows,
                        joined = want,
                        "cluster group membership"
                    ),
                    Err(e) => warn!(segment = seg.index, error = %e, "cluster group membership"),
                }
            }
        }
        if stop.swap(false, Ordering::Relaxed) {
            if stopping.is_some() || !dynamic || c.stop_drain_s == 0 {
                break;
            }
            info!(
                flows,
                timeout_s = c.stop_drain_s,
                "SIGTERM: draining: the others take new connections; stopping when known flows end (a second SIGTERM stops now)"
            );
            for seg in &segments {
                if let Sharing::Dynamic(h) = &seg.sharing {
                    h.send(Command::Draining(true));
                }
            }
            stopping = Some(Instant::now());
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status("draining before stopping")]);
        }
        if let Some(t) = stopping {
            let held: u32 = segments
                .iter()
                .map(|s| match &s.sharing {
                    Sharing::Dynamic(h) => h.status().held,
                    _ => 0,
                })
                .sum();
            if held == 0 && flows == 0 {
                info!(
                    after_ms = t.elapsed().as_millis() as u64,
                    "drained: no buckets, no flows"
                );
                break;
            }
            if t.elapsed() >= Duration::from_secs(u64::from(c.stop_drain_s)) {
                warn!(
                    held,
                    flows,
                    "stop_drain_s reached: stopping with flows left (the kernel keeps them; a restart picks them up)"
                );
                break;
            }
        }
        if reload.swap(false, Ordering::Relaxed) {
            // Every field that can change safely is applied (crate::reload
            // lists them); each other edited field is named in a warning.
            let edits = std::fs::read_to_string(config_path)
                .map_err(|e| e.to_string())
                .and_then(|now| crate::reload::edits(&started_text, &now));
            match (NodeConfig::load(config_path), edits) {
                (Ok(new), Ok(edits)) => {
                    availability.capacity = new.availability.capacity;
                    availability.formula = formula(&new, new.availability.capacity);
                    if c.availability.cpu == CpuSource::None {
                        // No CPU measured until a restart.
                        availability.formula.cpu_exponent = 0.0;
                    }
                    availability.smoother.alpha = new.availability.alpha;
                    availability.smoother.max_step = new.availability.max_step;
                    if let Ok(mut h) = health_check.write() {
                        *h = new.availability.health();
                    }
                    let level = new.log_level.clone().or_else(|| std::env::var("SYNSHARE_LOG").ok());
                    match crate::logging::set_level(level.as_deref().unwrap_or("info")) {
                        Ok(()) => tracing::debug!(level = level.as_deref().unwrap_or("info"), "log level"),
                        Err(e) => warn!(error = %e, "log_level not reloaded"),
                    }
                    if new.metrics != metrics_addr {
                        // The old port is closed before the new one opens.
                        drop(metrics_server.take());
                        let route =
                            status::page_route(Arc::clone(&metrics_cell), Arc::clone(&snapshot_cell), page.clone());
                        match crate::metrics::listen(new.metrics).and_then(|l| {
                            l.map(|l| crate::metrics::MetricsServer::spawn(l, route).map_err(|e| e.to_string()))
                                .transpose()
                        }) {
                            Ok(m) => metrics_server = m,
                            Err(e) => warn!(error = %e, "metrics not served"),
                        }
                        metrics_addr = new.metrics;
                    }
                    for (seg, nv) in segments.iter().zip(new.all_segments()) {
                        if let (Sharing::Dynamic(h), Some(x)) = (&seg.sharing, nv.exchange) {
                            match x.keys() {
                                Ok(k) => h.send(Command::Keys(k)),
                                Err(e) => warn!(segment = seg.index, error = %e, "keys not reloaded"),
                            }
                        }
                    }
                    info!(
                        capacity = availability.capacity,
                        edited = ?edits.applied,
                        "configuration reloaded (availability, health check, metrics, log level, exchange keys)"
                    );
                    if !edits.need_restart.is_empty() {
                        warn!(
                            "edited fields that need a restart, not applied: {} (systemctl restart synshare@{})",
                            edits.need_restart.join(", "),
                            c.name
                        );
                    }
                }
                (Err(e), _) => warn!(error = %e, "reload refused: the running configuration stays"),
                (_, Err(e)) => warn!(error = %e, "reload refused: the running configuration stays"),
            }
        }
        let mut weight = None;
        while let Ok(inputs) = inputs_rx.try_recv() {
            availability.formula.capacity = availability.capacity;
            availability.raw = availability.formula.availability(&inputs);
            let smoothed = availability.smoother.update(availability.raw, availability.capacity);
            weight = Some((smoothed * 1000.0).round() as u32);
            availability.last_inputs = Some(inputs);
        }
        for seg in &segments {
            if let Sharing::Dynamic(h) = &seg.sharing {
                if let Some(w) = weight {
                    h.send(Command::Weight(w));
                }
                h.send(Command::Connections(flows.min(u64::from(u32::MAX)) as u32));
            }
        }
        while let Ok((request, reply)) = requests_rx.try_recv() {
            let answer = handle_request(
                &request,
                &c,
                &mut segments,
                &mut availability,
                &started,
                huge,
                &measured,
            );
            let _ = reply.send(answer);
        }
        if last_snapshot.is_none_or(|t| t.elapsed() >= Duration::from_millis(50)) {
            last_snapshot = Some(Instant::now());
            let snap = snapshot(&c, &segments, &availability, &started, huge, &measured);
            if let Ok(mut cell) = metrics_cell.lock() {
                *cell = crate::metrics::render(&snap);
            }
            if let Ok(mut cell) = snapshot_cell.lock() {
                *cell = serde_json::to_string(&snap).unwrap_or_default();
            }
            // The status page: the first segment's table when it changes,
            // and one history point a second for the last five minutes.
            if let Some(seg) = segments.first() {
                let (epoch, owners) = match &seg.sharing {
                    Sharing::Static { table, .. } => (1, table.owners().iter().map(|o| o.map(|m| m.0)).collect()),
                    Sharing::Dynamic(h) => h.owners(),
                    Sharing::Stopped => (0, Vec::new()),
                };
                if epoch != page_epoch {
                    page_epoch = epoch;
                    if let Ok(mut cell) = page.table.lock() {
                        *cell = serde_json::json!({ "epoch": epoch, "owners": owners }).to_string();
                    }
                }
            }
            if last_history.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_history = Some(Instant::now());
                let stat = |k: &str| {
                    snap.exchange
                        .as_ref()
                        .and_then(|x| x.stats.get(k).copied())
                        .unwrap_or(0)
                };
                let (claimed, released) = (stat("buckets_claimed"), stat("buckets_released"));
                let buckets = f64::from(snap.buckets.max(1));
                history.push_back(serde_json::json!({
                    "t": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
                    "members": snap.members.iter().map(|m| serde_json::json!({
                        "id": m.id, "share": f64::from(m.buckets) / buckets, "weight": m.weight,
                    })).collect::<Vec<_>>(),
                    "availability": snap.availability.as_ref().map_or(1.0, |a| if a.capacity > 0.0 { a.smoothed / a.capacity } else { 0.0 }),
                    "held": snap.held,
                    "claimed": claimed.saturating_sub(handed.0),
                    "released": released.saturating_sub(handed.1),
                }));
                handed = (claimed, released);
                while history.len() > 300 {
                    history.pop_front();
                }
                if let Ok(mut cell) = page.history.lock() {
                    *cell = serde_json::Value::Array(history.iter().cloned().collect()).to_string();
                }
            }
        }
        if let Some(period) = watchdog {
            let exchanges_alive = segments.iter().all(|s| match &s.sharing {
                Sharing::Dynamic(h) => h.alive(period / 2),
                _ => true,
            });
            if exchanges_alive && last_watchdog.elapsed() >= period / 4 {
                last_watchdog = Instant::now();
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // Leave the cluster groups while the workers still carry the kernel's
    // leave messages to the wire.
    let mut left = false;
    for seg in segments.iter_mut() {
        if let Some(m) = seg.membership.as_mut() {
            left |= m.joined();
            let _ = m.set(false);
        }
    }
    if left {
        std::thread::sleep(Duration::from_millis(100));
    }
    service_stop.store(true, Ordering::Relaxed);
    let _ = service.join();
    drop(metrics_server);

    info!("stopping");
    worker_stop.store(true, Ordering::Relaxed);
    measure_stop.store(true, Ordering::Relaxed);
    dpdk::wait_all();
    let last = snapshot(&c, &segments, &availability, &started, huge, &measured);
    println!("{}", status::summary(&last));
    let _ = std::fs::remove_file(&socket);
    if let Some(t) = measure_thread {
        let _ = t.join();
    }
    for seg in segments.iter_mut() {
        if let Sharing::Dynamic(h) = std::mem::replace(&mut seg.sharing, Sharing::Stopped) {
            h.stop();
        }
    }
    drop(segments);
    drop(pool);
    drop(eal);
    if last.wire.stats.rx_nombuf > 0 {
        warn!(rx_nombuf = last.wire.stats.rx_nombuf, "the mbuf pool ran dry at times");
    }
    Ok(())
}

/// Shares from the configuration, or from the exchange.
enum Sharing {
    Static { table: Table, view: OwnershipView },
    Dynamic(ExchangeHandle),
    Stopped,
}

/// The availability formula of `c` with `capacity`.
fn formula(c: &NodeConfig, capacity: f64) -> Formula {
    let a = &c.availability;
    Formula {
        capacity,
        cpu_exponent: if a.cpu == CpuSource::None { 0.0 } else { a.cpu_exponent },
        max_connections: a.max_connections,
        temperature_c: a.temperature.as_ref().map(|(_, lo, hi)| (*lo, *hi)),
        power_budget_w: a.power.as_ref().map(|(_, w)| *w),
        floor: a.floor,
    }
}

/// The status of one segment (the first carries the others in `segments`).
fn segment_status(
    c: &NodeConfig,
    seg: &Segment,
    av: &Availability,
    started: &Instant,
    huge: bool,
    measured: &Measured,
) -> NodeStatus {
    let sharing_cfg = c.all_segments()[seg.index].sharing;
    let cluster_mac = c.all_segments()[seg.index].cluster_mac;
    let (epoch, layout, buckets, members, exchange, availability) = match &seg.sharing {
        Sharing::Static { table, .. } => (
            1,
            format!("{:?}", sharing_cfg.layout).to_lowercase(),
            table.len() as u32,
            status::members(&sharing_cfg.members, table),
            None,
            None,
        ),
        Sharing::Stopped => (0, String::new(), 0, Vec::new(), None, None),
        Sharing::Dynamic(d) => {
            let x = d.status();
            let members = x.members.iter().map(status::MemberStatus::from).collect();
            let inputs = av.last_inputs.unwrap_or_default();
            let a = status::AvailabilityStatus {
                capacity: av.capacity,
                cpu_busy: inputs.cpu_busy,
                connections: inputs.connections,
                temperature_c: inputs.temperature_c,
                power_w: inputs.power_w,
                service_up: measured.service_up.load(Ordering::Relaxed) || av.last_inputs.is_none(),
                raw: av.raw,
                smoothed: av.smoother.value().unwrap_or(0.0),
                draining: x.draining,
            };
            (
                x.epoch,
                format!("{:?}", sharing_cfg.layout).to_lowercase(),
                sharing_cfg.buckets,
                members,
                Some(x),
                Some(a),
            )
        }
    };
    let held = match &seg.sharing {
        Sharing::Static { view, .. } => (view.count(BucketState::Claimed) + view.count(BucketState::Settled)) as u32,
        Sharing::Dynamic(_) => exchange.as_ref().map_or(0, |x| x.held),
        Sharing::Stopped => 0,
    };
    NodeStatus {
        name: c.name.clone(),
        cluster: c.cluster.clone(),
        id: c.id,
        segment: seg.index as u32,
        dpdk: dpdk::version(),
        hugepages: huge,
        uptime_s: started.elapsed().as_secs_f64(),
        epoch,
        layout,
        buckets,
        members,
        node_mac: seg.node_mac.to_string(),
        cluster_mac: cluster_mac.to_string(),
        wire: status::port(&seg.wire),
        exception: status::port(&seg.tap),
        workers: seg
            .stats
            .iter()
            .enumerate()
            .map(|(i, s)| status::worker(i, s))
            .collect(),
        held,
        exchange,
        availability,
        segments: Vec::new(),
    }
}

/// The node's status: its first segment, with the others in `segments`.
fn snapshot(
    c: &NodeConfig,
    segments: &[Segment],
    av: &Availability,
    started: &Instant,
    huge: bool,
    measured: &Measured,
) -> NodeStatus {
    let mut first = segment_status(c, &segments[0], av, started, huge, measured);
    first.segments = segments[1..]
        .iter()
        .map(|s| segment_status(c, s, av, started, huge, measured))
        .collect();
    first
}

/// Answers one request of the status socket.
fn handle_request(
    request: &str,
    c: &NodeConfig,
    segments: &mut [Segment],
    av: &mut Availability,
    started: &Instant,
    huge: bool,
    measured: &Measured,
) -> String {
    let mut words = request.split_whitespace();
    let verb = words.next().unwrap_or("status");
    let reply = |ok: bool, message: String| serde_json::json!({ "ok": ok, "message": message }).to_string();
    let dynamic = segments.iter().any(|s| matches!(s.sharing, Sharing::Dynamic(_)));
    match verb {
        "status" => serde_json::to_string(&snapshot(c, segments, av, started, huge, measured))
            .unwrap_or_else(|e| reply(false, e.to_string())),
        "drain" | "undrain" | "capacity" if !dynamic => reply(
            false,
            "static shares: configure an exchange to drain or change capacity at run time".into(),
        ),
        "drain" | "undrain" => {
            let draining = verb == "drain";
            for s in segments.iter_mut() {
                if let Sharing::Dynamic(h) = &s.sharing {
                    h.send(Command::Draining(draining));
                }
            }
            info!(draining, "drain set by the control socket");
            reply(
                true,
                format!(
                    "{} {}",
                    c.name,
                    if draining { "draining" } else { "taking new connections" }
                ),
            )
        }
        "members" if !dynamic => reply(
            false,
            "static shares: the members are the configuration's (sharing.members); configure an exchange".into(),
        ),
        "members" => members_request(words, segments),
        "capacity" => match words.next().and_then(|w| w.parse::<f64>().ok()) {
            Some(v) if v.is_finite() && (0.0..=1_000_000.0).contains(&v) => {
                av.capacity = v;
                info!(capacity = v, "capacity set by the control socket");
                reply(true, format!("{} capacity {v}", c.name))
            }
            _ => reply(false, "capacity takes a number from 0 to 1000000".into()),
        },
        other => reply(
            false,
            format!("unknown request {:?}", other.chars().take(32).collect::<String>()),
        ),
    }
}

/// A `members` request of the status socket (`members`, `members add ID
/// ADDR [weight W]`, `members remove ID`, each with `segment N` at the end
/// for a segment other than the first), asked of that segment's exchange.
fn members_request<'a>(mut words: impl Iterator<Item = &'a str>, segments: &[Segment]) -> String {
    let refuse = |message: String| serde_json::json!({ "ok": false, "message": message }).to_string();
    let words: Vec<&str> = words.by_ref().collect();
    let (words, segment) = match words.as_slice() {
        [rest @ .., "segment", n] => match n.parse::<usize>() {
            Ok(n) => (rest.to_vec(), n),
            Err(_) => return refuse(format!("segment {n:?}: not a number")),
        },
        all => (all.to_vec(), 0),
    };
    let request = match words.as_slice() {
        [] | ["list"] => exchange::MembersRequest::List,
        ["add", id, address, rest @ ..] => {
            let weight = match rest {
                [] => Ok(1.0),
                ["weight", w] => w
                    .parse::<f64>()
                    .map_err(|_| format!("weight {w:?}: not a number"))
                    .and_then(|w| {
                        (w.is_finite() && (0.0..=1000.0).contains(&w))
                            .then_some(w)
                            .ok_or_else(|| "weight: from 0 to 1000".to_owned())
                    }),
                _ => Err(format!("members add: unexpected {:?}", rest.join(" "))),
            };
            match (id.parse::<u32>(), address.parse::<std::net::SocketAddr>(), weight) {
                (Ok(id), Ok(address), Ok(w)) => exchange::MembersRequest::Add {
                    id,
                    address,
                    weight_milli: (w * 1000.0).round() as u32,
                },
                (Err(_), _, _) => return refuse(format!("member id {id:?}: not a number")),
                (_, Err(_), _) => return refuse(format!("{address:?}: not an address:port")),
                (_, _, Err(e)) => return refuse(e),
            }
        }
        ["remove", id] => match id.parse::<u32>() {
            Ok(id) => exchange::MembersRequest::Remove { id },
            Err(_) => return refuse(format!("member id {id:?}: not a number")),
        },
        _ => return refuse("members [add ID ADDRESS [weight W] | remove ID] [segment N]".into()),
    };
    let Some(Sharing::Dynamic(h)) = segments.get(segment).map(|s| &s.sharing) else {
        return refuse(format!("segment {segment}: no such segment with an exchange"));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    h.send(Command::Members(request, tx));
    match rx.recv_timeout(std::time::Duration::from_secs(2)) {
        Ok(reply) => serde_json::to_string(&reply).unwrap_or_else(|e| refuse(e.to_string())),
        Err(_) => refuse("the exchange did not answer within 2 s".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_port_names() {
        assert_eq!(wire_port_name("net_af_packet0,iface=x"), "net_af_packet0");
        assert_eq!(wire_port_name("0000:3b:00.0"), "0000:3b:00.0");
        assert_eq!(wire_port_name("3b:00.0"), "0000:3b:00.0");
    }
}
