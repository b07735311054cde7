//! The statistics of `sdnbed::report::stats` against scipy 1.17 on fixed data. The reference
//! values come from `python3 tests/stats_reference.py` (pinned here; rerun it to check them).

use sdnbed::model::rng::Rng;
use sdnbed::report::stats::{diff_ci, holm, mann_whitney, mean_ci};

const PAIRS: [(&str, &[f64], &[f64], f64); 6] = [
    (
        "five_no_ties (exact)",
        &[44.1, 45.3, 44.8, 46.0, 45.1],
        &[45.9, 46.4, 45.7, 47.2, 46.1],
        0.031746031746031744,
    ),
    (
        "five_overlap (exact)",
        &[44.1, 45.3, 44.8, 46.0, 45.1],
        &[45.2, 44.9, 46.3, 45.0, 45.6],
        0.5476190476190477,
    ),
    (
        "eight_no_ties (exact)",
        &[1.1, 2.3, 3.2, 4.8, 5.5, 6.1, 7.7, 8.4],
        &[2.2, 3.9, 5.1, 6.6, 7.3, 8.8, 9.5, 10.2],
        0.23449883449883446,
    ),
    (
        "ties (asymptotic)",
        &[1.0, 2.0, 2.0, 3.0, 4.0, 5.0],
        &[2.0, 3.0, 3.0, 5.0, 6.0, 7.0, 8.0],
        0.1115593054507822,
    ),
    (
        "nine_each (asymptotic)",
        &[10.0, 12.0, 15.0, 11.0, 13.0, 17.0, 14.0, 16.0, 18.0],
        &[19.0, 21.0, 13.0, 20.0, 22.0, 25.0, 23.0, 24.0, 26.0],
        0.0023037178153796625,
    ),
    (
        "twelve_vs_ten (asymptotic)",
        &[
            0.52, 0.61, 0.44, 0.58, 0.49, 0.66, 0.57, 0.51, 0.63, 0.47, 0.55, 0.6,
        ],
        &[0.62, 0.71, 0.59, 0.68, 0.64, 0.73, 0.57, 0.7, 0.66, 0.75],
        0.0021560339745641723,
    ),
];

#[test]
fn mann_whitney_p_values_match_scipy() {
    for (name, a, b, want) in PAIRS {
        let p = mann_whitney(a, b).unwrap();
        // Exact p-values agree to rounding; the normal approximation to erfc's 1.2e-7.
        assert!(
            (p - want).abs() <= 1e-6 * want,
            "{name}: {p} against scipy's {want}"
        );
        // The test is symmetric in its samples.
        assert!((mann_whitney(b, a).unwrap() - p).abs() < 1e-12, "{name}");
    }
    assert_eq!(mann_whitney(&[], &[1.0]), None);
}

#[test]
fn holm_adjusts_the_scipy_p_values_like_statsmodels() {
    let ps: Vec<f64> = PAIRS.iter().map(|p| p.3).collect();
    // statsmodels.stats.multitest.multipletests(ps, method="holm")[1], by hand: sorted
    // ascending, p(i) * (k - i), running maximum, capped at 1.
    let want = [
        0.031746031746031744 * 4.0,
        0.5476190476190477,
        0.23449883449883446 * 2.0,
        0.1115593054507822 * 3.0,
        // 0.0023 * 5 is below its predecessor's 0.00216 * 6: the running maximum holds.
        0.0021560339745641723 * 6.0,
        0.0021560339745641723 * 6.0,
    ];
    let got = holm(&ps);
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{got:?} against {want:?}");
    }
}

#[test]
fn bootstrap_interval_matches_scipy_on_fixed_data() {
    let x = [44.1, 45.3, 44.8, 46.0, 45.1, 47.9, 44.5, 45.8, 46.2, 45.0];
    let i = mean_ci(&x, 0.95, 1).unwrap();
    assert!((i.mean - 45.47).abs() < 1e-9);
    // scipy (100,000 resamples): [44.89, 46.15]; with 10,000 resamples the endpoints move by
    // a few hundredths of the interval's width.
    assert!((i.lo - 44.89).abs() < 0.05, "{i:?}");
    assert!((i.hi - 46.15).abs() < 0.05, "{i:?}");
    // Seeded: the same seed, the same interval; another seed, a slightly different one.
    assert_eq!(mean_ci(&x, 0.95, 1), Some(i));
    assert_ne!(mean_ci(&x, 0.95, 2), Some(i));
}

/// Coverage of the nominal 95 % interval over `trials` samples of size `n`.
fn coverage(n: usize, trials: usize, draw: impl Fn(&mut Rng) -> f64, truth: f64) -> f64 {
    let mut rng = Rng::new(42);
    let mut hit = 0;
    for t in 0..trials {
        let xs: Vec<f64> = (0..n).map(|_| draw(&mut rng)).collect();
        let i = mean_ci(&xs, 0.95, t as u64).unwrap();
        hit += usize::from(i.lo <= truth && truth <= i.hi);
    }
    hit as f64 / trials as f64
}

#[test]
fn bootstrap_coverage_matches_scipy_on_known_distributions() {
    // scipy's percentile bootstrap over 2,000 trials: 0.8560 (n = 5, normal), 0.9055 (n = 10,
    // normal), 0.8935 (n = 20, exponential). 1,000 trials here: the two estimates' standard
    // errors combine to at most 0.014, so they must agree within 0.04.
    let normal = |r: &mut Rng| 10.0 + 2.0 * r.std_normal();
    let expo = |r: &mut Rng| -r.open01().ln();
    for (n, draw, truth, scipy) in [
        (5, &normal as &dyn Fn(&mut Rng) -> f64, 10.0, 0.8560),
        (10, &normal, 10.0, 0.9055),
        (20, &expo, 1.0, 0.8935),
    ] {
        let c = coverage(n, 1000, draw, truth);
        assert!(
            (c - scipy).abs() < 0.04,
            "n = {n}: coverage {c} against scipy's {scipy}"
        );
    }
}

#[test]
fn difference_interval_covers_the_difference_of_means() {
    let a = [44.1, 45.3, 44.8, 46.0, 45.1];
    let b = [45.9, 46.4, 45.7, 47.2, 46.1];
    let d = diff_ci(&a, &b, 0.95, 3).unwrap();
    assert!((d.mean - 1.2).abs() < 1e-9, "{d:?}");
    assert!(d.lo > 0.0 && d.lo < d.mean && d.mean < d.hi, "{d:?}");
}
