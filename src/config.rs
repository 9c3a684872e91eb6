//! The node's RON configuration: parsing with positions and field paths in
//! every error, then validation of what the types cannot say.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use synshare_control::layout::Layout;
use synshare_control::protocol::Settings;
use synshare_control::wire::{Key, Keys, MAX_MEMBERS};
use synshare_dataplane::packet::Mac;

/// A configuration error: the file, where in it, which field, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// The field's path, e.g. `sharing.members[2].weight`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

fn mac<'de, D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
    let s = String::deserialize(d)?;
    Mac::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")))
}

fn opt_mac<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mac>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(s) => Mac::parse(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))),
    }
}

/// Hugepage use.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Hugepages {
    /// Use hugepages when enough are free, else `--no-huge`.
    #[default]
    Auto,
    /// Require hugepages.
    On,
    /// Never (`--no-huge`, slower).
    Off,
}

/// EAL settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    /// The lcores, as EAL's `-l` takes them: the first is the control core,
    /// the others run workers.
    pub lcores: String,
    /// Memory in MiB.
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    /// Hugepage use.
    #[serde(default)]
    pub hugepages: Hugepages,
    /// EAL's `--file-prefix`; distinct for every process on a machine.
    pub file_prefix: String,
    /// The control lcore (EAL's `--main-lcore`); by default the first of
    /// `lcores`. The other lcores run workers.
    #[serde(default)]
    pub main_lcore: Option<u32>,
    /// Further EAL arguments, passed as they are.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

fn default_memory() -> u32 {
    256
}

/// The wire port.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireConfig {
    /// A PCI address (`0000:3b:00.0`) or a virtual device with its
    /// arguments (`net_af_packet0,iface=eth1`).
    pub device: String,
    /// RX descriptors per queue.
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    /// TX descriptors per queue.
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
    /// Use the NIC's RSS hash as the connection value (needs several queues
    /// and a NIC that hashes TCP/UDP with the cluster's key).
    #[serde(default)]
    pub rss: bool,
}

fn default_desc() -> u16 {
    1024
}

/// The exception port to the host kernel.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionConfig {
    /// The TAP interface's name in the kernel.
    pub iface: String,
    /// Its MAC; by default the wire port's, so that the kernel's frames
    /// need no rewriting beyond the Ethernet source.
    #[serde(default, deserialize_with = "opt_mac")]
    pub mac: Option<Mac>,
    /// The node's own addresses with their prefix length ("192.0.2.21/24",
    /// "2001:db8::21/64"). When given, the node sets the TAP up itself each
    /// time it creates it: these addresses, ARP and DAD settings that keep
    /// the kernel from announcing them wrongly, checksum offload off (the
    /// wire computes none), link up. Empty: left to the operator.
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A virtual IP and the ports it serves.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    /// The address.
    pub addr: IpAddr,
    /// TCP ports served.
    #[serde(default)]
    pub tcp_ports: Vec<u16>,
    /// UDP ports served.
    #[serde(default)]
    pub udp_ports: Vec<u16>,
}

/// Idle back-off of the workers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdleConfig {
    /// Empty polls before sleeping.
    #[serde(default = "default_empty_polls")]
    pub empty_polls: u32,
    /// Sleep per empty poll after that, in microseconds (0: busy-poll).
    #[serde(default = "default_sleep_us")]
    pub sleep_us: u32,
}

fn default_empty_polls() -> u32 {
    256
}
fn default_sleep_us() -> u32 {
    100
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            empty_polls: default_empty_polls(),
            sleep_us: default_sleep_us(),
        }
    }
}

/// The flow tables (one per worker).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowTableConfig {
    /// Flows per worker.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Half-open entries expire after this, in ms.
    #[serde(default = "default_half_open")]
    pub half_open_ms: u32,
    /// Established entries expire after this idle time, in seconds.
    #[serde(default = "default_established")]
    pub established_s: u32,
    /// Entries after a FIN expire after this, in ms.
    #[serde(default = "default_closing")]
    pub closing_ms: u32,
}

fn default_capacity() -> u32 {
    262_144
}
fn default_half_open() -> u32 {
    5_000
}
fn default_established() -> u32 {
    300
}
fn default_closing() -> u32 {
    10_000
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            capacity: default_capacity(),
            half_open_ms: default_half_open(),
            established_s: default_established(),
            closing_ms: default_closing(),
        }
    }
}

