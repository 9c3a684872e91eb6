//! The node's status: what it is, what it owns, what it counted; served as
//! JSON on a local Unix socket and printed by `synshare status`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;
use synshare_control::layout::{MemberId, Table};
use synshare_dataplane::counters::{Counter, Counts, WorkerStats};
use synshare_dpdk::{Port, PortStats};

/// A port's driver counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PortStatus {
    /// DPDK port name.
    pub name: String,
    /// Driver.
    pub driver: String,
    /// The counters (fields of the port's own object in JSON).
    #[serde(flatten)]
    pub stats: PortStats,
}

/// One worker's figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerStatus {
    /// Worker index.
    pub index: usize,
    /// Frames from the wire.
    pub wire_rx: u64,
    /// Frames from the kernel.
    pub kernel_rx: u64,
    /// Flow-table entries.
    pub flows: u64,
    /// Flow-table capacity.
    pub flow_capacity: u64,
    /// Flows not recorded (group full of established flows).
    pub flow_insert_failed: u64,
    /// Half-open entries evicted under pressure.
    pub flow_evicted: u64,
    /// Epoch of the ownership view in use.
    pub view_epoch: u64,
    /// Outcome counters (non-zero ones).
    pub counters: BTreeMap<String, u64>,
}

/// A member as this node sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MemberStatus {
    /// Member id.
    pub id: u32,
    /// Weight used for the table.
    pub weight: f64,
    /// Buckets it owns.
    pub buckets: u32,
    /// Its share of the buckets, in percent.
    pub share_pct: f64,
}

impl From<&crate::exchange::EpochMember> for MemberStatus {
    fn from(m: &crate::exchange::EpochMember) -> Self {
        MemberStatus {
            id: m.id,
            weight: m.weight,
            buckets: m.buckets,
            share_pct: m.share_pct,
        }
    }
}

/// The node's availability and its inputs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AvailabilityStatus {
    /// Configured capacity weight in force.
    pub capacity: f64,
    /// CPU busy share of the quota, last sample.
    pub cpu_busy: Option<f64>,
    /// Connections held.
    pub connections: u64,
    /// Temperature, °C.
    pub temperature_c: Option<f64>,
    /// Power, W.
    pub power_w: Option<f64>,
    /// The local service answered its probe.
    pub service_up: bool,
    /// Availability of the last sample.
    pub raw: f64,
    /// After smoothing: the weight advertised.
    pub smoothed: f64,
    /// Draining.
    pub draining: bool,
}

/// Everything `synshare status` shows.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// The cluster's name (`cluster` in the configuration).
    #[serde(default)]
    pub cluster: String,
    /// Member id.
    pub id: u32,
    /// Segment index on this node (0: the first).
    #[serde(default)]
    pub segment: u32,
    /// DPDK version.
    pub dpdk: String,
    /// Running on hugepages.
    pub hugepages: bool,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Table epoch.
    pub epoch: u64,
    /// Table layout.
    pub layout: String,
    /// Buckets in the table.
    pub buckets: u32,
    /// Members and shares.
    pub members: Vec<MemberStatus>,
    /// The node's own MAC.
    pub node_mac: String,
    /// The cluster MAC.
    pub cluster_mac: String,
    /// The wire port.
    pub wire: PortStatus,
    /// The exception port.
    pub exception: PortStatus,
    /// Workers.
    pub workers: Vec<WorkerStatus>,
    /// Buckets this node holds.
    #[serde(default)]
    pub held: u32,
    /// The availability exchange, when configured.
    #[serde(default)]
    pub exchange: Option<crate::exchange::ExchangeStatus>,
    /// Availability, when measured.
    #[serde(default)]
    pub availability: Option<AvailabilityStatus>,
    /// The node's other segments.
    #[serde(default)]
    pub segments: Vec<NodeStatus>,
}

impl NodeStatus {
    /// Counters summed over workers.
    pub fn totals(&self) -> BTreeMap<String, u64> {
        let mut t = BTreeMap::new();
        for w in &self.workers {
            for (k, v) in &w.counters {
                *t.entry(k.clone()).or_insert(0) += v;
            }
        }
        t
    }
}

