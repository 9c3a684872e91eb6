//! Log lines on stderr; under systemd, with the journal's priority prefix
//! (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace), so that
//! `journalctl -p warning` shows warnings and errors, not every line at 6.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The syslog priority of `level`, as journald reads it from a `<N>` prefix.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM`
/// to its `DEVICE:INODE` (a child that inherited the variable but writes
/// elsewhere, say a pipe, gets no prefix).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    is_stream(&stream.to_string_lossy(), meta.dev(), meta.ino())
}

fn is_stream(journal_stream: &str, dev: u64, ino: u64) -> bool {
    journal_stream
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// Sets the filter of the subscriber installed at start.
type SetLevel = Box<dyn Fn(tracing_subscriber::EnvFilter) -> Result<(), String> + Send + Sync>;

static RELOAD: std::sync::OnceLock<SetLevel> = std::sync::OnceLock::new();

/// Keeps `handle`, the filter of the subscriber being installed, for
/// [`set_level`].
pub fn set_reload<L, S>(handle: tracing_subscriber::reload::Handle<L, S>)
where
    L: From<tracing_subscriber::EnvFilter> + 'static,
    S: 'static,
    tracing_subscriber::reload::Handle<L, S>: Send + Sync,
{
    let _ = RELOAD.set(Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())));
}

/// The filter `directives` (EnvFilter syntax: `info`, `debug`,
/// `warn,synshare=debug`), checked.
pub fn filter(directives: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::try_new(directives).map_err(|e| format!("{directives:?}: {e}"))
}

/// Logs from now on at `directives`.
pub fn set_level(directives: &str) -> Result<(), String> {
    let f = filter(directives)?;
    match RELOAD.get() {
        Some(set) => set(f),
        None => Err("no log subscriber to change".into()),
    }
}

/// An event format that puts the journal's priority before each line of
/// the format it wraps.
pub struct JournalPriority<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    F: FormatEvent<S, N>,
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_line_starts_with_its_levels_priority() {
        let out = Buffer::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .event_format(JournalPriority(tracing_subscriber::fmt::format().with_ansi(false)))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let prefixes: Vec<&str> = text.lines().map(|l| &l[..3]).collect();
        assert_eq!(prefixes, ["<3>", "<4>", "<6>", "<7>"], "{text}");
        assert!(
            text.lines().next().unwrap().contains("ERROR") && text.contains(" e\n"),
            "{text}"
        );
    }

    #[test]
    fn the_journal_stream_is_recognised_by_device_and_inode_only() {
        assert!(is_stream("8:12345", 8, 12345));
        assert!(!is_stream("8:12345", 8, 12346));
        assert!(!is_stream("8:12345", 9, 12345));
        assert!(!is_stream("garbage", 8, 12345));
        assert!(!is_stream("", 0, 0));
    }
}
