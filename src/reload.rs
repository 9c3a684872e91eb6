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
    // With the unit variants named (see `named_units`); as written when
    // that does not parse.
    let parse_named = |text: &str| parse(&named_units(text)).or_else(|_| parse(text));
    let mut changed = BTreeSet::new();
    diff("", &parse_named(before)?, &parse_named(after)?, &mut changed);
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

/// `text` with every bare identifier in a value's place (a unit enum
/// variant: `layout: ranges`, `affinity: client`) written as a string.
/// RON's untyped value reads every unit variant as `()`, so an edit from
/// one to another would be seen as no edit at all: neither applied nor
/// named as needing a restart. Field names (followed by `:`), names
/// followed by `(`, `true`, `false`, `None`, `Some`, strings and comments
/// are left as they are.
fn named_units(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 64);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '"' {
            // A string, with its escapes.
            out.push(c);
            i += 1;
            while i < chars.len() {
                out.push(chars[i]);
                if chars[i] == '\\' && i + 1 < chars.len() {
                    out.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                i += 1;
                if chars[i - 1] == '"' {
                    break;
                }
            }
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in RON.
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("/*");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("*/");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(chars[i]);
                    i += 1;
                }
            }
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let follows = chars.get(j).copied();
            let keep = c.is_ascii_digit()
                || matches!(follows, Some(':' | '(' | '"' | '#'))
                || matches!(word.as_str(), "true" | "false" | "None" | "Some" | "inf" | "NaN");
            if keep {
                out.push_str(&word);
            } else {
                out.push('"');
                out.push_str(&word);
                out.push('"');
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
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
            "    vips: [\n",
            "    vips: [\n        (addr: \"192.0.2.101\", tcp_ports: [80]),\n",
        );
        assert_eq!(edits(BASE, &vip).unwrap().need_restart, ["vips"]);
        // Port rules choose which node takes a connection: every member
        // must have the same, and a flow's value must not change under it,
        // so they need a restart (of every node), named.
        let rules = edit(
            "udp_ports: [53], rules: [\n            (ports: \"443\", affinity: client),\n        ]),\n    ],",
            "udp_ports: [53], rules: [\n            (ports: \"443\", affinity: network),\n        ]),\n    ],",
        );
        assert_eq!(edits(BASE, &rules).unwrap().need_restart, ["vips[1].rules[0].affinity"]);
        let more = edit(
            "udp_ports: [53], rules: [\n            (ports: \"443\", affinity: client),\n        ]),\n    ],",
            "udp_ports: [53], rules: [\n            (ports: \"443\", affinity: client),\n            (ports: \"80\", mode: single),\n        ]),\n    ],",
        );
        assert_eq!(edits(BASE, &more).unwrap().need_restart, ["vips[1].rules"]);
        assert!(!reloadable("vips[0].rules[0].affinity"));
    }

    #[test]
    fn an_edit_of_a_unit_variant_is_seen() {
        // RON's untyped value reads `ranges` and `rendezvous` alike.
        let a = "(sharing: (layout: ranges), x: Some(off), s: \"a: b // c\", /* d: e */ n: 1.5e3)";
        let b = "(sharing: (layout: rendezvous), x: Some(auto), s: \"a: b // c\", /* d: f */ n: 1.5e3)";
        let e = edits(a, b).unwrap();
        assert_eq!(e.need_restart, ["sharing.layout", "x"]);
        assert_eq!(
            named_units(a),
            "(sharing: (layout: \"ranges\"), x: Some(\"off\"), s: \"a: b // c\", /* d: e */ n: 1.5e3)"
        );
        assert_eq!(edits(a, a).unwrap(), Edits::default());
        // The shipped configuration reads the same either way but for
        // the names.
        assert_eq!(edits(BASE, BASE).unwrap(), Edits::default());
        for text in [
            BASE,
            include_str!("../configs/peer-node.ron"),
            include_str!("../configs/two-segments.ron"),
        ] {
            let named = named_units(text);
            let value = ron::Options::default()
                .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
                .from_str::<ron::Value>(&named);
            assert!(value.is_ok(), "{named}");
        }
        // A rule's affinity edited: named as needing a restart.
        let rules = BASE.replacen(
            "(ports: \"443\", affinity: client)",
            "(ports: \"443\", affinity: network)",
            1,
        );
        assert_eq!(edits(BASE, &rules).unwrap().need_restart, ["vips[0].rules[0].affinity"]);
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
