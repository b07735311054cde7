//! `report.html`: one self-contained page for a run or an experiment.
//!
//! The page needs nothing but itself to be viewed: figures are inline SVG (drawn first when
//! missing), the stylesheet is inline, there is no script and no external resource, and the
//! figures' font (the vendored DejaVu Sans) is embedded once as a `data:` URL. It shows what
//! was run (scenario, sweep, seeds, provenance), the figures, the comparison with intervals
//! and tests (experiments), per-phase and per-version statistics and the timeline of rollout
//! and scenario events (of the one run, or of an experiment's first run).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::table::{fmt_p, interval_text, Analysis, METRICS};
use super::{ReportError, FONT, SVG_FAMILY};
use crate::metrics::{RunSummary, Stats};
use crate::results::{self, RunFile};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(out: &mut String, header: &[String], rows: &[Vec<String>], numeric_from: usize) {
    out.push_str("<table>\n<thead><tr>");
    for (i, h) in header.iter().enumerate() {
        let class = if i >= numeric_from {
            " class=\"num\""
        } else {
            ""
        };
        let _ = write!(out, "<th{class}>{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        out.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let class = if i >= numeric_from {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

const STYLE: &str = "body{font-family:'DejaVu Sans',sans-serif;max-width:1100px;margin:2em auto;\
padding:0 1em;color:#222;line-height:1.4}h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;\
border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:0.6em 0;font-size:0.85em}\
th,td{padding:0.2em 0.6em;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}\
th{border-bottom:2px solid #888}.num{text-align:right;font-variant-numeric:tabular-nums}\
figure{display:inline-block;margin:0.5em 1em 0.5em 0;vertical-align:top}\
figure svg{width:3.5in;height:auto}figcaption{font-size:0.85em;color:#555}\
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;font-size:0.8em}dl{display:grid;\
grid-template-columns:max-content auto;gap:0.1em 1em}dt{font-weight:bold}dd{margin:0}";

fn head(title: &str) -> String {
    let font = base64::engine::general_purpose::STANDARD.encode(FONT);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
<style>@font-face{{font-family:'{SVG_FAMILY}';src:url(data:font/ttf;base64,{font}) format('truetype')}}\n{STYLE}</style>\n</head>\n<body>\n",
        esc(title)
    )
}

/// The figures in `dir` (SVG), inline, in name order given.
fn figures(out: &mut String, dir: &Path, names: &[&str], caption_prefix: &str) {
    for name in names {
        let path = dir.join(format!("{name}.svg"));
        let Ok(svg) = std::fs::read_to_string(&path) else {
            continue;
        };
        // The page embeds the font once; drop the copy each SVG carries for standalone use.
        let svg = strip_font_face(&svg);
        let _ = writeln!(
            out,
            "<figure>{svg}<figcaption>{}{}</figcaption></figure>",
            esc(caption_prefix),
            esc(name)
        );
    }
}

fn strip_font_face(svg: &str) -> String {
    match (svg.find("<style>@font-face"), svg.find("</style>")) {
        (Some(a), Some(b)) if b > a => format!("{}{}", &svg[..a], &svg[b + "</style>".len()..]),
        _ => svg.to_string(),
    }
}

fn stats_row(label: String, s: &Stats) -> Vec<String> {
    let lat = |f: fn(&crate::metrics::LatencySummary) -> f64| {
        s.latency
            .as_ref()
            .map_or("–".to_string(), |l| super::fmt_num(f(l)))
    };
    vec![
        label,
        s.sent.to_string(),
        s.ok.to_string(),
        s.errors.total().to_string(),
        lat(|l| l.mean_ms),
        lat(|l| l.p50_ms),
        lat(|l| l.p99_ms),
        lat(|l| l.p999_ms),
        lat(|l| l.max_ms),
    ]
}

fn stats_tables(out: &mut String, s: &RunSummary) {
    let header: Vec<String> = [
        "",
        "sent",
        "ok",
        "errors",
        "mean (ms)",
        "p50 (ms)",
        "p99 (ms)",
        "p99.9 (ms)",
        "max (ms)",
    ]
    .map(String::from)
    .to_vec();
    out.push_str("<h3>Per phase</h3>\n");
    let mut rows = vec![stats_row("overall (after warm-up)".into(), &s.overall)];
    rows.extend(
        s.phases
            .iter()
            .map(|(p, st)| stats_row(format!("{p:?}").to_lowercase(), st)),
    );
    table(out, &header, &rows, 1);
    out.push_str("<h3>Per version</h3>\n");
    let mut rows: Vec<Vec<String>> = s
        .versions
        .iter()
        .map(|(v, st)| stats_row(v.clone(), st))
        .collect();
    for (p, vs) in &s.phase_versions {
        rows.extend(
            vs.iter()
                .map(|(v, st)| stats_row(format!("{v}, {}", format!("{p:?}").to_lowercase()), st)),
        );
    }
    table(out, &header, &rows, 1);
    let r = &s.rollout;
    let opt = |x: Option<f64>| x.map_or("–".to_string(), super::fmt_num);
    let rows = vec![
        vec![
            "new version".into(),
            r.new_version.clone().unwrap_or("–".into()),
        ],
        vec!["started (s)".into(), opt(r.started_s)],
        vec!["ended (s)".into(), opt(r.ended_s)],
        vec!["duration (s)".into(), opt(r.duration_s)],
        vec!["aborted at (s)".into(), opt(r.aborted_s)],
        vec![
            "requests to the new version".into(),
            r.new_version_requests.to_string(),
        ],
        vec![
            "extra capacity (replica-s)".into(),
            super::fmt_num(s.capacity.extra_replica_seconds),
        ],
        vec!["peak replicas".into(), s.capacity.peak_replicas.to_string()],
    ];
    out.push_str("<h3>Rollout and capacity</h3>\n");
    table(out, &["".into(), "value".into()], &rows, 1);
}

fn what_was_run(out: &mut String, r: &RunFile, runs: usize) {
    let p = &r.provenance;
    let scenario = &r.resolved_scenario["scenario"];
    let get = |k: &str| scenario[k].as_str().unwrap_or("–").to_string();
    let items = [
        ("scenario", r.scenario.clone()),
        ("description", get("description")),
        ("backend", r.backend.clone()),
        ("duration", get("duration")),
        ("warm-up", get("warmup")),
        ("runs", runs.to_string()),
        ("seed", scenario["seed"].to_string()),
        ("sdnbed", format!("{} ({})", p.sdnbed_version, p.git_commit)),
        ("kernel", p.kernel.clone()),
        ("host", p.hostname.clone()),
        ("started", p.started.clone()),
    ];
    out.push_str("<dl>\n");
    for (k, v) in items {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    }
    out.push_str("</dl>\n");
}

fn timeline(out: &mut String, run_dir: &Path) -> Result<(), ReportError> {
    let events = results::read_events(run_dir)?;
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                super::fmt_num(e.t_s),
                e.source.clone(),
                e.kind.clone(),
                e.detail.clone(),
            ]
        })
        .collect();
    table(
        out,
        &["t (s)", "source", "kind", "detail"].map(String::from),
        &rows,
        4,
    );
    Ok(())
}

