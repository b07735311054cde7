//! Request outcomes → time windows, HdrHistograms and per-phase, per-version statistics.
//!
//! A [`Recorder`] is fed by a load generator (real or simulated) and by the driver (phase
//! changes, replica counts, steering weights); [`Recorder::finish`] turns it into [`RunMetrics`].
//!
//! Guarantees:
//! - **Open loop, coordinated omission corrected.** A request's latency is `done − intended`,
//!   and the request belongs to the window and phase of its *intended* send time, so a stall
//!   shows up as latency in the windows where requests should have been sent.
//! - **Latency statistics cover successful requests**; failed requests are counted by
//!   [`ErrorKind`] and never enter a histogram (a timeout would otherwise pin the tail at the
//!   timeout value). Percentiles come from HdrHistograms with 3 significant digits and a lowest
//!   discernible value of 1 µs, reported as the highest value equivalent to the sample at that
//!   quantile (HdrHistogram's convention), capped at the exact maximum; mean and max are exact.
//! - **Summaries exclude the warmup; time series keep it.** Windows cover `[0, duration)`;
//!   requests intended at or after `duration` are ignored.
//! - **Replica-seconds are exact**: replica counts are a step function integrated over
//!   `[0, duration)`; every reported state counts as capacity (report live replicas only).
//! - Pure: no clock, no OS, deterministic output (ordered maps only).

use std::collections::BTreeMap;

use hdrhistogram::{Counter, Histogram};
use serde::{Deserialize, Serialize};

use crate::model::time::{Duration, Instant};

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    #[serde(rename = "refused")]
    Refused,
    #[serde(rename = "reset")]
    Reset,
    #[serde(rename = "timeout")]
    Timeout,
    #[serde(rename = "5xx")]
    Http5xx,
    #[serde(rename = "other")]
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Refused,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::Http5xx,
        ErrorKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Http5xx => "5xx",
            ErrorKind::Other => "other",
        }
    }
}

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error(ErrorKind),
}

/// The rollout phase a request's intended send time falls in (defined by the rollout model).
pub use crate::model::rollout::Phase;

/// Replica counts by (version, state name).
pub type ReplicaCounts = BTreeMap<(String, String), u32>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecorderConfig {
    /// Time-series resolution; zero means one window for the whole run.
    pub window: Duration,
    /// Length of the measured run; requests intended at or after it are ignored.
    pub duration: Duration,
    /// Requests intended before this are kept in the time series but not in summaries.
    pub warmup: Duration,
    /// The replica count of the rolled-out service at rest; replica-seconds above it are the
    /// rollout's extra capacity.
    pub steady_replicas: u32,
    /// The version being rolled out, if any (for "requests served by the new version").
    pub new_version: Option<String>,
}

/// Error counts by kind; serialized with the [`ErrorKind::as_str`] names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub refused: u64,
    pub reset: u64,
    pub timeout: u64,
    #[serde(rename = "5xx")]
    pub http_5xx: u64,
    pub other: u64,
}

impl ErrorCounts {
    pub fn get(&self, kind: ErrorKind) -> u64 {
        match kind {
            ErrorKind::Refused => self.refused,
            ErrorKind::Reset => self.reset,
            ErrorKind::Timeout => self.timeout,
            ErrorKind::Http5xx => self.http_5xx,
            ErrorKind::Other => self.other,
        }
    }
    fn bump(&mut self, kind: ErrorKind) {
        let c = match kind {
            ErrorKind::Refused => &mut self.refused,
            ErrorKind::Reset => &mut self.reset,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Http5xx => &mut self.http_5xx,
            ErrorKind::Other => &mut self.other,
        };
        *c += 1;
    }
    pub fn total(&self) -> u64 {
        self.refused + self.reset + self.timeout + self.http_5xx + self.other
    }
}

/// Latency of successful requests, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Counts and latency of a set of requests (a window, a phase, a version).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests recorded (intended in the set's time span).
    pub sent: u64,
    pub ok: u64,
    pub errors: ErrorCounts,
    /// `None` when no request succeeded.
    pub latency: Option<LatencySummary>,
}

/// A latency histogram with an exact sum and maximum alongside.
#[derive(Clone, Debug)]
pub struct LatencyHistogram<T: Counter> {
    pub hist: Histogram<T>,
    sum_ns: u128,
    max_ns: u64,
}

