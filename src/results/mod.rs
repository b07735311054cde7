//! Run and experiment directories: writers, provenance and readers. Layout and every column are
//! documented in `results/README.md`.
//!
//! Guarantees:
//! - **Immutable, atomic runs.** [`write_run`] refuses a run directory that already exists. It
//!   writes the run under a hidden temporary name (`.NAME.tmp-PID`, every file fsynced) and
//!   renames the directory into place once complete; on any failure (a full disk) the
//!   temporary directory is removed, so a run directory either is whole or does not exist.
//!   Readers skip hidden and incomplete (no `run.json`) directories, so the summary only ever
//!   lists complete runs.
//! - **Reproducible bytes.** For identical inputs every file is byte-identical, except the
//!   `provenance` object of `run.json` (start time, wall time, host, kernel, build).
//! - **Self-describing.** `run.json` holds the resolved scenario, the sweep parameters, the
//!   seeds, the outcome and the summary statistics; `scenario.toml` parses back to the run.
//!
//! Derived files (`summary.csv`, figures) are regenerated from the runs and may be replaced.

pub mod csv;
pub mod hlog;
pub mod timeseries;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::metrics::{RunMetrics, RunSummary};
pub use crate::output::{LinkRow, RunEvent};

pub use timeseries::TimeseriesRow;

/// Version of the `run.json` layout; bumped on incompatible changes.
pub const RUN_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The I/O error is part of the message, not a `source`, so a chain prints it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("run directory {0} already exists; runs are never overwritten")]
    RunDirExists(PathBuf),
    #[error("resolved scenario is not valid TOML: {0}")]
    ResolvedToml(#[from] toml::de::Error),
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{dir} holds runs of scenario `{found}`, not `{expected}`; resume it with its own scenario file")]
    NotThisExperiment {
        dir: PathBuf,
        found: String,
        expected: String,
    },
    #[error("latency log: {0}")]
    Hlog(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |error| ResultsError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// One line of `events.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    pub t_s: f64,
    pub source: String,
    pub kind: String,
    pub detail: String,
}

impl RunEvent {
    /// The event as `events.jsonl` writes it (one JSON object on one line).
    pub fn to_jsonl(&self) -> String {
        let line = EventLine {
            t_s: self.at.as_secs_f64(),
            source: self.source.clone(),
            kind: self.kind.clone(),
            detail: self.detail.clone(),
        };
        serde_json::to_string(&line).expect("strings and a float serialize")
    }
}

fn render_links(rows: &[LinkRow]) -> String {
    let mut out =
        String::from("t_s,link,direction,packets,bytes,dropped_queue,dropped_loss,dropped_down\n");
    for r in rows {
        let c = &r.counters;
        csv::write_record(
            &mut out,
            &[
                timeseries::fmt_decimal(r.at.as_secs_f64(), 6),
                r.link.clone(),
                r.direction.to_string(),
                c.packets.to_string(),
                c.bytes.to_string(),
                c.dropped_queue.to_string(),
                c.dropped_loss.to_string(),
                c.dropped_down.to_string(),
            ],
        );
    }
    out
}

/// Everything a run directory is written from.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub scenario: String,
    /// 0-based position in the experiment.
    pub index: usize,
    /// Swept keys and this run's values, as written.
    pub params: BTreeMap<String, String>,
    pub repetition: u32,
    /// Component name → seed.
    pub seeds: BTreeMap<String, u64>,
    pub backend: String,
    /// The scenario with this run's overrides applied.
    pub resolved_toml: String,
    pub events: Vec<RunEvent>,
    pub metrics: RunMetrics,
    /// Per-link counters sampled every window (`links.csv`; not written when empty).
    pub links: Vec<LinkRow>,
    /// How the rollout ended (`completed`, `aborted`, …); `None` for a baseline.
    pub outcome: Option<String>,
    pub started: SystemTime,
    pub wall: std::time::Duration,
}

/// Where and by what a run was made; the only part of a run directory that differs between
/// identical runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub sdnbed_version: String,
    /// `git rev-parse HEAD` at build time, `-dirty` when tracked files differed; `unknown`
    /// outside git.
    pub git_commit: String,
    pub kernel: String,
    pub hostname: String,
    /// RFC 3339, UTC, millisecond precision.
    pub started: String,
    pub wall_s: f64,
}

