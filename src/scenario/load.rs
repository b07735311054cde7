//! Loading a scenario file: overrides, sweep expansion, validation of every run.
//!
//! Guarantees:
//! - Nothing is returned unless every run of the experiment validates, so bad input never
//!   deploys anything. All problems found are reported together; a TOML syntax error stops at
//!   the first.
//! - Runs come in a fixed order: the cartesian product of the `[sweep]` lists, the first swept
//!   key outermost, repetitions innermost. Run `i`'s seed is the scenario seed plus its
//!   repetition.
//! - `RunSpec::resolved_toml` is the file with the run's overrides written in (and without
//!   `[sweep]`); it parses back, without options, to the run's `Scenario`.
//! - Overrides are applied in this order: `--set`, `--seed`, `--backend`, then the sweep values
//!   of the run. A `--set` of a swept key pins that key to the one value.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml_edit::{DocumentMut, ImDocument, Item, Table, Value};

use super::diag::{Diag, KeyPath, Point, ScenarioError};
use super::reader::Cx;
use super::sweep;
use super::types::{BackendKind, Experiment, RunSpec, Scenario};
use super::validate::validate;

/// Command-line adjustments to a scenario file.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `--set KEY=VALUE` pairs, KEY an override path (see `sweep`), VALUE parsed as a TOML
    /// value and taken as a string when it is not one.
    pub overrides: Vec<(String, String)>,
    /// Replaces `scenario.seed`.
    pub seed: Option<u64>,
    /// Replaces `scenario.backend`.
    pub backend: Option<BackendKind>,
}

/// Refuse experiments larger than this rather than exhaust memory on a typo.
const MAX_RUNS: usize = 100_000;

/// Where an override came from, for placing the diagnostics its value causes.
#[derive(Clone, Debug)]
enum Origin {
    /// A `[sweep]` entry: the span of its key in the file.
    Sweep(Option<Range<usize>>),
    /// A command-line flag, as the user wrote it.
    Flag(String),
}

/// One swept key.
struct Axis {
    key: String,
    path: KeyPath,
    values: Vec<Value>,
    origin: Origin,
}

/// Reads the scenario at `path`; relative paths inside it are relative to its directory.
pub fn load_experiment(path: &Path, opts: &LoadOptions) -> Result<Experiment, ScenarioError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        ScenarioError::build(
            vec![Diag::bare(format!("cannot read scenario file {name}: {e}"))],
            "",
            None,
            &name,
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // Place the error on the first bad byte: the valid prefix gives its line and column.
        let at = e.utf8_error().valid_up_to();
        let prefix = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
        let mut d = Diag::bare(format!(
            "the file is not UTF-8: byte {at} (0x{:02x}) starts no valid character",
            e.as_bytes()[at]
        ))
        .with_hint("TOML files are UTF-8; re-save the file as UTF-8");
        d.span = Some(at..at);
        ScenarioError::build(vec![d], &prefix, None, &name)
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parse_experiment(&text, &name, Some(base), opts)
}

/// Places a problem found after loading (a route check, the cost check) on key `key` of the
/// scenario file at `path`, written as a `--set` path (`workload.users.to`), so it gets a
/// line and column like every other diagnostic. Unplaced if the key is not in the file.
pub fn diagnose_at(path: &Path, key: &str, message: String, hint: Option<String>) -> ScenarioError {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let doc = ImDocument::parse(text.clone()).ok();
    let mut d = match doc.as_ref().map(|d| sweep::resolve(d.as_table(), key)) {
        Some(Ok(p)) => Diag::at(p, Point::Value, message),
        _ => Diag::bare(message),
    };
    d.hint = hint;
    ScenarioError::build(vec![d], &text, doc.as_ref().map(|d| d.as_table()), &name)
}

