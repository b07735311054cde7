//! Diagnostics of the scenario loader, rendered like rustc/cargo.
//!
//! Validation works on key paths (`link[1].between`), not on byte offsets: a diagnostic names
//! the key it is about and is placed on a line only at the end, by looking the path up in the
//! file as the user wrote it. That is what lets a run whose text was edited by a sweep or by
//! `--set` still point at the user's own lines: a path that an override wrote is placed on the
//! override instead (its `[sweep]` entry, or no line for a command-line flag).
//!
//! When the exact key does not exist (a required key is missing), the nearest enclosing table
//! that does is shown instead, so every diagnostic inside the file has a line.

use std::fmt;
use std::ops::Range;

use toml_edit::{Item, Key, Table, TableLike, Value};

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root to a key, e.g. `rollout.canary.steps[2].weight`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn key(&self, k: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub(crate) fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
    pub(crate) fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Whether a diagnostic is about a key itself (unknown key) or about its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Point {
    Key,
    Value,
}

/// A diagnostic before it is placed on a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Diag {
    pub(crate) message: String,
    pub(crate) path: Option<KeyPath>,
    pub(crate) point: Point,
    pub(crate) hint: Option<String>,
    /// A byte range in the original text, when known directly (syntax errors, sweep entries).
    pub(crate) span: Option<Range<usize>>,
    /// Not in the file (a command-line override): keep the path but show no line.
    pub(crate) detached: bool,
}

impl Diag {
    pub(crate) fn at(path: KeyPath, point: Point, message: impl Into<String>) -> Diag {
        Diag {
            message: message.into(),
            path: Some(path),
            point,
            hint: None,
            span: None,
            detached: false,
        }
    }
    pub(crate) fn bare(message: impl Into<String>) -> Diag {
        Diag {
            message: message.into(),
            path: None,
            point: Point::Value,
            hint: None,
            span: None,
            detached: false,
        }
    }
    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Diag {
        self.hint = Some(hint.into());
        self
    }
}

/// One problem found in a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    /// Where in the scenario, e.g. `link[1].between` (array elements 0-based).
    pub key_path: Option<String>,
    /// 1-based; None when the problem is not in the file (a command-line override, an I/O error).
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    pub hint: Option<String>,
    /// The file name as given, or the name passed to `parse_experiment`.
    pub source_name: String,
}

/// The source line shown under a diagnostic and the part of it to underline.
#[derive(Clone, Debug)]
struct Snippet {
    text: String,
    caret_col: usize,
    caret_len: usize,
}

/// Why a scenario could not be loaded: one or more diagnostics, in file order where they have
/// lines. `Display` renders them like rustc does.
#[derive(Clone, Debug)]
pub struct ScenarioError {
    diagnostics: Vec<Diagnostic>,
    snippets: Vec<Option<Snippet>>,
}

impl ScenarioError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Places `diags` in `text` (the file as written). Sorted by line, unplaced ones last;
    /// exact duplicates are dropped.
    pub(crate) fn build(
        diags: Vec<Diag>,
        text: &str,
        doc: Option<&Table>,
        source_name: &str,
    ) -> ScenarioError {
        let mut placed: Vec<(Diagnostic, Option<Snippet>)> = Vec::new();
        for d in diags {
            let span = d.span.clone().or_else(|| match (&d.path, doc) {
                (Some(p), Some(doc)) if !d.detached => locate(doc, p, d.point),
                _ => None,
            });
            let (line, column, snippet) = match span {
                Some(s) => {
                    let (line, col, snip) = line_col(text, s);
                    (Some(line), Some(col), Some(snip))
                }
                None => (None, None, None),
            };
            let diag = Diagnostic {
                message: d.message,
                key_path: d.path.as_ref().map(ToString::to_string),
                line,
                column,
                hint: d.hint,
                source_name: source_name.to_string(),
            };
            if !placed.iter().any(|(p, _)| *p == diag) {
                placed.push((diag, snippet));
            }
        }
        placed.sort_by_key(|(d, _)| (d.line.is_none(), d.line, d.column));
        let (diagnostics, snippets) = placed.into_iter().unzip();
        ScenarioError {
            diagnostics,
            snippets,
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, snip)) in self.diagnostics.iter().zip(&self.snippets).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "error: {}", d.message)?;
            let gutter = d.line.map_or(1, |l| l.to_string().len());
            let pad = " ".repeat(gutter);
            match (d.line, d.column) {
                (Some(line), Some(col)) => writeln!(f, "{pad}--> {}:{line}:{col}", d.source_name)?,
                _ => writeln!(f, "{pad}--> {}", d.source_name)?,
            }
            if let (Some(line), Some(s)) = (d.line, snip) {
                writeln!(f, "{pad} |")?;
                writeln!(f, "{line} | {}", s.text)?;
                writeln!(
                    f,
                    "{pad} | {}{}",
                    " ".repeat(s.caret_col - 1),
                    "^".repeat(s.caret_len)
                )?;
            }
            if let Some(h) = &d.hint {
                writeln!(f, "{pad} = hint: {h}")?;
            }
        }
        let n = self.diagnostics.len();
        if n > 1 {
            writeln!(f, "\nerror: the scenario has {n} errors")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// 1-based line and column of `span.start`, and the snippet for it (the underline stops at the
/// end of the line).
fn line_col(text: &str, span: Range<usize>) -> (usize, usize, Snippet) {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[..start].matches('\n').count() + 1;
    let col = text[line_start..start].chars().count() + 1;
    let end = floor_char_boundary(text, span.end.clamp(start, line_end));
    let caret_len = text[start..end].trim_end().chars().count().max(1);
    let snippet = Snippet {
        text: text[line_start..line_end].trim_end().to_string(),
        caret_col: col,
        caret_len,
    };
    (line, col, snippet)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A node of a parsed document on the way down a key path.
#[derive(Clone, Copy)]
pub(crate) enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    pub(crate) fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }
    pub(crate) fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Table(t) => Some(t),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn TableLike),
        }
    }
    pub(crate) fn child(self, seg: &Seg) -> Option<(Option<&'a Key>, Node<'a>)> {
        match seg {
            Seg::Key(k) => {
                let (key, item) = self.table_like()?.get_key_value(k)?;
                Some((Some(key), Node::Item(item)))
            }
            Seg::Index(i) => {
                let arr_item = match self {
                    Node::Item(Item::ArrayOfTables(a)) => {
                        return a.get(*i).map(|t| (None, Node::Table(t)))
                    }
                    Node::Item(Item::Value(v)) | Node::Value(v) => v.as_array()?,
                    _ => return None,
                };
                arr_item.get(*i).map(|v| (None, Node::Value(v)))
            }
        }
    }
}

