//! `synshare-bench bench`: the real worker loop on one lcore, fed from a
//! pcap replayed from memory, against the ceiling of the same virtual
//! devices.
//!
//! Ports: `net_pcap0` (`rx_pcap=FILE,infinite_rx=1`: the PMD loads every
//! frame of the file into mbufs at start and copies them out again and
//! again) is the wire RX; `net_null0` (`no-rx=1`) takes everything sent, on
//! TX queue 0 as the wire TX and on TX queue 1 as the exception (kernel)
//! port, and its empty RX queue stands for the kernel's side. The worker is
//! `synshare_dpdk::worker::Worker` itself: parse, connection value,
//! ownership view, flow table, accept or drop, batch and transmit, sweep,
//! counters. Only the exception port is swapped for a sink, and a
//! [`BurstObserver`] times each burst into an HdrHistogram.
//!
//! Before the run, the flow table is loaded with every TCP flow to a VIP in
//! the file that falls in this node's buckets (and, on request, with extra
//! flows the traffic never touches, to fill the table to a given size).

use crate::opts::{Opts, PROGRAM};
use crate::pcap::for_each_frame;
use hdrhistogram::Histogram;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synshare_control::layout::{Layout, MemberId, Table, Weighted};
use synshare_dataplane::classify::{Action, IpChecksum};
use synshare_dataplane::counters::{Counter, WorkerStats};
use synshare_dataplane::flow::{FlowKey, FlowState, FlowTimeouts};
use synshare_dataplane::hash::nic::{ptype, RssTypes};
use synshare_dataplane::hash::{symmetric, Bucket};
use synshare_dataplane::ownership::{BucketState, OwnershipView};
use synshare_dataplane::packet::{self, Addr, Payload, L4};
use synshare_dataplane::publish::{Lease, Publisher};
use synshare_dataplane::synth::{self, V4_VIP, V6_VIP};
use synshare_dpdk::replay::NicStamp;
use synshare_dpdk::worker::{BurstObserver, NodeFlows, Offloads, Worker, WorkerTuning};
use synshare_dpdk::{self as dpdk, Eal, Mempool, Port, PortConfig};

pub const HELP: &str = "\
synshare-bench bench --pcap FILE.pcap [options]

Runs synshare's worker loop on one lcore with FILE.pcap replayed from
memory (net_pcap, infinite_rx=1) as the wire and net_null as the output and
exception ports, with the flow table pre-loaded with the file's flows.
Reports Mpps, TSC cycles per packet, every counter (drops by reason) and
per-burst latency percentiles. Needs root (EAL).

Options:
  --duration S       measured seconds (default 10)
  --warmup S         seconds run before measuring (default 1)
  --no-huge          EAL --no-huge (default: hugepages, --in-memory)
  --memory-mb M      EAL -m with --no-huge (default: what the pool needs)
  --lcores LIST      EAL -l (default 0,1: main lcore 0, the worker on 1;
                     a single lcore runs the worker on the main lcore)
  --file-prefix P    EAL --file-prefix (default ss-bench-PID)
  --members K        the node is member 1 of K equal members (default 1:
                     it owns every bucket); others' traffic is dropped
  --layout L         rendezvous (default) or ranges
  --buckets N        buckets in the table (default 65536)
  --extra-flows N    also load N flows the traffic never touches
  --flow-capacity N  flow-table slots (default: 1.25 x the flows loaded)
  --nic-hash         receive as from a NIC with RSS (the cluster's symmetric
                     key) and IPv4 checksum offload: each mbuf is stamped
                     with its frame's Toeplitz hash, packet type and
                     checksum-good flag on receive (an RX callback; its few
                     cycles per frame count against synshare), and the
                     worker takes them as a node on such a port does
  --nic-stamp-only   stamp the mbufs as --nic-hash does, but run the worker
                     as for a port that gives nothing (what stamping costs)
  --json             print one JSON object instead of the report
  --plan             scan the file, print the mbuf pool it needs (JSON:
                     packets, mbufs, data_room, memory_mb) and exit
";

/// Everything the file tells before EAL starts.
struct Scan {
    packets: u64,
    max_len: usize,
    /// TCP flows to a VIP, each once per frame it appears in.
    keys: Vec<(FlowKey, Addr, Addr, u16, u16)>,
    /// What a NIC would stamp into each frame's mbuf, in the file's order.
    stamps: Vec<NicStamp>,
}