/// A port's status now.
pub fn port(p: &Port) -> PortStatus {
    PortStatus {
        name: p.name().to_owned(),
        driver: p.driver(),
        stats: p.stats().unwrap_or_default(),
    }
}

/// A worker's status from what it last published.
pub fn worker(index: usize, s: &WorkerStats) -> WorkerStatus {
    let counts: Counts = s.load();
    WorkerStatus {
        index,
        wire_rx: s.wire_rx.load(Ordering::Relaxed),
        kernel_rx: s.kernel_rx.load(Ordering::Relaxed),
        flows: s.flows.load(Ordering::Relaxed),
        flow_capacity: s.flow_capacity.load(Ordering::Relaxed),
        flow_insert_failed: s.flow_insert_failed.load(Ordering::Relaxed),
        flow_evicted: s.flow_evicted.load(Ordering::Relaxed),
        view_epoch: s.view_epoch.load(Ordering::Relaxed),
        counters: Counter::ALL
            .iter()
            .filter(|c| counts.get(**c) > 0)
            .map(|c| (c.name().to_owned(), counts.get(*c)))
            .collect(),
    }
}

/// The configured members with their shares of `table`.
pub fn members(configured: &[crate::config::MemberConfig], table: &Table) -> Vec<MemberStatus> {
    configured
        .iter()
        .map(|m| {
            let n = table.count(MemberId(m.id)) as u32;
            MemberStatus {
                id: m.id,
                weight: m.weight,
                buckets: n,
                share_pct: 100.0 * f64::from(n) / table.len().max(1) as f64,
            }
        })
        .collect()
}

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
pub fn exchange_summary(x: &crate::exchange::ExchangeStatus) -> String {
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

/// The status socket, and who may change anything through it.
pub struct StatusListener {
    listener: UnixListener,
    /// The socket's group, whose members may change things (with root and
    /// the socket's owner).
    group: Option<u32>,
    /// The socket's owner: this process's user.
    owner: u32,
}

/// Binds the status socket (replacing a stale one), non-blocking, mode
/// 0660 and of `group` when one is given: only root, this process's user
/// and the group reach it, whatever the umask. It is bound under a
/// temporary name and renamed into place once its mode and group are set,
/// so nobody connects to it in between.
pub fn listen(path: &Path, group: Option<u32>) -> std::io::Result<StatusListener> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another node answers on this socket",
        ));
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.new", std::process::id()));
    let staging = std::path::PathBuf::from(staging);
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging)?;
    let placed = (|| {
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o660))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&staging, None, Some(gid)).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot give it group {gid} ({e}); the process must be a member \
                         (under systemd: SupplementaryGroups= in a drop-in)"
                    ),
                )
            })?;
        }
        let owner = std::fs::metadata(&staging)?.uid();
        std::fs::rename(&staging, path)?;
        Ok(owner)
    })();
    let owner = match placed {
        Ok(owner) => owner,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    listener.set_nonblocking(true)?;
    Ok(StatusListener { listener, group, owner })
}

/// Requests that change nothing, answered to anyone who can connect.
const READ_ONLY: &[&str] = &["status"];

/// Whether the peer of `stream` may change anything: root, the socket's
/// owner, or a member of its group (primary, or supplementary as
/// `/proc/PID/status` lists them). The socket's mode already keeps others
/// out; this holds even if its mode or directory is changed by hand.
fn may_change(stream: &UnixStream, group: Option<u32>, owner: u32) -> Result<(), String> {
    let peer = rustix::net::sockopt::socket_peercred(stream).map_err(|e| format!("no peer credentials: {e}"))?;
    let (uid, gid) = (peer.uid.as_raw(), peer.gid.as_raw());
    if uid == 0 || uid == owner {
        return Ok(());
    }
    if let Some(g) = group {
        if gid == g || supplementary_groups(peer.pid.as_raw_pid()).contains(&g) {
            return Ok(());
        }
    }
    Err(match group {
        Some(g) => format!("not permitted: uid {uid} is neither root nor in group {g}"),
        None => format!("not permitted: uid {uid} is not root (set status_group to let a group in)"),
    })
}

