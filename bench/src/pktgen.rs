//! `synshare-bench pktgen`: writes a pcap file of synthetic traffic to the
//! VIPs, for `synshare-bench bench` and `dpdk-testpmd` to replay from memory.
//!
//! Flow `i` is a TCP connection from a client to a VIP on port 80. Clients
//! come from documentation ranges only: IPv4 198.51.100.0/24 and
//! 203.0.113.0/24 (512 addresses, `i % 512`) with port `1024 + i / 512`;
//! IPv6 2001:db8:c::/64 with the flow number in the interface id. Whether a
//! flow is IPv6 is a hash of the seed and `i`, so the share is exact only
//! on average.
//!
//! Every flow appears in the file; by default exactly once (the flow
//! table's working set is the number of flows, visited in a shuffled
//! order). Each VIP frame's TCP flags are drawn from the mix; each frame's
//! size from the size model. An exact share of frames, spread evenly, is
//! other traffic: TCP to
//! the node's own address (goes up to the kernel) and to another node's
//! MAC (dropped), ARP requests and neighbour solicitations for the VIPs
//! (answered in place).
//!
//! Frame sizes are Ethernet frame sizes with the 4-byte FCS, as RFC 2544
//! and FD.io CSIT count them; the pcap holds the frame without its FCS. A
//! TCP/IPv6 frame is at least 78 bytes, so "64-byte" IPv6 frames are 78.
//! IMIX is CSIT's: 64, 570 and 1518 bytes in the ratio 7:4:1.

use crate::opts::{Opts, PROGRAM};
use crate::pcap::PcapWriter;
use std::fs::File;
use std::io::{BufWriter, Write};
use synshare_dataplane::packet::{tcp_flags, Mac};
use synshare_dataplane::synth::{
    arp_request, neighbour_solicit, tcp4_sized_to, tcp6_sized_to, CLIENT_MAC, CLUSTER_MAC, NODE_MAC, V4_VIP, V6_CLIENT,
    V6_VIP,
};

/// The VIPs' TCP port in generated traffic.
pub const VIP_PORT: u16 = 80;
/// The most flows `pktgen` generates: distinct IPv4 client tuples.
pub const MAX_FLOWS: u64 = 512 * (65536 - 1024);
/// The node's own IPv4 address in generated non-VIP traffic.
const NODE_V4: [u8; 4] = [192, 0, 2, 21];
/// Another node's MAC, for unicast the switch floods to every node.
const OTHER_NODE_MAC: Mac = Mac([0x02, 0x00, 0x00, 0x00, 0x00, 0x22]);

pub const HELP: &str = "\
synshare-bench pktgen --out FILE.pcap [options]

Writes a classic libpcap file of synthetic traffic to the VIPs 192.0.2.100
and 2001:db8::100, port 80, at the cluster MAC 02:5e:00:00:01:00, for
`synshare-bench bench` and dpdk-testpmd (net_pcap, infinite_rx=1).

Options:
  --flows N          TCP connections (default 1000000; at most 33022976)
  --packets N        frames in the file (default: every flow exactly once,
                     plus the other traffic); flows are visited in a
                     shuffled order, again and again
  --mix SPEC         TCP flags of VIP frames, relative weights:
                     syn=5,data=60,ack=30,fin=3,rst=2 (the default);
                     data is PSH+ACK, ack is a bare ACK
  --ipv6 PCT         share of IPv6 flows, percent (default 20)
  --size 64|imix|N   frame size with FCS: 64 (default), CSIT IMIX
                     (64/570/1518 bytes in 7:4:1), or a fixed N (64..1518)
  --other PCT        share of non-VIP TCP frames, percent (default 5):
                     half to the node's own MAC and address, half to
                     another node's MAC
  --arp-ndp PCT      share of ARP requests and neighbour solicitations
                     for the VIPs, percent (default 1)
  --seed N           seed of the shuffles and draws (default 1)
";

/// Kinds of VIP frames, by TCP flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Syn,
    Data,
    Ack,
    Fin,
    Rst,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Syn, Kind::Data, Kind::Ack, Kind::Fin, Kind::Rst];

    fn name(self) -> &'static str {
        match self {
            Kind::Syn => "syn",
            Kind::Data => "data",
            Kind::Ack => "ack",
            Kind::Fin => "fin",
            Kind::Rst => "rst",
        }
    }

    fn flags(self) -> u8 {
        use tcp_flags::{ACK, FIN, RST, SYN};
        const PSH: u8 = 0x08;
        match self {
            Kind::Syn => SYN,
            Kind::Data => PSH | ACK,
            Kind::Ack => ACK,
            Kind::Fin => FIN | ACK,
            Kind::Rst => RST | ACK,
        }
    }
}

