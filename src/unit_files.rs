//! The shipped systemd units (configs/systemd) against their exposure
//! targets, as `systemd-analyze security --offline=yes` scores them: the
//! node at most 5.0, the coordinator at most 2.0 (README, "Security").

use std::path::Path;
use std::process::Command;

/// Each unit file and the highest exposure it may score.
const TARGETS: &[(&str, f64)] = &[
    ("configs/systemd/synshare@.service", 5.0),
    ("configs/systemd/synshare-coordinator@.service", 2.0),
];

/// The overall exposure in `systemd-analyze security` output.
fn exposure(output: &str) -> Option<f64> {
    output.lines().find_map(|l| {
        l.split_once("Overall exposure level for ")?
            .1
            .split_once(": ")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

#[test]
fn the_exposure_line_is_read() {
    let line = "→ Overall exposure level for synshare@i.service: 2.7 OK 🙂\n";
    assert_eq!(exposure(line), Some(2.7));
    assert_eq!(exposure("nothing here"), None);
}

#[test]
fn the_shipped_units_are_within_their_exposure_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (unit, most) in TARGETS {
        let out = match Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(root.join(unit))
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("SKIPPED: systemd-analyze not found ({e}); install the systemd package to check {unit}");
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let score = exposure(&text).unwrap_or_else(|| panic!("{unit}: no exposure level: {text}{stderr}"));
        eprintln!("{unit}: exposure {score}");
        assert!(
            score <= *most,
            "{unit}: exposure {score} > {most}\n{}",
            text.lines()
                .filter(|l| l.starts_with('✗'))
                .collect::<Vec<_>>()
                .join("\n")
        );
        // A directive systemd does not know is ignored with a warning (and
        // scores as if absent): none may be.
        assert!(
            !stderr.contains("Unknown key") && !stderr.contains("Failed to parse"),
            "{unit}: {stderr}"
        );
    }
}

/// The `KEY=value` lines of a unit file's `[Service]` section for `key`.
fn directives<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// A refused configuration must end the unit without a retry: the check
/// runs in ExecStart (whose exit status RestartPreventExitStatus= covers),
/// not in an ExecStartPre= (whose status it does not). A missing key file
/// must reach the program (which names it and exits 78) instead of
/// failing systemd's credential step, which is retried: every
/// LoadCredential= has a SetCredential= default of the same name.
#[test]
fn a_refused_configuration_or_a_missing_key_is_not_retried() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (unit, command) in [
        ("configs/systemd/synshare@.service", "node"),
        ("configs/systemd/synshare-coordinator@.service", "coordinator"),
    ] {
        let text = std::fs::read_to_string(root.join(unit)).unwrap();
        assert!(directives(&text, "ExecStartPre").is_empty(), "{unit}: an ExecStartPre");
        let start = directives(&text, "ExecStart");
        assert_eq!(start.len(), 1, "{unit}");
        assert!(
            start[0].starts_with(&format!("/usr/bin/synshare {command} --config ")),
            "{unit}: {}",
            start[0]
        );
        assert_eq!(
            directives(&text, "RestartPreventExitStatus"),
            [format!("{} {}", crate::config::EX_CONFIG, crate::exchange::EX_STATE)],
            "{unit}"
        );
        let set: Vec<&str> = directives(&text, "SetCredential")
            .iter()
            .filter_map(|v| v.split_once(':').map(|(id, _)| id))
            .collect();
        for load in directives(&text, "LoadCredential") {
            let (id, source) = load.split_once(':').unwrap_or((load, ""));
            assert!(
                set.contains(&id),
                "{unit}: LoadCredential={load} without a SetCredential default"
            );
            // The node checks the mode of the source it names.
            assert!(
                text.contains(&format!("SYNSHARE_CREDENTIAL_SOURCES={id}:{source}")),
                "{unit}: {id}"
            );
        }
    }
}