/// `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    pub format: u32,
    pub scenario: String,
    pub index: usize,
    pub params: BTreeMap<String, String>,
    pub repetition: u32,
    pub backend: String,
    pub seeds: BTreeMap<String, u64>,
    pub outcome: Option<String>,
    pub summary: RunSummary,
    /// The resolved scenario as JSON (TOML datetimes become strings).
    pub resolved_scenario: serde_json::Value,
    pub provenance: Provenance,
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn provenance(rec: &RunRecord) -> Provenance {
    Provenance {
        sdnbed_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: env!("SDNBED_GIT_COMMIT").to_string(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
        started: humantime::format_rfc3339_millis(rec.started).to_string(),
        wall_s: rec.wall.as_secs_f64(),
    }
}

/// Converts TOML to JSON, keeping key order; datetimes become their TOML text, non-finite
/// floats become `null`.
pub fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Writes `bytes` to `dir/name` atomically: a temporary file in `dir`, fsync, rename.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, ResultsError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(&path)(e)
    })?;
    Ok(path)
}

fn sync_dir(dir: &Path) -> Result<(), ResultsError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Renders `events.jsonl`: events in time order (stable for equal times).
fn render_events(events: &[RunEvent]) -> String {
    let mut sorted: Vec<&RunEvent> = events.iter().collect();
    sorted.sort_by_key(|e| e.at);
    let mut out = String::new();
    for e in sorted {
        out.push_str(&e.to_jsonl());
        out.push('\n');
    }
    out
}

/// Writes a run directory at `dir` (which must not exist; its parent is created). See the
/// module documentation for the guarantees.
pub fn write_run(dir: &Path, rec: &RunRecord) -> Result<(), ResultsError> {
    let table: toml::Value = toml::from_str(&rec.resolved_toml)?;
    let run = RunFile {
        format: RUN_FORMAT,
        scenario: rec.scenario.clone(),
        index: rec.index,
        params: rec.params.clone(),
        repetition: rec.repetition,
        backend: rec.backend.clone(),
        seeds: rec.seeds.clone(),
        outcome: rec.outcome.clone(),
        summary: rec.metrics.summary.clone(),
        resolved_scenario: toml_to_json(&table),
        provenance: provenance(rec),
    };
    let hlog = hlog::render(&rec.metrics).map_err(ResultsError::Hlog)?;
    let mut run_json = serde_json::to_string_pretty(&run).map_err(|source| ResultsError::Json {
        path: dir.join("run.json"),
        source,
    })?;
    run_json.push('\n');

    let parent = dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    if dir.exists() {
        return Err(ResultsError::RunDirExists(dir.to_path_buf()));
    }
    let name = dir
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let written = (|| {
        write_atomic(&tmp, "scenario.toml", rec.resolved_toml.as_bytes())?;
        write_atomic(
            &tmp,
            "timeseries.csv",
            timeseries::render(&rec.metrics).as_bytes(),
        )?;
        write_atomic(&tmp, "latency.hlog", &hlog)?;
        write_atomic(&tmp, "events.jsonl", render_events(&rec.events).as_bytes())?;
        if !rec.links.is_empty() {
            write_atomic(&tmp, "links.csv", render_links(&rec.links).as_bytes())?;
        }
        write_atomic(&tmp, "run.json", run_json.as_bytes())?;
        sync_dir(&tmp)?;
        // rename(2) onto an existing non-empty directory fails, so a run is never replaced.
        fs::rename(&tmp, dir).map_err(|e| {
            if dir.exists() {
                ResultsError::RunDirExists(dir.to_path_buf())
            } else {
                io_err(dir)(e)
            }
        })?;
        sync_dir(parent)
    })();
    if written.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    written
}

/// Reads `run.json` from a run directory.
pub fn read_run(dir: &Path) -> Result<RunFile, ResultsError> {
    let path = dir.join("run.json");
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|source| ResultsError::Json { path, source })
}

/// Reads `timeseries.csv` from a run directory.
pub fn read_timeseries(dir: &Path) -> Result<Vec<TimeseriesRow>, ResultsError> {
    let path = dir.join("timeseries.csv");
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    timeseries::parse(&text).map_err(|(line, msg)| ResultsError::Parse { path, line, msg })
}

/// Reads `events.jsonl` from a run directory.
pub fn read_events(dir: &Path) -> Result<Vec<EventLine>, ResultsError> {
    let path = dir.join("events.jsonl");
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let e = serde_json::from_str(line).map_err(|e| ResultsError::Parse {
            path: path.clone(),
            line: i + 1,
            msg: e.to_string(),
        })?;
        out.push(e);
    }
    Ok(out)
}