/// Frame sizes (with FCS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Every frame this size, or the smallest its headers allow.
    Fixed(usize),
    /// FD.io CSIT IMIX: 64, 570, 1518 in 7:4:1.
    Imix,
}

impl Size {
    fn parse(text: &str) -> Result<Size, String> {
        if text.eq_ignore_ascii_case("imix") {
            return Ok(Size::Imix);
        }
        match text.parse::<usize>() {
            Ok(n) if (64..=1518).contains(&n) => Ok(Size::Fixed(n)),
            _ => Err(format!("--size {text:?}: 64..1518 or imix")),
        }
    }

    /// A size with FCS for one frame.
    fn draw(self, rng: &mut Rng) -> usize {
        match self {
            Size::Fixed(n) => n,
            Size::Imix => match rng.below(12) {
                0..=6 => 64,
                7..=10 => 570,
                _ => 1518,
            },
        }
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    pub flows: u64,
    pub packets: Option<u64>,
    pub mix: [u32; 5],
    pub ipv6_pct: f64,
    pub size: Size,
    pub other_pct: f64,
    pub arp_ndp_pct: f64,
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            flows: 1_000_000,
            packets: None,
            mix: [5, 60, 30, 3, 2],
            ipv6_pct: 20.0,
            size: Size::Fixed(64),
            other_pct: 5.0,
            arp_ndp_pct: 1.0,
            seed: 1,
        }
    }
}

fn parse_mix(text: &str) -> Result<[u32; 5], String> {
    let mut mix = [0u32; 5];
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("--mix: {part:?} is not NAME=WEIGHT"))?;
        let i = Kind::ALL
            .iter()
            .position(|k| k.name() == name.trim())
            .ok_or_else(|| format!("--mix: unknown kind {name:?} (syn, data, ack, fin, rst)"))?;
        mix[i] = weight
            .trim()
            .parse()
            .map_err(|_| format!("--mix: weight {weight:?} of {name} is not a whole number"))?;
    }
    if mix.iter().all(|&w| w == 0) {
        return Err("--mix: at least one weight must be positive".into());
    }
    Ok(mix)
}

fn percent(opts: &Opts, name: &str, default: f64) -> Result<f64, String> {
    let v: f64 = opts.num(name, default)?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("{name} {v}: a percentage from 0 to 100"));
    }
    Ok(v)
}

impl Spec {
    /// The spec the command line asks for.
    pub fn from_opts(opts: &Opts) -> Result<Spec, String> {
        let d = Spec::default();
        let flows: u64 = opts.num("--flows", d.flows)?;
        if flows == 0 || flows > MAX_FLOWS {
            return Err(format!("--flows {flows}: from 1 to {MAX_FLOWS}"));
        }
        let packets = match opts.get("--packets") {
            None => None,
            Some(_) => {
                let p: u64 = opts.num("--packets", 0)?;
                if p == 0 || p > 100_000_000 {
                    return Err(format!("--packets {p}: from 1 to 100000000"));
                }
                Some(p)
            }
        };
        let spec = Spec {
            flows,
            packets,
            mix: opts.get("--mix").map(parse_mix).transpose()?.unwrap_or(d.mix),
            ipv6_pct: percent(opts, "--ipv6", d.ipv6_pct)?,
            size: opts.get("--size").map(Size::parse).transpose()?.unwrap_or(d.size),
            other_pct: percent(opts, "--other", d.other_pct)?,
            arp_ndp_pct: percent(opts, "--arp-ndp", d.arp_ndp_pct)?,
            seed: opts.num("--seed", d.seed)?,
        };
        if spec.other_pct + spec.arp_ndp_pct >= 100.0 {
            return Err("--other plus --arp-ndp must stay below 100 percent".into());
        }
        Ok(spec)
    }

    /// Frames in the file: as asked, or enough for every flow to appear
    /// once beside the other traffic.
    pub fn packet_count(&self) -> u64 {
        self.packets.unwrap_or_else(|| {
            let vip_share = 1.0 - (self.other_pct + self.arp_ndp_pct) / 100.0;
            (self.flows as f64 / vip_share).ceil() as u64
        })
    }
}

/// splitmix64.
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A seeded generator (splitmix64 stream).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// A client of flow `i`: (IPv6?, IPv4 address, IPv6 address, port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    pub v6: bool,
    pub v4: [u8; 4],
    pub v6_addr: [u8; 16],
    pub port: u16,
}

