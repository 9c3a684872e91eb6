//! Every kind of configuration that would fail at start (or misbehave)
//! is refused, naming the field and where it is written; the warnings
//! tier warns without refusing.

use super::*;
use synshare_control::layout::Layout;
use synshare_dataplane::packet::Mac;

/// A valid node with an exchange: three voters, an inline key.
pub const NODE: &str = r#"(
    name: "node1",
    id: 1,
    eal: (lcores: "0,1", main_lcore: 0, file_prefix: "ss-node1"),
    wire: (device: "net_af_packet0,iface=wire0"),
    exception: (iface: "ss-tap", addresses: ["192.0.2.21/24"]),
    cluster_mac: "02:5e:00:00:01:00",
    vips: [(addr: "192.0.2.100", tcp_ports: [80]), (addr: "2001:db8::100", tcp_ports: [80])],
    workers: 1,
    flow_table: (half_open_ms: 5000, established_s: 300, closing_ms: 10000),
    sharing: (drain_ms: 60000, members: []),
    metrics: "127.0.0.1:9901",
    stop_drain_s: 30,
    exchange: (
        bind: "0.0.0.0:7946",
        peers: {2: "192.0.2.22:7946", 3: "192.0.2.23:7946"},
        key: "0123456789abcdef0123456789abcdef",
        state_dir: "/var/lib/synshare",
        interval_ms: 100,
        timeout_ms: 400,
        min_epoch_ms: 500,
        hysteresis: 0.05,
    ),
    availability: (capacity: 1.0, cpu: none, cpu_exponent: 1.0, floor: 0.05),
)"#;

/// A valid node with static shares on two segments (three lcores: the
/// control lcore and one worker per segment).
pub const SEGMENTS: &str = r#"(
    name: "node2",
    id: 2,
    eal: (lcores: "0@0,1@1,2@1", main_lcore: 0, file_prefix: "ss-node2"),
    wire: (device: "net_af_packet0,iface=wire0"),
    exception: (iface: "ss-tap"),
    cluster_mac: "02:5e:00:00:01:00",
    vips: [(addr: "192.0.2.100", tcp_ports: [80])],
    sharing: (members: [(id: 1, weight: 1.0), (id: 2, weight: 2.0)]),
    segments: [(
        wire: (device: "net_af_packet1,iface=wire1"),
        exception: (iface: "ss-tap2"),
        cluster_mac: "02:5e:00:00:02:00",
        vips: [(addr: "192.0.2.200", tcp_ports: [80])],
        sharing: (members: [(id: 2, weight: 1.0), (id: 3, weight: 1.0)]),
    )],
)"#;

/// A valid coordinator.
pub const COORDINATOR: &str = r#"(
    name: "coordinator",
    exchange: (
        bind: "0.0.0.0:7946",
        peers: {1: "192.0.2.21:7946", 2: "192.0.2.22:7946", 3: "192.0.2.23:7946"},
        key: "0123456789abcdef0123456789abcdef",
        interval_ms: 100,
        timeout_ms: 400,
        min_epoch_ms: 500,
        hysteresis: 0.05,
    ),
    buckets: 65536,
)"#;

/// Which valid configuration a case edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    Node,
    Segments,
    Coordinator,
}

impl Base {
    pub fn text(self) -> &'static str {
        match self {
            Base::Node => NODE,
            Base::Segments => SEGMENTS,
            Base::Coordinator => COORDINATOR,
        }
    }
}

/// One broken configuration: `edits` (each `from` found once in the base,
/// replaced by `to`) must be refused naming `field`, with `says` in the
/// message, at the line that holds `at`.
pub struct Case {
    pub name: &'static str,
    pub base: Base,
    pub edits: &'static [(&'static str, &'static str)],
    pub field: &'static str,
    pub says: &'static str,
    pub at: &'static str,
}

const fn case(
    name: &'static str,
    base: Base,
    edits: &'static [(&'static str, &'static str)],
    field: &'static str,
    says: &'static str,
    at: &'static str,
) -> Case {
    Case {
        name,
        base,
        edits,
        field,
        says,
        at,
    }
}

use Base::{Coordinator as C, Node as N, Segments as S};

