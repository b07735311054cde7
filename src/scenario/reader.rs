//! Typed, error-collecting reads from a parsed TOML table.
//!
//! A [`Tbl`] wraps one table of the document together with its key path and the keys the format
//! allows there (from `schema`). Creating it reports every key that is not allowed, with a "did
//! you mean"; each getter reports a wrong type or an unparsable unit and returns `None`, so
//! validation carries on and the user sees all problems of a file at once.

use std::path::Path;

use toml_edit::{Item, TableLike, Value};

use super::diag::{Diag, KeyPath, Point};
use super::schema::{self, Field};
use super::units::UnitError;

/// Collects diagnostics during validation.
#[derive(Default)]
pub(crate) struct Cx<'b> {
    pub(crate) diags: Vec<Diag>,
    /// Directory that relative paths (empirical distributions, traces) are resolved against.
    pub(crate) base: Option<&'b Path>,
}

impl Cx<'_> {
    pub(crate) fn err(&mut self, path: KeyPath, message: impl Into<String>) {
        self.diags.push(Diag::at(path, Point::Value, message));
    }
    pub(crate) fn err_hint(
        &mut self,
        path: KeyPath,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags
            .push(Diag::at(path, Point::Value, message).with_hint(hint));
    }
}

/// "a string", "an integer", … for type errors.
pub(crate) fn type_phrase(item: &Item) -> String {
    let name = match item {
        Item::Value(v) => v.type_name(),
        other => other.type_name(),
    };
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// One table of the document, with the keys allowed in it.
#[derive(Clone)]
pub(crate) struct Tbl<'d> {
    t: &'d dyn TableLike,
    pub(crate) path: KeyPath,
    fields: &'static [Field],
    /// How messages name this table: `[scenario]`, `[[link]] #2`, `rollout.canary.steps[0]`.
    pub(crate) what: String,
}

impl<'d> Tbl<'d> {
    /// Wraps `t` and reports its keys that `fields` does not list.
    pub(crate) fn new(
        cx: &mut Cx<'_>,
        t: &'d dyn TableLike,
        path: KeyPath,
        fields: &'static [Field],
        what: String,
    ) -> Tbl<'d> {
        for (key, _) in t.iter() {
            if schema::find(fields, key).is_none() {
                let mut d = Diag::at(
                    path.key(key),
                    Point::Key,
                    format!("unknown key `{key}` in {what}"),
                );
                d.hint = Some(match schema::did_you_mean(key, schema::names(fields)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("expected one of {}", quoted_list(schema::names(fields))),
                });
                cx.diags.push(d);
            }
        }
        Tbl {
            t,
            path,
            fields,
            what,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'d Item> {
        debug_assert!(
            schema::find(self.fields, key).is_some(),
            "key `{key}` missing from the schema"
        );
        self.t.get(key).filter(|i| !i.is_none())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn at(&self, key: &str) -> KeyPath {
        self.path.key(key)
    }

    /// Reports a missing required key (shown at the table) and returns `None`.
    pub(crate) fn missing<T>(&self, cx: &mut Cx<'_>, key: &str) -> Option<T> {
        cx.err(
            self.at(key),
            format!("missing required key `{key}` in {}", self.what),
        );
        None
    }

    fn wrong_type<T>(&self, cx: &mut Cx<'_>, key: &str, item: &Item, expected: &str) -> Option<T> {
        cx.err(
            self.at(key),
            format!(
                "`{key}` in {} must be {expected}, not {}",
                self.what,
                type_phrase(item)
            ),
        );
        None
    }

    pub(crate) fn str(&self, cx: &mut Cx<'_>, key: &str) -> Option<&'d str> {
        let item = self.get(key)?;
        match item.as_str() {
            Some(s) => Some(s),
            None => self.wrong_type(cx, key, item, "a string"),
        }
    }

    pub(crate) fn req_str(&self, cx: &mut Cx<'_>, key: &str) -> Option<&'d str> {
        if self.has(key) {
            self.str(cx, key)
        } else {
            self.missing(cx, key)
        }
    }

    pub(crate) fn bool(&self, cx: &mut Cx<'_>, key: &str) -> Option<bool> {
        let item = self.get(key)?;
        match item.as_bool() {
            Some(b) => Some(b),
            None => self.wrong_type(cx, key, item, "true or false"),
        }
    }

    /// An integer in `lo..=hi`.
    pub(crate) fn int(&self, cx: &mut Cx<'_>, key: &str, lo: i64, hi: i64) -> Option<i64> {
        let item = self.get(key)?;
        let Some(v) = item.as_integer() else {
            return self.wrong_type(cx, key, item, "an integer");
        };
        if (lo..=hi).contains(&v) {
            Some(v)
        } else {
            cx.err(
                self.at(key),
                format!(
                    "`{key}` in {} must be between {lo} and {hi}, not {v}",
                    self.what
                ),
            );
            None
        }
    }

    pub(crate) fn u32(&self, cx: &mut Cx<'_>, key: &str, lo: u32) -> Option<u32> {
        self.int(cx, key, i64::from(lo), i64::from(u32::MAX))
            .and_then(|v| u32::try_from(v).ok())
    }

    /// A number (integer or float).
    pub(crate) fn number(&self, cx: &mut Cx<'_>, key: &str) -> Option<f64> {
        let item = self.get(key)?;
        match number(item.as_value()) {
            Some(v) => Some(v),
            None => self.wrong_type(cx, key, item, "a number"),
        }
    }

    /// A unit written as a string, parsed by `parse`; `kind` names it in messages.
    pub(crate) fn unit<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        kind: &str,
        parse: impl FnOnce(&str) -> Result<T, UnitError>,
    ) -> Option<T> {
        let item = self.get(key)?;
        let Some(s) = item.as_str() else {
            return self.wrong_type(cx, key, item, &format!("{kind} written as a string"));
        };
        match parse(s) {
            Ok(v) => Some(v),
            Err(e) => {
                cx.err_hint(
                    self.at(key),
                    format!("invalid {kind} for `{key}` in {}", self.what),
                    e.0,
                );
                None
            }
        }
    }

    /// One of `choices` (a string).
    pub(crate) fn choice<T: Copy>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let s = self.str(cx, key)?;
        if let Some((_, v)) = choices.iter().find(|(n, _)| *n == s) {
            return Some(*v);
        }
        let names = choices.iter().map(|(n, _)| *n);
        let hint = match schema::did_you_mean(s, names.clone()) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!("expected one of {}", quoted_list(names)),
        };
        cx.err_hint(
            self.at(key),
            format!("invalid `{key}` `{s}` in {}", self.what),
            hint,
        );
        None
    }

