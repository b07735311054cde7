//! One figure per swept parameter: p99 latency during the rollout (overall p99 for runs without
//! a rollout) and the error count for each of its values, as the median over repetitions (a
//! dot) with min–max whiskers. With other swept parameters, each combination of their values
//! is its own series, offset sideways.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::run::{legend_lines, legend_row, Mark, LEGEND_LINE_PT};
use super::table::{groups, spread, swept_keys};
use super::{de, fmt_num, render, Figure, ReportError, Scale, GRID, PALETTE};
use crate::metrics::Phase;
use crate::results::{self, RunFile};

/// A point of the figure: median, min, max per (series, value).
type Cell = Option<super::table::Spread>;

struct Sweep {
    key: String,
    values: Vec<String>,
    /// Series label and, per value, the p99 and error spreads.
    series: Vec<(String, Vec<(Cell, Cell)>)>,
    /// Whether any run had a rollout (else the latency panel shows overall p99).
    during: bool,
}

fn p99(r: &RunFile, during: bool) -> Option<f64> {
    let stats = if during {
        r.summary.phases.get(&Phase::During)
    } else {
        Some(&r.summary.overall)
    };
    stats.and_then(|s| s.latency).map(|l| l.p99_ms)
}

fn short(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// Draws `<exp_dir>/figures/sweep-<key>.{svg,png}` for every swept key and returns the paths
/// (none for an experiment without a sweep).
pub fn plot_experiment(exp_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let runs: Vec<RunFile> = results::list_runs(exp_dir)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    if runs.is_empty() {
        return Err(ReportError::NoRuns(exp_dir.to_path_buf()));
    }
    let keys = swept_keys(&runs);
    let during = runs
        .iter()
        .any(|r| r.summary.phases.contains_key(&Phase::During));
    let groups = groups(runs);
    let mut out = Vec::new();
    for key in &keys {
        let mut values: Vec<String> = Vec::new();
        let mut labels: Vec<String> = Vec::new();
        for (params, _) in &groups {
            let v = params.get(key).cloned().unwrap_or_default();
            if !values.contains(&v) {
                values.push(v);
            }
            let label = series_label(params, key);
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
        let series = labels
            .iter()
            .map(|label| {
                let cells = values
                    .iter()
                    .map(|v| {
                        let runs: Vec<&RunFile> = groups
                            .iter()
                            .filter(|(p, _)| {
                                p.get(key) == Some(v) && series_label(p, key) == *label
                            })
                            .flat_map(|(_, g)| g)
                            .collect();
                        let lat = spread(runs.iter().filter_map(|r| p99(r, during)).collect());
                        let err = spread(
                            runs.iter()
                                .map(|r| r.summary.overall.errors.total() as f64)
                                .collect(),
                        );
                        (lat, err)
                    })
                    .collect();
                (label.clone(), cells)
            })
            .collect();
        let fig = Sweep {
            key: key.clone(),
            values,
            series,
            during,
        };
        out.extend(render(
            &fig,
            &exp_dir.join("figures"),
            &figure_name(key),
            3.5,
            3.2,
        )?);
    }
    Ok(out)
}

/// The file name (without extension) of `key`'s sweep figure: `sweep-rollout-strategy`.
pub(crate) fn figure_name(key: &str) -> String {
    format!(
        "sweep-{}",
        key.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
    )
}

/// The values of the other swept keys, `rate=1000/s, strategy=canary`; empty with one key.
fn series_label(params: &std::collections::BTreeMap<String, String>, key: &str) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter(|(k, _)| *k != key)
        .map(|(k, v)| format!("{}={v}", short(k)))
        .collect();
    parts.join(", ")
}

impl Sweep {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        s: Scale,
        y_desc: &str,
        pick: fn(&(Cell, Cell)) -> Cell,
        x_labels: bool,
    ) -> Result<(), String> {
        let n = self.values.len();
        let max = self
            .series
            .iter()
            .flat_map(|(_, c)| c.iter().filter_map(|c| pick(c).map(|x| x.2)))
            .fold(0.0, f64::max);
        let top = if max > 0.0 { max * 1.15 } else { 1.0 };
        let label_h = if x_labels { 26.0 } else { 6.0 };
        let mut chart = ChartBuilder::on(area)
            .margin_left(s.px(3.0))
            .margin_right(s.px(6.0))
            .margin_top(s.px(if x_labels { 8.0 } else { 2.0 }))
            .x_label_area_size(s.px(label_h))
            .y_label_area_size(s.px(40.0))
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..top)
            .map_err(de)?;
        let num = |v: &f64| fmt_num(*v);
        let blank = |_: &f64| String::new();
        let mut mesh = chart.configure_mesh();
        mesh.disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(s.line(GRID, 0.4))
            .axis_style(s.line(BLACK, 0.6))
            .set_all_tick_mark_size(s.px(2.0))
            .label_style(s.font(7.0))
            .axis_desc_style(s.font(8.0))
            .x_labels(0)
            .x_label_formatter(&blank)
            .y_labels(5)
            .y_desc(y_desc)
            .y_label_formatter(&num);
        if x_labels {
            mesh.x_desc(self.key.as_str());
        }
        mesh.draw().map_err(de)?;

        let m = self.series.len();
        let width = 0.5;
        for (j, (_, cells)) in self.series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            let off = if m > 1 {
                (j as f64 - (m as f64 - 1.0) / 2.0) * width / m as f64
            } else {
                0.0
            };
            for (i, c) in cells.iter().enumerate() {
                let Some((med, lo, hi)) = pick(c) else {
                    continue;
                };
                let x = i as f64 + off;
                let cap = 0.04;
                let line = s.line(color, 0.8);
                chart
                    .draw_series([
                        PathElement::new(vec![(x, lo), (x, hi)], line),
                        PathElement::new(vec![(x - cap, lo), (x + cap, lo)], line),
                        PathElement::new(vec![(x - cap, hi), (x + cap, hi)], line),
                    ])
                    .map_err(de)?;
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (x, med),
                        s.px(1.6),
                        color.filled(),
                    )))
                    .map_err(de)?;
            }
        }
        if x_labels {
            // Category names under their positions (the f64 axis has no ticks of its own).
            let style = s.font(7.0).pos(Pos::new(HPos::Center, VPos::Top));
            let base = area.get_base_pixel();
            for (i, v) in self.values.iter().enumerate() {
                let (px, py) = chart.backend_coord(&(i as f64, 0.0));
                let at = (px - base.0, py - base.1 + s.px(2.5));
                area.draw(&Text::new(v.clone(), at, style.clone()))
                    .map_err(de)?;
            }
        }
        Ok(())
    }
}

impl Figure for Sweep {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        s: Scale,
    ) -> Result<(), String> {
        let named: Vec<(String, Mark)> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, (l, _))| !l.is_empty())
            .map(|(j, (l, _))| (l.clone(), Mark::Point(PALETTE[j % PALETTE.len()])))
            .collect();
        let body = if named.is_empty() {
            root.clone()
        } else {
            let lines = legend_lines(root, s, &named)?;
            let (top, body) = root.split_vertically(s.px(LEGEND_LINE_PT * lines as f64 + 1.0));
            legend_row(&top, s, &named)?;
            body
        };
        let (upper, lower) = body.split_vertically(body.dim_in_pixel().1 as i32 * 46 / 100);
        let y_desc = if self.during {
            "p99 during rollout (ms)"
        } else {
            "p99 latency (ms)"
        };
        self.panel(&upper, s, y_desc, |c| c.0, false)?;
        self.panel(&lower, s, "errors (requests)", |c| c.1, true)
    }
}
