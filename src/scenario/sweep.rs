//! Override paths (`[sweep]` keys and `--set KEY=VALUE`) and how they edit the scenario text.
//!
//! A path is written in the file's own terms, with `.` between steps: `rollout.strategy`,
//! `service.web.versions.v2.error_rate`, `workload.users.rate` (array-of-tables elements by
//! `name`), `link.0.delay` or `link.client-gw.delay` (links by 0-based index or by their two
//! ends joined with `-`, in either order), `event.1.at` (events by index). A path may only
//! address a key the format accepts (the `schema` tree) inside an element that exists; it is
//! resolved to a concrete [`KeyPath`] once, against the file as written.
//!
//! Edits go through `toml_edit`, so every line an override does not touch keeps its text and
//! its comments, and an edited value keeps its surrounding whitespace and trailing comment.

use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use super::diag::{KeyPath, Node, Seg};
use super::schema::{self, Addr, Field, Kind};

/// Why a path does not address a settable key: a message and an optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathError {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

fn perr(message: impl Into<String>, hint: Option<String>) -> PathError {
    PathError {
        message: message.into(),
        hint,
    }
}

fn node_at<'a>(root: &'a Table, path: &KeyPath) -> Option<Node<'a>> {
    let mut node = Node::Table(root);
    for seg in &path.0 {
        node = node.child(seg)?.1;
    }
    Some(node)
}

/// The elements of the array of tables at `path`, as table views.
fn elements<'a>(root: &'a Table, path: &KeyPath) -> Vec<&'a dyn TableLike> {
    (0..)
        .map_while(|i| node_at(root, &path.index(i)).and_then(Node::table_like))
        .collect()
}

/// Resolves `text` (e.g. `workload.users.rate`) against `root` (the file as written).
pub(crate) fn resolve(root: &Table, text: &str) -> Result<KeyPath, PathError> {
    let segs: Vec<&str> = text.split('.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(perr(
            format!("`{text}` is not a key path"),
            Some("write e.g. `rollout.strategy` or `link.0.delay`".into()),
        ));
    }
    let mut fields: &'static [Field] = schema::ROOT;
    let mut path = KeyPath::default();
    let mut i = 0;
    while i < segs.len() {
        let name = segs[i];
        let shown = segs[..=i].join(".");
        let field = match schema::find(fields, name) {
            Some(f) if !(i == 0 && name == "sweep") => f,
            _ => {
                let hint =
                    schema::did_you_mean(name, schema::names(fields).filter(|n| *n != "sweep"))
                        .map(|s| {
                            format!(
                                "did you mean `{}`?",
                                segs[..i]
                                    .iter()
                                    .copied()
                                    .chain([s])
                                    .collect::<Vec<_>>()
                                    .join(".")
                            )
                        });
                let within = if i == 0 {
                    String::new()
                } else {
                    format!(" in `{}`", segs[..i].join("."))
                };
                return Err(perr(
                    format!("`{text}`: unknown key `{name}`{within}"),
                    hint,
                ));
            }
        };
        path = path.key(name);
        i += 1;
        let last = i == segs.len();
        match &field.kind {
            Kind::Leaf => {
                if !last {
                    return Err(perr(
                        format!("`{text}`: `{shown}` is a value and has no keys below it"),
                        None,
                    ));
                }
            }
            Kind::Table(sub) => {
                if !last {
                    if let Some(n) = node_at(root, &path) {
                        if n.table_like().is_none() {
                            return Err(perr(
                                format!(
                                    "`{text}`: `{shown}` is written as a single value in the file"
                                ),
                                Some(format!("override `{shown}` as a whole")),
                            ));
                        }
                    }
                }
                fields = sub;
            }
            Kind::Named(sub) => {
                let Some(entry) = segs.get(i) else {
                    return Err(perr(
                        format!("`{text}`: name an entry after `{shown}.`"),
                        None,
                    ));
                };
                let existing: Vec<&str> = node_at(root, &path)
                    .and_then(Node::table_like)
                    .map(|t| t.iter().map(|(k, _)| k).collect())
                    .unwrap_or_default();
                if !existing.contains(entry) {
                    let hint = schema::did_you_mean(entry, existing.iter().copied())
                        .map(|s| format!("did you mean `{shown}.{s}`?"));
                    return Err(perr(
                        format!("`{text}`: the file has no `{shown}.{entry}`"),
                        hint,
                    ));
                }
                path = path.key(entry);
                i += 1;
                if i == segs.len() {
                    return Err(perr(
                        format!("`{text}` names a whole table; address one of its keys"),
                        None,
                    ));
                }
                fields = sub;
            }
            Kind::Elements(sub, addr) => {
                let Some(sel) = segs.get(i) else {
                    return Err(perr(
                        format!(
                            "`{text}`: address an element after `{shown}.` (0-based index or name)"
                        ),
                        None,
                    ));
                };
                let elems = elements(root, &path);
                let index = select(&elems, sel, *addr).ok_or_else(|| {
                    perr(
                        format!("`{text}`: the file has no [[{name}]] `{sel}`"),
                        Some(selectors(&elems, name, *addr)),
                    )
                })?;
                path = path.index(index);
                i += 1;
                if i == segs.len() {
                    return Err(perr(
                        format!("`{text}` names a whole [[{name}]]; address one of its keys"),
                        None,
                    ));
                }
                fields = sub;
            }
        }
    }
    Ok(path)
}

