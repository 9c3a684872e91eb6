//! The configuration's types: what a node's and a coordinator's RON files
//! say, with their defaults. Every default is written once, here: sections
//! whose fields all have one take `#[serde(default)]` and a `Default` impl
//! (built from the defaults of the code that uses them, such as the
//! protocol's `Settings` and the flow table's `FlowTimeouts`, so a test of
//! that code tests the values production uses); the few fields beside
//! required ones take theirs from [`defaults`].

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use synshare_control::availability::Formula;
use synshare_control::layout::Layout;
use synshare_control::protocol::Settings;
use synshare_control::wire::{Key, Keys};
use synshare_dataplane::flow::FlowTimeouts;
use synshare_dataplane::packet::Mac;

/// Defaults of fields that sit beside required ones (serde needs a function
/// per such field).
pub mod defaults {
    /// `health_check.probe.path`.
    pub fn health_path() -> String {
        "/".to_owned()
    }
    /// `health_check.probe.status`.
    pub fn health_status() -> u16 {
        200
    }
    /// `health_check.timeout_ms`.
    pub fn health_timeout_ms() -> u64 {
        200
    }
    /// `health_check.rise`.
    pub fn health_rise() -> u32 {
        2
    }
    /// `health_check.fall`.
    pub fn health_fall() -> u32 {
        2
    }
    /// `cluster`.
    pub fn cluster() -> String {
        "synshare".to_owned()
    }
    /// `eal.memory_mb`.
    pub fn memory_mb() -> u32 {
        256
    }
    /// `wire.rx_desc` and `wire.tx_desc`.
    pub fn descriptors() -> u16 {
        1024
    }
    /// `workers`.
    pub fn workers() -> u16 {
        1
    }
    /// `stop_drain_s`.
    pub fn stop_drain_s() -> u32 {
        30
    }
    /// `buckets` of a coordinator (the nodes' is `SharingConfig::default`).
    pub fn buckets() -> u32 {
        65_536
    }
}

fn mac<'de, D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
    let s = String::deserialize(d)?;
    Mac::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")))
}

fn opt_mac<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mac>, D::Error> {
    match Option::<String>::deserialize(d)? {
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
    /// The lcores, as EAL's `-l` takes them ("2,3", "2-5"), or a mapping of
    /// lcores to CPUs as its `--lcores` takes them ("0@0,1@1,2@1"): the
    /// control lcore and the worker lcores.
    pub lcores: String,
    /// Memory in MiB.
    #[serde(default = "defaults::memory_mb")]
    pub memory_mb: u32,
    /// Hugepage use.
    #[serde(default)]
    pub hugepages: Hugepages,
    /// EAL's `--file-prefix`; distinct for every process on a machine.
    pub file_prefix: String,
    /// The control lcore (EAL's `--main-lcore`); by default the lowest of
    /// `lcores`. The other lcores run workers.
    #[serde(default)]
    pub main_lcore: Option<u32>,
    /// Further EAL arguments, passed as they are.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Lets `wire.device` and `extra_args` name virtual devices and EAL
    /// options that write files (`net_pcap` with `tx_pcap=`, vhost and
    /// memif sockets, traces): the node runs as root, so such an argument
    /// writes wherever it says. Off: refused by validation.
    #[serde(default)]
    pub allow_file_writing_vdevs: bool,
}

/// The wire port.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireConfig {
    /// A PCI address (`0000:3b:00.0`) or a virtual device with its
    /// arguments (`net_af_packet0,iface=eth1`).
    pub device: String,
    /// RX descriptors per queue.
    #[serde(default = "defaults::descriptors")]
    pub rx_desc: u16,
    /// TX descriptors per queue.
    #[serde(default = "defaults::descriptors")]
    pub tx_desc: u16,
    /// Use the NIC's RSS hash as the connection value (needs several queues,
    /// that is `workers` > 1, and a NIC that hashes TCP/UDP with the
    /// cluster's key).
    #[serde(default)]
    pub rss: bool,
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
    /// Port rules: how ranges of ports are served and what their
    /// connection value covers. A rule's ports are served (or disabled)
    /// whether listed above or not; a listed port no rule names is shared
    /// with the 4-tuple. Every member must have the same rules (they choose
    /// which node takes a connection): the exchange refuses a member whose
    /// affinity or single-host rules differ (docs/exchange.md), so a change
    /// is a restart of every node.
    #[serde(default)]
    pub rules: Vec<PortRuleConfig>,
}