impl<T: Counter> LatencyHistogram<T> {
    fn new() -> Self {
        // 1 µs .. 2 µs is only the starting range: auto-resize grows it to the largest sample,
        // so windows with short latencies stay small.
        let mut hist = Histogram::new_with_bounds(1_000, 2_000, 3)
            .expect("constant bounds 1us..2us with 3 digits are valid");
        hist.auto(true);
        LatencyHistogram {
            hist,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    fn record(&mut self, ns: u64) {
        if self.hist.record(ns).is_err() {
            // Only a value beyond what a usize-indexed array can track gets here.
            self.hist.saturating_record(ns);
        }
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    fn summary(&self) -> Option<LatencySummary> {
        let count = self.hist.len();
        if count == 0 {
            return None;
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        // A bucket's highest equivalent value can exceed the largest sample; no quantile does.
        let q = |q: f64| ms(self.hist.value_at_quantile(q).min(self.max_ns));
        Some(LatencySummary {
            count,
            mean_ms: self.sum_ns as f64 / count as f64 / 1e6,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: ms(self.max_ns),
        })
    }
}

/// Accumulates [`Stats`] for one set of requests.
#[derive(Clone, Debug)]
pub struct StatsAcc<T: Counter> {
    sent: u64,
    ok: u64,
    errors: ErrorCounts,
    /// Created on the first successful request.
    latency: Option<LatencyHistogram<T>>,
}

impl<T: Counter> Default for StatsAcc<T> {
    fn default() -> Self {
        StatsAcc {
            sent: 0,
            ok: 0,
            errors: ErrorCounts::default(),
            latency: None,
        }
    }
}

impl<T: Counter> StatsAcc<T> {
    fn add(&mut self, latency_ns: u64, outcome: Outcome) {
        self.sent += 1;
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.latency
                    .get_or_insert_with(LatencyHistogram::new)
                    .record(latency_ns);
            }
            Outcome::Error(kind) => self.errors.bump(kind),
        }
    }

    pub fn stats(&self) -> Stats {
        Stats {
            sent: self.sent,
            ok: self.ok,
            errors: self.errors,
            latency: self.latency.as_ref().and_then(LatencyHistogram::summary),
        }
    }

    /// The latency histogram of successful requests, `None` when there were none.
    pub fn histogram(&self) -> Option<&Histogram<T>> {
        self.latency.as_ref().map(|l| &l.hist)
    }
}

/// One time-series window `[start, end)`.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    #[serde(rename = "start_s", serialize_with = "ser_secs")]
    pub start: Instant,
    #[serde(rename = "end_s", serialize_with = "ser_secs")]
    pub end: Instant,
    /// The phase in force at `start`.
    pub phase: Phase,
    /// All requests intended in the window.
    #[serde(serialize_with = "ser_stats_acc")]
    pub total: StatsAcc<u32>,
    /// Requests answered by each version (every version known to the run has an entry).
    #[serde(serialize_with = "ser_stats_map")]
    pub versions: BTreeMap<String, StatsAcc<u32>>,
    /// Replicas in force at the window's end: version → state → count (every version and state
    /// known to the run has an entry; zero where absent).
    pub replicas: BTreeMap<String, BTreeMap<String, u32>>,
    /// Steering weights (basis points) in force at the window's end; empty before the first
    /// weights were reported.
    pub weights: BTreeMap<String, u32>,
    /// The largest generator lag reported in the window.
    #[serde(rename = "generator_lag_max_ms", serialize_with = "ser_opt_ms")]
    pub generator_lag_max: Option<Duration>,
}

impl Window {
    /// Share of the window's answered requests (any outcome with a version) served by `version`.
    pub fn share(&self, version: &str) -> Option<f64> {
        let answered: u64 = self.versions.values().map(|v| v.sent).sum();
        let mine = self.versions.get(version)?.sent;
        (answered > 0).then(|| mine as f64 / answered as f64)
    }
}

fn ser_secs<S: serde::Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(t.as_secs_f64())
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(Duration::as_millis_f64).serialize(s)
}

fn ser_stats_acc<S: serde::Serializer>(acc: &StatsAcc<u32>, s: S) -> Result<S::Ok, S::Error> {
    acc.stats().serialize(s)
}

