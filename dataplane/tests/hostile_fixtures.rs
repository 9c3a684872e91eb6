//! The hostile-traffic cases of `tests/hostile.py`, decided offline from
//! committed pcap fixtures: no namespaces, no root, no EAL.
//!
//! `tests/hostile.py pcap dataplane/tests/fixtures/hostile` writes one
//! classic pcap per case (the frames the case sends) and `expected.tsv`: the
//! counter one node of the test cluster must raise for the case's frames,
//! once holding every bucket (settled, as static shares hold them) and once
//! holding none. Here a node with the test cluster's addresses decides every
//! frame three ways, which must agree frame by frame (counter and rewritten
//! bytes): [`Classifier::from_wire`] (a worker's per-frame path), the case's
//! frames as one burst ([`Classifier::look`] at every frame, then
//! [`Classifier::decide`] each, as a worker does) and the full parser alone
//! ([`Classifier::from_wire_full`], the reference). Each case must raise its
//! counter exactly `count` times and no other counter at all.
//! `tests/fixtures_current.sh` checks that the fixtures are what
//! `hostile.py` writes today.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;
use synshare_dataplane::classify::FrameBuf as TestBuf;
use synshare_dataplane::classify::{Classifier, Context, Look, NodeAddresses, PacketBuf, Vip};
use synshare_dataplane::counters::Counter;
use synshare_dataplane::flow::{FlowTable, FlowTimeouts};
use synshare_dataplane::ownership::{BucketState, OwnershipView};
use synshare_dataplane::packet::{Addr, Mac};

/// The test cluster's node1 (scripts/cluster.sh): its wire MAC; its TAP
/// takes the same MAC (no `exception.mac` in the generated configuration).
const NODE1_MAC: Mac = Mac([0x02, 0x00, 0x00, 0x00, 0x00, 0x21]);
/// The test cluster's (unicast) cluster MAC.
const CLUSTER_MAC: Mac = Mac([0x02, 0x5e, 0x00, 0x00, 0x01, 0x00]);
/// 192.0.2.100 and 2001:db8::100, TCP 80 and UDP 53.
const VIP4: [u8; 4] = [192, 0, 2, 100];
const VIP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00];
/// The test cluster's bucket count and flow-table capacity.
const BUCKETS: u32 = 65536;
const FLOW_CAPACITY: usize = 65536;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

/// The frames of a classic pcap file (either byte order, micro- or
/// nanosecond timestamps), LINKTYPE_ETHERNET, every frame captured whole.
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let name = path.display();
    let b = fs::read(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(b.len() >= 24, "{name}: no pcap header");
    let le = match u32::from_le_bytes([b[0], b[1], b[2], b[3]]) {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => panic!("{name}: not a classic pcap file (magic {m:#010x})"),
    };
    let u32_at = |at: usize| {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    assert_eq!(u32_at(20), 1, "{name}: link type is not LINKTYPE_ETHERNET");
    let mut frames = Vec::new();
    let mut at = 24;
    while at < b.len() {
        assert!(at + 16 <= b.len(), "{name}: record header cut at byte {at}");
        let (captured, original) = (u32_at(at + 8) as usize, u32_at(at + 12) as usize);
        assert_eq!(
            captured,
            original,
            "{name}: frame {} cut by the snap length",
            frames.len()
        );
        let frame = b.get(at + 16..at + 16 + captured);
        frames.push(
            frame
                .unwrap_or_else(|| panic!("{name}: frame {} cut", frames.len()))
                .to_vec(),
        );
        at += 16 + captured;
    }
    frames
}

/// A row of expected.tsv.
struct Case {
    name: String,
    file: String,
    frames: usize,
    /// The counter the node raises holding every bucket, and holding none.
    owner: Counter,
    none: Counter,
    count: u64,
    ns_counter: Counter,
    ns_mode: String,
}

fn counter(name: &str) -> Counter {
    Counter::ALL
        .iter()
        .copied()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("expected.tsv: no counter named {name:?}"))
}

