//! The option parser of `pktgen` and `bench`: `--name value` pairs and
//! `--switch`es, nothing else. Kept by hand rather than derived with clap so
//! the commands behave as they always have: a usage error is a failure like
//! any other (exit 1, one line on stderr), `1_000` is a number, and the last
//! of a repeated option wins.

/// The program's name in messages.
pub const PROGRAM: &str = "synshare-bench";

/// A parsed command line: `--name value` pairs and `--switch`es, in order.
pub struct Opts {
    pairs: Vec<(String, Option<String>)>,
}

impl Opts {
    /// Parses `args` for `cmd`: `valued` options take a value, `switches`
    /// do not; anything else is an error.
    pub fn parse(cmd: &str, args: &[String], valued: &[&str], switches: &[&str]) -> Result<Opts, String> {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if valued.contains(&a.as_str()) {
                let v = it.next().ok_or_else(|| format!("{PROGRAM} {cmd}: {a} needs a value"))?;
                pairs.push((a.clone(), Some(v.clone())));
            } else if switches.contains(&a.as_str()) {
                pairs.push((a.clone(), None));
            } else {
                return Err(format!(
                    "{PROGRAM} {cmd}: unknown argument {a:?} (see {PROGRAM} {cmd} --help)"
                ));
            }
        }
        Ok(Opts { pairs })
    }

    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// True when the switch `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// The value of `name` parsed as a `T`, or `default`.
    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .replace('_', "")
                .parse()
                .map_err(|_| format!("{name} {v:?}: not a valid number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<Opts, String> {
        let args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        Opts::parse("pktgen", &args, &["--flows"], &["--json"])
    }

    #[test]
    fn the_last_value_wins_and_numbers_may_have_underscores() {
        let o = parse(&["--flows", "5", "--json", "--flows", "1_000"]).expect("parses");
        assert_eq!(o.num("--flows", 0u64), Ok(1000));
        assert!(o.has("--json"));
        assert_eq!(o.num("--absent", 7u64), Ok(7));
    }

    #[test]
    fn errors_name_the_program_and_the_command() {
        let e = parse(&["--bogus"]).err().expect("refused");
        assert_eq!(
            e,
            "synshare-bench pktgen: unknown argument \"--bogus\" (see synshare-bench pktgen --help)"
        );
        let e = parse(&["--flows"]).err().expect("refused");
        assert_eq!(e, "synshare-bench pktgen: --flows needs a value");
        let o = parse(&["--flows", "abc"]).expect("parses");
        assert_eq!(
            o.num("--flows", 0u64),
            Err("--flows \"abc\": not a valid number".into())
        );
    }
}
