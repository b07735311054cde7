//! The three figures of one run: latency percentiles, throughput and errors, replicas and
//! steering. All share the time axis (seconds since the run's origin), shade the rollout (from
//! the phase change to `during` until the change to `after`, or the end of the run) and mark
//! events: rollout events as solid lines (vermillion for aborts and rollbacks), timed scenario
//! events as dashed grey lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{de, fmt_num, render, Figure, ReportError, Scale, GRID, PALETTE, SHADE};
use crate::metrics::ErrorKind;
use crate::results::{self, EventLine, TimeseriesRow};

const WIDTH_IN: f64 = 3.5;
const EVENT: RGBColor = RGBColor(0x55, 0x55, 0x55);

struct RunData {
    duration: f64,
    rollout: Option<(f64, f64)>,
    new_version: Option<String>,
    totals: Vec<TimeseriesRow>,
    versions: BTreeMap<String, Vec<TimeseriesRow>>,
    events: Vec<EventLine>,
}

/// Draws the run's figures into `<run_dir>/figures/` (`latency`, `throughput`, `replicas`, each
/// as SVG and PNG) and returns their paths.
pub fn plot_run(run_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let run = results::read_run(run_dir)?;
    let rows = results::read_timeseries(run_dir)?;
    let events = results::read_events(run_dir)?;
    let mut totals = Vec::new();
    let mut versions: BTreeMap<String, Vec<TimeseriesRow>> = BTreeMap::new();
    for r in rows {
        if r.scope == "total" {
            totals.push(r);
        } else {
            versions.entry(r.version.clone()).or_default().push(r);
        }
    }
    let duration = run.summary.duration_s;
    let ro = &run.summary.rollout;
    let data = RunData {
        duration,
        rollout: ro.started_s.map(|s| (s, ro.ended_s.unwrap_or(duration))),
        new_version: ro.new_version.clone(),
        totals,
        versions,
        events: events
            .into_iter()
            .filter(|e| e.source == "rollout" || e.source == "scenario")
            .collect(),
    };
    let dir = run_dir.join("figures");
    let mut out = render(&Latency(&data), &dir, "latency", WIDTH_IN, 2.3)?;
    out.extend(render(
        &Throughput(&data),
        &dir,
        "throughput",
        WIDTH_IN,
        2.8,
    )?);
    out.extend(render(&Replicas(&data), &dir, "replicas", WIDTH_IN, 2.8)?);
    Ok(out)
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
pub(crate) enum Mark {
    Line(RGBColor),
    Dashed(RGBColor),
    Patch(RGBColor),
    Bar(RGBColor),
    Point(RGBColor),
}

/// Height in points of one legend line.
pub(crate) const LEGEND_LINE_PT: f64 = 11.0;

/// Lays legend entries out in centred lines that fit `width` pixels: per line, the entry
/// indices and the line's width.
fn legend_layout<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: Scale,
    entries: &[(String, Mark)],
    width: i32,
) -> Result<Vec<(Vec<usize>, i32)>, String> {
    let font = s.font(7.0);
    let (sample, gap, pad) = (s.px(12.0), s.px(3.0), s.px(8.0));
    let mut lines: Vec<(Vec<usize>, i32)> = Vec::new();
    for (i, (text, _)) in entries.iter().enumerate() {
        let tw = area.estimate_text_size(text, &font).map_err(de)?.0 as i32;
        let w = sample + gap + tw;
        match lines.last_mut() {
            Some((idx, lw)) if *lw + pad + w <= width => {
                idx.push(i);
                *lw += pad + w;
            }
            _ => lines.push((vec![i], w)),
        }
    }
    Ok(lines)
}

/// The number of legend lines `entries` need across `area`.
pub(crate) fn legend_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: Scale,
    entries: &[(String, Mark)],
) -> Result<usize, String> {
    let width = area.dim_in_pixel().0 as i32;
    Ok(legend_layout(area, s, entries, width)?.len())
}

