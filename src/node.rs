//! `synshare node`: one server's dataplane and control core.
//!
//! Start-up: EAL, the mbuf pool, the wire port (promiscuous: the switch
//! floods the cluster MAC), the exception TAP created with the wire port's
//! MAC, the bucket table, then one worker per worker lcore. The main lcore
//! stays as the control core: it publishes tables, answers the status
//! socket and stops everything on SIGINT/SIGTERM.

use crate::config::{CpuSource, Hugepages, NodeConfig};
use crate::exchange::{AgentParams, Exchange};
use crate::measure::{self, Measured};
use crate::status::{self, NodeStatus};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synshare_control::availability::{Formula, Inputs, Smoother};
use synshare_control::layout::{MemberId, Table, Weighted};
use synshare_control::protocol::Right;
use synshare_control::wire::Role;
use synshare_dataplane::classify::{Classifier, NodeAddresses, Vip};
use synshare_dataplane::counters::WorkerStats;
use synshare_dataplane::dpdk::{self, Eal, Mempool, Port, PortConfig};
use synshare_dataplane::flow::{FlowTable, FlowTimeouts};
use synshare_dataplane::hash::{Bucket, SYMMETRIC_KEY};
use synshare_dataplane::ownership::{BucketState, OwnershipView};
use synshare_dataplane::packet::Addr;
use synshare_dataplane::publish::Publisher;
use synshare_dataplane::worker::{Worker, WorkerTuning};
use tracing::{debug, info, warn};

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
    if is_vdev(&c.wire.device) {
        args.extend(["--no-pci".into(), "--vdev".into(), c.wire.device.clone()]);
    } else {
        args.extend(["-a".into(), c.wire.device.clone()]);
    }
    args.extend(c.eal.extra_args.iter().cloned());
    (args, huge)
}