/// A cluster member and its configured capacity weight.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Member id, unique in the cluster.
    pub id: u32,
    /// Configured capacity weight (relative).
    pub weight: f64,
}

/// How the VIPs' connections are shared.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharingConfig {
    /// Buckets of the connection-value space (a power of two).
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// `rendezvous` (minimal movement) or `ranges` (contiguous).
    #[serde(default)]
    pub layout: Layout,
    /// After acquiring a bucket, unknown non-SYN packets in it are dropped
    /// for this long (they may belong to the previous owner), in ms.
    #[serde(default = "default_drain")]
    pub drain_ms: u32,
    /// The members, the same list on every node (static shares; with an
    /// exchange, membership is discovered and this list may be empty).
    #[serde(default)]
    pub members: Vec<MemberConfig>,
}

fn default_buckets() -> u32 {
    65_536
}
fn default_drain() -> u32 {
    60_000
}

/// The availability exchange with the other members (peer mode), and with
/// a coordinator where one runs. Defaults come from the protocol's own
/// [`Settings::default`], so the simulator tests the values production uses.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Where heartbeats are received (UDP).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// The other members: member id → heartbeat address. Datagrams from any
    /// other source are dropped before authentication.
    #[serde(default)]
    pub peers: BTreeMap<u32, SocketAddr>,
    /// A coordinator's address (member 0; it votes and leads, holds no
    /// buckets). In peer mode it is the witness a two-node cluster needs.
    #[serde(default)]
    pub coordinator: Option<SocketAddr>,
    /// A file of keys, one `ID SECRET` per line (ID 0-255, SECRET at least
    /// 16 bytes); the first is sent with, all are accepted (rolling
    /// rotation). It must not be group- or world-readable. A path starting
    /// with `$CREDENTIALS_DIRECTORY/` is a systemd credential.
    #[serde(default)]
    pub key_file: Option<String>,
    /// The key inline, instead of `key_file` (tests).
    #[serde(default)]
    pub key: Option<String>,
    /// The inline key's id.
    #[serde(default)]
    pub key_id: u8,
    /// Where the exchange keeps its state (consensus log, incarnation)
    /// across restarts.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The segment (one member set and table per segment).
    #[serde(default)]
    pub segment: u16,
    /// Heartbeat interval, ms.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// A member not heard both ways this long is not live, ms.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// A lease lasts this long after the heartbeat that renewed it; a
    /// silent member's buckets move about this long after it is found not
    /// live (default: `timeout_ms`).
    #[serde(default)]
    pub lease_ms: Option<u64>,
    /// Weight-driven table changes at most this often, ms.
    #[serde(default = "default_min_epoch")]
    pub min_epoch_ms: u64,
    /// Weight changes up to this (capacity units) change no table.
    #[serde(default = "default_hysteresis")]
    pub hysteresis: f64,
}

/// Keys known to be samples: refused.
const SAMPLE_KEYS: &[&str] = &["change-me-to-a-long-random-secret"];

impl ExchangeConfig {
    /// The keys, from `key_file` or `key`.
    pub fn keys(&self) -> Result<Keys, String> {
        let keys = match (&self.key_file, &self.key) {
            (Some(f), None) => read_key_file(&expand_credentials(f)?)?,
            (None, Some(k)) => vec![Key {
                id: self.key_id,
                secret: k.as_bytes().to_vec(),
            }],
            (Some(_), Some(_)) => return Err("give key_file or key, not both".into()),
            (None, None) => return Err("key_file (or key) is required: heartbeats are authenticated".into()),
        };
        for k in &keys {
            if k.secret.len() < 16 {
                return Err(format!("key {}: at least 16 bytes", k.id));
            }
            if SAMPLE_KEYS.iter().any(|s| s.as_bytes() == k.secret) {
                return Err(format!(
                    "key {}: a published sample key; generate your own (e.g. openssl rand -hex 32)",
                    k.id
                ));
            }
        }
        Keys::new(keys).ok_or_else(|| "two keys share an id".into())
    }