/// The client of flow `i` (i < [`MAX_FLOWS`]).
pub fn client(spec_seed: u64, ipv6_pct: f64, i: u64) -> Client {
    let j = (i % 512) as u8;
    let v4 = if i % 512 < 256 {
        [198, 51, 100, j]
    } else {
        [203, 0, 113, j]
    };
    let port = (1024 + (i / 512) % (65536 - 1024)) as u16;
    // 2001:db8:c::/64 with the flow number in the interface id.
    let mut v6_addr = V6_CLIENT;
    v6_addr[4] = 0;
    v6_addr[5] = 0x0c;
    v6_addr[8..16].copy_from_slice(&(i + 1).to_be_bytes());
    let draw = (mix64(spec_seed ^ 0x6970_7636 ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d)) >> 11) as f64;
    let v6 = draw / (1u64 << 53) as f64 * 100.0 < ipv6_pct;
    Client { v6, v4, v6_addr, port }
}

/// What `generate` wrote.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub packets: u64,
    pub bytes: u64,
    pub by_kind: [u64; 5],
    pub ipv6: u64,
    pub other: u64,
    pub arp_ndp: u64,
    pub by_size: Vec<(usize, u64)>,
}

/// Writes `spec`'s traffic to `out`.
pub fn generate<W: Write>(spec: &Spec, out: W) -> Result<Summary, String> {
    let mut rng = Rng::new(spec.seed);
    let mut w = PcapWriter::new(out).map_err(|e| e.to_string())?;
    let mix_total: u64 = spec.mix.iter().map(|&x| u64::from(x)).sum();
    // The order flows are visited in: a shuffle of 0..flows.
    let mut order: Vec<u32> = (0..spec.flows as u32).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut s = Summary::default();
    let mut next_flow = 0usize;
    let (mut arp_ndp_n, mut other_n) = (0u64, 0u64);
    // Exact shares, spread evenly: an accumulator per kind of other traffic.
    let (mut acc_arp, mut acc_other) = (0.0f64, 0.0f64);
    for _ in 0..spec.packet_count() {
        let with_fcs = spec.size.draw(&mut rng);
        let len = with_fcs - 4;
        acc_arp += spec.arp_ndp_pct / 100.0;
        acc_other += spec.other_pct / 100.0;
        let frame = if acc_arp >= 1.0 {
            acc_arp -= 1.0;
            s.arp_ndp += 1;
            arp_ndp_n += 1;
            if arp_ndp_n.is_multiple_of(2) {
                arp_request(CLIENT_MAC, [198, 51, 100, (arp_ndp_n % 256) as u8], V4_VIP)
            } else {
                let mut src = V6_CLIENT;
                src[15] = (arp_ndp_n % 256) as u8;
                neighbour_solicit(CLIENT_MAC, src, V6_VIP, true)
            }
        } else if acc_other >= 1.0 {
            acc_other -= 1.0;
            s.other += 1;
            other_n += 1;
            let port = 1024 + (other_n % 60000) as u16;
            let dst_mac = if other_n.is_multiple_of(2) {
                NODE_MAC
            } else {
                OTHER_NODE_MAC
            };
            tcp4_sized_to(dst_mac, [198, 51, 100, 7], port, NODE_V4, 22, tcp_flags::ACK, len)
        } else {
            let i = u64::from(order[next_flow]);
            next_flow += 1;
            if next_flow == order.len() {
                next_flow = 0;
            }
            let c = client(spec.seed, spec.ipv6_pct, i);
            let mut pick = rng.below(mix_total);
            let mut kind = Kind::Data;
            for (k, &weight) in Kind::ALL.iter().zip(spec.mix.iter()) {
                if pick < u64::from(weight) {
                    kind = *k;
                    break;
                }
                pick -= u64::from(weight);
            }
            s.by_kind[kind as usize] += 1;
            if c.v6 {
                s.ipv6 += 1;
                tcp6_sized_to(CLUSTER_MAC, c.v6_addr, c.port, V6_VIP, VIP_PORT, kind.flags(), len)
            } else {
                tcp4_sized_to(CLUSTER_MAC, c.v4, c.port, V4_VIP, VIP_PORT, kind.flags(), len)
            }
        };
        let on_wire = frame.len() + 4;
        match s.by_size.iter_mut().find(|(size, _)| *size == on_wire) {
            Some((_, n)) => *n += 1,
            None => s.by_size.push((on_wire, 1)),
        }
        s.packets += 1;
        s.bytes += on_wire as u64;
        w.frame(&frame).map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())?;
    s.by_size.sort_unstable();
    Ok(s)
}