/// Draws legend entries in centred lines across `area` (wrapping when they do not fit).
pub(crate) fn legend_row<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: Scale,
    entries: &[(String, Mark)],
) -> Result<(), String> {
    let font = s.font(7.0);
    let (w, h) = area.dim_in_pixel();
    let (sample, gap, pad) = (s.px(12.0), s.px(3.0), s.px(8.0));
    let lines = legend_layout(area, s, entries, w as i32)?;
    let line_h = h as i32 / lines.len().max(1) as i32;
    for (li, (idx, total)) in lines.iter().enumerate() {
        let mut x = ((w as i32 - total) / 2).max(0);
        let y = line_h * li as i32 + line_h / 2;
        for &i in idx {
            let (text, mark) = &entries[i];
            let tw = area.estimate_text_size(text, &font).map_err(de)?.0 as i32;
            let seg = [(x, y), (x + sample, y)];
            match *mark {
                Mark::Line(c) => area
                    .draw(&PathElement::new(seg, s.line(c, 1.2)))
                    .map_err(de)?,
                Mark::Dashed(c) => area
                    .draw(&DashedPathElement::new(
                        seg,
                        s.px(2.5),
                        s.px(1.5),
                        s.line(c, 0.8),
                    ))
                    .map_err(de)?,
                Mark::Patch(c) => area
                    .draw(&Rectangle::new(
                        [(x, y - s.px(3.0)), (x + sample, y + s.px(3.0))],
                        c.mix(0.35).filled(),
                    ))
                    .map_err(de)?,
                Mark::Bar(c) => area
                    .draw(&Rectangle::new(
                        [
                            (x + sample / 4, y - s.px(3.0)),
                            (x + 3 * sample / 4, y + s.px(3.0)),
                        ],
                        c.filled(),
                    ))
                    .map_err(de)?,
                Mark::Point(c) => area
                    .draw(&Circle::new((x + sample / 2, y), s.px(1.5), c.filled()))
                    .map_err(de)?,
            }
            let style = font.clone().pos(Pos::new(HPos::Left, VPos::Center));
            area.draw(&Text::new(text.clone(), (x + sample + gap, y), style))
                .map_err(de)?;
            x += sample + gap + tw + pad;
        }
    }
    Ok(())
}

type Chart<'a, DB, Y> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>;

/// A time chart on `area`: x is 0..duration; the x axis is labelled only if `x_desc`.
fn time_chart<'a, DB: DrawingBackend, Y: Ranged<ValueType = f64> + ValueFormatter<f64>>(
    area: &'a DrawingArea<DB, Shift>,
    s: Scale,
    duration: f64,
    y: impl AsRangedCoord<CoordDescType = Y, Value = f64>,
    y_desc: &str,
    x_desc: bool,
) -> Result<Chart<'a, DB, Y>, String> {
    let mut chart = ChartBuilder::on(area)
        .margin_left(s.px(3.0))
        .margin_right(s.px(6.0))
        .margin_top(s.px(2.0))
        .x_label_area_size(s.px(if x_desc { 24.0 } else { 8.0 }))
        .y_label_area_size(s.px(40.0))
        .build_cartesian_2d(0.0..duration, y)
        .map_err(de)?;
    let blank = |_: &f64| String::new();
    let num = |v: &f64| fmt_num(*v);
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(TRANSPARENT)
        .bold_line_style(s.line(GRID, 0.4))
        .axis_style(s.line(BLACK, 0.6))
        .set_all_tick_mark_size(s.px(2.0))
        .label_style(s.font(7.0))
        .axis_desc_style(s.font(8.0))
        .x_labels(7)
        .y_labels(5)
        .y_desc(y_desc)
        .y_label_formatter(&num);
    if x_desc {
        mesh.x_desc("time (s)").x_label_formatter(&num);
    } else {
        mesh.x_label_formatter(&blank);
    }
    mesh.draw().map_err(de)?;
    Ok(chart)
}

/// Shades the rollout and draws the event lines from `y0` to `y1`.
fn decorate<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, DB, Y>,
    d: &RunData,
    y0: f64,
    y1: f64,
    s: Scale,
) -> Result<(), String> {
    if let Some((a, b)) = d.rollout {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y0), (b, y1)],
                SHADE.mix(0.3).filled(),
            )))
            .map_err(de)?;
    }
    for e in &d.events {
        let pts = [(e.t_s, y0), (e.t_s, y1)];
        if e.source == "rollout" {
            let bad = e.kind.contains("abort") || e.kind.contains("rollback");
            let color = if bad { PALETTE[1] } else { EVENT };
            chart
                .draw_series(std::iter::once(PathElement::new(pts, s.line(color, 0.6))))
                .map_err(de)?;
        } else {
            chart
                .draw_series(std::iter::once(DashedPathElement::new(
                    pts,
                    s.px(2.0),
                    s.px(1.5),
                    s.line(EVENT, 0.6),
                )))
                .map_err(de)?;
        }
    }
    Ok(())
}

fn mid(r: &TimeseriesRow) -> f64 {
    (r.t_start_s + r.t_end_s) / 2.0
}

