//! What the types cannot say: every check a configuration must pass before
//! a node or a coordinator starts, so that what would fail at start (or,
//! worse, start and misbehave) is refused by `synshare check-config` and by
//! the start itself, with the field at fault. Each check records every
//! problem it finds rather than stopping at the first: an operator fixes
//! them in one pass.
//!
//! Two tiers: errors refuse the configuration; warnings are printed (and
//! logged at start) but do not, for what is legal yet likely wrong (metrics
//! served to every network, a two-voter cluster) or what depends on the
//! machine it is checked on rather than the one it runs on (CPUs online,
//! hugepages reserved).
//!
//! Some checks read the machine: the cgroup, hwmon and powercap paths the
//! node will read, the key file. They run where check-config runs, which is
//! where the unit's `ExecStartPre` runs it.

use super::lcores::Lcores;
use super::types::{
    CoordinatorConfig, CpuSource, EalConfig, ExchangeConfig, HealthCheck, Hugepages, NodeConfig, PortRuleConfig, Probe,
    RuleAffinity, RuleMode, RuleProtocol, SegmentView, VipConfig, SAMPLE_KEYS,
};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use synshare_control::wire::MAX_MEMBERS;
use synshare_dataplane::packet::Mac;

/// One problem: the field's path (as `serde_path_to_error` writes it) and
/// what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// E.g. `segments[0].exchange.peers.3`.
    pub field: String,
    /// What is wrong, and what to write instead.
    pub message: String,
    /// Where to point when `field` is not written (left to its default):
    /// the field it disagrees with.
    pub near: Option<String>,
}

/// Errors (refused) and warnings (printed).
#[derive(Debug, Default)]
pub struct Findings {
    /// The configuration is refused.
    pub errors: Vec<Finding>,
    /// Printed, not refused.
    pub warnings: Vec<Finding>,
}

impl Findings {
    /// Records an error.
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Finding {
            field: field.into(),
            message: message.into(),
            near: None,
        });
    }

    /// Records an error about `field` that is placed at `near` when
    /// `field` is not written.
    pub fn error_near(&mut self, field: impl Into<String>, near: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Finding {
            field: field.into(),
            message: message.into(),
            near: Some(near.into()),
        });
    }

    /// Records a warning.
    pub fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Finding {
            field: field.into(),
            message: message.into(),
            near: None,
        });
    }

    /// Records an error unless `lo <= v <= hi`.
    fn range<T: PartialOrd + std::fmt::Display>(&mut self, field: impl Into<String>, v: T, lo: T, hi: T, unit: &str) {
        if v < lo || v > hi {
            self.error(field, format!("{v}: from {lo} to {hi}{unit}"));
        }
    }
}

/// Longest any drain, timeout or period may be: longer is a unit mistake
/// (ms for s) or a node that never lets go.
const HOUR_MS: u64 = 3_600_000;

/// A name that can be part of a path: `[A-Za-z0-9_.-]`, 1 to 32 characters,
/// not starting with a dot (so neither `..` nor a hidden file). Names make
/// the status socket (`/run/synshare/NAME.sock`) and the state files.
pub fn plain_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: 1 to 32 letters, digits, '-', '_' or '.', not starting with '.' \
             (it names the status socket /run/synshare/NAME.sock and the state files)"
        ))
    }
}

/// Why `a` cannot be a VIP, if it cannot: a VIP is a unicast address the
/// routers send to the cluster MAC.
fn not_a_vip(a: IpAddr) -> Option<&'static str> {
    match a {
        IpAddr::V4(v) => {
            let o = v.octets();
            if v.is_broadcast() {
                Some("the broadcast address")
            } else if v.is_unspecified() || o[0] == 0 {
                Some("in 0.0.0.0/8 (\"this network\")")
            } else if v.is_multicast() {
                Some("a multicast address")
            } else if v.is_loopback() {
                Some("a loopback address")
            } else if o[0] >= 240 {
                Some("reserved (240.0.0.0/4)")
            } else {
                None
            }
        }
        IpAddr::V6(v) => {
            if v.is_unspecified() {
                Some("the unspecified address")
            } else if v.is_multicast() {
                Some("a multicast address")
            } else if v.is_loopback() {
                Some("the loopback address")
            } else if v.to_ipv4_mapped().is_some() {
                Some("an IPv4-mapped address (write the IPv4 address)")
            } else {
                None
            }
        }
    }
}

/// The most port rules a VIP may have.
pub const MAX_RULES: usize = 64;

