//! The command line: what `synshare` accepts, declared once with clap's
//! derive, from which the parser, `--help` of every command, the shell
//! completions and the man pages all come.

pub mod nodes;
pub mod out;
pub mod watch;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const ABOUT: &str = "Load balancing without a load balancer: every server of a cluster sees every \
packet for a shared virtual IP and accepts the connections whose hash falls in its own share";

const EXIT_CODES: &str = "\
Exit status: 0 on success; 78 (EX_CONFIG) when a configuration is refused; 2 on a usage error; \
1 on any other failure.";

/// synshare's command line.
#[derive(Debug, Parser)]
#[command(
    name = "synshare",
    version,
    about = ABOUT,
    after_help = EXIT_CODES,
    propagate_version = true,
    arg_required_else_help = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Format of the log lines on stderr (node and coordinator). Colours
    /// only on a terminal and without NO_COLOR; SYNSHARE_LOG sets the
    /// level (e.g. SYNSHARE_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (for journald's or a collector's parsers).
    Json,
}

/// Which running node (or coordinator) to talk to.
#[derive(Clone, Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Its configuration file (the status socket is read from it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Its status socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node (DPDK dataplane and control core) until SIGINT or SIGTERM
    #[command(long_about = "\
Run a node (DPDK dataplane and control core).

The configuration names EAL's lcores and memory, the wire port (a PCI address or a DPDK vdev), \
the TAP exception port, the VIPs, the cluster MAC and the members or the exchange. It is \
checked as check-config checks it before anything starts; a refused configuration exits 78.

