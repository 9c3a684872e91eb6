//! EAL's lcore lists, read the way EAL reads them, so that a list EAL would
//! refuse, or one that leaves no lcore for a worker, is refused before EAL
//! starts.
//!
//! `-l` takes "2,3", "2-5" or "0,2-3" (lcore N runs on CPU N); `--lcores`,
//! which the node uses when the list has an `@`, maps lcores to CPUs:
//! "0@0,1@1,2@1", "(0,1)@2", "3@(0-1)".

use std::collections::BTreeSet;

/// EAL's RTE_MAX_LCORE in Debian's and the default DPDK build: lcore ids
/// must be below it.
pub const MAX_LCORE: u32 = 128;

/// The lcores of a list and the CPUs they run on.
#[derive(Debug, PartialEq, Eq)]
pub struct Lcores {
    /// The lcore ids.
    pub lcores: BTreeSet<u32>,
    /// The CPUs they run on.
    pub cpus: BTreeSet<u32>,
}

impl Lcores {
    /// Reads `text`; the error says what is wrong in words for an operator.
    pub fn parse(text: &str) -> Result<Lcores, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty: name the control lcore and at least one worker lcore, e.g. \"0,1\"".into());
        }
        let mapped = text.contains('@');
        if !mapped && text.contains(['(', ')']) {
            return Err(format!(
                "{text:?}: groups in parentheses need a CPU mapping (\"(0,1)@2\"), as EAL's --lcores takes them"
            ));
        }
        let mut lcores = BTreeSet::new();
        let mut cpus = BTreeSet::new();
        for element in split_top(text)? {
            let (left, right) = match element.split_once('@') {
                Some((l, r)) => (l, Some(r)),
                None => (element, None),
            };
            let set = group(left)?;
            match right {
                Some(r) => cpus.extend(group(r)?),
                None => cpus.extend(set.iter().copied()),
            }
            lcores.extend(set);
        }
        if let Some(big) = lcores.iter().find(|l| **l >= MAX_LCORE) {
            return Err(format!("lcore {big}: lcore ids go up to {} in EAL", MAX_LCORE - 1));
        }
        Ok(Lcores { lcores, cpus })
    }

    /// The control lcore: `main`, or else the lowest (EAL's default).
    pub fn main(&self, main: Option<u32>) -> Option<u32> {
        main.or_else(|| self.lcores.first().copied())
    }

    /// The lcores left for workers.
    pub fn workers(&self, main: Option<u32>) -> Vec<u32> {
        let m = self.main(main);
        self.lcores.iter().copied().filter(|l| Some(*l) != m).collect()
    }
}

/// Splits at the commas outside parentheses.
fn split_top(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("{text:?}: a ')' without its '('"));
                }
            }
            ',' if depth == 0 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("{text:?}: a '(' without its ')'"));
    }
    out.push(text[start..].trim());
    Ok(out)
}

/// "3", "2-5" or "(0,2-3)".
fn group(text: &str) -> Result<BTreeSet<u32>, String> {
    let text = text.trim();
    let inner = match text.strip_prefix('(') {
        Some(rest) => rest
            .strip_suffix(')')
            .ok_or_else(|| format!("{text:?}: a '(' without its ')'"))?,
        None => text,
    };
    let mut set = BTreeSet::new();
    for item in inner.split(',') {
        let item = item.trim();
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(item)?, number(item)?),
        };
        if a > b {
            return Err(format!("{item:?}: a range goes from low to high"));
        }
        if b >= 4096 {
            return Err(format!("{item:?}: no machine has that many CPUs"));
        }
        set.extend(a..=b);
    }
    Ok(set)
}

fn number(text: &str) -> Result<u32, String> {
    let text = text.trim();
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not an lcore number: EAL takes numbers and ranges such as \"2,3\" or \"2-5\""
        ));
    }
    text.parse().map_err(|_| format!("{text:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    #[test]
    fn reads_eal_lists_and_mappings() {
        let l = Lcores::parse("2,3").unwrap();
        assert_eq!((l.lcores.clone(), l.cpus.clone()), (set(&[2, 3]), set(&[2, 3])));
        assert_eq!(l.workers(None), vec![3]);
        assert_eq!(l.workers(Some(3)), vec![2]);
        assert_eq!(Lcores::parse("0,2-4").unwrap().lcores, set(&[0, 2, 3, 4]));
        let m = Lcores::parse("0@0,1@1,2@0").unwrap();
        assert_eq!((m.lcores, m.cpus), (set(&[0, 1, 2]), set(&[0, 1])));
        let g = Lcores::parse("(0,1)@2,3@(0-1)").unwrap();
        assert_eq!((g.lcores, g.cpus), (set(&[0, 1, 3]), set(&[0, 1, 2])));
    }

    #[test]
    fn refuses_what_eal_refuses() {
        for bad in [
            "",
            "two,three",
            "2,",
            "3-1",
            "2;3",
            "(0,1)",
            "0@(1",
            "0@0)",
            "200",
            "1-99999",
        ] {
            assert!(Lcores::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Lcores::parse("two,three").unwrap_err().contains("not an lcore number"));
    }
}
