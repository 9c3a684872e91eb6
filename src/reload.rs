//! What a reload (SIGHUP) may change while the node runs, and what needs a
//! restart: the edited fields are found by comparing the configuration's
//! text as parsed (RON values) at start and now.

use std::collections::BTreeSet;

/// Fields a reload applies (a field path, or a prefix of one followed by
/// `.` or `[`; `segments[]` stands for every segment).
pub const RELOADABLE: &[&str] = &[
    "availability.capacity",
    "availability.health_check",
    "availability.service_probe",
    "availability.cpu_exponent",
    "availability.max_connections",
    "availability.floor",
    "availability.alpha",
    "availability.max_step",
    // The thresholds, not the files (read by the measuring thread).
    "availability.temperature[1]",
    "availability.temperature[2]",
    "availability.power[1]",
    "metrics",
    "log_level",
    "exchange.key_file",
    "exchange.key",
    "exchange.key_id",
    "segments[].exchange.key_file",
    "segments[].exchange.key",
    "segments[].exchange.key_id",
];

/// The edits between two versions of a configuration: applied by a reload,
/// or in need of a restart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Edits {
    /// Edited fields a reload applies.
    pub applied: Vec<String>,
    /// Edited fields that take effect only after a restart.
    pub need_restart: Vec<String>,
}

/// The fields edited between `before` and `after` (configuration texts),
/// sorted into those a reload applies and those that need a restart.
pub fn edits(before: &str, after: &str) -> Result<Edits, String> {
    let parse = |text: &str| {
        ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str::<ron::Value>(text)
            .map_err(|e| e.to_string())
    };
    let mut changed = BTreeSet::new();
    diff("", &parse(before)?, &parse(after)?, &mut changed);
    let mut e = Edits::default();
    for field in changed {
        if reloadable(&field) {
            e.applied.push(field);
        } else {
            e.need_restart.push(field);
        }
    }
    Ok(e)
}

fn reloadable(field: &str) -> bool {
    // segments[3].exchange.key -> segments[].exchange.key
    let general = match field.strip_prefix("segments[").and_then(|r| r.split_once(']')) {
        Some((_, rest)) => format!("segments[]{rest}"),
        None => field.to_owned(),
    };
    RELOADABLE.iter().any(|r| {
        general == *r
            || general
                .strip_prefix(r)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

/// `Some(x)` is `x` (RON's implicit Some), `None` an absent field.
fn plain(v: &ron::Value) -> Option<&ron::Value> {
    match v {
        ron::Value::Option(o) => o.as_deref().and_then(plain),
        v => Some(v),
    }
}

fn diff(at: &str, a: &ron::Value, b: &ron::Value, out: &mut BTreeSet<String>) {
    let (a, b) = (plain(a), plain(b));
    match (a, b) {
        (Some(ron::Value::Map(ma)), Some(ron::Value::Map(mb))) => {
            let keys: BTreeSet<String> = ma.keys().chain(mb.keys()).map(key).collect();
            for k in keys {
                let find = |m: &ron::Map| m.iter().find(|(mk, _)| key(mk) == k).map(|(_, v)| v.clone());
                let unit = ron::Value::Option(None);
                let (va, vb) = (find(ma).unwrap_or(unit.clone()), find(mb).unwrap_or(unit));
                let path = if at.is_empty() { k } else { format!("{at}.{k}") };
                diff(&path, &va, &vb, out);
            }
        }
        (Some(ron::Value::Seq(sa)), Some(ron::Value::Seq(sb))) if sa.len() == sb.len() => {
            for (i, (va, vb)) in sa.iter().zip(sb).enumerate() {
                diff(&format!("{at}[{i}]"), va, vb, out);
            }
        }
        (a, b) => {
            if a != b {
                out.insert(if at.is_empty() {
                    "(the whole file)".into()
                } else {
                    at.to_owned()
                });
            }
        }
    }
}

/// A map key as a field name.
fn key(k: &ron::Value) -> String {
    match k {
        ron::Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = include_str!("../configs/node.ron");

    fn edit(from: &str, to: &str) -> String {
        assert_eq!(BASE.matches(from).count(), 1, "{from}");
        BASE.replacen(from, to, 1)
    }

    #[test]
    fn nothing_edited_is_nothing_to_do() {
        assert_eq!(edits(BASE, BASE).unwrap(), Edits::default());
        // Comments and layout are not edits.
        let moved = BASE.replace("    workers: 1,", "// a comment\n    workers:   1  ,");
        assert_eq!(edits(BASE, &moved).unwrap(), Edits::default());
    }

    #[test]
    fn each_edited_field_is_named_and_sorted_by_what_it_needs() {
        let after = edit("capacity: 1.0,", "capacity: 2.5,");
        let after = after.replacen("rise: 2,", "rise: 3,", 1);
        let after = after.replacen(
            "metrics: Some(\"127.0.0.1:9746\")",
            "metrics: Some(\"127.0.0.1:9747\")",
            1,
        );
        let after = after.replacen("workers: 1,", "workers: 2,", 1);
        let after = after.replacen("buckets: 65536,", "buckets: 4096,", 1);
        let after = after.replacen("interval_ms: 100,", "interval_ms: 50,", 1);
        let e = edits(BASE, &after).unwrap();
        assert_eq!(
            e.applied,
            ["availability.capacity", "availability.health_check.rise", "metrics"]
        );
        assert_eq!(e.need_restart, ["exchange.interval_ms", "sharing.buckets", "workers"]);
    }

    #[test]
    fn a_field_added_or_given_as_some_is_seen_rightly() {
        // log_level absent -> set: applied; Some(x) and x are the same.
        let after = edit("    workers: 1,", "    workers: 1,\n    log_level: \"debug\",");
        assert_eq!(edits(BASE, &after).unwrap().applied, ["log_level"]);
        let same = edit("metrics: Some(\"127.0.0.1:9746\")", "metrics: \"127.0.0.1:9746\"");
        assert_eq!(edits(BASE, &same).unwrap(), Edits::default());
        // A new VIP needs a restart, named by its index.
        let vip = edit(
            "(addr: \"2001:db8::100\", tcp_ports: [80, 443], udp_ports: [53]),",
            "(addr: \"2001:db8::100\", tcp_ports: [80, 443], udp_ports: [53]),\n        (addr: \"192.0.2.101\"),",
        );
        assert_eq!(edits(BASE, &vip).unwrap().need_restart, ["vips"]);
        // Port rules choose which node takes a connection: every member
        // must have the same, and a flow's value must not change under it,
        // so they need a restart (of every node), named.
        let rules = edit(
            "(addr: \"2001:db8::100\", tcp_ports: [80, 443], udp_ports: [53]),",
            "(addr: \"2001:db8::100\", tcp_ports: [80, 443], udp_ports: [53], rules: [(ports: \"80\", affinity: client)]),",
        );
        assert_eq!(edits(BASE, &rules).unwrap().need_restart, ["vips[1].rules"]);
        assert!(!reloadable("vips[0].rules[0].affinity"));
    }

    #[test]
    fn keys_of_every_segment_reload_other_segment_fields_do_not() {
        assert!(reloadable("segments[0].exchange.key_file"));
        assert!(reloadable("segments[12].exchange.key"));
        assert!(!reloadable("segments[0].exchange.peers.3"));
        assert!(!reloadable("availability.temperature[0]"));
        assert!(reloadable("availability.temperature[1]"));
        assert!(!reloadable("availability.capacityx"));
    }
}