/// Draws `(x, y)` points as lines, broken where `y` is missing.
fn gapped_line<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, DB, Y>,
    points: impl Iterator<Item = (f64, Option<f64>)>,
    style: ShapeStyle,
) -> Result<(), String> {
    let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (x, y) in points {
        match y {
            Some(y) => segments.last_mut().expect("never empty").push((x, y)),
            None if segments.last().is_some_and(|l| !l.is_empty()) => segments.push(Vec::new()),
            None => {}
        }
    }
    for seg in segments.into_iter().filter(|s| !s.is_empty()) {
        chart.draw_series(LineSeries::new(seg, style)).map_err(de)?;
    }
    Ok(())
}

/// Stairs over the windows: `value` holds from a window's start to its end.
fn stairs(rows: &[TimeseriesRow], value: impl Fn(&TimeseriesRow) -> f64) -> Vec<(f64, f64)> {
    rows.iter()
        .flat_map(|r| [(r.t_start_s, value(r)), (r.t_end_s, value(r))])
        .collect()
}

fn version_color(d: &RunData, v: &str) -> RGBColor {
    let i = d.versions.keys().position(|k| k == v).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

/// Splits off a legend strip of `pt` points at the top of `area`.
fn with_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: Scale,
    pt: f64,
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    area.split_vertically(s.px(pt))
}

fn rollout_legend(d: &RunData) -> Vec<(String, Mark)> {
    let mut v = Vec::new();
    if d.rollout.is_some() {
        v.push(("rollout".to_string(), Mark::Patch(SHADE)));
    }
    v
}

/// Picks one value of a time-series row.
type Pick = fn(&TimeseriesRow) -> Option<f64>;

struct Latency<'a>(&'a RunData);

impl Figure for Latency<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        s: Scale,
    ) -> Result<(), String> {
        let d = self.0;
        let series: [(&str, Pick, RGBColor); 3] = [
            ("p50", |r| r.lat_p50_ms, PALETTE[0]),
            ("p99", |r| r.lat_p99_ms, PALETTE[3]),
            ("p99.9", |r| r.lat_p999_ms, PALETTE[1]),
        ];
        let values = d
            .totals
            .iter()
            .flat_map(|r| series.iter().filter_map(|(_, f, _)| f(r)));
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = if lo > hi || lo <= 0.0 {
            (0.1, 10.0)
        } else {
            (
                10f64.powf(lo.log10().floor()),
                10f64.powf((hi * 1.05).log10().ceil()),
            )
        };
        let (top, body) = with_legend(root, s, 12.0);
        let mut legend: Vec<(String, Mark)> = series
            .iter()
            .map(|(n, _, c)| (n.to_string(), Mark::Line(*c)))
            .collect();
        legend.extend(rollout_legend(d));
        legend_row(&top, s, &legend)?;
        let mut chart = time_chart(
            &body,
            s,
            d.duration,
            (lo..hi).log_scale(),
            "latency (ms)",
            true,
        )?;
        decorate(&mut chart, d, lo, hi, s)?;
        // Highest percentile first, so that lower ones stay visible where they coincide.
        for (_, f, c) in series.into_iter().rev() {
            gapped_line(
                &mut chart,
                d.totals.iter().map(|r| (mid(r), f(r))),
                s.line(c, 0.6),
            )?;
        }
        Ok(())
    }
}

struct Throughput<'a>(&'a RunData);

impl Figure for Throughput<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        s: Scale,
    ) -> Result<(), String> {
        let d = self.0;
        let (top, rest) = with_legend(root, s, 12.0);
        let (upper, lower) = rest.split_vertically(rest.dim_in_pixel().1 as i32 * 45 / 100);
        let kinds: Vec<(usize, ErrorKind)> = ErrorKind::ALL
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, k)| d.totals.iter().any(|r| r.errors.get(*k) > 0))
            .collect();
        let kind_color = |i: usize| PALETTE[(i + 1) % PALETTE.len()];
        let mut legend = vec![("ok".to_string(), Mark::Line(PALETTE[0]))];
        legend.extend(
            kinds
                .iter()
                .map(|(i, k)| (k.as_str().to_string(), Mark::Bar(kind_color(*i)))),
        );
        legend.extend(rollout_legend(d));
        legend_row(&top, s, &legend)?;

        let max_ok = d
            .totals
            .iter()
            .map(|r| r.ok_per_s)
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.1;
        let mut chart = time_chart(&upper, s, d.duration, 0.0..max_ok, "ok (req/s)", false)?;
        decorate(&mut chart, d, 0.0, max_ok, s)?;
        gapped_line(
            &mut chart,
            d.totals.iter().map(|r| (mid(r), Some(r.ok_per_s))),
            s.line(PALETTE[0], 0.6),
        )?;

        let rate = |r: &TimeseriesRow, k: ErrorKind| {
            let len = r.t_end_s - r.t_start_s;
            if len > 0.0 {
                r.errors.get(k) as f64 / len
            } else {
                0.0
            }
        };
        // Errors are counts per window: stacked bars by kind, no interpolation between windows.
        let max_err = d
            .totals
            .iter()
            .map(|r| kinds.iter().map(|(_, k)| rate(r, *k)).sum::<f64>())
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.1;
        let mut chart = time_chart(&lower, s, d.duration, 0.0..max_err, "errors (1/s)", true)?;
        decorate(&mut chart, d, 0.0, max_err, s)?;
        for r in &d.totals {
            let mut y = 0.0;
            for (i, k) in &kinds {
                let h = rate(r, *k);
                if h > 0.0 {
                    let bar = Rectangle::new(
                        [(r.t_start_s, y), (r.t_end_s, y + h)],
                        kind_color(*i).filled(),
                    );
                    chart.draw_series(std::iter::once(bar)).map_err(de)?;
                    y += h;
                }
            }
        }
        if kinds.is_empty() {
            let style = s.font(8.0).pos(Pos::new(HPos::Center, VPos::Center));
            chart
                .draw_series(std::iter::once(Text::new(
                    "no errors",
                    (d.duration / 2.0, max_err / 2.0),
                    style,
                )))
                .map_err(de)?;
        }
        Ok(())
    }
}