/// A port rule of a VIP.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortRuleConfig {
    /// A port ("80") or an inclusive range ("8000-8099").
    pub ports: String,
    /// The protocol it is for.
    #[serde(default)]
    pub protocol: RuleProtocol,
    /// How its ports are served.
    #[serde(default)]
    pub mode: RuleMode,
    /// What a shared rule's connection value covers.
    #[serde(default)]
    pub affinity: RuleAffinity,
    /// A single-host rule's members in priority order (ids): the first
    /// whose weight is in the table takes every connection of the rule,
    /// the next when it leaves or drains, and the first again when it
    /// comes back. Empty: the owner of the rule's bucket, whoever it is.
    #[serde(default)]
    pub priority: Vec<u32>,
}

/// The protocol of a port rule.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RuleProtocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// Both.
    Both,
}

/// How a port rule's ports are served.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    /// By the cluster: each connection by the owner of its bucket.
    #[default]
    Shared,
    /// By one node: every connection of the rule has one fixed connection
    /// value (the Toeplitz hash of the VIP and the rule's first port), so
    /// the owner of that bucket takes them all, and another node when it
    /// leaves.
    Single,
    /// Not at all: dropped and counted (`drop_vip_port_disabled`).
    Disabled,
}

/// What a shared rule's connection value covers.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RuleAffinity {
    /// Client address and port, VIP and port (the 4-tuple).
    #[default]
    None,
    /// The client address (and the VIP): a client's connections go to
    /// one node. The Toeplitz hash of the addresses alone, as a NIC's RSS
    /// for L3 gives.
    Client,
    /// The client's /24 (IPv4) or /48 (IPv6) (and the VIP).
    Network,
}

impl PortRuleConfig {
    /// The range of ports, or what is wrong with the text.
    pub fn range(&self) -> Result<(u16, u16), String> {
        let port = |t: &str| -> Result<u16, String> {
            match t.trim().parse::<u16>() {
                Ok(0) => Err("port 0 cannot be served".to_owned()),
                Ok(p) => Ok(p),
                Err(_) => Err(format!("{:?} is not a port from 1 to 65535", t.trim())),
            }
        };
        let (first, last) = match self.ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(&self.ports)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!("{first}-{last}: the first port is above the last"));
        }
        Ok((first, last))
    }

    /// The rule for the dataplane (None when it does not validate).
    pub fn dataplane(&self) -> Option<synshare_dataplane::rules::PortRule> {
        use synshare_dataplane::rules::{Affinity, PortMode, PortRule};
        let (first, last) = self.range().ok()?;
        Some(PortRule {
            first,
            last,
            tcp: self.protocol != RuleProtocol::Udp,
            udp: self.protocol != RuleProtocol::Tcp,
            mode: match self.mode {
                RuleMode::Shared => PortMode::Shared(match self.affinity {
                    RuleAffinity::None => Affinity::None,
                    RuleAffinity::Client => Affinity::Client,
                    RuleAffinity::Network => Affinity::Network,
                }),
                RuleMode::Single => PortMode::Single,
                RuleMode::Disabled => PortMode::Disabled,
            },
        })
    }
}

impl VipConfig {
    /// The VIP for the dataplane: its ports and rules.
    pub fn dataplane(&self) -> synshare_dataplane::classify::Vip {
        let rules: Vec<_> = self.rules.iter().filter_map(PortRuleConfig::dataplane).collect();
        synshare_dataplane::classify::Vip::with_rules(self.addr.into(), &self.tcp_ports, &self.udp_ports, &rules)
    }
}

/// Idle back-off of the workers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdleConfig {
    /// Empty polls before sleeping.
    pub empty_polls: u32,
    /// Sleep per empty poll after that, in microseconds (0: busy-poll).
    pub sleep_us: u32,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            empty_polls: 256,
            sleep_us: 100,
        }
    }
}