fn ser_stats_map<S: serde::Serializer>(
    m: &BTreeMap<String, StatsAcc<u32>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let stats: BTreeMap<&String, Stats> = m.iter().map(|(k, v)| (k, v.stats())).collect();
    stats.serialize(s)
}

/// The rollout's timing and reach.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutSummary {
    pub new_version: Option<String>,
    /// First change to `during`.
    pub started_s: Option<f64>,
    /// First change to `after` following the start.
    pub ended_s: Option<f64>,
    /// `ended_s − started_s`; `None` when the rollout did not end within the run.
    pub duration_s: Option<f64>,
    /// When the rollout was aborted (analysis failure or manual), if it was.
    pub aborted_s: Option<f64>,
    /// `aborted_s − started_s`.
    pub time_to_abort_s: Option<f64>,
    /// `ended_s − aborted_s`: how long the rollback took.
    pub rollback_s: Option<f64>,
    /// Requests answered by the new version after warmup (any outcome with that version).
    pub new_version_requests: u64,
    /// Phase changes announced after a request intended later than the change had already been
    /// recorded (that request was counted in the earlier phase). Zero in a correct driver.
    pub late_phase_changes: u64,
}

/// Replica capacity over `[0, min(end, duration))`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CapacitySummary {
    pub steady_replicas: u32,
    /// ∫ replicas(t) dt over all versions and states.
    pub replica_seconds: f64,
    /// ∫ max(0, replicas(t) − steady) dt.
    pub extra_replica_seconds: f64,
    pub peak_replicas: u32,
}

/// How far the load generator fell behind its schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorSummary {
    pub lag_reports: u64,
    pub max_lag_ms: Option<f64>,
    pub max_lag_at_s: Option<f64>,
}

/// Per-run statistics; this is what `run.json` stores as `summary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub window_s: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// All requests intended in `[warmup, duration)`.
    pub overall: Stats,
    /// Phases whose span overlaps `[warmup, duration)`.
    pub phases: BTreeMap<Phase, Stats>,
    /// Requests answered by each version.
    pub versions: BTreeMap<String, Stats>,
    /// Requests answered by each version, per phase.
    pub phase_versions: BTreeMap<Phase, BTreeMap<String, Stats>>,
    pub rollout: RolloutSummary,
    pub capacity: CapacitySummary,
    pub generator: GeneratorSummary,
}

/// Everything a run measured: the windows (with their histograms, for the interval log) and the
/// summary.
#[derive(Clone, Debug, Serialize)]
pub struct RunMetrics {
    pub windows: Vec<Window>,
    pub summary: RunSummary,
}

/// Collects one run's measurements; see the module documentation for the guarantees.
#[derive(Debug)]
pub struct Recorder {
    cfg: RecorderConfig,
    window: Duration,
    n_windows: usize,
    windows: Vec<WindowAcc>,
    /// Sorted by time; the phase before the first change is `Before`.
    phases: Vec<(Instant, Phase)>,
    max_intended: Option<Instant>,
    late_phase_changes: u64,
    aborted: Option<Instant>,
    overall: StatsAcc<u64>,
    by_phase: BTreeMap<Phase, StatsAcc<u64>>,
    by_version: BTreeMap<String, StatsAcc<u64>>,
    by_phase_version: BTreeMap<Phase, BTreeMap<String, StatsAcc<u64>>>,
    /// Sorted by time.
    replica_steps: Vec<(Instant, ReplicaCounts)>,
    /// Sorted by time.
    weight_steps: Vec<(Instant, BTreeMap<String, u32>)>,
    lag_reports: u64,
    max_lag: Option<(Duration, Instant)>,
}

#[derive(Clone, Debug, Default)]
struct WindowAcc {
    total: StatsAcc<u32>,
    versions: BTreeMap<String, StatsAcc<u32>>,
    lag_max: Option<Duration>,
}

