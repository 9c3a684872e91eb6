//! Where each field is written in a RON text, so that errors found after
//! parsing (a `main_lcore` not among the `lcores`, a peer that is a VIP)
//! carry `file:line:col` like syntax errors do.
//!
//! ron has no `Spanned<T>`, and its deserializer is borrowed mutably for
//! the whole of `deserialize`, so positions cannot be read while serde
//! walks the value. Instead this module scans the text once more, on its
//! own: a small recursive reader of RON's structure (comments, strings, raw
//! strings, structs, tuples, lists, maps, `Some(..)`) that records the
//! position of every value under the same path the validation names it by
//! (`segments[0].exchange.peers.3`, as `serde_path_to_error` writes paths).
//! The text has already parsed when it runs, so it needs no error handling
//! of its own: on anything it does not understand it stops, and the fields
//! after that point fall back to their parent's position.
//!
//! It also sees what serde cannot: a map key written twice (`peers: {2: ..,
//! 2: ..}`), which a `BTreeMap` silently keeps only the last of.

use std::collections::BTreeMap;

/// A 1-based line and column (in characters).
pub type Position = (usize, usize);

/// The positions of a text's values by field path.
#[derive(Debug, Default)]
pub struct Spans {
    at: BTreeMap<String, Position>,
    duplicates: Vec<(String, Position)>,
}

impl Spans {
    /// Scans `text`.
    pub fn scan(text: &str) -> Spans {
        let mut r = Reader {
            chars: text.chars().collect(),
            i: 0,
            line: 1,
            col: 1,
            spans: Spans::default(),
        };
        r.skip_trivia();
        // Inner attributes: `#![enable(implicit_some)]`.
        while r.peek() == Some('#') {
            while let Some(c) = r.bump() {
                if c == ']' {
                    break;
                }
            }
            r.skip_trivia();
        }
        let _ = r.value(String::new(), 0);
        r.spans
    }

    /// Where `path` is written.
    pub fn get(&self, path: &str) -> Option<Position> {
        self.at.get(path).copied()
    }

    /// Where `path` is written, or else its closest written parent.
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut p = path;
        loop {
            if let Some(pos) = self.at.get(p) {
                return Some(*pos);
            }
            if p.is_empty() {
                return None;
            }
            p = parent(p);
        }
    }

    /// Map keys written more than once: the path of the repeated entry and
    /// where it is written again.
    pub fn duplicates(&self) -> &[(String, Position)] {
        &self.duplicates
    }
}

/// `a.b[2]` → `a.b`; `a.b` → `a`; `a` → ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Nesting beyond this is not RON a configuration would contain.
const MAX_DEPTH: usize = 64;

struct Reader {
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
    spans: Spans,
}

/// The scan stops (the text is not what this reader understands).
struct Stop;