    /// The protocol settings this section gives.
    pub fn settings(&self) -> Settings {
        Settings {
            segment: self.segment,
            interval_ms: self.interval_ms,
            timeout_ms: self.timeout_ms,
            lease_ms: self.lease_ms.unwrap_or(self.timeout_ms),
            min_epoch_ms: self.min_epoch_ms,
            hysteresis_milli: (self.hysteresis * 1000.0).round() as u32,
            remove_after_ms: 3 * self.timeout_ms,
            ..Settings::default()
        }
    }

    /// Every configured member's address (the coordinator as member 0).
    pub fn addresses(&self) -> BTreeMap<u32, SocketAddr> {
        let mut a = self.peers.clone();
        if let Some(c) = self.coordinator {
            a.insert(0, c);
        }
        a
    }
}

fn expand_credentials(path: &str) -> Result<PathBuf, String> {
    match path.strip_prefix("$CREDENTIALS_DIRECTORY/") {
        Some(rest) => std::env::var("CREDENTIALS_DIRECTORY")
            .map(|d| Path::new(&d).join(rest))
            .map_err(|_| {
                format!("{path}: CREDENTIALS_DIRECTORY is not set (not started by systemd with LoadCredential)")
            }),
        None => Ok(PathBuf::from(path)),
    }
}

fn read_key_file(path: &Path) -> Result<Vec<Key>, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{}: readable by group or others (mode {:o}); chmod 600",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, secret) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{}:{}: expected `ID SECRET`", path.display(), n + 1))?;
        let id: u8 = id
            .parse()
            .map_err(|_| format!("{}:{}: key id {id:?}: 0 to 255", path.display(), n + 1))?;
        keys.push(Key {
            id,
            secret: secret.trim().as_bytes().to_vec(),
        });
    }
    if keys.is_empty() {
        return Err(format!("{}: no key", path.display()));
    }
    Ok(keys)
}

/// "ADDRESS/PREFIX" with a prefix that fits the address family.
pub fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((addr, prefix))
}

fn default_stop_drain() -> u32 {
    30
}
fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7946))
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/synshare")
}
fn default_interval() -> u64 {
    Settings::default().interval_ms
}
fn default_timeout() -> u64 {
    Settings::default().timeout_ms
}
fn default_min_epoch() -> u64 {
    Settings::default().min_epoch_ms
}
fn default_hysteresis() -> f64 {
    f64::from(Settings::default().hysteresis_milli) / 1000.0
}

/// Where CPU load is read from.
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CpuSource {
    /// Not measured.
    #[default]
    None,
    /// The whole machine (/proc/stat): for a dedicated server.
    Host,
    /// The service's cgroup (v2, or v1 cpu+cpuacct) against its CPU quota:
    /// for servers that share a machine.
    Cgroup(String),
}

/// How the node measures its available capacity.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityConfig {
    /// Configured capacity weight; changeable at run time.
    #[serde(default = "default_capacity_weight")]
    pub capacity: f64,
    /// Sampling period, ms.
    #[serde(default = "default_sample")]
    pub sample_ms: u64,
    /// CPU load source.
    #[serde(default)]
    pub cpu: CpuSource,
    /// Availability falls as (1 - cpu_busy) ^ cpu_exponent.
    #[serde(default = "default_one")]
    pub cpu_exponent: f64,
    /// Availability falls to 0 as connections reach this.
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// A TCP address of the local service to probe; no answer: availability 0.
    #[serde(default)]
    pub service_probe: Option<SocketAddr>,
    /// An hwmon temperature file (millidegrees), with the temperatures where
    /// availability starts to fall and reaches 0 (°C).
    #[serde(default)]
    pub temperature: Option<(PathBuf, f64, f64)>,
    /// A powercap energy counter (µJ) and the power budget (W).
    #[serde(default)]
    pub power: Option<(PathBuf, f64)>,
    /// EWMA weight of a new sample.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Largest change per sample, as a fraction of capacity.
    #[serde(default = "default_max_step")]
    pub max_step: f64,
    /// A healthy node keeps at least this fraction of its capacity.
    #[serde(default = "default_floor")]
    pub floor: f64,
}