/// The flow tables (one per worker).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowTableConfig {
    /// Flows per worker.
    pub capacity: u32,
    /// Half-open entries expire after this, in ms.
    pub half_open_ms: u32,
    /// Established entries expire after this idle time, in seconds.
    pub established_s: u32,
    /// Entries after the kernel's FIN expire after this, in ms.
    pub closing_ms: u32,
    /// Adopted entries the kernel has not answered yet expire after this,
    /// in ms.
    pub provisional_ms: u32,
    /// A flow contested by a RST, FIN or SYN from the wire is kept from
    /// eviction this long, in ms.
    pub grace_ms: u32,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        let t = FlowTimeouts::default();
        FlowTableConfig {
            capacity: 262_144,
            half_open_ms: t.half_open_ms,
            established_s: t.established_ms / 1000,
            closing_ms: t.closing_ms,
            provisional_ms: t.provisional_ms,
            grace_ms: t.grace_ms,
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
#[serde(deny_unknown_fields, default)]
pub struct SharingConfig {
    /// Buckets of the connection-value space (a power of two).
    pub buckets: u32,
    /// `rendezvous` (minimal movement) or `ranges` (contiguous).
    pub layout: Layout,
    /// After acquiring a bucket, unknown non-SYN packets in it are dropped
    /// for this long (they may belong to the previous owner), in ms.
    pub drain_ms: u32,
    /// The members, the same list on every node (static shares; with an
    /// exchange, membership is discovered and this list may be empty).
    pub members: Vec<MemberConfig>,
}

impl Default for SharingConfig {
    fn default() -> Self {
        SharingConfig {
            buckets: defaults::buckets(),
            layout: Layout::default(),
            drain_ms: Settings::default().drain_ms as u32,
            members: Vec::new(),
        }
    }
}

/// The availability exchange with the other members (peer mode), and with
/// a coordinator where one runs. Defaults come from the protocol's own
/// [`Settings::default`], so the simulator tests the values production uses.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeConfig {
    /// Where heartbeats are received (UDP). Not written: a node binds its
    /// own address (the first of `exception.addresses` in the members'
    /// family) on port 7946, so that the exchange answers on no other
    /// address of the host (a management NIC, say); a node without
    /// `exception.addresses`, and a coordinator, bind every address
    /// ("0.0.0.0:7946"). The address need not exist yet (IP_FREEBIND).
    #[serde(deserialize_with = "plain_some")]
    pub bind: Option<SocketAddr>,
    /// The other members: member id → heartbeat address. Datagrams from any
    /// other source are dropped before authentication.
    pub peers: BTreeMap<u32, SocketAddr>,
    /// A coordinator's address (member 0; it votes and leads, holds no
    /// buckets). In peer mode it is the witness a two-node cluster needs.
    pub coordinator: Option<SocketAddr>,
    /// A node added to a running cluster (`synshare members add` on any
    /// member) starts with `join`, any one member's exchange address, and
    /// `peers` empty: it learns the members from the cluster, and holds
    /// nothing until it is in their directory and table. Only its first
    /// start reads it; then its state file holds the directory.
    #[serde(deserialize_with = "plain_some")]
    pub join: Option<SocketAddr>,
    /// A file of keys, one `ID SECRET` per line (ID 0-255, SECRET at least
    /// 16 bytes); the first is sent with, all are accepted (rolling
    /// rotation). It must not be group- or world-readable. A path starting
    /// with `$CREDENTIALS_DIRECTORY/` is a systemd credential.
    pub key_file: Option<String>,
    /// The key inline, instead of `key_file` (tests).
    pub key: Option<String>,
    /// The inline key's id.
    pub key_id: u8,
    /// Where the exchange keeps its state (consensus log, incarnation)
    /// across restarts.
    pub state_dir: PathBuf,
    /// The segment (one member set and table per segment).
    pub segment: u16,
    /// Heartbeat interval, ms.
    pub interval_ms: u64,
    /// A member not heard both ways this long is not live, ms.
    pub timeout_ms: u64,
    /// A lease lasts this long after the heartbeat that renewed it; a
    /// silent member's buckets move about this long after it is found not
    /// live (default: `timeout_ms`).
    pub lease_ms: Option<u64>,
    /// Weight-driven table changes at most this often, ms.
    pub min_epoch_ms: u64,
    /// Weight changes up to this (capacity units) change no table.
    pub hysteresis: f64,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        let s = Settings::default();
        ExchangeConfig {
            bind: None,
            peers: BTreeMap::new(),
            coordinator: None,
            join: None,
            key_file: None,
            key: None,
            key_id: 0,
            state_dir: PathBuf::from("/var/lib/synshare"),
            segment: 0,
            interval_ms: s.interval_ms,
            timeout_ms: s.timeout_ms,
            lease_ms: None,
            min_epoch_ms: s.min_epoch_ms,
            hysteresis: f64::from(s.hysteresis_milli) / 1000.0,
        }
    }
}