/// Parses scenario text; `source_name` names it in diagnostics, `base_dir` is where relative
/// paths point (the current directory when None).
pub fn parse_experiment(
    text: &str,
    source_name: &str,
    base_dir: Option<&Path>,
    opts: &LoadOptions,
) -> Result<Experiment, ScenarioError> {
    let fail =
        |diags: Vec<Diag>, doc: Option<&Table>| ScenarioError::build(diags, text, doc, source_name);
    let orig = match ImDocument::parse(text.to_string()) {
        Ok(d) => d,
        Err(e) => return Err(fail(vec![syntax_error(&e)], None)),
    };
    let root = orig.as_table();
    let mut diags = Vec::new();
    let (mut axes, mut repetitions) = read_sweep(root, &mut diags);

    let mut fixed: Vec<(KeyPath, Value, Origin)> = Vec::new();
    for (k, v) in &opts.overrides {
        let origin = Origin::Flag(format!("--set {k}={v}"));
        // The one [sweep] key a run can override: fewer repetitions for a quick look.
        if k == "sweep.repetitions" {
            match v.trim().parse::<u32>() {
                Ok(n) if n >= 1 => repetitions = n,
                _ => diags.push(
                    Diag::bare(format!(
                        "--set {k}={v}: repetitions must be a whole number ≥ 1"
                    ))
                    .with_hint("e.g. --set sweep.repetitions=1"),
                ),
            }
            continue;
        }
        match sweep::resolve(root, k) {
            Ok(p) => {
                let value = sweep::parse_value(v);
                match axes.iter_mut().find(|a| a.path == p) {
                    Some(axis) => {
                        axis.values = vec![value];
                        axis.origin = origin;
                    }
                    None => fixed.push((p, value, origin)),
                }
            }
            Err(e) => {
                let mut d = Diag::bare(format!("--set {k}={v}: {}", e.message));
                d.hint = e.hint;
                diags.push(d);
            }
        }
    }
    let scenario_key = |k: &str| KeyPath::default().key("scenario").key(k);
    if let Some(seed) = opts.seed {
        match i64::try_from(seed) {
            Ok(s) => fixed.push((
                scenario_key("seed"),
                Value::from(s),
                Origin::Flag(format!("--seed {seed}")),
            )),
            Err(_) => diags.push(Diag::bare(format!(
                "--seed {seed}: a seed must be at most {}",
                i64::MAX
            ))),
        }
    }
    if let Some(b) = opts.backend {
        fixed.push((
            scenario_key("backend"),
            Value::from(b.as_str()),
            Origin::Flag(format!("--backend {}", b.as_str())),
        ));
    }

    let combos = axes
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.values.len()));
    let total = combos.and_then(|c| c.checked_mul(repetitions as usize));
    if !matches!(total, Some(t) if t <= MAX_RUNS) {
        diags.push(
            Diag::bare(format!("the sweep expands to more than {MAX_RUNS} runs"))
                .with_hint("sweep fewer values"),
        );
    }
    if !diags.is_empty() {
        return Err(fail(diags, Some(root)));
    }
    let combos = combos.unwrap_or(0);

    let mut base: DocumentMut = orig.clone().into_mut();
    base.remove("sweep");
    for (p, v, _) in &fixed {
        // `resolve` only returns paths that `apply` can follow.
        if sweep::apply(&mut base, p, v.clone()).is_none() {
            diags.push(Diag::bare(format!("cannot apply the override of `{p}`")));
        }
    }

    let overrides: Vec<(&KeyPath, &Origin)> = fixed
        .iter()
        .map(|(p, _, o)| (p, o))
        .chain(axes.iter().map(|a| (&a.path, &a.origin)))
        .collect();
    let mut valid: Vec<(BTreeMap<String, String>, Scenario, DocumentMut)> = Vec::new();
    // Each distinct problem, with the number of runs it occurs in and the first such run.
    let mut problems: Vec<(Diag, usize, BTreeMap<String, String>)> = Vec::new();
    for c in 0..combos {
        let mut doc = base.clone();
        let mut params = BTreeMap::new();
        let mut rest = c;
        let mut picks = vec![0; axes.len()];
        for (i, a) in axes.iter().enumerate().rev() {
            picks[i] = rest % a.values.len();
            rest /= a.values.len();
        }
        for (a, &j) in axes.iter().zip(&picks) {
            if sweep::apply(&mut doc, &a.path, a.values[j].clone()).is_none() {
                diags.push(Diag::bare(format!(
                    "cannot apply the override of `{}`",
                    a.key
                )));
            }
            params.insert(a.key.clone(), sweep::shown(&a.values[j]));
        }
        let resolved = doc.to_string();
        let found = match ImDocument::parse(resolved) {
            Err(e) => {
                let mut d = Diag::bare(format!(
                    "the file with its overrides applied is not valid TOML: {}",
                    e.message().trim()
                ));
                d.detached = true;
                vec![d]
            }
            Ok(rdoc) => {
                let mut cx = Cx {
                    diags: Vec::new(),
                    base: base_dir,
                };
                match validate(rdoc.as_table(), &mut cx) {
                    Some(s) if cx.diags.is_empty() => {
                        valid.push((params.clone(), s, doc));
                        Vec::new()
                    }
                    _ => cx.diags,
                }
            }
        };
        for d in found {
            let d = attribute(d, &overrides);
            match problems.iter_mut().find(|(p, _, _)| *p == d) {
                Some((_, n, _)) => *n += 1,
                None => problems.push((d, 1, params.clone())),
            }
        }
    }
    for (mut d, n, params) in problems {
        if n < combos {
            let run: Vec<String> = params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            d.message = format!("{} (in the run with {})", d.message, run.join(", "));
        }
        diags.push(d);
    }
    if !diags.is_empty() {
        return Err(fail(diags, Some(root)));
    }

    let mut runs = Vec::new();
    for (params, scenario, doc) in valid {
        for rep in 0..repetitions {
            let seed = scenario
                .seed
                .checked_add(u64::from(rep))
                .filter(|&s| i64::try_from(s).is_ok());
            let Some(seed) = seed else {
                let d = Diag::at(
                    scenario_key("seed"),
                    Point::Value,
                    "the seed plus the repetition exceeds the largest seed",
                );
                return Err(fail(vec![d], Some(root)));
            };
            let resolved_toml = if seed == scenario.seed {
                doc.to_string()
            } else {
                let mut d = doc.clone();
                sweep::apply(&mut d, &scenario_key("seed"), Value::from(seed as i64));
                d.to_string()
            };
            let mut scenario = scenario.clone();
            scenario.seed = seed;
            runs.push(RunSpec {
                index: runs.len(),
                params: params.clone(),
                repetition: rep,
                scenario,
                resolved_toml,
            });
        }
    }
    Ok(Experiment {
        name: runs
            .first()
            .map(|r| r.scenario.name.clone())
            .unwrap_or_default(),
        swept_keys: axes.into_iter().map(|a| a.key).collect(),
        repetitions,
        runs,
    })
}