/// What a NIC with RSS (the symmetric key, IPv4/IPv6 TCP/UDP) and IPv4
/// checksum offload reports for `frame`: the hash and packet type of plain
/// TCP and UDP (no IPv4 options or IPv6 extension headers, not a
/// fragment), and the IPv4 header checksum's verdict.
fn nic_stamp(frame: &[u8]) -> NicStamp {
    let mut stamp = NicStamp {
        len: frame.len().min(usize::from(u16::MAX)) as u16,
        ..NicStamp::default()
    };
    // The checksum verdict of an untagged IPv4 header, whatever follows.
    if frame.len() >= 34 && frame[12..14] == [8, 0] {
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        if ihl >= 20 && frame.len() >= 14 + ihl {
            stamp.ip_checksum = if packet::checksum(&frame[14..14 + ihl]) == 0 {
                IpChecksum::Good
            } else {
                IpChecksum::Bad
            };
        }
    }
    let Ok(f) = packet::parse(frame) else { return stamp };
    let (l3, ip) = match f.payload {
        Payload::Ipv4(ip) => (ptype::L3_IPV4, ip),
        Payload::Ipv6(ip) => (ptype::L3_IPV6, ip),
        _ => return stamp,
    };
    let plain_len = if l3 == ptype::L3_IPV4 { 20 } else { 40 };
    if ip.fragment || usize::from(ip.l4_offset) != usize::from(f.l3_offset) + plain_len {
        return stamp;
    }
    let (l4, sport, dport) = match ip.l4 {
        L4::Tcp { src_port, dst_port, .. } => (ptype::L4_TCP, src_port, dst_port),
        L4::Udp { src_port, dst_port } => (ptype::L4_UDP, src_port, dst_port),
        _ => return stamp,
    };
    stamp.packet_type = l3 | l4;
    stamp.rss = Some(symmetric::tuple(ip.src, ip.dst, sport, dport).0);
    stamp
}

fn scan(path: &Path, nic_hash: bool) -> Result<Scan, String> {
    let mut s = Scan {
        packets: 0,
        max_len: 0,
        keys: Vec::new(),
        stamps: Vec::new(),
    };
    let vips = [Addr::V4(V4_VIP), Addr::V6(V6_VIP)];
    s.packets = for_each_frame(path, |f| {
        s.max_len = s.max_len.max(f.len());
        if nic_hash {
            s.stamps.push(nic_stamp(f));
        }
        let Ok(frame) = packet::parse(f) else { return };
        if let Payload::Ipv4(ip) | Payload::Ipv6(ip) = frame.payload {
            if let L4::Tcp { src_port, dst_port, .. } = ip.l4 {
                if vips.contains(&ip.dst) {
                    s.keys.push((
                        FlowKey::new(ip.src, src_port, ip.dst, dst_port),
                        ip.src,
                        ip.dst,
                        src_port,
                        dst_port,
                    ));
                }
            }
        }
    })?;
    if s.packets == 0 {
        return Err(format!("{}: no frames", path.display()));
    }
    Ok(s)
}

/// The mbuf pool the file needs: every frame held by net_pcap, plus the
/// frames in flight and the per-lcore caches.
#[derive(Clone, Copy, Debug)]
struct PoolPlan {
    mbufs: u32,
    data_room: u16,
    memory_mb: u32,
}

fn pool_plan(packets: u64, max_len: usize) -> Result<PoolPlan, String> {
    const HEADROOM: usize = 128;
    let data_room = HEADROOM + max_len.div_ceil(64).max(2) * 64;
    let data_room = u16::try_from(data_room).map_err(|_| format!("frames of {max_len} bytes are too long"))?;
    let mbufs = packets
        .checked_add(16_384)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("{packets} frames are too many"))?;
    // Per mbuf: the data room, the rte_mbuf (128) and the mempool's object
    // header and alignment (about 64); then room for EAL and the drivers.
    let bytes = u64::from(mbufs) * (u64::from(data_room) + 192);
    let memory_mb = (bytes.div_ceil(1 << 20) + 256) as u32;
    Ok(PoolPlan {
        mbufs,
        data_room,
        memory_mb,
    })
}

/// Times the worker's bursts while `measuring` is set.
struct Observer {
    measuring: Arc<AtomicBool>,
    histogram: Histogram<u64>,
    wire: u64,
    kernel: u64,
    bursts: u64,
    busy_cycles: u64,
}