/// Keys known to be samples: refused.
pub const SAMPLE_KEYS: &[&str] = &["change-me-to-a-long-random-secret"];

impl ExchangeConfig {
    /// The keys, from `key_file` or `key`.
    pub fn keys(&self) -> Result<Keys, String> {
        let keys = match (&self.key_file, &self.key) {
            (Some(f), None) => {
                if let Some(name) = f.strip_prefix("$CREDENTIALS_DIRECTORY/") {
                    check_credential_source(name, std::env::var("SYNSHARE_CREDENTIAL_SOURCES").ok().as_deref())?;
                }
                read_key_file(&expand_credentials(f)?)?
            }
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

    /// The port heartbeats arrive on when `bind` is not written.
    pub const DEFAULT_PORT: u16 = 7946;

    /// The address the exchange binds: `bind` as written; otherwise the
    /// first of `own` (the node's own addresses) in the members' family,
    /// on [`Self::DEFAULT_PORT`]; otherwise every address on that port.
    pub fn bind_addr(&self, own: &[IpAddr]) -> SocketAddr {
        if let Some(b) = self.bind {
            return b;
        }
        let v6 = self
            .addresses()
            .values()
            .next()
            .or(self.join.as_ref())
            .is_some_and(SocketAddr::is_ipv6);
        match own.iter().find(|a| a.is_ipv6() == v6) {
            Some(a) => SocketAddr::new(*a, Self::DEFAULT_PORT),
            None if v6 => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, Self::DEFAULT_PORT)),
            None => SocketAddr::from(([0, 0, 0, 0], Self::DEFAULT_PORT)),
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

/// An optional field written as its plain value (`bind: "192.0.2.21:7946"`,
/// not `Some(...)`); not written, it is the section's default.
fn plain_some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl ExceptionConfig {
    /// The node's own addresses, from `addresses` (those that parse; the
    /// others are refused by validation).
    pub fn own_ips(&self) -> Vec<IpAddr> {
        self.addresses
            .iter()
            .filter_map(|a| parse_prefix(a).map(|(ip, _)| ip))
            .collect()
    }
}

/// `$CREDENTIALS_DIRECTORY/NAME` as the path systemd gives it.
pub fn expand_credentials(path: &str) -> Result<PathBuf, String> {
    match path.strip_prefix("$CREDENTIALS_DIRECTORY/") {
        Some(rest) => std::env::var("CREDENTIALS_DIRECTORY")
            .map(|d| Path::new(&d).join(rest))
            .map_err(|_| {
                format!("{path}: CREDENTIALS_DIRECTORY is not set (not started by systemd with LoadCredential)")
            }),
        None => Ok(PathBuf::from(path)),
    }
}

/// Whether a key file with `meta` is private: no access for group or
/// others, owned by root or by this process's user (another owner could
/// read or replace it).
fn check_key_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: readable by group or others (mode {mode:o}); chmod 600",
            path.display()
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "{}: owned by uid {}, neither root nor this process's user ({me}); chown root",
            path.display(),
            meta.uid()
        ));
    }
    Ok(())
}

/// A systemd credential's copy is always private (0400), so the mode that
/// matters is its source's: `sources` (the unit's
/// `SYNSHARE_CREDENTIAL_SOURCES`, `NAME:PATH` as `LoadCredential=` takes
/// them, separated by spaces) names it, and its mode and owner are checked
/// as a key file's own.
pub fn check_credential_source(name: &str, sources: Option<&str>) -> Result<(), String> {
    let Some(source) = sources
        .into_iter()
        .flat_map(str::split_whitespace)
        .find_map(|s| s.split_once(':').filter(|(n, _)| *n == name).map(|(_, p)| p))
    else {
        return Ok(());
    };
    let path = Path::new(source);
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{} (the source of credential {name}): {e}", path.display()))?;
    check_key_mode(path, &meta).map_err(|e| format!("{e} (the source of credential {name})"))
}