fn default_capacity_weight() -> f64 {
    1.0
}
fn default_sample() -> u64 {
    250
}
fn default_one() -> f64 {
    1.0
}
fn default_alpha() -> f64 {
    0.5
}
fn default_max_step() -> f64 {
    0.25
}
fn default_floor() -> f64 {
    0.05
}

impl Default for AvailabilityConfig {
    fn default() -> Self {
        AvailabilityConfig {
            capacity: default_capacity_weight(),
            sample_ms: default_sample(),
            cpu: CpuSource::None,
            cpu_exponent: default_one(),
            max_connections: None,
            service_probe: None,
            temperature: None,
            power: None,
            alpha: default_alpha(),
            max_step: default_max_step(),
            floor: default_floor(),
        }
    }
}

/// Another segment the node has a wire port on (patent Fig. 6, claims
/// 11-15): its own VIPs, cluster MAC, members and table, and exchange.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    /// The wire port on this segment.
    pub wire: WireConfig,
    /// The exception port for this segment's traffic.
    pub exception: ExceptionConfig,
    /// The MAC this segment's VIPs resolve to.
    #[serde(deserialize_with = "mac")]
    pub cluster_mac: Mac,
    /// This segment's VIPs.
    pub vips: Vec<VipConfig>,
    /// This segment's sharing (members and weights for static shares).
    pub sharing: SharingConfig,
    /// This segment's exchange (its own segment id and port).
    #[serde(default)]
    pub exchange: Option<ExchangeConfig>,
}

/// A node's whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name (in logs, status and the demo's pages).
    pub name: String,
    /// The node's member id.
    pub id: u32,
    /// EAL settings.
    pub eal: EalConfig,
    /// The wire port.
    pub wire: WireConfig,
    /// The exception port.
    pub exception: ExceptionConfig,
    /// The MAC the VIPs resolve to.
    #[serde(deserialize_with = "mac")]
    pub cluster_mac: Mac,
    /// The VIPs.
    pub vips: Vec<VipConfig>,
    /// Worker lcores (and queues per port).
    #[serde(default = "default_workers")]
    pub workers: u16,
    /// Idle back-off.
    #[serde(default)]
    pub idle: IdleConfig,
    /// Flow tables.
    #[serde(default)]
    pub flow_table: FlowTableConfig,
    /// Sharing.
    pub sharing: SharingConfig,
    /// Where the status socket listens (a Unix socket path).
    #[serde(default)]
    pub status_socket: Option<PathBuf>,
    /// Where the Prometheus metrics are served (HTTP, `GET /metrics`).
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// The availability exchange; without it, shares are static (from
    /// `sharing.members`).
    #[serde(default)]
    pub exchange: Option<ExchangeConfig>,
    /// How available capacity is measured.
    #[serde(default)]
    pub availability: AvailabilityConfig,
    /// Further segments the node is on (the fields above are its first).
    #[serde(default)]
    pub segments: Vec<SegmentConfig>,
    /// On SIGTERM, with an exchange: take no new connections (the others
    /// take the share at once), keep serving known flows until they end or
    /// this many seconds pass, then stop. 0: stop at once. SIGINT, or a
    /// second SIGTERM, stops at once.
    #[serde(default = "default_stop_drain")]
    pub stop_drain_s: u32,
}

/// One segment's fields, wherever they are written.
pub struct SegmentView<'a> {
    /// Index among the node's segments (0: the top-level fields).
    pub index: usize,
    /// Wire port.
    pub wire: &'a WireConfig,
    /// Exception port.
    pub exception: &'a ExceptionConfig,
    /// Cluster MAC.
    pub cluster_mac: Mac,
    /// VIPs.
    pub vips: &'a [VipConfig],
    /// Sharing.
    pub sharing: &'a SharingConfig,
    /// Exchange.
    pub exchange: Option<&'a ExchangeConfig>,
}

impl NodeConfig {
    /// Every segment of the node, the first from the top-level fields.
    pub fn all_segments(&self) -> Vec<SegmentView<'_>> {
        let mut v = vec![SegmentView {
            index: 0,
            wire: &self.wire,
            exception: &self.exception,
            cluster_mac: self.cluster_mac,
            vips: &self.vips,
            sharing: &self.sharing,
            exchange: self.exchange.as_ref(),
        }];
        for (i, s) in self.segments.iter().enumerate() {
            v.push(SegmentView {
                index: i + 1,
                wire: &s.wire,
                exception: &s.exception,
                cluster_mac: s.cluster_mac,
                vips: &s.vips,
                sharing: &s.sharing,
                exchange: s.exchange.as_ref(),
            });
        }
        v
    }
}