fn run_section(out: &mut String, run_dir: &Path, r: &RunFile) -> Result<(), ReportError> {
    if !run_dir.join("figures/latency.svg").is_file() {
        super::plot_run(run_dir)?;
    }
    out.push_str("<h2>Figures</h2>\n");
    figures(
        out,
        &run_dir.join("figures"),
        &["latency", "throughput", "replicas", "cdf"],
        "",
    );
    out.push_str("<h2>Statistics</h2>\n");
    stats_tables(out, &r.summary);
    out.push_str("<h2>Timeline</h2>\n");
    timeline(out, run_dir)?;
    out.push_str("<h2>Seeds</h2>\n");
    let rows: Vec<Vec<String>> = r
        .seeds
        .iter()
        .map(|(k, v)| vec![k.clone(), v.to_string()])
        .collect();
    table(out, &["component".into(), "seed".into()], &rows, 1);
    Ok(())
}

/// The comparison tables of `a` as HTML: means with intervals, then every pair's tests.
pub(crate) fn analysis_tables(out: &mut String, a: &Analysis) {
    let mut header = a.keys.clone();
    header.push("runs".into());
    header.extend(METRICS.iter().map(|m| m.heading()));
    let rows: Vec<Vec<String>> = a
        .groups
        .iter()
        .enumerate()
        .map(|(gi, g)| {
            let mut row = g.head.clone();
            row.push(g.runs.len().to_string());
            row.extend(
                METRICS
                    .iter()
                    .map(|m| interval_text(a.cell(gi, m).1, a.decimals(m))),
            );
            row
        })
        .collect();
    out.push_str("<p>Mean over repetitions [95 % bootstrap interval].</p>\n");
    table(out, &header, &rows, a.keys.len());
    if a.groups.len() < 2 {
        return;
    }
    out.push_str(
        "<h3>Pairwise comparisons</h3>\n<p>b − a: difference of means [95 % bootstrap \
interval]; two-sided Mann-Whitney p on the per-repetition values, Holm-adjusted across the \
pairs of each metric.</p>\n",
    );
    let mut rows = Vec::new();
    for m in &METRICS {
        let pairs = a.pairs(m);
        let d = Analysis::diff_decimals(&pairs);
        for p in pairs {
            rows.push(vec![
                m.heading(),
                a.groups[p.a].label.clone(),
                a.groups[p.b].label.clone(),
                interval_text(p.diff, d),
                fmt_p(p.p),
                fmt_p(p.p_holm),
            ]);
        }
    }
    table(
        out,
        &["metric", "a", "b", "b − a", "p", "p (Holm)"].map(String::from),
        &rows,
        3,
    );
}