fn read_key_file(path: &Path) -> Result<Vec<Key>, String> {
    use std::io::Read;
    // The mode is read from the file opened, not from the path before.
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    check_key_mode(path, &meta)?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
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

/// What a health check asks the local service.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// A TCP connection is accepted at this address.
    Tcp(SocketAddr),
    /// An HTTP/1.1 GET of `path` at `addr` answers with `status`.
    Http {
        /// Where the service listens.
        addr: SocketAddr,
        /// The path asked for (starts with `/`).
        #[serde(default = "defaults::health_path")]
        path: String,
        /// The status expected (any other is a failure).
        #[serde(default = "defaults::health_status")]
        status: u16,
        /// The Host header (default: the address).
        #[serde(default)]
        host: Option<String>,
    },
}

/// A health check with rise and fall counts: the service is up after `rise`
/// checks in a row succeed, down after `fall` in a row fail (it starts
/// down). Run once per `availability.sample_ms`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// What is asked.
    pub probe: Probe,
    /// One check's deadline (connect, send, answer), ms.
    #[serde(default = "defaults::health_timeout_ms")]
    pub timeout_ms: u64,
    /// Successes in a row that make a down service up.
    #[serde(default = "defaults::health_rise")]
    pub rise: u32,
    /// Failures in a row that make an up service down.
    #[serde(default = "defaults::health_fall")]
    pub fall: u32,
}

impl AvailabilityConfig {
    /// The health check in force: `health_check`, or `service_probe` as a
    /// TCP check with rise and fall 1.
    pub fn health(&self) -> Option<HealthCheck> {
        self.health_check.clone().or_else(|| {
            self.service_probe.map(|addr| HealthCheck {
                probe: Probe::Tcp(addr),
                timeout_ms: defaults::health_timeout_ms(),
                rise: 1,
                fall: 1,
            })
        })
    }
}

/// How the node measures its available capacity.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AvailabilityConfig {
    /// Configured capacity weight; changeable at run time.
    pub capacity: f64,
    /// Sampling period, ms.
    pub sample_ms: u64,
    /// CPU load source.
    pub cpu: CpuSource,
    /// Availability falls as (1 - cpu_busy) ^ cpu_exponent.
    pub cpu_exponent: f64,
    /// Availability falls to 0 as connections reach this.
    pub max_connections: Option<u64>,
    /// A TCP address of the local service to probe; no answer: availability
    /// 0. Short for `health_check` with a TCP probe, rise 1 and fall 1.
    pub service_probe: Option<SocketAddr>,
    /// The health check of the local service, once per `sample_ms`: while
    /// it is down, availability is 0.
    pub health_check: Option<HealthCheck>,
    /// An hwmon temperature file (millidegrees), with the temperatures where
    /// availability starts to fall and reaches 0 (°C).
    pub temperature: Option<(PathBuf, f64, f64)>,
    /// A powercap energy counter (µJ) and the power budget (W).
    pub power: Option<(PathBuf, f64)>,
    /// EWMA weight of a new sample.
    pub alpha: f64,
    /// Largest change per sample, as a fraction of capacity.
    pub max_step: f64,
    /// A healthy node keeps at least this fraction of its capacity.
    pub floor: f64,
}

