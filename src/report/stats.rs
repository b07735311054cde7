//! Statistics over repetitions: means with bootstrap confidence intervals, pairwise differences,
//! Mann-Whitney U tests and Holm's correction across pairs.
//!
//! Guarantees and departures:
//! - Intervals are percentile bootstrap intervals of the mean (resampling the repetitions with
//!   replacement, [`RESAMPLES`] times, from a seed the caller gives): the same data and seed give
//!   the same interval. With few repetitions the percentile bootstrap is too narrow (with 5
//!   normal repetitions a nominal 95 % interval covers the mean about 86 % of the time, as
//!   `scipy.stats.bootstrap(method="percentile")` does too; `tests/stats_reference.py` measures
//!   both): use 10 or more repetitions for intervals you report.
//! - A difference between two groups resamples each group independently (the repetitions of
//!   two groups share seeds, so this ignores their pairing and is conservative).
//! - The Mann-Whitney p-value is two-sided and follows `scipy.stats.mannwhitneyu` with its
//!   default `method="auto"`: the exact distribution of U when one sample has at most 8
//!   values and there are no ties, otherwise the normal approximation with tie and continuity
//!   correction.
//! - Holm's step-down correction controls the family-wise error rate across all pairs of one
//!   metric, without assuming independence.

use crate::model::rng::Rng;

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 10_000;

/// A mean and its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    /// How many values it was computed from.
    pub n: usize,
}

pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The `q` quantile of sorted `xs` with linear interpolation (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let (i, f) = (h.floor() as usize, h - h.floor());
    if i + 1 < sorted.len() {
        sorted[i] + f * (sorted[i + 1] - sorted[i])
    } else {
        sorted[i]
    }
}

fn resample_mean(xs: &[f64], rng: &mut Rng) -> f64 {
    let n = xs.len() as u64;
    (0..xs.len())
        .map(|_| xs[rng.below(n) as usize])
        .sum::<f64>()
        / xs.len() as f64
}

fn percentile_interval(mut stats: Vec<f64>, level: f64, mean: f64, n: usize) -> Interval {
    stats.sort_by(f64::total_cmp);
    let a = (1.0 - level) / 2.0;
    Interval {
        mean,
        lo: quantile(&stats, a),
        hi: quantile(&stats, 1.0 - a),
        n,
    }
}

/// The mean of `xs` with its percentile bootstrap interval at `level` (e.g. 0.95); `None` for
/// no values. One value gives a zero-width interval.
pub fn mean_ci(xs: &[f64], level: f64, seed: u64) -> Option<Interval> {
    if xs.is_empty() {
        return None;
    }
    let mut rng = Rng::new(seed);
    let stats = (0..RESAMPLES)
        .map(|_| resample_mean(xs, &mut rng))
        .collect();
    Some(percentile_interval(stats, level, mean(xs), xs.len()))
}

/// The difference of means `mean(b) - mean(a)` with its percentile bootstrap interval, each
/// group resampled on its own.
pub fn diff_ci(a: &[f64], b: &[f64], level: f64, seed: u64) -> Option<Interval> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut rng = Rng::new(seed);
    let stats = (0..RESAMPLES)
        .map(|_| resample_mean(b, &mut rng) - resample_mean(a, &mut rng))
        .collect();
    Some(percentile_interval(
        stats,
        level,
        mean(b) - mean(a),
        a.len().min(b.len()),
    ))
}

