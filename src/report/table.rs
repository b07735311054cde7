//! Comparison tables: runs grouped by parameter combination, each metric as the median over
//! repetitions with its min–max range.

use std::collections::BTreeMap;
use std::path::Path;

use super::{fmt_num, ReportError};
use crate::metrics::Phase;
use crate::results::{self, RunFile};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    Markdown,
    Csv,
    /// A booktabs `tabular` (needs `\usepackage{booktabs}`).
    Latex,
}

/// A per-run metric of the comparison table.
pub(crate) struct Metric {
    /// Column name in CSV output.
    pub key: &'static str,
    /// Column heading in Markdown and LaTeX.
    pub heading: &'static str,
    pub get: fn(&RunFile) -> Option<f64>,
}

fn during(r: &RunFile) -> Option<&crate::metrics::Stats> {
    r.summary.phases.get(&Phase::During)
}

pub(crate) const METRICS: [Metric; 9] = [
    Metric {
        key: "p50_ms",
        heading: "p50 (ms)",
        get: |r| r.summary.overall.latency.map(|l| l.p50_ms),
    },
    Metric {
        key: "p99_ms",
        heading: "p99 (ms)",
        get: |r| r.summary.overall.latency.map(|l| l.p99_ms),
    },
    Metric {
        key: "p999_ms",
        heading: "p99.9 (ms)",
        get: |r| r.summary.overall.latency.map(|l| l.p999_ms),
    },
    Metric {
        key: "during_p99_ms",
        heading: "p99 during (ms)",
        get: |r| during(r).and_then(|s| s.latency).map(|l| l.p99_ms),
    },
    Metric {
        key: "errors",
        heading: "errors",
        get: |r| Some(r.summary.overall.errors.total() as f64),
    },
    Metric {
        key: "during_errors",
        heading: "errors during",
        get: |r| during(r).map(|s| s.errors.total() as f64),
    },
    Metric {
        key: "rollout_s",
        heading: "rollout (s)",
        get: |r| r.summary.rollout.duration_s,
    },
    Metric {
        key: "extra_replica_s",
        heading: "extra replica-s",
        get: |r| Some(r.summary.capacity.extra_replica_seconds),
    },
    Metric {
        key: "new_version_requests",
        heading: "new-version requests",
        get: |r| Some(r.summary.rollout.new_version_requests as f64),
    },
];

/// Median, min and max.
pub(crate) type Spread = (f64, f64, f64);

/// Median, min and max of the present values; `None` when there are none.
pub(crate) fn spread(mut xs: Vec<f64>) -> Option<Spread> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    Some((median, xs[0], xs[n - 1]))
}

/// Runs grouped by their parameters, groups in order of first appearance (run index order).
pub(crate) fn groups(runs: Vec<RunFile>) -> Vec<(BTreeMap<String, String>, Vec<RunFile>)> {
    let mut out: Vec<(BTreeMap<String, String>, Vec<RunFile>)> = Vec::new();
    for r in runs {
        match out.iter_mut().find(|(p, _)| *p == r.params) {
            Some((_, g)) => g.push(r),
            None => out.push((r.params.clone(), vec![r])),
        }
    }
    out
}

/// The swept keys of an experiment's runs, sorted.
pub(crate) fn swept_keys(runs: &[RunFile]) -> Vec<String> {
    let mut keys: Vec<String> = runs.iter().flat_map(|r| r.params.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    keys
}

fn outcomes(g: &[RunFile]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in g {
        *counts
            .entry(r.outcome.as_deref().unwrap_or("none"))
            .or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(o, n)| {
            if *n == g.len() {
                o.to_string()
            } else {
                format!("{o}×{n}")
            }
        })
        .collect();
    parts.join(" ")
}

fn latex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str(r"\textasciitilde{}"),
            '^' => out.push_str(r"\textasciicircum{}"),
            '×' => out.push_str(r"$\times$"),
            _ => out.push(c),
        }
    }
    out
}