/// Every case of issue 11's list, and their neighbours.
pub const CASES: &[Case] = &[
    case(
        "workers: 4 with lcores \"2,3\"",
        N,
        &[
            ("lcores: \"0,1\", main_lcore: 0", "lcores: \"2,3\""),
            ("workers: 1", "workers: 4"),
        ],
        "workers",
        "need 4 worker lcores",
        "workers: 4",
    ),
    case(
        "lcores \"2\" (no worker lcore)",
        N,
        &[("lcores: \"0,1\", main_lcore: 0", "lcores: \"2\"")],
        "eal.lcores",
        "leaves no lcore for a worker",
        "lcores: \"2\"",
    ),
    case(
        "lcores \"two,three\"",
        N,
        &[("lcores: \"0,1\", main_lcore: 0", "lcores: \"two,three\"")],
        "eal.lcores",
        "not an lcore number",
        "two,three",
    ),
    case(
        "main_lcore not in lcores",
        N,
        &[("main_lcore: 0", "main_lcore: 5")],
        "eal.main_lcore",
        "lcore 5 is not among eal.lcores",
        "main_lcore: 5",
    ),
    case(
        "missing cgroup",
        N,
        &[("cpu: none", "cpu: cgroup(\"synshare-test-no-such-cgroup\")")],
        "availability.cpu",
        "not found",
        "no-such-cgroup",
    ),
    case(
        "missing hwmon file",
        N,
        &[(
            "cpu: none,",
            "cpu: none, temperature: (\"/nonexistent/hwmon0/temp1_input\", 70.0, 90.0),",
        )],
        "availability.temperature[0]",
        "No such file",
        "temp1_input",
    ),
    case(
        "missing powercap file",
        N,
        &[(
            "cpu: none,",
            "cpu: none, power: (\"/nonexistent/intel-rapl:0/energy_uj\", 250.0),",
        )],
        "availability.power[0]",
        "No such file",
        "energy_uj",
    ),
    case(
        "rss: true with one worker",
        N,
        &[("iface=wire0\"", "iface=wire0\", rss: true")],
        "wire.rss",
        "needs workers > 1",
        "rss: true",
    ),
    case(
        "a peer equal to a VIP",
        N,
        &[("2: \"192.0.2.22:7946\"", "2: \"192.0.2.100:7946\"")],
        "exchange.peers.2",
        "is a VIP (vips[0])",
        "192.0.2.100:7946",
    ),
    case(
        "the coordinator equal to a VIP",
        N,
        &[(
            "bind: \"0.0.0.0:7946\",",
            "bind: \"0.0.0.0:7946\", coordinator: \"[2001:db8::100]:7946\",",
        )],
        "exchange.coordinator",
        "is a VIP (vips[1])",
        "coordinator:",
    ),
    case(
        "bind equal to a VIP",
        N,
        &[("bind: \"0.0.0.0:7946\"", "bind: \"192.0.2.100:7946\"")],
        "exchange.bind",
        "is a VIP",
        "bind: \"192.0.2.100",
    ),
    case(
        "a peer equal to this node's own address",
        N,
        &[("3: \"192.0.2.23:7946\"", "3: \"192.0.2.21:7946\"")],
        "exchange.peers.3",
        "this node's own address",
        "192.0.2.21:7946",
    ),
    case(
        "the same peer id twice",
        N,
        &[(
            "3: \"192.0.2.23:7946\"}",
            "3: \"192.0.2.23:7946\", 2: \"192.0.2.24:7946\"}",
        )],
        "exchange.peers.2",
        "written twice",
        "192.0.2.24",
    ),
    case(
        "the same peer address twice",
        N,
        &[("3: \"192.0.2.23:7946\"", "3: \"192.0.2.22:7946\"")],
        "exchange.peers.3",
        "listed twice",
        "3: \"192.0.2.22",
    ),
    case(
        "this node among its peers",
        N,
        &[("3: \"192.0.2.23:7946\"", "1: \"192.0.2.23:7946\"")],
        "exchange.peers.1",
        "is this node",
        "1: \"192.0.2.23",
    ),
    case(
        "an exchange with no peers and no coordinator",
        N,
        &[("peers: {2: \"192.0.2.22:7946\", 3: \"192.0.2.23:7946\"}", "peers: {}")],
        "exchange.peers",
        "no peers and no coordinator",
        "peers: {}",
    ),
    case(
        "a joining node that lists peers",
        N,
        &[("bind: \"0.0.0.0:7946\",", "bind: \"0.0.0.0:7946\", join: \"192.0.2.22:7946\",")],
        "exchange.join",
        "learns the members from the cluster",
        "join:",
    ),
    case(
        "drain_ms: 0",
        N,
        &[("drain_ms: 60000", "drain_ms: 0")],
        "sharing.drain_ms",
        "from 1 to 3600000 ms",
        "drain_ms: 0",
    ),
    case(
        "min_epoch_ms: 0",
        N,
        &[("min_epoch_ms: 500", "min_epoch_ms: 0")],
        "exchange.min_epoch_ms",
        "from interval_ms (100) to 600000 ms",
        "min_epoch_ms: 0",
    ),
    case(
        "a day-long exchange timeout",
        N,
        &[("timeout_ms: 400", "timeout_ms: 86400000")],
        "exchange.timeout_ms",
        "to 60000",
        "timeout_ms: 86400000",
    ),
    case(
        "a day-long half-open timeout",
        N,
        &[("half_open_ms: 5000", "half_open_ms: 86400000")],
        "flow_table.half_open_ms",
        "from 1 to 300000 ms",
        "half_open_ms: 86400000",
    ),
    case(
        "a day-long closing timeout",
        N,
        &[("closing_ms: 10000", "closing_ms: 86400000")],
        "flow_table.closing_ms",
        "from 1 to 600000 ms",
        "closing_ms: 86400000",
    ),
    case(
        "a two-day established timeout",
        N,
        &[("established_s: 300", "established_s: 172800")],
        "flow_table.established_s",
        "from 1 to 86400 s",
        "established_s: 172800",
    ),
    case(
        "a day-long stop drain",
        N,
        &[("stop_drain_s: 30", "stop_drain_s: 86400")],
        "stop_drain_s",
        "from 0 to 3600 s",
        "stop_drain_s: 86400",
    ),
    case(
        "a day-long bucket drain",
        N,
        &[("drain_ms: 60000", "drain_ms: 86400000")],
        "sharing.drain_ms",
        "from 1 to 3600000 ms",
        "drain_ms: 86400000",
    ),
    case(
        "a hysteresis that never rebalances",
        N,
        &[("hysteresis: 0.05", "hysteresis: 1.0")],
        "exchange.hysteresis",
        "not even a drain to 0",
        "hysteresis: 1.0",
    ),
    case(
        "a NaN hysteresis",
        N,
        &[("hysteresis: 0.05", "hysteresis: NaN")],
        "exchange.hysteresis",
        "NaN: a number of capacity units",
        "hysteresis: NaN",
    ),
    case(
        "a NaN cpu_exponent",
        N,
        &[("cpu_exponent: 1.0", "cpu_exponent: NaN")],
        "availability.cpu_exponent",
        "NaN: a finite exponent",
        "cpu_exponent: NaN",
    ),
    case(
        "a negative cpu_exponent",
        N,
        &[("cpu_exponent: 1.0", "cpu_exponent: -2.0")],
        "availability.cpu_exponent",
        "-2: a finite exponent",
        "cpu_exponent: -2.0",
    ),
    case(
        "a health check expecting HTTP status 700",
        N,
        &[("floor: 0.05)", "floor: 0.05, health_check: (probe: http(addr: \"127.0.0.1:80\", status: 700)))")],
        "availability.health_check.probe.status",
        "700: an HTTP status from 100 to 599",
        "status: 700",
    ),
    case(
        "a health check path without its slash",
        N,
        &[("floor: 0.05)", "floor: 0.05, health_check: (probe: http(addr: \"127.0.0.1:80\", path: \"healthz\")))")],
        "availability.health_check.probe.path",
        "a path starting with '/'",
        "path: \"healthz\"",
    ),
    case(
        "a health check with rise 0",
        N,
        &[("floor: 0.05)", "floor: 0.05, health_check: (probe: tcp(\"127.0.0.1:80\"), rise: 0))")],
        "availability.health_check.rise",
        "0: from 1 to 100",
        "rise: 0",
    ),
    case(
        "a health check as long as the sample period",
        N,
        &[("floor: 0.05)", "floor: 0.05, health_check: (probe: tcp(\"127.0.0.1:80\"), timeout_ms: 250))")],
        "availability.health_check.timeout_ms",
        "less than availability.sample_ms (250 ms)",
        "timeout_ms: 250",
    ),
    case(
        "a health check of an unknown kind",
        N,
        &[("floor: 0.05)", "floor: 0.05, health_check: (probe: udp(\"127.0.0.1:53\")))")],
        "availability.health_check.probe",
        "udp",
        "udp",
    ),
    case(
        "both service_probe and health_check",
        N,
        &[("floor: 0.05)", "floor: 0.05, service_probe: \"127.0.0.1:80\", health_check: (probe: tcp(\"127.0.0.1:80\")))")],
        "availability.service_probe",
        "not both",
        "service_probe",
    ),
    case(
        "a negative capacity",
        N,
        &[("capacity: 1.0", "capacity: -1.0")],
        "availability.capacity",
        "-1: from 0 to 1000000",
        "capacity: -1.0",
    ),
    case(
        "a NaN floor",
        N,
        &[("floor: 0.05", "floor: NaN")],
        "availability.floor",
        "NaN: in [0, 1]",
        "floor: NaN",
    ),
    case(
        "NaN temperature limits",
        N,
        &[(
            "cpu: none,",
            "cpu: none, temperature: (\"/proc/self/stat\", NaN, 90.0),",
        )],
        "availability.temperature",
        "(NaN, 90): two temperatures",
        "NaN, 90.0",
    ),
    case(
        "a negative power budget",
        N,
        &[("cpu: none,", "cpu: none, power: (\"/proc/self/oom_score\", -250.0),")],
        "availability.power[1]",
        "-250: a power budget",
        "-250.0",
    ),
    case(
        "max_connections: 0",
        N,
        &[("cpu: none,", "cpu: none, max_connections: 0,")],
        "availability.max_connections",
        "at least 1",
        "max_connections: 0",
    ),
    case(
        "a NaN member weight",
        S,
        &[("(id: 1, weight: 1.0)", "(id: 1, weight: NaN)")],
        "sharing.members[0].weight",
        "NaN: a finite weight",
        "weight: NaN",
    ),
    case(
        "VIP 255.255.255.255",
        N,
        &[("addr: \"192.0.2.100\"", "addr: \"255.255.255.255\"")],
        "vips[0].addr",
        "the broadcast address",
        "255.255.255.255",
    ),
    case(
        "a multicast VIP",
        N,
        &[("addr: \"192.0.2.100\"", "addr: \"224.0.0.1\"")],
        "vips[0].addr",
        "a multicast address",
        "224.0.0.1",
    ),
    case(
        "VIP 0.0.0.0",
        N,
        &[("addr: \"192.0.2.100\"", "addr: \"0.0.0.0\"")],
        "vips[0].addr",
        "0.0.0.0/8",
        "0.0.0.0\"",
    ),
    case(
        "a reserved (class E) VIP",
        N,
        &[("addr: \"192.0.2.100\"", "addr: \"240.0.0.1\"")],
        "vips[0].addr",
        "reserved",
        "240.0.0.1",
    ),
    case(
        "a loopback VIP",
        N,
        &[("addr: \"192.0.2.100\"", "addr: \"127.0.0.1\"")],
        "vips[0].addr",
        "loopback",
        "127.0.0.1",
    ),
    case(
        "an IPv6 multicast VIP",
        N,
        &[("addr: \"2001:db8::100\"", "addr: \"ff02::1\"")],
        "vips[1].addr",
        "a multicast address",
        "ff02::1",
    ),
    case(
        "an IPv4-mapped VIP",
        N,
        &[("addr: \"2001:db8::100\"", "addr: \"::ffff:192.0.2.1\"")],
        "vips[1].addr",
        "IPv4-mapped",
        "::ffff:",
    ),
    case(
        "a multicast cluster MAC that is not the VIP's group",
        N,
        &[(
            "cluster_mac: \"02:5e:00:00:01:00\"",
            "cluster_mac: \"01:00:5e:00:00:01\"",
        )],
        "cluster_mac",
        "the cluster MAC is 01:00:5e:7f:02:64",
        "01:00:5e:00:00:01",
    ),
    case(
        "the TAP MAC equal to the cluster MAC",
        N,
        &[("iface: \"ss-tap\",", "iface: \"ss-tap\", mac: \"02:5e:00:00:01:00\",")],
        "exception.mac",
        "is the cluster MAC",
        "mac: \"02:5e",
    ),
    case(
        "the TAP MAC equal to another segment's cluster MAC",
        S,
        &[("iface: \"ss-tap\"", "iface: \"ss-tap\", mac: \"02:5e:00:00:02:00\"")],
        "exception.mac",
        "is the cluster MAC of segments[0]",
        "mac: \"02:5e",
    ),
    case(
        "the same VIP on two segments",
        S,
        &[("addr: \"192.0.2.200\"", "addr: \"192.0.2.100\"")],
        "segments[0].vips[0].addr",
        "is also a VIP of the first segment",
        "        vips: [(addr: \"192.0.2.100\"",
    ),
    case(
        "the same cluster MAC on two segments",
        S,
        &[(
            "cluster_mac: \"02:5e:00:00:02:00\"",
            "cluster_mac: \"02:5e:00:00:01:00\"",
        )],
        "segments[0].cluster_mac",
        "is also the cluster MAC of the first segment",
        "        cluster_mac: \"02:5e:00:00:01:00\"",
    ),
    case(
        "workers x segments beyond the lcores",
        S,
        &[("lcores: \"0@0,1@1,2@1\"", "lcores: \"0,1\"")],
        "workers",
        "1 worker(s) x 2 segment(s) need 2 worker lcores",
        "lcores: \"0,1\"",
    ),
    case(
        "a node name with a path in it",
        N,
        &[("name: \"node1\"", "name: \"../../tmp/x\"")],
        "name",
        "not starting with '.'",
        "../../tmp/x",
    ),
    case(
        "a published sample key",
        N,
        &[("0123456789abcdef0123456789abcdef", "change-me-to-a-long-random-secret")],
        "exchange.key",
        "a published sample key",
        "change-me",
    ),
    case(
        "a coordinator name of ../../tmp/x",
        C,
        &[("name: \"coordinator\"", "name: \"../../tmp/x\"")],
        "name",
        "/run/synshare/NAME.sock",
        "../../tmp/x",
    ),
    case(
        "a hidden coordinator name",
        C,
        &[("name: \"coordinator\"", "name: \".x\"")],
        "name",
        "not starting with '.'",
        "\".x\"",
    ),
    case(
        "a coordinator with the same node twice",
        C,
        &[(
            "3: \"192.0.2.23:7946\"}",
            "3: \"192.0.2.23:7946\", 1: \"192.0.2.24:7946\"}",
        )],
        "exchange.peers.1",
        "written twice",
        "192.0.2.24",
    ),
    case(
        "a coordinator with min_epoch_ms: 0",
        C,
        &[("min_epoch_ms: 500", "min_epoch_ms: 0")],
        "exchange.min_epoch_ms",
        "from interval_ms",
        "min_epoch_ms: 0",
    ),
    case(
        "a wire device that writes a pcap file",
        N,
        &[(
            "device: \"net_af_packet0,iface=wire0\"",
            "device: \"net_pcap0,rx_iface=wire0,tx_pcap=/etc/cron.d/x\"",
        )],
        "wire.device",
        "net_pcap0 with tx_pcap=/etc/cron.d/x writes every packet sent to this file; \
         set eal.allow_file_writing_vdevs: true",
        "tx_pcap=",
    ),
    case(
        "a second segment's wire device that writes a pcap file",
        S,
        &[(
            "device: \"net_af_packet1,iface=wire1\"",
            "device: \"net_pcap1,iface=wire1,tx_pcap=/root/x\"",
        )],
        "segments[0].wire.device",
        "tx_pcap=/root/x",
        "tx_pcap=",
    ),
    case(
        "eal.extra_args with a pcap vdev that writes a file",
        N,
        &[(
            "file_prefix: \"ss-node1\")",
            "file_prefix: \"ss-node1\",\n        extra_args: [\"--log-level\", \"7\", \"--vdev\", \"net_pcap9,tx_pcap=/x\"])",
        )],
        "eal.extra_args[2]",
        "net_pcap9 with tx_pcap=/x writes",
        "extra_args:",
    ),
    case(
        "eal.extra_args with a vhost socket anywhere",
        N,
        &[(
            "file_prefix: \"ss-node1\")",
            "file_prefix: \"ss-node1\",\n        extra_args: [\"--vdev=net_vhost0,iface=/etc/x.sock\"])",
        )],
        "eal.extra_args[0]",
        "creates a Unix socket at this path",
        "extra_args:",
    ),
    case(
        "eal.extra_args with a trace directory",
        N,
        &[(
            "file_prefix: \"ss-node1\")",
            "file_prefix: \"ss-node1\",\n        extra_args: [\"--trace=.*\", \"--trace-dir=/etc\"])",
        )],
        "eal.extra_args[1]",
        "--trace-dir writes trace files",
        "extra_args:",
    ),
    case(
        "a status group that does not exist",
        N,
        &[("stop_drain_s: 30,", "stop_drain_s: 30,\n    status_group: \"no-such-group-here\",")],
        "status_group",
        "not in /etc/group",
        "no-such-group-here",
    ),
    case(
        "a coordinator's status group that does not exist",
        C,
        &[("name: \"coordinator\",", "name: \"coordinator\",\n    status_group: \"no-such-group-here\",")],
        "status_group",
        "not in /etc/group",
        "no-such-group-here",
    ),
    case(
        "a coordinator with no nodes",
        C,
        &[(
            "peers: {1: \"192.0.2.21:7946\", 2: \"192.0.2.22:7946\", 3: \"192.0.2.23:7946\"}",
            "peers: {}",
        )],
        "exchange.peers",
        "no nodes",
        "peers: {}",
    ),
];