/// The directory name of a run inside `<experiment>/runs/`: `<index>-<params slug>-r<rep>`,
/// the index zero-padded to 4 digits so names sort in run order; `<index>-r<rep>` without
/// parameters. The slug uses the last segment of each key (`strategy-canary_rate-1000-s`) and is
/// cut to 60 characters; the index alone keeps names unique.
pub fn run_dir_name(index: usize, params: &BTreeMap<String, String>, repetition: u32) -> String {
    let clean = |s: &str| -> String {
        let mut out = String::new();
        for c in s.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() || c == '.' {
                out.push(c);
            } else if !out.ends_with('-') {
                out.push('-');
            }
        }
        out.trim_matches('-').to_string()
    };
    let slug: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            let key = k.rsplit('.').next().unwrap_or(k);
            format!("{}-{}", clean(key), clean(v))
        })
        .collect();
    let mut slug = slug.join("_");
    if slug.len() > 60 {
        let cut = (0..=60)
            .rev()
            .find(|i| slug.is_char_boundary(*i))
            .unwrap_or(0);
        slug.truncate(cut);
        slug = slug.trim_end_matches(['-', '_']).to_string();
    }
    if slug.is_empty() {
        format!("{index:04}-r{repetition}")
    } else {
        format!("{index:04}-{slug}-r{repetition}")
    }
}

/// Creates `results_root/<scenario>/<UTC timestamp>-<short id>/runs/` and returns the
/// experiment directory (without `runs/`). Never reuses an existing directory: a name that
/// exists is retried with another id.
pub fn create_experiment_dir(
    results_root: &Path,
    scenario_name: &str,
) -> Result<PathBuf, ResultsError> {
    use std::hash::{Hash, Hasher};
    let parent = results_root.join(scenario_name);
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let now = SystemTime::now();
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for attempt in 0u32.. {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (nanos, std::process::id(), attempt).hash(&mut h);
        let dir = parent.join(format!("{stamp}-{:06x}", h.finish() & 0xff_ffff));
        match fs::create_dir(&dir) {
            Ok(()) => {
                let runs = dir.join("runs");
                fs::create_dir(&runs).map_err(io_err(&runs))?;
                sync_dir(&parent)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&dir)(e)),
        }
    }
    unreachable!("the attempt counter is unbounded")
}

/// Opens experiment directory `exp_dir` of scenario `scenario_name` to complete it (`sdnbed run
/// --resume`): returns the names of its complete runs, which must not be run again. Temporary
/// run directories left by an interrupted process are removed; complete runs are not touched.
pub fn resume_experiment_dir(
    exp_dir: &Path,
    scenario_name: &str,
) -> Result<std::collections::BTreeSet<String>, ResultsError> {
    let runs_dir = exp_dir.join("runs");
    let mut done = std::collections::BTreeSet::new();
    for entry in fs::read_dir(&runs_dir).map_err(io_err(&runs_dir))? {
        let dir = entry.map_err(io_err(&runs_dir))?.path();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') && name.contains(".tmp-") {
            fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
    }
    for (dir, run) in list_runs(exp_dir)? {
        if run.scenario != scenario_name {
            return Err(ResultsError::NotThisExperiment {
                dir: exp_dir.to_path_buf(),
                found: run.scenario,
                expected: scenario_name.to_string(),
            });
        }
        if let Some(n) = dir.file_name() {
            done.insert(n.to_string_lossy().into_owned());
        }
    }
    Ok(done)
}

/// Removes an experiment directory that holds nothing but an empty `runs/` (every run failed
/// before writing anything); returns whether it did. Never removes a file.
pub fn discard_if_empty(exp_dir: &Path) -> bool {
    fs::remove_dir(exp_dir.join("runs")).is_ok() && fs::remove_dir(exp_dir).is_ok()
}

/// The complete runs of an experiment (those with a `run.json`), sorted by index.
pub fn list_runs(exp_dir: &Path) -> Result<Vec<(PathBuf, RunFile)>, ResultsError> {
    let runs_dir = exp_dir.join("runs");
    let mut out = Vec::new();
    for entry in fs::read_dir(&runs_dir).map_err(io_err(&runs_dir))? {
        let dir = entry.map_err(io_err(&runs_dir))?.path();
        let hidden = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden && dir.join("run.json").is_file() {
            let run = read_run(&dir)?;
            out.push((dir, run));
        }
    }
    out.sort_by(|a, b| (a.1.index, &a.0).cmp(&(b.1.index, &b.0)));
    Ok(out)
}

/// The columns of `summary.csv` after `run, index, repetition` and the swept keys.
pub const SUMMARY_COLUMNS: [&str; 21] = [
    "outcome",
    "sent",
    "ok",
    "errors",
    "err_refused",
    "err_reset",
    "err_timeout",
    "err_5xx",
    "err_other",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "during_p50_ms",
    "during_p99_ms",
    "during_p999_ms",
    "during_errors",
    "rollout_duration_s",
    "time_to_abort_s",
    "extra_replica_s",
    "new_version_requests",
    "peak_replicas",
];