/// The byte range that best shows `path` in `doc`: the key or the value itself if present,
/// otherwise the nearest enclosing table or key that has a position.
pub(crate) fn locate(doc: &Table, path: &KeyPath, point: Point) -> Option<Range<usize>> {
    let mut node = Node::Table(doc);
    // Candidate spans from the outside in; the last one found wins.
    let mut best: Option<Range<usize>> = None;
    for (i, seg) in path.0.iter().enumerate() {
        let Some((key, child)) = node.child(seg) else {
            return best;
        };
        let last = i + 1 == path.0.len();
        let key_span = key.and_then(Key::span);
        let here = if last && point == Point::Key {
            key_span.or_else(|| child.span())
        } else {
            child.span().or(key_span)
        };
        if here.is_some() {
            best = here;
        }
        node = child;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> toml_edit::ImDocument<String> {
        toml_edit::ImDocument::parse(text.to_string()).expect("valid toml")
    }

    #[test]
    fn locates_keys_values_and_falls_back_to_the_enclosing_table() {
        let text = "[scenario]\nname = \"x\"\n\n[[link]]\nbetween = [\"a\", \"b\"]\n\n[[link]]\ndelay = \"1ms\"\n";
        let d = doc(text);
        let p = KeyPath::default().key("link").index(1).key("delay");
        let s = locate(d.as_table(), &p, Point::Key).expect("found");
        assert_eq!(line_col(text, s).0, 8);
        let s = locate(d.as_table(), &p, Point::Value).expect("found");
        assert_eq!(&text[s], "\"1ms\"");
        // A missing key is shown at its table's header.
        let p = KeyPath::default().key("link").index(1).key("between");
        let s = locate(d.as_table(), &p, Point::Value).expect("found");
        let (line, col, snip) = line_col(text, s);
        assert_eq!((line, col, snip.text.as_str()), (7, 1, "[[link]]"));
        let p = KeyPath::default()
            .key("link")
            .index(0)
            .key("between")
            .index(1);
        let s = locate(d.as_table(), &p, Point::Value).expect("found");
        assert_eq!(&text[s], "\"b\"");
    }

    #[test]
    fn renders_like_rustc() {
        let text = "[scenario]\nnam = \"x\"\n";
        let d = doc(text);
        let diag = Diag::at(
            KeyPath::default().key("scenario").key("nam"),
            Point::Key,
            "unknown key `nam` in [scenario]",
        )
        .with_hint("did you mean `name`?");
        let e = ScenarioError::build(vec![diag], text, Some(d.as_table()), "x.toml");
        assert_eq!(
            e.to_string(),
            "error: unknown key `nam` in [scenario]\n --> x.toml:2:1\n  |\n2 | nam = \"x\"\n  | ^^^\n  = hint: did you mean `name`?\n"
        );
        assert_eq!(e.diagnostics()[0].key_path.as_deref(), Some("scenario.nam"));
    }

    #[test]
    fn columns_count_characters_and_spans_stop_at_line_end() {
        let text = "a = \"µµ\" # x\nb = 1\n";
        let start = text.find('#').expect("has #");
        let (line, col, snip) = line_col(text, start..text.len());
        assert_eq!((line, col, snip.caret_len), (1, 10, 3));
    }
}
