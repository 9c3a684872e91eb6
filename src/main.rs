//! `synshare`: load balancing with no load balancer.
//!
//! The command line is declared in [`cli`]; this file runs its commands.
//! Exit status: 0, 78 (EX_CONFIG) for a refused configuration, 65
//! (EX_DATAERR) for a state file the member cannot start from, 2 for a
//! usage error (clap's), 1 for anything else.

#![deny(unsafe_code)]

mod cli;
mod config;
mod coordinator;
mod exchange;
mod health;
mod kernel_flows;
mod keygen;
mod logging;
mod measure;
mod membership;
mod node;
mod reload;
mod status;
#[cfg(test)]
mod unit_files;

use clap::Parser;
use cli::watch::{self, Reply};
use cli::{Cli, Command, LogFormat, Target};
use config::{CoordinatorConfig, NodeConfig};
use serde::Serialize;
use status::request::{Answer, MembersAction, Request};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Why a command failed, and so its exit status.
enum Failure {
    /// A configuration was refused: exit 78.
    Config(config::ConfigErrors),
    /// A saved state file the member cannot start from: exit 65.
    State(String),
    /// Anything else: exit 1 with this message (none: already said).
    Other(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Other(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Failure::Other(s.to_owned())
    }
}

impl From<config::ConfigErrors> for Failure {
    fn from(e: config::ConfigErrors) -> Self {
        Failure::Config(e)
    }
}

type Outcome = Result<(), Failure>;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SYNSHARE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours are for people at a terminal; the journal and files get none.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // The level can change later: `log_level` in a node's configuration, at
    // start and on SIGHUP.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Under systemd, each line starts with its priority for the journal.
    let journal = logging::stderr_is_journal();
    let text = tracing_subscriber::fmt::format().with_ansi(ansi && !journal);
    let json = tracing_subscriber::fmt::format().json().flatten_event(true);
    macro_rules! init {
        ($builder:expr) => {{
            let b = $builder.with_filter_reloading();
            logging::set_reload(b.reload_handle());
            let _ = b.try_init();
        }};
    }
    // A second call (none today) would keep the first subscriber.
    match (format, journal) {
        (LogFormat::Text, false) => init!(builder.event_format(text)),
        (LogFormat::Text, true) => init!(builder.event_format(logging::JournalPriority(text))),
        (LogFormat::Json, false) => init!(builder.json().with_ansi(false).flatten_event(true)),
        (LogFormat::Json, true) => init!(builder
            .json()
            .with_ansi(false)
            .event_format(logging::JournalPriority(json))),
    }
}

/// The status socket of the node or coordinator `target` names. A
/// configuration is only parsed for it, not validated: asking a running
/// node needs no access to its key file or cgroup.
fn socket(target: &Target) -> Result<PathBuf, Failure> {
    match (&target.socket, &target.config) {
        (Some(s), _) => Ok(s.clone()),
        (None, Some(c)) => match NodeConfig::read_unchecked(c) {
            Ok(n) => Ok(node::socket_path(&n)),
            Err(node_err) => match CoordinatorConfig::read_unchecked(c) {
                Ok(k) => Ok(coordinator::socket_path(&k)),
                Err(_) => Err(Failure::Config(node_err)),
            },
        },
        // clap requires one of the two.
        (None, None) => Err("--config FILE or --socket PATH".into()),
    }
}

/// Asks for the status: a node's or a coordinator's.
fn query(socket: &Path) -> Result<Reply, String> {
    let reply = status::client::request(socket, &Request::Status)?;
    // A coordinator answers with the exchange's state only.
    if let Ok(x) = serde_json::from_str::<exchange::ExchangeStatus>(&reply) {
        return Ok(Reply::Coordinator(Box::new(x)));
    }
    serde_json::from_str::<status::NodeStatus>(&reply)
        .map(|s| Reply::Node(Box::new(s)))
        .map_err(|e| {
            format!(
                "bad reply from {}: {e}: {}",
                socket.display(),
                reply.chars().take(200).collect::<String>()
            )
        })
}

fn show(socket: &Path, reply: &Reply) -> String {
    match reply {
        Reply::Node(s) => status::text::summary(s),
        Reply::Coordinator(x) => format!(
            "coordinator at {}\n{}",
            socket.display(),
            status::text::exchange_summary(x)
        ),
    }
}

fn reply_json(reply: &Reply) -> serde_json::Value {
    match reply {
        Reply::Node(s) => serde_json::to_value(s),
        Reply::Coordinator(x) => serde_json::to_value(x),
    }
    .unwrap_or(serde_json::Value::Null)
}

