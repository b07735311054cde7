//! Comparison tables: runs grouped by parameter combination (or by backend, for `fidelity`),
//! each metric as the mean over repetitions with its 95 % bootstrap interval, and pairwise
//! comparisons (difference of means with its interval, Mann-Whitney p-value, Holm-adjusted
//! across the pairs of one metric). See [`super::stats`] for what the intervals and tests
//! guarantee.
//!
//! The LaTeX summary fits one column of a two-column paper by default (booktabs, `\small`,
//! units in a second header line, numbers of a column with the same decimals so they align at
//! the point, the interval in a narrower column beside the mean); `wide` makes it a `table*`
//! across both columns. Which metrics appear is chosen with their keys ([`METRICS`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::stats::{self, Interval};
use super::ReportError;
use crate::metrics::Phase;
use crate::model::rng::SeedTree;
use crate::results::{self, RunFile};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    Markdown,
    Csv,
    /// A booktabs table float (needs `\usepackage{booktabs}`).
    Latex,
}

/// Which table [`compare`] renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// One row per group: every metric's mean and interval.
    Summary,
    /// One row per metric and pair of groups: the difference and the tests.
    Pairs,
}

/// What [`compare`] renders.
#[derive(Clone, Debug)]
pub struct TableOptions {
    pub format: TableFormat,
    pub kind: TableKind,
    /// Metric keys in the order wanted; `None`: every metric in Markdown and CSV, and
    /// [`LATEX_COLUMNS`] in LaTeX (what fits one column).
    pub columns: Option<Vec<String>>,
    /// LaTeX: a `table*` across both columns instead of a one-column `table`.
    pub wide: bool,
}

impl TableOptions {
    pub fn new(format: TableFormat) -> Self {
        TableOptions {
            format,
            kind: TableKind::Summary,
            columns: None,
            wide: false,
        }
    }
}

/// A per-run metric of the comparison tables.
#[derive(Debug)]
pub struct Metric {
    /// Column key (CSV, `--columns`).
    pub key: &'static str,
    /// Heading without the unit.
    pub name: &'static str,
    /// Unit, empty for counts.
    pub unit: &'static str,
    pub get: fn(&RunFile) -> Option<f64>,
}

impl Metric {
    /// `p99 (ms)`.
    pub fn heading(&self) -> String {
        if self.unit.is_empty() {
            self.name.to_string()
        } else {
            format!("{} ({})", self.name, self.unit)
        }
    }
}

fn during(r: &RunFile) -> Option<&crate::metrics::Stats> {
    r.summary.phases.get(&Phase::During)
}

pub const METRICS: [Metric; 9] = [
    Metric {
        key: "p50_ms",
        name: "p50",
        unit: "ms",
        get: |r| r.summary.overall.latency.map(|l| l.p50_ms),
    },
    Metric {
        key: "p99_ms",
        name: "p99",
        unit: "ms",
        get: |r| r.summary.overall.latency.map(|l| l.p99_ms),
    },
    Metric {
        key: "p999_ms",
        name: "p99.9",
        unit: "ms",
        get: |r| r.summary.overall.latency.map(|l| l.p999_ms),
    },
    Metric {
        key: "during_p99_ms",
        name: "p99 during",
        unit: "ms",
        get: |r| during(r).and_then(|s| s.latency).map(|l| l.p99_ms),
    },
    Metric {
        key: "errors",
        name: "errors",
        unit: "",
        get: |r| Some(r.summary.overall.errors.total() as f64),
    },
    Metric {
        key: "during_errors",
        name: "errors during",
        unit: "",
        get: |r| during(r).map(|s| s.errors.total() as f64),
    },
    Metric {
        key: "rollout_s",
        name: "rollout",
        unit: "s",
        get: |r| r.summary.rollout.duration_s,
    },
    Metric {
        key: "extra_replica_s",
        name: "extra",
        unit: "replica-s",
        get: |r| Some(r.summary.capacity.extra_replica_seconds),
    },
    Metric {
        key: "new_version_requests",
        name: "new-version requests",
        unit: "",
        get: |r| Some(r.summary.rollout.new_version_requests as f64),
    },
];

