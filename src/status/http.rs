//! The HTTP server of the metrics and the status page (`metrics` in the
//! configuration): hyper on a thread of its own, apart from the status
//! socket's, with a deadline on every connection and a limit on how many
//! are open at once.

use super::metrics::CONTENT_TYPE;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// The status page: one HTML file, no external assets.
pub const STATUS_PAGE: &str = include_str!("../web/status.html");

/// What the metrics port answers a GET of a path with: a content type and
/// a body, or `None` (404). Called on the metrics thread: it reads what the
/// control loop last published, never waits for it.
pub type Route = Arc<dyn Fn(&str) -> Option<(&'static str, String)> + Send + Sync>;

/// Connections open at once; one more is closed at once.
pub const MAX_CONNECTIONS: usize = 32;
/// A request's head must arrive within this.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);
/// A connection is closed this long after it was accepted, whatever it is
/// doing (a slow reader of a large answer included).
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// The listener on `addr`, the configured metrics address (none without
/// one), bound now so that a start fails on an address in use.
pub fn listen(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let l = TcpListener::bind(addr).map_err(|e| format!("metrics on {addr}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| format!("metrics on {addr}: {e}"))?;
    info!(%addr, "metrics");
    Ok(Some(l))
}

/// The metrics and status-page server on its own thread; stopped and
/// joined when dropped.
pub struct MetricsServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Serves `route` on `listener` (from [`listen`]) until dropped.
    pub fn spawn(listener: TcpListener, route: Route) -> std::io::Result<MetricsServer> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || runtime.block_on(accept_loop(listener, route, stopped)))?;
        Ok(MetricsServer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, route: Route, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "metrics: not served");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: try again shortly.
                warn!(error = %e, "metrics: accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over the limit: closed at once (the deadlines free slots).
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let route = Arc::clone(&route);
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let response = answer(&route, request.method(), request.uri().path());
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_DEADLINE)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
        });
    }
}

type Body = http_body_util::Full<hyper::body::Bytes>;