struct Replicas<'a>(&'a RunData);

impl Figure for Replicas<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        s: Scale,
    ) -> Result<(), String> {
        let d = self.0;
        let (top, rest) = with_legend(root, s, 12.0);
        let (upper, rest) = rest.split_vertically(rest.dim_in_pixel().1 as i32 * 55 / 100);
        let (mid_legend, lower) = with_legend(&rest, s, 12.0);

        let has_ready = d
            .versions
            .values()
            .flatten()
            .any(|r| r.replicas.contains_key("ready"));
        let mut legend: Vec<(String, Mark)> = d
            .versions
            .keys()
            .map(|v| (v.clone(), Mark::Line(version_color(d, v))))
            .collect();
        if has_ready {
            legend.push(("ready".to_string(), Mark::Dashed(EVENT)));
        }
        legend.extend(rollout_legend(d));
        legend_row(&top, s, &legend)?;

        let max_rep = d
            .versions
            .values()
            .flatten()
            .map(|r| r.replicas_total)
            .max()
            .unwrap_or(0)
            .max(1) as f64
            + 0.5;
        let mut chart = time_chart(&upper, s, d.duration, -0.2..max_rep, "replicas", false)?;
        decorate(&mut chart, d, -0.2, max_rep, s)?;
        for (v, rows) in &d.versions {
            let c = version_color(d, v);
            chart
                .draw_series(LineSeries::new(
                    stairs(rows, |r| r.replicas_total as f64),
                    s.line(c, 1.0),
                ))
                .map_err(de)?;
            if has_ready {
                let ready = stairs(rows, |r| {
                    r.replicas.get("ready").copied().unwrap_or(0) as f64
                });
                chart
                    .draw_series(std::iter::once(DashedPathElement::new(
                        ready,
                        s.px(2.5),
                        s.px(1.5),
                        s.line(c, 0.6),
                    )))
                    .map_err(de)?;
            }
        }

        let new = d
            .new_version
            .as_deref()
            .or_else(|| d.versions.keys().last().map(String::as_str));
        let rows = new.and_then(|v| d.versions.get(v));
        let label = format!("{} traffic (%)", new.unwrap_or("new version"));
        let c = new.map_or(PALETTE[1], |v| version_color(d, v));
        legend_row(
            &mid_legend,
            s,
            &[
                ("steering weight".to_string(), Mark::Line(c)),
                ("share served".to_string(), Mark::Point(c)),
            ],
        )?;
        let mut chart = time_chart(&lower, s, d.duration, -3.0..105.0, &label, true)?;
        decorate(&mut chart, d, -3.0, 105.0, s)?;
        if let Some(rows) = rows {
            let weighted: Vec<&TimeseriesRow> =
                rows.iter().filter(|r| r.weight_pct.is_some()).collect();
            let w: Vec<(f64, f64)> = weighted
                .iter()
                .flat_map(|r| {
                    [
                        (r.t_start_s, r.weight_pct.unwrap_or(0.0)),
                        (r.t_end_s, r.weight_pct.unwrap_or(0.0)),
                    ]
                })
                .collect();
            chart
                .draw_series(LineSeries::new(w, s.line(c, 1.0)))
                .map_err(de)?;
            let points = rows.iter().filter_map(|r| {
                r.share
                    .map(|x| Circle::new((mid(r), x * 100.0), s.px(0.7), c.mix(0.6).filled()))
            });
            chart.draw_series(points).map_err(de)?;
        }
        Ok(())
    }
}