/// A VIP's port rules: each range well-formed, the affinity only on shared
/// rules, no port of a protocol in two rules.
fn validate_rules(rules: &[PortRuleConfig], at: &str, f: &mut Findings) {
    if rules.len() > MAX_RULES {
        f.error(at, format!("{} rules: at most {MAX_RULES}", rules.len()));
    }
    let mut ranges: Vec<(usize, u16, u16, RuleProtocol)> = Vec::new();
    for (j, r) in rules.iter().enumerate() {
        let (first, last) = match r.range() {
            Ok(range) => range,
            Err(e) => {
                f.error(format!("{at}[{j}].ports"), e);
                continue;
            }
        };
        if r.mode != RuleMode::Shared && r.affinity != RuleAffinity::None {
            f.error(
                format!("{at}[{j}].affinity"),
                format!(
                    "{:?} affinity applies to shared rules only (this one is {:?})",
                    r.affinity, r.mode
                )
                .to_lowercase(),
            );
        }
        if !r.priority.is_empty() && r.mode != RuleMode::Single {
            f.error(
                format!("{at}[{j}].priority"),
                format!(
                    "a priority list applies to single-host rules only (this one is {:?})",
                    r.mode
                )
                .to_lowercase(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        if r.priority.iter().any(|&m| m == 0 || !seen.insert(m)) {
            f.error(
                format!("{at}[{j}].priority"),
                "member ids, each once (0 is a coordinator's, which takes no connection)",
            );
        }
        let overlaps = |p: RuleProtocol, q: RuleProtocol| p == q || p == RuleProtocol::Both || q == RuleProtocol::Both;
        if let Some((k, a, b, _)) =
            (ranges.iter()).find(|(_, a, b, p)| *a <= last && first <= *b && overlaps(*p, r.protocol))
        {
            f.error(
                format!("{at}[{j}].ports"),
                format!("{first}-{last} overlaps rule {k} ({a}-{b}) of the same protocol"),
            );
        }
        ranges.push((j, first, last, r.protocol));
    }
}

/// Why `a` cannot be a member's heartbeat address, if it cannot.
fn not_a_peer(a: &SocketAddr) -> Option<&'static str> {
    let ip = a.ip();
    if a.port() == 0 {
        Some("port 0")
    } else if ip.is_unspecified() {
        Some("an unspecified address (a peer is one machine)")
    } else if ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
        Some("not a unicast address")
    } else {
        None
    }
}

/// Checks `availability.health_check`, run once per `sample_ms`.
fn validate_health_check(h: &HealthCheck, sample_ms: u64, f: &mut Findings) {
    let field = |name: &str| format!("availability.health_check.{name}");
    f.range(field("rise"), h.rise, 1, 100, "");
    f.range(field("fall"), h.fall, 1, 100, "");
    if h.timeout_ms < 1 || h.timeout_ms >= sample_ms {
        f.error(
            field("timeout_ms"),
            format!(
                "{}: from 1 ms to less than availability.sample_ms ({sample_ms} ms): one check ends before the next",
                h.timeout_ms
            ),
        );
    }
    let addr = match &h.probe {
        Probe::Tcp(a) => *a,
        Probe::Http {
            addr,
            path,
            status,
            host,
        } => {
            if !path.starts_with('/') || path.len() > 1024 || path.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                f.error(
                    field("probe.path"),
                    format!(
                        "{path:?}: a path starting with '/', without spaces or control characters, up to 1024 bytes"
                    ),
                );
            }
            if !(100..=599).contains(status) {
                f.error(
                    field("probe.status"),
                    format!("{status}: an HTTP status from 100 to 599"),
                );
            }
            if let Some(host) = host {
                if host.is_empty() || host.len() > 255 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    f.error(
                        field("probe.host"),
                        format!("{host:?}: a host name without spaces or control characters"),
                    );
                }
            }
            *addr
        }
    };
    if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
        f.error(
            field("probe"),
            format!("{addr}: the local service's address (a unicast address and a port)"),
        );
    }
}

/// Checks an exchange section (a node's or a coordinator's); `at` is its
/// field path, such as `exchange` or `segments[0].exchange`.
pub fn validate_exchange(x: &ExchangeConfig, at: &str, f: &mut Findings) {
    let field = |name: &str| format!("{at}.{name}");
    validate_exchange_key(x, at, f);
    validate_exchange_timers(x, at, f);
    if !x.hysteresis.is_finite() || x.hysteresis < 0.0 || x.hysteresis > 1_000_000.0 {
        f.error(
            field("hysteresis"),
            format!("{}: a number of capacity units from 0 to 1000000", x.hysteresis),
        );
    }
    if let Some(b) = x
        .bind
        .filter(|b| b.ip().is_multicast() || b.ip() == IpAddr::from([255, 255, 255, 255]) || b.port() == 0)
    {
        f.error(
            field("bind"),
            format!("{b}: a unicast or unspecified address with a port"),
        );
    }
    if x.state_dir.is_relative() {
        f.warn(
            field("state_dir"),
            format!(
                "{}: relative to wherever the process starts (/ under systemd); write an absolute path",
                x.state_dir.display()
            ),
        );
    }
    validate_exchange_members(x, at, f);
}

/// The exchange's key: given (in a file or inline), readable, long enough.
fn validate_exchange_key(x: &ExchangeConfig, at: &str, f: &mut Findings) {
    let field = |name: &str| format!("{at}.{name}");
    if x.key_file.is_none() && x.key.is_none() {
        return f.error(field("key_file"), "required: heartbeats are authenticated");
    }
    // A credential exists only under systemd: checked at start.
    let deferred = x
        .key_file
        .as_deref()
        .is_some_and(|k| k.starts_with("$CREDENTIALS_DIRECTORY/"))
        && std::env::var_os("CREDENTIALS_DIRECTORY").is_none();
    if !deferred {
        if let Err(e) = x.keys() {
            f.error(field(if x.key_file.is_some() { "key_file" } else { "key" }), e);
        }
    }
    if let Some(k) = &x.key {
        if k.len() < 32 && !SAMPLE_KEYS.contains(&k.as_str()) && k.len() >= 16 {
            f.warn(
                field("key"),
                format!(
                    "{} bytes: a short key; 32 random bytes or more (openssl rand -hex 32)",
                    k.len()
                ),
            );
        }
    }
}