fn read_expected(path: &Path) -> Vec<Case> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("expected.tsv: no header").split('\t').collect();
    assert_eq!(
        header,
        [
            "case",
            "file",
            "frames",
            "owner",
            "none",
            "count",
            "ns_counter",
            "ns_mode"
        ],
        "expected.tsv: columns"
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), header.len(), "expected.tsv: {l:?}");
            Case {
                name: f[0].to_string(),
                file: f[1].to_string(),
                frames: f[2].parse().expect("frames"),
                owner: counter(f[3]),
                none: counter(f[4]),
                count: f[5].parse().expect("count"),
                ns_counter: counter(f[6]),
                ns_mode: f[7].to_string(),
            }
        })
        .collect()
}

/// How a node decides a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// `from_wire`, frame by frame.
    FromWire,
    /// The case's frames as one burst: `look` at all, then `decide` each.
    Burst,
    /// `from_wire_full`: the full parser only.
    Full,
}

/// One node of the test cluster, deciding frames one way.
struct Node {
    c: Classifier,
    view: OwnershipView,
    flows: FlowTable,
    way: Way,
}

impl Node {
    fn new(state: BucketState, way: Way) -> Self {
        let vips = [Addr::V4(VIP4), Addr::V6(VIP6)];
        Node {
            c: Classifier::new(NodeAddresses {
                node_mac: NODE1_MAC,
                kernel_mac: NODE1_MAC,
                cluster_mac: CLUSTER_MAC,
                vips: vips.iter().map(|&a| Vip::new(a, &[80], &[53])).collect(),
            }),
            view: OwnershipView::from_states(vec![state; BUCKETS as usize], 1).unwrap(),
            flows: FlowTable::new(FLOW_CAPACITY, FlowTimeouts::default()),
            way,
        }
    }

    /// Decides `frames` in order: each one's counter and bytes afterwards,
    /// and how many the look took on the fast path.
    fn decide(&mut self, frames: &[Vec<u8>]) -> (Vec<(Counter, Vec<u8>)>, usize) {
        let mut cx = Context {
            view: &self.view,
            flows: &mut self.flows,
            now_ms: 1000,
            rss: None,
        };
        let mut bufs: Vec<TestBuf> = frames.iter().map(|f| TestBuf::new(f)).collect();
        let mut fast = 0;
        let outcomes: Vec<Counter> = match self.way {
            Way::FromWire => bufs.iter_mut().map(|b| self.c.from_wire(b, &mut cx)).collect(),
            Way::Full => bufs.iter_mut().map(|b| self.c.from_wire_full(b, &mut cx)).collect(),
            Way::Burst => {
                cx.flows.follow(cx.view);
                let looks: Vec<Look> = bufs.iter().map(|b| self.c.look(b.bytes(), None, cx.flows)).collect();
                fast = looks.iter().filter(|l| l.is_fast()).count();
                bufs.iter_mut()
                    .zip(looks)
                    .map(|(b, look)| self.c.decide(b, look, &mut cx))
                    .collect()
            }
        };
        let decided = outcomes
            .into_iter()
            .zip(bufs)
            .map(|(c, b)| (c, b.bytes().to_vec()))
            .collect();
        (decided, fast)
    }
}