fn element_name(t: &dyn TableLike) -> Option<&str> {
    t.get("name").and_then(Item::as_str)
}

fn element_ends(t: &dyn TableLike) -> Option<(&str, &str)> {
    let arr = t.get("between")?.as_array()?;
    Some((arr.get(0)?.as_str()?, arr.get(1)?.as_str()?))
}

/// The element `sel` addresses, by index or as `addr` allows; None if none or several match.
fn select(elems: &[&dyn TableLike], sel: &str, addr: Addr) -> Option<usize> {
    if let Ok(i) = sel.parse::<usize>() {
        return (i < elems.len()).then_some(i);
    }
    let matches: Vec<usize> = (0..elems.len())
        .filter(|&i| match addr {
            Addr::Name => element_name(elems[i]) == Some(sel),
            Addr::Ends => element_ends(elems[i])
                .is_some_and(|(a, b)| format!("{a}-{b}") == sel || format!("{b}-{a}") == sel),
            Addr::Index => false,
        })
        .collect();
    match matches[..] {
        [one] => Some(one),
        _ => None,
    }
}

fn selectors(elems: &[&dyn TableLike], name: &str, addr: Addr) -> String {
    if elems.is_empty() {
        return format!("the file has no [[{name}]]");
    }
    let mut names: Vec<String> = (0..elems.len()).map(|i| i.to_string()).collect();
    for e in elems {
        match addr {
            Addr::Name => names.extend(element_name(*e).map(str::to_string)),
            Addr::Ends => names.extend(element_ends(*e).map(|(a, b)| format!("{a}-{b}"))),
            Addr::Index => {}
        }
    }
    format!(
        "[[{name}]] elements are addressed as {}",
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Writes `value` at `path` (from [`resolve`]) into `doc`, creating tables on the way. An
/// existing value keeps its decoration (spacing, trailing comment).
pub(crate) fn apply(doc: &mut DocumentMut, path: &KeyPath, mut value: Value) -> Option<()> {
    let segs = &path.0;
    let (Seg::Key(last), init) = segs.split_last()? else {
        return None;
    };
    let mut cur: &mut dyn TableLike = doc.as_table_mut();
    let mut i = 0;
    while i < init.len() {
        let Seg::Key(k) = &init[i] else { return None };
        if let Some(Seg::Index(n)) = init.get(i + 1) {
            cur = match cur.get_mut(k)? {
                Item::ArrayOfTables(a) => a.get_mut(*n)?,
                Item::Value(Value::Array(a)) => a.get_mut(*n)?.as_inline_table_mut()?,
                _ => return None,
            };
            i += 2;
        } else {
            if !cur.get(k).is_some_and(Item::is_table_like) {
                cur.insert(k, Item::Table(Table::new()));
            }
            cur = cur.get_mut(k)?.as_table_like_mut()?;
            i += 1;
        }
    }
    match cur.get_mut(last) {
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            *value.decor_mut() = decor;
            *old = value;
        }
        Some(item) => {
            value.decor_mut().clear();
            *item = Item::Value(value);
        }
        None => {
            value.decor_mut().clear();
            cur.insert(last, Item::Value(value));
        }
    }
    Some(())
}

/// A value as a user wrote it, for `RunSpec::params`: strings without quotes, others as TOML.
pub(crate) fn shown(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => {
            let mut v = v.clone();
            v.decor_mut().clear();
            v.to_string().trim().to_string()
        }
    }
}