/// Port rules that do not validate (issue 16), each on the first VIP of
/// [`NODE`].
pub const RULE_CASES: &[Case] = &[
    case(
        "overlapping rules",
        N,
        &[(
            "(addr: \"192.0.2.100\", tcp_ports: [80])",
            "(addr: \"192.0.2.100\", tcp_ports: [80], rules: [\n        (ports: \"8000-8099\", affinity: client),\n        (ports: \"8050\", mode: disabled, protocol: both),\n    ])",
        )],
        "vips[0].rules[1].ports",
        "8050-8050 overlaps rule 0 (8000-8099)",
        "(ports: \"8050\"",
    ),
    case(
        "a port beyond 65535",
        N,
        &[(
            "(addr: \"192.0.2.100\", tcp_ports: [80])",
            "(addr: \"192.0.2.100\", tcp_ports: [80], rules: [\n        (ports: \"80-70000\"),\n    ])",
        )],
        "vips[0].rules[0].ports",
        "\"70000\" is not a port from 1 to 65535",
        "(ports: \"80-70000\")",
    ),
    case(
        "port 0 in a rule",
        N,
        &[(
            "(addr: \"192.0.2.100\", tcp_ports: [80])",
            "(addr: \"192.0.2.100\", tcp_ports: [80], rules: [\n        (ports: \"0\", affinity: client),\n    ])",
        )],
        "vips[0].rules[0].ports",
        "port 0 cannot be served",
        "(ports: \"0\"",
    ),
    case(
        "a range upside down",
        N,
        &[(
            "(addr: \"192.0.2.100\", tcp_ports: [80])",
            "(addr: \"192.0.2.100\", tcp_ports: [80], rules: [\n        (ports: \"90-80\"),\n    ])",
        )],
        "vips[0].rules[0].ports",
        "the first port is above the last",
        "(ports: \"90-80\")",
    ),
    case(
        "an affinity on a single-host rule",
        N,
        &[(
            "(addr: \"192.0.2.100\", tcp_ports: [80])",
            "(addr: \"192.0.2.100\", tcp_ports: [80], rules: [\n        (ports: \"80\", mode: single,\n         affinity: client),\n    ])",
        )],
        "vips[0].rules[0].affinity",
        "client affinity applies to shared rules only",
        "affinity: client),",
    ),
    case(
        "a priority list on a shared rule",
        N,
        &[(
            "(addr: \"192.0.2.100\", tcp_ports: [80])",
            "(addr: \"192.0.2.100\", tcp_ports: [80], rules: [\n        (ports: \"80\",\n         priority: [2, 1]),\n    ])",
        )],
        "vips[0].rules[0].priority",
        "a priority list applies to single-host rules only",
        "priority: [2, 1]),",
    ),
    case(
        "a member twice in a priority list",
        N,
        &[(
            "(addr: \"192.0.2.100\", tcp_ports: [80])",
            "(addr: \"192.0.2.100\", tcp_ports: [80], rules: [\n        (ports: \"80\", mode: single,\n         priority: [2, 2]),\n    ])",
        )],
        "vips[0].rules[0].priority",
        "member ids, each once",
        "priority: [2, 2]),",
    ),
    case(
        "only disabled ports",
        N,
        &[(
            "(addr: \"192.0.2.100\", tcp_ports: [80])",
            "(addr: \"192.0.2.100\", rules: [(ports: \"80\", mode: disabled)])",
        )],
        "vips[0]",
        "serves no port",
        "(addr: \"192.0.2.100\", rules",
    ),
];

