//! Distributions of durations: service times, jitter, think times.
//!
//! A [`Dist`] is a value; sampling takes the component's own [`Rng`], so the same generator state
//! always gives the same sample. Samples are clamped at zero (a normal can go negative) and
//! rounded to whole nanoseconds. The textual form (`"lognormal(median=2ms,p99=10ms)"`) is parsed
//! by `scenario::units::parse_dist` and printed back by `Display`.

use std::fmt;
use std::sync::Arc;

use super::rng::Rng;
use super::time::Duration;

/// z-score of the 99th percentile of the standard normal.
const Z99: f64 = 2.326_347_874_040_841;

#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    Const(Duration),
    Exp {
        mean: Duration,
    },
    Uniform {
        low: Duration,
        high: Duration,
    },
    Normal {
        mean: Duration,
        sd: Duration,
    },
    /// Given by its median and 99th percentile; `mu`/`sigma` are those of the underlying normal
    /// in log-seconds.
    LogNormal {
        median: Duration,
        p99: Duration,
    },
    Pareto {
        scale: Duration,
        shape: f64,
    },
    /// Resampled uniformly from measured values (e.g. service times from a trace), read from a
    /// file by the scenario loader. `source` is the path as written, for display.
    Empirical {
        source: String,
        samples: Arc<Vec<Duration>>,
    },
}

impl Dist {
    /// Draws one sample. Uses a fixed number of generator outputs per variant.
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        match self {
            Dist::Const(d) => *d,
            Dist::Exp { mean } => Duration::from_secs_f64(-mean.as_secs_f64() * rng.open01().ln()),
            Dist::Uniform { low, high } => {
                let (l, h) = (low.as_secs_f64(), high.as_secs_f64());
                Duration::from_secs_f64(l + (h - l) * rng.open01())
            }
            Dist::Normal { mean, sd } => {
                Duration::from_secs_f64(mean.as_secs_f64() + sd.as_secs_f64() * rng.std_normal())
            }
            Dist::LogNormal { .. } => {
                let (mu, sigma) = self.lognormal_params();
                Duration::from_secs_f64((mu + sigma * rng.std_normal()).exp())
            }
            Dist::Pareto { scale, shape } => {
                Duration::from_secs_f64(scale.as_secs_f64() / rng.open01().powf(1.0 / shape))
            }
            Dist::Empirical { samples, .. } => samples[rng.below(samples.len() as u64) as usize],
        }
    }

    /// The distribution's mean (for capacity planning and tests against theory). Infinite for a
    /// Pareto with shape ≤ 1; the normal's mean ignores the clamp at zero.
    pub fn mean_secs(&self) -> f64 {
        match self {
            Dist::Const(d) => d.as_secs_f64(),
            Dist::Exp { mean } => mean.as_secs_f64(),
            Dist::Uniform { low, high } => (low.as_secs_f64() + high.as_secs_f64()) / 2.0,
            Dist::Normal { mean, .. } => mean.as_secs_f64(),
            Dist::LogNormal { .. } => {
                let (mu, sigma) = self.lognormal_params();
                (mu + sigma * sigma / 2.0).exp()
            }
            Dist::Pareto { scale, shape } => {
                if *shape <= 1.0 {
                    f64::INFINITY
                } else {
                    scale.as_secs_f64() * shape / (shape - 1.0)
                }
            }
            Dist::Empirical { samples, .. } => {
                samples.iter().map(|d| d.as_secs_f64()).sum::<f64>() / samples.len() as f64
            }
        }
    }

    /// Whether every sample is zero (a zero-time service needs no timer at all).
    pub fn is_zero(&self) -> bool {
        matches!(self, Dist::Const(d) if d.is_zero())
    }

    fn lognormal_params(&self) -> (f64, f64) {
        match self {
            Dist::LogNormal { median, p99 } => {
                let mu = median.as_secs_f64().ln();
                let sigma = (p99.as_secs_f64().ln() - mu) / Z99;
                (mu, sigma)
            }
            _ => unreachable!("lognormal_params on another distribution"),
        }
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Const(d) => write!(f, "const({d})"),
            Dist::Exp { mean } => write!(f, "exp(mean={mean})"),
            Dist::Uniform { low, high } => write!(f, "uniform({low},{high})"),
            Dist::Normal { mean, sd } => write!(f, "normal(mean={mean},sd={sd})"),
            Dist::LogNormal { median, p99 } => write!(f, "lognormal(median={median},p99={p99})"),
            Dist::Pareto { scale, shape } => write!(f, "pareto(scale={scale},shape={shape})"),
            Dist::Empirical { source, .. } => write!(f, "empirical({source})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_mean(d: &Dist, n: usize) -> f64 {
        let mut rng = Rng::new(11);
        (0..n)
            .map(|_| d.sample(&mut rng).as_secs_f64())
            .sum::<f64>()
            / n as f64
    }

    #[test]
    fn sample_means_match_analytic_means() {
        let ms = Duration::from_millis;
        for d in [
            Dist::Const(ms(2)),
            Dist::Exp { mean: ms(2) },
            Dist::Uniform {
                low: ms(1),
                high: ms(3),
            },
            Dist::Normal {
                mean: ms(5),
                sd: ms(1),
            },
            Dist::LogNormal {
                median: ms(2),
                p99: ms(10),
            },
            Dist::Pareto {
                scale: ms(1),
                shape: 3.0,
            },
        ] {
            let (m, want) = (sample_mean(&d, 200_000), d.mean_secs());
            assert!(
                (m - want).abs() / want < 0.02,
                "{d}: sample mean {m} vs {want}"
            );
        }
    }

    #[test]
    fn lognormal_quantiles_are_as_given() {
        let d = Dist::LogNormal {
            median: Duration::from_millis(2),
            p99: Duration::from_millis(10),
        };
        let mut rng = Rng::new(5);
        let mut v: Vec<u64> = (0..100_000)
            .map(|_| d.sample(&mut rng).as_nanos())
            .collect();
        v.sort_unstable();
        let median = v[50_000] as f64 / 1e6;
        let p99 = v[99_000] as f64 / 1e6;
        assert!((median - 2.0).abs() < 0.05, "median {median}");
        assert!((p99 - 10.0).abs() < 0.5, "p99 {p99}");
    }
}