impl Default for AvailabilityConfig {
    fn default() -> Self {
        let f = Formula::default();
        AvailabilityConfig {
            capacity: f.capacity,
            sample_ms: 250,
            cpu: CpuSource::None,
            cpu_exponent: f.cpu_exponent,
            max_connections: None,
            service_probe: None,
            health_check: None,
            temperature: None,
            power: None,
            alpha: 0.5,
            max_step: 0.25,
            floor: f.floor,
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
    /// The node's name (in logs, status, state files and the default
    /// status socket's name).
    pub name: String,
    /// The cluster's name: the `cluster` label of every metric, the same
    /// on every member (and its coordinator).
    #[serde(default = "defaults::cluster")]
    pub cluster: String,
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
    /// Worker lcores (and queues per port) per segment.
    #[serde(default = "defaults::workers")]
    pub workers: u16,
    /// Idle back-off.
    #[serde(default)]
    pub idle: IdleConfig,
    /// Flow tables.
    #[serde(default)]
    pub flow_table: FlowTableConfig,
    /// Sharing.
    #[serde(default)]
    pub sharing: SharingConfig,
    /// Where the status socket listens (a Unix socket path); by default
    /// `/run/synshare/NAME.sock`.
    #[serde(default)]
    pub status_socket: Option<PathBuf>,
    /// The status socket's group (a name from /etc/group, or a gid): its
    /// members may query and change (`drain`, `capacity`) the node, as
    /// root may. Without it, the socket is root's alone (mode 0660).
    #[serde(default)]
    pub status_group: Option<String>,
    /// Where the Prometheus metrics are served (HTTP, `GET /metrics`).
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// The log level (EnvFilter directives: `info`, `debug`,
    /// `warn,synshare=debug`); set, it overrides SYNSHARE_LOG, and SIGHUP
    /// applies a new one.
    #[serde(default)]
    pub log_level: Option<String>,
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
    #[serde(default = "defaults::stop_drain_s")]
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

impl SegmentView<'_> {
    /// The prefix of this segment's field paths: "" for the first,
    /// "segments[I]." for the others.
    pub fn at(&self) -> String {
        if self.index == 0 {
            String::new()
        } else {
            format!("segments[{}].", self.index - 1)
        }
    }

    /// The digest of this segment's port rules, as far as they choose a
    /// connection's value (affinity and single-host rules; the VIPs in
    /// address order): every member of the segment must have the same,
    /// or two of them would both take one connection, so the exchange
    /// refuses a member whose digest differs. 4-tuple, disabled and
    /// unserved ports do not count: a port served by one member only
    /// cannot be taken twice.
    pub fn rules_digest(&self) -> u32 {
        let mut vips: Vec<_> = self.vips.iter().map(VipConfig::dataplane).collect();
        vips.sort_by(|a, b| a.addr.bytes().cmp(b.addr.bytes()));
        let mut canonical = Vec::new();
        for v in &vips {
            v.value_rules(&mut canonical);
        }
        for (bucket, members) in self.pins() {
            canonical.extend_from_slice(b"pin");
            canonical.extend_from_slice(&bucket.to_be_bytes());
            canonical.extend_from_slice(&(members.len() as u32).to_be_bytes());
            for m in members {
                canonical.extend_from_slice(&m.0.to_be_bytes());
            }
        }
        synshare_control::wire::rules_digest(&canonical)
    }

    /// The buckets single-host rules with a priority list pin: each
    /// rule's one bucket (of this segment's bucket count) and its members
    /// in priority order. Two rules whose buckets meet: the first written.
    pub fn pins(&self) -> Vec<synshare_control::layout::Pin> {
        use synshare_control::layout::MemberId;
        let mask = self.sharing.buckets.saturating_sub(1);
        let mut pins: Vec<synshare_control::layout::Pin> = Vec::new();
        for v in self.vips {
            for r in v
                .rules
                .iter()
                .filter(|r| r.mode == RuleMode::Single && !r.priority.is_empty())
            {
                let Ok((first, _)) = r.range() else { continue };
                let bucket = synshare_dataplane::rules::single_value(v.addr.into(), first)
                    .bucket(mask)
                    .0;
                if !pins.iter().any(|(b, _)| *b == bucket) {
                    pins.push((bucket, r.priority.iter().map(|&m| MemberId(m)).collect()));
                }
            }
        }
        pins
    }
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

/// A coordinator's configuration (`synshare coordinator`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Its name (in logs, its state file and its default status socket).
    pub name: String,
    /// The cluster's name, as the nodes' `cluster`.
    #[serde(default = "defaults::cluster")]
    pub cluster: String,
    /// The exchange; `peers` are the nodes.
    pub exchange: ExchangeConfig,
    /// Buckets (a power of two), the same as the nodes'.
    #[serde(default = "defaults::buckets")]
    pub buckets: u32,
    /// Layout, the same as the nodes'.
    #[serde(default)]
    pub layout: Layout,
    /// Where its status socket listens; by default
    /// `/run/synshare/NAME.sock`.
    #[serde(default)]
    pub status_socket: Option<PathBuf>,
    /// The status socket's group (a name or a gid), as a node's.
    #[serde(default)]
    pub status_group: Option<String>,
    /// Where its Prometheus metrics are served (HTTP), if anywhere.
    #[serde(default)]
    pub metrics: Option<std::net::SocketAddr>,
}