/// The text of `case`: its base with its edits.
pub fn broken(case: &Case) -> String {
    let mut text = case.base.text().to_owned();
    for (from, to) in case.edits {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{}: {from:?} once in the base",
            case.name
        );
        text = text.replacen(from, to, 1);
    }
    text
}

/// Parses and validates `text` as `base` says, keeping only the errors.
pub fn errors_of(base: Base, text: &str) -> Result<Vec<ConfigError>, ConfigErrors> {
    let path = Path::new("broken.ron");
    match base {
        Base::Coordinator => CoordinatorConfig::check_text(path, text).map(|c| c.warnings),
        _ => NodeConfig::check_text(path, text).map(|c| c.warnings),
    }
}

#[test]
fn the_bases_are_valid() {
    for base in [Base::Node, Base::Segments, Base::Coordinator] {
        let warnings = errors_of(base, base.text()).unwrap_or_else(|e| panic!("{base:?}: {e}"));
        // Only this machine's CPUs could draw a warning here.
        assert!(
            warnings.iter().all(|w| w.field.as_deref() == Some("eal.lcores")),
            "{base:?}: {warnings:?}"
        );
    }
}

#[test]
fn every_case_is_refused_naming_the_field_where_it_is_written() {
    for case in CASES.iter().chain(RULE_CASES) {
        let text = broken(case);
        let errors = errors_of(case.base, &text).expect_err(case.name).0;
        let e = errors
            .iter()
            .find(|e| e.field.as_deref() == Some(case.field))
            .unwrap_or_else(|| panic!("{}: no error on `{}`: {errors:?}", case.name, case.field));
        assert!(e.message.contains(case.says), "{}: {e}", case.name);
        let shown = e.to_string();
        assert!(
            shown.starts_with("broken.ron:") && shown.contains(&format!("field `{}`", case.field)),
            "{}: {shown}",
            case.name
        );
        // The position is the line (and column) where the field is written.
        let (line, col) = e
            .position
            .unwrap_or_else(|| panic!("{}: no position: {shown}", case.name));
        let offset: usize = text
            .lines()
            .take(line - 1)
            .map(|l| l.chars().count() + 1)
            .sum::<usize>()
            + col
            - 1;
        let marker = text
            .find(case.at)
            .unwrap_or_else(|| panic!("{}: {:?} not in the text", case.name, case.at));
        let marker_end = marker + case.at.len();
        let line_start = text[..marker].rfind('\n').map_or(0, |i| i + 1);
        let line_end = marker_end + text[marker_end..].find('\n').unwrap_or(text.len() - marker_end);
        let byte = text.char_indices().nth(offset).map_or(text.len(), |(b, _)| b);
        assert!(
            (line_start..line_end).contains(&byte),
            "{}: {shown} does not point at the line of {:?}",
            case.name,
            case.at
        );
    }
}

