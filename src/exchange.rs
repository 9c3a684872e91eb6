//! The driver between the exchange's state machine and the world, on a
//! thread of its own (nothing else can stall it): a UDP socket drained in
//! batches with the source checked against the configured members before
//! any cryptography, the state file written before anything that depends
//! on it is sent, the view and the lease deadline published to the workers,
//! and the agent's events logged and counted.

use crate::config::ExchangeConfig;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synshare_control::driver::{self, Io, Now};
use synshare_control::layout::{Layout, MemberId};
use synshare_control::protocol::{Agent, Bootstrap, Event, Outgoing, Persisted};
use synshare_control::wire::{Keys, Role};
use synshare_dataplane::exchange_guard::ExchangeSources;
use synshare_dataplane::ownership::{BucketState, OwnershipView};
use synshare_dataplane::packet::Addr;
use synshare_dataplane::presence::FlowPresence;
use synshare_dataplane::publish::{Lease, Publisher};
use tracing::{error, info, warn};

/// What the rest of the process tells the exchange.
#[derive(Debug)]
pub enum Command {
    /// The advertised weight changed (thousandths).
    Weight(u32),
    /// Drain or undrain.
    Draining(bool),
    /// Connections held (for status).
    Connections(u32),
    /// New keys (rotation).
    Keys(Keys),
    /// A request about the member directory; the answer goes back on the
    /// channel.
    Members(MembersRequest, Sender<MembersReply>),
}

/// What `synshare members` asks.
#[derive(Clone, Debug, PartialEq)]
pub enum MembersRequest {
    /// The directory as this member knows it.
    List,
    /// Add a member (it starts with `join`).
    Add {
        /// Its id.
        id: u32,
        /// Its exchange address.
        address: SocketAddr,
        /// A factor on its advertised weight (thousandths).
        weight_milli: u32,
    },
    /// Remove a member: it leaves the voters, its buckets move to the
    /// others, and it leaves the directory once it holds and serves
    /// nothing.
    Remove {
        /// Its id.
        id: u32,
    },
}

/// A member of the directory, for `synshare members`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DirectoryMember {
    /// Member id.
    pub id: u32,
    /// Its exchange address.
    pub address: String,
    /// The factor on its advertised weight.
    pub weight: f64,
    /// Voter, learner, leaving, or none (not in the consensus: silent).
    pub role: String,
    /// This process.
    pub me: bool,
    /// The leader.
    pub leader: bool,
    /// Heard both ways within the timeout (this process: always).
    pub live: bool,
    /// Buckets it holds (as last heard).
    pub held: Option<u32>,
}

/// The answer to a [`MembersRequest`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MembersReply {
    /// Done (or asked of the leader).
    pub ok: bool,
    /// What happened.
    pub message: String,
    /// The segment.
    pub segment: u16,
    /// The directory's version (the log index of its last change).
    pub version: u64,
    /// The directory.
    pub members: Vec<DirectoryMember>,
}

/// Settings the caller adds to the exchange configuration.
pub struct AgentParams {
    /// Node or coordinator.
    pub role: Role,
    /// Buckets.
    pub buckets: u32,
    /// Layout.
    pub layout: Layout,
    /// Drain period, ms.
    pub drain_ms: u64,
    /// The process name (for the state file).
    pub name: String,
    /// The digest of the port rules (0 for a coordinator).
    pub rules_digest: u32,
    /// Buckets pinned by single-host rules with a priority list.
    pub pins: Vec<synshare_control::layout::Pin>,
}

/// Where the workers are reached (nodes only).
pub struct WorkerLink {
    /// Views go here.
    pub publisher: Publisher,
    /// The lease deadline goes here.
    pub lease: Lease,
    /// TSC cycles per ms.
    pub tsc_per_ms: u64,
    /// Reads the TSC.
    pub tsc: fn() -> u64,
    /// Per worker: the buckets it holds flows in.
    pub presence: Vec<Arc<FlowPresence>>,
    /// The sources the workers let reach the exchange's port: the
    /// directory's members, republished when it changes.
    pub sources: ExchangeSources,
}

/// The running exchange: a handle for the rest of the process.
pub struct ExchangeHandle {
    commands: Sender<Command>,
    /// The table in force: its log index and each bucket's owner.
    owners: Arc<Mutex<(u64, Vec<Option<u32>>)>>,
    /// Milliseconds (since `epoch`) of the thread's last status update.
    beat: Arc<std::sync::atomic::AtomicU64>,
    epoch: Instant,
    status: Arc<Mutex<ExchangeStatus>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The segment id.
    pub segment: u16,
}

impl ExchangeHandle {
    /// Sends a command (never blocks).
    pub fn send(&self, c: Command) {
        let _ = self.commands.send(c);
    }