impl Reader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn expect(&mut self, c: char) -> Result<(), Stop> {
        if self.peek() == Some(c) {
            self.bump();
            Ok(())
        } else {
            Err(Stop)
        }
    }

    /// Skips whitespace and comments (`//` to the end of the line, and
    /// `/* */`, which nest in RON).
    fn skip_trivia(&mut self) {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                (Some('/'), Some('*')) => {
                    let mut depth = 0usize;
                    while let Some(c) = self.bump() {
                        if c == '/' && self.peek() == Some('*') {
                            self.bump();
                            depth += 1;
                        } else if c == '*' && self.peek() == Some('/') {
                            self.bump();
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                    }
                }
                _ => return,
            }
        }
    }

    fn ident(&mut self) -> String {
        let mut s = String::new();
        // Raw identifiers: r#name.
        if self.peek() == Some('r') && self.peek_at(1) == Some('#') {
            self.bump();
            self.bump();
        }
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        s
    }

    fn is_ident_start(c: char) -> bool {
        c.is_alphabetic() || c == '_'
    }

    /// A string, raw string or char literal; returns its text as written
    /// between the quotes (escapes are not decoded: keys are compared as
    /// written).
    fn literal(&mut self) -> Result<String, Stop> {
        let mut s = String::new();
        match self.peek() {
            Some('"') | Some('\'') => {
                let quote = self.bump().ok_or(Stop)?;
                loop {
                    match self.bump().ok_or(Stop)? {
                        '\\' => {
                            s.push('\\');
                            s.push(self.bump().ok_or(Stop)?);
                        }
                        c if c == quote => return Ok(s),
                        c => s.push(c),
                    }
                }
            }
            Some('r') | Some('b') => {
                // r"..", r#".."#, b"..", br"..".
                if self.peek() == Some('b') {
                    self.bump();
                    if self.peek() != Some('r') {
                        return self.literal();
                    }
                }
                self.expect('r')?;
                let mut hashes = 0;
                while self.peek() == Some('#') {
                    self.bump();
                    hashes += 1;
                }
                self.expect('"')?;
                loop {
                    let c = self.bump().ok_or(Stop)?;
                    if c == '"' && (0..hashes).all(|k| self.peek_at(k) == Some('#')) {
                        for _ in 0..hashes {
                            self.bump();
                        }
                        return Ok(s);
                    }
                    s.push(c);
                }
            }
            _ => Err(Stop),
        }
    }

    fn is_literal_start(&self) -> bool {
        matches!(
            (self.peek(), self.peek_at(1), self.peek_at(2)),
            (Some('"' | '\''), _, _)
                | (Some('r'), Some('"' | '#'), _)
                | (Some('b'), Some('"' | '\''), _)
                | (Some('b'), Some('r'), Some('"' | '#'))
        )
    }

    /// A number, `true`, an enum unit variant and the like: everything up
    /// to the next separator.
    fn atom(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, ',' | ')' | ']' | '}' | ':' | '(' | '[' | '{') {
                break;
            }
            s.push(c);
            self.bump();
        }
        s
    }

    /// Records `path` here (the first position wins: a value's own start).
    fn mark(&mut self, path: &str) {
        let pos = (self.line, self.col);
        self.spans.at.entry(path.to_owned()).or_insert(pos);
    }

    fn value(&mut self, path: String, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop);
        }
        self.skip_trivia();
        let first = self.peek().ok_or(Stop)?;
        self.mark(&path);
        match first {
            '(' => self.parens(&path, depth, false),
            '[' => self.list(&path, depth),
            '{' => self.map(&path, depth),
            _ if self.is_literal_start() => self.literal().map(|_| ()),
            c if Self::is_ident_start(c) => {
                let name = self.ident();
                self.skip_trivia();
                if self.peek() == Some('(') {
                    // `Some(x)` is x (as serde_path_to_error sees it); a
                    // named struct or an enum's tuple variant is what its
                    // parentheses hold.
                    self.parens(&path, depth, name == "Some")
                } else {
                    Ok(())
                }
            }
            _ => {
                self.atom();
                Ok(())
            }
        }
    }

    /// `( .. )`: a struct's fields, or a tuple's elements (`transparent`:
    /// the one element is the value itself).
    fn parens(&mut self, path: &str, depth: usize, transparent: bool) -> Result<(), Stop> {
        self.expect('(')?;
        self.skip_trivia();
        let is_struct = {
            // An identifier followed by a single ':' starts a field.
            let save = (self.i, self.line, self.col);
            let mut field = false;
            if self.peek().is_some_and(Self::is_ident_start) && !self.is_literal_start() {
                self.ident();
                self.skip_trivia();
                field = self.peek() == Some(':') && self.peek_at(1) != Some(':');
            }
            (self.i, self.line, self.col) = save;
            field
        };
        self.items(')', |p, index| {
            if is_struct {
                let name = p.ident();
                if name.is_empty() {
                    return Err(Stop);
                }
                p.skip_trivia();
                p.expect(':')?;
                p.value(join(path, &name), depth + 1)
            } else if transparent {
                p.value(path.to_owned(), depth + 1)
            } else {
                p.value(format!("{path}[{index}]"), depth + 1)
            }
        })
    }

    fn list(&mut self, path: &str, depth: usize) -> Result<(), Stop> {
        self.expect('[')?;
        self.items(']', |p, index| p.value(format!("{path}[{index}]"), depth + 1))
    }

    fn map(&mut self, path: &str, depth: usize) -> Result<(), Stop> {
        self.expect('{')?;
        let mut seen = std::collections::BTreeSet::new();
        self.items('}', |p, _| {
            let pos = (p.line, p.col);
            let key = if p.is_literal_start() { p.literal()? } else { p.atom() };
            if key.is_empty() {
                return Err(Stop);
            }
            let entry = join(path, &key);
            if !seen.insert(key) {
                p.spans.duplicates.push((entry.clone(), pos));
            }
            p.skip_trivia();
            p.expect(':')?;
            p.value(entry, depth + 1)
        })
    }

    /// The items of a `( )`, `[ ]` or `{ }` after its opening bracket, up to
    /// and with `close`: each read by `item` (given its index), separated
    /// by commas, a trailing comma allowed.
    fn items(&mut self, close: char, mut item: impl FnMut(&mut Self, usize) -> Result<(), Stop>) -> Result<(), Stop> {
        let mut index = 0;
        loop {
            self.skip_trivia();
            if self.peek() == Some(close) {
                self.bump();
                return Ok(());
            }
            item(self, index)?;
            index += 1;
            self.skip_trivia();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(c) if c == close => {}
                _ => return Err(Stop),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r##"#![enable(implicit_some)]
// A comment with (parens) and "quotes".
(
    name: "n1", /* nested /* comment */ here */
    eal: (lcores: "2,3", main_lcore: Some(4)),
    vips: [(addr: "192.0.2.1", tcp_ports: [80]), (addr: "192.0.2.2")],
    exchange: Some((peers: {1: "192.0.2.21:7946", 2: "a", 1: "b"}, key: r#"k")"#)),
    availability: (cpu: cgroup("x"), temperature: ("/t", 70.0, 90.0)),
)"##;

    #[test]
    fn finds_fields_elements_entries_and_parents() {
        let s = Spans::scan(TEXT);
        assert_eq!(s.find("name"), Some((4, 11)));
        assert_eq!(s.find("eal.lcores"), Some((5, 19)));
        assert_eq!(s.find("eal.main_lcore"), Some((5, 38)));
        assert_eq!(s.find("vips[1].addr"), Some((6, 57)));
        assert_eq!(s.find("vips[0].tcp_ports[0]"), Some((6, 44)));
        assert_eq!(s.find("exchange.peers.2"), Some((7, 54)));
        assert_eq!(s.find("exchange.key"), Some((7, 73)));
        assert_eq!(s.find("availability.temperature[2]"), Some((8, 64)));
        // Not written: its closest written parent.
        assert_eq!(s.find("eal.memory_mb"), s.find("eal"));
        assert_eq!(s.find("workers"), Some((3, 1)));
    }

    #[test]
    fn reports_a_map_key_written_twice() {
        let s = Spans::scan(TEXT);
        assert_eq!(s.duplicates(), &[("exchange.peers.1".to_owned(), (7, 59))]);
    }

    #[test]
    fn stops_quietly_on_what_it_does_not_understand() {
        let s = Spans::scan("(a: 1, b: ) c: 2)");
        assert_eq!(s.find("a"), Some((1, 5)));
        assert_eq!(s.find("c"), Some((1, 1)));
        assert!(Spans::scan("").find("x").is_none());
        // Deep nesting stops, without overflowing the stack.
        let deep = "[".repeat(100_000);
        assert!(Spans::scan(&deep).find("[0]").is_some());
    }
}