    /// A sub-table (standard or inline) with its own allowed keys.
    pub(crate) fn table(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        fields: &'static [Field],
        what: String,
    ) -> Option<Tbl<'d>> {
        let item = self.get(key)?;
        match item.as_table_like() {
            Some(t) => Some(Tbl::new(cx, t, self.at(key), fields, what)),
            None => self.wrong_type(cx, key, item, "a table"),
        }
    }

    /// The elements of an array of tables (`[[link]]`, or `link = [{…}, …]`).
    pub(crate) fn elements(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        fields: &'static [Field],
        what: impl Fn(usize) -> String,
    ) -> Vec<Tbl<'d>> {
        let Some(item) = self.get(key) else {
            return Vec::new();
        };
        let path = self.at(key);
        if let Some(aot) = item.as_array_of_tables() {
            return aot
                .iter()
                .enumerate()
                .map(|(i, t)| Tbl::new(cx, t, path.index(i), fields, what(i)))
                .collect();
        }
        let Some(arr) = item.as_array() else {
            return self
                .wrong_type(cx, key, item, &format!("an array of tables (`[[{key}]]`)"))
                .unwrap_or_default();
        };
        let mut out = Vec::new();
        for (i, v) in arr.iter().enumerate() {
            match v.as_inline_table() {
                Some(t) => out.push(Tbl::new(cx, t, path.index(i), fields, what(i))),
                None => cx.err(
                    path.index(i),
                    format!("{} must be a table, not {}", what(i), v.type_name()),
                ),
            }
        }
        out
    }

    /// The entries of a table of tables keyed by name (`[service.web]`), in file order.
    pub(crate) fn named(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        fields: &'static [Field],
        what: impl Fn(&str) -> String,
    ) -> Vec<(&'d str, Tbl<'d>)> {
        let Some(item) = self.get(key) else {
            return Vec::new();
        };
        let Some(t) = item.as_table_like() else {
            return self
                .wrong_type(cx, key, item, "a table")
                .unwrap_or_default();
        };
        let path = self.at(key);
        let mut out = Vec::new();
        for (name, entry) in t.iter() {
            match entry.as_table_like() {
                Some(et) => out.push((name, Tbl::new(cx, et, path.key(name), fields, what(name)))),
                None => cx.err(
                    path.key(name),
                    format!("{} must be a table, not {}", what(name), type_phrase(entry)),
                ),
            }
        }
        out
    }
}

/// An integer or float value as `f64`.
pub(crate) fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Integer(i) => Some(*i.value() as f64),
        Value::Float(f) => Some(*f.value()),
        _ => None,
    }
}

pub(crate) fn quoted_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