    /// Asks the exchange's thread a `members` request; its answer as the
    /// status socket's JSON.
    pub fn members(&self, request: MembersRequest) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(Command::Members(request, tx));
        match rx.recv_timeout(std::time::Duration::from_secs(2)) {
            Ok(reply) => serde_json::to_string(&reply)
                .unwrap_or_else(|e| serde_json::json!({ "ok": false, "message": e.to_string() }).to_string()),
            Err(_) => {
                serde_json::json!({ "ok": false, "message": "the exchange did not answer within 2 s" }).to_string()
            }
        }
    }

    /// The latest status (at most 25 ms old).
    pub fn status(&self) -> ExchangeStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The table in force: its log index and each bucket's owner (member id).
    pub fn owners(&self) -> (u64, Vec<Option<u32>>) {
        self.owners.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Whether the exchange thread has updated its status within `within`
    /// (the watchdog is fed only while it does).
    pub fn alive(&self, within: Duration) -> bool {
        let last = self.beat.load(Ordering::Relaxed);
        (self.epoch.elapsed().as_millis() as u64).saturating_sub(last) <= within.as_millis() as u64
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// This start's incarnation: larger than the saved one, and at least the
/// wall clock's milliseconds since 1970. So it never goes back while the
/// state file lives (whatever the clock does), nor when the file is lost or
/// an older copy restored (as long as the clock has not gone back past the
/// previous start: peers refuse a start older than one they heard).
fn incarnation(saved: u64, wall: std::time::SystemTime) -> u64 {
    let clock = wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    saved.saturating_add(1).max(clock)
}

/// A nonce drawn at random for this start (std's hasher keys are random
/// per process): it tells apart two processes started from one copy of a
/// state file.
fn random_nonce() -> u32 {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one((std::process::id(), Instant::now()));
    (h ^ (h >> 32)) as u32
}

/// The state file of `name`'s exchange on `segment`.
pub fn state_path(dir: &Path, name: &str, segment: u16) -> PathBuf {
    dir.join(format!("{name}.segment{segment}.state"))
}

fn load_state(path: &Path) -> Result<Option<Persisted>, String> {
    match std::fs::read(path) {
        Ok(b) => Persisted::decode(&b).map(Some).map_err(|e| {
            format!(
                "{}: {e}; the member cannot start from it: move it aside and start again (the member \
                 rejoins as a fresh one, its incarnation from the clock, and catches up from the others)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the state durably (the file, then the directory entry that the
/// rename changed: without that, a power cut could bring back the previous
/// file, and with it a vote already given); returns its size in bytes.
fn save_state(path: &Path, p: &Persisted) -> std::io::Result<u64> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    let bytes = p.encode();
    f.write_all(&bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()?;
    Ok(bytes.len() as u64)
}

/// Exit status for a state file the member cannot start from (sysexits'
/// EX_DATAERR): the unit does not retry it (`RestartPreventExitStatus`),
/// since every retry would read the same file.
pub const EX_STATE: u8 = 65;

/// Reads the state file `start` would read for this exchange, so a file
/// the member cannot start from is refused before anything else starts,
/// with its own exit status ([`EX_STATE`]) and a message naming the file
/// and what to do.
pub fn check_state(c: &ExchangeConfig, name: &str) -> Result<(), String> {
    load_state(&state_path(&c.state_dir, name, c.segment)).map(|_| ())
}

/// A UDP socket bound to `addr`, which need not be on the host yet
/// (IP_FREEBIND: the node binds its own address, which the TAP gets only
/// after the dataplane created it, or the operator's script after that).
fn bind_free(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let family = if addr.is_ipv6() {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let fd = rustix::net::socket(family, SocketType::DGRAM, None)?;
    if !addr.ip().is_unspecified() {
        if addr.is_ipv6() {
            sockopt::set_ipv6_freebind(&fd, true)?;
        } else {
            sockopt::set_ip_freebind(&fd, true)?;
        }
    }
    rustix::net::bind(&fd, &addr)?;
    Ok(UdpSocket::from(fd))
}

/// Binds, loads the saved state and starts the exchange thread.
pub fn start(
    c: &ExchangeConfig,
    me: MemberId,
    params: AgentParams,
    weight_milli: u32,
    workers: Option<WorkerLink>,
) -> Result<ExchangeHandle, String> {
    let keys = c.keys().map_err(|e| format!("exchange: {e}"))?;
    let bind = c.bind_addr(&[]);
    let socket = bind_free(bind).map_err(|e| format!("exchange: cannot bind {bind}: {e}"))?;
    std::fs::create_dir_all(&c.state_dir).map_err(|e| format!("exchange: state_dir {}: {e}", c.state_dir.display()))?;
    let path = state_path(&c.state_dir, &params.name, c.segment);
    let agent = start_agent(c, me, bind, params, keys, weight_milli, &path)?;
    let mut driver = Driver::new(agent, socket, path, workers);
    // Write the new incarnation before anything is sent under it.
    if let Some(p) = driver.agent.take_persist() {
        driver.io.persist(&p)?;
    }
    driver.publish_sources();
    let incarnation = driver.agent.incarnation();
    info!(segment = c.segment, incarnation, state = %driver.io.state.display(), "exchange state");
    driver.spawn(c.segment)
}

/// This start's agent: from the state saved at `path` (if any), with an
/// incarnation past it, the configuration's settings with the caller's,
/// and a nonce of its own.
fn start_agent(
    c: &ExchangeConfig,
    me: MemberId,
    bind: SocketAddr,
    params: AgentParams,
    keys: Keys,
    weight_milli: u32,
    path: &Path,
) -> Result<Agent, String> {
    let saved = load_state(path)?;
    let incarnation = incarnation(
        saved.as_ref().map_or(0, |p| p.incarnation),
        std::time::SystemTime::now(),
    );
    let mut settings = c.settings();
    settings.role = params.role;
    settings.buckets = params.buckets;
    settings.layout = params.layout;
    settings.drain_ms = params.drain_ms;
    settings.rules_digest = params.rules_digest;
    settings.pins = params.pins;
    let mut agent = Agent::start(
        me,
        bootstrap(c, me, bind),
        incarnation,
        settings,
        keys,
        weight_milli,
        saved,
        0,
    )?;
    agent.set_nonce(random_nonce());
    Ok(agent)
}

/// The configuration only bootstraps the directory (a saved one wins):
/// the peers and this member at its own address, or, for a member added
/// at run time, one member to join through.
fn bootstrap(c: &ExchangeConfig, me: MemberId, bind: SocketAddr) -> Bootstrap {
    match c.join {
        Some(j) => Bootstrap::Join(j),
        None => Bootstrap::Members(
            c.addresses()
                .into_iter()
                .map(|(id, a)| (MemberId(id), a))
                .chain(std::iter::once((me, bind)))
                .collect(),
        ),
    }
}

struct Driver {
    agent: Agent,
    io: NetIo,
    buf: Vec<u8>,
    rejected_unknown_source: u64,
    events: EventCounts,
    lease_valid: bool,
}

impl Driver {
    /// A driver of `agent` on `socket`, saving to `state`.
    fn new(agent: Agent, socket: UdpSocket, state: PathBuf, workers: Option<WorkerLink>) -> Driver {
        let sources = sources_of(&agent);
        Driver {
            agent,
            io: NetIo {
                socket,
                sources,
                state,
                workers,
                started: Instant::now(),
                send_errors: 0,
                state_bytes: 0,
                log_entries: 0,
                published: 0,
            },
            buf: vec![0u8; 65_536],
            rejected_unknown_source: 0,
            events: EventCounts::default(),
            lease_valid: false,
        }
    }

    /// Runs the driver on a thread of its own (named after `segment`), and
    /// returns the rest of the process's handle on it.
    fn spawn(self, segment: u16) -> Result<ExchangeHandle, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let status = Arc::new(Mutex::new(self.status()));
        let stop = Arc::new(AtomicBool::new(false));
        let beat = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let epoch = self.io.started;
        let owners = Arc::new(Mutex::new((u64::MAX, Vec::new())));
        let thread = {
            let owners = Arc::clone(&owners);
            let status = Arc::clone(&status);
            let stop = Arc::clone(&stop);
            let beat = Arc::clone(&beat);
            std::thread::Builder::new()
                .name(format!("exchange{segment}"))
                .spawn(move || self.run(rx, status, stop, beat, owners))
                .map_err(|e| format!("exchange thread: {e}"))?
        };
        Ok(ExchangeHandle {
            commands: tx,
            owners,
            beat,
            epoch,
            status,
            stop,
            thread: Some(thread),
            segment,
        })
    }
}

/// The node's world for the driver sequence (`driver::step`): the UDP
/// socket, the state file and the workers.
struct NetIo {
    socket: UdpSocket,
    /// Addresses datagrams are taken from: the directory's (none while
    /// joining: any).
    sources: Option<Vec<IpAddr>>,
    state: PathBuf,
    workers: Option<WorkerLink>,
    started: Instant,
    send_errors: u64,
    /// The last state file written: its bytes and the consensus log
    /// entries it holds (those after the last compaction).
    state_bytes: u64,
    log_entries: u64,
    /// The last view version published.
    published: u64,
}

impl NetIo {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn send_to(&mut self, bytes: &[u8], to: SocketAddr) {
        if self.socket.send_to(bytes, to).is_err() {
            self.send_errors += 1;
        }
    }
}

impl Io for NetIo {
    /// The TSC is read first, so a stall between the two readings, or
    /// anywhere after them before the deadline is published, can only
    /// shorten the deadline.
    fn clock(&mut self) -> Now {
        let stamp = self.workers.as_ref().map_or(0, |w| (w.tsc)());
        Now {
            ms: self.now_ms(),
            stamp,
        }
    }

    /// To the addresses the agent gives (from its directory).
    fn send(&mut self, o: Outgoing) {
        for a in &o.addresses {
            self.send_to(&o.bytes, *a);
        }
    }

    fn persist(&mut self, state: &Persisted) -> Result<(), String> {
        self.state_bytes = save_state(&self.state, state)
            .map_err(|e| format!("exchange: cannot save {}: {e}", self.state.display()))?;
        self.log_entries = state.log_entries() as u64;
        Ok(())
    }

    fn publish_view(&mut self, version: u64, rights: &[BucketState]) -> bool {
        self.published = version;
        // No workers (a coordinator): nothing to enforce, so in force now.
        let Some(w) = &self.workers else { return true };
        w.publisher.publish(&view_of(rights, version));
        // Workers take a new view between bursts (an idle one within its
        // 100 µs sleep): wait briefly rather than a whole loop.
        for _ in 0..40 {
            if w.publisher.in_force() >= version {
                return true;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        false
    }

    fn in_force(&mut self) -> u64 {
        let Some(w) = &self.workers else { return self.published };
        w.publisher.collect();
        w.publisher.in_force()
    }

    fn set_deadline(&mut self, until: Option<u64>, at: Now, guard_ms: u64) {
        if let Some(w) = &self.workers {
            w.lease.set(driver::worker_deadline(until, at, guard_ms, w.tsc_per_ms));
        }
    }

    fn flow_presence(&mut self) -> Option<Vec<u64>> {
        let w = self.workers.as_ref()?;
        let mut words = vec![0u64; w.presence.first()?.buckets() / 64];
        for p in &w.presence {
            p.or_into(&mut words);
        }
        Some(words)
    }
}

/// The source addresses the exchange takes datagrams from: the members'
/// in the agent's directory; any while it joins (it does not know them yet,
/// and only authentic datagrams change anything).
fn sources_of(agent: &Agent) -> Option<Vec<IpAddr>> {
    let ips: Vec<IpAddr> = agent
        .directory()
        .members()
        .iter()
        .filter(|(id, _)| **id != agent.me())
        .map(|(_, m)| m.address.ip())
        .collect();
    // A member known only by the wildcard its coordinator binds (learnt
    // from its snapshot by a joining node): its source is not known, so
    // none is refused here (authentication still is).
    (!agent.joining() && !ips.iter().any(IpAddr::is_unspecified)).then_some(ips)
}

/// Datagrams handled per wake-up at most, so a flood cannot starve ticks.
const BATCH: usize = 1024;

impl Driver {
    fn now_ms(&self) -> u64 {
        self.io.now_ms()
    }

    fn run(
        mut self,
        commands: Receiver<Command>,
        status: Arc<Mutex<ExchangeStatus>>,
        stop: Arc<AtomicBool>,
        beat: Arc<std::sync::atomic::AtomicU64>,
        owners: Arc<Mutex<(u64, Vec<Option<u32>>)>>,
    ) {
        let mut last_status = 0u64;
        while !stop.load(Ordering::Relaxed) {
            loop {
                match commands.try_recv() {
                    Ok(Command::Weight(w)) => self.agent.set_weight(w),
                    Ok(Command::Draining(d)) => self.agent.set_draining(d),
                    Ok(Command::Connections(n)) => self.agent.set_connections(n),
                    Ok(Command::Keys(k)) => {
                        info!(keys = ?k.ids(), sending = k.sending().id, "exchange keys replaced");
                        self.agent.set_keys(k)
                    }
                    Ok(Command::Members(request, reply)) => {
                        let answer = self.members(request);
                        let _ = reply.send(answer);
                    }
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
                }
            }
            let wait = self.agent.next_deadline().saturating_sub(self.now_ms()).clamp(1, 10);
            self.receive(Duration::from_millis(wait));
            let report = driver::step(&mut self.agent, &mut self.io);
            if let Some(e) = report.persist_error {
                error!(error = %e, withheld = report.withheld, "state not saved: sending no consensus message");
            }
            self.log_events();
            let now = self.now_ms();
            if now >= last_status + 25 {
                last_status = now;
                if let Ok(mut s) = status.lock() {
                    *s = self.status();
                }
                beat.store(now, Ordering::Relaxed);
                let index = self.agent.epoch().index;
                if let Ok(mut o) = owners.lock() {
                    if o.0 != index {
                        *o = (
                            index,
                            self.agent.table().owners().iter().map(|m| m.map(|m| m.0)).collect(),
                        );
                    }
                }
            }
        }
    }

    /// Waits at most `wait` for a datagram, then drains what is queued.
    fn receive(&mut self, wait: Duration) {
        let socket = &self.io.socket;
        let _ = socket.set_nonblocking(false);
        let _ = socket.set_read_timeout(Some(wait));
        let mut first = true;
        for _ in 0..BATCH {
            let (n, from) = match socket.recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(_) => break,
            };
            if first {
                first = false;
                let _ = socket.set_nonblocking(true);
            }
            // The source is checked before any cryptography: a flood from
            // anywhere else costs a comparison.
            if self.io.sources.as_ref().is_some_and(|s| !s.contains(&from.ip())) {
                self.rejected_unknown_source += 1;
                continue;
            }
            let now = self.io.now_ms();
            let _ = self.agent.receive_from(&self.buf[..n], from, now);
        }
    }

    /// Handles the agent's events: acts on those that concern the driver,
    /// then logs and counts each.
    fn log_events(&mut self) {
        while let Some(e) = self.agent.poll_event() {
            match &e {
                Event::LeaseLost => self.lease_valid = false,
                Event::LeaseRegained => self.lease_valid = true,
                Event::Directory { .. } => self.publish_sources(),
                _ => {}
            }
            self.log_event(&e);
            self.events.count(&e);
        }
    }

    /// Logs one event at the level it deserves.
    fn log_event(&self, e: &Event) {
        match e {
            Event::Joined { member, incarnation } => info!(member = member.0, incarnation, "member joined"),
            Event::Lost { member } => warn!(member = member.0, "member not live (silent, or not hearing us)"),
            Event::NewEpoch {
                index,
                creator,
                members,
            } => {
                info!(epoch = index, creator = creator.0,
                      members = ?members.iter().map(|(m, w)| (m.0, f64::from(*w) / 1000.0)).collect::<Vec<_>>(),
                      "new table");
            }
            Event::Released { buckets } => info!(buckets, held = self.agent.held_count(), "hand-off: released"),
            Event::Claimed { buckets } => info!(buckets, held = self.agent.held_count(), "hand-off: claimed"),
            Event::LeaseLost => {
                warn!("lease lost: no majority heard both ways; taking no new connections (fenced)")
            }
            Event::LeaseRegained => info!("lease valid: taking new connections"),
            Event::DuplicateId { incarnation } => error!(
                other_incarnation = incarnation,
                "another process uses this member id: fenced until restarted with a unique id"
            ),
            Event::SettingsDiffer {
                member,
                field,
                ours,
                theirs,
            } => error!(
                member = member.0,
                field, ours, theirs,
                "a member's settings that must agree differ from ours: refused (it holds no bucket here); make them equal"
            ),
            Event::Campaign => info!("the leader is silent: starting an election at once"),
            Event::Leader { member } => info!(leader = member.map(|m| m.0), "leader"),
            Event::Voters { voters } => {
                info!(voters = ?voters.iter().map(|m| m.0).collect::<Vec<_>>(), "voters changed")
            }
            Event::Directory { change } => {
                let members = self.directory_summary();
                match change {
                    Some(c) => info!(change = ?c, ?members, "member directory changed"),
                    None => info!(?members, "member directory replaced by the leader's snapshot"),
                }
            }
            Event::ChangeRefused { change, reason } => warn!(?change, reason, "member directory change refused"),
        }
    }

    /// The directory for a log line: each member as `id@address`.
    fn directory_summary(&self) -> Vec<String> {
        self.agent
            .directory()
            .members()
            .iter()
            .map(|(id, m)| format!("{}@{}{}", id.0, m.address, if m.leaving { " (leaving)" } else { "" }))
            .collect()
    }

    /// The sources the exchange takes datagrams from, here and in the
    /// workers' guard of its port: the directory's members (any while
    /// joining).
    fn publish_sources(&mut self) {
        self.io.sources = sources_of(&self.agent);
        if let Some(w) = &self.io.workers {
            match &self.io.sources {
                Some(ips) => {
                    let addrs: Vec<Addr> = ips.iter().map(|ip| Addr::from(*ip)).collect();
                    if !w.sources.set(&addrs) {
                        warn!(
                            members = addrs.len(),
                            "more member addresses than the workers' guard holds"
                        );
                    }
                }
                None => w.sources.set_open(true),
            }
        }
    }

    /// Answers a request about the member directory.
    fn members(&mut self, request: MembersRequest) -> MembersReply {
        let (ok, message) = self.propose(request);
        let a = &self.agent;
        MembersReply {
            ok,
            message,
            segment: a.settings().segment,
            version: a.directory().version(),
            members: directory_members(a),
        }
    }

    /// Asks the leader for the change `request` makes, if any: whether it
    /// was asked, and what to tell the operator.
    fn propose(&mut self, request: MembersRequest) -> (bool, String) {
        use synshare_control::directory::{Change, MAX_WEIGHT_MILLI};
        match request {
            MembersRequest::List => (true, String::new()),
            MembersRequest::Add {
                id,
                address,
                weight_milli,
            } => {
                let change = Change::Add {
                    id: MemberId(id),
                    address,
                    weight_milli: weight_milli.min(MAX_WEIGHT_MILLI),
                };
                match self.agent.propose_change(change) {
                    Ok(()) => {
                        info!(member = id, %address, weight_milli, "member add asked");
                        (
                            true,
                            format!(
                                "member {id} at {address}: asked of the leader (member {}); it joins as a \
                                 learner, a voter once caught up. Start it with `join` set to a member's address.",
                                self.agent.leader().map_or(-1, |m| i64::from(m.0))
                            ),
                        )
                    }
                    Err(e) => (false, format!("member {id}: {e}")),
                }
            }
            MembersRequest::Remove { id } => match self.agent.propose_change(Change::Leave { id: MemberId(id) }) {
                Ok(()) => {
                    info!(member = id, "member removal asked");
                    (
                        true,
                        format!(
                            "member {id}: leaving, asked of the leader (member {}); its buckets move to the others, \
                             and it leaves the directory once it holds and serves nothing",
                            self.agent.leader().map_or(-1, |m| i64::from(m.0))
                        ),
                    )
                }
                Err(e) => (false, format!("member {id}: {e}")),
            },
        }
    }

    fn status(&self) -> ExchangeStatus {
        let now = self.now_ms();
        let a = &self.agent;
        ExchangeStatus {
            segment: a.settings().segment,
            epoch: a.epoch().index,
            epoch_creator: a.epoch().creator.0,
            leader: a.leader().map_or(-1, |m| i64::from(m.0)),
            incarnation: a.incarnation(),
            held: a.held_count(),
            lease_ms: a.lease_until(now).map(|u| u - now),
            duplicate_id: a.duplicate(),
            voters: a.voters().iter().map(|m| m.0).collect(),
            weight: f64::from(a.weight_milli()) / 1000.0,
            draining: a.draining(),
            members: epoch_members(a),
            peers: peer_statuses(a, now),
            stats: self.stats(),
        }
    }

    /// The agent's statistics, the driver's own, and a count per event.
    fn stats(&self) -> ExchangeCounters {
        let s = self.agent.stats();
        ExchangeCounters {
            sent: s.sent,
            consensus_sent: s.consensus_sent,
            received: s.received,
            accepted: s.accepted,
            consensus_accepted: s.consensus_accepted,
            rejected_unknown_source: self.rejected_unknown_source,
            state_file_bytes: self.io.state_bytes,
            log_entries: self.io.log_entries,
            rejected_bad_length: s.rejected_bad_length,
            rejected_not_heartbeat: s.rejected_not_heartbeat,
            rejected_unknown_key: s.rejected_unknown_key,
            rejected_bad_tag: s.rejected_bad_tag,
            rejected_malformed: s.rejected_malformed,
            rejected_replayed: s.rejected_replayed,
            rejected_stale: s.rejected_stale,
            rejected_foreign: s.rejected_foreign,
            rejected_unknown_member: s.rejected_unknown_member,
            rejected_own_id: s.rejected_own_id,
            rejected_own_past: s.rejected_own_past,
            rejected_settings: s.rejected_settings,
            campaigns: s.campaigns,
            epochs_adopted: s.epochs_adopted,
            epochs_created: s.epochs_created,
            buckets_released: s.buckets_released,
            buckets_claimed: s.buckets_claimed,
            failovers: s.failovers,
            fenced: s.fenced,
            joins: s.joins,
            voter_changes: s.voter_changes,
            directory_changes: s.directory_changes,
            log_compactions: s.log_compactions,
            snapshots_installed: s.snapshots_installed,
            snapshots_sent: s.snapshots_sent,
            send_errors: self.io.send_errors,
            events: self.events.clone(),
        }
    }
}

/// The buckets member `id` holds: this member's own count, or as last
/// heard from it.
fn held_by(a: &Agent, id: MemberId) -> Option<u32> {
    if id == a.me() {
        Some(a.held_count())
    } else {
        a.peers().get(&id).map(|p| p.held)
    }
}

/// The members of the epoch in force, with their share of its table.
fn epoch_members(a: &Agent) -> Vec<EpochMember> {
    let table = a.table();
    let buckets = table.len().max(1) as f64;
    a.epoch()
        .members
        .iter()
        .map(|&(id, w)| {
            let n = table.count(id);
            EpochMember {
                id: id.0,
                weight: f64::from(w) / 1000.0,
                buckets: n as u32,
                share_pct: 100.0 * n as f64 / buckets,
                held: held_by(a, id),
            }
        })
        .collect()
}

/// The peers as last heard, at `now`.
fn peer_statuses(a: &Agent, now: u64) -> Vec<PeerStatus> {
    a.peers()
        .iter()
        .map(|(id, p)| PeerStatus {
            id: id.0,
            coordinator: p.role == Some(Role::Coordinator),
            live: a.live().contains(id),
            voter: a.voters().contains(id),
            incarnation: p.incarnation,
            heard_ms_ago: if p.incarnation == 0 {
                None
            } else {
                Some(now.saturating_sub(p.last_heard))
            },
            epoch: p.applied,
            held: p.held,
            weight: f64::from(p.weight_milli) / 1000.0,
            draining: p.draining,
            connections: p.connections,
        })
        .collect()
}

/// The member directory, for `synshare members`.
fn directory_members(a: &Agent) -> Vec<DirectoryMember> {
    let learners = a.learners();
    a.directory()
        .members()
        .iter()
        .map(|(id, m)| {
            let role = if m.leaving {
                "leaving"
            } else if a.voters().contains(id) {
                "voter"
            } else if learners.contains(id) {
                "learner"
            } else {
                "none"
            };
            DirectoryMember {
                id: id.0,
                address: m.address.to_string(),
                weight: f64::from(m.weight_milli) / 1000.0,
                role: role.into(),
                me: *id == a.me(),
                leader: a.leader() == Some(*id),
                live: *id == a.me() || a.live().contains(id),
                held: held_by(a, *id),
            }
        })
        .collect()
}

/// The workers' view of this node's rights.
pub fn view_of(rights: &[BucketState], version: u64) -> OwnershipView {
    OwnershipView::from_states(rights.to_vec(), version)
        .unwrap_or_else(|| OwnershipView::new(rights.len().next_power_of_two() as u32, version))
}

/// A member of the epoch in force.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochMember {
    /// Member id.
    pub id: u32,
    /// Weight in the epoch.
    pub weight: f64,
    /// Buckets the table gives it.
    pub buckets: u32,
    /// Its share, percent.
    pub share_pct: f64,
    /// Buckets it holds (as last heard).
    pub held: Option<u32>,
}

/// A configured member as last heard.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Member id.
    pub id: u32,
    /// A coordinator.
    pub coordinator: bool,
    /// Heard both ways within the timeout.
    pub live: bool,
    /// A voter.
    pub voter: bool,
    /// Its incarnation (0: never heard).
    pub incarnation: u64,
    /// Milliseconds since its last heartbeat (never heard: none).
    pub heard_ms_ago: Option<u64>,
    /// The table (log index) it enforces.
    pub epoch: u64,
    /// Buckets it holds.
    pub held: u32,
    /// Its advertised weight.
    pub weight: f64,
    /// Draining.
    pub draining: bool,
    /// Its connections.
    pub connections: u32,
}

/// The exchange in status output.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ExchangeStatus {
    /// Segment.
    pub segment: u16,
    /// The table in force (its log index).
    pub epoch: u64,
    /// Who proposed it.
    pub epoch_creator: u32,
    /// The leader as known here (-1: none).
    pub leader: i64,
    /// This process's incarnation.
    pub incarnation: u64,
    /// Buckets held here.
    pub held: u32,
    /// Milliseconds of lease left (none: fenced).
    pub lease_ms: Option<u64>,
    /// Fenced because another process uses this id.
    pub duplicate_id: bool,
    /// The voters.
    pub voters: Vec<u32>,
    /// Weight advertised.
    pub weight: f64,
    /// Draining.
    pub draining: bool,
    /// The epoch's members.
    pub members: Vec<EpochMember>,
    /// Configured peers.
    pub peers: Vec<PeerStatus>,
    /// Counters.
    pub stats: ExchangeCounters,
}

/// Declares a struct of named `u64` counters whose JSON fields are their
/// names, missing ones read as 0, and `entries()`: each (name, value), in
/// the order declared. A struct after `flattened:` adds its fields to the
/// same JSON object (and is not among the entries).
macro_rules! counters {
    (
        $(#[$meta:meta])* pub struct $name:ident { $($(#[doc = $doc:literal])* $field:ident,)* }
        $(flattened: $(#[doc = $xdoc:literal])* $extra:ident: $xty:ty)?
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
        #[serde(default)]
        pub struct $name {
            $($(#[doc = $doc])* pub $field: u64,)*
            $($(#[doc = $xdoc])* #[serde(flatten)] pub $extra: $xty,)?
        }

        impl $name {
            /// Each counter: (its name, its value), in the order declared.
            pub fn entries(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field)),*]
            }
        }
    };
}

counters! {
    /// The exchange's counters: the agent's, the driver's own, and one per
    /// event (`synshare status --json` shows them under `exchange.stats`).
    #[derive(Serialize)]
    pub struct ExchangeCounters {
        /// Heartbeats sent.
        sent,
        /// Consensus messages sent.
        consensus_sent,
        /// Datagrams received.
        received,
        /// Heartbeats accepted.
        accepted,
        /// Consensus messages accepted.
        consensus_accepted,
        /// Dropped: from an address that is no member.
        rejected_unknown_source,
        /// Size of the state file as last written.
        state_file_bytes,
        /// Consensus log entries held.
        log_entries,
        /// Rejected: length.
        rejected_bad_length,
        /// Rejected: not ours.
        rejected_not_heartbeat,
        /// Rejected: a key id not accepted.
        rejected_unknown_key,
        /// Rejected: authentication failed.
        rejected_bad_tag,
        /// Rejected: authentic but inconsistent or insane.
        rejected_malformed,
        /// Rejected: a sequence number already seen.
        rejected_replayed,
        /// Rejected: an older incarnation of the sender.
        rejected_stale,
        /// Rejected: another segment.
        rejected_foreign,
        /// Rejected: a member id not configured.
        rejected_unknown_member,
        /// Rejected: claims to be this member.
        rejected_own_id,
        /// Rejected: this member's own past (an earlier incarnation).
        rejected_own_past,
        /// Rejected: settings that must agree differ.
        rejected_settings,
        /// Elections started because the leader went silent.
        campaigns,
        /// Tables applied.
        epochs_adopted,
        /// Tables proposed as leader.
        epochs_created,
        /// Buckets released.
        buckets_released,
        /// Buckets claimed.
        buckets_claimed,
        /// Members that stopped being live.
        failovers,
        /// Times the lease ran out.
        fenced,
        /// Members heard for the first time, or with a new incarnation.
        joins,
        /// Voter set changes applied.
        voter_changes,
        /// Directory changes applied.
        directory_changes,
        /// Times the consensus log was compacted.
        log_compactions,
        /// Snapshots installed.
        snapshots_installed,
        /// Snapshots sent.
        snapshots_sent,
        /// Datagrams the socket would not send.
        send_errors,
    }
    flattened:
    /// A count per event: `exchange.stats.event_lost` and the like.
    events: EventCounts
}

impl ExchangeCounters {
    /// Every counter, the events' included: (name, value), in the order
    /// declared.
    pub fn all(&self) -> Vec<(&'static str, u64)> {
        let mut all = self.entries();
        all.extend(self.events.entries());
        all
    }

    /// The datagrams rejected, by reason (the counter's name without
    /// `rejected_`).
    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        self.entries()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("rejected_").map(|reason| (reason, v)))
            .collect()
    }
}

counters! {
    /// A count per event of the agent, named `event_` and the event; in
    /// JSON only those that happened, as they always were.
    pub struct EventCounts {
        /// A member joined.
        event_joined,
        /// A member stopped being live.
        event_lost,
        /// A new table.
        event_new_epoch,
        /// Buckets released.
        event_released,
        /// Buckets claimed.
        event_claimed,
        /// The lease ran out.
        event_fenced,
        /// The lease came back.
        event_unfenced,
        /// Another process uses this id.
        event_duplicate_id,
        /// A member's settings differ.
        event_settings_differ,
        /// An election started.
        event_campaign,
        /// The leader changed.
        event_leader_changed,
        /// The voters changed.
        event_voters_changed,
        /// The member directory changed.
        event_directory_changed,
        /// A membership change was refused.
        event_change_refused,
    }
}

impl EventCounts {
    /// Counts `e`.
    fn count(&mut self, e: &Event) {
        let n = match e {
            Event::Joined { .. } => &mut self.event_joined,
            Event::Lost { .. } => &mut self.event_lost,
            Event::NewEpoch { .. } => &mut self.event_new_epoch,
            Event::Released { .. } => &mut self.event_released,
            Event::Claimed { .. } => &mut self.event_claimed,
            Event::LeaseLost => &mut self.event_fenced,
            Event::LeaseRegained => &mut self.event_unfenced,
            Event::DuplicateId { .. } => &mut self.event_duplicate_id,
            Event::SettingsDiffer { .. } => &mut self.event_settings_differ,
            Event::Campaign => &mut self.event_campaign,
            Event::Leader { .. } => &mut self.event_leader_changed,
            Event::Voters { .. } => &mut self.event_voters_changed,
            Event::Directory { .. } => &mut self.event_directory_changed,
            Event::ChangeRefused { .. } => &mut self.event_change_refused,
        };
        *n += 1;
    }
}

impl Serialize for EventCounts {
    /// Only the events that happened, as when they were a map.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let happened: Vec<_> = self.entries().into_iter().filter(|(_, v)| *v > 0).collect();
        let mut map = serializer.serialize_map(Some(happened.len()))?;
        for (k, v) in happened {
            map.serialize_entry(k, &v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_keep_their_json_names_and_events_show_once_they_happen() {
        // The namespace tests read `exchange.stats.fenced`, `event_lost`...
        let mut c = ExchangeCounters {
            fenced: 2,
            rejected_bad_tag: 3,
            ..ExchangeCounters::default()
        };
        c.events.count(&Event::Lost { member: MemberId(2) });
        let json = serde_json::to_value(&c).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), c.entries().len() + 1, "{keys:?}");
        for k in [
            "sent",
            "rejected_unknown_source",
            "state_file_bytes",
            "log_entries",
            "send_errors",
        ] {
            assert!(keys.contains(&k), "{k}");
        }
        assert_eq!(
            (json["fenced"].as_u64(), json["rejected_bad_tag"].as_u64()),
            (Some(2), Some(3))
        );
        assert_eq!(json["event_lost"].as_u64(), Some(1));
        assert!(json.get("event_joined").is_none(), "an event that never happened");
        assert_eq!(serde_json::from_value::<ExchangeCounters>(json).unwrap(), c);
        assert_eq!(c.rejected().len(), 13);
        assert!(c.rejected().contains(&("bad_tag", 3)));
    }

    #[test]
    fn the_state_file_is_replaced_whole_and_read_back() {
        let dir = std::env::temp_dir().join(format!("ss-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.segment0.state");
        assert_eq!(load_state(&path), Ok(None), "no file: a fresh member");
        // What a fresh member of a two-member segment saves first.
        let mut agent = Agent::new(
            MemberId(1),
            &[MemberId(1), MemberId(2)],
            7,
            synshare_control::protocol::Settings::default(),
            Keys::single(b"k"),
            1000,
            None,
            0,
        )
        .unwrap();
        let p = agent.take_persist().unwrap();
        assert_eq!(p.incarnation, 7);
        let bytes = save_state(&path, &p).unwrap();
        assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
        assert!(!path.with_extension("tmp").exists());
        assert_eq!(load_state(&path), Ok(Some(p)));
        std::fs::write(&path, b"SSSTATE9 not ours").unwrap();
        let e = load_state(&path).unwrap_err();
        assert!(
            e.contains("node.segment0.state") && e.contains("not a synshare state file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_source_filter_is_the_other_members_and_open_only_while_joining() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let start = |me: u32, bootstrap: Bootstrap| {
            let s = synshare_control::protocol::Settings::default();
            Agent::start(MemberId(me), bootstrap, 1, s, Keys::single(b"k"), 1000, None, 0).unwrap()
        };
        // A coordinator bound to every address: its own wildcard is not a
        // source, and opens nothing.
        let coordinator = start(
            0,
            Bootstrap::Members(vec![
                (MemberId(0), a("0.0.0.0:7946")),
                (MemberId(1), a("192.0.2.21:7946")),
                (MemberId(2), a("192.0.2.22:7946")),
            ]),
        );
        let ips = |v: &[&str]| v.iter().map(|s| s.parse::<IpAddr>().unwrap()).collect::<Vec<_>>();
        assert_eq!(sources_of(&coordinator), Some(ips(&["192.0.2.21", "192.0.2.22"])));
        let node = start(
            1,
            Bootstrap::Members(vec![
                (MemberId(0), a("192.0.2.9:7946")),
                (MemberId(1), a("192.0.2.21:7946")),
                (MemberId(2), a("192.0.2.22:7946")),
            ]),
        );
        assert_eq!(sources_of(&node), Some(ips(&["192.0.2.9", "192.0.2.22"])));
        // Joining: the members' addresses are not known yet.
        assert_eq!(sources_of(&start(4, Bootstrap::Join(a("192.0.2.21:7946")))), None);
    }

    #[test]
    fn an_incarnation_never_goes_back_with_or_without_its_state_file() {
        let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
        // A state file: one more than saved, or the clock if that is later.
        assert_eq!(incarnation(1_800_000_000_000, at(1_700_000_000_000)), 1_800_000_000_001);
        assert_eq!(incarnation(5, at(1_700_000_000_000)), 1_700_000_000_000);
        // A lost file: the clock, later than the previous start's.
        assert!(incarnation(0, at(1_700_000_000_500)) > incarnation(0, at(1_700_000_000_000)));
        assert_eq!(incarnation(u64::MAX, at(0)), u64::MAX);
    }

    #[test]
    fn a_stall_after_reading_the_clock_does_not_lengthen_the_workers_lease() {
        // The agent grants until 10 400 ms at 10 000 ms; the TSC runs at
        // 1 000 cycles per ms and read 5 000 000 then.
        let at = Now {
            ms: 10_000,
            stamp: 5_000_000,
        };
        let lease = Lease::none();
        lease.set(driver::worker_deadline(Some(10_400), at, 50, 1_000));
        // Valid for the lease less the guard, counted from the reading ...
        assert!(lease.valid_at(5_000_000 + 349_000));
        assert!(!lease.valid_at(5_000_000 + 350_000));
        // ... so a control thread stopped for 3 s after reading its clock
        // publishes, when it runs again, a lease already over.
        assert!(!lease.valid_at(5_000_000 + 3_000_000));
    }

    #[test]
    fn no_lease_or_one_ending_within_the_guard_gives_the_workers_none() {
        let at = Now {
            ms: 10_000,
            stamp: 5_000_000,
        };
        assert_eq!(driver::worker_deadline(None, at, 50, 1_000), 0);
        assert_eq!(driver::worker_deadline(Some(10_050), at, 50, 1_000), 0);
        assert_eq!(driver::worker_deadline(Some(9_000), at, 50, 1_000), 0);
        assert_eq!(driver::worker_deadline(Some(10_051), at, 50, 1_000), 5_001_000);
        // No overflow at the end of the number space.
        assert_eq!(driver::worker_deadline(Some(u64::MAX), at, 50, u64::MAX), u64::MAX);
    }
}