#[test]
fn devices_that_write_files_pass_only_when_allowed() {
    let pcap = NODE.replacen(
        "device: \"net_af_packet0,iface=wire0\"",
        "device: \"net_pcap0,rx_iface=wire0,tx_pcap=/var/tmp/wire.pcap\"",
        1,
    );
    assert!(errors_of(Base::Node, &pcap).is_err());
    let allowed = pcap.replacen(
        "file_prefix: \"ss-node1\")",
        "file_prefix: \"ss-node1\", allow_file_writing_vdevs: true,\n        \
         extra_args: [\"--vdev\", \"net_memif0,socket=/run/x.sock\"])",
        1,
    );
    errors_of(Base::Node, &allowed).unwrap_or_else(|e| panic!("{e}"));
    // pcap towards an interface, a virtio-user client and a status group by
    // gid write no file of theirs.
    let harmless = NODE
        .replacen(
            "device: \"net_af_packet0,iface=wire0\"",
            "device: \"net_pcap0,rx_iface=wire0,tx_iface=wire0\"",
            1,
        )
        .replacen(
            "file_prefix: \"ss-node1\")",
            "file_prefix: \"ss-node1\", extra_args: [\"--vdev\", \"net_virtio_user0,path=/dev/vhost-net\"])",
            1,
        )
        .replacen("stop_drain_s: 30,", "stop_drain_s: 30, status_group: \"0\",", 1);
    errors_of(Base::Node, &harmless).unwrap_or_else(|e| panic!("{e}"));
    assert!(validate::file_writing_devargs("net_virtio_user0,path=/x.sock,server=1").is_some());
    assert_eq!(validate::file_writing_devargs("net_tap0,iface=ss-tap"), None);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = NODE
        .replacen("drain_ms: 60000", "drain_ms: 0", 1)
        .replacen("min_epoch_ms: 500", "min_epoch_ms: 0", 1)
        .replacen("addr: \"192.0.2.100\"", "addr: \"255.255.255.255\"", 1);
    let errors = errors_of(Base::Node, &text).unwrap_err().0;
    let fields: Vec<&str> = errors.iter().filter_map(|e| e.field.as_deref()).collect();
    for f in ["sharing.drain_ms", "exchange.min_epoch_ms", "vips[0].addr"] {
        assert!(fields.contains(&f), "{f}: {errors:?}");
    }
    // In the order they are written.
    let positions: Vec<_> = errors.iter().map(|e| e.position).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
    // One line each.
    assert_eq!(ConfigErrors(errors.clone()).to_string().lines().count(), errors.len());
}

