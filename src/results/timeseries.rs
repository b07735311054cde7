//! `timeseries.csv`: one row per window for all requests (`scope = total`) followed by one row
//! per window and version (`scope = version`), in time order. Columns are documented in
//! `results/README.md`; empty cells mean "not applicable" (no successful request, no weights).
//!
//! Numbers are written as exact decimals from integer nanoseconds where they come from times
//! (seconds, milliseconds), and rounded to a fixed number of decimals otherwise, so identical
//! runs give identical bytes.

use std::collections::BTreeMap;

use crate::metrics::{ErrorCounts, ErrorKind, LatencySummary, RunMetrics, StatsAcc};
use crate::model::time::Instant;
use crate::results::csv;

/// The fixed leading columns; `replicas_<state>` columns follow, one per replica state, sorted.
pub const COLUMNS: [&str; 22] = [
    "t_start_s",
    "t_end_s",
    "phase",
    "scope",
    "version",
    "sent",
    "ok",
    "err_refused",
    "err_reset",
    "err_timeout",
    "err_5xx",
    "err_other",
    "ok_per_s",
    "lat_mean_ms",
    "lat_p50_ms",
    "lat_p90_ms",
    "lat_p99_ms",
    "lat_p999_ms",
    "lat_max_ms",
    "share",
    "weight_pct",
    "gen_lag_max_ms",
];
const REPLICAS_TOTAL: &str = "replicas_total";

/// One parsed row of `timeseries.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeseriesRow {
    pub t_start_s: f64,
    pub t_end_s: f64,
    pub phase: String,
    /// `total` or `version`.
    pub scope: String,
    /// Empty on `total` rows.
    pub version: String,
    pub sent: u64,
    pub ok: u64,
    pub errors: ErrorCounts,
    pub ok_per_s: f64,
    pub lat_mean_ms: Option<f64>,
    pub lat_p50_ms: Option<f64>,
    pub lat_p90_ms: Option<f64>,
    pub lat_p99_ms: Option<f64>,
    pub lat_p999_ms: Option<f64>,
    pub lat_max_ms: Option<f64>,
    pub share: Option<f64>,
    pub weight_pct: Option<f64>,
    pub gen_lag_max_ms: Option<f64>,
    pub replicas_total: u64,
    /// State → count.
    pub replicas: BTreeMap<String, u64>,
}

/// `x` with `decimals` decimals, trailing zeros trimmed (`1.500` → `1.5`, `2.000` → `2`).
pub fn fmt_decimal(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        if t == "-0" {
            "0".to_string()
        } else {
            t.to_string()
        }
    } else {
        s
    }
}

fn secs(t: Instant) -> String {
    fmt_decimal(t.as_secs_f64(), 9)
}

fn latency_cells(l: Option<LatencySummary>) -> [String; 6] {
    match l {
        None => Default::default(),
        Some(l) => [l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms]
            .map(|x| fmt_decimal(x, 6)),
    }
}