fn syntax_error(e: &toml_edit::TomlError) -> Diag {
    let mut d = Diag::bare(format!("invalid TOML: {}", e.message().trim()));
    d.span = e.span();
    d
}

/// Places a diagnostic about an overridden key on its override.
fn attribute(mut d: Diag, overrides: &[(&KeyPath, &Origin)]) -> Diag {
    let Some(path) = &d.path else { return d };
    let Some((_, origin)) = overrides
        .iter()
        .filter(|(p, _)| path.starts_with(p))
        .max_by_key(|(p, _)| p.0.len())
    else {
        return d;
    };
    match origin {
        Origin::Sweep(span) => {
            d.span = span.clone();
            d.point = Point::Key;
        }
        Origin::Flag(flag) => {
            d.detached = true;
            d.message = format!("{} (value from `{flag}`)", d.message);
        }
    }
    d
}

/// Reads `[sweep]`: its swept keys (resolved against `root`) and `repetitions`.
fn read_sweep(root: &Table, diags: &mut Vec<Diag>) -> (Vec<Axis>, u32) {
    let mut axes = Vec::new();
    let mut repetitions = 1;
    let Some(item) = root.get("sweep") else {
        return (axes, repetitions);
    };
    let here = KeyPath::default().key("sweep");
    let Some(t) = item.as_table() else {
        diags.push(Diag::at(
            here,
            Point::Value,
            "`sweep` must be a table: [sweep]",
        ));
        return (axes, repetitions);
    };
    if let Some(r) = t.get("repetitions") {
        match r
            .as_integer()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n >= 1)
        {
            Some(n) => repetitions = n,
            None => diags.push(
                Diag::at(
                    here.key("repetitions"),
                    Point::Value,
                    "`repetitions` in [sweep] must be a whole number ≥ 1",
                )
                .with_hint("leave it out for one run per combination"),
            ),
        }
    }
    sweep_entries(root, t, "", &here, &mut axes, diags);
    (axes, repetitions)
}

fn sweep_entries(
    root: &Table,
    t: &Table,
    prefix: &str,
    here: &KeyPath,
    axes: &mut Vec<Axis>,
    diags: &mut Vec<Diag>,
) {
    for (k, item) in t.iter() {
        if prefix.is_empty() && k == "repetitions" {
            continue;
        }
        let key = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        let path = here.key(k);
        let span = t.key(k).and_then(|key| key.span());
        let at = |message: String| {
            let mut d = Diag::at(path.clone(), Point::Key, message);
            d.span = span.clone();
            d
        };
        if let Item::Table(sub) = item {
            // An unquoted dotted key, `rollout.strategy = [...]`, is a nested table in TOML.
            sweep_entries(root, sub, &key, &path, axes, diags);
            continue;
        }
        let Some(arr) = item.as_array() else {
            diags.push(
                at(format!("`{key}` in [sweep] must be a list of values"))
                    .with_hint(format!("write \"{key}\" = [first, second]; to fix one value, set it in the scenario instead")),
            );
            continue;
        };
        if arr.is_empty() {
            diags.push(
                at(format!("the sweep list of `{key}` is empty"))
                    .with_hint("give at least one value"),
            );
            continue;
        }
        let target = match sweep::resolve(root, &key) {
            Ok(p) => p,
            Err(e) => {
                let mut d = at(format!("cannot sweep {}", e.message));
                d.hint = e.hint;
                diags.push(d);
                continue;
            }
        };
        if let Some(other) = axes.iter().find(|a| a.path == target) {
            diags.push(at(format!(
                "`{key}` is swept twice (also as `{}`)",
                other.key
            )));
            continue;
        }
        let values = arr
            .iter()
            .map(|v| {
                let mut v = v.clone();
                v.decor_mut().clear();
                v
            })
            .collect();
        axes.push(Axis {
            key,
            path: target,
            values,
            origin: Origin::Sweep(span),
        });
    }
}