#[test]
fn hostile_cases_from_pcap_fixtures() {
    let started = Instant::now();
    let dir = fixtures();
    let cases = read_expected(&dir.join("expected.tsv"));
    assert!(cases.len() >= 40, "only {} cases in expected.tsv", cases.len());

    // Every pcap in the directory is a case of expected.tsv, and back.
    let listed: BTreeSet<&str> = cases.iter().map(|c| c.file.as_str()).collect();
    assert_eq!(listed.len(), cases.len(), "expected.tsv names a file twice");
    let present: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".pcap"))
        .collect();
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    assert_eq!(listed, present, "the pcap files and the cases of expected.tsv");

    let states = [("owner", BucketState::Settled), ("none", BucketState::Foreign)];
    let paths = [Way::FromWire, Way::Burst, Way::Full];
    // One node per state and path, as one running node sees the cases one
    // after another (flows a case leaves behind stay for the next).
    let mut nodes: Vec<Vec<Node>> = states
        .iter()
        .map(|&(_, s)| paths.iter().map(|&p| Node::new(s, p)).collect())
        .collect();

    let mut failures = Vec::new();
    let (mut total_frames, mut fast_frames) = (0, 0);
    for case in &cases {
        let frames = read_pcap(&dir.join(&case.file));
        total_frames += frames.len();
        if frames.len() != case.frames {
            failures.push(format!(
                "{}: {} frames in {}, expected {}",
                case.name,
                frames.len(),
                case.file,
                case.frames
            ));
        }
        // What the expectations say about the namespace test's judgement:
        // "each" and "absent" cases do not depend on who owns the bucket;
        // in a "sum" case only the owner counts the case's counter.
        let consistent = match case.ns_mode.as_str() {
            "each" => case.owner == case.none,
            // Never reaches a node of the test cluster (af_packet reassembles).
            "absent" => true,
            "sum" => case.owner == case.ns_counter && case.none != case.ns_counter,
            _ => false,
        };
        if !consistent {
            failures.push(format!(
                "{}: mode {} with owner {} and none {}",
                case.name,
                case.ns_mode,
                case.owner.name(),
                case.none.name()
            ));
        }
        for (s, &(state, _)) in states.iter().enumerate() {
            let expected = if state == "owner" { case.owner } else { case.none };
            let decided: Vec<_> = nodes[s].iter_mut().map(|n| n.decide(&frames)).collect();
            if s == 0 {
                fast_frames += decided[1].1;
            }
            // The three paths agree frame by frame, bytes included; but a
            // frame of a closed bucket is dropped before it is validated
            // (as another node's), where the full parser alone names what
            // is wrong with it: a drop either way.
            for (k, (outcome, bytes)) in decided[0].0.iter().enumerate() {
                for (p, d) in decided.iter().enumerate().skip(1) {
                    let unvalidated = paths[p] == Way::Full
                        && matches!(
                            outcome,
                            Counter::DropNotOwner | Counter::DropSynNotOwner | Counter::DropTcpBadFlags
                        )
                        && d.0[k].0.action() == synshare_dataplane::classify::Action::Drop;
                    if (d.0[k].0 != *outcome && !unvalidated) || d.0[k].1 != *bytes {
                        failures.push(format!(
                            "{} ({state}), frame {k}: {:?} gives {}, {:?} gives {}",
                            case.name,
                            paths[0],
                            outcome.name(),
                            paths[p],
                            d.0[k].0.name()
                        ));
                    }
                }
            }
            // Exactly `count` in the expected counter, nothing anywhere else.
            let mut tally: BTreeMap<&str, u64> = BTreeMap::new();
            for (outcome, _) in &decided[0].0 {
                *tally.entry(outcome.name()).or_default() += 1;
            }
            let want = BTreeMap::from([(expected.name(), case.count)]);
            if tally != want {
                failures.push(format!("{} ({state}): counted {tally:?}, expected {want:?}", case.name));
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "hostile fixtures: {} cases, {} frames ({} on the fast path), each decided by 2 nodes x 3 paths in {:.1} ms",
        cases.len(),
        total_frames,
        fast_frames,
        elapsed.as_secs_f64() * 1000.0
    );
    assert!(
        failures.is_empty(),
        "{} mismatches (a decision changed, or the fixtures are stale: tests/hostile.py pcap {}):\n  {}",
        failures.len(),
        dir.display(),
        failures.join("\n  ")
    );
}