/// The heartbeat interval and what is measured in it: the timeout, the
/// lease and the shortest epoch.
fn validate_exchange_timers(x: &ExchangeConfig, at: &str, f: &mut Findings) {
    let field = |name: &str| format!("{at}.{name}");
    f.range(field("interval_ms"), x.interval_ms, 10, 10_000, " ms");
    if x.timeout_ms < 2 * x.interval_ms || x.timeout_ms > 60_000 {
        f.error(
            field("timeout_ms"),
            format!(
                "{}: from twice interval_ms ({}) to 60000 ms",
                x.timeout_ms,
                2 * x.interval_ms
            ),
        );
    }
    if let Some(l) = x.lease_ms {
        if l < 2 * x.interval_ms || l > 60_000 {
            f.error(
                field("lease_ms"),
                format!("{l}: from twice interval_ms ({}) to 60000 ms", 2 * x.interval_ms),
            );
        }
    }
    if x.min_epoch_ms < x.interval_ms || x.min_epoch_ms > 600_000 {
        f.error(
            field("min_epoch_ms"),
            format!(
                "{}: from interval_ms ({}) to 600000 ms; weight-driven tables are made at most this often",
                x.min_epoch_ms, x.interval_ms
            ),
        );
    }
}

/// The members (the coordinator and the peers): how many, their ids, and
/// each a distinct peer's address.
fn validate_exchange_members(x: &ExchangeConfig, at: &str, f: &mut Findings) {
    let field = |name: &str| format!("{at}.{name}");
    let addresses = x.addresses();
    if addresses.len() + 1 > MAX_MEMBERS {
        f.error(
            field("peers"),
            format!("{} members: at most {MAX_MEMBERS}", addresses.len() + 1),
        );
    }
    if x.peers.contains_key(&0) {
        f.error(
            field("peers.0"),
            "member 0 is the coordinator: write it as `coordinator`",
        );
    }
    for (id, a) in &addresses {
        let at_peer = if *id == 0 {
            field("coordinator")
        } else {
            field(&format!("peers.{id}"))
        };
        if let Some(why) = not_a_peer(a) {
            f.error(&at_peer, format!("{a}: {why}"));
        } else if Some(*a) == x.bind {
            f.error(&at_peer, format!("{a} is this process's own address (bind)"));
        }
    }
    let mut seen = BTreeSet::new();
    for (id, a) in &addresses {
        if !seen.insert(a) {
            f.error(
                field(&format!("peers.{id}")),
                format!("member {id}: address {a} is listed twice"),
            );
        }
    }
}

/// The `cluster` field, a label on every metrics series.
fn validate_cluster(cluster: &str, f: &mut Findings) {
    if cluster.is_empty() || cluster.len() > 64 || cluster.chars().any(char::is_control) {
        f.error(
            "cluster",
            format!("{cluster:?}: 1 to 64 characters, none a control character (a metrics label)"),
        );
    }
}

/// The exception port's addresses, each with its prefix length.
fn validate_exception_addresses(x: &SegmentView<'_>, at: &str, f: &mut Findings) {
    for (k, a) in x.exception.addresses.iter().enumerate() {
        if super::types::parse_prefix(a).is_none() {
            f.error(
                format!("{at}exception.addresses[{k}]"),
                format!("{a:?}: an address with its prefix length, e.g. 192.0.2.21/24 or 2001:db8::21/64"),
            );
        }
    }
}

/// The exception port's device: an interface name, and a MAC of its own.
fn validate_exception_device(x: &SegmentView<'_>, at: &str, f: &mut Findings) {
    let iface = &x.exception.iface;
    if iface.is_empty() || iface.len() > 15 || iface.contains([',', '/', ' ', '=']) {
        f.error(
            format!("{at}exception.iface"),
            format!("{iface:?}: an interface name of 1 to 15 characters"),
        );
    }
    if let Some(m) = x.exception.mac {
        if m.is_group() {
            f.error(format!("{at}exception.mac"), format!("{m} is a group address"));
        } else if m == x.cluster_mac {
            f.error(
                format!("{at}exception.mac"),
                format!("{m} is the cluster MAC: the kernel's frames would leave from the address every node takes"),
            );
        }
    }
}

/// The cluster MAC: one the membership groups can be made for, neither
/// zero nor broadcast.
fn validate_cluster_mac(x: &SegmentView<'_>, at: &str, f: &mut Findings) {
    if let Err(e) = crate::membership::groups(x.cluster_mac, x.vips) {
        f.error(format!("{at}cluster_mac"), e);
    }
    if x.cluster_mac == Mac([0; 6]) || x.cluster_mac == Mac::BROADCAST {
        f.error(
            format!("{at}cluster_mac"),
            format!("{} cannot be the cluster MAC", x.cluster_mac),
        );
    }
}