fn status_cmd(target: &Target, json: bool, watch: bool, interval: f64, count: Option<u64>) -> Outcome {
    let socket = socket(target)?;
    if !watch {
        let reply = query(&socket)?;
        if json {
            cli::out::json(&reply_json(&reply));
        } else {
            cli::out::print(&show(&socket, &reply));
        }
        return Ok(());
    }
    let clear = !json && std::io::stdout().is_terminal();
    let mut last: Option<(Instant, watch::Reading)> = None;
    let mut shown = 0u64;
    loop {
        let started = Instant::now();
        let reply = query(&socket)?;
        let now = watch::counters(&reply);
        let rates = last
            .as_ref()
            .and_then(|(t, before)| watch::rates(before, &now, started.duration_since(*t).as_secs_f64()));
        if json {
            cli::out::json_line(&serde_json::json!({ "status": reply_json(&reply), "rates": rates }));
        } else {
            let mut text = String::new();
            if clear {
                // Home and clear: the new figures replace the old ones.
                text += "\x1b[H\x1b[2J";
            } else if shown > 0 {
                text += "\n";
            }
            text += &show(&socket, &reply);
            match &rates {
                Some(r) => text += &watch::summary(r),
                None => text += "  rates: after the next update\n",
            }
            cli::out::print(&text);
        }
        last = Some((started, now));
        shown += 1;
        if count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs_f64(interval).saturating_sub(started.elapsed()));
    }
}

fn nodes_cmd(target: &Target, json: bool) -> Outcome {
    let reply = query(&socket(target)?)?;
    let members = cli::nodes::members(&reply);
    if json {
        cli::out::json(&members);
    } else {
        cli::out::print(&cli::nodes::table(&members));
    }
    Ok(())
}

fn ask(socket: &Path, request: &Request) -> Result<Answer, Failure> {
    let reply = status::client::request(socket, request)?;
    serde_json::from_str(&reply)
        .map_err(|e| Failure::Other(format!("bad reply from {}: {e}: {reply}", socket.display())))
}

/// Sends drain, undrain or capacity; prints the answer.
fn request_cmd(target: &Target, request: &Request, json: bool) -> Outcome {
    let answer = ask(&socket(target)?, request)?;
    if json {
        cli::out::json(&answer);
    } else {
        outln!("{}", answer.message);
    }
    if answer.ok {
        Ok(())
    } else {
        Err(Failure::Other(String::new()))
    }
}

fn ask_members(socket: &Path, request: &Request) -> Result<exchange::MembersReply, Failure> {
    let reply = status::client::request(socket, request)?;
    serde_json::from_str(&reply)
        .map_err(|e| Failure::Other(format!("bad reply from {}: {e}: {reply}", socket.display())))
}

/// The directory as a table.
fn members_table(r: &exchange::MembersReply) -> String {
    let mut t = format!(
        "segment {} directory version {}\n{:>6}  {:<46} {:>7}  {:<8} {:<5} {:>6}\n",
        r.segment, r.version, "ID", "ADDRESS", "WEIGHT", "ROLE", "LIVE", "HELD"
    );
    for m in &r.members {
        let mark = match (m.me, m.leader) {
            (true, true) => " (this node, leader)",
            (true, false) => " (this node)",
            (false, true) => " (leader)",
            _ => "",
        };
        t += &format!(
            "{:>6}  {:<46} {:>7.3}  {:<8} {:<5} {:>6}{mark}\n",
            m.id,
            m.address,
            m.weight,
            m.role,
            if m.live { "yes" } else { "no" },
            m.held.map_or("-".to_owned(), |h| h.to_string()),
        );
    }
    t
}

