//! Canary analysis: per-interval observations of the canary and the stable version, and the
//! judges that turn one interval into pass, fail or inconclusive.
//!
//! An [`Analyzer`] is fed every completed request of the service ([`Analyzer::observe`]) and cuts
//! time into intervals of `Analysis::interval` from [`Analyzer::begin`] on. An observation at time
//! `t` belongs to the interval `[start, end)` containing `t`, whatever the order in which the
//! caller interleaves observations and polls, so interval boundaries are exact in virtual time.
//! [`Analyzer::poll`] judges every interval that has ended and reports it; after more than
//! `failure_limit` failed intervals (in total, not consecutive, as Argo Rollouts counts
//! `failureLimit`) [`Analyzer::exhausted`] turns true and the strategy aborts.
//!
//! Guarantees:
//! - **Bounded memory.** A [`Sample`] keeps counts exactly and at most `cap` latencies (10,000 by
//!   default) per version and interval. When full it keeps every second retained value and
//!   doubles its stride, so the kept latencies are exactly the observations whose index is a
//!   multiple of the stride: a systematic sample, deterministic, with no entropy.
//! - **Latencies of every request** count, failed ones included (a timed-out request is slow for
//!   its user); the error rate is errors over requests.
//! - **No canary requests → inconclusive.** An interval in which the canary served nothing is
//!   neither a pass nor a failure (Argo would count it as inconclusive too).
//!
//! Judges ([`Judge`]):
//! - `Thresholds`: fail when the canary's error rate exceeds `max_error_rate` or its p99
//!   (nearest rank on the kept latencies) exceeds `max_p99`; absent limits are not checked.
//! - `MannWhitney`: fail when the canary's error rate exceeds `max_error_rate`, or when a
//!   one-sided Mann-Whitney U test says canary latencies are stochastically greater than stable
//!   ones at α = 0.05 (normal approximation with tie correction and continuity correction, the
//!   same statistic and p-value as `scipy.stats.mannwhitneyu(canary, stable,
//!   alternative="greater", method="asymptotic")`). `max_p99` is not used by this judge. With
//!   large samples even a small shift is significant; that is the nature of a significance test
//!   (Kayenta adds an effect-size margin, which we do not). When the stable version served
//!   nothing in the interval (blue-green after its switch) the stable latencies of the most recent
//!   interval, or of the time before [`Analyzer::begin`], in which it did serve are the reference;
//!   with no reference at all the latency comparison is inconclusive.

use std::fmt;

