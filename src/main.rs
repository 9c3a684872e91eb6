//! `synshare`: load balancing with no load balancer.
//!
//! Commands: `node`, `check-config`, `status`, `version`. `--help` on each.

#![deny(unsafe_code)]

mod bench;
mod config;
mod coordinator;
mod exchange;
mod kernel_flows;
mod measure;
mod metrics;
mod node;
mod pktgen;
mod status;

use config::NodeConfig;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
synshare: every server of a cluster sees every packet for a shared virtual IP,
and accepts the connections whose hash falls in its own share.

Usage:
  synshare node --config FILE.ron      run a node (DPDK dataplane + control core)
  synshare check-config [--coordinator] FILE.ron
                                       validate a node (or coordinator) configuration and exit
  synshare status (--config FILE.ron | --socket PATH) [--json]
                                       show a running node's shares and counters
  synshare pktgen --out FILE.pcap [...] write synthetic VIP traffic as a pcap
  synshare bench --pcap FILE.pcap [...] benchmark the worker loop on one lcore
  synshare drain|undrain (--config FILE.ron | --socket PATH)
                                       stop / resume taking new connections
  synshare capacity WEIGHT (--config FILE.ron | --socket PATH)
                                       change the configured capacity weight
  synshare coordinator --config FILE.ron
                                       run a coordinator (coordinator mode)
  synshare version                     print versions
  synshare COMMAND --help              help on a command
";

fn help(cmd: &str) -> &'static str {
    match cmd {
        "node" => "synshare node --config FILE.ron\n\nRuns one node until SIGINT or SIGTERM. The configuration names EAL's\nlcores and memory, the wire port (a PCI address or a DPDK vdev), the TAP\nexception port, the VIPs, the cluster MAC and the members' weights.\nSee configs/ for commented examples.\n",
        "check-config" => "synshare check-config FILE.ron\n\nParses and validates a node configuration without starting anything.\nExit 0 when valid; otherwise prints file:line:column, the field and the\nproblem, and exits 1.\n",
        "drain" | "undrain" => "synshare drain|undrain (--config FILE.ron | --socket PATH)\n\nA draining node advertises weight 0: the cluster's next table gives it no\nbuckets, so it takes no new connections; it keeps serving the ones it has.\n`synshare status` shows its connections falling to zero.\n",
        "capacity" => "synshare capacity WEIGHT (--config FILE.ron | --socket PATH)\n\nSets the node's configured capacity weight while it runs (SIGHUP reloads\navailability.capacity from the configuration file instead).\n",
        "coordinator" => "synshare coordinator --config FILE.ron\n\nRuns a coordinator: the nodes report their availability to it, it computes\nthe bucket table and pushes it. See configs/coordinator.ron.\n",
        "status" => "synshare status (--config FILE.ron | --socket PATH) [--json]\n\nAsks a running node, over its local Unix socket, for its members and\nshares, table epoch, port and worker counters and flow-table fill.\n",
        "pktgen" => pktgen::HELP,
        "bench" => bench::HELP,
        _ => USAGE,
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SYNSHARE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Finds `--name VALUE` in `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn load(path: &str) -> Result<NodeConfig, String> {
    NodeConfig::load(&PathBuf::from(path)).map_err(|e| e.to_string())
}

fn run(args: &[String]) -> Result<(), String> {
    let Some(cmd) = args.first() else {
        return Err(USAGE.to_owned());
    };
    let rest = &args[1..];
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", help(cmd));
        return Ok(());
    }
    match cmd.as_str() {
        "node" => {
            let path = flag(rest, "--config").ok_or("synshare node: --config FILE is required")?;
            let config = load(&path)?;
            init_logging();
            node::run(config, &PathBuf::from(path))
        }
        "coordinator" => {
            let path = flag(rest, "--config").ok_or("synshare coordinator: --config FILE is required")?;
            let c = config::CoordinatorConfig::check(&PathBuf::from(&path))
                .map_err(|e| e.to_string())?
                .config;
            init_logging();
            coordinator::run(c)
        }
        "drain" | "undrain" | "capacity" => {
            let (request, rest) = if cmd == "capacity" {
                let v = rest.first().ok_or("synshare capacity: give the weight")?;
                (format!("capacity {v}"), &rest[1..])
            } else {
                (cmd.clone(), rest)
            };
            let socket = match (flag(rest, "--socket"), flag(rest, "--config")) {
                (Some(s), _) => PathBuf::from(s),
                (None, Some(c)) => node::socket_path(&load(&c)?),
                (None, None) => return Err(format!("synshare {cmd}: --config FILE or --socket PATH")),
            };
            let reply = status::request(&socket, &request)?;
            let v: serde_json::Value = serde_json::from_str(&reply).map_err(|e| format!("bad reply: {e}"))?;
            println!("{}", v["message"].as_str().unwrap_or(&reply));
            if v["ok"].as_bool() == Some(true) {
                Ok(())
            } else {
                Err(String::new())
            }
        }
        "check-config" if rest.first().map(String::as_str) == Some("--coordinator") => {
            let path = rest
                .get(1)
                .ok_or("synshare check-config --coordinator: name the file")?;
            let checked = config::CoordinatorConfig::check(&PathBuf::from(path)).map_err(|e| e.to_string())?;
            for w in &checked.warnings {
                eprintln!("warning: {w}");
            }
            let c = checked.config;
            println!(
                "{path}: valid: coordinator {}, {} node(s), {} buckets",
                c.name,
                c.exchange.peers.len(),
                c.buckets
            );
            Ok(())
        }
        "check-config" => {
            let path = rest.first().ok_or("synshare check-config: name the file")?;
            let checked = NodeConfig::check(&PathBuf::from(path)).map_err(|e| e.to_string())?;
            for w in &checked.warnings {
                eprintln!("warning: {w}");
            }
            let c = checked.config;
            println!(
                "{path}: valid: node {} (id {}), {} segment(s), {} VIP(s), {} member(s), {} buckets, layout {:?}, {}",
                c.name,
                c.id,
                1 + c.segments.len(),
                c.vips.len(),
                c.sharing.members.len(),
                c.sharing.buckets,
                c.sharing.layout,
                if c.exchange.is_some() {
                    "exchange"
                } else {
                    "static shares"
                }
            );
            Ok(())
        }
        "status" => {
            let socket = match (flag(rest, "--socket"), flag(rest, "--config")) {
                (Some(s), _) => PathBuf::from(s),
                (None, Some(c)) => node::socket_path(&load(&c)?),
                (None, None) => return Err("synshare status: --config FILE or --socket PATH".into()),
            };
            let json = rest.iter().any(|a| a == "--json");
            let reply = status::request(&socket, "status")?;
            // A coordinator answers with the exchange's state only.
            if let Ok(x) = serde_json::from_str::<exchange::ExchangeStatus>(&reply) {
                if json {
                    println!("{}", serde_json::to_string_pretty(&x).map_err(|e| e.to_string())?);
                } else {
                    print!("coordinator at {}\n{}", socket.display(), status::exchange_summary(&x));
                }
                return Ok(());
            }
            let s = status::query(&socket)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?);
            } else {
                print!("{}", status::summary(&s));
            }
            Ok(())
        }
        "pktgen" => pktgen::run(rest),
        "bench" => bench::run(rest),
        "version" | "--version" | "-V" => {
            println!(
                "synshare {} ({}), built against DPDK {}, running {}",
                env!("CARGO_PKG_VERSION"),
                env!("SYNSHARE_GIT"),
                env!("SYNSHARE_DPDK_BUILT"),
                synshare_dataplane::dpdk::version()
            );
            Ok(())
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