/// A segment's VIPs: at least one, each a unicast address listed once that
/// serves some port, and its rules.
fn validate_vips(vips: &[VipConfig], at: &str, f: &mut Findings) {
    if vips.is_empty() {
        f.error(format!("{at}vips"), "no VIP: name at least one");
    }
    for (i, v) in vips.iter().enumerate() {
        if let Some(why) = not_a_vip(v.addr) {
            f.error(
                format!("{at}vips[{i}].addr"),
                format!("{} cannot be a VIP: {why}", v.addr),
            );
        }
        if vips[..i].iter().any(|o| o.addr == v.addr) {
            f.error(format!("{at}vips[{i}].addr"), format!("{} is listed twice", v.addr));
        }
        let served_by_rule = v
            .rules
            .iter()
            .any(|r| r.mode != RuleMode::Disabled && r.range().is_ok());
        if v.tcp_ports.is_empty() && v.udp_ports.is_empty() && !served_by_rule {
            f.error(
                format!("{at}vips[{i}]"),
                "serves no port: list tcp_ports or udp_ports, or a rule that serves some",
            );
        }
        if v.tcp_ports.contains(&0) || v.udp_ports.contains(&0) {
            f.error(format!("{at}vips[{i}]"), "port 0 cannot be served");
        }
        validate_rules(&v.rules, &format!("{at}vips[{i}].rules"), f);
    }
}

/// A segment's sharing: the bucket count, the drain, the static members'
/// weights and ids.
fn validate_sharing(x: &SegmentView<'_>, at: &str, f: &mut Findings) {
    let s = x.sharing;
    if !s.buckets.is_power_of_two() || !(16..=(1 << 20)).contains(&s.buckets) {
        f.error(
            format!("{at}sharing.buckets"),
            format!("{}: a power of two from 16 to 1048576", s.buckets),
        );
    }
    if s.drain_ms == 0 || u64::from(s.drain_ms) > HOUR_MS {
        f.error(
            format!("{at}sharing.drain_ms"),
            format!(
                "{}: from 1 to 3600000 ms; a bucket taken over drops unknown non-SYN packets this long, \
                 so the previous owner's connections are not reset",
                s.drain_ms
            ),
        );
    }
    for (i, m) in s.members.iter().enumerate() {
        if !m.weight.is_finite() || m.weight < 0.0 {
            f.error(
                format!("{at}sharing.members[{i}].weight"),
                format!("{}: a finite weight >= 0", m.weight),
            );
        }
        if s.members[..i].iter().any(|o| o.id == m.id) {
            f.error(
                format!("{at}sharing.members[{i}].id"),
                format!("member {} is listed twice", m.id),
            );
        }
    }
}

/// How a node's exchange finds the cluster: `join` alone, or the other
/// members (a coordinator among them, or at least two peers to vote with).
fn validate_join_or_peers(e: &ExchangeConfig, at: &str, f: &mut Findings) {
    if let Some(j) = e.join {
        if !(e.peers.is_empty() && e.coordinator.is_none()) {
            f.error(
                format!("{at}.join"),
                "a joining node learns the members from the cluster: leave peers and coordinator out",
            );
        }
        if let Some(why) = not_a_peer(&j) {
            f.error(format!("{at}.join"), format!("{j}: {why}"));
        }
    } else if e.peers.is_empty() && e.coordinator.is_none() {
        f.error(
            format!("{at}.peers"),
            "no peers and no coordinator: list the other members (id: \"address:port\"), \
             or drop the exchange for static shares",
        );
    } else if e.peers.len() == 1 && e.coordinator.is_none() {
        f.warn(
            format!("{at}.coordinator"),
            "two voters: neither can be lost without stopping the table; add a witness (`coordinator`)",
        );
    }
}

/// With `eal.hugepages: on`, enough free 2 MiB hugepages on this machine
/// for `eal.memory_mb`.
fn validate_hugepages(e: &EalConfig, f: &mut Findings) {
    if e.hugepages != Hugepages::On {
        return;
    }
    let free_mb = std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(0, |n| n * 2);
    if free_mb < u64::from(e.memory_mb) {
        f.warn(
            "eal.hugepages",
            format!(
                "on, but {free_mb} MiB of 2 MiB hugepages are free on this machine and memory_mb is {}: \
                 EAL fails unless more are reserved before start",
                e.memory_mb
            ),
        );
    }
}

impl NodeConfig {
    /// Checks everything; see the module's documentation.
    pub fn validate(&self, f: &mut Findings) {
        if let Err(e) = plain_name(&self.name) {
            f.error("name", e);
        }
        validate_cluster(&self.cluster, f);
        if self.id == 0 {
            f.error("id", "0 is the coordinator's id; nodes take 1 and up");
        }
        if let Some(level) = &self.log_level {
            if let Err(e) = crate::logging::filter(level) {
                f.error(
                    "log_level",
                    format!("{e} (e.g. \"info\", \"debug\", \"warn,synshare=debug\")"),
                );
            }
        }
        self.validate_eal(f);
        let segments = self.all_segments();
        for seg in &segments {
            self.validate_segment(seg, f);
        }
        self.validate_between_segments(&segments, f);
        self.validate_flow_table(f);
        self.validate_availability(f);
        if self.stop_drain_s as u64 * 1000 > HOUR_MS {
            f.error("stop_drain_s", format!("{}: from 0 to 3600 s", self.stop_drain_s));
        }
        if self.stop_drain_s == 0 && segments.iter().any(|s| s.exchange.is_some()) {
            f.warn(
                "stop_drain_s",
                "0: SIGTERM stops at once, so a restart breaks the connections this node serves",
            );
        }
        if let Some(g) = &self.status_group {
            if let Err(e) = crate::status::server::group_id(g) {
                f.error("status_group", e);
            }
        }
        if let Some(m) = self.metrics {
            if m.ip().is_unspecified() {
                f.warn(
                    "metrics",
                    format!("{m}: served to every network; bind 127.0.0.1 or a management address"),
                );
            }
        }
    }