/// Parses a `--set` value as TOML, falling back to a plain string (`--set rollout.strategy=canary`).
pub(crate) fn parse_value(text: &str) -> Value {
    text.parse::<Value>().unwrap_or_else(|_| Value::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[scenario]
name = "x"

[[node]]
name = "client"

[[node]]
name = "gw"
kind = "gateway"

[service.web]
replicas = 4   # four

[service.web.versions.v1]
startup = "1s"

[[link]]
between = ["client", "gw"]
delay = "10ms"   # one way
jitter = "1ms"

[[workload]]
name = "users"
from = "client"
to = "web"
rate = "2000/s"
"#;

    fn doc() -> toml_edit::ImDocument<String> {
        toml_edit::ImDocument::parse(FILE.to_string()).expect("valid")
    }

    fn resolved(text: &str) -> String {
        resolve(doc().as_table(), text)
            .expect("resolves")
            .to_string()
    }

    #[test]
    fn paths_resolve_in_the_files_terms() {
        assert_eq!(resolved("rollout.strategy"), "rollout.strategy");
        assert_eq!(resolved("scenario.duration"), "scenario.duration");
        assert_eq!(
            resolved("service.web.versions.v1.error_rate"),
            "service.web.versions.v1.error_rate"
        );
        assert_eq!(resolved("workload.users.rate"), "workload[0].rate");
        assert_eq!(resolved("link.0.delay"), "link[0].delay");
        assert_eq!(resolved("link.client-gw.delay"), "link[0].delay");
        assert_eq!(resolved("link.gw-client.loss.p"), "link[0].loss.p");
        assert_eq!(resolved("node.gw.kind"), "node[1].kind");
        assert_eq!(resolved("rollout.canary.steps"), "rollout.canary.steps");
        assert_eq!(
            resolved("service.web.readiness.period"),
            "service.web.readiness.period"
        );
    }

    #[test]
    fn paths_to_unknown_keys_or_elements_are_refused() {
        let d = doc();
        let e = resolve(d.as_table(), "rollout.stratgy").expect_err("typo");
        assert_eq!(e.hint.as_deref(), Some("did you mean `rollout.strategy`?"));
        let e = resolve(d.as_table(), "workload.user.rate").expect_err("no such workload");
        assert!(
            e.hint.as_deref().is_some_and(|h| h.contains("`users`")),
            "{e:?}"
        );
        assert!(resolve(d.as_table(), "link.3.delay").is_err());
        assert!(resolve(d.as_table(), "service.api.replicas").is_err());
        assert!(resolve(d.as_table(), "service.web").is_err());
        assert!(resolve(d.as_table(), "sweep.repetitions").is_err());
        assert!(
            resolve(d.as_table(), "link.0.jitter.amount").is_err(),
            "jitter is a plain value here"
        );
        assert!(resolve(d.as_table(), "scenario.name.x").is_err());
        assert!(resolve(d.as_table(), "event.0.at").is_err(), "no events");
        assert!(resolve(d.as_table(), "rollout..at").is_err());
    }

    #[test]
    fn apply_keeps_untouched_lines_and_comments() {
        let d = doc();
        let mut m: DocumentMut = FILE.parse().expect("valid");
        for (k, v) in [
            ("service.web.replicas", "8"),
            ("link.0.delay", "\"20ms\""),
            ("rollout.rolling.max_surge", "1"),
        ] {
            let p = resolve(d.as_table(), k).expect("resolves");
            apply(&mut m, &p, parse_value(v)).expect("applies");
        }
        let out = m.to_string();
        assert!(out.contains("replicas = 8   # four\n"), "{out}");
        assert!(out.contains("delay = \"20ms\"   # one way\n"), "{out}");
        assert!(out.contains("[rollout.rolling]\nmax_surge = 1\n"), "{out}");
        let before: Vec<&str> = FILE.lines().collect();
        let after: Vec<&str> = out.lines().collect();
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 2, "{out}");
    }

    #[test]
    fn values_parse_as_toml_or_fall_back_to_strings() {
        assert_eq!(parse_value("8").as_integer(), Some(8));
        assert_eq!(parse_value("canary").as_str(), Some("canary"));
        assert_eq!(parse_value("\"1s\"").as_str(), Some("1s"));
        assert_eq!(
            shown(&parse_value("[{ weight = 5 }, { weight = 100 }]")),
            "[{ weight = 5 }, { weight = 100 }]"
        );
        assert_eq!(shown(&parse_value("\"4000/s\"")), "4000/s");
    }
}
