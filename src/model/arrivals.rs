//! Intended send times of an open-loop workload (pure: no clock, seeded randomness): the
//! offered rate over time ([`RateSchedule`]), how requests are spaced ([`Arrivals`]), and the
//! send times themselves ([`ArrivalProcess`]).
//!
//! A generator with `n` threads runs `n` [`ArrivalProcess`]es, one per thread, that together
//! make up the whole schedule: with constant arrivals thread `i` takes every `n`-th slot of the
//! evenly spaced sequence (slot `j` at `start + j / rate`), so the union is exactly the
//! single-threaded sequence; with Poisson arrivals each thread is a Poisson process of rate
//! `rate / n` with its own seed, and the superposition of independent Poisson processes is a
//! Poisson process of the full rate. Rate changes of a schedule take effect exactly at their
//! time: constant arrivals restart their grid there; Poisson arrivals redraw there, which is
//! exact because the exponential distribution is memoryless.

use crate::model::rng::Rng;
use crate::model::time::{Duration, Instant};
use crate::model::units::RequestRate;

/// How the requests of a rate are spaced in time: evenly, or as a Poisson process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrivals {
    Constant,
    Poisson,
}

/// The offered rate over time: piecewise constant, starting at time zero.
#[derive(Clone, Debug, PartialEq)]
pub struct RateSchedule {
    /// `(from, rate)` pairs, sorted, the first at time zero.
    pub steps: Vec<(Duration, RequestRate)>,
}

impl RateSchedule {
    pub fn constant(rate: RequestRate) -> Self {
        RateSchedule {
            steps: vec![(Duration::ZERO, rate)],
        }
    }
    /// The rate in force at `t` (time since the run's origin).
    pub fn rate_at(&self, t: Duration) -> RequestRate {
        let i = self.steps.partition_point(|(from, _)| *from <= t);
        self.steps[i.saturating_sub(1)].1
    }
}

/// The intended send times of one thread's share of a workload, in increasing order.
#[derive(Clone, Debug)]
pub struct ArrivalProcess {
    /// `(start, end, rate per second)` of each schedule step, clipped to the run.
    segments: Vec<(f64, f64, f64)>,
    kind: Arrivals,
    rng: Rng,
    index: u64,
    of: u64,
    seg: usize,
    /// Constant arrivals: the next slot number within the segment.
    slot: u64,
    /// Poisson arrivals: the last arrival, in ns.
    last: f64,
}

impl ArrivalProcess {
    /// Share `index` of `of` of `schedule` over `[0, duration)`.
    pub fn new(
        schedule: &RateSchedule,
        kind: Arrivals,
        duration: Duration,
        index: usize,
        of: usize,
        rng: Rng,
    ) -> Self {
        let end = duration.as_nanos() as f64;
        let mut segments = Vec::new();
        for (i, (from, rate)) in schedule.steps.iter().enumerate() {
            let start = from.as_nanos() as f64;
            let stop = schedule
                .steps
                .get(i + 1)
                .map_or(end, |(next, _)| (next.as_nanos() as f64).min(end));
            if start < stop {
                segments.push((start, stop, rate.per_sec()));
            }
        }
        let last = segments.first().map_or(0.0, |s| s.0);
        ArrivalProcess {
            segments,
            kind,
            rng,
            index: index as u64,
            of: of.max(1) as u64,
            seg: 0,
            slot: 0,
            last,
        }
    }

    /// The next intended send time, or `None` once the run's duration is reached.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Instant> {
        loop {
            let &(start, stop, rate) = self.segments.get(self.seg)?;
            let t = match self.kind {
                Arrivals::Constant => {
                    let j = self.index + self.slot * self.of;
                    self.slot += 1;
                    start + j as f64 * 1e9 / rate
                }
                Arrivals::Poisson => {
                    let mean = self.of as f64 * 1e9 / rate;
                    self.last += -mean * self.rng.open01().ln();
                    self.last
                }
            };
            if t < stop {
                return Some(Instant(t as u64));
            }
            self.seg += 1;
            self.slot = 0;
            self.last = stop;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(mut p: ArrivalProcess) -> Vec<u64> {
        std::iter::from_fn(|| p.next())
            .map(|t| t.as_nanos())
            .collect()
    }

    #[test]
    fn constant_shares_interleave_into_the_single_sequence() {
        let s = RateSchedule::constant(RequestRate(1000.0));
        let d = Duration::from_millis(100);
        let one = all(ArrivalProcess::new(
            &s,
            Arrivals::Constant,
            d,
            0,
            1,
            Rng::new(1),
        ));
        assert_eq!(one.len(), 100);
        assert_eq!(&one[..3], &[0, 1_000_000, 2_000_000]);
        let mut three: Vec<u64> = (0..3)
            .flat_map(|i| {
                all(ArrivalProcess::new(
                    &s,
                    Arrivals::Constant,
                    d,
                    i,
                    3,
                    Rng::new(1),
                ))
            })
            .collect();
        three.sort_unstable();
        assert_eq!(one, three);
    }

    #[test]
    fn schedule_steps_change_the_rate_at_their_time() {
        let s = RateSchedule {
            steps: vec![
                (Duration::ZERO, RequestRate(100.0)),
                (Duration::from_millis(500), RequestRate(1000.0)),
            ],
        };
        let v = all(ArrivalProcess::new(
            &s,
            Arrivals::Constant,
            Duration::from_secs(1),
            0,
            1,
            Rng::new(1),
        ));
        // 50 in the first half second, 500 in the second.
        assert_eq!(v.len(), 550);
        assert_eq!(v[50], 500_000_000);
        assert_eq!(v[51] - v[50], 1_000_000);
    }

    #[test]
    fn poisson_count_and_gaps_match_theory() {
        let s = RateSchedule::constant(RequestRate(10_000.0));
        let v = all(ArrivalProcess::new(
            &s,
            Arrivals::Poisson,
            Duration::from_secs(10),
            0,
            2,
            Rng::new(9),
        ));
        // One share of two: rate 5000/s over 10 s → 50,000 ± 3 sd (sd = sqrt(50,000) ≈ 224).
        assert!((v.len() as f64 - 50_000.0).abs() < 700.0, "{}", v.len());
        // Exponential gaps: the share of gaps above the mean is e^-1.
        let mean = 200_000.0;
        let above = v.windows(2).filter(|w| (w[1] - w[0]) as f64 > mean).count() as f64
            / (v.len() - 1) as f64;
        assert!((above - (-1f64).exp()).abs() < 0.01, "{above}");
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
    }
}