#[test]
fn a_key_written_twice_is_placed_at_its_second_entry() {
    let text = NODE.replacen(
        "3: \"192.0.2.23:7946\"}",
        "3: \"192.0.2.23:7946\",\n            2: \"192.0.2.24:7946\"}",
        1,
    );
    let errors = errors_of(Base::Node, &text).unwrap_err().0;
    let e = errors
        .iter()
        .find(|e| e.field.as_deref() == Some("exchange.peers.2"))
        .expect("an error");
    let line = text.lines().position(|l| l.contains("192.0.2.24")).unwrap() + 1;
    assert_eq!(e.position, Some((line, 13)), "{e}");
}

#[test]
fn warnings_are_printed_but_do_not_refuse() {
    let text = NODE
        .replacen("metrics: \"127.0.0.1:9901\"", "metrics: \"0.0.0.0:9901\"", 1)
        .replacen("stop_drain_s: 30", "stop_drain_s: 0", 1)
        .replacen(", 3: \"192.0.2.23:7946\"", "", 1)
        .replacen("0123456789abcdef0123456789abcdef", "0123456789abcdef", 1)
        .replacen("state_dir: \"/var/lib/synshare\"", "state_dir: \"state\"", 1);
    let warnings = errors_of(Base::Node, &text).expect("warnings only");
    let says = |field: &str, what: &str| {
        warnings
            .iter()
            .any(|w| w.field.as_deref() == Some(field) && w.message.contains(what) && w.position.is_some())
    };
    assert!(says("metrics", "served to every network"), "{warnings:?}");
    assert!(says("stop_drain_s", "breaks the connections"), "{warnings:?}");
    assert!(says("exchange.coordinator", "two voters"), "{warnings:?}");
    assert!(says("exchange.key", "a short key"), "{warnings:?}");
    assert!(says("exchange.state_dir", "relative"), "{warnings:?}");
    let coordinator = COORDINATOR.replacen("hysteresis: 0.05", "hysteresis: 2.0", 1);
    let w = errors_of(Base::Coordinator, &coordinator).expect("a warning only");
    assert!(
        w.iter().any(|w| w.field.as_deref() == Some("exchange.hysteresis")),
        "{w:?}"
    );
}

#[test]
fn an_inline_key_in_a_readable_file_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("synshare-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.ron");
    std::fs::write(&path, NODE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = NodeConfig::check(&path).unwrap().warnings;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let closed = NodeConfig::check(&path).unwrap().warnings;
    std::fs::remove_dir_all(&dir).unwrap();
    let about_key = |w: &[ConfigError]| w.iter().any(|w| w.field.as_deref() == Some("exchange.key"));
    assert!(about_key(&open), "{open:?}");
    assert!(!about_key(&closed), "{closed:?}");
}

