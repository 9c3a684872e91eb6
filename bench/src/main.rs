//! `synshare-bench`: synshare's benchmark tools, kept out of the product
//! binary and its package.
//!
//! - `pktgen` writes synthetic traffic to the VIPs as a classic pcap file
//!   ([`pcap`] holds the writer and the reader);
//! - `bench` runs the node's worker loop on one lcore with such a file
//!   replayed from memory (net_pcap) into net_null, and reports Mpps, cycles
//!   per packet, every counter and per-burst latency.
//!
//! Each command parses its own options ([`opts`]) and has its own help text.
//! Exit status: 0 on success, 1 on any failure of a command (a bad option
//! included), 2 on a usage error of `synshare-bench` itself (no or an
//! unknown command).

#![deny(unsafe_code)]

mod bench;
mod opts;
mod pcap;
mod pktgen;

use clap::{Parser, Subcommand};
use std::io::{ErrorKind, Write};
use std::process::ExitCode;

const ABOUT: &str = "synshare's benchmark tools: write synthetic VIP traffic as a pcap file, and run the \
node's worker loop on one lcore against it";

const EXIT_CODES: &str = "\
Exit status: 0 on success; 1 when a command fails (a bad option included); 2 on a usage error of \
synshare-bench itself.";

/// synshare-bench's command line.
#[derive(Debug, Parser)]
#[command(
    name = "synshare-bench",
    version,
    about = ABOUT,
    after_help = EXIT_CODES,
    arg_required_else_help = true,
    max_term_width = 100
)]
struct Cli {
    /// The command.
    #[command(subcommand)]
    command: Command,
}

/// The commands: each takes its own options, see its --help.
#[derive(Debug, Subcommand)]
enum Command {
    /// Write synthetic VIP traffic as a pcap file (see `synshare-bench pktgen --help`)
    #[command(disable_help_flag = true, override_help = pktgen::HELP)]
    Pktgen {
        /// pktgen's own options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Benchmark the worker loop on one lcore (see `synshare-bench bench --help`)
    #[command(disable_help_flag = true, override_help = bench::HELP)]
    Bench {
        /// bench's own options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

/// Writes `text` to stdout; a reader that has gone (`| head -1`) ends the
/// process quietly with status 0, as SIGPIPE would.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("synshare-bench: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// A command's body: its options in, a message for stderr out on failure.
type Body = fn(&[String]) -> Result<(), String>;

/// Runs `command`: its help when `--help` or `-h` is anywhere among its
/// arguments, else the command itself.
fn run(command: Command) -> Result<(), String> {
    let (help, body, args): (&str, Body, Vec<String>) = match command {
        Command::Pktgen { args } => (pktgen::HELP, pktgen::run, args),
        Command::Bench { args } => (bench::HELP, bench::run, args),
    };
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print(help);
        return Ok(());
    }
    body(&args)
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("synshare-bench").chain(args.iter().copied()))
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn the_commands_take_their_own_options_whole() {
        for args in [
            &["pktgen", "--out", "x.pcap", "--flows", "nope"][..],
            &["pktgen", "--out", "x.pcap", "--size", "imix", "--mix", "syn=1,data=2"],
            &["bench", "--pcap", "x.pcap", "--plan"],
            &["bench", "--pcap", "x.pcap", "--no-huge", "--json", "--members", "3"],
            &["bench"],
        ] {
            assert!(parse(args).is_ok(), "{args:?}: {:?}", parse(args).err());
        }
        let Ok(Cli {
            command: Command::Pktgen { args },
        }) = parse(&["pktgen", "--out", "x.pcap", "--help"])
        else {
            panic!("pktgen");
        };
        assert_eq!(args, ["--out", "x.pcap", "--help"]);
        let Ok(Cli {
            command: Command::Bench { args },
        }) = parse(&["bench", "-h"])
        else {
            panic!("bench");
        };
        assert_eq!(args, ["-h"]);
        assert_eq!(
            parse(&["node", "--config", "n.ron"]).unwrap_err().kind(),
            clap::error::ErrorKind::InvalidSubcommand
        );
        assert!(parse(&[]).is_err(), "a command is required");
    }

    #[test]
    fn help_of_a_command_is_its_own() {
        let pktgen = parse(&["help", "pktgen"]).unwrap_err().to_string();
        assert!(pktgen.starts_with("synshare-bench pktgen --out FILE.pcap"), "{pktgen}");
        assert!(pktgen.contains("--arp-ndp PCT"), "{pktgen}");
        let bench = parse(&["help", "bench"]).unwrap_err().to_string();
        assert!(bench.starts_with("synshare-bench bench --pcap FILE.pcap"), "{bench}");
        assert!(bench.contains("--flow-capacity N"), "{bench}");
        let top = parse(&["--help"]).unwrap_err().to_string();
        assert!(top.contains("pktgen") && top.contains("bench"), "{top}");
    }

    #[test]
    fn failures_are_messages_for_exit_1() {
        let e = run(Command::Pktgen {
            args: strings(&["--flows", "10"]),
        })
        .expect_err("no --out");
        assert_eq!(e, "synshare-bench pktgen: --out FILE.pcap is required");
        let e = run(Command::Bench {
            args: strings(&["--plan"]),
        })
        .expect_err("no --pcap");
        assert_eq!(e, "synshare-bench bench: --pcap FILE is required");
        assert!(run(Command::Bench {
            args: strings(&["--pcap", "a,b.pcap"]),
        })
        .is_err());
    }

    #[test]
    fn pktgen_writes_the_file_it_is_asked_for() {
        let path = std::env::temp_dir().join(format!("ss-bench-cli-{}.pcap", std::process::id()));
        let result = run(Command::Pktgen {
            args: strings(&["--out", path.to_str().unwrap(), "--flows", "500", "--size", "imix"]),
        });
        let frames = pcap::for_each_frame(&path, |_| {});
        let _ = std::fs::remove_file(&path);
        assert_eq!(result, Ok(()));
        // 500 flows, each once, are 94% of the frames.
        assert_eq!(frames, Ok(532));
    }
}