/// Renders the comparison table of an experiment: one row per parameter combination, the
/// number of runs, their outcomes and each metric of [`METRICS`] as `median [min–max]`
/// (Markdown, LaTeX) or as `_median`, `_min`, `_max` columns (CSV).
pub fn compare(exp_dir: &Path, format: TableFormat) -> Result<String, ReportError> {
    let runs: Vec<RunFile> = results::list_runs(exp_dir)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    if runs.is_empty() {
        return Err(ReportError::NoRuns(exp_dir.to_path_buf()));
    }
    let keys = swept_keys(&runs);
    let groups = groups(runs);
    let cell = |s: Option<Spread>, dash: &str| match s {
        None => "–".to_string(),
        Some((m, lo, hi)) if lo == hi => fmt_num(m),
        Some((m, lo, hi)) => format!("{} [{}{dash}{}]", fmt_num(m), fmt_num(lo), fmt_num(hi)),
    };
    let rows: Vec<(Vec<String>, Vec<Option<Spread>>)> = groups
        .iter()
        .map(|(params, g)| {
            let mut head: Vec<String> = keys
                .iter()
                .map(|k| params.get(k).cloned().unwrap_or_default())
                .collect();
            head.push(g.len().to_string());
            head.push(outcomes(g));
            let stats = METRICS
                .iter()
                .map(|m| spread(g.iter().filter_map(|r| (m.get)(r)).collect()))
                .collect();
            (head, stats)
        })
        .collect();

    let mut out = String::new();
    match format {
        TableFormat::Markdown => {
            let mut header: Vec<&str> = keys.iter().map(String::as_str).collect();
            header.extend(["runs", "outcome"]);
            header.extend(METRICS.iter().map(|m| m.heading));
            out.push_str(&format!("| {} |\n", header.join(" | ")));
            let align: Vec<&str> = header
                .iter()
                .enumerate()
                .map(|(i, _)| if i < keys.len() + 2 { "---" } else { "---:" })
                .collect();
            out.push_str(&format!("| {} |\n", align.join(" | ")));
            for (head, stats) in &rows {
                let mut cells = head
                    .iter()
                    .map(|c| c.replace('|', "\\|"))
                    .collect::<Vec<_>>();
                cells.extend(stats.iter().map(|s| cell(*s, "–")));
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
        }
        TableFormat::Csv => {
            let mut header: Vec<String> = keys.clone();
            header.extend(["runs".to_string(), "outcome".to_string()]);
            for m in &METRICS {
                header.extend(["median", "min", "max"].map(|s| format!("{}_{s}", m.key)));
            }
            results::csv::write_record(&mut out, &header);
            for (head, stats) in &rows {
                let mut cells = head.clone();
                for s in stats {
                    let (m, lo, hi) = s.map_or((None, None, None), |(m, lo, hi)| {
                        (Some(m), Some(lo), Some(hi))
                    });
                    cells.extend([m, lo, hi].map(|x| {
                        x.map(|x| results::timeseries::fmt_decimal(x, 6))
                            .unwrap_or_default()
                    }));
                }
                results::csv::write_record(&mut out, &cells);
            }
        }
        TableFormat::Latex => {
            let ncols = keys.len() + 2 + METRICS.len();
            let spec = format!(
                "{}{}",
                "l".repeat(keys.len() + 2),
                "r".repeat(METRICS.len())
            );
            out.push_str(&format!("\\begin{{tabular}}{{{spec}}}\n\\toprule\n"));
            let mut header: Vec<String> = keys.iter().map(|k| latex_escape(k)).collect();
            header.extend(["runs".to_string(), "outcome".to_string()]);
            header.extend(METRICS.iter().map(|m| latex_escape(m.heading)));
            debug_assert_eq!(header.len(), ncols);
            out.push_str(&format!("{} \\\\\n\\midrule\n", header.join(" & ")));
            for (head, stats) in &rows {
                let mut cells: Vec<String> = head.iter().map(|c| latex_escape(c)).collect();
                cells.extend(stats.iter().map(|s| cell(*s, "--").replace('–', "--")));
                out.push_str(&format!("{} \\\\\n", cells.join(" & ")));
            }
            out.push_str("\\bottomrule\n\\end{tabular}\n");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_min_max() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(spread(vec![4.0, 1.0, 2.0, 10.0]), Some((3.0, 1.0, 10.0)));
        assert_eq!(spread(vec![]), None);
    }

    #[test]
    fn latex_specials_are_escaped() {
        assert_eq!(
            latex_escape("rollout_s 50% a&b ×2"),
            r"rollout\_s 50\% a\&b $\times$2"
        );
    }
}