SIGTERM drains (with an exchange: the others take new connections at once) and stops once the \
known flows end or stop_drain_s passes; SIGINT, or a second SIGTERM, stops at once. SIGHUP \
reloads what can change while it runs (availability: capacity, health check and formula; \
metrics; log_level; the exchange keys) and names in a warning each other edited field, which \
takes effect after a restart. See configs/ for commented examples.")]
    Node {
        /// The node's configuration.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run a coordinator: the nodes report to it, it computes the table
    #[command(long_about = "\
Run a coordinator (member 0): the nodes report their availability to it; it computes the bucket \
table and leads while it runs. In peer mode the same process is the witness a two-node cluster \
needs. See configs/coordinator.ron.")]
    Coordinator {
        /// The coordinator's configuration.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a node's (or a coordinator's) configuration and exit
    #[command(long_about = "\
Check a node's (or, with --coordinator, a coordinator's) configuration without starting \
anything: what a start would refuse, and what the node would read on this machine (key files, \
cgroup, hwmon and powercap paths).

Each problem is printed as FILE:LINE:COLUMN: field `PATH`: what is wrong. Warnings (legal but \
likely wrong, or about this machine rather than the one it runs on) are printed and do not \
fail. Exit 0 when valid, 78 (EX_CONFIG) when not.")]
    CheckConfig {
        /// The file is a coordinator's configuration.
        #[arg(long)]
        coordinator: bool,
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show a running node's shares, peers and counters
    #[command(long_about = "\
Ask a running node, over its local Unix socket, for its members and shares, table epoch, \
exchange and peers, availability, port and worker counters and flow-table fill. On a \
coordinator's socket: the exchange's state.

With --watch the status is shown again every --interval seconds with rates: packets per second \
of each port and frames per second of each outcome counter, from the counters' differences \
(with --json: one JSON object per line, {\"status\": ..., \"rates\": ...}).")]
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Show it again every --interval seconds, with rates.
        #[arg(long)]
        watch: bool,
        /// Seconds between two updates.
        #[arg(long, value_name = "S", default_value_t = 1.0, requires = "watch", value_parser = positive_seconds)]
        interval: f64,
        /// Stop after this many updates (default: until interrupted).
        #[arg(long, value_name = "N", requires = "watch")]
        count: Option<u64>,
    },
    /// List the cluster's members as a running node sees them, one per line
    #[command(long_about = "\
List the cluster's members as a running node (or coordinator) sees them: one line per member \
and segment with its role, whether it is live, its weight, the buckets the table gives it and \
its share, and when it was last heard.")]
    Nodes {
        #[command(flatten)]
        target: Target,
        /// Print JSON (an array of members).
        #[arg(long)]
        json: bool,
    },
    /// List, add or remove the members of the cluster's directory
    #[command(long_about = "\
The member directory is state agreed by the cluster, not configuration: the configurations only \
bootstrap it. Without an action, list it as this node knows it (id, exchange address, weight \
factor, role, live, buckets held). `members add ID ADDRESS` asks the cluster (through any member: \
it forwards to the leader) to add a member, which enters as a learner and becomes a voter once \
caught up; start that node with `exchange.join` set to any member's address and no peers. \
`members remove ID` makes it leave: its buckets move to the others by the normal hand-off, and it \
leaves the directory once it holds no bucket and serves no connection (it can then be stopped). \
One change at a time; the command waits until the directory shows it, or exits 1.")]
    Members {
        /// add or remove (none: list).
        #[arg(value_enum, value_name = "ACTION")]
        action: Option<MembersAction>,
        /// The member's id.
        #[arg(value_name = "ID", required_if_eq_any = [("action", "add"), ("action", "remove")])]
        id: Option<u32>,
        /// Its exchange address (add).
        #[arg(value_name = "ADDRESS", required_if_eq("action", "add"))]
        address: Option<std::net::SocketAddr>,
        /// A factor on the weight it advertises, 0 to 1000 (add; default 1).
        #[arg(long, value_name = "W", value_parser = member_weight)]
        weight: Option<f64>,
        /// The segment (index on the node; default the first).
        #[arg(long, value_name = "N")]
        segment: Option<usize>,
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop taking new connections; keep serving the ones held
    #[command(long_about = "\
A draining node advertises weight 0: the cluster's next table gives it no buckets, so it takes \
no new connections; it keeps serving the ones it has. With --wait, wait until it holds no bucket \
on any segment and its flow tables are empty (it can then be stopped without breaking a \
connection), or exit 1 after --timeout seconds.")]
    Drain {
        #[command(flatten)]
        target: Target,
        /// Print the node's answer as JSON.
        #[arg(long)]
        json: bool,
        /// Wait until no bucket is held and no flow is left.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds (exit 1).
        #[arg(long, value_name = "S", default_value_t = 300.0, requires = "wait", value_parser = positive_seconds)]
        timeout: f64,
    },
    /// Take new connections again after a drain
    Undrain {
        #[command(flatten)]
        target: Target,
        /// Print the node's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change the node's configured capacity weight while it runs
    #[command(long_about = "\
Set the node's configured capacity weight while it runs (SIGHUP reloads availability.capacity \
from the configuration file instead).")]
    Capacity {
        /// The new weight, from 0 to 1000000 (relative to the other members).
        #[arg(value_name = "WEIGHT", value_parser = capacity_weight)]
        weight: f64,
        #[command(flatten)]
        target: Target,
        /// Print the node's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a new cluster key file (mode 600) for the exchange
    #[command(long_about = "\
Write a new key file for the exchange: one line `ID SECRET`, the secret 32 random bytes from the \
kernel as 64 hex digits, the file mode 600 (owner read and write only), its directory created \
(mode 700) when missing. Refuses to replace an existing file unless --force is given.

Copy the same file to every member (e.g. scp -p), then point exchange.key_file at it. The \
shipped unit gives /etc/synshare/cluster.key to the node as a systemd credential. To rotate, add \
a line with a new id to every member's file, reload, then remove the old line.")]
    Keygen {
        /// Where to write the key file.
        #[arg(value_name = "PATH", default_value = "/etc/synshare/cluster.key")]
        path: PathBuf,
        /// The key id written before the secret (0 to 255).
        #[arg(long, value_name = "ID", default_value_t = 1)]
        id: u8,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the versions of synshare and of DPDK
    Version {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a shell completion script to stdout
    #[command(long_about = "\
Write a completion script for SHELL to stdout, e.g.
  synshare completions bash > /usr/share/bash-completion/completions/synshare
  synshare completions zsh > /usr/share/zsh/vendor-completions/_synshare
  synshare completions fish > /usr/share/fish/vendor_completions.d/synshare.fish")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write a man page (roff) to stdout
    #[command(long_about = "\
Write the man page of synshare, or of one COMMAND, as roff to stdout, e.g.
  synshare man > synshare.1
  synshare man node > synshare-node.1")]
    Man {
        /// A command's page instead of synshare's.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

/// What `synshare members` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MembersAction {
    /// Add a member.
    Add,
    /// Remove a member.
    Remove,
}

fn member_weight(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(w) if w.is_finite() && (0.0..=1000.0).contains(&w) => Ok(w),
        _ => Err(format!("{s}: a weight factor from 0 to 1000")),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?}: seconds, above 0 and at most 86400")),
    }
}

fn capacity_weight(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1_000_000.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: a number from 0 to 1000000")),
    }
}

/// The clap command, for completions and man pages.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "synshare", &mut buf);
    buf
}

/// The man page of synshare, or of its command `name`.
pub fn man_page(name: Option<&str>) -> Result<Vec<u8>, String> {
    let mut root = command();
    // Propagates the version and the global options to the commands.
    root.build();
    let page = match name {
        None => clap_mangen::Man::new(root),
        Some(n) => {
            let sub = root
                .get_subcommands()
                .find(|c| c.get_name() == n)
                .ok_or_else(|| {
                    let names: Vec<&str> = root.get_subcommands().map(|c| c.get_name()).collect();
                    format!("synshare man: no command {n:?} (commands: {})", names.join(", "))
                })?
                .clone()
                .name(format!("synshare-{n}"))
                .bin_name(format!("synshare {n}"));
            clap_mangen::Man::new(sub)
        }
    };
    let mut buf = Vec::new();
    page.render(&mut buf).map_err(|e| format!("man page: {e}"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("synshare").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn unknown_flags_and_misplaced_values_are_errors() {
        use clap::error::ErrorKind;
        assert_eq!(
            parse(&["node", "--confg", "x"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
        // Was read as the weight.
        assert!(parse(&["capacity", "--config", "f"]).is_err());
        assert!(
            parse(&["members", "add", "4", "--socket", "s"]).is_err(),
            "add needs an address"
        );
        assert!(
            parse(&["members", "remove", "--socket", "s"]).is_err(),
            "remove needs an id"
        );
        assert!(parse(&["members", "add", "4", "nowhere", "--socket", "s"]).is_err());
        assert!(parse(&[
            "members",
            "add",
            "4",
            "192.0.2.24:7946",
            "--weight",
            "-1",
            "--socket",
            "s"
        ])
        .is_err());
        assert!(parse(&["capacity", "-1", "--socket", "s"]).is_err());
        assert!(parse(&["status"]).is_err(), "a target is required");
        assert!(parse(&["status", "--config", "a", "--socket", "b"]).is_err());
        assert!(
            parse(&["status", "--socket", "s", "--interval", "2"]).is_err(),
            "--interval needs --watch"
        );
        assert!(
            parse(&["drain", "--socket", "s", "--timeout", "5"]).is_err(),
            "--timeout needs --wait"
        );
        assert!(parse(&["status", "--socket", "s", "--watch", "--interval", "0"]).is_err());
        assert!(parse(&["completions", "tcsh"]).is_err());
    }

    #[test]
    fn todays_invocations_still_parse() {
        for args in [
            &["node", "--config", "n.ron"][..],
            &["coordinator", "--config", "c.ron"],
            &["check-config", "n.ron"],
            &["check-config", "--coordinator", "c.ron"],
            &["status", "--socket", "/run/synshare/ss-node1.sock", "--json"],
            &["status", "--config", "n.ron"],
            &["drain", "--socket", "s"],
            &["undrain", "--config", "n.ron"],
            &["capacity", "3", "--socket", "s"],
            &["capacity", "2.5", "--config", "n.ron"],
            &["members", "--socket", "s"],
            &[
                "members",
                "add",
                "4",
                "192.0.2.24:7946",
                "--weight",
                "1.5",
                "--socket",
                "s",
            ],
            &["members", "remove", "4", "--config", "n.ron", "--json"],
            &["version"],
            &["nodes", "--socket", "s"],
            &["drain", "--socket", "s", "--wait", "--timeout", "30", "--json"],
            &[
                "status",
                "--socket",
                "s",
                "--watch",
                "--interval",
                "0.5",
                "--count",
                "3",
            ],
            &["--log-format", "json", "node", "--config", "n.ron"],
            &["node", "--config", "n.ron", "--log-format", "json"],
        ] {
            assert!(parse(args).is_ok(), "{args:?}: {:?}", parse(args).err());
        }
        // The benchmark tools are synshare-bench's, not the product's.
        for tool in ["pktgen", "bench"] {
            assert_eq!(
                parse(&[tool, "--help"]).unwrap_err().kind(),
                clap::error::ErrorKind::InvalidSubcommand,
                "{tool}"
            );
        }
    }

    #[test]
    fn help_of_a_command_is_its_own() {
        let e = parse(&["help", "node"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let text = e.to_string();
        assert!(
            text.contains("Usage: synshare node") && text.contains("--config <FILE>"),
            "{text}"
        );
        assert!(!text.contains("Commands:"), "{text}");
    }

    #[test]
    fn completions_and_man_pages_are_generated() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = String::from_utf8(completions(shell)).unwrap();
            assert!(
                script.contains("check-config") && script.contains("log-format"),
                "{shell}"
            );
        }
        let page = String::from_utf8(man_page(None).unwrap()).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH synshare"), "{page}");
        assert!(page.contains("check\\-config"), "{page}");
        let node = String::from_utf8(man_page(Some("node")).unwrap()).unwrap();
        assert!(node.contains(".TH synshare-node 1"), "{node}");
        assert!(node.contains("synshare\\-node \\- Run a node"), "{node}");
        assert!(node.contains("\\-\\-log\\-format"), "{node}");
        assert!(man_page(Some("nope")).is_err());
    }
}