/// The supplementary groups of process `pid`, empty when they cannot be read.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Groups:").map(str::to_owned)))
        .map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// Answers every waiting client: one request line, one JSON reply. A
/// request other than `status` is refused unless the peer may change
/// things ([`may_change`]).
pub fn serve(status: &StatusListener, mut handle: impl FnMut(&str) -> String) {
    while let Ok((mut stream, _)) = status.listener.accept() {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        // The longest request: `members add ID [IPv6]:PORT weight W segment N`.
        let mut req = [0u8; 256];
        let n = stream.read(&mut req).unwrap_or(0);
        let request = String::from_utf8_lossy(&req[..n]);
        let request = request.trim();
        let request = if request.is_empty() { "status" } else { request };
        let verb = request.split_whitespace().next().unwrap_or("status");
        let reply = match may_change(&stream, status.group, status.owner) {
            Err(why) if !READ_ONLY.contains(&verb) => {
                tracing::warn!(request = %verb, %why, "status socket: request refused");
                serde_json::json!({"ok": false, "message": why}).to_string()
            }
            _ => handle(request),
        };
        let _ = stream.write_all(reply.as_bytes());
    }
}

/// The group id `group` names: a number, or a name from /etc/group.
pub fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").map_err(|e| format!("/etc/group: {e}"))?;
    group_id_in(&groups, group).ok_or_else(|| format!("group {group:?} is not in /etc/group (a gid also works)"))
}

fn group_id_in(etc_group: &str, name: &str) -> Option<u32> {
    etc_group.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name))
            .then(|| f.nth(1).and_then(|g| g.parse().ok()))
            .flatten()
    })
}

/// The metrics port's answers, from what the control loop last published:
/// the metrics text, the status page, the status, the table, the history.
pub fn page_route(
    metrics_text: std::sync::Arc<std::sync::Mutex<String>>,
    snapshot: std::sync::Arc<std::sync::Mutex<String>>,
    page: PageData,
) -> crate::metrics::Route {
    let read = |cell: &std::sync::Mutex<String>| cell.lock().map(|s| s.clone()).unwrap_or_default();
    std::sync::Arc::new(move |path: &str| match path {
        "/metrics" => Some((crate::metrics::CONTENT_TYPE, read(&metrics_text))),
        "/" | "/index.html" => Some(("text/html; charset=utf-8", crate::metrics::STATUS_PAGE.to_owned())),
        "/status.json" => Some(("application/json", read(&snapshot))),
        "/table.json" => Some(("application/json", read(&page.table))),
        "/history.json" => Some(("application/json", read(&page.history))),
        _ => None,
    })
}