/// Writes `<dir>/report.html` for a run directory (with run.json) or an experiment directory
/// (with runs/), drawing missing figures first, and returns its path.
pub fn write_report(dir: &Path) -> Result<PathBuf, ReportError> {
    let mut out = String::new();
    if dir.join("run.json").is_file() {
        let r = results::read_run(dir)?;
        out.push_str(&head(&format!("sdnbed run: {}", r.scenario)));
        let _ = writeln!(out, "<h1>{} — one run</h1>", esc(&r.scenario));
        out.push_str("<h2>What was run</h2>\n");
        what_was_run(&mut out, &r, 1);
        run_section(&mut out, dir, &r)?;
        scenario_text(&mut out, dir);
    } else {
        let runs = results::list_runs(dir)?;
        let Some((first_dir, first)) = runs.first().cloned() else {
            return Err(ReportError::NoRuns(dir.to_path_buf()));
        };
        let a = Analysis::of_experiment(dir)?;
        out.push_str(&head(&format!("sdnbed experiment: {}", first.scenario)));
        let _ = writeln!(out, "<h1>{} — experiment</h1>", esc(&first.scenario));
        out.push_str("<h2>What was run</h2>\n");
        what_was_run(&mut out, &first, runs.len());
        if !a.keys.is_empty() {
            let rows: Vec<Vec<String>> = a
                .keys
                .iter()
                .map(|k| {
                    let mut vals: Vec<String> = Vec::new();
                    for g in &a.groups {
                        let v = g.runs[0].params.get(k).cloned().unwrap_or_default();
                        if !vals.contains(&v) {
                            vals.push(v);
                        }
                    }
                    vec![k.clone(), vals.join(", ")]
                })
                .collect();
            out.push_str("<h3>Sweep</h3>\n");
            table(&mut out, &["key".into(), "values".into()], &rows, 2);
        }
        let names: Vec<String> = a
            .keys
            .iter()
            .map(|k| super::experiment::figure_name(k))
            .collect();
        if !names.is_empty() {
            if !dir
                .join("figures")
                .join(format!("{}.svg", names[0]))
                .is_file()
            {
                super::plot_experiment(dir)?;
            }
            out.push_str("<h2>Comparison figures</h2>\n");
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            figures(&mut out, &dir.join("figures"), &refs, "");
        }
        out.push_str("<h2>Comparison</h2>\n");
        analysis_tables(&mut out, &a);
        out.push_str("<h2>Runs</h2>\n");
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|(p, r)| {
                vec![
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    r.repetition.to_string(),
                    r.outcome.clone().unwrap_or("–".into()),
                    r.summary.overall.sent.to_string(),
                    r.summary.overall.errors.total().to_string(),
                    r.summary
                        .overall
                        .latency
                        .map_or("–".into(), |l| super::fmt_num(l.p99_ms)),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "run",
                "repetition",
                "outcome",
                "requests",
                "errors",
                "p99 (ms)",
            ]
            .map(String::from),
            &rows,
            1,
        );
        let _ = writeln!(
            out,
            "<h2>The first run: {}</h2>",
            esc(&first_dir.file_name().unwrap_or_default().to_string_lossy())
        );
        run_section(&mut out, &first_dir, &first)?;
        scenario_text(&mut out, &first_dir);
    }
    out.push_str("</body>\n</html>\n");
    Ok(results::write_atomic(dir, "report.html", out.as_bytes())?)
}

fn scenario_text(out: &mut String, run_dir: &Path) {
    if let Ok(toml) = std::fs::read_to_string(run_dir.join("scenario.toml")) {
        out.push_str(
            "<h2>The scenario as run</h2>\n<details><summary>scenario.toml</summary><pre>",
        );
        out.push_str(&esc(&toml));
        out.push_str("</pre></details>\n");
    }
}