/// The LaTeX summary's default columns: what fits one column of a two-column paper.
pub const LATEX_COLUMNS: [&str; 4] = ["during_p99_ms", "errors", "rollout_s", "extra_replica_s"];

/// Confidence level of every interval.
pub const LEVEL: f64 = 0.95;

/// The metrics named by `keys`, in that order.
pub fn metrics(keys: &[String]) -> Result<Vec<&'static Metric>, ReportError> {
    keys.iter()
        .map(|k| {
            METRICS
                .iter()
                .find(|m| m.key == k)
                .ok_or_else(|| ReportError::UnknownColumn {
                    column: k.clone(),
                    known: METRICS.iter().map(|m| m.key).collect::<Vec<_>>().join(", "),
                })
        })
        .collect()
}

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

/// `rollout.strategy` → `strategy`.
pub(crate) fn short_key(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// One group of runs and its statistics.
pub struct Group {
    /// The values of the grouping keys (swept parameters, or `backend`).
    pub head: Vec<String>,
    /// `canary` or `rate=1000/s, strategy=canary`.
    pub label: String,
    pub runs: Vec<RunFile>,
    /// Per metric of [`METRICS`]: the per-run values and their mean with interval.
    pub values: Vec<(Vec<f64>, Option<Interval>)>,
}

/// A comparison of two groups on one metric.
pub struct Pair {
    pub metric: &'static Metric,
    pub a: usize,
    pub b: usize,
    /// mean(b) − mean(a) with its interval.
    pub diff: Option<Interval>,
    pub p: Option<f64>,
    /// `p` adjusted by Holm across the pairs of this metric.
    pub p_holm: Option<f64>,
}

/// Runs grouped, with every metric's statistics.
pub struct Analysis {
    /// Names of the grouping keys (columns before the metrics).
    pub keys: Vec<String>,
    pub groups: Vec<Group>,
}

impl Analysis {
    /// Groups an experiment's runs by their swept parameters.
    pub fn of_experiment(exp_dir: &Path) -> Result<Analysis, ReportError> {
        let runs: Vec<RunFile> = results::list_runs(exp_dir)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        if runs.is_empty() {
            return Err(ReportError::NoRuns(exp_dir.to_path_buf()));
        }
        let keys = swept_keys(&runs);
        let groups = groups(runs)
            .into_iter()
            .map(|(params, runs)| {
                let head: Vec<String> = keys
                    .iter()
                    .map(|k| params.get(k).cloned().unwrap_or_default())
                    .collect();
                let label = if keys.len() == 1 {
                    head[0].clone()
                } else {
                    keys.iter()
                        .zip(&head)
                        .map(|(k, v)| format!("{}={v}", short_key(k)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                (head, label, runs)
            })
            .collect();
        Ok(Analysis::new(keys, groups))
    }

    /// Statistics of groups given as (head, label, runs).
    pub fn new(keys: Vec<String>, groups: Vec<(Vec<String>, String, Vec<RunFile>)>) -> Analysis {
        let tree = SeedTree::new(0);
        let groups = groups
            .into_iter()
            .map(|(head, label, runs)| {
                let values = METRICS
                    .iter()
                    .map(|m| {
                        let xs: Vec<f64> = runs.iter().filter_map(|r| (m.get)(r)).collect();
                        let seed = tree.seed_for(&format!("{label}/{}", m.key));
                        let ci = stats::mean_ci(&xs, LEVEL, seed);
                        (xs, ci)
                    })
                    .collect();
                Group {
                    head,
                    label,
                    runs,
                    values,
                }
            })
            .collect();
        Analysis { keys, groups }
    }

    fn index(m: &Metric) -> usize {
        METRICS
            .iter()
            .position(|x| x.key == m.key)
            .expect("a metric of METRICS")
    }

    /// The values and interval of metric `m` in group `g`.
    pub fn cell(&self, g: usize, m: &Metric) -> &(Vec<f64>, Option<Interval>) {
        &self.groups[g].values[Self::index(m)]
    }

    /// Every pair of groups (in order, a before b) on metric `m`, Holm-adjusted across them.
    pub fn pairs(&self, m: &'static Metric) -> Vec<Pair> {
        let tree = SeedTree::new(1);
        let n = self.groups.len();
        let mut out: Vec<Pair> = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let (xa, _) = self.cell(a, m);
                let (xb, _) = self.cell(b, m);
                let seed = tree.seed_for(&format!(
                    "{}/{}/{}",
                    self.groups[a].label, self.groups[b].label, m.key
                ));
                out.push(Pair {
                    metric: m,
                    a,
                    b,
                    diff: stats::diff_ci(xa, xb, LEVEL, seed),
                    p: stats::mann_whitney(xa, xb),
                    p_holm: None,
                });
            }
        }
        let tested: Vec<usize> = (0..out.len()).filter(|&i| out[i].p.is_some()).collect();
        let adjusted = stats::holm(&tested.iter().filter_map(|&i| out[i].p).collect::<Vec<_>>());
        for (i, p) in tested.into_iter().zip(adjusted) {
            out[i].p_holm = Some(p);
        }
        out
    }

    /// Decimals for the numbers of metric `m`: from the largest magnitude among its means and
    /// interval ends (3 significant digits for small values, none from 100 up).
    pub(crate) fn decimals(&self, m: &Metric) -> usize {
        let max = self
            .groups
            .iter()
            .filter_map(|g| g.values[Self::index(m)].1)
            .flat_map(|i| [i.mean.abs(), i.lo.abs(), i.hi.abs()])
            .fold(0.0, f64::max);
        decimals(max)
    }

    /// Decimals for the differences in `pairs` (from their own magnitudes, which are often
    /// far below the means').
    pub(crate) fn diff_decimals(pairs: &[Pair]) -> usize {
        let max = pairs
            .iter()
            .filter_map(|p| p.diff)
            .flat_map(|i| [i.mean.abs(), i.lo.abs(), i.hi.abs()])
            .fold(0.0, f64::max);
        decimals(max)
    }
}

pub(crate) fn decimals(max_abs: f64) -> usize {
    if max_abs >= 100.0 || max_abs == 0.0 {
        0
    } else if max_abs >= 10.0 {
        1
    } else if max_abs >= 1.0 {
        2
    } else {
        3
    }
}

/// `x` with `d` decimals, `-0` written as `0`.
pub(crate) fn fixed(x: f64, d: usize) -> String {
    let s = format!("{x:.d$}");
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

/// A p-value: 3 significant digits, `<0.001` below.
pub(crate) fn fmt_p(p: Option<f64>) -> String {
    match p {
        None => "–".into(),
        Some(p) if p < 0.001 => "<0.001".into(),
        Some(p) => format!("{p:.3}"),
    }
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

pub(crate) fn latex_escape(s: &str) -> String {
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
            '–' => out.push_str("--"),
            '−' => out.push_str("$-$"),
            _ => out.push(c),
        }
    }
    out
}

/// A number for LaTeX: a real minus sign.
fn tex_num(s: &str) -> String {
    match s.strip_prefix('-') {
        Some(rest) => format!("$-${rest}"),
        None => s.to_string(),
    }
}

/// Renders the comparison table of an experiment directory.
pub fn compare(exp_dir: &Path, opts: &TableOptions) -> Result<String, ReportError> {
    let a = Analysis::of_experiment(exp_dir)?;
    render(&a, opts, &exp_name(exp_dir))
}

/// The experiment's scenario name, for captions: the parent directory's name.
fn exp_name(exp_dir: &Path) -> String {
    exp_dir
        .canonicalize()
        .ok()
        .and_then(|p| {
            p.parent()
                .and_then(|p| p.file_name())
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "experiment".into())
}

/// Renders `a` as `opts` say; `name` labels a LaTeX table (`tab:<name>`).
pub fn render(a: &Analysis, opts: &TableOptions, name: &str) -> Result<String, ReportError> {
    let cols: Vec<&'static Metric> = match &opts.columns {
        Some(keys) => metrics(keys)?,
        None if opts.format == TableFormat::Latex && opts.kind == TableKind::Summary => {
            metrics(&LATEX_COLUMNS.map(String::from))?
        }
        None => METRICS.iter().collect(),
    };
    Ok(match (opts.kind, opts.format) {
        (TableKind::Summary, TableFormat::Markdown) => summary_markdown(a, &cols),
        (TableKind::Summary, TableFormat::Csv) => summary_csv(a, &cols),
        (TableKind::Summary, TableFormat::Latex) => summary_latex(a, &cols, opts.wide, name),
        (TableKind::Pairs, TableFormat::Markdown) => pairs_markdown(a, &cols),
        (TableKind::Pairs, TableFormat::Csv) => pairs_csv(a, &cols),
        (TableKind::Pairs, TableFormat::Latex) => pairs_latex(a, &cols, opts.wide, name),
    })
}

/// `45.1 [44.9, 45.3]` (one value, or an interval of zero width at `d` decimals: just the
/// mean).
pub(crate) fn interval_text(i: Option<Interval>, d: usize) -> String {
    match i {
        None => "–".into(),
        Some(i) if i.n < 2 || fixed(i.lo, d) == fixed(i.hi, d) => fixed(i.mean, d),
        Some(i) => format!(
            "{} [{}, {}]",
            fixed(i.mean, d),
            fixed(i.lo, d),
            fixed(i.hi, d)
        ),
    }
}

fn md_row(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
    format!("| {} |\n", cells.join(" | "))
}

fn summary_markdown(a: &Analysis, cols: &[&Metric]) -> String {
    let mut header: Vec<String> = a.keys.clone();
    header.extend(["runs".to_string(), "outcome".to_string()]);
    header.extend(cols.iter().map(|m| m.heading()));
    let mut out = md_row(&header);
    let align: Vec<String> = (0..header.len())
        .map(|i| if i < a.keys.len() + 2 { "---" } else { "---:" }.to_string())
        .collect();
    out.push_str(&format!("| {} |\n", align.join(" | ")));
    for (gi, g) in a.groups.iter().enumerate() {
        let mut cells = g.head.clone();
        cells.push(g.runs.len().to_string());
        cells.push(outcomes(&g.runs));
        cells.extend(
            cols.iter()
                .map(|m| interval_text(a.cell(gi, m).1, a.decimals(m))),
        );
        out.push_str(&md_row(&cells));
    }
    out.push_str(&format!(
        "\nMean over repetitions [{:.0} % bootstrap interval].\n",
        LEVEL * 100.0
    ));
    out
}

fn summary_csv(a: &Analysis, cols: &[&Metric]) -> String {
    let mut header: Vec<String> = a.keys.clone();
    header.extend(["runs".to_string(), "outcome".to_string()]);
    for m in cols {
        header.extend(["mean", "lo", "hi", "n"].map(|s| format!("{}_{s}", m.key)));
    }
    let mut out = String::new();
    results::csv::write_record(&mut out, &header);
    for (gi, g) in a.groups.iter().enumerate() {
        let mut cells = g.head.clone();
        cells.push(g.runs.len().to_string());
        cells.push(outcomes(&g.runs));
        for m in cols {
            match a.cell(gi, m).1 {
                Some(i) => cells.extend([
                    results::timeseries::fmt_decimal(i.mean, 6),
                    results::timeseries::fmt_decimal(i.lo, 6),
                    results::timeseries::fmt_decimal(i.hi, 6),
                    i.n.to_string(),
                ]),
                None => cells.extend(["", "", "", "0"].map(String::from)),
            }
        }
        results::csv::write_record(&mut out, &cells);
    }
    out
}

fn float_env(wide: bool) -> &'static str {
    if wide {
        "table*"
    } else {
        "table"
    }
}

fn repetitions(a: &Analysis) -> String {
    let ns: Vec<usize> = a.groups.iter().map(|g| g.runs.len()).collect();
    let (lo, hi) = (
        ns.iter().min().copied().unwrap_or(0),
        ns.iter().max().copied().unwrap_or(0),
    );
    if lo == hi {
        format!("{lo}")
    } else {
        format!("{lo}--{hi}")
    }
}

fn summary_latex(a: &Analysis, cols: &[&Metric], wide: bool, name: &str) -> String {
    let env = float_env(wide);
    let nk = a.keys.len();
    // Per group: a line of means, right-aligned with a column's decimals, and under it a line
    // of intervals in a smaller font (side by side they would not fit one column).
    let spec = format!("@{{}}{}{}@{{}}", "l".repeat(nk), "r".repeat(cols.len()));
    let mut out = format!(
        "\\begin{{{env}}}[t]\n\\centering\n\\small\n\\setlength{{\\tabcolsep}}{{4pt}}\n\\begin{{tabular}}{{{spec}}}\n\\toprule\n"
    );
    let mut h1: Vec<String> = a.keys.iter().map(|k| latex_escape(short_key(k))).collect();
    let mut h2: Vec<String> = vec![String::new(); nk];
    for m in cols {
        h1.push(latex_escape(m.name));
        h2.push(if m.unit.is_empty() {
            String::new()
        } else {
            format!("({})", latex_escape(m.unit))
        });
    }
    out.push_str(&format!("{} \\\\\n", h1.join(" & ")));
    out.push_str(&format!("{} \\\\\n\\midrule\n", h2.join(" & ")));
    for (gi, g) in a.groups.iter().enumerate() {
        let mut means: Vec<String> = g.head.iter().map(|c| latex_escape(c)).collect();
        let mut cis: Vec<String> = vec![String::new(); nk];
        for m in cols {
            let d = a.decimals(m);
            match a.cell(gi, m).1 {
                None => {
                    means.push("--".to_string());
                    cis.push(String::new());
                }
                Some(i) => {
                    means.push(tex_num(&fixed(i.mean, d)));
                    cis.push(if i.n < 2 || fixed(i.lo, d) == fixed(i.hi, d) {
                        String::new()
                    } else {
                        format!(
                            "\\scriptsize[{}, {}]",
                            tex_num(&fixed(i.lo, d)),
                            tex_num(&fixed(i.hi, d))
                        )
                    });
                }
            }
        }
        out.push_str(&format!("{} \\\\\n", means.join(" & ")));
        if cis.iter().any(|c| !c.is_empty()) {
            out.push_str(&format!("{} \\\\\n", cis.join(" & ")));
        }
    }
    out.push_str("\\bottomrule\n\\end{tabular}\n");
    out.push_str(&format!(
        "\\caption{{{}: mean over {} repetitions, under it the {:.0}\\,\\% bootstrap interval.}}\n\\label{{tab:{}}}\n\\end{{{env}}}\n",
        latex_escape(name),
        repetitions(a),
        LEVEL * 100.0,
        name
    ));
    out
}

fn pair_label(a: &Analysis, p: &Pair) -> (String, String) {
    (a.groups[p.a].label.clone(), a.groups[p.b].label.clone())
}

fn pairs_markdown(a: &Analysis, cols: &[&'static Metric]) -> String {
    let mut out = md_row(
        &[
            "metric",
            "a",
            "b",
            "b − a [95 % interval]",
            "p (Mann-Whitney)",
            "p (Holm)",
        ]
        .map(String::from),
    );
    out.push_str("| --- | --- | --- | ---: | ---: | ---: |\n");
    for m in cols {
        let pairs = a.pairs(m);
        let d = Analysis::diff_decimals(&pairs);
        for p in pairs {
            let (la, lb) = pair_label(a, &p);
            out.push_str(&md_row(&[
                m.heading(),
                la,
                lb,
                interval_text(p.diff, d),
                fmt_p(p.p),
                fmt_p(p.p_holm),
            ]));
        }
    }
    out
}

fn pairs_csv(a: &Analysis, cols: &[&'static Metric]) -> String {
    let mut out = String::new();
    results::csv::write_record(
        &mut out,
        &[
            "metric",
            "a",
            "b",
            "diff_mean",
            "diff_lo",
            "diff_hi",
            "p",
            "p_holm",
        ]
        .map(String::from),
    );
    let num = |x: Option<f64>| {
        x.map(|x| results::timeseries::fmt_decimal(x, 6))
            .unwrap_or_default()
    };
    for m in cols {
        for p in a.pairs(m) {
            let (la, lb) = pair_label(a, &p);
            results::csv::write_record(
                &mut out,
                &[
                    m.key.to_string(),
                    la,
                    lb,
                    num(p.diff.map(|i| i.mean)),
                    num(p.diff.map(|i| i.lo)),
                    num(p.diff.map(|i| i.hi)),
                    num(p.p),
                    num(p.p_holm),
                ],
            );
        }
    }
    out
}

fn pairs_latex(a: &Analysis, cols: &[&'static Metric], wide: bool, name: &str) -> String {
    let env = float_env(wide);
    let mut out = format!(
        "\\begin{{{env}}}[t]\n\\centering\n\\small\n\\setlength{{\\tabcolsep}}{{4pt}}\n\\begin{{tabular}}{{@{{}}lrr@{{}}}}\n\\toprule\n"
    );
    out.push_str("$b - a$ & difference & $p_\\mathrm{Holm}$ \\\\\n");
    for m in cols {
        out.push_str(&format!(
            "\\midrule\n\\multicolumn{{3}}{{@{{}}l}}{{\\emph{{{}}}}} \\\\\n",
            latex_escape(&m.heading())
        ));
        let pairs = a.pairs(m);
        let d = Analysis::diff_decimals(&pairs);
        for p in pairs.iter() {
            let (la, lb) = pair_label(a, p);
            let (mean, ci) = match p.diff {
                None => ("--".to_string(), String::new()),
                Some(i) if fixed(i.lo, d) == fixed(i.hi, d) => {
                    (tex_num(&fixed(i.mean, d)), String::new())
                }
                Some(i) => (
                    tex_num(&fixed(i.mean, d)),
                    format!(
                        "\\scriptsize[{}, {}]",
                        tex_num(&fixed(i.lo, d)),
                        tex_num(&fixed(i.hi, d))
                    ),
                ),
            };
            out.push_str(&format!(
                "{} $-$ {} & {mean} & {} \\\\\n",
                latex_escape(&lb),
                latex_escape(&la),
                latex_escape(&fmt_p(p.p_holm)).replace('<', "$<$")
            ));
            if !ci.is_empty() {
                out.push_str(&format!(" & {ci} & \\\\\n"));
            }
        }
    }
    out.push_str("\\bottomrule\n\\end{tabular}\n");
    out.push_str(&format!(
        "\\caption{{{}: differences of means, under each its {:.0}\\,\\% bootstrap interval; Mann-Whitney $p$, Holm-adjusted per metric.}}\n\\label{{tab:{}-pairs}}\n\\end{{{env}}}\n",
        latex_escape(name),
        LEVEL * 100.0,
        name
    ));
    out
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

    #[test]
    fn numbers_of_a_column_share_their_decimals() {
        assert_eq!(fixed(45.0, 1), "45.0");
        assert_eq!(fixed(-0.0004, 2), "0.00");
        assert_eq!(tex_num("-1.5"), "$-$1.5");
        assert_eq!(decimals(45.3), 1);
        assert_eq!(fmt_p(Some(0.0002)), "<0.001");
    }

    #[test]
    fn unknown_columns_name_the_known_ones() {
        let e = metrics(&["p99_ms".into(), "p42".into()]).unwrap_err();
        assert!(e.to_string().contains("p42") && e.to_string().contains("extra_replica_s"));
    }
}