impl Recorder {
    pub fn new(cfg: RecorderConfig) -> Self {
        let window = if cfg.window.is_zero() {
            cfg.duration.max(Duration(1))
        } else {
            cfg.window
        };
        let n_windows = usize::try_from(cfg.duration.as_nanos().div_ceil(window.as_nanos()))
            .unwrap_or(usize::MAX);
        Recorder {
            cfg,
            window,
            n_windows,
            windows: Vec::new(),
            phases: Vec::new(),
            max_intended: None,
            late_phase_changes: 0,
            aborted: None,
            overall: StatsAcc::default(),
            by_phase: BTreeMap::new(),
            by_version: BTreeMap::new(),
            by_phase_version: BTreeMap::new(),
            replica_steps: Vec::new(),
            weight_steps: Vec::new(),
            lag_reports: 0,
            max_lag: None,
        }
    }

    fn phase_at(&self, t: Instant) -> Phase {
        let i = self.phases.partition_point(|(at, _)| *at <= t);
        if i == 0 {
            Phase::Before
        } else {
            self.phases[i - 1].1
        }
    }

    fn window_index(&self, t: Instant) -> usize {
        usize::try_from(t.as_nanos() / self.window.as_nanos()).unwrap_or(usize::MAX)
    }

    /// One finished request, attributed to the window and phase of its *intended* send time;
    /// latency = `done − intended`. `version` is the version that answered, `None` when no
    /// replica answered. Requests intended at or after the run's duration are ignored.
    pub fn record(
        &mut self,
        intended: Instant,
        done: Instant,
        version: Option<&str>,
        outcome: Outcome,
    ) {
        if intended.as_nanos() >= self.cfg.duration.as_nanos() {
            return;
        }
        let latency = done.saturating_since(intended).as_nanos();
        self.max_intended = Some(self.max_intended.map_or(intended, |m| m.max(intended)));
        let phase = self.phase_at(intended);
        let idx = self.window_index(intended);
        if self.windows.len() <= idx {
            self.windows.resize_with(idx + 1, WindowAcc::default);
        }
        let w = &mut self.windows[idx];
        w.total.add(latency, outcome);
        if let Some(v) = version {
            stats_for(&mut w.versions, v).add(latency, outcome);
        }
        if intended.as_nanos() < self.cfg.warmup.as_nanos() {
            return;
        }
        self.overall.add(latency, outcome);
        self.by_phase
            .entry(phase)
            .or_default()
            .add(latency, outcome);
        if let Some(v) = version {
            stats_for(&mut self.by_version, v).add(latency, outcome);
            let pv = self.by_phase_version.entry(phase).or_default();
            stats_for(pv, v).add(latency, outcome);
        }
    }

    /// The rollout phase changes at `at`: requests intended at or after `at` belong to `phase`.
    /// Call it no later than the completion of any request intended at or after `at` (a late
    /// call is counted in [`RolloutSummary::late_phase_changes`]).
    pub fn phase_change(&mut self, at: Instant, phase: Phase) {
        if self.max_intended.is_some_and(|m| m >= at) {
            self.late_phase_changes += 1;
        }
        let i = self.phases.partition_point(|(t, _)| *t <= at);
        self.phases.insert(i, (at, phase));
    }

    /// The rollout was aborted at `at` (analysis failure or manual abort); the rollback that
    /// follows ends with the change to [`Phase::After`]. Only the first abort counts.
    pub fn abort(&mut self, at: Instant) {
        self.aborted.get_or_insert(at);
    }

    /// Replica counts changed at `at`: (version, state) → count, for all versions of the
    /// rolled-out service (absent pairs are zero).
    pub fn replicas(&mut self, at: Instant, counts: &ReplicaCounts) {
        let i = self.replica_steps.partition_point(|(t, _)| *t <= at);
        self.replica_steps.insert(i, (at, counts.clone()));
    }

    /// Steering weights changed at `at`: version → basis points (or the effective share when
    /// steering follows replica counts).
    pub fn weights(&mut self, at: Instant, weights: &BTreeMap<String, u32>) {
        let i = self.weight_steps.partition_point(|(t, _)| *t <= at);
        self.weight_steps.insert(i, (at, weights.clone()));
    }

    /// The load generator fell behind its schedule by `lag` at `at`.
    pub fn generator_lag(&mut self, at: Instant, lag: Duration) {
        self.lag_reports += 1;
        if self.max_lag.is_none_or(|(m, _)| lag > m) {
            self.max_lag = Some((lag, at));
        }
        if at.as_nanos() < self.cfg.duration.as_nanos() {
            let idx = self.window_index(at);
            if self.windows.len() <= idx {
                self.windows.resize_with(idx + 1, WindowAcc::default);
            }
            let w = &mut self.windows[idx];
            w.lag_max = Some(w.lag_max.map_or(lag, |m| m.max(lag)));
        }
    }