/// The table of the configured members with their configured weights.
pub fn static_table(c: &NodeConfig) -> Table {
    let members: Vec<Weighted> = c
        .sharing
        .members
        .iter()
        .map(|m| Weighted {
            id: MemberId(m.id),
            weight: m.weight,
        })
        .collect();
    Table::build(c.sharing.layout, &members, c.sharing.buckets)
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

/// The status socket's path for `c`.
pub fn socket_path(c: &NodeConfig) -> PathBuf {
    c.status_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/run/synshare/{}.sock", c.name)))
}

/// Runs the node until SIGINT or SIGTERM.
pub fn run(c: NodeConfig, config_path: &Path) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }

    let (args, huge) = eal_args(&c);
    info!(node = %c.name, config = %config_path.display(), eal = ?args, hugepages = huge, "starting");
    // Locals drop in reverse order: ports, then the pool, then EAL.
    let eal = Eal::init(&args).map_err(|e| format!("EAL: {e}"))?;
    let workers_lcores = eal.worker_lcores();
    if workers_lcores.len() < usize::from(c.workers) {
        return Err(format!(
            "eal.lcores {:?} gives {} worker lcore(s), {} workers configured",
            c.eal.lcores,
            workers_lcores.len(),
            c.workers
        ));
    }
    let queues = c.workers;
    let mbufs = (u32::from(queues) * (u32::from(c.wire.rx_desc) + u32::from(c.wire.tx_desc)) * 2 + 4096)
        .next_power_of_two()
        - 1;
    let pool = Arc::new(Mempool::new("ss_mbufs", mbufs, 256, 2048 + 128, 0).map_err(|e| e.to_string())?);

    let wire_name = wire_port_name(&c.wire.device);
    let wire_id = Port::find(&wire_name).map_err(|e| format!("wire port: {e}"))?;
    let wire = Port::start(
        wire_id,
        &wire_name,
        &PortConfig {
            rx_queues: queues,
            tx_queues: queues,
            rx_desc: c.wire.rx_desc,
            tx_desc: c.wire.tx_desc,
            rss_key: c.wire.rss.then_some(SYMMETRIC_KEY),
            promiscuous: true,
        },
        Arc::clone(&pool),
    )
    .map_err(|e| format!("wire port: {e}"))?;
    let node_mac = wire.mac().map_err(|e| e.to_string())?;
    let kernel_mac = c.exception.mac.unwrap_or(node_mac);

    let tap_name = "net_tap0";
    eal.probe(&format!("{tap_name},iface={},mac={kernel_mac}", c.exception.iface))
        .map_err(|e| format!("exception port: {e}"))?;
    let tap_id = Port::find(tap_name).map_err(|e| format!("exception port: {e}"))?;
    let tap = Port::start(
        tap_id,
        tap_name,
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
    .map_err(|e| format!("exception port: {e}"))?;
    info!(
        wire = %wire_name, driver = %wire.driver(), mac = %node_mac, rss = wire.rss_hash(),
        tap = %c.exception.iface, kernel_mac = %kernel_mac, "ports up"
    );

    let classifier = Arc::new(Classifier::new(NodeAddresses {
        node_mac,
        kernel_mac,
        cluster_mac: c.cluster_mac,
        vips: c
            .vips
            .iter()
            .map(|v| Vip::new(Addr::from(v.addr), &v.tcp_ports, &v.udp_ports))
            .collect(),
    }));
    let me = MemberId(c.id);
    let worker_stop = Arc::new(AtomicBool::new(false));
    let timeouts = FlowTimeouts {
        half_open_ms: c.flow_table.half_open_ms,
        established_ms: c.flow_table.established_s.saturating_mul(1000),
        closing_ms: c.flow_table.closing_ms,
    };
    let tuning = WorkerTuning {
        idle_polls: c.idle.empty_polls,
        idle_sleep_us: c.idle.sleep_us,
        ..WorkerTuning::default()
    };

    // Static shares: the configured table, held since start. With an
    // exchange: nothing until the cluster's table gives this node buckets.
    let mut sharing = match &c.exchange {
        None => {
            let table = static_table(&c);
            let view = static_view(&table, me, 1);
            info!(layout = ?c.sharing.layout, buckets = table.len(), owned = view.count(BucketState::Settled),
                  members = c.sharing.members.len(), "static bucket table");
            Sharing::Static { table, view }
        }
        Some(x) => {
            let formula = formula(&c, c.availability.capacity);
            let weight = (formula.availability(&Inputs {
                service_up: true,
                ..Inputs::default()
            }) * 1000.0) as u32;
            let ex = Exchange::new(
                x,
                me,
                AgentParams {
                    role: Role::Node,
                    buckets: c.sharing.buckets,
                    layout: c.sharing.layout,
                    drain_ms: u64::from(c.sharing.drain_ms),
                },
                weight,
            )?;
            info!(bind = %x.bind, peers = ?x.peers, coordinator = ?x.coordinator, segment = x.segment,
                  interval_ms = x.interval_ms, timeout_ms = x.timeout_ms, "availability exchange");
            let view = OwnershipView::new(c.sharing.buckets, 0);
            Sharing::Dynamic(Box::new(Dynamic {
                ex,
                formula,
                smoother: Smoother::new(c.availability.alpha, c.availability.max_step),
                last_inputs: None,
                raw: 0.0,
                view,
                published: 0,
            }))
        }
    };
    let (publisher, subscribers) = Publisher::new(usize::from(c.workers), sharing.view());

    // Measuring runs on its own thread (a probe may block); its samples
    // come here.
    let connections = Arc::new(AtomicU64::new(0));
    let measured = Arc::new(Measured::default());
    let (inputs_tx, inputs_rx) = mpsc::channel();
    let measure_stop = Arc::new(AtomicBool::new(false));
    let measure_thread = if c.exchange.is_some() {
        Some(measure::start(
            &c.availability,
            Arc::clone(&connections),
            inputs_tx,
            Arc::clone(&measure_stop),
            Arc::clone(&measured),
        )?)
    } else {
        None
    };

    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;

    let socket = socket_path(&c);
    let listener = status::listen(&socket).map_err(|e| format!("status socket {}: {e}", socket.display()))?;
    let metrics_listener = match c.metrics {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).map_err(|e| format!("metrics on {addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            info!(%addr, "metrics");
            Some(l)
        }
        None => None,
    };
    let mut stats = Vec::new();
    for (i, sub) in subscribers.into_iter().enumerate() {
        let q = i as u16;
        let s = Arc::new(WorkerStats::default());
        stats.push(Arc::clone(&s));
        let worker = Worker {
            index: q,
            classifier: Arc::clone(&classifier),
            view: sub,
            flows: FlowTable::new(c.flow_table.capacity as usize, timeouts),
            wire_rx: wire.rx_queue(q),
            wire_tx: wire.tx_queue(q),
            kernel_rx: tap.rx_queue(q),
            kernel_tx: tap.tx_queue(q),
            use_rss: wire.rss_hash(),
            stats: s,
            stop: Arc::clone(&worker_stop),
            tuning: tuning.clone(),
        };
        dpdk::launch(workers_lcores[i], move || worker.run()).map_err(|e| e.to_string())?;
    }

    let started = Instant::now();
    let mut capacity = c.availability.capacity;
    info!(socket = %socket.display(), "serving");
    println!(
        "synshare node {} up: wire {} ({}), tap {} ({}), status {}",
        c.name,
        wire_name,
        node_mac,
        c.exchange
            .as_ref()
            .map_or("static shares".to_owned(), |x| format!("exchange on {}", x.bind)),
        kernel_mac,
        socket.display()
    );

    while !stop.load(Ordering::Relaxed) {
        let flows: u64 = stats.iter().map(|s| s.flows.load(Ordering::Relaxed)).sum();
        connections.store(flows, Ordering::Relaxed);
        if reload.swap(false, Ordering::Relaxed) {
            match NodeConfig::load(config_path) {
                Ok(new) => {
                    capacity = new.availability.capacity;
                    info!(capacity, "configuration reloaded (availability.capacity)");
                }
                Err(e) => warn!(error = %e, "reload refused: the running configuration stays"),
            }
        }
        match &mut sharing {
            Sharing::Static { .. } => std::thread::sleep(Duration::from_millis(20)),
            Sharing::Dynamic(d) => {
                let wait = d.ex.wait_hint();
                d.ex.poll(wait);
                while let Ok(inputs) = inputs_rx.try_recv() {
                    d.formula.capacity = capacity;
                    d.raw = d.formula.availability(&inputs);
                    let smoothed = d.smoother.update(d.raw, capacity);
                    d.ex.agent.set_weight((smoothed * 1000.0).round() as u32);
                    d.last_inputs = Some(inputs);
                }
                d.ex.agent.set_connections(flows.min(u64::from(u32::MAX)) as u32);
                d.ex.tick();
                if d.ex.agent.take_view_changed() {
                    let now = d.ex.now_ms();
                    d.published += 1;
                    d.view = view_of(&d.ex.agent.rights(now), d.published);
                    publisher.publish(&d.view);
                    debug!(
                        epoch = d.ex.agent.epoch().number,
                        held = d.ex.agent.held_count(),
                        "published view"
                    );
                }
            }
        }
        status::serve(&listener, |request| {
            handle_request(
                request,
                &c,
                &mut sharing,
                &mut capacity,
                &started,
                huge,
                &wire,
                &tap,
                &stats,
                node_mac,
                &measured,
            )
        });
        if let Some(l) = &metrics_listener {
            crate::metrics::serve(l, || {
                crate::metrics::render(&snapshot(
                    &c, &sharing, capacity, &started, huge, &wire, &tap, &stats, node_mac, &measured,
                ))
            });
        }
        publisher.collect();
    }

    info!("stopping");
    worker_stop.store(true, Ordering::Relaxed);
    measure_stop.store(true, Ordering::Relaxed);
    dpdk::wait_all();
    let last = snapshot(
        &c, &sharing, capacity, &started, huge, &wire, &tap, &stats, node_mac, &measured,
    );
    println!("{}", status::summary(&last));
    let _ = std::fs::remove_file(&socket);
    if let Some(t) = measure_thread {
        let _ = t.join();
    }
    drop(publisher);
    drop(tap);
    drop(wire);
    drop(pool);
    drop(eal);
    if last.wire.rx_nombuf > 0 {
        warn!(rx_nombuf = last.wire.rx_nombuf, "the mbuf pool ran dry at times");
    }
    Ok(())
}