use crate::model::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judge {
    /// Fail an interval when the canary's error rate or p99 exceeds the limits.
    Thresholds,
    /// Fail an interval when canary latencies are significantly larger than stable ones
    /// (one-sided Mann-Whitney U, α = 0.05), or the error-rate limit is exceeded.
    MannWhitney,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Analysis {
    pub interval: Duration,
    pub max_error_rate: Option<f64>,
    pub max_p99: Option<Duration>,
    /// Failed intervals tolerated; one more aborts.
    pub failure_limit: u32,
    pub judge: Judge,
}

/// Latencies kept per version and interval by default.
pub const MAX_SAMPLES: usize = 10_000;

/// Significance level of the Mann-Whitney judge.
pub const ALPHA: f64 = 0.05;

/// Counts and a bounded, deterministic systematic sample of latencies.
#[derive(Clone, Debug)]
pub struct Sample {
    requests: u64,
    errors: u64,
    latencies: Vec<Duration>,
    /// Keep the observations whose index is a multiple of `stride`.
    stride: u64,
    cap: usize,
}

impl Default for Sample {
    fn default() -> Self {
        Sample::with_cap(MAX_SAMPLES)
    }
}

impl Sample {
    /// A sample that keeps at most `cap` (at least 2) latencies.
    pub fn with_cap(cap: usize) -> Self {
        Sample {
            requests: 0,
            errors: 0,
            latencies: Vec::new(),
            stride: 1,
            cap: cap.max(2),
        }
    }

    pub fn add(&mut self, latency: Duration, ok: bool) {
        if self.requests % self.stride == 0 {
            self.latencies.push(latency);
            if self.latencies.len() > self.cap {
                let mut i = 0;
                self.latencies.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
        }
        self.requests += 1;
        if !ok {
            self.errors += 1;
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }
    pub fn errors(&self) -> u64 {
        self.errors
    }
    /// The kept latencies, in arrival order.
    pub fn latencies(&self) -> &[Duration] {
        &self.latencies
    }
    /// Errors over requests; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
    /// Nearest-rank quantile `q` in (0, 1] of the kept latencies.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut v = self.latencies.clone();
        v.sort_unstable();
        let rank = (q * v.len() as f64).ceil() as usize;
        Some(v[rank.clamp(1, v.len()) - 1])
    }
}

/// Result of a one-sided Mann-Whitney U test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U statistic of the first sample (number of pairs where it is greater, ties counting ½).
    pub u: f64,
    pub z: f64,
    /// P(U ≥ u) under the null hypothesis, normal approximation.
    pub p: f64,
}

/// One-sided Mann-Whitney U test that `x` is stochastically greater than `y`, with the normal
/// approximation, tie correction and continuity correction (scipy's `method="asymptotic"`).
/// `None` when either sample is empty. When every value is tied the variance is zero and the
/// result is `p = 1` (no evidence of a difference).
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let (mut r1, mut tie_term) = (0.0_f64, 0.0_f64);
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let avg = (i + 1 + j) as f64 / 2.0;
        let in_x = all[i..j].iter().filter(|e| e.1).count();
        r1 += avg * in_x as f64;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = r1 - n1f * (n1f + 1.0) / 2.0;
    let mu = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if var <= 0.0 {
        return Some(MannWhitney { u, z: 0.0, p: 1.0 });
    }
    let z = (u - mu - 0.5) / var.sqrt();
    Some(MannWhitney {
        u,
        z,
        p: normal_sf(z),
    })
}

/// Survival function of the standard normal, P(Z > z), via erfc (Numerical Recipes' Chebyshev
/// fit `erfcc`, fractional error below 1.2e-7 everywhere).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ans = t * poly.exp();
    if x >= 0.0 {
        ans
    } else {
        2.0 - ans
    }
}

/// The verdict on one interval.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    /// Why, naming the metric and its values.
    Fail(String),
    /// Why nothing could be concluded.
    Inconclusive(String),
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::Inconclusive(_) => "inconclusive",
        }
    }
}

fn pct(r: f64) -> String {
    format!("{:.2}%", r * 100.0)
}

/// Judges one interval. `reference` is the stable latency sample the Mann-Whitney judge compares
/// with (the interval's own stable sample, or an earlier one when the stable version served
/// nothing).
pub fn judge(
    cfg: &Analysis,
    canary_version: &str,
    canary: &Sample,
    reference: Option<&Sample>,
) -> Verdict {
    let Some(rate) = canary.error_rate() else {
        return Verdict::Inconclusive(format!("no requests served by {canary_version}"));
    };
    let mut failures = Vec::new();
    if let Some(max) = cfg.max_error_rate {
        if rate > max {
            failures.push(format!(
                "error rate {} > {} ({}/{} requests)",
                pct(rate),
                pct(max),
                canary.errors,
                canary.requests
            ));
        }
    }
    match cfg.judge {
        Judge::Thresholds => {
            if let (Some(max), Some(p99)) = (cfg.max_p99, canary.quantile(0.99)) {
                if p99 > max {
                    failures.push(format!("p99 {p99} > {max}"));
                }
            }
        }
        Judge::MannWhitney => {
            let secs = |s: &Sample| {
                s.latencies
                    .iter()
                    .map(|d| d.as_secs_f64())
                    .collect::<Vec<_>>()
            };
            let test = reference.and_then(|r| mann_whitney_greater(&secs(canary), &secs(r)));
            match test {
                Some(t) if t.p < ALPHA => failures.push(format!(
                    "latency greater than stable (Mann-Whitney U={}, z={:.3}, p={:.4} < {ALPHA}; \
                     median {} vs {})",
                    t.u,
                    t.z,
                    t.p,
                    canary.quantile(0.5).unwrap_or_default(),
                    reference.and_then(|r| r.quantile(0.5)).unwrap_or_default(),
                )),
                Some(_) => {}
                None if failures.is_empty() => {
                    return Verdict::Inconclusive("no stable latencies to compare with".into());
                }
                None => {}
            }
        }
    }
    if failures.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(failures.join("; "))
    }
}