    /// Closes the run. `end` is when the driver stopped: statistics cover `[0, duration)`, and
    /// replica-seconds are integrated up to `end` if the run stopped before `duration`.
    pub fn finish(mut self, end: Instant) -> RunMetrics {
        let duration = Instant(self.cfg.duration.as_nanos());
        // Every version and state seen anywhere gets a row in every window.
        let mut versions: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        for w in &self.windows {
            for v in w.versions.keys() {
                versions.entry(v.clone()).or_default();
            }
        }
        for (_, counts) in &self.replica_steps {
            for (v, s) in counts.keys() {
                versions.entry(v.clone()).or_default().insert(s.clone(), 0);
            }
        }
        for (_, ws) in &self.weight_steps {
            for v in ws.keys() {
                versions.entry(v.clone()).or_default();
            }
        }
        if let Some(v) = &self.cfg.new_version {
            versions.entry(v.clone()).or_default();
        }
        let states: Vec<String> = {
            let mut s: Vec<String> = versions.values().flat_map(|m| m.keys().cloned()).collect();
            s.sort();
            s.dedup();
            s
        };

        self.windows.resize_with(self.n_windows, WindowAcc::default);
        let accs = std::mem::take(&mut self.windows);
        let mut windows = Vec::with_capacity(accs.len());
        for (k, mut acc) in accs.into_iter().enumerate() {
            let start = Instant(self.window.as_nanos().saturating_mul(k as u64));
            let end = (start + self.window).min(duration);
            let mut replicas = BTreeMap::new();
            for v in versions.keys() {
                let per_state: BTreeMap<String, u32> =
                    states.iter().map(|s| (s.clone(), 0)).collect();
                replicas.insert(v.clone(), per_state);
            }
            if let Some(counts) = step_before(&self.replica_steps, end) {
                for ((v, s), n) in counts {
                    if let Some(slot) = replicas.get_mut(v).and_then(|m| m.get_mut(s)) {
                        *slot = *n;
                    }
                }
            }
            for v in versions.keys() {
                acc.versions.entry(v.clone()).or_default();
            }
            windows.push(Window {
                start,
                end,
                phase: self.phase_at(start),
                total: acc.total,
                versions: acc.versions,
                replicas,
                weights: step_before(&self.weight_steps, end)
                    .cloned()
                    .unwrap_or_default(),
                generator_lag_max: acc.lag_max,
            });
        }

        let summary = self.summarize(duration, end.min(duration));
        RunMetrics { windows, summary }
    }

    fn summarize(&self, duration: Instant, horizon: Instant) -> RunSummary {
        let warmup = Instant(self.cfg.warmup.as_nanos());
        // Phases whose span overlaps [warmup, duration).
        let mut phases = BTreeMap::new();
        let mut spans: Vec<(Instant, Phase)> = vec![(Instant::ZERO, Phase::Before)];
        spans.extend(self.phases.iter().copied());
        for (i, (from, phase)) in spans.iter().enumerate() {
            let to = spans.get(i + 1).map_or(Instant::MAX, |s| s.0);
            if (*from).max(warmup) < to.min(duration) {
                let stats = self
                    .by_phase
                    .get(phase)
                    .map(StatsAcc::stats)
                    .unwrap_or_default();
                phases.insert(*phase, stats);
            }
        }
        let started = self
            .phases
            .iter()
            .find(|(_, p)| *p == Phase::During)
            .map(|(t, _)| *t);
        let ended = started.and_then(|s| {
            self.phases
                .iter()
                .find(|(t, p)| *t >= s && *p == Phase::After)
                .map(|(t, _)| *t)
        });
        let secs = |d: Duration| d.as_secs_f64();
        let new_version_requests = self
            .cfg
            .new_version
            .as_ref()
            .and_then(|v| self.by_version.get(v))
            .map_or(0, |s| s.sent);
        let rollout = RolloutSummary {
            new_version: self.cfg.new_version.clone(),
            started_s: started.map(Instant::as_secs_f64),
            ended_s: ended.map(Instant::as_secs_f64),
            duration_s: started.zip(ended).map(|(s, e)| secs(e.saturating_since(s))),
            aborted_s: self.aborted.map(Instant::as_secs_f64),
            time_to_abort_s: started
                .zip(self.aborted)
                .map(|(s, a)| secs(a.saturating_since(s))),
            rollback_s: self
                .aborted
                .zip(ended)
                .map(|(a, e)| secs(e.saturating_since(a))),
            new_version_requests,
            late_phase_changes: self.late_phase_changes,
        };
        RunSummary {
            window_s: self.window.as_secs_f64(),
            duration_s: self.cfg.duration.as_secs_f64(),
            warmup_s: self.cfg.warmup.as_secs_f64(),
            overall: self.overall.stats(),
            phases,
            versions: self
                .by_version
                .iter()
                .map(|(k, v)| (k.clone(), v.stats()))
                .collect(),
            phase_versions: self
                .by_phase_version
                .iter()
                .map(|(p, m)| (*p, m.iter().map(|(k, v)| (k.clone(), v.stats())).collect()))
                .collect(),
            rollout,
            capacity: self.capacity(horizon),
            generator: GeneratorSummary {
                lag_reports: self.lag_reports,
                max_lag_ms: self.max_lag.map(|(l, _)| l.as_millis_f64()),
                max_lag_at_s: self.max_lag.map(|(_, t)| t.as_secs_f64()),
            },
        }
    }