/// `synshare-bench pktgen`.
pub fn run(args: &[String]) -> Result<(), String> {
    let opts = Opts::parse(
        "pktgen",
        args,
        &[
            "--out",
            "--flows",
            "--packets",
            "--mix",
            "--ipv6",
            "--size",
            "--other",
            "--arp-ndp",
            "--seed",
        ],
        &[],
    )?;
    let out = opts
        .get("--out")
        .ok_or_else(|| format!("{PROGRAM} pktgen: --out FILE.pcap is required"))?;
    let spec = Spec::from_opts(&opts)?;
    let file = File::create(out).map_err(|e| format!("{out}: {e}"))?;
    let s = generate(&spec, BufWriter::with_capacity(1 << 20, file))?;
    let vip: u64 = s.by_kind.iter().sum();
    let kinds: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), s.by_kind[*k as usize]))
        .collect();
    let sizes: Vec<String> = s.by_size.iter().map(|(b, n)| format!("{b}B x{n}")).collect();
    println!(
        "pktgen: wrote {out}: {} frames, {} flows, {:.1} bytes/frame with FCS",
        s.packets,
        spec.flows,
        s.bytes as f64 / s.packets.max(1) as f64
    );
    println!(
        "pktgen: VIP TCP {vip} ({}; IPv6 {}), other {}, ARP/NDP {}",
        kinds.join(", "),
        s.ipv6,
        s.other,
        s.arp_ndp
    );
    println!("pktgen: sizes {}", sizes.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::for_each_frame;
    use synshare_dataplane::packet::{self, Payload, L4};

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn writes_a_pcap_that_reads_back_with_every_flow() {
        let spec = Spec {
            flows: 1000,
            size: Size::Imix,
            ..Spec::default()
        };
        let mut bytes = Vec::new();
        let s = generate(&spec, &mut bytes).expect("generate");
        assert_eq!(s.packets, spec.packet_count());
        let path = std::env::temp_dir().join(format!("ss-pktgen-test-{}.pcap", std::process::id()));
        std::fs::write(&path, &bytes).expect("write");
        let mut flows = std::collections::HashSet::new();
        let mut sizes = std::collections::HashSet::new();
        let n = for_each_frame(&path, |f| {
            sizes.insert(f.len() + 4);
            let frame = packet::parse(f).expect("every frame parses");
            if let Payload::Ipv4(ip) | Payload::Ipv6(ip) = frame.payload {
                if let L4::Tcp {
                    src_port, dst_port: 80, ..
                } = ip.l4
                {
                    flows.insert((ip.src, src_port));
                }
            }
        })
        .expect("read back");
        let _ = std::fs::remove_file(&path);
        assert_eq!(n, s.packets);
        // Both kinds of address resolution, both kinds of non-VIP frames.
        assert!(
            sizes.contains(&64) && sizes.contains(&90),
            "ARP (64 B) and NDP (90 B): {sizes:?}"
        );
        assert!(s.other > 0 && s.arp_ndp > 0);
        assert_eq!(flows.len(), 1000, "every flow appears");
        assert!(
            sizes.contains(&64) && sizes.contains(&570) && sizes.contains(&1518),
            "{sizes:?}"
        );
    }

    #[test]
    fn flows_are_distinct_and_in_documentation_ranges() {
        let mut seen = std::collections::HashSet::new();
        for i in (0..2_000_000u64).step_by(7) {
            let c = client(1, 0.0, i);
            assert!(c.v4[0..3] == [198, 51, 100] || c.v4[0..3] == [203, 0, 113]);
            assert!(seen.insert((c.v4, c.port)), "flow {i} repeats");
        }
        let c = client(1, 100.0, 5);
        assert!(c.v6);
        assert_eq!(&c.v6_addr[0..4], &[0x20, 0x01, 0x0d, 0xb8]);
    }

    #[test]
    fn bad_options_are_refused_clearly() {
        let parse = |a: &[&str]| Opts::parse("pktgen", &args(a), &["--flows", "--mix", "--size", "--ipv6"], &[]);
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--flows"]).is_err());
        let o = parse(&["--flows", "abc"]).expect("parses");
        assert!(Spec::from_opts(&o).is_err());
        let o = parse(&["--flows", "0"]).expect("parses");
        assert!(Spec::from_opts(&o).is_err());
        let o = parse(&["--mix", "syn=1,bogus=2"]).expect("parses");
        assert!(Spec::from_opts(&o).is_err());
        let o = parse(&["--size", "9000"]).expect("parses");
        assert!(Spec::from_opts(&o).is_err());
        let o = parse(&["--ipv6", "101"]).expect("parses");
        assert!(Spec::from_opts(&o).is_err());
        let o = parse(&["--flows", "1_000", "--mix", "syn=1", "--size", "imix"]).expect("parses");
        let s = Spec::from_opts(&o).expect("valid");
        assert_eq!(s.flows, 1000);
        assert_eq!(s.mix, [1, 0, 0, 0, 0]);
        assert_eq!(s.size, Size::Imix);
    }
}