/// Counts and latency summary of one version in one interval, for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub version: String,
    pub requests: u64,
    pub errors: u64,
    pub p99: Option<Duration>,
}

impl Summary {
    fn of(version: &str, s: &Sample) -> Self {
        Summary {
            version: version.to_string(),
            requests: s.requests,
            errors: s.errors,
            p99: s.quantile(0.99),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} requests, {} errors",
            self.version, self.requests, self.errors
        )?;
        if let Some(p99) = self.p99 {
            write!(f, ", p99 {p99}")?;
        }
        Ok(())
    }
}

/// One judged interval.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalReport {
    /// 1-based.
    pub index: u32,
    pub start: Instant,
    pub end: Instant,
    pub canary: Summary,
    pub stable: Summary,
    pub verdict: Verdict,
    /// Failed intervals so far, this one included.
    pub failed: u32,
}

impl fmt::Display for IntervalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interval {} [{}, {}): {}; {}; {}",
            self.index,
            self.start,
            self.end,
            self.canary,
            self.stable,
            self.verdict.as_str()
        )?;
        match &self.verdict {
            Verdict::Pass => {}
            Verdict::Fail(why) | Verdict::Inconclusive(why) => write!(f, ": {why}")?,
        }
        write!(f, " ({} failed so far)", self.failed)
    }
}

#[derive(Clone, Debug)]
struct Ended {
    start: Instant,
    end: Instant,
    canary: Sample,
    stable: Sample,
    /// The Mann-Whitney reference: `stable`, or the latest earlier non-empty stable sample.
    reference: Option<Sample>,
}

/// Collects observations per interval and judges intervals as they end.
#[derive(Clone, Debug)]
pub struct Analyzer {
    cfg: Analysis,
    canary: String,
    stable: String,
    cur_canary: Sample,
    cur_stable: Sample,
    /// Latest non-empty stable sample of an earlier interval (Mann-Whitney reference).
    baseline: Option<Sample>,
    /// Intervals that ended but are not judged yet.
    ended: Vec<Ended>,
    /// Start and end of the current interval, once begun.
    window: Option<(Instant, Instant)>,
    index: u32,
    failed: u32,
}

impl Analyzer {
    pub fn new(cfg: Analysis, canary: &str, stable: &str) -> Self {
        Analyzer {
            cfg,
            canary: canary.to_string(),
            stable: stable.to_string(),
            cur_canary: Sample::default(),
            cur_stable: Sample::default(),
            baseline: None,
            ended: Vec::new(),
            window: None,
            index: 0,
            failed: 0,
        }
    }

    /// Starts the first interval at `now`. Canary observations made before are discarded; stable
    /// ones become the reference until the stable version serves again. Calling it again does
    /// nothing.
    pub fn begin(&mut self, now: Instant) {
        if self.window.is_some() {
            return;
        }
        let stable = std::mem::take(&mut self.cur_stable);
        if stable.requests > 0 {
            self.baseline = Some(stable);
        }
        self.cur_canary = Sample::default();
        self.window = Some((now, now + self.interval()));
    }