    /// Integrates the replica step function over `[0, horizon)`.
    fn capacity(&self, horizon: Instant) -> CapacitySummary {
        let steady = u64::from(self.cfg.steady_replicas);
        let (mut total_ns, mut extra_ns, mut peak) = (0u128, 0u128, 0u32);
        for (i, (at, counts)) in self.replica_steps.iter().enumerate() {
            let from = (*at).min(horizon);
            let to = self
                .replica_steps
                .get(i + 1)
                .map_or(horizon, |s| s.0.min(horizon));
            let n: u64 = counts.values().map(|&c| u64::from(c)).sum();
            if *at < horizon {
                peak = peak.max(u32::try_from(n).unwrap_or(u32::MAX));
            }
            let dt = u128::from(to.saturating_since(from).as_nanos());
            total_ns += u128::from(n) * dt;
            extra_ns += u128::from(n.saturating_sub(steady)) * dt;
        }
        CapacitySummary {
            steady_replicas: self.cfg.steady_replicas,
            replica_seconds: total_ns as f64 / 1e9,
            extra_replica_seconds: extra_ns as f64 / 1e9,
            peak_replicas: peak,
        }
    }
}

fn stats_for<'a, T: Counter>(
    m: &'a mut BTreeMap<String, StatsAcc<T>>,
    v: &str,
) -> &'a mut StatsAcc<T> {
    if !m.contains_key(v) {
        m.insert(v.to_string(), StatsAcc::default());
    }
    m.get_mut(v).expect("inserted above")
}