/// What the status page draws, refreshed by the control loop: the table
/// (`{"epoch", "owners": [member or null per bucket]}`) and the history of
/// the last minutes.
#[derive(Clone, Default)]
pub struct PageData {
    /// The table, JSON.
    pub table: std::sync::Arc<std::sync::Mutex<String>>,
    /// The history, JSON.
    pub history: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Serves the status socket on a thread of its own until `stop`: status
/// from `snapshot` (JSON), and anything else forwarded to the control loop
/// through `requests` (answered within a second or refused). Each
/// connection has short read and write deadlines, so a slow client delays
/// only this thread; the metrics port has a thread of its own
/// ([`crate::metrics::MetricsServer`]), so nothing there delays `drain`.
pub fn spawn_service(
    status: StatusListener,
    snapshot: std::sync::Arc<std::sync::Mutex<String>>,
    requests: std::sync::mpsc::Sender<(String, std::sync::mpsc::Sender<String>)>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("status".into()).spawn(move || {
        let read = |cell: &std::sync::Mutex<String>| cell.lock().map(|s| s.clone()).unwrap_or_default();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            serve(&status, |request| {
                let verb = request.split_whitespace().next().unwrap_or("status");
                if verb == "status" {
                    return read(&snapshot);
                }
                let (tx, rx) = std::sync::mpsc::channel();
                if requests.send((request.to_owned(), tx)).is_err() {
                    return serde_json::json!({"ok": false, "message": "stopping"}).to_string();
                }
                rx.recv_timeout(Duration::from_secs(1)).unwrap_or_else(|_| {
                    serde_json::json!({"ok": false, "message": "the control loop did not answer"}).to_string()
                })
            });
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// Sends `request` to the node at `path`; returns its reply.
pub fn request(path: &Path, request: &str) -> Result<String, String> {
    let mut s = UnixStream::connect(path).map_err(|e| format!("cannot reach node at {}: {e}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(format!("{request}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    s.shutdown(std::net::Shutdown::Write).ok();
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text)
}

/// Asks the node at `path` for its status.
pub fn query(path: &Path) -> Result<NodeStatus, String> {
    let text = request(path, "status")?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "bad reply from {}: {e}: {}",
            path.display(),
            text.chars().take(200).collect::<String>()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_socket_is_0660_whatever_the_umask_and_status_is_answered() {
        let dir = std::env::temp_dir().join(format!("synshare-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("n.sock");
        let l = listen(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660, "{mode:o}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no staging name left behind"
        );
        let client = std::thread::spawn({
            let path = path.clone();
            move || request(&path, "drain").unwrap()
        });
        let mut answered = Vec::new();
        while !client.is_finished() {
            serve(&l, |r| {
                answered.push(r.to_owned());
                "{\"ok\": true}".into()
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        // The test runs as root or as the socket's owner: both may drain.
        assert_eq!(client.join().unwrap(), "{\"ok\": true}");
        assert_eq!(answered, ["drain"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_peer_that_is_neither_root_nor_owner_nor_in_the_group_may_only_read() {
        let (a, _b) = UnixStream::pair().unwrap();
        let me = rustix::net::sockopt::socket_peercred(&a).unwrap();
        let (uid, gid) = (me.uid.as_raw(), me.gid.as_raw());
        if uid == 0 {
            assert!(may_change(&a, None, 4242).is_ok(), "root may");
        } else {
            assert!(may_change(&a, None, uid).is_ok(), "the owner may");
            let refused = may_change(&a, Some(gid.wrapping_add(1)), uid.wrapping_add(1)).unwrap_err();
            assert!(refused.contains("not permitted"), "{refused}");
            assert!(may_change(&a, Some(gid), uid.wrapping_add(1)).is_ok(), "the group may");
        }
    }

    #[test]
    fn groups_resolve_by_number_or_by_name() {
        let etc = "root:x:0:\nsynshare-ops:x:997:alice,bob\nx:x:notanumber:\n";
        assert_eq!(group_id_in(etc, "synshare-ops"), Some(997));
        assert_eq!(group_id_in(etc, "root"), Some(0));
        assert_eq!(group_id_in(etc, "nobody-here"), None);
        assert_eq!(group_id_in(etc, "x"), None);
        assert_eq!(group_id("1234"), Ok(1234));
        assert!(group_id("no-such-group-here").unwrap_err().contains("/etc/group"));
    }

    #[test]
    fn a_ports_counters_are_its_own_fields_in_json() {
        // The namespace tests and the status page read `wire.ipackets`.
        let p = PortStatus {
            name: "net_tap0".into(),
            driver: "net_tap".into(),
            stats: PortStats {
                ipackets: 1,
                rx_nombuf: 8,
                ..PortStats::default()
            },
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"name":"net_tap0","driver":"net_tap","ipackets":1,"opackets":0,"ibytes":0,"obytes":0,"imissed":0,"ierrors":0,"oerrors":0,"rx_nombuf":8}"#
        );
        assert_eq!(serde_json::from_str::<PortStatus>(&json).unwrap(), p);
    }
}