/// Renders the windows of `m` as CSV text.
pub fn render(m: &RunMetrics) -> String {
    let states: Vec<String> = {
        let mut s: Vec<String> = m
            .windows
            .iter()
            .flat_map(|w| w.replicas.values().flat_map(|st| st.keys().cloned()))
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let mut out = String::new();
    let mut header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    header.push(REPLICAS_TOTAL.to_string());
    header.extend(states.iter().map(|s| format!("replicas_{s}")));
    csv::write_record(&mut out, &header);

    for w in &m.windows {
        let len_s = w.end.saturating_since(w.start).as_secs_f64();
        let row = |scope: &str, version: &str, acc: &StatsAcc<u32>| -> Vec<String> {
            let s = acc.stats();
            let mut r = vec![
                secs(w.start),
                secs(w.end),
                w.phase.as_str().to_string(),
                scope.to_string(),
                version.to_string(),
                s.sent.to_string(),
                s.ok.to_string(),
            ];
            r.extend(ErrorKind::ALL.iter().map(|k| s.errors.get(*k).to_string()));
            let rate = if len_s > 0.0 {
                s.ok as f64 / len_s
            } else {
                0.0
            };
            r.push(fmt_decimal(rate, 3));
            r.extend(latency_cells(s.latency));
            r
        };

        let mut total = row("total", "", &w.total);
        total.push(String::new()); // share
        total.push(String::new()); // weight_pct
        total.push(
            w.generator_lag_max
                .map(|d| fmt_decimal(d.as_millis_f64(), 6))
                .unwrap_or_default(),
        );
        let mut by_state: BTreeMap<&str, u64> = states.iter().map(|s| (s.as_str(), 0)).collect();
        for per_state in w.replicas.values() {
            for (s, n) in per_state {
                *by_state.entry(s.as_str()).or_default() += u64::from(*n);
            }
        }
        total.push(by_state.values().sum::<u64>().to_string());
        total.extend(by_state.values().map(u64::to_string));
        csv::write_record(&mut out, &total);

        for (v, acc) in &w.versions {
            let mut r = row("version", v, acc);
            r.push(w.share(v).map(|x| fmt_decimal(x, 6)).unwrap_or_default());
            r.push(
                w.weights
                    .get(v)
                    .map(|bp| fmt_decimal(f64::from(*bp) / 100.0, 2))
                    .unwrap_or_default(),
            );
            r.push(String::new()); // gen_lag_max_ms: run-wide, on total rows only
            let per_state = w.replicas.get(v);
            let count = |s: &str| {
                per_state
                    .and_then(|m| m.get(s))
                    .copied()
                    .map_or(0, u64::from)
            };
            r.push(states.iter().map(|s| count(s)).sum::<u64>().to_string());
            r.extend(states.iter().map(|s| count(s).to_string()));
            csv::write_record(&mut out, &r);
        }
    }
    out
}

/// Parses `timeseries.csv` text; the error names the 1-based line and the problem.
pub fn parse(text: &str) -> Result<Vec<TimeseriesRow>, (usize, String)> {
    let records = csv::parse(text).map_err(|l| (l, "unterminated quoted field".to_string()))?;
    let Some((header, rows)) = records.split_first() else {
        return Err((1, "empty file".to_string()));
    };
    let col = |name: &str| -> Result<usize, (usize, String)> {
        header
            .iter()
            .position(|h| h == name)
            .ok_or((1, format!("missing column {name}")))
    };
    let idx: Vec<usize> = COLUMNS.iter().map(|c| col(c)).collect::<Result<_, _>>()?;
    let total_idx = col(REPLICAS_TOTAL)?;
    let state_cols: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let s = h.strip_prefix("replicas_")?;
            (h != REPLICAS_TOTAL).then(|| (i, s.to_string()))
        })
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    for (n, r) in rows.iter().enumerate() {
        let line = n + 2;
        let cell = |i: usize| -> Result<&str, (usize, String)> {
            r.get(i)
                .map(String::as_str)
                .ok_or((line, format!("missing field {}", i + 1)))
        };
        let f = |i: usize| -> Result<f64, (usize, String)> {
            let c = cell(idx[i])?;
            c.parse()
                .map_err(|_| (line, format!("{}: not a number: {c:?}", COLUMNS[i])))
        };
        let opt = |i: usize| -> Result<Option<f64>, (usize, String)> {
            if cell(idx[i])?.is_empty() {
                Ok(None)
            } else {
                f(i).map(Some)
            }
        };
        let int = |i: usize, name: &str| -> Result<u64, (usize, String)> {
            let c = cell(i)?;
            c.parse()
                .map_err(|_| (line, format!("{name}: not a count: {c:?}")))
        };
        let mut replicas = BTreeMap::new();
        for (i, s) in &state_cols {
            replicas.insert(s.clone(), int(*i, s)?);
        }
        out.push(TimeseriesRow {
            t_start_s: f(0)?,
            t_end_s: f(1)?,
            phase: cell(idx[2])?.to_string(),
            scope: cell(idx[3])?.to_string(),
            version: cell(idx[4])?.to_string(),
            sent: int(idx[5], COLUMNS[5])?,
            ok: int(idx[6], COLUMNS[6])?,
            errors: ErrorCounts {
                refused: int(idx[7], COLUMNS[7])?,
                reset: int(idx[8], COLUMNS[8])?,
                timeout: int(idx[9], COLUMNS[9])?,
                http_5xx: int(idx[10], COLUMNS[10])?,
                other: int(idx[11], COLUMNS[11])?,
            },
            ok_per_s: f(12)?,
            lat_mean_ms: opt(13)?,
            lat_p50_ms: opt(14)?,
            lat_p90_ms: opt(15)?,
            lat_p99_ms: opt(16)?,
            lat_p999_ms: opt(17)?,
            lat_max_ms: opt(18)?,
            share: opt(19)?,
            weight_pct: opt(20)?,
            gen_lag_max_ms: opt(21)?,
            replicas_total: int(total_idx, REPLICAS_TOTAL)?,
            replicas,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Outcome, Recorder, RecorderConfig};
    use crate::model::time::Duration;

    #[test]
    fn a_tiny_run_renders_exactly_and_parses_back() {
        let mut r = Recorder::new(RecorderConfig {
            window: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            warmup: Duration::ZERO,
            steady_replicas: 2,
            new_version: None,
        });
        r.replicas(
            Instant::ZERO,
            &[(("v1".to_string(), "ready".to_string()), 2)].into(),
        );
        let at = |ms: u64| Instant(ms * 1_000_000);
        r.record(at(500), at(501), Some("v1"), Outcome::Ok);
        r.record(
            at(1_200),
            at(1_200),
            None,
            Outcome::Error(ErrorKind::Refused),
        );
        let text = render(&r.finish(at(2_000)));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].ends_with(",gen_lag_max_ms,replicas_total,replicas_ready"));
        // 1 ms: highest equivalent 1 000 447 ns, capped at the exact max → every latency is 1.
        assert_eq!(
            lines[1],
            "0,1,before,total,,1,1,0,0,0,0,0,1,1,1,1,1,1,1,,,,2,2"
        );
        assert_eq!(
            lines[2],
            "0,1,before,version,v1,1,1,0,0,0,0,0,1,1,1,1,1,1,1,1,,,2,2"
        );
        assert_eq!(lines[3], "1,2,before,total,,1,0,1,0,0,0,0,0,,,,,,,,,,2,2");
        assert_eq!(
            lines[4],
            "1,2,before,version,v1,0,0,0,0,0,0,0,0,,,,,,,,,,2,2"
        );
        let rows = parse(&text).unwrap();
        assert_eq!(rows[2].errors.refused, 1);
        assert_eq!(rows[1].share, Some(1.0));
        assert_eq!(rows[3].lat_p99_ms, None);
        assert_eq!(rows[3].replicas["ready"], 2);
    }

    #[test]
    fn decimals_are_trimmed() {
        assert_eq!(fmt_decimal(1.5, 3), "1.5");
        assert_eq!(fmt_decimal(2.0, 3), "2");
        assert_eq!(fmt_decimal(0.1 + 0.2, 6), "0.3");
        assert_eq!(fmt_decimal(20.1, 9), "20.1");
        assert_eq!(fmt_decimal(-0.0000001, 3), "0");
    }
}
