//! The node's and the coordinator's RON configuration: the types
//! ([`types`]), parsing with a position and a field path in every error,
//! then validation of what the types cannot say ([`validate`]), whose
//! errors are placed in the file by a second scan of the text ([`spans`]).
//!
//! `synshare check-config` and the start of a node or a coordinator load a
//! file the same way, so whatever check-config passes gets past the
//! configuration at start. A configuration refused is [`EX_CONFIG`].

mod lcores;
pub mod spans;
mod types;
pub mod validate;

pub use types::*;
pub use validate::{Finding, Findings};

use spans::Spans;
use std::fmt;
use std::path::{Path, PathBuf};

/// sysexits.h EX_CONFIG: the exit code of a refused configuration (a
/// systemd unit's `RestartPreventExitStatus=78` stops restarting on it).
pub const EX_CONFIG: u8 = 78;

/// A problem in a configuration file: the file, where in it, which field,
/// and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// The field's path, e.g. `sharing.members[2].weight`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A configuration refused: every error found (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A configuration accepted, with the warnings it drew.
#[derive(Debug)]
pub struct Checked<T> {
    /// The configuration.
    pub config: T,
    /// Printed (or logged), not refused.
    pub warnings: Vec<ConfigError>,
}

/// A configuration that validates itself.
trait Validate: serde::de::DeserializeOwned {
    fn validate(&self, f: &mut Findings);
    /// The field paths of keys written inline.
    fn inline_keys(&self) -> Vec<String>;
}

impl Validate for NodeConfig {
    fn validate(&self, f: &mut Findings) {
        NodeConfig::validate(self, f);
    }
    fn inline_keys(&self) -> Vec<String> {
        self.all_segments()
            .iter()
            .filter(|s| s.exchange.is_some_and(|x| x.key.is_some()))
            .map(|s| format!("{}exchange.key", s.at()))
            .collect()
    }
}

impl Validate for CoordinatorConfig {
    fn validate(&self, f: &mut Findings) {
        CoordinatorConfig::validate(self, f);
    }
    fn inline_keys(&self) -> Vec<String> {
        self.exchange.key.iter().map(|_| "exchange.key".to_owned()).collect()
    }
}

/// Reads `path`; a file that cannot be read is a refused configuration too
/// (restarting would not make it readable).
fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            position: None,
            field: None,
            message: format!("cannot read: {e}"),
        }])
    })
}

/// Parses and validates `text` (of `path`, for messages).
fn check_text<T: Validate>(path: &Path, text: &str) -> Result<Checked<T>, ConfigErrors> {
    let config: T = parse_ron(path, text).map_err(|e| ConfigErrors(vec![e]))?;
    let spans = Spans::scan(text);
    let mut findings = Findings::default();
    config.validate(&mut findings);
    if readable_by_others(path) {
        for field in config.inline_keys() {
            findings.warn(
                field,
                "a key inline in a file that group or others can read; use key_file (mode 600)",
            );
        }
    }
    let place = |f: Finding| ConfigError {
        file: path.to_owned(),
        position: spans
            .get(&f.field)
            .or_else(|| f.near.as_deref().and_then(|n| spans.get(n)))
            .or_else(|| spans.find(&f.field)),
        field: Some(f.field),
        message: f.message,
    };
    let mut errors: Vec<ConfigError> = findings.errors.into_iter().map(place).collect();
    // Placed at the second entry, not the first.
    errors.extend(spans.duplicates().iter().map(|(field, at)| ConfigError {
        file: path.to_owned(),
        position: Some(*at),
        field: Some(field.clone()),
        message: "this key is written twice: only the last entry would count".into(),
    }));
    if errors.is_empty() {
        let mut warnings: Vec<ConfigError> = findings.warnings.into_iter().map(place).collect();
        warnings.sort_by_key(|w| w.position);
        Ok(Checked { config, warnings })
    } else {
        errors.sort_by_key(|e| e.position);
        Err(ConfigErrors(errors))
    }
}

/// Whether group or others can read `path`.
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

impl NodeConfig {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigErrors> {
        Self::check(path).map(|c| c.config)
    }

    /// Reads, parses and validates `path`, keeping the warnings.
    pub fn check(path: &Path) -> Result<Checked<NodeConfig>, ConfigErrors> {
        check_text(path, &read(path)?)
    }

    /// Parses and validates `text`, reporting problems against `path`.
    #[cfg(test)]
    pub fn check_text(path: &Path, text: &str) -> Result<Checked<NodeConfig>, ConfigErrors> {
        check_text(path, text)
    }

    /// Reads and parses `path` without validating it: enough to find a
    /// running node's status socket.
    pub fn read_unchecked(path: &Path) -> Result<NodeConfig, ConfigErrors> {
        parse_ron(path, &read(path)?).map_err(|e| ConfigErrors(vec![e]))
    }
}

impl CoordinatorConfig {
    /// Reads, parses and validates `path`, keeping the warnings.
    pub fn check(path: &Path) -> Result<Checked<CoordinatorConfig>, ConfigErrors> {
        check_text(path, &read(path)?)
    }

    /// Parses and validates `text`, reporting problems against `path`.
    #[cfg(test)]
    pub fn check_text(path: &Path, text: &str) -> Result<Checked<CoordinatorConfig>, ConfigErrors> {
        check_text(path, text)
    }

    /// Reads and parses `path` without validating it.
    pub fn read_unchecked(path: &Path) -> Result<CoordinatorConfig, ConfigErrors> {
        parse_ron(path, &read(path)?).map_err(|e| ConfigErrors(vec![e]))
    }
}

/// Parses RON into `T`, with positions and field paths in errors. Accepts
/// `key: "x"` as well as `key: Some("x")`.
fn parse_ron<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let err = |position: Option<(usize, usize)>, field: Option<String>, message: String| ConfigError {
        file: path.to_owned(),
        position,
        field,
        message,
    };
    let options = ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
    let mut de = ron::Deserializer::from_str_with_options(text, &options)
        .map_err(|e| err(Some((e.span.start.line, e.span.start.col)), None, e.code.to_string()))?;
    let config: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            let spanned = de.span_error(e.into_inner());
            let field = (path != "." && !path.is_empty()).then_some(path);
            return Err(err(
                Some((spanned.span.start.line, spanned.span.start.col)),
                field,
                spanned.code.to_string(),
            ));
        }
    };
    de.end().map_err(|e| {
        let spanned = de.span_error(e);
        err(
            Some((spanned.span.start.line, spanned.span.start.col)),
            None,
            format!("{} (after the configuration)", spanned.code),
        )
    })?;
    Ok(config)
}

#[cfg(test)]
pub(crate) mod tests;