impl BurstObserver for Observer {
    #[inline]
    fn burst(&mut self, wire: usize, kernel: usize, cycles: u64) {
        if self.measuring.load(Ordering::Relaxed) {
            self.wire += wire as u64;
            self.kernel += kernel as u64;
            self.bursts += 1;
            self.busy_cycles += cycles;
            self.histogram.saturating_record(cycles.max(1));
        }
    }
}

/// (VmRSS, HugetlbPages, AnonHugePages) of this process in KiB: the last
/// is the heap on transparent huge pages (the flow table's, when the
/// kernel gave them).
fn memory_kib() -> (u64, u64, u64) {
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    (
        field(&status, "VmRSS:"),
        field(&status, "HugetlbPages:"),
        field(&rollup, "AnonHugePages:"),
    )
}

fn layout(text: &str) -> Result<Layout, String> {
    match text {
        "rendezvous" => Ok(Layout::Rendezvous),
        "ranges" => Ok(Layout::Ranges),
        other => Err(format!("--layout {other:?}: rendezvous or ranges")),
    }
}

/// `synshare-bench bench`.
pub fn run(args: &[String]) -> Result<(), String> {
    let opts = Opts::parse(
        "bench",
        args,
        &[
            "--pcap",
            "--duration",
            "--warmup",
            "--memory-mb",
            "--lcores",
            "--file-prefix",
            "--members",
            "--layout",
            "--buckets",
            "--extra-flows",
            "--flow-capacity",
        ],
        &["--no-huge", "--json", "--plan", "--nic-hash", "--nic-stamp-only"],
    )?;
    let pcap = PathBuf::from(
        opts.get("--pcap")
            .ok_or_else(|| format!("{PROGRAM} bench: --pcap FILE is required"))?,
    );
    let pcap_text = pcap.to_str().ok_or("--pcap: the path must be UTF-8")?;
    if pcap_text.contains(',') || pcap_text.contains('=') {
        return Err("--pcap: the path must not contain ',' or '=' (DPDK device arguments)".into());
    }
    let duration: f64 = opts.num("--duration", 10.0)?;
    let warmup: f64 = opts.num("--warmup", 1.0)?;
    if !(0.1..=3600.0).contains(&duration) || !(0.0..=60.0).contains(&warmup) {
        return Err("--duration from 0.1 to 3600 s, --warmup from 0 to 60 s".into());
    }
    let members: u32 = opts.num("--members", 1)?;
    if !(1..=1024).contains(&members) {
        return Err(format!("--members {members}: from 1 to 1024"));
    }
    let buckets: u32 = opts.num("--buckets", 65536)?;
    if !buckets.is_power_of_two() || !(64..=1 << 24).contains(&buckets) {
        return Err(format!("--buckets {buckets}: a power of two from 64 to 16777216"));
    }
    let layout = layout(opts.get("--layout").unwrap_or("rendezvous"))?;
    let extra: u64 = opts.num("--extra-flows", 0)?;
    if extra > 200_000_000 {
        return Err(format!("--extra-flows {extra}: at most 200000000"));
    }
    let huge = !opts.has("--no-huge");
    let json_out = opts.has("--json");
    let nic_hash = opts.has("--nic-hash");
    let stamp_only = opts.has("--nic-stamp-only");

    let t = Instant::now();
    let mut scanned = scan(&pcap, (nic_hash || stamp_only) && !opts.has("--plan"))?;
    let plan = pool_plan(scanned.packets, scanned.max_len)?;
    if opts.has("--plan") {
        println!(
            "{}",
            json!({
                "packets": scanned.packets,
                "max_frame": scanned.max_len,
                "mbufs": plan.mbufs,
                "data_room": plan.data_room,
                "memory_mb": plan.memory_mb,
            })
        );
        return Ok(());
    }
    let scan_s = t.elapsed().as_secs_f64();
    let memory_mb: u32 = opts.num("--memory-mb", plan.memory_mb)?;

    // The table and this node's view: member 1 of `members` equal ones.
    let weighted: Vec<Weighted> = (1..=members)
        .map(|i| Weighted {
            id: MemberId(i),
            weight: 1.0,
        })
        .collect();
    let table = Table::build(layout, &weighted, buckets);
    let mut view = OwnershipView::new(buckets, 1);
    for (b, owner) in table.owners().iter().enumerate() {
        if *owner == Some(MemberId(1)) {
            view.set(Bucket(b as u32), BucketState::Settled);
        }
    }
    let classifier = Arc::new(synth::classifier());

    let prefix = opts
        .get("--file-prefix")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("ss-bench-{}", std::process::id()));
    let lcores = opts.get("--lcores").unwrap_or("0,1");
    let mut eal_args: Vec<String> = vec![
        "-l".into(),
        lcores.into(),
        "--file-prefix".into(),
        prefix,
        "--no-pci".into(),
        "--vdev".into(),
        format!("net_pcap0,rx_pcap={pcap_text},infinite_rx=1"),
        "--vdev".into(),
        "net_null0,no-rx=1".into(),
        "--log-level".into(),
        "lib.eal:error".into(),
    ];
    if huge {
        eal_args.push("--in-memory".into());
    } else {
        eal_args.extend(["--no-huge".into(), "-m".into(), memory_mb.to_string()]);
    }
    let eal = Eal::init(&eal_args).map_err(|e| {
        format!(
            "EAL: {e}{}",
            if huge {
                " (no free hugepages? try --no-huge)"
            } else {
                ""
            }
        )
    })?;
    let hz = dpdk::tsc_hz().max(1_000);
    let pool = Arc::new(
        Mempool::new("ss_bench", plan.mbufs, 256, plan.data_room, 0)
            .map_err(|e| format!("{e} ({} mbufs of {} bytes)", plan.mbufs, plan.data_room))?,
    );
    // One RX queue, `tx_queues` TX queues; `what` names the port in errors.
    let start = |name: &str, tx_queues: u16, what: String| -> Result<Port, String> {
        let config = PortConfig {
            rx_queues: 1,
            tx_queues,
            rx_desc: 1024,
            tx_desc: 1024,
            rss_key: None,
            promiscuous: false,
        };
        let id = Port::find(name).map_err(|e| e.to_string())?;
        Port::start(id, name, &config, Arc::clone(&pool)).map_err(|e| format!("{what}: {e}"))
    };
    let t = Instant::now();
    let pcap_port = start("net_pcap0", 1, format!("net_pcap0 (loading {})", pcap.display()))?;
    let load_s = t.elapsed().as_secs_f64();
    let null_port = start("net_null0", 2, "net_null0".into())?;
    let stamping = if nic_hash || stamp_only {
        Some(
            pcap_port
                .rx_queue(0)
                .stamp_replay(&std::mem::take(&mut scanned.stamps))
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };

    // Pre-load the flow table, on the worker's clock.
    let t = Instant::now();
    let owned = |src: Addr, dst: Addr, sport: u16, dport: u16| {
        view.state(classifier.connection_value(src, dst, sport, dport).bucket(view.mask())) != BucketState::Foreign
    };
    let keys = std::mem::take(&mut scanned.keys);
    let mut distinct = std::collections::HashSet::with_capacity(keys.len());
    let own_keys: Vec<FlowKey> = keys
        .iter()
        .filter(|(_, src, dst, sport, dport)| owned(*src, *dst, *sport, *dport))
        .filter(|(_, src, _, sport, _)| distinct.insert((*src, *sport)))
        .map(|(k, ..)| *k)
        .collect();
    drop(distinct);
    drop(keys);
    let wanted = own_keys.len() as u64 + extra;
    let default_capacity = (wanted + wanted / 4).max(1024);
    let capacity: u64 = opts.num("--flow-capacity", default_capacity)?;
    if !(8..=1 << 31).contains(&capacity) {
        return Err(format!("--flow-capacity {capacity}: from 8 to 2147483648"));
    }
    let mut flows = NodeFlows::new_in(capacity as usize, FlowTimeouts::default());
    let now_ms = (dpdk::tsc() / (hz / 1_000)) as u32;
    let mut loaded = 0u64;
    for k in &own_keys {
        loaded += u64::from(flows.insert(*k, FlowState::Established, now_ms));
    }
    let pcap_flows = loaded;
    drop(own_keys);
    let mut extra_loaded = 0u64;
    let mut i = 0u64;
    while extra_loaded < extra && i < extra.saturating_mul(4).max(1024) {
        // Clients in 2001:db8:e::/64, which pktgen never uses.
        let mut a = [0u8; 16];
        a[0..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0e]);
        a[8..16].copy_from_slice(&(i + 1).to_be_bytes());
        let port = 1024 + (i % 60_000) as u16;
        i += 1;
        if owned(Addr::V6(a), Addr::V6(V6_VIP), port, 80)
            && flows.insert(
                FlowKey::new(Addr::V6(a), port, Addr::V6(V6_VIP), 80),
                FlowState::Established,
                now_ms,
            )
        {
            extra_loaded += 1;
        }
    }
    let preload_s = t.elapsed().as_secs_f64();
    let (rss_loaded, huge_loaded, _) = memory_kib();
    let table_bytes = flows.memory_bytes();
    let table_capacity = flows.capacity();
    let table_live = flows.len();

    // The worker, on its own lcore when there is one.
    let (publisher, mut subscribers) = Publisher::new(1, &view);
    let sub = subscribers.pop().ok_or("no subscriber")?;
    let stats = Arc::new(WorkerStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let worker = Worker {
        index: 0,
        classifier: Arc::clone(&classifier),
        view: sub,
        lease: Lease::forever(),
        flows,
        wire_rx: pcap_port.rx_queue(0),
        wire_tx: null_port.tx_queue(0),
        kernel_rx: null_port.rx_queue(0),
        kernel_tx: null_port.tx_queue(1),
        use_rss: nic_hash,
        stats: Arc::clone(&stats),
        stop: Arc::clone(&stop),
        tuning: WorkerTuning {
            offloads: Some(if nic_hash {
                Offloads {
                    rss: RssTypes::ALL,
                    ip_checksum: true,
                }
            } else {
                Offloads::default()
            }),
            ..WorkerTuning::default()
        },
    };
    let observer = Observer {
        measuring: Arc::clone(&measuring),
        histogram: Histogram::new_with_bounds(1, 1 << 40, 3).map_err(|e| e.to_string())?,
        wire: 0,
        kernel: 0,
        bursts: 0,
        busy_cycles: 0,
    };
    let done: Arc<Mutex<Option<Observer>>> = Arc::new(Mutex::new(None));
    let job = {
        let done = Arc::clone(&done);
        move || {
            let mut observer = observer;
            let rc = worker.run_observed(&mut observer);
            if let Ok(mut slot) = done.lock() {
                *slot = Some(observer);
            }
            rc
        }
    };
    let timer = {
        let stop = Arc::clone(&stop);
        let measuring = Arc::clone(&measuring);
        move || -> (u64, u64, (u64, u64, u64)) {
            std::thread::sleep(Duration::from_secs_f64(warmup));
            let t0 = dpdk::tsc();
            measuring.store(true, Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs_f64(duration));
            measuring.store(false, Ordering::Relaxed);
            let t1 = dpdk::tsc();
            // While the worker still holds its flow table.
            let memory = memory_kib();
            stop.store(true, Ordering::Relaxed);
            (t0, t1, memory)
        }
    };
    let worker_lcore = eal.worker_lcores().first().copied();
    let (t0, t1, (rss_end, huge_end, thp_end)) = match worker_lcore {
        Some(lcore) => {
            dpdk::launch(lcore, job).map_err(|e| e.to_string())?;
            let window = timer();
            dpdk::wait_all();
            window
        }
        None => {
            let handle = std::thread::spawn(timer);
            job();
            handle.join().map_err(|_| "timer thread panicked")?
        }
    };
    let obs = done
        .lock()
        .ok()
        .and_then(|mut s| s.take())
        .ok_or("the worker did not report")?;
    let counts = stats.load();
    let pcap_stats = pcap_port.stats().map_err(|e| e.to_string())?;
    let null_stats = null_port.stats().map_err(|e| e.to_string())?;
    drop(publisher);
    drop(null_port);
    drop(pcap_port);
    drop(pool);
    drop(eal);

    let window_s = t1.wrapping_sub(t0) as f64 / hz as f64;
    let packets = obs.wire.max(1);
    let mpps = obs.wire as f64 / window_s / 1e6;
    let busy_cpp = obs.busy_cycles as f64 / packets as f64;
    let wall_cpp = t1.wrapping_sub(t0) as f64 / packets as f64;
    let ns = |cycles: u64| cycles as f64 * 1e9 / hz as f64;
    let h = &obs.histogram;
    let pct = |q: f64| ns(h.value_at_quantile(q));
    let mut by_counter = serde_json::Map::new();
    let mut drops = 0u64;
    let mut forwarded = 0u64;
    for c in Counter::ALL {
        let v = counts.get(*c);
        if v > 0 {
            by_counter.insert(c.name().to_owned(), json!(v));
            match c.action() {
                Action::Drop => drops += v,
                _ => forwarded += v,
            }
        }
    }
    let memory = if huge { "hugepages" } else { "no-huge" };
    let report = json!({
        "bench": "synshare",
        "pcap": pcap_text,
        "memory": memory,
        "duration_s": window_s,
        "mpps": mpps,
        "packets": obs.wire,
        "cycles_per_packet": busy_cpp,
        "wall_cycles_per_packet": wall_cpp,
        "tsc_hz": hz,
        "bursts": obs.bursts,
        "mean_burst": obs.wire as f64 / obs.bursts.max(1) as f64,
        "burst_latency_ns": {
            "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "p999": pct(0.999),
            "max": ns(h.max()), "mean": h.mean() * 1e9 / hz as f64,
        },
        "nic_hash": nic_hash,
        "nic_stamps_out_of_step": stamping.as_ref().map_or(0, |s| s.out_of_step()),
        "pcap_frames": scanned.packets,
        "flows_loaded": pcap_flows,
        "extra_flows_loaded": extra_loaded,
        "flow_table": {
            "capacity": table_capacity, "live_at_start": table_live, "bytes": table_bytes,
            "bytes_per_slot": table_bytes as f64 / table_capacity.max(1) as f64,
            "bytes_per_flow": table_bytes as f64 / table_live.max(1) as f64,
        },
        "rss_kib": { "loaded": rss_loaded, "running": rss_end },
        "hugetlb_kib": { "loaded": huge_loaded, "running": huge_end },
        "anon_huge_kib": thp_end,
        "mbufs": plan.mbufs,
        "data_room": plan.data_room,
        "members": members,
        "owned_buckets": view.count(BucketState::Settled),
        "counters": by_counter,
        "decided": { "forwarded": forwarded, "dropped": drops },
        "ports": {
            "pcap_rx": pcap_stats.ipackets, "pcap_rx_nombuf": pcap_stats.rx_nombuf,
            "null_tx": null_stats.opackets, "null_oerrors": null_stats.oerrors,
        },
        "setup_s": { "scan": scan_s, "pcap_load": load_s, "preload": preload_s },
    });
    if json_out {
        println!("{report}");
        return Ok(());
    }
    println!(
        "bench: {} ({} frames, {} B data room x {} mbufs), {memory}, {members} member(s), {} of {} buckets owned",
        pcap.display(),
        scanned.packets,
        plan.data_room,
        plan.mbufs,
        view.count(BucketState::Settled),
        buckets
    );
    if let Some(s) = &stamping {
        println!(
            "bench: --nic-hash: RSS hash, packet type and IPv4 checksum flag stamped on receive ({} frames out of step)",
            s.out_of_step()
        );
    }
    println!(
        "bench: flow table: {pcap_flows} flows of the file + {extra_loaded} extra, {table_capacity} slots, {:.1} MiB ({:.1} B/slot, {:.1} B/flow)",
        table_bytes as f64 / (1 << 20) as f64,
        table_bytes as f64 / table_capacity.max(1) as f64,
        table_bytes as f64 / table_live.max(1) as f64
    );
    println!(
        "bench: memory: VmRSS {:.1} MiB after loading, {:.1} MiB running ({:.1} MiB on transparent huge pages); hugepages {:.1} MiB",
        rss_loaded as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        thp_end as f64 / 1024.0,
        huge_end as f64 / 1024.0
    );
    println!(
        "bench: {:.3} Mpps over {window_s:.2} s ({} packets); {busy_cpp:.1} cycles/packet busy, {wall_cpp:.1} wall (TSC {:.3} GHz)",
        mpps,
        obs.wire,
        hz as f64 / 1e9
    );
    println!(
        "bench: per-burst latency (mean burst {:.1}): p50 {:.0} ns, p90 {:.0} ns, p99 {:.0} ns, p99.9 {:.0} ns, max {:.0} ns",
        obs.wire as f64 / obs.bursts.max(1) as f64,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        ns(h.max())
    );
    println!("bench: decided (whole run): {forwarded} forwarded, {drops} dropped");
    for c in Counter::ALL {
        let v = counts.get(*c);
        if v > 0 {
            println!("  {:<28} {v}", c.name());
        }
    }
    println!(
        "bench: ports: net_pcap0 rx {} (rx_nombuf {}), net_null0 tx {}",
        pcap_stats.ipackets, pcap_stats.rx_nombuf, null_stats.opackets
    );
    Ok(())
}