/// The response to `method path`.
fn answer(route: &Route, method: &hyper::Method, path: &str) -> hyper::Response<Body> {
    let (status, kind, body) = if method != hyper::Method::GET && method != hyper::Method::HEAD {
        (
            hyper::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        )
    } else {
        match route(path) {
            Some((kind, body)) => (hyper::StatusCode::OK, kind, body),
            None => (
                hyper::StatusCode::NOT_FOUND,
                "text/plain",
                "not found: GET /metrics, / (status page), /status.json, /table.json, /history.json\n".to_owned(),
            ),
        }
    };
    let mut response = hyper::Response::new(Body::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

/// What the control loop last published in `cell`.
fn read(cell: &Mutex<String>) -> String {
    cell.lock().map(|s| s.clone()).unwrap_or_default()
}

/// A node's metrics port, from what its control loop last published: the
/// metrics text, the status page, the status, the table, the history.
pub fn page_route(metrics_text: Arc<Mutex<String>>, snapshot: Arc<Mutex<String>>, page: PageData) -> Route {
    Arc::new(move |path: &str| match path {
        "/metrics" => Some((CONTENT_TYPE, read(&metrics_text))),
        "/" | "/index.html" => Some(("text/html; charset=utf-8", STATUS_PAGE.to_owned())),
        "/status.json" => Some(("application/json", read(&snapshot))),
        "/table.json" => Some(("application/json", read(&page.table))),
        "/history.json" => Some(("application/json", read(&page.history))),
        _ => None,
    })
}

/// A coordinator's metrics port: the metrics text and the exchange's
/// status, as its loop last published them (it has no status page).
pub fn coordinator_route(metrics_text: Arc<Mutex<String>>, status: Arc<Mutex<String>>) -> Route {
    Arc::new(move |path: &str| match path {
        "/metrics" => Some((CONTENT_TYPE, read(&metrics_text))),
        "/status.json" => Some(("application/json", read(&status))),
        _ => None,
    })
}

/// What the status page draws, refreshed by the control loop: the table
/// (`{"epoch", "owners": [member or null per bucket]}`) and the history of
/// the last minutes.
#[derive(Clone, Default)]
pub struct PageData {
    /// The table, JSON.
    pub table: Arc<Mutex<String>>,
    /// The history, JSON.
    pub history: Arc<Mutex<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::request::{Answer, Request};

    /// A server on a loopback port answering `/metrics` with `text`.
    fn server(text: &'static str) -> (MetricsServer, SocketAddr) {
        let listener = listen(Some(SocketAddr::from(([127, 0, 0, 1], 0)))).unwrap().unwrap();
        let addr = listener.local_addr().unwrap();
        let route: Route = Arc::new(move |path: &str| (path == "/metrics").then(|| (CONTENT_TYPE, text.to_owned())));
        (MetricsServer::spawn(listener, route).unwrap(), addr)
    }

    /// GET `path`: the whole answer, or the error.
    fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    }

    /// Idle connections held open: one read until the server closes it (EOF)
    /// or `within` passes; true if it closed.
    fn closed_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
        use std::io::Read;
        s.set_read_timeout(Some(within)).unwrap();
        matches!(s.read(&mut [0u8; 64]), Ok(0))
            || matches!(s.read(&mut [0u8; 64]), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }

    /// The old server answered the status socket and the metrics port on
    /// one thread, with a 200 ms read deadline per connection: twenty idle
    /// connections to the metrics port delayed `drain` by 4 s. Now the
    /// status socket and a scrape are both answered at once.
    #[test]
    fn idle_metrics_connections_delay_neither_drain_nor_a_scrape() {
        let dir = std::env::temp_dir().join(format!("synshare-metrics-idle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let socket = dir.join("n.sock");
        let snapshot = Arc::new(std::sync::Mutex::new("{}".to_owned()));
        let (requests_tx, requests_rx) = std::sync::mpsc::channel::<(Request, std::sync::mpsc::Sender<String>)>();
        // The control loop's side: answers what it is asked.
        let control = std::thread::spawn(move || {
            while let Ok((request, reply)) = requests_rx.recv() {
                let _ = reply.send(Answer::done(format!("{request:?}: done")).to_json());
            }
        });
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let status = crate::status::server::spawn_service(
            crate::status::server::listen(&socket, None).unwrap(),
            Arc::clone(&snapshot),
            requests_tx,
            Arc::clone(&stop),
        )
        .unwrap();
        let (metrics, addr) = server("synshare_up 1\n");
        let idle: Vec<std::net::TcpStream> = (0..20).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));

        let started = std::time::Instant::now();
        let answer = crate::status::client::request(&socket, &Request::Drain).unwrap();
        let drain_took = started.elapsed();
        assert!(answer.contains("Drain: done"), "{answer}");
        let started = std::time::Instant::now();
        let scrape = get(addr, "/metrics").unwrap();
        let scrape_took = started.elapsed();
        assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
        assert!(scrape.contains("synshare_up 1"), "{scrape}");
        assert!(get(addr, "/nothing").unwrap().starts_with("HTTP/1.1 404"));
        // Generous: the old server took 4 s here.
        assert!(drain_took < Duration::from_secs(1), "drain took {drain_took:?}");
        assert!(scrape_took < Duration::from_secs(1), "a scrape took {scrape_took:?}");

        drop(idle);
        drop(metrics);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        status.join().unwrap();
        control.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_connection_over_the_limit_is_closed_at_once_and_an_idle_one_at_its_deadline() {
        let (metrics, addr) = server("synshare_up 1\n");
        let mut idle: Vec<std::net::TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut extra = std::net::TcpStream::connect(addr).unwrap();
        assert!(
            closed_within(&mut extra, Duration::from_secs(1)),
            "over the limit, yet open"
        );
        // An idle connection sends no request head: closed after HEAD_DEADLINE.
        let started = std::time::Instant::now();
        assert!(
            closed_within(&mut idle[0], HEAD_DEADLINE + Duration::from_secs(3)),
            "idle, yet open after {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() + Duration::from_millis(300) >= HEAD_DEADLINE);
        // Their slots are free again.
        std::thread::sleep(Duration::from_millis(200));
        assert!(get(addr, "/metrics").unwrap().starts_with("HTTP/1.1 200"));
        drop(idle);
        drop(metrics);
    }
}
