#!/usr/bin/env python3
"""Reference values for tests/report_stats.rs, computed with scipy (pip install scipy).

Prints the Mann-Whitney p-values of the fixed samples there, scipy's percentile-bootstrap
interval of one fixed sample, and the coverage scipy's percentile bootstrap reaches on the
known distributions the Rust test draws from (the Rust test pins these numbers; rerun this
script to check them: python3 tests/stats_reference.py).
"""
import numpy as np
from scipy import stats

# The fixed samples of tests/report_stats.rs.
PAIRS = {
    "five_no_ties": ([44.1, 45.3, 44.8, 46.0, 45.1], [45.9, 46.4, 45.7, 47.2, 46.1]),
    "five_overlap": ([44.1, 45.3, 44.8, 46.0, 45.1], [45.2, 44.9, 46.3, 45.0, 45.6]),
    "eight_no_ties": ([1.1, 2.3, 3.2, 4.8, 5.5, 6.1, 7.7, 8.4], [2.2, 3.9, 5.1, 6.6, 7.3, 8.8, 9.5, 10.2]),
    "ties": ([1, 2, 2, 3, 4, 5], [2, 3, 3, 5, 6, 7, 8]),
    "nine_each": ([10, 12, 15, 11, 13, 17, 14, 16, 18], [19, 21, 13, 20, 22, 25, 23, 24, 26]),
    "twelve_vs_ten": (
        [0.52, 0.61, 0.44, 0.58, 0.49, 0.66, 0.57, 0.51, 0.63, 0.47, 0.55, 0.6],
        [0.62, 0.71, 0.59, 0.68, 0.64, 0.73, 0.57, 0.7, 0.66, 0.75],
    ),
}
for name, (a, b) in PAIRS.items():
    r = stats.mannwhitneyu(a, b)
    print(f"mannwhitney {name}: U={r.statistic} p={r.pvalue!r}")

x = [44.1, 45.3, 44.8, 46.0, 45.1, 47.9, 44.5, 45.8, 46.2, 45.0]
ci = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=100_000,
                     random_state=np.random.default_rng(1)).confidence_interval
print(f"bootstrap interval of x: mean={np.mean(x)!r} [{ci.low!r}, {ci.high!r}]")

# Coverage of the nominal 95 % percentile interval of the mean.
rng = np.random.default_rng(2)
for n, dist in [(5, "normal"), (10, "normal"), (20, "exponential")]:
    trials, hit = 2000, 0
    for _ in range(trials):
        s = rng.normal(10.0, 2.0, n) if dist == "normal" else rng.exponential(1.0, n)
        true = 10.0 if dist == "normal" else 1.0
        c = stats.bootstrap((s,), np.mean, method="percentile", n_resamples=2000,
                            random_state=rng).confidence_interval
        hit += c.low <= true <= c.high
    print(f"coverage n={n} {dist}: {hit / trials:.4f} over {trials} trials")
