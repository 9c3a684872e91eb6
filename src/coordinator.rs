//! `synshare coordinator`: the patent's coordinator mode (Fig. 2b). The
//! nodes report their availability to it; it computes the table and
//! proposes it. It is member 0, a voter that holds no buckets: while it
//! runs, the nodes hand it the leadership; when it is gone, they keep the
//! last table and fail over among themselves. In peer mode the same process
//! is the witness that lets a two-node cluster lose either node.

use crate::config::CoordinatorConfig;
use crate::exchange::{self, AgentParams};
use crate::status;
use crate::status::request::{Answer, Request};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use synshare_control::layout::MemberId;
use synshare_control::wire::Role;
use tracing::info;

/// The coordinator's status socket path.
pub fn socket_path(c: &CoordinatorConfig) -> PathBuf {
    c.status_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/run/synshare/{}.sock", c.name)))
}

/// Runs until SIGINT or SIGTERM.
pub fn run(c: CoordinatorConfig) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    let ex = exchange::start(
        &c.exchange,
        MemberId(0),
        AgentParams {
            role: Role::Coordinator,
            buckets: c.buckets,
            layout: c.layout,
            drain_ms: 0,
            name: c.name.clone(),
            // No rules: it takes no connection, and agrees with any node;
            // it leaves out of its tables a node whose rules differ from
            // the other nodes'.
            rules_digest: 0,
            pins: Vec::new(),
        },
        0,
        None,
    )?;
    let socket = socket_path(&c);
    let group = c.status_group.as_deref().map(status::server::group_id).transpose()?;
    let listener =
        status::server::listen(&socket, group).map_err(|e| format!("status socket {}: {e}", socket.display()))?;
    info!(name = %c.name, bind = %c.exchange.bind_addr(&[]), nodes = ?c.exchange.peers, "coordinator up");
    println!(
        "synshare coordinator {} up on {}, status {}",
        c.name,
        c.exchange.bind_addr(&[]),
        socket.display()
    );
    // Metrics on a thread of their own, from what this loop publishes.
    let metrics_text = Arc::new(Mutex::new(String::new()));
    let status_text = Arc::new(Mutex::new(String::new()));
    let route = status::http::coordinator_route(Arc::clone(&metrics_text), Arc::clone(&status_text));
    let metrics = status::http::listen(c.metrics)?
        .map(|l| status::http::MetricsServer::spawn(l, route))
        .transpose()
        .map_err(|e| format!("metrics thread: {e}"))?;
    let started = std::time::Instant::now();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let mut published: Option<std::time::Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if metrics.is_some() && published.is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(100)) {
            published = Some(std::time::Instant::now());
            let x = ex.status();
            let text = status::metrics::render_coordinator(&c.name, &c.cluster, started.elapsed().as_secs_f64(), &x);
            if let Ok(mut cell) = metrics_text.lock() {
                *cell = text;
            }
            if let Ok(mut cell) = status_text.lock() {
                *cell = serde_json::to_string(&x).unwrap_or_default();
            }
        }
        status::server::serve(&listener, |request| match request {
            Request::Status => serde_json::to_string(&ex.status()).unwrap_or_default(),
            // The coordinator is member 0 of its one segment: it lists the
            // directory and forwards changes as any member does.
            Request::Members { segment: 0, action } => match action.to_exchange() {
                Ok(request) => ex.members(request),
                Err(e) => Answer::refused(e).to_json(),
            },
            other => Answer::refused(format!(
                "a coordinator answers status and members only, not {other:?}: ask the nodes"
            ))
            .to_json(),
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(metrics);
    ex.stop();
    let _ = std::fs::remove_file(&socket);
    info!("coordinator stopping");
    Ok(())
}