/// Ranks of `xs` (1-based, ties get their average rank) and the tie term Σ(t³ − t).
fn ranks(xs: &[f64]) -> (Vec<f64>, f64) {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&i, &j| xs[i].total_cmp(&xs[j]));
    let mut r = vec![0.0; xs.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && xs[idx[j + 1]] == xs[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    (r, ties)
}

/// P(U ≥ u) under the null for samples of sizes `m` and `n` without ties: the number of
/// arrangements with U = k is the coefficient of q^k in the Gaussian binomial (m+n choose m).
fn exact_sf(u: f64, m: usize, n: usize) -> f64 {
    // counts[i][j] = distribution of U for sizes i and j, built row by row:
    // f(i, j) = f(i-1, j) shifted by j + f(i, j-1).
    let mut prev: Vec<Vec<f64>> = (0..=n).map(|_| vec![1.0]).collect();
    for i in 1..=m {
        let mut cur: Vec<Vec<f64>> = vec![vec![1.0]];
        for j in 1..=n {
            let mut f = vec![0.0; i * j + 1];
            for (k, c) in prev[j].iter().enumerate() {
                f[k + j] += c;
            }
            for (k, c) in cur[j - 1].iter().enumerate() {
                f[k] += c;
            }
            cur.push(f);
        }
        prev = cur;
    }
    let dist = &prev[n];
    let total: f64 = dist.iter().sum();
    let from = u.ceil() as usize;
    dist.iter().skip(from).sum::<f64>() / total
}

/// The complementary error function (W. J. Cody's rational approximations as in Numerical
/// Recipes' `erfc`, relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// P(Z ≥ z) for a standard normal Z.
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The two-sided Mann-Whitney U test of `a` against `b`: the p-value (as scipy's
/// `mannwhitneyu(a, b)`); `None` when a sample is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<f64> {
    let (m, n) = (a.len(), b.len());
    if m == 0 || n == 0 {
        return None;
    }
    let all: Vec<f64> = a.iter().chain(b).copied().collect();
    let (r, ties) = ranks(&all);
    let r1: f64 = r[..m].iter().sum();
    let u1 = r1 - (m * (m + 1)) as f64 / 2.0;
    let u2 = (m * n) as f64 - u1;
    let u = u1.max(u2);
    let p = if m.min(n) <= 8 && ties == 0.0 {
        2.0 * exact_sf(u, m, n)
    } else {
        let nn = (m + n) as f64;
        let mu = (m * n) as f64 / 2.0;
        let var = (m * n) as f64 / 12.0 * ((nn + 1.0) - ties / (nn * (nn - 1.0)));
        if var <= 0.0 {
            return Some(1.0);
        }
        2.0 * normal_sf((u - mu - 0.5) / var.sqrt())
    };
    Some(p.min(1.0))
}

/// Holm's step-down adjustment of `ps` (same order as given), as
/// `statsmodels.stats.multitest.multipletests(ps, method="holm")`.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let k = ps.len();
    let mut idx: Vec<usize> = (0..k).collect();
    idx.sort_by(|&i, &j| ps[i].total_cmp(&ps[j]));
    let mut out = vec![0.0; k];
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        running = running.max(((k - rank) as f64 * ps[i]).min(1.0));
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        let (r, t) = ranks(&[3.0, 1.0, 3.0, 2.0]);
        assert_eq!(r, [3.5, 1.0, 3.5, 2.0]);
        assert_eq!(t, 6.0);
    }

    #[test]
    fn exact_distribution_is_symmetric_and_sums_to_one() {
        // sizes 2 and 2: U takes 0,1,2,2,3,4 over the 6 arrangements.
        assert!((exact_sf(0.0, 2, 2) - 1.0).abs() < 1e-12);
        assert!((exact_sf(4.0, 2, 2) - 1.0 / 6.0).abs() < 1e-12);
        assert!((exact_sf(2.0, 2, 2) - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn erfc_matches_known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207_050_285_1).abs() < 1e-7 * 0.16);
        assert!((erfc(-1.0) - 1.842_700_792_949_715).abs() < 1e-7);
    }

    #[test]
    fn holm_is_monotone_and_capped() {
        let h = holm(&[0.01, 0.04, 0.03]);
        for (x, want) in h.iter().zip([0.03, 0.06, 0.06]) {
            assert!((x - want).abs() < 1e-12, "{h:?}");
        }
        assert_eq!(holm(&[0.5, 0.9]), [1.0, 1.0]);
    }

    #[test]
    fn a_single_value_has_a_zero_width_interval() {
        let i = mean_ci(&[4.0], 0.95, 1).unwrap();
        assert_eq!((i.mean, i.lo, i.hi), (4.0, 4.0, 4.0));
        assert_eq!(mean_ci(&[], 0.95, 1), None);
    }
}
