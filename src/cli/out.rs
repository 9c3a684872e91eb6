//! Standard output for the commands. Rust ignores SIGPIPE, so a reader
//! that has gone (`synshare nodes | head -1`) shows up as an EPIPE write
//! error, on which `println!` panics. Everything the commands print goes
//! through [`print`] instead, which ends the process quietly with status 0
//! then, as a tool killed by SIGPIPE would end the pipeline. SIGPIPE itself
//! stays ignored: the node writes to sockets whose peers may go away.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout (and flushes: a watch loop must not sit on it).
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("synshare: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes `bytes` to stdout, as [`print`] does.
pub fn print_bytes(bytes: &[u8]) {
    print(&String::from_utf8_lossy(bytes));
}

/// Writes `value` as pretty JSON and a newline.
pub fn json<T: serde::Serialize>(value: &T) {
    print_json(serde_json::to_string_pretty(value));
}

/// Writes `value` as one line of JSON (for streams: one object per line).
pub fn json_line<T: serde::Serialize>(value: &T) {
    print_json(serde_json::to_string(value));
}

/// Writes `encoded` and a newline; ends the process with status 1 if the
/// value could not be encoded.
fn print_json(encoded: serde_json::Result<String>) {
    match encoded {
        Ok(s) => print(&(s + "\n")),
        Err(e) => {
            eprintln!("synshare: cannot encode JSON: {e}");
            std::process::exit(1);
        }
    }
}

/// `println!` through [`print`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::print(&format!("{}\n", format_args!($($arg)*)))
    };
}