/// `synshare members`: lists the directory, or asks for a change and waits
/// (10 s at most) until the directory shows it.
fn members_cmd(
    target: &Target,
    action: Option<cli::MembersAction>,
    id: Option<u32>,
    address: Option<std::net::SocketAddr>,
    weight: Option<f64>,
    segment: Option<usize>,
    json: bool,
) -> Outcome {
    let socket = socket(target)?;
    let segment = segment.unwrap_or(0);
    let (action, id) = match (action, id, address) {
        (None, _, _) => (MembersAction::List, None),
        (Some(cli::MembersAction::Add), Some(id), Some(address)) => (
            MembersAction::Add {
                id,
                address,
                weight: weight.unwrap_or(1.0),
            },
            Some(id),
        ),
        (Some(cli::MembersAction::Remove), Some(id), _) => (MembersAction::Remove { id }, Some(id)),
        _ => return Err("members add ID ADDRESS, members remove ID".into()),
    };
    let adding = matches!(action, MembersAction::Add { .. });
    let request = Request::Members { segment, action };
    let list = Request::Members {
        segment,
        action: MembersAction::List,
    };
    let first = ask_members(&socket, &request)?;
    let Some(id) = id.filter(|_| first.ok) else {
        if json {
            cli::out::json(&first);
        } else if first.message.is_empty() {
            cli::out::print(&members_table(&first));
        } else {
            outln!("{}", first.message);
        }
        return if first.ok {
            Ok(())
        } else {
            Err(Failure::Other(String::new()))
        };
    };
    let started = Instant::now();
    let mut last = first.clone();
    let done = loop {
        let shown = last.members.iter().find(|m| m.id == id);
        let done = if adding {
            shown.is_some()
        } else {
            shown.is_none_or(|m| m.role == "leaving")
        };
        if done || started.elapsed() >= Duration::from_secs(10) {
            break done;
        }
        std::thread::sleep(Duration::from_millis(100));
        last = ask_members(&socket, &list)?;
    };
    let message = match (done, adding) {
        (true, _) => first.message.clone(),
        (false, _) => format!(
            "member {id}: the directory does not show the change after 10 s (no leader, or another change \
             under way): see `synshare members`, and ask again"
        ),
    };
    let reply = exchange::MembersReply {
        ok: done,
        message: message.clone(),
        ..last
    };
    if json {
        cli::out::json(&reply);
    } else {
        outln!("{message}");
        cli::out::print(&members_table(&reply));
    }
    if done {
        Ok(())
    } else {
        Err(Failure::Other(String::new()))
    }
}

/// Buckets held on every segment and flows in every worker.
fn held_and_flows(s: &status::NodeStatus) -> (u64, u64) {
    std::iter::once(s).chain(s.segments.iter()).fold((0, 0), |(h, f), seg| {
        (
            h + u64::from(seg.held),
            f + seg.workers.iter().map(|w| w.flows).sum::<u64>(),
        )
    })
}