/// The value of a step function in force just before `end` (the last step at `t < end`).
fn step_before<V>(steps: &[(Instant, V)], end: Instant) -> Option<&V> {
    let i = steps.partition_point(|(t, _)| *t < end);
    (i > 0).then(|| &steps[i - 1].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn t(ms: u64) -> Instant {
        Instant(ms * MS)
    }

    fn cfg() -> RecorderConfig {
        RecorderConfig {
            window: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            steady_replicas: 4,
            new_version: Some("v2".into()),
        }
    }

    fn counts(pairs: &[(&str, &str, u32)]) -> BTreeMap<(String, String), u32> {
        pairs
            .iter()
            .map(|(v, s, n)| ((v.to_string(), s.to_string()), *n))
            .collect()
    }

    #[test]
    fn three_latencies_give_hand_computed_percentiles() {
        let mut r = Recorder::new(cfg());
        for (i, lat) in [1u64, 2, 3].iter().enumerate() {
            let sent = t(2000 + i as u64 * 10);
            r.record(
                sent,
                sent + Duration::from_millis(*lat),
                Some("v1"),
                Outcome::Ok,
            );
        }
        let m = r.finish(t(10_000));
        let l = m.summary.overall.latency.expect("latency");
        assert_eq!(l.count, 3);
        // Mean and max are exact.
        assert_eq!(l.mean_ms, 2.0);
        assert_eq!(l.max_ms, 3.0);
        // 3 digits, lowest 1 µs: unit 512 ns, 2048 sub-buckets. 2 ms lies in bucket 1 (width
        // 1024 ns): 1953·1024 = 1 999 872 ≤ 2 ms < 2 000 896 → highest equivalent 2 000 895 ns.
        // p50 = the 2nd of 3 samples (rank ⌈0.5·3⌉ = 2).
        assert_eq!(l.p50_ms, 2_000_895.0 / 1e6);
        // p90 and up are the 3rd sample; 3 ms in bucket 2 (width 2048 ns):
        // 1464·2048 = 2 998 272 ≤ 3 ms < 3 000 320 → 3 000 319 ns, above the largest sample,
        // so clamped to the exact max.
        assert_eq!(l.p90_ms, 3.0);
        assert_eq!(l.p99_ms, 3.0);
        assert_eq!(l.p999_ms, 3.0);
    }

    #[test]
    fn windows_and_phases_follow_intended_time_not_completion() {
        let mut r = Recorder::new(cfg());
        r.phase_change(t(5_000), Phase::During);
        // Intended at 4.9 s, done at 6 s: window 4, phase before, latency 1.1 s.
        r.record(t(4_900), t(6_000), Some("v1"), Outcome::Ok);
        r.record(t(5_000), t(5_001), Some("v2"), Outcome::Ok);
        r.record(t(5_500), t(7_500), None, Outcome::Error(ErrorKind::Timeout));
        r.record(t(10_000), t(10_001), Some("v1"), Outcome::Ok); // at duration: ignored
        let m = r.finish(t(10_000));
        assert_eq!(m.windows.len(), 10);
        assert_eq!(m.windows[4].total.stats().sent, 1);
        assert_eq!(m.windows[4].phase, Phase::Before);
        assert_eq!(m.windows[5].phase, Phase::During);
        let w5 = m.windows[5].total.stats();
        assert_eq!((w5.sent, w5.ok, w5.errors.timeout), (2, 1, 1));
        assert_eq!(m.windows[5].share("v2"), Some(1.0));
        assert_eq!(m.windows[5].share("v1"), Some(0.0));
        let s = &m.summary;
        assert_eq!(s.overall.sent, 3);
        assert_eq!(
            s.phases[&Phase::Before].latency.map(|l| l.max_ms),
            Some(1100.0)
        );
        assert_eq!(s.phases[&Phase::During].sent, 2);
        assert_eq!(s.phases[&Phase::During].errors.total(), 1);
        assert_eq!(s.phase_versions[&Phase::During]["v2"].ok, 1);
        assert_eq!(s.rollout.new_version_requests, 1);
        assert_eq!(s.rollout.started_s, Some(5.0));
        assert_eq!(s.rollout.ended_s, None);
        assert_eq!(s.rollout.late_phase_changes, 0);
    }

    #[test]
    fn warmup_is_in_the_time_series_but_not_the_summary() {
        let mut r = Recorder::new(cfg());
        r.record(t(500), t(501), Some("v1"), Outcome::Ok);
        r.record(
            t(1_500),
            t(1_501),
            Some("v1"),
            Outcome::Error(ErrorKind::Http5xx),
        );
        let m = r.finish(t(10_000));
        assert_eq!(m.windows[0].total.stats().ok, 1);
        assert_eq!(m.summary.overall.sent, 1);
        assert_eq!(m.summary.overall.errors.http_5xx, 1);
        assert!(m.summary.overall.latency.is_none());
        assert_eq!(m.summary.versions["v1"].sent, 1);
    }

    #[test]
    fn replica_seconds_of_a_known_step_function() {
        let mut r = Recorder::new(cfg());
        // 4 replicas from 0 s; a surge to 5 (+1 starting) at 2 s, 6 at 3 s, back to 4 at 6 s.
        r.replicas(t(0), &counts(&[("v1", "ready", 4)]));
        r.replicas(
            t(2_000),
            &counts(&[("v1", "ready", 4), ("v2", "starting", 1)]),
        );
        r.replicas(
            t(3_000),
            &counts(&[
                ("v1", "ready", 3),
                ("v2", "ready", 2),
                ("v1", "draining", 1),
            ]),
        );
        r.replicas(t(6_000), &counts(&[("v2", "ready", 4)]));
        let m = r.finish(t(10_000));
        let c = &m.summary.capacity;
        // 4·2 + 5·1 + 6·3 + 4·4 = 47; extra: 1·1 + 2·3 = 7.
        assert_eq!(c.replica_seconds, 47.0);
        assert_eq!(c.extra_replica_seconds, 7.0);
        assert_eq!(c.peak_replicas, 6);
        // Window [2 s, 3 s) ends with the 2 s counts; the 3 s change belongs to the next one.
        assert_eq!(m.windows[2].replicas["v2"]["starting"], 1);
        assert_eq!(m.windows[2].replicas["v1"]["draining"], 0);
        assert_eq!(m.windows[3].replicas["v1"]["draining"], 1);
        assert_eq!(m.windows[9].replicas["v2"]["ready"], 4);
        assert_eq!(m.windows[9].replicas["v1"]["ready"], 0);
    }

    #[test]
    fn replica_seconds_stop_at_an_early_end() {
        let mut r = Recorder::new(cfg());
        r.replicas(t(0), &counts(&[("v1", "ready", 4)]));
        r.replicas(t(1_000), &counts(&[("v1", "ready", 6)]));
        // Stopped at 2.5 s: 4·1 + 6·1.5 = 13, extra 2·1.5 = 3.
        let c = r.finish(t(2_500)).summary.capacity;
        assert_eq!((c.replica_seconds, c.extra_replica_seconds), (13.0, 3.0));
    }

    #[test]
    fn rollout_timing_with_abort_and_rollback() {
        let mut r = Recorder::new(cfg());
        r.phase_change(t(2_000), Phase::During);
        r.abort(t(4_500));
        r.phase_change(t(5_250), Phase::After);
        r.weights(
            t(2_000),
            &[("v1".to_string(), 9_500), ("v2".to_string(), 500)].into(),
        );
        r.weights(
            t(4_500),
            &[("v1".to_string(), 10_000), ("v2".to_string(), 0)].into(),
        );
        let m = r.finish(t(10_000));
        let ro = &m.summary.rollout;
        assert_eq!(ro.duration_s, Some(3.25));
        assert_eq!(ro.time_to_abort_s, Some(2.5));
        assert_eq!(ro.rollback_s, Some(0.75));
        assert_eq!(m.windows[1].weights.len(), 0);
        assert_eq!(m.windows[2].weights["v2"], 500);
        assert_eq!(m.windows[4].weights["v2"], 0);
        let phases: Vec<Phase> = m.summary.phases.keys().copied().collect();
        assert_eq!(phases, vec![Phase::Before, Phase::During, Phase::After]);
    }

    #[test]
    fn late_phase_change_is_counted() {
        let mut r = Recorder::new(cfg());
        r.record(t(3_000), t(3_001), Some("v1"), Outcome::Ok);
        r.phase_change(t(2_999), Phase::During);
        assert_eq!(r.finish(t(10_000)).summary.rollout.late_phase_changes, 1);
    }

    #[test]
    fn generator_lag_is_summarized_per_window_and_run() {
        let mut r = Recorder::new(cfg());
        r.generator_lag(t(1_200), Duration::from_millis(3));
        r.generator_lag(t(1_300), Duration::from_millis(7));
        r.generator_lag(t(4_000), Duration::from_millis(5));
        let m = r.finish(t(10_000));
        assert_eq!(
            m.windows[1].generator_lag_max,
            Some(Duration::from_millis(7))
        );
        assert_eq!(m.windows[2].generator_lag_max, None);
        assert_eq!(m.summary.generator.lag_reports, 3);
        assert_eq!(m.summary.generator.max_lag_ms, Some(7.0));
        assert_eq!(m.summary.generator.max_lag_at_s, Some(1.3));
    }

    #[test]
    fn last_window_is_partial() {
        let mut r = Recorder::new(RecorderConfig {
            window: Duration::from_millis(300),
            duration: Duration::from_secs(1),
            ..cfg()
        });
        r.record(t(950), t(951), Some("v1"), Outcome::Ok);
        let m = r.finish(t(1_000));
        assert_eq!(m.windows.len(), 4);
        assert_eq!(m.windows[3].start, t(900));
        assert_eq!(m.windows[3].end, t(1_000));
        assert_eq!(m.windows[3].total.stats().ok, 1);
    }
}
