//! The node's RON configuration: parsing with positions and field paths in
//! every error, then validation of what the types cannot say.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use synshare_control::layout::Layout;
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
    /// The members, the same list on every node.
    pub members: Vec<MemberConfig>,
}

fn default_buckets() -> u32 {
    65_536
}
fn default_drain() -> u32 {
    60_000
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
        let err = |position: Option<(usize, usize)>, field: Option<String>, message: String| ConfigError {
            file: path.to_owned(),
            position,
            field,
            message,
        };
        let mut de = ron::Deserializer::from_str(text)
            .map_err(|e| err(Some((e.span.start.line, e.span.start.col)), None, e.code.to_string()))?;
        let config: NodeConfig = match serde_path_to_error::deserialize(&mut de) {
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
        config
            .validate()
            .map_err(|(field, message)| err(None, Some(field), message))?;
        Ok(config)
    }

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
        if self.wire.device.trim().is_empty() || self.wire.device.contains(char::is_whitespace) {
            return bad(
                "wire.device",
                format!("{:?}: a PCI address or vdev arguments without spaces", self.wire.device),
            );
        }
        for (f, d) in [("wire.rx_desc", self.wire.rx_desc), ("wire.tx_desc", self.wire.tx_desc)] {
            if !(64..=8192).contains(&d) || !d.is_power_of_two() {
                return bad(f, format!("{d}: a power of two from 64 to 8192"));
            }
        }
        if self.exception.iface.is_empty()
            || self.exception.iface.len() > 15
            || self.exception.iface.contains([',', '/', ' '])
        {
            return bad(
                "exception.iface",
                format!("{:?}: an interface name of 1 to 15 characters", self.exception.iface),
            );
        }
        if let Some(m) = self.exception.mac {
            if m.is_group() {
                return bad("exception.mac", format!("{m} is a group address"));
            }
        }
        if self.cluster_mac == Mac([0; 6]) || self.cluster_mac == Mac::BROADCAST {
            return bad("cluster_mac", format!("{} cannot be the cluster MAC", self.cluster_mac));
        }
        if self.vips.is_empty() {
            return bad("vips", "no VIP: name at least one".into());
        }
        for (i, v) in self.vips.iter().enumerate() {
            if v.addr.is_unspecified() || v.addr.is_multicast() || v.addr.is_loopback() {
                return bad(&format!("vips[{i}].addr"), format!("{} cannot be a VIP", v.addr));
            }
            if self.vips[..i].iter().any(|o| o.addr == v.addr) {
                return bad(&format!("vips[{i}].addr"), format!("{} is listed twice", v.addr));
            }
            if v.tcp_ports.is_empty() && v.udp_ports.is_empty() {
                return bad(
                    &format!("vips[{i}]"),
                    "serves no port: list tcp_ports or udp_ports".into(),
                );
            }
            if v.tcp_ports.contains(&0) || v.udp_ports.contains(&0) {
                return bad(&format!("vips[{i}]"), "port 0 cannot be served".into());
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
        let s = &self.sharing;
        if !s.buckets.is_power_of_two() || !(16..=(1 << 20)).contains(&s.buckets) {
            return bad(
                "sharing.buckets",
                format!("{}: a power of two from 16 to 1048576", s.buckets),
            );
        }
        if s.members.is_empty() {
            return bad("sharing.members", "empty: list every member, this node included".into());
        }
        for (i, m) in s.members.iter().enumerate() {
            if !m.weight.is_finite() || m.weight < 0.0 {
                return bad(
                    &format!("sharing.members[{i}].weight"),
                    format!("{}: a finite weight >= 0", m.weight),
                );
            }
            if s.members[..i].iter().any(|o| o.id == m.id) {
                return bad(
                    &format!("sharing.members[{i}].id"),
                    format!("member {} is listed twice", m.id),
                );
            }
        }
        if !s.members.iter().any(|m| m.id == self.id) {
            return bad("id", format!("{} is not among sharing.members", self.id));
        }
        Ok(())
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