fn drain_cmd(target: &Target, json: bool, wait: bool, timeout_s: f64) -> Outcome {
    if !wait {
        return request_cmd(target, &Request::Drain, json);
    }
    let socket = socket(target)?;
    let answer = ask(&socket, &Request::Drain)?;
    if !answer.ok {
        if json {
            cli::out::json(&answer);
        } else {
            outln!("{}", answer.message);
        }
        return Err(Failure::Other(String::new()));
    }
    if !json {
        outln!("{}; waiting for its buckets and flows to reach 0", answer.message);
    }
    let started = Instant::now();
    let timeout = Duration::from_secs_f64(timeout_s);
    let mut last_said = None;
    loop {
        // The node said yes to "drain": it is a node, not a coordinator.
        let s = status::client::query(&socket)?;
        let (held, flows) = held_and_flows(&s);
        let waited_s = started.elapsed().as_secs_f64();
        let drained = held == 0 && flows == 0;
        let timed_out = !drained && started.elapsed() >= timeout;
        if drained || timed_out {
            let message = if drained {
                format!("{}: drained in {waited_s:.1} s: no bucket held, no flow left", s.name)
            } else {
                format!(
                    "{}: not drained after {timeout_s} s: still {held} bucket(s) held and {flows} flow(s)",
                    s.name
                )
            };
            if json {
                cli::out::json(&serde_json::json!({
                    "ok": drained, "message": message, "held": held, "flows": flows, "waited_s": waited_s,
                }));
            } else {
                outln!("{message}");
            }
            return if drained {
                Ok(())
            } else {
                Err(Failure::Other(String::new()))
            };
        }
        if !json && last_said != Some((held, flows)) {
            outln!("  {:>6.1} s: {held} bucket(s) held, {flows} flow(s)", waited_s);
            last_said = Some((held, flows));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A problem as `check-config --json` writes it.
#[derive(Serialize)]
struct JsonProblem {
    line: Option<usize>,
    column: Option<usize>,
    field: Option<String>,
    message: String,
}

impl From<&config::ConfigError> for JsonProblem {
    fn from(e: &config::ConfigError) -> Self {
        JsonProblem {
            line: e.position.map(|p| p.0),
            column: e.position.map(|p| p.1),
            field: e.field.clone(),
            message: e.message.clone(),
        }
    }
}

fn warning_line(w: &config::ConfigError) -> String {
    let mut at = w.file.display().to_string();
    if let Some((l, c)) = w.position {
        at += &format!(":{l}:{c}");
    }
    match &w.field {
        Some(f) => format!("{at}: warning: field `{f}`: {}", w.message),
        None => format!("{at}: warning: {}", w.message),
    }
}

fn node_summary(c: &NodeConfig) -> serde_json::Value {
    serde_json::json!({
        "kind": "node",
        "name": c.name,
        "id": c.id,
        "segments": 1 + c.segments.len(),
        "vips": c.all_segments().iter().map(|s| s.vips.len()).sum::<usize>(),
        "members": c.sharing.members.len(),
        "buckets": c.sharing.buckets,
        "layout": format!("{:?}", c.sharing.layout).to_lowercase(),
        "workers": c.workers,
        "sharing": if c.exchange.is_some() { "exchange" } else { "static" },
        "status_socket": node::socket_path(c),
    })
}

fn coordinator_summary(c: &CoordinatorConfig) -> serde_json::Value {
    serde_json::json!({
        "kind": "coordinator",
        "name": c.name,
        "nodes": c.exchange.peers.len(),
        "buckets": c.buckets,
        "layout": format!("{:?}", c.layout).to_lowercase(),
        "status_socket": coordinator::socket_path(c),
    })
}

fn check_config_cmd(file: &Path, coordinator: bool, json: bool) -> Outcome {
    let checked = if coordinator {
        CoordinatorConfig::check(file).map(|c| (coordinator_summary(&c.config), c.warnings))
    } else {
        NodeConfig::check(file).map(|c| (node_summary(&c.config), c.warnings))
    };
    let shown = file.display();
    match checked {
        Ok((summary, warnings)) => {
            if json {
                cli::out::json(&serde_json::json!({
                    "file": file, "valid": true, "summary": summary, "errors": [],
                    "warnings": warnings.iter().map(JsonProblem::from).collect::<Vec<_>>(),
                }));
            } else {
                for w in &warnings {
                    eprintln!("{}", warning_line(w));
                }
                let s = &summary;
                let what = if coordinator {
                    format!(
                        "coordinator {}, {} node(s), {} buckets, layout {}",
                        s["name"].as_str().unwrap_or(""),
                        s["nodes"],
                        s["buckets"],
                        s["layout"].as_str().unwrap_or("")
                    )
                } else {
                    format!(
                        "node {} (id {}), {} segment(s), {} VIP(s), {} member(s), {} buckets, layout {}, {} worker(s), {}",
                        s["name"].as_str().unwrap_or(""),
                        s["id"],
                        s["segments"],
                        s["vips"],
                        s["members"],
                        s["buckets"],
                        s["layout"].as_str().unwrap_or(""),
                        s["workers"],
                        if s["sharing"] == "exchange" { "exchange" } else { "static shares" }
                    )
                };
                let warned = if warnings.is_empty() {
                    String::new()
                } else {
                    format!(" ({} warning(s))", warnings.len())
                };
                outln!("{shown}: valid: {what}{warned}");
            }
            Ok(())
        }
        Err(errors) => {
            if json {
                cli::out::json(&serde_json::json!({
                    "file": file, "valid": false,
                    "errors": errors.0.iter().map(JsonProblem::from).collect::<Vec<_>>(),
                    "warnings": [],
                }));
                Err(Failure::Config(config::ConfigErrors(Vec::new())))
            } else {
                Err(Failure::Config(errors))
            }
        }
    }
}

#[derive(Serialize)]
struct Version {
    version: &'static str,
    git: &'static str,
    dpdk_built: &'static str,
    dpdk_running: String,
}

/// `synshare node`: checks the configuration and the exchanges' saved
/// state, then runs the node.
fn node_cmd(config: &Path, log_format: LogFormat) -> Outcome {
    init_logging(log_format);
    let checked = NodeConfig::check(config)?;
    if let Some(level) = &checked.config.log_level {
        logging::set_level(level)?;
    }
    for w in &checked.warnings {
        tracing::warn!("{}", warning_line(w));
    }
    for segment in checked.config.all_segments() {
        if let Some(x) = segment.exchange {
            exchange::check_state(x, &checked.config.name).map_err(Failure::State)?;
        }
    }
    Ok(node::run(checked.config, config)?)
}

/// `synshare coordinator`: checks the configuration and the exchange's
/// saved state, then runs the coordinator.
fn coordinator_cmd(config: &Path, log_format: LogFormat) -> Outcome {
    init_logging(log_format);
    let checked = CoordinatorConfig::check(config)?;
    for w in &checked.warnings {
        tracing::warn!("{}", warning_line(w));
    }
    exchange::check_state(&checked.config.exchange, &checked.config.name).map_err(Failure::State)?;
    Ok(coordinator::run(checked.config)?)
}

/// `synshare version`.
fn version_cmd(json: bool) -> Outcome {
    let v = Version {
        version: env!("CARGO_PKG_VERSION"),
        git: env!("SYNSHARE_GIT"),
        dpdk_built: env!("SYNSHARE_DPDK_BUILT"),
        dpdk_running: synshare_dpdk::version(),
    };
    if json {
        cli::out::json(&v);
    } else {
        outln!(
            "synshare {} ({}), built against DPDK {}, running {}",
            v.version,
            v.git,
            v.dpdk_built,
            v.dpdk_running
        );
    }
    Ok(())
}

fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Node { config } => node_cmd(&config, cli.log_format),
        Command::Coordinator { config } => coordinator_cmd(&config, cli.log_format),
        Command::CheckConfig {
            coordinator,
            file,
            json,
        } => check_config_cmd(&file, coordinator, json),
        Command::Status {
            target,
            json,
            watch,
            interval,
            count,
        } => status_cmd(&target, json, watch, interval, count),
        Command::Nodes { target, json } => nodes_cmd(&target, json),
        Command::Drain {
            target,
            json,
            wait,
            timeout,
        } => drain_cmd(&target, json, wait, timeout),
        Command::Undrain { target, json } => request_cmd(&target, &Request::Undrain, json),
        Command::Capacity { weight, target, json } => request_cmd(&target, &Request::Capacity(weight), json),
        Command::Members {
            action,
            id,
            address,
            weight,
            segment,
            target,
            json,
        } => members_cmd(&target, action, id, address, weight, segment, json),
        Command::Version { json } => version_cmd(json),
        Command::Keygen { path, id, force } => {
            keygen::write_key_file(&path, id, force)?;
            outln!(
                "{}: key {id} written (mode 600); copy this file to every member, e.g. scp -p",
                path.display()
            );
            Ok(())
        }
        Command::Completions { shell } => {
            cli::out::print_bytes(&cli::completions(shell));
            Ok(())
        }
        Command::Man { command } => {
            cli::out::print_bytes(&cli::man_page(command.as_deref())?);
            Ok(())
        }
    }
}

impl Failure {
    /// The exit status.
    fn code(&self) -> u8 {
        match self {
            Failure::Config(_) => config::EX_CONFIG,
            Failure::State(_) => exchange::EX_STATE,
            Failure::Other(_) => 1,
        }
    }

    /// What to print on stderr.
    fn message(&self) -> String {
        match self {
            Failure::Config(errors) => errors.to_string(),
            Failure::State(message) | Failure::Other(message) => message.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let message = failure.message();
            if !message.is_empty() {
                // Under systemd, at the journal's error priority.
                let prefix = if logging::stderr_is_journal() { "<3>" } else { "" };
                for line in message.lines() {
                    eprintln!("{prefix}{line}");
                }
            }
            ExitCode::from(failure.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::tests::{broken, Base, CASES};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("synshare-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The path check-config takes for each refused case ends in exit 78,
    /// with the field named on stderr.
    #[test]
    fn every_refused_configuration_exits_78_naming_the_field() {
        let dir = temp_dir("check-config");
        for (i, case) in CASES.iter().enumerate() {
            let path = dir.join(format!("broken{i}.ron"));
            std::fs::write(&path, broken(case)).unwrap();
            let failure = check_config_cmd(&path, case.base == Base::Coordinator, false)
                .err()
                .unwrap_or_else(|| panic!("{}: accepted", case.name));
            assert_eq!(failure.code(), 78, "{}", case.name);
            let stderr = failure.message();
            let line = stderr
                .lines()
                .find(|l| l.contains(&format!("field `{}`", case.field)))
                .unwrap_or_else(|| panic!("{}: {stderr}", case.name));
            assert!(line.starts_with(&format!("{}:", path.display())), "{line}");
            assert!(line.contains(case.says), "{}: {line}", case.name);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn valid_configurations_pass_and_other_failures_exit_1() {
        let dir = temp_dir("check-config-valid");
        let path = dir.join("node.ron");
        std::fs::write(&path, config::tests::NODE).unwrap();
        assert!(check_config_cmd(&path, false, false).is_ok());
        // A node's file checked as a coordinator's is refused, not accepted.
        assert_eq!(check_config_cmd(&path, true, false).err().map(|f| f.code()), Some(78));
        // A file that cannot be read is a configuration refused too.
        let missing = dir.join("missing.ron");
        assert_eq!(
            check_config_cmd(&missing, false, false).err().map(|f| f.code()),
            Some(78)
        );
        // Anything else: 1.
        let target = Target {
            config: None,
            socket: Some(dir.join("no-node.sock")),
        };
        assert_eq!(nodes_cmd(&target, false).err().map(|f| f.code()), Some(1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A node's status socket answering from `answer` until dropped.
    struct FakeNode {
        socket: PathBuf,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl FakeNode {
        fn start(name: &str, mut answer: impl FnMut(Request) -> String + Send + 'static) -> FakeNode {
            let socket = temp_dir(name).join("node.sock");
            let listener = status::server::listen(&socket, None).unwrap();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = std::sync::Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    status::server::serve(&listener, &mut answer);
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            FakeNode {
                socket,
                stop,
                thread: Some(thread),
            }
        }

        fn target(&self) -> Target {
            Target {
                config: None,
                socket: Some(self.socket.clone()),
            }
        }
    }

    impl Drop for FakeNode {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            if let Some(dir) = self.socket.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// A node that, once told to drain, lets one bucket and then one flow
    /// go per status request; `flows_stay` keeps one flow for ever.
    fn draining_node(name: &str, flows_stay: bool) -> (FakeNode, std::sync::Arc<std::sync::Mutex<Vec<Request>>>) {
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&requests);
        let (mut held, mut flows, mut draining) = (3u32, 2u64, false);
        let node = FakeNode::start(name, move |request| {
            log.lock().unwrap().push(request.clone());
            if request == Request::Drain {
                draining = true;
                return serde_json::json!({"ok": true, "message": "n draining"}).to_string();
            }
            if draining {
                if held > 0 {
                    held -= 1;
                } else if flows > u64::from(flows_stay) {
                    flows -= 1;
                }
            }
            let s = status::NodeStatus {
                name: "n".into(),
                held,
                workers: vec![status::WorkerStatus {
                    flows,
                    ..Default::default()
                }],
                ..Default::default()
            };
            serde_json::to_string(&s).unwrap()
        });
        (node, requests)
    }

    #[test]
    fn drain_wait_returns_once_no_bucket_and_no_flow_is_left() {
        let (node, requests) = draining_node("drain-wait", false);
        let started = Instant::now();
        assert!(drain_cmd(&node.target(), true, true, 30.0).is_ok());
        assert!(started.elapsed() < Duration::from_secs(10));
        let requests = requests.lock().unwrap().clone();
        assert_eq!(requests[0], Request::Drain);
        // Polls see 2, 1, 0 buckets, then 1, 0 flows: it stops at the fifth.
        assert_eq!(
            requests.iter().filter(|r| **r == Request::Status).count(),
            5,
            "{requests:?}"
        );
    }

    #[test]
    fn drain_wait_times_out_with_exit_1() {
        let (node, _) = draining_node("drain-timeout", true);
        let started = Instant::now();
        let failure = drain_cmd(&node.target(), true, true, 0.5).expect_err("a timeout");
        assert_eq!(failure.code(), 1);
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_refused_drain_does_not_wait() {
        let node = FakeNode::start("drain-refused", |_| {
            serde_json::json!({"ok": false, "message": "static shares"}).to_string()
        });
        assert_eq!(
            drain_cmd(&node.target(), true, true, 30.0).err().map(|f| f.code()),
            Some(1)
        );
    }

    #[test]
    fn watch_polls_count_times_at_the_interval() {
        let polls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = std::sync::Arc::clone(&polls);
        let node = FakeNode::start("watch", move |_| {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            serde_json::to_string(&exchange::ExchangeStatus::default()).unwrap()
        });
        let started = Instant::now();
        assert!(status_cmd(&node.target(), true, true, 0.1, Some(3)).is_ok());
        assert_eq!(polls.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn held_and_flows_count_every_segment() {
        let seg = |held, flows| status::NodeStatus {
            held,
            workers: vec![status::WorkerStatus {
                flows,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut s = seg(0, 0);
        assert_eq!(held_and_flows(&s), (0, 0));
        s.segments = vec![seg(3, 0), seg(0, 7)];
        assert_eq!(held_and_flows(&s), (3, 7));
    }
}
