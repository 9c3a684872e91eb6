//! Status and metrics are served on threads of their own from a snapshot
//! the control loop refreshes; requests that change something come back to
//! the loop through a channel. A slow or idle client stalls neither the
//! loop nor the exchange.

use super::Sharing;
use crate::status::http::{self, MetricsServer, PageData};
use crate::status::server::{self, StatusListener};
use crate::status::NodeStatus;
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::warn;

/// A request of the status socket, and where its answer goes.
pub(super) type Request = (crate::status::request::Request, mpsc::Sender<String>);

/// The status socket's thread, the metrics server and what they serve.
pub(super) struct Publishing {
    /// The node's status, JSON.
    snapshot: Arc<Mutex<String>>,
    /// The metrics, Prometheus's text.
    metrics: Arc<Mutex<String>>,
    page: StatusPage,
    /// The status socket's requests other than `status`.
    pub requests: mpsc::Receiver<Request>,
    service: Option<JoinHandle<()>>,
    service_stop: Arc<AtomicBool>,
    metrics_server: Option<MetricsServer>,
    /// Where the metrics are served (a reload may move them).
    metrics_addr: Option<SocketAddr>,
    last_snapshot: Option<Instant>,
}

impl Publishing {
    /// Spawns the status socket's thread and the metrics server.
    pub fn start(
        listener: StatusListener,
        metrics_listener: Option<TcpListener>,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<Publishing, String> {
        let snapshot: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
        let page = StatusPage::new();
        let metrics: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
        let (requests_tx, requests) = mpsc::channel::<Request>();
        let service_stop = Arc::new(AtomicBool::new(false));
        let service = server::spawn_service(listener, Arc::clone(&snapshot), requests_tx, Arc::clone(&service_stop))
            .map_err(|e| format!("status thread: {e}"))?;
        let route = http::page_route(Arc::clone(&metrics), Arc::clone(&snapshot), page.data.clone());
        let metrics_server = metrics_listener
            .map(|l| MetricsServer::spawn(l, route))
            .transpose()
            .map_err(|e| format!("metrics thread: {e}"))?;
        Ok(Publishing {
            snapshot,
            metrics,
            page,
            requests,
            service: Some(service),
            service_stop,
            metrics_server,
            metrics_addr,
            last_snapshot: None,
        })
    }

    /// Whether a new snapshot is due (every 50 ms); if so, from now.
    pub fn snapshot_due(&mut self) -> bool {
        let due = self
            .last_snapshot
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(50));
        if due {
            self.last_snapshot = Some(Instant::now());
        }
        due
    }

    /// Serves `snap` as status and metrics, and on the status page with
    /// `first`, the first segment's shares.
    pub fn publish(&mut self, snap: &NodeStatus, first: Option<&Sharing>) {
        if let Ok(mut cell) = self.metrics.lock() {
            *cell = crate::status::metrics::render(snap);
        }
        if let Ok(mut cell) = self.snapshot.lock() {
            *cell = serde_json::to_string(snap).unwrap_or_default();
        }
        // The status page: the first segment's table when it changes,
        // and one history point a second for the last five minutes.
        if let Some(sharing) = first {
            self.page.table(sharing);
        }
        self.page.history(snap);
    }

    /// Serves the metrics on `addr` from now (None: not at all).
    pub fn move_metrics(&mut self, addr: Option<SocketAddr>) {
        if addr == self.metrics_addr {
            return;
        }
        // The old port is closed before the new one opens.
        drop(self.metrics_server.take());
        let route = http::page_route(
            Arc::clone(&self.metrics),
            Arc::clone(&self.snapshot),
            self.page.data.clone(),
        );
        match http::listen(addr).and_then(|l| {
            l.map(|l| MetricsServer::spawn(l, route).map_err(|e| e.to_string()))
                .transpose()
        }) {
            Ok(m) => self.metrics_server = m,
            Err(e) => warn!(error = %e, "metrics not served"),
        }
        self.metrics_addr = addr;
    }

    /// Stops the status socket's thread and the metrics server.
    pub fn stop(&mut self) {
        self.service_stop.store(true, Ordering::Relaxed);
        if let Some(service) = self.service.take() {
            let _ = service.join();
        }
        drop(self.metrics_server.take());
    }
}

/// The status page's table and history, as served.
struct StatusPage {
    data: PageData,
    /// The epoch of the table served (none yet: `u64::MAX`).
    epoch: u64,
    points: VecDeque<serde_json::Value>,
    last_point: Option<Instant>,
    /// Buckets claimed and released up to the last point.
    handed: (u64, u64),
}

impl StatusPage {
    fn new() -> StatusPage {
        StatusPage {
            data: PageData::default(),
            epoch: u64::MAX,
            points: VecDeque::new(),
            last_point: None,
            handed: (0, 0),
        }
    }

    /// Serves the table of `sharing` if its epoch changed.
    fn table(&mut self, sharing: &Sharing) {
        let (epoch, owners) = sharing.owners();
        if epoch != self.epoch {
            self.epoch = epoch;
            if let Ok(mut cell) = self.data.table.lock() {
                *cell = serde_json::json!({ "epoch": epoch, "owners": owners }).to_string();
            }
        }
    }

    /// Adds a point of `snap` to the history if a second has passed since
    /// the last, keeping five minutes.
    fn history(&mut self, snap: &NodeStatus) {
        if self.last_point.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.last_point = Some(Instant::now());
        let (claimed, released) = snap
            .exchange
            .as_ref()
            .map_or((0, 0), |x| (x.stats.buckets_claimed, x.stats.buckets_released));
        let buckets = f64::from(snap.buckets.max(1));
        self.points.push_back(serde_json::json!({
            "t": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            "members": snap.members.iter().map(|m| serde_json::json!({
                "id": m.id, "share": f64::from(m.buckets) / buckets, "weight": m.weight,
            })).collect::<Vec<_>>(),
            "availability": snap.availability.as_ref().map_or(1.0, |a| if a.capacity > 0.0 { a.smoothed / a.capacity } else { 0.0 }),
            "held": snap.held,
            "claimed": claimed.saturating_sub(self.handed.0),
            "released": released.saturating_sub(self.handed.1),
        }));
        self.handed = (claimed, released);
        while self.points.len() > 300 {
            self.points.pop_front();
        }
        if let Ok(mut cell) = self.data.history.lock() {
            *cell = serde_json::Value::Array(self.points.iter().cloned().collect()).to_string();
        }
    }
}