#[test]
fn a_key_files_own_mode_is_checked_and_a_credentials_source_too() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("synshare-key-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("cluster.key");
    std::fs::write(&key, "1 0123456789abcdef0123456789abcdef\n").unwrap();
    let mode = |m: u32| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
    let direct = ExchangeConfig {
        key_file: Some(key.display().to_string()),
        ..ExchangeConfig::default()
    };
    let sources = format!("other.key:/nowhere cluster.key:{}", key.display());
    mode(0o640);
    let e = direct.keys().err().unwrap_or_default();
    assert!(e.contains("readable by group or others (mode 640)"), "{e}");
    // Under LoadCredential= the copy is private whatever the source's mode:
    // the source named in SYNSHARE_CREDENTIAL_SOURCES is checked.
    let e = types::check_credential_source("cluster.key", Some(&sources)).unwrap_err();
    assert!(
        e.contains("mode 640") && e.contains("the source of credential cluster.key"),
        "{e}"
    );
    mode(0o600);
    assert!(direct.keys().is_ok());
    assert!(types::check_credential_source("cluster.key", Some(&sources)).is_ok());
    // A source that is not named is not known; one named but missing is an error.
    assert!(types::check_credential_source("cluster.key", None).is_ok());
    assert!(types::check_credential_source("other.key", Some(&sources))
        .unwrap_err()
        .contains("/nowhere"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn existing_counter_files_pass() {
    // /proc/self/oom_score holds a number, as hwmon and powercap files do.
    let text = NODE.replacen(
        "cpu: none,",
        "cpu: none, temperature: (\"/proc/self/oom_score\", 70.0, 90.0), power: (\"/proc/self/oom_score\", 250.0),",
        1,
    );
    errors_of(Base::Node, &text).expect("valid");
    let text = NODE.replacen(
        "cpu: none,",
        "cpu: none, temperature: (\"/proc/self/stat\", 70.0, 90.0),",
        1,
    );
    let e = errors_of(Base::Node, &text).unwrap_err();
    assert!(e.to_string().contains("not a counter"), "{e}");
}

#[test]
fn port_rules_parse_with_their_defaults_and_reach_the_dataplane() {
    use synshare_dataplane::packet::Addr;
    use synshare_dataplane::rules::{Affinity, Kind};
    let text = NODE.replacen(
        "(addr: \"192.0.2.100\", tcp_ports: [80])",
        "(addr: \"192.0.2.100\", tcp_ports: [80, 443], udp_ports: [53], rules: [
            (ports: \"80\", affinity: client),
            (ports: \"8000-8099\", protocol: both, affinity: network),
            (ports: \"9000\", mode: single),
            (ports: \"443\"),
            (ports: \"53\", protocol: udp, mode: disabled),
        ])",
        1,
    );
    let c = NodeConfig::check_text(Path::new("node.ron"), &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let r = &c.vips[0].rules;
    assert_eq!(r.len(), 5);
    assert_eq!(
        (r[3].protocol, r[3].mode, r[3].affinity),
        (RuleProtocol::Tcp, RuleMode::Shared, RuleAffinity::None)
    );
    assert_eq!(r[1].range(), Ok((8000, 8099)));
    let vip = c.vips[0].dataplane();
    assert_eq!(vip.addr, Addr::V4([192, 0, 2, 100]));
    assert_eq!(vip.tcp_kind(80), Kind::Shared(Affinity::Client));
    assert_eq!(vip.tcp_kind(443), Kind::Shared(Affinity::None));
    assert_eq!(vip.tcp_kind(8042), Kind::Shared(Affinity::Network));
    assert_eq!(vip.udp_kind(8099), Kind::Shared(Affinity::Network));
    assert!(matches!(vip.tcp_kind(9000), Kind::Single(_)));
    assert_eq!(vip.udp_kind(9000), Kind::NotServed);
    assert_eq!(vip.udp_kind(53), Kind::Disabled);
    assert_eq!(vip.tcp_kind(81), Kind::NotServed);
    // No rules: every listed port shared with the 4-tuple, as before.
    let plain = NodeConfig::check_text(Path::new("node.ron"), NODE).unwrap().config;
    assert!(plain.vips[0].rules.is_empty());
    assert_eq!(plain.vips[0].dataplane().tcp_kind(80), Kind::Shared(Affinity::None));
}

#[test]
fn a_good_config_parses_with_defaults() {
    let c = NodeConfig::check_text(Path::new("node.ron"), NODE).unwrap().config;
    assert_eq!(c.sharing.buckets, 65536);
    assert_eq!(c.sharing.layout, Layout::Rendezvous);
    assert_eq!(c.cluster_mac, Mac([2, 0x5e, 0, 0, 1, 0]));
    assert_eq!(c.eal.hugepages, Hugepages::Auto);
    assert_eq!(c.eal.memory_mb, 256);
    assert_eq!((c.wire.rx_desc, c.wire.tx_desc, c.wire.rss), (1024, 1024, false));
    assert_eq!((c.idle.empty_polls, c.idle.sleep_us), (256, 100));
    assert_eq!(c.flow_table.capacity, 262_144);
    let a = &c.availability;
    assert_eq!((a.sample_ms, a.alpha, a.max_step), (250, 0.5, 0.25));
    let x = c.exchange.as_ref().unwrap();
    assert_eq!((x.key_id, x.segment, x.lease_ms), (0, 0, None));
    // The defaults of the sections whose every field has one.
    let d = ExchangeConfig::default();
    assert_eq!((d.interval_ms, d.timeout_ms, d.min_epoch_ms), (100, 400, 250));
    assert_eq!(d.hysteresis, 0.02);
    assert_eq!(d.bind, None);
    let f = FlowTableConfig::default();
    assert_eq!((f.half_open_ms, f.established_s, f.closing_ms), (5_000, 300, 10_000));
    assert_eq!(SharingConfig::default().drain_ms, 60_000);
    assert_eq!(
        (
            AvailabilityConfig::default().cpu_exponent,
            AvailabilityConfig::default().floor
        ),
        (1.0, 0.05)
    );
    assert_eq!(defaults::stop_drain_s(), 30);
}

/// Errors that serde finds carry their field and position too.
#[test]
fn parse_errors_name_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("\"02:5e:00:00:01:00\"", "\"02:5e:00:00:01\"", "cluster_mac"),
        ("id: 1,", "id: -1,", "id"),
        ("\"192.0.2.100\"", "\"192.0.2.300\"", "vips[0].addr"),
        ("sharing: (", "sharing: (layout: diagonal, ", "sharing.layout"),
        ("exception: (iface", "exception: (colour: 1, iface", "exception"),
        ("workers: 1", "workers: \"one\"", "workers"),
        (
            "tcp_ports: [80])",
            "tcp_ports: [80], rules: [(ports: \"80\", mode: sticky)])",
            "vips[0].rules[0].mode",
        ),
        (
            "tcp_ports: [80])",
            "tcp_ports: [80], rules: [(ports: \"80\", affinity: cookie)])",
            "vips[0].rules[0].affinity",
        ),
        (
            "tcp_ports: [80])",
            "tcp_ports: [80], rules: [(ports: \"80\", protocol: sctp)])",
            "vips[0].rules[0].protocol",
        ),
    ];
    for (from, to, field) in cases {
        let text = NODE.replacen(from, to, 1);
        let e = NodeConfig::check_text(Path::new("node.ron"), &text).expect_err(to);
        assert_eq!(e.0.len(), 1);
        let e = &e.0[0];
        assert!(
            e.field.as_deref().is_some_and(|f| f.starts_with(field)),
            "{to}: expected field {field}, got {e}"
        );
        assert!(e.position.is_some() && e.to_string().starts_with("node.ron:"), "{e}");
    }
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e = NodeConfig::check_text(Path::new("n.ron"), "(\n  name: \"x\",\n  id: 1\n  eal: ()\n)").unwrap_err();
    let (line, _) = e.0[0].position.expect("a position");
    assert!((3..=4).contains(&line), "{e}");
}

#[test]
fn a_missing_file_is_refused() {
    let e = NodeConfig::check(Path::new("/nonexistent/node.ron")).unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/node.ron: cannot read"), "{e}");
}

#[test]
fn implicit_some_and_explicit_some_both_parse() {
    let explicit = NODE.replacen("main_lcore: 0", "main_lcore: Some(0)", 1).replacen(
        "metrics: \"127.0.0.1:9901\"",
        "metrics: Some(\"127.0.0.1:9901\")",
        1,
    );
    let c = NodeConfig::check_text(Path::new("n.ron"), &explicit).unwrap().config;
    assert_eq!(c.eal.main_lcore, Some(0));
    assert_eq!(c.metrics.map(|m| m.port()), Some(9901));
}

#[test]
fn accepted_names_keep_the_default_socket_in_run_synshare() {
    for name in ["node1", "n.a-b_c", "x", "a..b"] {
        assert!(validate::plain_name(name).is_ok(), "{name}");
        let text = COORDINATOR.replacen("\"coordinator\"", &format!("{name:?}"), 1);
        let c = CoordinatorConfig::check_text(Path::new("c.ron"), &text).unwrap().config;
        let socket = crate::coordinator::socket_path(&c);
        assert_eq!(socket.parent(), Some(Path::new("/run/synshare")), "{name}");
        assert_eq!(
            socket.file_name().and_then(|f| f.to_str()),
            Some(&*format!("{name}.sock"))
        );
    }
    for name in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        ".hidden",
        "a b",
        "x\u{e9}",
        &"n".repeat(33),
    ] {
        assert!(validate::plain_name(name).is_err(), "{name:?}");
    }
}

#[test]
fn a_health_check_parses_with_its_defaults_and_service_probe_is_a_tcp_one() {
    let text = NODE.replace(
        "floor: 0.05)",
        r#"floor: 0.05, health_check: (probe: http(addr: "127.0.0.1:8080", path: "/healthz"), fall: 3))"#,
    );
    let c = NodeConfig::check_text(Path::new("node.ron"), &text).unwrap().config;
    assert_eq!(
        c.availability.health(),
        Some(HealthCheck {
            probe: Probe::Http {
                addr: "127.0.0.1:8080".parse().unwrap(),
                path: "/healthz".into(),
                status: 200,
                host: None,
            },
            timeout_ms: 200,
            rise: 2,
            fall: 3,
        })
    );
    let text = NODE.replace("floor: 0.05)", r#"floor: 0.05, service_probe: "127.0.0.1:80")"#);
    let c = NodeConfig::check_text(Path::new("node.ron"), &text).unwrap().config;
    let h = c.availability.health().unwrap();
    assert_eq!(
        (h.probe, h.rise, h.fall),
        (Probe::Tcp("127.0.0.1:80".parse().unwrap()), 1, 1)
    );
}

#[test]
fn the_shipped_configs_have_no_start_failure_of_their_own() {
    // configs/*.ron name hardware and key files of a production machine;
    // what they may be refused for here is only that.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for name in ["node.ron", "peer-node.ron", "two-segments.ron", "coordinator.ron"] {
        let path = root.join(name);
        let result = if name == "coordinator.ron" {
            CoordinatorConfig::check(&path).map(|c| c.warnings)
        } else {
            NodeConfig::check(&path).map(|c| c.warnings)
        };
        if let Err(e) = result {
            for err in &e.0 {
                let about_this_machine = err.message.contains("No such file")
                    || err.message.contains("not found")
                    || err.field.as_deref().is_some_and(|f| f.ends_with("key_file"));
                assert!(about_this_machine, "{name}: {err}");
            }
        }
    }
}

#[test]
fn the_exchange_binds_the_nodes_own_address_unless_told_otherwise() {
    let c = NodeConfig::check_text(Path::new("node.ron"), NODE).unwrap().config;
    let x = c.exchange.as_ref().unwrap();
    assert_eq!(x.bind, Some("0.0.0.0:7946".parse().unwrap()), "written: as written");
    let mut x = x.clone();
    x.bind = None;
    let own: Vec<std::net::IpAddr> = vec!["2001:db8::21".parse().unwrap(), "192.0.2.21".parse().unwrap()];
    // IPv4 members: the first own IPv4 address, port 7946.
    assert_eq!(x.bind_addr(&own).to_string(), "192.0.2.21:7946");
    // No own address: every address.
    assert_eq!(x.bind_addr(&[]).to_string(), "0.0.0.0:7946");
    // IPv6 members: the own IPv6 address.
    x.peers = [(2, "[2001:db8::22]:7946".parse().unwrap())].into();
    x.coordinator = None;
    assert_eq!(x.bind_addr(&own).to_string(), "[2001:db8::21]:7946");
    assert_eq!(x.bind_addr(&own[1..]).to_string(), "[::]:7946");
    // Not written: the node's own address, no warning; and without
    // exception.addresses, every address with a warning that says so.
    let warned = |text: &str| {
        let checked = NodeConfig::check_text(Path::new("node.ron"), text).unwrap();
        let bind = checked
            .config
            .exchange
            .as_ref()
            .unwrap()
            .bind_addr(&checked.config.exception.own_ips());
        let warned = checked
            .warnings
            .iter()
            .any(|w| w.to_string().contains("binds every address"));
        (bind.to_string(), warned)
    };
    let text = NODE.replace("bind: \"0.0.0.0:7946\",", "");
    assert_ne!(text, NODE);
    assert_eq!(warned(&text), ("192.0.2.21:7946".to_owned(), false));
    let text = text.replace("addresses: [\"192.0.2.21/24\"]", "addresses: []");
    assert_eq!(warned(&text), ("0.0.0.0:7946".to_owned(), true));
}

#[test]
fn a_joining_node_needs_no_peers_and_binds_in_the_family_of_its_join_address() {
    let text = NODE.replace(
        "peers: {2: \"192.0.2.22:7946\", 3: \"192.0.2.23:7946\"}",
        "peers: {}, join: \"[2001:db8::22]:7946\"",
    );
    assert_ne!(text, NODE);
    let c = NodeConfig::check_text(Path::new("node.ron"), &text).unwrap().config;
    let mut x = c.exchange.unwrap();
    assert_eq!(x.join, Some("[2001:db8::22]:7946".parse().unwrap()));
    assert!(x.peers.is_empty());
    x.bind = None;
    let own: Vec<std::net::IpAddr> = vec!["192.0.2.21".parse().unwrap(), "2001:db8::21".parse().unwrap()];
    assert_eq!(x.bind_addr(&own).to_string(), "[2001:db8::21]:7946");
}