    fn validate_eal(&self, f: &mut Findings) {
        let e = &self.eal;
        if e.file_prefix.is_empty() || e.file_prefix.contains('/') {
            f.error(
                "eal.file_prefix",
                format!("{:?} must be a non-empty name without '/'", e.file_prefix),
            );
        }
        if e.memory_mb < 64 {
            f.error(
                "eal.memory_mb",
                format!("{} MiB is too little; at least 64", e.memory_mb),
            );
        }
        if self.workers == 0 || self.workers > 16 {
            f.error("workers", format!("{}: from 1 to 16", self.workers));
        }
        if !e.allow_file_writing_vdevs {
            for (k, why) in file_writing_eal_args(&e.extra_args) {
                f.error(
                    format!("eal.extra_args[{k}]"),
                    format!("{why}; set eal.allow_file_writing_vdevs: true to allow it"),
                );
            }
        }
        self.validate_lcores(f);
        validate_hugepages(e, f);
    }

    /// `eal.lcores` and `eal.main_lcore`: well-formed, a control lcore and
    /// enough worker lcores for every segment's workers, online here.
    fn validate_lcores(&self, f: &mut Findings) {
        let e = &self.eal;
        let lcores = match Lcores::parse(&e.lcores) {
            Ok(l) => l,
            Err(msg) => return f.error("eal.lcores", msg),
        };
        if let Some(m) = e.main_lcore {
            if !lcores.lcores.contains(&m) {
                return f.error(
                    "eal.main_lcore",
                    format!("lcore {m} is not among eal.lcores {:?}", e.lcores),
                );
            }
        }
        let main = lcores.main(e.main_lcore).unwrap_or(0);
        let workers = lcores.workers(e.main_lcore);
        if workers.is_empty() {
            return f.error(
                "eal.lcores",
                format!(
                    "{:?} leaves no lcore for a worker (lcore {main} is the control lcore); \
                     name one more per worker, e.g. \"{main},{}\"",
                    e.lcores,
                    main + 1
                ),
            );
        }
        let segments = 1 + self.segments.len();
        let needed = usize::from(self.workers) * segments;
        if self.workers > 0 && workers.len() < needed {
            f.error_near(
                "workers",
                "eal.lcores",
                format!(
                    "{} worker(s) x {segments} segment(s) need {needed} worker lcores; eal.lcores {:?} gives {} \
                     ({}) beside the control lcore {main}",
                    self.workers,
                    e.lcores,
                    workers.len(),
                    workers.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        if let Some(online) = online_cpus() {
            let missing: Vec<String> = lcores.cpus.difference(&online).map(u32::to_string).collect();
            if !missing.is_empty() {
                f.warn(
                    "eal.lcores",
                    format!(
                        "CPU {} not online on this machine: EAL refuses such lcores here",
                        missing.join(", ")
                    ),
                );
            }
        }
    }

    fn validate_segment(&self, x: &SegmentView<'_>, f: &mut Findings) {
        let at = x.at();
        validate_exception_addresses(x, &at, f);
        self.validate_wire(x, &at, f);
        validate_exception_device(x, &at, f);
        validate_cluster_mac(x, &at, f);
        validate_vips(x.vips, &at, f);
        validate_sharing(x, &at, f);
        match x.exchange {
            None => self.validate_static_members(x, &at, f),
            Some(e) => self.validate_node_exchange(x, e, f),
        }
    }

    /// The segment's wire port: a device this node may open, its rings,
    /// RSS only with workers to spread to.
    fn validate_wire(&self, x: &SegmentView<'_>, at: &str, f: &mut Findings) {
        if x.wire.device.trim().is_empty() || x.wire.device.contains(char::is_whitespace) {
            f.error(
                format!("{at}wire.device"),
                format!("{:?}: a PCI address or vdev arguments without spaces", x.wire.device),
            );
        }
        if !self.eal.allow_file_writing_vdevs {
            if let Some(why) = file_writing_devargs(&x.wire.device) {
                f.error(
                    format!("{at}wire.device"),
                    format!("{why}; set eal.allow_file_writing_vdevs: true to allow it"),
                );
            }
        }
        for (name, d) in [("rx_desc", x.wire.rx_desc), ("tx_desc", x.wire.tx_desc)] {
            if !(64..=8192).contains(&d) || !d.is_power_of_two() {
                f.error(
                    format!("{at}wire.{name}"),
                    format!("{d}: a power of two from 64 to 8192"),
                );
            }
        }
        if x.wire.rss && self.workers == 1 {
            f.error_near(
                format!("{at}wire.rss"),
                "workers",
                "true needs workers > 1: with one queue the NIC spreads nothing and its hash is not used; \
                 write rss: false, or more workers",
            );
        }
    }

    /// A segment without an exchange: its static members, this node among
    /// them.
    fn validate_static_members(&self, x: &SegmentView<'_>, at: &str, f: &mut Findings) {
        let members = &x.sharing.members;
        if members.is_empty() {
            f.error(
                format!("{at}sharing.members"),
                "empty: list every member, this node included (or configure an exchange)",
            );
        } else if !members.iter().any(|m| m.id == self.id) {
            f.error("id", format!("{} is not among {at}sharing.members", self.id));
        }
    }

    /// What a node's exchange must agree with in the rest of its
    /// configuration.
    fn validate_node_exchange(&self, x: &SegmentView<'_>, e: &ExchangeConfig, f: &mut Findings) {
        let at = format!("{}exchange", x.at());
        validate_exchange(e, &at, f);
        validate_join_or_peers(e, &at, f);
        if e.peers.contains_key(&self.id) {
            f.error(
                format!("{at}.peers.{}", self.id),
                format!("member {} is this node (id): list only the others", self.id),
            );
        }
        if !e.hysteresis.is_nan() && e.hysteresis >= self.availability.capacity && self.availability.capacity > 0.0 {
            f.error_near(
                format!("{at}.hysteresis"),
                "availability.capacity",
                format!(
                    "{} is not below this node's capacity ({}): no change of its weight, not even a drain to 0, \
                     would ever make a new table",
                    e.hysteresis, self.availability.capacity
                ),
            );
        }
        self.validate_exchange_addresses(x, e, &at, f);
    }

    /// The node's VIPs on every segment, each with its field path.
    fn all_vips(&self) -> Vec<(String, &VipConfig)> {
        self.all_segments()
            .iter()
            .flat_map(|s| {
                let at = s.at();
                s.vips
                    .iter()
                    .enumerate()
                    .map(move |(i, v)| (format!("{at}vips[{i}]"), v))
            })
            .collect()
    }

    /// The exchange's addresses against the node's own: heartbeats go from
    /// and to the members' own addresses, never a VIP, and the node binds
    /// one of its exception addresses.
    fn validate_exchange_addresses(&self, x: &SegmentView<'_>, e: &ExchangeConfig, at: &str, f: &mut Findings) {
        let vips = self.all_vips();
        let is_vip = |ip: IpAddr| vips.iter().find(|(_, v)| v.addr == ip).map(|(p, _)| p.clone());
        if let Some(b) = e.bind {
            if let Some(p) = is_vip(b.ip()).filter(|_| !b.ip().is_unspecified()) {
                f.error(
                    format!("{at}.bind"),
                    format!("{} is a VIP ({p}): heartbeats go to the node's own address", b.ip()),
                );
            }
        }
        let own = x.exception.own_ips();
        if e.bind.is_none() && e.bind_addr(&own).ip().is_unspecified() {
            f.warn(
                format!("{at}.bind"),
                format!(
                    "not written, and {}exception.addresses has no address of the members' family: the exchange \
                     binds every address of the host ({}); write this node's own address",
                    x.at(),
                    e.bind_addr(&own)
                ),
            );
        }
        for (id, a) in e.addresses() {
            let field = if id == 0 {
                format!("{at}.coordinator")
            } else {
                format!("{at}.peers.{id}")
            };
            if let Some(p) = is_vip(a.ip()) {
                f.error(
                    field,
                    format!("member {id}: {} is a VIP ({p}), not a member's own address", a.ip()),
                );
            } else if own.contains(&a.ip()) {
                f.error(
                    field,
                    format!(
                        "member {id}: {} is this node's own address (exception.addresses)",
                        a.ip()
                    ),
                );
            }
        }
        if let Some(b) = e
            .bind
            .filter(|b| !own.is_empty() && !b.ip().is_unspecified() && !own.contains(&b.ip()))
        {
            f.warn(
                format!("{at}.bind"),
                format!(
                    "{} is not among exception.addresses: heartbeats arrive only once the host has it",
                    b.ip()
                ),
            );
        }
    }

    fn validate_between_segments(&self, segs: &[SegmentView<'_>], f: &mut Findings) {
        for (i, x) in segs.iter().enumerate() {
            let at = x.at();
            let earlier = &segs[..i];
            if earlier.iter().any(|o| o.exception.iface == x.exception.iface) {
                f.error(
                    format!("{at}exception.iface"),
                    format!("{:?} is used by another segment", x.exception.iface),
                );
            }
            if earlier.iter().any(|o| o.wire.device == x.wire.device) {
                f.error(format!("{at}wire.device"), "used by another segment");
            }
            if let Some(o) = earlier.iter().find(|o| o.cluster_mac == x.cluster_mac) {
                f.error(
                    format!("{at}cluster_mac"),
                    format!(
                        "{} is also the cluster MAC of {}: each segment needs its own",
                        x.cluster_mac,
                        o.name()
                    ),
                );
            }
            if let Some(m) = x.exception.mac {
                if let Some(o) = segs.iter().find(|o| o.index != x.index && o.cluster_mac == m) {
                    f.error(
                        format!("{at}exception.mac"),
                        format!("{m} is the cluster MAC of {}", o.name()),
                    );
                }
            }
            for (k, v) in x.vips.iter().enumerate() {
                if let Some(o) = earlier.iter().find(|o| o.vips.iter().any(|w| w.addr == v.addr)) {
                    f.error(
                        format!("{at}vips[{k}].addr"),
                        format!("{} is also a VIP of {}: a VIP belongs to one segment", v.addr, o.name()),
                    );
                }
            }
            if let Some(e) = x.exchange {
                let clash = earlier
                    .iter()
                    .filter_map(|o| o.exchange)
                    .find(|oe| oe.segment == e.segment);
                if clash.is_some() {
                    f.error(
                        format!("{at}exchange.segment"),
                        format!(
                            "{}: used by another segment; each segment's exchange has its own id",
                            e.segment
                        ),
                    );
                }
                let bind = e.bind_addr(&x.exception.own_ips());
                if earlier
                    .iter()
                    .filter_map(|o| o.exchange.map(|oe| oe.bind_addr(&o.exception.own_ips())))
                    .any(|b| b == bind)
                {
                    f.error(
                        format!("{at}exchange.bind"),
                        format!("{bind}: used by another segment's exchange"),
                    );
                }
            }
        }
    }

    fn validate_flow_table(&self, f: &mut Findings) {
        let ft = &self.flow_table;
        f.range("flow_table.capacity", ft.capacity, 1024, 1 << 28, "");
        f.range("flow_table.half_open_ms", ft.half_open_ms, 1, 300_000, " ms");
        f.range("flow_table.established_s", ft.established_s, 1, 86_400, " s");
        f.range("flow_table.closing_ms", ft.closing_ms, 1, 600_000, " ms");
        f.range("flow_table.provisional_ms", ft.provisional_ms, 1, 60_000, " ms");
        f.range("flow_table.grace_ms", ft.grace_ms, 1, 60_000, " ms");
    }

    fn validate_availability(&self, f: &mut Findings) {
        let a = &self.availability;
        if !a.capacity.is_finite() || !(0.0..=1_000_000.0).contains(&a.capacity) {
            f.error("availability.capacity", format!("{}: from 0 to 1000000", a.capacity));
        }
        f.range("availability.sample_ms", a.sample_ms, 10, 60_000, " ms");
        if !(a.alpha > 0.0 && a.alpha <= 1.0) {
            f.error("availability.alpha", format!("{}: in (0, 1]", a.alpha));
        }
        if !(a.max_step > 0.0 && a.max_step <= 1.0) {
            f.error("availability.max_step", format!("{}: in (0, 1]", a.max_step));
        }
        if !(0.0..=1.0).contains(&a.floor) {
            f.error("availability.floor", format!("{}: in [0, 1]", a.floor));
        }
        if !a.cpu_exponent.is_finite() || !(0.0..=100.0).contains(&a.cpu_exponent) {
            f.error(
                "availability.cpu_exponent",
                format!("{}: a finite exponent from 0 to 100", a.cpu_exponent),
            );
        }
        if a.max_connections == Some(0) {
            f.error("availability.max_connections", "0: at least 1 (or None for no limit)");
        }
        if a.service_probe.is_some() && a.health_check.is_some() {
            f.error(
                "availability.service_probe",
                "give service_probe (a TCP check, rise 1, fall 1) or health_check, not both",
            );
        }
        if let Some(h) = &a.health_check {
            validate_health_check(h, a.sample_ms, f);
        }
        match &a.cpu {
            CpuSource::Cgroup(name) => {
                if name.is_empty() || name.split('/').any(|p| p == "..") || name.starts_with('/') {
                    f.error(
                        "availability.cpu",
                        format!("cgroup {name:?}: a path under /sys/fs/cgroup, without '..'"),
                    );
                } else if !cgroup_exists(name) {
                    f.error(
                        "availability.cpu",
                        format!(
                            "cgroup {name:?} not found (v2: /sys/fs/cgroup/{name}/cpu.stat and cpu.max; \
                             v1: cpuacct/{name}/cpuacct.usage and cpu/{name}/cpu.cfs_quota_us)"
                        ),
                    );
                }
            }
            CpuSource::Host | CpuSource::None => {}
        }
        if let Some((path, start, end)) = &a.temperature {
            if !start.is_finite() || !end.is_finite() || start >= end || *start < -50.0 || *end > 200.0 {
                f.error(
                    "availability.temperature",
                    format!("({start}, {end}): two temperatures in °C, the first below the second"),
                );
            }
            counter_file(path, "availability.temperature[0]", "hwmon temperature", f);
        }
        if let Some((path, budget)) = &a.power {
            if !budget.is_finite() || *budget <= 0.0 {
                f.error(
                    "availability.power[1]",
                    format!("{budget}: a power budget in W above 0"),
                );
            }
            counter_file(path, "availability.power[0]", "powercap energy", f);
        }
    }
}

impl SegmentView<'_> {
    /// How messages name this segment.
    fn name(&self) -> String {
        if self.index == 0 {
            "the first segment (top-level fields)".to_owned()
        } else {
            format!("segments[{}]", self.index - 1)
        }
    }
}

impl CoordinatorConfig {
    /// Checks everything; see the module's documentation.
    pub fn validate(&self, f: &mut Findings) {
        if let Err(e) = plain_name(&self.name) {
            f.error("name", e);
        }
        validate_cluster(&self.cluster, f);
        validate_exchange(&self.exchange, "exchange", f);
        if !self.buckets.is_power_of_two() || !(16..=(1 << 20)).contains(&self.buckets) {
            f.error(
                "buckets",
                format!("{}: a power of two from 16 to 1048576", self.buckets),
            );
        }
        if self.exchange.peers.is_empty() {
            f.error("exchange.peers", "no nodes: list them (id: \"address:port\")");
        }
        if self.exchange.coordinator.is_some() {
            f.error(
                "exchange.coordinator",
                "a coordinator has no coordinator: it is member 0 itself",
            );
        }
        if self.exchange.hysteresis >= 1.0 {
            f.warn(
                "exchange.hysteresis",
                format!(
                    "{}: while the coordinator leads, no weight change up to this many capacity units makes \
                     a table, so a node of capacity {0} or less could never drain",
                    self.exchange.hysteresis
                ),
            );
        }
        if let Some(g) = &self.status_group {
            if let Err(e) = crate::status::server::group_id(g) {
                f.error("status_group", e);
            }
        }
        if let Some(p) = &self.status_socket {
            if p.is_relative() {
                f.warn(
                    "status_socket",
                    format!("{}: relative to wherever the process starts", p.display()),
                );
            }
        }
    }
}

/// Virtual devices' arguments that name a file the device writes or
/// creates: (driver name prefix, argument, what it does). The node runs as
/// root, so such a path can be anywhere.
const FILE_WRITING_DEVARGS: &[(&str, &str, &str)] = &[
    ("net_pcap", "tx_pcap", "writes every packet sent to this file"),
    ("eth_pcap", "tx_pcap", "writes every packet sent to this file"),
    ("net_vhost", "iface", "creates a Unix socket at this path"),
    ("eth_vhost", "iface", "creates a Unix socket at this path"),
    ("net_memif", "socket", "creates a Unix socket at this path"),
    (
        "net_virtio_user",
        "path",
        "with server=1, creates a Unix socket at this path",
    ),
    (
        "virtio_user",
        "path",
        "with server=1, creates a Unix socket at this path",
    ),
];

/// Why the device arguments `devargs` ("net_pcap0,tx_pcap=/x") would write
/// a file, if they would.
pub fn file_writing_devargs(devargs: &str) -> Option<String> {
    let mut parts = devargs.split(',');
    let driver = parts.next()?.trim();
    let args: Vec<(&str, &str)> = parts.filter_map(|a| a.split_once('=')).collect();
    let server = args.iter().any(|(k, v)| k.trim() == "server" && v.trim() == "1");
    FILE_WRITING_DEVARGS.iter().find_map(|(prefix, key, what)| {
        if !driver.starts_with(prefix) || (*key == "path" && !server) {
            return None;
        }
        let (_, value) = args.iter().find(|(k, _)| k.trim() == *key)?;
        Some(format!("{driver} with {key}={value} {what}"))
    })
}

/// The EAL arguments that would write files, by index: `--vdev` with
/// [`file_writing_devargs`], and traces (`--trace`, `--trace-dir`).
pub fn file_writing_eal_args(args: &[String]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (k, a) in args.iter().enumerate() {
        let devargs = match a.as_str() {
            "--vdev" => args.get(k + 1).map(String::as_str),
            other => other.strip_prefix("--vdev="),
        };
        if let Some(why) = devargs.and_then(file_writing_devargs) {
            found.push((k, why));
        }
        let option = a.split('=').next().unwrap_or(a);
        if option == "--trace" || option == "--trace-dir" {
            found.push((k, format!("{option} writes trace files")));
        }
    }
    found
}

/// The CPUs online on this machine, when it says.
fn online_cpus() -> Option<BTreeSet<u32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    Lcores::parse(text.trim()).ok().map(|l| l.lcores)
}

/// Whether the node's measuring thread will find the cgroup's CPU files
/// (the same files `measure` opens; keep the two in step).
fn cgroup_exists(name: &str) -> bool {
    let root = Path::new("/sys/fs/cgroup");
    let v2 = root.join(name);
    if v2.join("cpu.stat").exists() && v2.join("cpu.max").exists() {
        return true;
    }
    root.join("cpuacct").join(name).join("cpuacct.usage").exists()
        && root.join("cpu").join(name).join("cpu.cfs_quota_us").exists()
}

/// A counter file the node reads a number from: missing is an error; not
/// readable by this user only a warning (check-config may run as another
/// user than the node; powercap's energy_uj is root-only).
fn counter_file(path: &Path, field: &str, what: &str, f: &mut Findings) {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().parse::<u64>().is_ok() => {}
        Ok(text) => f.error(
            field,
            format!(
                "{}: {what} file holds {:?}, not a counter",
                path.display(),
                text.trim().chars().take(40).collect::<String>()
            ),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => f.warn(
            field,
            format!("{}: {e} (the node must run as a user that can read it)", path.display()),
        ),
        Err(e) => f.error(field, format!("{}: {what} file: {e}", path.display())),
    }
}
