//! `sdnbed run FILE`: runs a scenario (every run of its sweep) and writes an experiment
//! directory with run directories, `summary.csv` and figures.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Instant as WallInstant, SystemTime};

use anyhow::Context;
use clap::Args;

use crate::backend::{Backend, RunContext};
use crate::results::{self, RunRecord};
use crate::scenario::{load_experiment, BackendKind, LoadOptions, RunSpec};

/// Run a scenario: every combination of its [sweep], each repeated, on the chosen backend.
///
/// Results go to OUT/<scenario>/<timestamp>-<id>/: one directory per run under runs/ (run.json,
/// scenario.toml, timeseries.csv, latency.hlog, events.jsonl, links.csv, figures), summary.csv
/// with one row per run, and comparison figures when there is more than one run. Nothing is ever
/// overwritten. Invalid input exits with status 2 before anything runs.
#[derive(Args)]
pub struct RunArgs {
    /// The scenario file (see docs/scenario.md).
    file: PathBuf,
    /// Backend: sim (simulation), netns (network namespaces; needs root) or docker
    /// (containers on the Docker Engine, wired like netns; needs root). Default: the
    /// scenario's `backend`, else sim. (kube is accepted in scenarios; `sdnbed manifests`
    /// renders its objects, but runs on a cluster are not yet part of this build.)
    #[arg(long, value_name = "B")]
    backend: Option<String>,
    /// Where results go.
    #[arg(long, value_name = "DIR", default_value = "results")]
    out: PathBuf,
    /// Replace the scenario's seed (repetition r of a sweep uses SEED + r).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Override one key before running, in the file's own terms, e.g.
    /// `--set rollout.strategy=canary` or `--set workload.users.rate=4000/s`. Repeatable;
    /// applied before the sweep expands.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = super::parse_set)]
    set: Vec<(String, String)>,
    /// Simulated runs to execute at once. Default: the number of CPUs. netns and docker runs
    /// always go one at a time (concurrent runs would distort each other's latencies).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Complete the interrupted experiment in DIR (made by an earlier `run` of the same FILE
    /// and options): runs already complete there are skipped and left untouched, the rest
    /// run, and summary.csv and figures are redrawn. OUT is not used.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Skip drawing figures (they can be drawn later with `sdnbed plot`).
    #[arg(long)]
    no_plots: bool,
    /// Run even when a run's estimated cost (windows, memory, requests) is above the limits
    /// that otherwise refuse it with exit status 2.
    #[arg(long)]
    allow_large: bool,
}

fn parse_backend(s: &str) -> anyhow::Result<BackendKind> {
    Ok(match s {
        "sim" => BackendKind::Sim,
        "netns" => BackendKind::Netns,
        "docker" => BackendKind::Docker,
        "kube" => BackendKind::Kube,
        other => anyhow::bail!("unknown backend `{other}`: use sim, netns, docker or kube"),
    })
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let backend = match &args.backend {
        Some(b) => match parse_backend(b) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(super::EXIT_INVALID);
            }
        },
        None => None,
    };
    let opts = LoadOptions {
        overrides: args.set.clone(),
        seed: args.seed,
        backend,
    };
    let exp = match load_experiment(&args.file, &opts) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return Ok(super::EXIT_INVALID);
        }
    };
    if let Err(e) = super::validate::check_runs(&args.file, &exp, args.allow_large) {
        eprintln!("{e}");
        return Ok(super::EXIT_INVALID);
    }

    if let Err(e) = super::validate::check_privileges(&exp) {
        eprintln!("error: {e}");
        return Ok(super::EXIT_INVALID);
    }
    let (exp_dir, done) = match &args.resume {
        Some(dir) => {
            let done = results::resume_experiment_dir(dir, &exp.name)
                .with_context(|| format!("resuming {}", dir.display()))?;
            (dir.clone(), done)
        }
        None => (
            results::create_experiment_dir(&args.out, &exp.name).with_context(|| {
                format!(
                    "creating an experiment directory under {}",
                    args.out.display()
                )
            })?,
            Default::default(),
        ),
    };
    let todo: Vec<&RunSpec> = exp
        .runs
        .iter()
        .filter(|r| !done.contains(&results::run_dir_name(r.index, &r.params, r.repetition)))
        .collect();
    // Real backends run one run at a time: concurrent runs would share CPUs and distort each
    // other's latencies.
    let real = exp
        .runs
        .iter()
        .any(|r| !backend_for(r.scenario.backend).is_some_and(|b| b.concurrent()));
    let jobs = if real {
        1
    } else {
        args.jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, exp.runs.len().max(1))
    };
    let progress = progress_bar(todo.len());
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let lines: Mutex<Vec<(usize, String, Vec<PathBuf>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = todo.get(i) else { break };
                match run_one(&exp_dir, &exp.name, spec, !args.no_plots) {
                    Ok((line, figures)) => {
                        lines.lock().expect("not poisoned").push((i, line, figures))
                    }
                    Err(e) => failures
                        .lock()
                        .expect("not poisoned")
                        .push(format!("run {i}: {e:#}")),
                }
                progress.inc(1);
            });
        }
    });
    progress.finish_and_clear();

    let failures = failures.into_inner().expect("not poisoned");
    if lines.lock().expect("not poisoned").is_empty() && !failures.is_empty() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        if !results::discard_if_empty(&exp_dir) {
            eprintln!(
                "no run completed; {} keeps the runs' work files",
                exp_dir.display()
            );
        }
        return Ok(1);
    }
    let summary = results::write_summary(&exp_dir, &exp.swept_keys)
        .with_context(|| format!("writing the summary of {}", exp_dir.display()))?;
    let mut lines = lines.into_inner().expect("not poisoned");
    lines.sort();
    // One run: its own figures; an experiment: the comparison figures.
    let mut figures = match lines.as_slice() {
        [(_, _, figures)] => figures.clone(),
        _ => Vec::new(),
    };
    if exp.runs.len() > 1 && !args.no_plots {
        figures = crate::report::plot_experiment(&exp_dir)
            .with_context(|| format!("plotting the experiment in {}", exp_dir.display()))?;
    }
    let report = if args.no_plots {
        None
    } else {
        Some(
            crate::report::write_report(&exp_dir)
                .with_context(|| format!("writing the report of {}", exp_dir.display()))?,
        )
    };
    for (_, l, _) in &lines {
        println!("{l}");
    }
    println!("experiment: {}", exp_dir.display());
    println!("summary:    {}", summary.display());
    if let Some(report) = report {
        println!("report:     {}", report.display());
    }
    for f in figures
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "png"))
    {
        println!("figure:     {}", f.display());
    }
    for f in &failures {
        eprintln!("error: {f}");
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}

