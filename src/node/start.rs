//! [`Node::start`]: EAL, the pool, every segment, measuring, the status
//! socket and the metrics, then the workers; the node is serving when it
//! returns.

use super::availability::{Availability, Measuring};
use super::eal::{eal_args, mbuf_pool, worker_lcores};
use super::publish::Publishing;
use super::run_loop::Watchdog;
use super::segment::{BringUp, Segment, WorkerSettings};
use super::{socket_path, Node, Sharing};
use crate::config::NodeConfig;
use crate::status;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use synshare_dpdk::worker::Worker;
use synshare_dpdk::{self as dpdk, Eal};
use tracing::info;

/// The signals the control loop acts on.
pub(super) struct Signals {
    /// SIGTERM: drains first (see `stop_drain_s`).
    pub stop: Arc<AtomicBool>,
    /// SIGINT: stops at once.
    pub interrupt: Arc<AtomicBool>,
    /// SIGHUP: reloads the configuration.
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// Handles SIGTERM and SIGINT (SIGHUP only once [`Signals::handle_reload`]).
    fn handle_stop() -> Result<Signals, String> {
        let signals = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            interrupt: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
        };
        signal_hook::flag::register(SIGTERM, Arc::clone(&signals.stop))
            .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        signal_hook::flag::register(SIGINT, Arc::clone(&signals.interrupt))
            .map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        Ok(signals)
    }

    /// Handles SIGHUP.
    fn handle_reload(&self) -> Result<(), String> {
        signal_hook::flag::register(SIGHUP, Arc::clone(&self.reload))
            .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
        Ok(())
    }
}

impl Node {
    /// Starts the node: every segment up, its workers launched, the status
    /// socket and the metrics served.
    pub fn start(c: NodeConfig, config_path: &Path) -> Result<Node, String> {
        let signals = Signals::handle_stop()?;
        // What a reload compares the file with.
        let started_text =
            std::fs::read_to_string(config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
        let (args, huge) = eal_args(&c);
        info!(node = %c.name, config = %config_path.display(), eal = ?args, hugepages = huge, "starting");
        // Locals drop in reverse order: segments (ports), then the pool, then EAL.
        let eal = Eal::init(&args).map_err(|e| format!("EAL: {e}"))?;
        let lcores = worker_lcores(&eal, &c)?;
        let pool = Arc::new(mbuf_pool(&c)?);
        let availability = Availability::new(&c);
        let settings = WorkerSettings::new(&c);
        let up = BringUp {
            eal: &eal,
            pool: &pool,
            config: &c,
            workers: &settings,
            initial_weight: availability.initial_weight(),
        };
        let mut segments: Vec<Segment> = Vec::new();
        let mut pending: Vec<Vec<Worker>> = Vec::new();
        for v in &c.all_segments() {
            let (segment, workers) = Segment::start(&up, v)?;
            segments.push(segment);
            pending.push(workers);
        }
        let dynamic = segments.iter().any(|s| s.sharing.exchange().is_some());
        let measuring = Measuring::start(&c, dynamic)?;
        signals.handle_reload()?;
        let socket = socket_path(&c);
        let group = c.status_group.as_deref().map(status::server::group_id).transpose()?;
        let listener =
            status::server::listen(&socket, group).map_err(|e| format!("status socket {}: {e}", socket.display()))?;
        let metrics_listener = crate::status::http::listen(c.metrics)?;
        // Every fallible step is done: launch the workers.
        launch(pending, lcores, &settings.stop)?;
        let started = Instant::now();
        announce(&c, &segments, &socket);
        let publishing = match Publishing::start(listener, metrics_listener, c.metrics) {
            Ok(p) => p,
            Err(e) => {
                // The workers run already: stop them before giving up.
                settings.stop.store(true, Ordering::Relaxed);
                dpdk::wait_all();
                return Err(e);
            }
        };
        // systemd: ready now; the watchdog is fed from the loop while every
        // exchange thread is alive (no-ops without NOTIFY_SOCKET).
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("serving")]);
        Ok(Node {
            config: c,
            config_path: config_path.to_owned(),
            started_text,
            huge,
            started,
            signals,
            availability,
            measuring,
            publishing,
            watchdog: Watchdog::new(),
            socket,
            worker_stop: settings.stop,
            stopping: None,
            segments,
            pool,
            eal,
        })
    }
}

/// Launches every segment's workers, one per lcore; stops those launched
/// if one fails.
fn launch(pending: Vec<Vec<Worker>>, lcores: Vec<u32>, stop: &AtomicBool) -> Result<(), String> {
    let mut lcores = lcores.into_iter();
    for workers in pending {
        for w in workers {
            let Some(lcore) = lcores.next() else { break };
            if let Err(e) = dpdk::launch(lcore, move || w.run()) {
                stop.store(true, Ordering::Relaxed);
                dpdk::wait_all();
                return Err(e.to_string());
            }
        }
    }
    Ok(())
}

/// Logs and prints that the node serves, a line per segment.
fn announce(c: &NodeConfig, segments: &[Segment], socket: &Path) {
    info!(socket = %socket.display(), segments = segments.len(), "serving");
    for s in segments {
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
}