/// The summary cells of one run, in [`SUMMARY_COLUMNS`] order.
fn summary_cells(run: &RunFile) -> Vec<String> {
    use crate::metrics::Phase;
    use timeseries::fmt_decimal;
    let s = &run.summary;
    let opt = |x: Option<f64>, d: usize| x.map(|x| fmt_decimal(x, d)).unwrap_or_default();
    let o = &s.overall;
    let during = s.phases.get(&Phase::During);
    let dl = during.and_then(|p| p.latency);
    vec![
        run.outcome.clone().unwrap_or_default(),
        o.sent.to_string(),
        o.ok.to_string(),
        o.errors.total().to_string(),
        o.errors.refused.to_string(),
        o.errors.reset.to_string(),
        o.errors.timeout.to_string(),
        o.errors.http_5xx.to_string(),
        o.errors.other.to_string(),
        opt(o.latency.map(|l| l.p50_ms), 6),
        opt(o.latency.map(|l| l.p99_ms), 6),
        opt(o.latency.map(|l| l.p999_ms), 6),
        opt(dl.map(|l| l.p50_ms), 6),
        opt(dl.map(|l| l.p99_ms), 6),
        opt(dl.map(|l| l.p999_ms), 6),
        during
            .map(|p| p.errors.total().to_string())
            .unwrap_or_default(),
        opt(s.rollout.duration_s, 9),
        opt(s.rollout.time_to_abort_s, 9),
        fmt_decimal(s.capacity.extra_replica_seconds, 6),
        s.rollout.new_version_requests.to_string(),
        s.capacity.peak_replicas.to_string(),
    ]
}

/// Reads every complete run of the experiment and writes `<exp>/summary.csv` (replacing an
/// earlier one): one row per run in index order, columns `run, index, repetition`, the swept
/// keys in the order given, then [`SUMMARY_COLUMNS`].
pub fn write_summary(exp_dir: &Path, swept_keys: &[String]) -> Result<PathBuf, ResultsError> {
    let runs = list_runs(exp_dir)?;
    let mut out = String::new();
    let mut header: Vec<String> = vec!["run".into(), "index".into(), "repetition".into()];
    header.extend(swept_keys.iter().cloned());
    header.extend(SUMMARY_COLUMNS.iter().map(|c| c.to_string()));
    csv::write_record(&mut out, &header);
    for (dir, run) in &runs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut row = vec![name, run.index.to_string(), run.repetition.to_string()];
        row.extend(
            swept_keys
                .iter()
                .map(|k| run.params.get(k).cloned().unwrap_or_default()),
        );
        row.extend(summary_cells(run));
        csv::write_record(&mut out, &row);
    }
    let path = write_atomic(exp_dir, "summary.csv", out.as_bytes())?;
    sync_dir(exp_dir)?;
    Ok(path)
}

/// Parses a CSV file written by sdnbed (`summary.csv`) into a header and rows.
pub fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), ResultsError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let mut records = csv::parse(&text).map_err(|line| ResultsError::Parse {
        path: path.to_path_buf(),
        line,
        msg: "unterminated quoted field".into(),
    })?;
    if records.is_empty() {
        return Err(ResultsError::Parse {
            path: path.to_path_buf(),
            line: 1,
            msg: "empty file".into(),
        });
    }
    let header = records.remove(0);
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::time::Instant;

    #[test]
    fn run_dir_names_sort_and_slug() {
        let p: BTreeMap<String, String> = [
            ("rollout.strategy".to_string(), "blue-green".to_string()),
            ("workload.users.rate".to_string(), "1000/s".to_string()),
        ]
        .into();
        assert_eq!(
            run_dir_name(3, &p, 1),
            "0003-strategy-blue-green_rate-1000-s-r1"
        );
        assert_eq!(run_dir_name(12, &BTreeMap::new(), 0), "0012-r0");
        let long: BTreeMap<String, String> = [("a".to_string(), "x".repeat(100))].into();
        assert_eq!(
            run_dir_name(0, &long, 0).len(),
            "0000-".len() + 60 + "-r0".len()
        );
    }

    #[test]
    fn toml_becomes_ordered_json() {
        let t: toml::Value = toml::from_str("b = 1\na = [\"x\", 2.5]\n[c]\nd = true\n").unwrap();
        assert_eq!(
            serde_json::to_string(&toml_to_json(&t)).unwrap(),
            r#"{"b":1,"a":["x",2.5],"c":{"d":true}}"#
        );
    }

    #[test]
    fn events_are_sorted_stably() {
        let ev = |ms: u64, kind: &str| RunEvent {
            at: Instant(ms * 1_000_000),
            source: "rollout".into(),
            kind: kind.into(),
            detail: String::new(),
        };
        let text = render_events(&[ev(2000, "b"), ev(1500, "a"), ev(2000, "c")]);
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<EventLine>(l).unwrap().kind)
            .collect();
        assert_eq!(kinds, ["a", "b", "c"]);
        assert!(text.starts_with(r#"{"t_s":1.5,"source":"rollout","kind":"a","detail":""}"#));
    }
}