/// Shares from the configuration, or from the exchange.
enum Sharing {
    Static { table: Table, view: OwnershipView },
    Dynamic(Box<Dynamic>),
}

struct Dynamic {
    ex: Exchange,
    formula: Formula,
    smoother: Smoother,
    last_inputs: Option<Inputs>,
    raw: f64,
    view: OwnershipView,
    published: u64,
}

impl Sharing {
    fn view(&self) -> &OwnershipView {
        match self {
            Sharing::Static { view, .. } => view,
            Sharing::Dynamic(d) => &d.view,
        }
    }
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

/// The workers' view of this node's rights.
pub fn view_of(rights: &[Right], epoch: u64) -> OwnershipView {
    let states = rights
        .iter()
        .map(|r| match r {
            Right::None => BucketState::Foreign,
            Right::Claimed => BucketState::Claimed,
            Right::Settled => BucketState::Settled,
        })
        .collect();
    OwnershipView::from_states(states, epoch)
        .unwrap_or_else(|| OwnershipView::new(rights.len().next_power_of_two() as u32, epoch))
}

#[allow(clippy::too_many_arguments)]
fn snapshot(
    c: &NodeConfig,
    sharing: &Sharing,
    capacity: f64,
    started: &Instant,
    huge: bool,
    wire: &Port,
    tap: &Port,
    stats: &[Arc<WorkerStats>],
    node_mac: synshare_dataplane::packet::Mac,
    measured: &Measured,
) -> NodeStatus {
    let (epoch, layout, buckets, members, exchange, availability) = match sharing {
        Sharing::Static { table, .. } => (
            1,
            format!("{:?}", c.sharing.layout).to_lowercase(),
            table.len() as u32,
            status::members(c, table),
            None,
            None,
        ),
        Sharing::Dynamic(d) => {
            let x = d.ex.status();
            let members = x
                .members
                .iter()
                .map(|m| status::MemberStatus {
                    id: m.id,
                    weight: m.weight,
                    buckets: m.buckets,
                    share_pct: m.share_pct,
                })
                .collect();
            let inputs = d.last_inputs.unwrap_or_default();
            let av = status::AvailabilityStatus {
                capacity,
                cpu_busy: inputs.cpu_busy,
                connections: inputs.connections,
                temperature_c: inputs.temperature_c,
                power_w: inputs.power_w,
                service_up: measured.service_up.load(Ordering::Relaxed) || d.last_inputs.is_none(),
                raw: d.raw,
                smoothed: d.smoother.value().unwrap_or(0.0),
                draining: d.ex.agent.draining(),
            };
            (
                x.epoch,
                format!("{:?}", d.ex.agent.settings().layout).to_lowercase(),
                c.sharing.buckets,
                members,
                Some(x),
                Some(av),
            )
        }
    };
    NodeStatus {
        name: c.name.clone(),
        id: c.id,
        dpdk: dpdk::version(),
        hugepages: huge,
        uptime_s: started.elapsed().as_secs_f64(),
        epoch,
        layout,
        buckets,
        members,
        node_mac: node_mac.to_string(),
        cluster_mac: c.cluster_mac.to_string(),
        wire: status::port(wire),
        exception: status::port(tap),
        workers: stats.iter().enumerate().map(|(i, s)| status::worker(i, s)).collect(),
        held: sharing.view().count(BucketState::Claimed) as u32 + sharing.view().count(BucketState::Settled) as u32,
        exchange,
        availability,
    }
}

/// Answers one request of the status socket.
#[allow(clippy::too_many_arguments)]
fn handle_request(
    request: &str,
    c: &NodeConfig,
    sharing: &mut Sharing,
    capacity: &mut f64,
    started: &Instant,
    huge: bool,
    wire: &Port,
    tap: &Port,
    stats: &[Arc<WorkerStats>],
    node_mac: synshare_dataplane::packet::Mac,
    measured: &Measured,
) -> String {
    let mut words = request.split_whitespace();
    let verb = words.next().unwrap_or("status");
    let reply = |ok: bool, message: String| serde_json::json!({ "ok": ok, "message": message }).to_string();
    match (verb, &mut *sharing) {
        ("status", _) => serde_json::to_string(&snapshot(
            c, sharing, *capacity, started, huge, wire, tap, stats, node_mac, measured,
        ))
        .unwrap_or_else(|e| reply(false, e.to_string())),
        ("drain" | "undrain", Sharing::Dynamic(d)) => {
            let draining = verb == "drain";
            d.ex.agent.set_draining(draining);
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
        ("capacity", Sharing::Dynamic(_)) => match words.next().and_then(|w| w.parse::<f64>().ok()) {
            Some(v) if v.is_finite() && (0.0..=1_000_000.0).contains(&v) => {
                *capacity = v;
                info!(capacity = v, "capacity set by the control socket");
                reply(true, format!("{} capacity {v}", c.name))
            }
            _ => reply(false, "capacity takes a number from 0 to 1000000".into()),
        },
        ("drain" | "undrain" | "capacity", Sharing::Static { .. }) => reply(
            false,
            "static shares: configure an exchange to drain or change capacity at run time".into(),
        ),
        (other, _) => reply(
            false,
            format!("unknown request {:?}", other.chars().take(32).collect::<String>()),
        ),
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