fn default_workers() -> u16 {
    1
}

impl NodeConfig {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            position: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text`, reporting errors against `path`.
    pub fn parse(path: &Path, text: &str) -> Result<NodeConfig, ConfigError> {
        let config: NodeConfig = parse_ron(path, text)?;
        config.validate().map_err(|(field, message)| ConfigError {
            file: path.to_owned(),
            position: None,
            field: Some(field),
            message,
        })?;
        Ok(config)
    }
}

/// Parses RON into `T`, with positions and field paths in errors.
fn parse_ron<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    {
        let err = |position: Option<(usize, usize)>, field: Option<String>, message: String| ConfigError {
            file: path.to_owned(),
            position,
            field,
            message,
        };
        // `key: "x"` as well as `key: Some("x")`.
        let options = ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let mut de = ron::Deserializer::from_str_with_options(text, &options)
            .map_err(|e| err(Some((e.span.start.line, e.span.start.col)), None, e.code.to_string()))?;
        let config: T = match serde_path_to_error::deserialize(&mut de) {
            Ok(c) => c,
            Err(e) => {
                let path = e.path().to_string();
                let spanned = de.span_error(e.into_inner());
                let field = (path != "." && !path.is_empty()).then_some(path);
                return Err(err(
                    Some((spanned.span.start.line, spanned.span.start.col)),
                    field,
                    spanned.code.to_string(),
                ));
            }
        };
        de.end().map_err(|e| {
            let spanned = de.span_error(e);
            err(
                Some((spanned.span.start.line, spanned.span.start.col)),
                None,
                format!("{} (after the configuration)", spanned.code),
            )
        })?;
        Ok(config)
    }
}

impl NodeConfig {
    /// Checks what the types cannot: returns the field and the problem.
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_owned(), m));
        if self.name.is_empty()
            || self.name.len() > 32
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(
                "name",
                format!("{:?}: 1 to 32 characters of letters, digits, '-' or '_'", self.name),
            );
        }
        if self.eal.lcores.trim().is_empty() {
            return bad(
                "eal.lcores",
                "empty: name the control lcore and at least one worker lcore, e.g. \"0,1\"".into(),
            );
        }
        if self.eal.file_prefix.is_empty() || self.eal.file_prefix.contains('/') {
            return bad(
                "eal.file_prefix",
                format!("{:?} must be a non-empty name without '/'", self.eal.file_prefix),
            );
        }
        if self.eal.memory_mb < 64 {
            return bad(
                "eal.memory_mb",
                format!("{} MiB is too little; at least 64", self.eal.memory_mb),
            );
        }
        for seg in self.all_segments() {
            self.validate_segment(&seg)?;
        }
        let segs = self.all_segments();
        for (i, x) in segs.iter().enumerate() {
            let at = if x.index == 0 {
                String::new()
            } else {
                format!("segments[{}].", x.index - 1)
            };
            if segs[..i].iter().any(|o| o.exception.iface == x.exception.iface) {
                return bad(
                    &format!("{at}exception.iface"),
                    format!("{:?} is used by another segment", x.exception.iface),
                );
            }
            if segs[..i].iter().any(|o| o.wire.device == x.wire.device) {
                return bad(&format!("{at}wire.device"), "used by another segment".into());
            }
            if let Some(e) = x.exchange {
                if segs[..i].iter().any(|o| {
                    o.exchange
                        .is_some_and(|oe| oe.segment == e.segment || oe.bind == e.bind)
                }) {
                    return bad(
                        &format!("{at}exchange"),
                        "segment id and bind address must differ between segments".into(),
                    );
                }
            }
        }
        if self.workers == 0 || self.workers > 16 {
            return bad("workers", format!("{}: from 1 to 16", self.workers));
        }
        let ft = &self.flow_table;
        if !(1024..=(1 << 28)).contains(&ft.capacity) {
            return bad(
                "flow_table.capacity",
                format!("{}: from 1024 to 268435456", ft.capacity),
            );
        }
        if ft.half_open_ms == 0 || ft.closing_ms == 0 || ft.established_s == 0 || ft.established_s > 86_400 {
            return bad(
                "flow_table",
                "timeouts must be positive, established_s at most 86400".into(),
            );
        }
        for x in self.all_segments() {
            if x.exchange.is_none() && !x.sharing.members.iter().any(|m| m.id == self.id) {
                let at = if x.index == 0 {
                    String::new()
                } else {
                    format!("segments[{}].", x.index - 1)
                };
                return bad("id", format!("{} is not among {at}sharing.members", self.id));
            }
        }
        if self.id == 0 {
            return bad("id", "0 is the coordinator's id; nodes use 1 and up".into());
        }
        let a = &self.availability;
        if !a.capacity.is_finite() || a.capacity < 0.0 || a.capacity > 1_000_000.0 {
            return bad("availability.capacity", format!("{}: from 0 to 1000000", a.capacity));
        }
        if a.sample_ms < 10 {
            return bad("availability.sample_ms", format!("{}: at least 10", a.sample_ms));
        }
        if !(a.alpha > 0.0 && a.alpha <= 1.0) {
            return bad("availability.alpha", format!("{}: in (0, 1]", a.alpha));
        }
        if !((0.0..=1.0).contains(&a.floor) && a.max_step > 0.0 && a.max_step <= 1.0) {
            return bad("availability", "floor in [0, 1] and max_step in (0, 1]".into());
        }
        if let CpuSource::Cgroup(name) = &a.cpu {
            if name.is_empty() || name.contains("..") {
                return bad("availability.cpu", format!("cgroup {name:?} is not a cgroup name"));
            }
        }
        Ok(())
    }

    /// Checks one segment's fields.
    fn validate_segment(&self, x: &SegmentView<'_>) -> Result<(), (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_owned(), m));
        let at = if x.index == 0 {
            String::new()
        } else {
            format!("segments[{}].", x.index - 1)
        };
        for (k, a) in x.exception.addresses.iter().enumerate() {
            if parse_prefix(a).is_none() {
                return bad(
                    &format!("{at}exception.addresses[{k}]"),
                    format!("{a:?}: an address with its prefix length, e.g. 192.0.2.21/24 or 2001:db8::21/64"),
                );
            }
        }
        if x.wire.device.trim().is_empty() || x.wire.device.contains(char::is_whitespace) {
            return bad(
                &format!("{at}wire.device"),
                format!("{:?}: a PCI address or vdev arguments without spaces", x.wire.device),
            );
        }
        for (f, d) in [
            (format!("{at}wire.rx_desc"), x.wire.rx_desc),
            (format!("{at}wire.tx_desc"), x.wire.tx_desc),
        ] {
            if !(64..=8192).contains(&d) || !d.is_power_of_two() {
                return bad(&f, format!("{d}: a power of two from 64 to 8192"));
            }
        }
        if x.exception.iface.is_empty() || x.exception.iface.len() > 15 || x.exception.iface.contains([',', '/', ' ']) {
            return bad(
                &format!("{at}exception.iface"),
                format!("{:?}: an interface name of 1 to 15 characters", x.exception.iface),
            );
        }
        if let Some(m) = x.exception.mac {
            if m.is_group() {
                return bad(&format!("{at}exception.mac"), format!("{m} is a group address"));
            }
        }
        if let Err(e) = crate::membership::groups(x.cluster_mac, x.vips) {
            return bad(&format!("{at}cluster_mac"), e);
        }
        if x.cluster_mac == Mac([0; 6]) || x.cluster_mac == Mac::BROADCAST {
            return bad(
                &format!("{at}cluster_mac"),
                format!("{} cannot be the cluster MAC", x.cluster_mac),
            );
        }
        if x.vips.is_empty() {
            return bad(&format!("{at}vips"), "no VIP: name at least one".into());
        }
        for (i, v) in x.vips.iter().enumerate() {
            if v.addr.is_unspecified() || v.addr.is_multicast() || v.addr.is_loopback() {
                return bad(&format!("{at}vips[{i}].addr"), format!("{} cannot be a VIP", v.addr));
            }
            if x.vips[..i].iter().any(|o| o.addr == v.addr) {
                return bad(&format!("{at}vips[{i}].addr"), format!("{} is listed twice", v.addr));
            }
            if v.tcp_ports.is_empty() && v.udp_ports.is_empty() {
                return bad(
                    &format!("{at}vips[{i}]"),
                    "serves no port: list tcp_ports or udp_ports".into(),
                );
            }
            if v.tcp_ports.contains(&0) || v.udp_ports.contains(&0) {
                return bad(&format!("{at}vips[{i}]"), "port 0 cannot be served".into());
            }
        }
        let s = x.sharing;
        if !s.buckets.is_power_of_two() || !(16..=(1 << 20)).contains(&s.buckets) {
            return bad(
                &format!("{at}sharing.buckets"),
                format!("{}: a power of two from 16 to 1048576", s.buckets),
            );
        }
        if s.members.is_empty() && x.exchange.is_none() {
            return bad(
                &format!("{at}sharing.members"),
                "empty: list every member, this node included (or configure an exchange)".into(),
            );
        }
        for (i, m) in s.members.iter().enumerate() {
            if !m.weight.is_finite() || m.weight < 0.0 {
                return bad(
                    &format!("{at}sharing.members[{i}].weight"),
                    format!("{}: a finite weight >= 0", m.weight),
                );
            }
            if s.members[..i].iter().any(|o| o.id == m.id) {
                return bad(
                    &format!("{at}sharing.members[{i}].id"),
                    format!("member {} is listed twice", m.id),
                );
            }
        }
        if let Some(e) = x.exchange {
            validate_exchange(e, &format!("{at}exchange"))?;
            if e.peers.contains_key(&self.id) {
                return Err((
                    format!("{at}exchange.peers"),
                    format!("member {} is this node (id): list only the others", self.id),
                ));
            }
            if self.id == 0 {
                return Err(("id".into(), "0 is the coordinator's id: nodes take 1 and up".into()));
            }
            for (id, a) in &e.peers {
                if x.vips.iter().any(|v| v.addr == a.ip()) {
                    return Err((
                        format!("{at}exchange.peers"),
                        format!("member {id}: {} is a VIP, not a member's own address", a.ip()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks an exchange section; `at` is its field path.
pub fn validate_exchange(x: &ExchangeConfig, at: &str) -> Result<(), (String, String)> {
    let field = |f: &str| format!("{at}.{f}");
    if x.key_file.is_some() || x.key.is_some() {
        // A credential exists only under systemd: checked at start.
        let deferred = x
            .key_file
            .as_deref()
            .is_some_and(|f| f.starts_with("$CREDENTIALS_DIRECTORY/"))
            && std::env::var_os("CREDENTIALS_DIRECTORY").is_none();
        if !deferred {
            x.keys()
                .map_err(|e| (field(if x.key_file.is_some() { "key_file" } else { "key" }), e))?;
        }
    } else {
        return Err((field("key_file"), "required: heartbeats are authenticated".into()));
    }
    if x.interval_ms < 10 || x.interval_ms > 10_000 {
        return Err((field("interval_ms"), format!("{}: from 10 to 10000", x.interval_ms)));
    }
    if x.timeout_ms < 2 * x.interval_ms || x.timeout_ms > 60_000 {
        return Err((
            field("timeout_ms"),
            format!("{}: from twice interval_ms ({}) to 60000", x.timeout_ms, x.interval_ms),
        ));
    }
    if let Some(l) = x.lease_ms {
        if l < 2 * x.interval_ms || l > 60_000 {
            return Err((field("lease_ms"), format!("{l}: from twice interval_ms to 60000")));
        }
    }
    if !x.hysteresis.is_finite() || x.hysteresis < 0.0 {
        return Err((field("hysteresis"), format!("{}: a finite value >= 0", x.hysteresis)));
    }
    let addresses = x.addresses();
    if addresses.len() + 1 > MAX_MEMBERS {
        return Err((field("peers"), format!("at most {} members", MAX_MEMBERS)));
    }
    if let Some((id, _)) = x.peers.iter().find(|(_, a)| **a == x.bind) {
        return Err((
            field("peers"),
            format!("member {id}: {} is this node's own address", x.bind),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (id, a) in &addresses {
        if !seen.insert(a) {
            return Err((field("peers"), format!("member {id}: address {a} listed twice")));
        }
    }
    if x.peers.contains_key(&0) {
        return Err((field("peers"), "member 0 is the coordinator: use `coordinator`".into()));
    }
    Ok(())
}

/// A coordinator's configuration (`synshare coordinator`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Its name.
    pub name: String,
    /// The exchange; `peers` are the nodes.
    pub exchange: ExchangeConfig,
    /// Buckets (a power of two), the same as the nodes'.
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Layout, the same as the nodes'.
    #[serde(default)]
    pub layout: Layout,
    /// Where its status socket listens.
    #[serde(default)]
    pub status_socket: Option<PathBuf>,
}

impl CoordinatorConfig {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<CoordinatorConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            position: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        let c: CoordinatorConfig = parse_ron(path, &text)?;
        let err = |(field, message): (String, String)| ConfigError {
            file: path.to_owned(),
            position: None,
            field: Some(field),
            message,
        };
        validate_exchange(&c.exchange, "exchange").map_err(err)?;
        if !c.buckets.is_power_of_two() || !(16..=(1 << 20)).contains(&c.buckets) {
            return Err(err((
                "buckets".into(),
                format!("{}: a power of two from 16 to 1048576", c.buckets),
            )));
        }
        if c.exchange.peers.is_empty() || c.exchange.coordinator.is_some() {
            return Err(err((
                "exchange.peers".into(),
                "list the nodes (id: address); a coordinator has no `coordinator`".into(),
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"(
        name: "node1",
        id: 1,
        eal: (lcores: "0,1", file_prefix: "ss-node1"),
        wire: (device: "net_af_packet0,iface=wire0"),
        exception: (iface: "ss-tap"),
        cluster_mac: "02:5e:00:00:01:00",
        vips: [(addr: "192.0.2.100", tcp_ports: [80]), (addr: "2001:db8::100", tcp_ports: [80])],
        sharing: (members: [(id: 1, weight: 1.0), (id: 2, weight: 2.0)]),
    )"#;

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(Path::new("node.ron"), text)
    }

    #[test]
    fn a_good_config_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.sharing.buckets, 65536);
        assert_eq!(c.sharing.layout, Layout::Rendezvous);
        assert_eq!(c.workers, 1);
        assert_eq!(c.cluster_mac, Mac([2, 0x5e, 0, 0, 1, 0]));
        assert_eq!(c.eal.hugepages, Hugepages::Auto);
    }

    /// Each broken config names the field at fault.
    #[test]
    fn broken_configs_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("\"02:5e:00:00:01:00\"", "\"02:5e:00:00:01\"", "cluster_mac"),
            ("id: 1,", "id: -1,", "id"),
            ("file_prefix: \"ss-node1\"", "file_prefix: \"a/b\"", "eal.file_prefix"),
            (
                "(id: 2, weight: 2.0)",
                "(id: 2, weight: -2.0)",
                "sharing.members[1].weight",
            ),
            ("(id: 2, weight: 2.0)", "(id: 1, weight: 2.0)", "sharing.members[1].id"),
            ("\"192.0.2.100\"", "\"192.0.2.300\"", "vips[0].addr"),
            ("sharing: (", "sharing: (buckets: 1000, ", "sharing.buckets"),
            ("sharing: (", "sharing: (layout: diagonal, ", "sharing.layout"),
            ("wire: (device", "wire: (rx_desc: 100, device", "wire.rx_desc"),
            (
                "exception: (iface: \"ss-tap\")",
                "exception: (iface: \"ss-tap\", colour: 1)",
                "exception",
            ),
            ("id: 1,", "id: 9,", "id"),
        ];
        for (from, to, field) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            let e = parse(&text).expect_err(to);
            let shown = e.to_string();
            assert!(
                e.field.as_deref().is_some_and(|f| f.starts_with(field)),
                "{to}: expected field {field}, got {shown}"
            );
            assert!(shown.starts_with("node.ron"), "{shown}");
        }
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = parse("(\n  name: \"x\",\n  id: 1\n  eal: ()\n)").unwrap_err();
        let (line, _) = e.position.expect("a position");
        assert!((3..=4).contains(&line), "{e}");
    }
}