/// The backend that carries out runs of `kind`; None for those this build does not have.
/// A new backend is one line here.
pub(super) fn backend_for(kind: BackendKind) -> Option<&'static dyn Backend> {
    match kind {
        BackendKind::Sim => Some(&crate::backend::Sim),
        BackendKind::Netns => Some(&crate::backend::netns::Netns),
        BackendKind::Docker => Some(&crate::backend::docker::Docker),
        BackendKind::Kube => None,
    }
}

fn progress_bar(n: usize) -> indicatif::ProgressBar {
    if n <= 1 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} runs, {elapsed} elapsed, ~{eta} left",
        )
        .expect("valid template"),
    );
    bar
}

/// Simulates one run, writes its directory and figures; returns a one-line summary and the
/// figures.
fn run_one(
    exp_dir: &Path,
    name: &str,
    spec: &RunSpec,
    plots: bool,
) -> anyhow::Result<(String, Vec<PathBuf>)> {
    let started = SystemTime::now();
    let clock = WallInstant::now();
    let run_name = results::run_dir_name(spec.index, &spec.params, spec.repetition);
    let backend = backend_for(spec.scenario.backend).expect("refused before any run starts");
    let ctx = RunContext {
        run_id: run_id(exp_dir, spec.index),
        work_dir: exp_dir.join(spec.scenario.backend.as_str()).join(&run_name),
        exe: std::env::current_exe().context("locating the sdnbed binary")?,
    };
    let out = backend
        .run(&spec.scenario, &ctx)
        .map_err(|e| anyhow::anyhow!(e))?;
    let dir = exp_dir.join("runs").join(run_name);
    let outcome = out.rollout_outcome.as_ref().map(|o| match o {
        crate::model::rollout::Outcome::Promoted => "promoted".to_string(),
        crate::model::rollout::Outcome::Aborted { .. } => "aborted".to_string(),
    });
    let summary_line = one_line(spec, &out.metrics.summary, outcome.as_deref(), &dir);
    let record = RunRecord {
        scenario: name.to_string(),
        index: spec.index,
        params: spec.params.clone(),
        repetition: spec.repetition,
        seeds: out.seeds,
        backend: spec.scenario.backend.as_str().to_string(),
        resolved_toml: spec.resolved_toml.clone(),
        events: out.events,
        metrics: out.metrics,
        links: out.links,
        outcome,
        started,
        wall: clock.elapsed(),
    };
    results::write_run(&dir, &record).with_context(|| format!("writing {}", dir.display()))?;
    let figures = if plots {
        crate::report::plot_run(&dir).with_context(|| format!("plotting {}", dir.display()))?
    } else {
        Vec::new()
    };
    Ok((summary_line, figures))
}

fn one_line(
    spec: &RunSpec,
    s: &crate::metrics::RunSummary,
    outcome: Option<&str>,
    dir: &Path,
) -> String {
    let lat = |q: fn(&crate::metrics::LatencySummary) -> f64| {
        s.overall
            .latency
            .as_ref()
            .map_or("-".to_string(), |l| format!("{:.2}ms", q(l)))
    };
    let errors = s.overall.sent - s.overall.ok;
    let params: Vec<String> = spec
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{}{}: {} requests, {} errors, p50 {}, p99 {}{} -> {}",
        if params.is_empty() {
            "run".to_string()
        } else {
            params.join(" ")
        },
        if spec.repetition > 0 || !spec.params.is_empty() {
            format!(" r{}", spec.repetition)
        } else {
            String::new()
        },
        s.overall.sent,
        errors,
        lat(|l| l.p50_ms),
        lat(|l| l.p99_ms),
        outcome.map_or(String::new(), |o| format!(", rollout {o}")),
        dir.display()
    )
}

/// A short run id for kernel object names (6 hex digits), unique per experiment and run.
fn run_id(exp_dir: &Path, index: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (exp_dir, index, std::process::id()).hash(&mut h);
    format!("{:06x}", h.finish() & 0xff_ffff)
}
