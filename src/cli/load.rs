//! `sdnbed load`: the open-loop load generator.
//!
//! Prints a summary (or, with `--json`, one JSON object) on stdout; warns on stderr when it could
//! not keep its schedule. `--out DIR` writes `timeseries.csv`, `latency.hlog` and `summary.json`.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::serve::{duration_arg, size_arg};
use crate::metrics::RecorderConfig;
use crate::model::time::Duration;
use crate::results;
use crate::scenario::units::{parse_duration, parse_rate, ByteSize, RequestRate};
use crate::scenario::{Arrivals, RateSchedule};
use crate::workload::load::{self, parse_url, LoadConfig, LoadSummary, Rate, VersionSummary};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArrivalsArg {
    /// Evenly spaced requests.
    Constant,
    /// Exponential gaps (seeded).
    Poisson,
}

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Target, e.g. http://127.0.0.1:8080/
    #[arg(long)]
    pub url: String,
    /// Offered rate, e.g. "2000/s"; "max" runs a closed loop at full speed (latency from the
    /// actual send, for comparison with wrk). Exclusive with --schedule.
    #[arg(long, conflicts_with = "schedule")]
    pub rate: Option<String>,
    /// Piecewise-constant rate, e.g. "0s:500/s,30s:2000/s" (the first step at 0s).
    #[arg(long)]
    pub schedule: Option<String>,
    /// Inter-arrival times of the open loop.
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrivals: ArrivalsArg,
    /// How long requests are started; in-flight ones then get up to --timeout to finish.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub duration: Duration,
    /// Kept-alive connections (over all threads); 0 opens a new connection for every request.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Requests per connection before it is replaced (0 = unlimited); lets L4 steering act.
    #[arg(long, default_value_t = 0)]
    pub max_requests_per_connection: u64,
    /// A request without a complete response this long after its intended send time fails.
    #[arg(long, default_value = "2s", value_parser = duration_arg)]
    pub timeout: Duration,
    /// Request body size (0: GET; otherwise POST with that many bytes).
    #[arg(long, default_value = "0B", value_parser = size_arg)]
    pub request_size: ByteSize,
    /// Generator threads; each gets an equal share of the connections and of the rate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: u32,
    /// Seed of the Poisson arrivals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Time-series resolution of --out.
    #[arg(long, default_value = "1s", value_parser = duration_arg)]
    pub window: Duration,
    /// Write timeseries.csv, latency.hlog and summary.json into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

/// Parses "0s:500/s,30s:2000/s".
fn parse_schedule(s: &str) -> anyhow::Result<RateSchedule> {
    let mut steps: Vec<(Duration, RequestRate)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (at, rate) = part
            .split_once(':')
            .with_context(|| format!("--schedule step `{part}` is not AT:RATE"))?;
        let at = parse_duration(at).with_context(|| format!("--schedule step `{part}`"))?;
        let rate = parse_rate(rate).with_context(|| format!("--schedule step `{part}`"))?;
        if steps.last().is_some_and(|(prev, _)| *prev >= at) {
            bail!("--schedule steps must be in increasing time order (at `{part}`)");
        }
        steps.push((at, rate));
    }
    match steps.first() {
        None => bail!("--schedule is empty"),
        Some((first, _)) if !first.is_zero() => bail!("--schedule must start at 0s"),
        _ => Ok(RateSchedule { steps }),
    }
}

pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    if args.window.is_zero() {
        bail!("--window must be positive");
    }
    let arrivals = match args.arrivals {
        ArrivalsArg::Constant => Arrivals::Constant,
        ArrivalsArg::Poisson => Arrivals::Poisson,
    };
    let rate = match (&args.rate, &args.schedule) {
        (Some(r), _) if r == "max" => Rate::Max,
        (Some(r), _) => Rate::Open {
            schedule: RateSchedule::constant(parse_rate(r).context("--rate")?),
            arrivals,
        },
        (None, Some(s)) => Rate::Open {
            schedule: parse_schedule(s)?,
            arrivals,
        },
        (None, None) => bail!("give --rate (e.g. 1000/s or max) or --schedule"),
    };
    let (target, host, path) = parse_url(&args.url)?;
    crate::workload::sys::raise_fd_limit().context("raising the open-file limit")?;
    let cfg = LoadConfig {
        target,
        host,
        path,
        rate,
        duration: args.duration,
        connections: args.connections,
        max_requests_per_connection: args.max_requests_per_connection,
        timeout: args.timeout,
        request_size: usize::try_from(args.request_size.0)
            .context("--request-size is too large")?,
        threads: args.threads as usize,
        seed: args.seed,
        on_thread_start: None,
        attribute: None,
        clock: None,
    };
    let rc = RecorderConfig {
        window: args.window,
        duration: args.duration,
        warmup: Duration::ZERO,
        steady_replicas: 0,
        new_version: None,
    };
    let run = load::run_recorded(&cfg, rc).context("running the load generator")?;
    let summary = run.summary();
    if summary.schedule.behind {
        let sch = &summary.schedule;
        let cause = if sch.lag_p99_ns > 1_000_000 {
            "the generator itself ran late (CPU-bound): add --threads or lower the rate"
        } else {
            "requests waited for a free connection: raise --connections"
        };
        eprintln!(
            "warning: sent {:.1} req/s of the {:.1} asked for; first writes up to {:.3} ms late (p99 {:.3} ms), own timing p99 {:.3} ms; {cause}",
            sch.achieved_rate,
            sch.target_rate.unwrap_or(0.0),
            sch.send_lag_max_ns as f64 / 1e6,
            sch.send_lag_p99_ns as f64 / 1e6,
            sch.lag_p99_ns as f64 / 1e6,
        );
    }
    if let Some(dir) = &args.out {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let hlog = results::hlog::render(&run.metrics)
            .map_err(|e| anyhow::anyhow!("rendering latency.hlog: {e}"))?;
        let json = serde_json::to_vec_pretty(&summary)?;
        for (name, bytes) in [
            (
                "timeseries.csv",
                results::timeseries::render(&run.metrics).into_bytes(),
            ),
            ("latency.hlog", hlog),
            ("summary.json", json),
        ] {
            results::write_atomic(dir, name, &bytes)
                .with_context(|| format!("writing {name} in {}", dir.display()))?;
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &summary)?;
        writeln!(out)?;
    } else {
        print_text(&mut out, &summary)?;
    }
    Ok(())
}

fn print_text(out: &mut impl Write, s: &LoadSummary) -> std::io::Result<()> {
    let ms = |ns: u64| ns as f64 / 1e6;
    writeln!(
        out,
        "{} requests in {:.3}s, {:.1} req/s{}",
        s.requests,
        s.duration_s,
        s.achieved_rate,
        s.schedule
            .target_rate
            .map(|t| format!(" (target {t:.1})"))
            .unwrap_or_default()
    )?;
    writeln!(
        out,
        "ok {}  refused {}  reset {}  timeout {}  5xx {}  other {}  (retried {})",
        s.ok,
        s.errors.refused,
        s.errors.reset,
        s.errors.timeout,
        s.errors.http_5xx,
        s.errors.other,
        s.schedule.retries
    )?;
    writeln!(
        out,
        "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "version", "requests", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "max_ms"
    )?;
    let mut row = |name: &str, t: &VersionSummary| {
        let l = &t.latency_ns;
        writeln!(
            out,
            "{:<12} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            name,
            t.requests,
            l.mean / 1e6,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        )
    };
    let all = VersionSummary {
        requests: s.requests,
        ok: s.ok,
        errors: s.errors,
        latency_ns: s.latency_ns.clone(),
    };
    row("all", &all)?;
    for (v, t) in &s.by_version {
        row(v, t)?;
    }
    writeln!(
        out,
        "schedule: dispatch lag p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; send lag p99 {:.3} ms, max {:.3} ms",
        ms(s.schedule.lag_p50_ns),
        ms(s.schedule.lag_p99_ns),
        ms(s.schedule.lag_max_ns),
        ms(s.schedule.send_lag_p99_ns),
        ms(s.schedule.send_lag_max_ns)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_are_checked() {
        let s = parse_schedule("0s:500/s, 30s:2000/s").unwrap();
        assert_eq!(
            s.steps,
            vec![
                (Duration::ZERO, RequestRate(500.0)),
                (Duration::from_secs(30), RequestRate(2000.0))
            ]
        );
        assert!(parse_schedule("1s:500/s").is_err());
        assert!(parse_schedule("0s:500/s,0s:10/s").is_err());
        assert!(parse_schedule("0s-500/s").is_err());
    }
}