    fn interval(&self) -> Duration {
        // A zero interval would never advance; validation forbids it, a nanosecond is the floor.
        Duration::from_nanos(self.cfg.interval.as_nanos().max(1))
    }

    /// Closes every interval that ends at or before `now`.
    fn advance(&mut self, now: Instant) {
        while let Some((start, end)) = self.window {
            if now < end {
                break;
            }
            let canary = std::mem::take(&mut self.cur_canary);
            let stable = std::mem::take(&mut self.cur_stable);
            let reference = if stable.requests > 0 {
                self.baseline = Some(stable.clone());
                Some(stable.clone())
            } else {
                self.baseline.clone()
            };
            self.ended.push(Ended {
                start,
                end,
                canary,
                stable,
                reference,
            });
            self.window = Some((end, end + self.interval()));
        }
    }

    /// Records one completed request at `now`. Versions other than the canary and the stable
    /// one are ignored.
    pub fn observe(&mut self, now: Instant, version: &str, latency: Duration, ok: bool) {
        self.advance(now);
        if version == self.canary {
            self.cur_canary.add(latency, ok);
        } else if version == self.stable {
            self.cur_stable.add(latency, ok);
        }
    }

    /// When the current interval ends; `None` before [`Analyzer::begin`].
    pub fn next_at(&self) -> Option<Instant> {
        self.window.map(|w| w.1)
    }

    /// Judges every interval that has ended by `now`, oldest first.
    pub fn poll(&mut self, now: Instant) -> Vec<IntervalReport> {
        self.advance(now);
        let mut out = Vec::new();
        for Ended {
            start,
            end,
            canary,
            stable,
            reference,
        } in std::mem::take(&mut self.ended)
        {
            let verdict = judge(&self.cfg, &self.canary, &canary, reference.as_ref());
            self.index += 1;
            if matches!(verdict, Verdict::Fail(_)) {
                self.failed += 1;
            }
            out.push(IntervalReport {
                index: self.index,
                start,
                end,
                canary: Summary::of(&self.canary, &canary),
                stable: Summary::of(&self.stable, &stable),
                verdict,
                failed: self.failed,
            });
        }
        out
    }

    /// Failed intervals so far.
    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// Failed intervals tolerated; one more aborts.
    pub fn failure_limit(&self) -> u32 {
        self.cfg.failure_limit
    }

    /// More than `failure_limit` intervals failed: the rollout must abort.
    pub fn exhausted(&self) -> bool {
        self.failed > self.cfg.failure_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(judge: Judge) -> Analysis {
        Analysis {
            interval: Duration::from_secs(5),
            max_error_rate: Some(0.01),
            max_p99: Some(Duration::from_millis(50)),
            failure_limit: 2,
            judge,
        }
    }

    // References computed once with scipy 1.x:
    //   from scipy.stats import mannwhitneyu
    //   mannwhitneyu(x, y, alternative='greater', method='asymptotic')
    #[test]
    fn mann_whitney_matches_scipy_with_ties() {
        let x = [3.0, 5.0, 5.0, 7.0, 9.0, 9.0, 9.0, 12.0];
        let y = [1.0, 2.0, 5.0, 5.0, 6.0, 9.0, 10.0];
        let r = mann_whitney_greater(&x, &y).unwrap();
        // By hand: x=3 beats 1,2 (2); each x=5 beats 1,2 and ties two 5s (3 each); x=7 beats
        // 1,2,5,5,6 (5); each x=9 beats five and ties one (5.5 each); x=12 beats all seven.
        assert_eq!(r.u, 2.0 + 3.0 + 3.0 + 5.0 + 3.0 * 5.5 + 7.0);
        assert_eq!(r.u, 36.5);
        assert!((r.p - 0.17288929307558015).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn mann_whitney_matches_scipy_shifted_and_reversed() {
        let x = [2.1, 2.8, 3.3, 3.9, 4.4, 5.0, 5.6, 6.1, 6.9, 7.5];
        let y = [1.0, 1.4, 2.0, 2.2, 2.9, 3.1, 3.6, 4.0, 4.2, 4.8, 5.3, 5.9];
        let r = mann_whitney_greater(&x, &y).unwrap();
        assert_eq!(r.u, 86.0);
        assert!((r.p - 0.04634066162615409).abs() < 1e-6, "{r:?}");
        let r = mann_whitney_greater(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0, 9.0]).unwrap();
        assert_eq!(r.u, 0.0);
        assert!((r.p - 0.9949438330393333).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn mann_whitney_degenerate_inputs() {
        assert_eq!(mann_whitney_greater(&[], &[1.0]), None);
        let r = mann_whitney_greater(&[2.0, 2.0], &[2.0, 2.0, 2.0]).unwrap();
        assert_eq!((r.u, r.p), (3.0, 1.0));
    }

    // scipy.stats.norm.sf(z)
    #[test]
    fn normal_sf_matches_scipy() {
        for (z, want) in [
            (-3.0, 0.9986501019683699),
            (-1.0, 0.8413447460685429),
            (0.0, 0.5),
            (0.5, 0.3085375387259869),
            (1.6448536269514722, 0.050000000000000044),
            (2.5, 0.006209665325776132),
            (4.0, 3.167124183311986e-05),
        ] {
            let got = normal_sf(z);
            assert!(((got - want) / want).abs() < 2e-7, "z={z}: {got} vs {want}");
        }
    }

    #[test]
    fn mann_whitney_false_positive_rate_is_alpha() {
        // Canary and stable from the same continuous distribution: the test should reject in
        // α = 5 % of trials. 1000 trials: 50 expected, binomial sd 6.9; accept ±3 sd.
        let mut rng = crate::model::rng::Rng::new(42);
        let trials = 1000;
        let mut rejected = 0;
        for _ in 0..trials {
            let x: Vec<f64> = (0..60).map(|_| rng.open01()).collect();
            let y: Vec<f64> = (0..240).map(|_| rng.open01()).collect();
            if mann_whitney_greater(&x, &y).unwrap().p < ALPHA {
                rejected += 1;
            }
        }
        assert!((30..=70).contains(&rejected), "{rejected} of {trials}");
    }

    #[test]
    fn sample_is_bounded_and_systematic() {
        let mut s = Sample::with_cap(8);
        for i in 0..100u64 {
            s.add(Duration::from_nanos(i), i % 10 != 0);
        }
        assert_eq!((s.requests(), s.errors()), (100, 10));
        assert!(s.latencies().len() <= 8);
        // Each overflow (9 kept) halves to 5 and doubles the stride: 1 → 2 → 4 → 8 → 16, so the
        // kept values are the indices that are multiples of 16.
        let kept: Vec<u64> = s.latencies().iter().map(|d| d.as_nanos()).collect();
        assert_eq!(kept, vec![0, 16, 32, 48, 64, 80, 96]);
        assert_eq!(s.error_rate(), Some(0.1));
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let mut s = Sample::default();
        for ms in 1..=200 {
            s.add(Duration::from_millis(ms), true);
        }
        assert_eq!(s.quantile(0.99), Some(Duration::from_millis(198)));
        assert_eq!(s.quantile(0.5), Some(Duration::from_millis(100)));
        assert_eq!(Sample::default().quantile(0.99), None);
    }

    fn filled(n: u64, errors: u64, ms: impl Fn(u64) -> u64) -> Sample {
        let mut s = Sample::default();
        for i in 0..n {
            s.add(Duration::from_millis(ms(i)), i >= errors);
        }
        s
    }

    #[test]
    fn thresholds_judge() {
        let c = cfg(Judge::Thresholds);
        assert_eq!(
            judge(&c, "v2", &filled(100, 1, |_| 10), None),
            Verdict::Pass
        );
        let Verdict::Fail(why) = judge(&c, "v2", &filled(100, 5, |_| 10), None) else {
            panic!()
        };
        assert_eq!(why, "error rate 5.00% > 1.00% (5/100 requests)");
        let Verdict::Fail(why) = judge(
            &c,
            "v2",
            &filled(100, 0, |i| if i >= 98 { 80 } else { 10 }),
            None,
        ) else {
            panic!()
        };
        assert_eq!(why, "p99 80ms > 50ms");
        assert!(matches!(
            judge(&c, "v2", &Sample::default(), None),
            Verdict::Inconclusive(_)
        ));
        let none = Analysis {
            max_error_rate: None,
            max_p99: None,
            ..c
        };
        assert_eq!(
            judge(&none, "v2", &filled(100, 100, |_| 900), None),
            Verdict::Pass
        );
    }

    #[test]
    fn mann_whitney_judge() {
        let c = cfg(Judge::MannWhitney);
        let stable = filled(200, 0, |i| 2 + i % 7);
        // Same distribution: not significant.
        assert_eq!(
            judge(&c, "v2", &filled(50, 0, |i| 2 + i % 7), Some(&stable)),
            Verdict::Pass
        );
        // Shifted by 3 ms: significant.
        let Verdict::Fail(why) = judge(&c, "v2", &filled(50, 0, |i| 5 + i % 7), Some(&stable))
        else {
            panic!()
        };
        assert!(
            why.starts_with("latency greater than stable (Mann-Whitney U="),
            "{why}"
        );
        // Faster canary: the one-sided test does not fail it.
        assert_eq!(
            judge(&c, "v2", &filled(50, 0, |i| 1 + i % 3), Some(&stable)),
            Verdict::Pass
        );
        // Error limit still applies; no reference → inconclusive unless errors fail it.
        assert!(matches!(
            judge(&c, "v2", &filled(50, 5, |_| 2), Some(&stable)),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            judge(&c, "v2", &filled(50, 5, |_| 2), None),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            judge(&c, "v2", &filled(50, 0, |_| 2), None),
            Verdict::Inconclusive(_)
        ));
    }

    #[test]
    fn analyzer_cuts_exact_intervals_and_counts_failures() {
        let mut a = Analyzer::new(cfg(Judge::Thresholds), "v2", "v1");
        let s = |x: u64| Instant::ZERO + Duration::from_secs(x);
        a.observe(s(1), "v2", Duration::from_millis(1), false); // before begin: discarded
        a.begin(s(10));
        assert_eq!(a.next_at(), Some(s(15)));
        // Interval 1 [10, 15): 100 canary requests, 5 errors.
        for i in 0..100 {
            a.observe(
                s(10) + Duration::from_millis(i * 40),
                "v2",
                Duration::from_millis(3),
                i % 20 != 0,
            );
        }
        // An observation exactly at 15 s belongs to interval 2, even before the poll at 15 s.
        a.observe(s(15), "v2", Duration::from_millis(3), true);
        a.observe(s(16), "v1", Duration::from_millis(3), true);
        let r = a.poll(s(15));
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].index, r[0].start, r[0].end), (1, s(10), s(15)));
        assert_eq!((r[0].canary.requests, r[0].canary.errors), (100, 5));
        assert!(matches!(r[0].verdict, Verdict::Fail(_)));
        assert_eq!(a.failed(), 1);
        // Interval 2 passes, interval 3 has no canary requests.
        let r = a.poll(s(25));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].verdict, Verdict::Pass);
        assert_eq!((r[0].canary.requests, r[0].stable.requests), (1, 1));
        assert_eq!(
            r[1].verdict,
            Verdict::Inconclusive("no requests served by v2".into())
        );
        assert!(!a.exhausted());
        assert_eq!(a.next_at(), Some(s(30)));
    }
}
