//! What a run will cost, estimated before it starts: time-series windows, requests, memory.
//!
//! Every recorder window keeps one latency histogram for all requests and one per version
//! (HdrHistograms, 3 significant digits), so memory grows with `duration / window` times the
//! number of versions; simulated time grows with the number of requests. Above the limits
//! below a run is refused with the estimate (`--allow-large` runs it anyway), so no scenario
//! that validates can abort on an allocation or run for hours by a typo.
//!
//! Measured on the 2-core development VM (debug build, `scenarios/quickstart.toml`, two
//! versions, 60 s): window 100 ms: 69 MiB peak RSS; 10 ms: 446 MiB; 1 ms: 3.3 GiB. That is
//! 56–72 KiB per window with three histograms, about [`BYTES_PER_HISTOGRAM`] each.

use super::types::Scenario;

/// Bytes one window's histogram costs (see the module docs for the measurement).
pub const BYTES_PER_HISTOGRAM: u64 = 24 * 1024;
/// Refuse runs whose windows are estimated above this (2 GiB).
pub const MAX_BYTES: u64 = 2 << 30;
/// Refuse runs that send more requests than this (the simulator does ~10⁵ requests per second
/// of wall time in a debug build: 50 M is about ten minutes).
pub const MAX_REQUESTS: u64 = 50_000_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Cost {
    /// Time-series windows recorded.
    pub windows: u64,
    /// Histograms per window (all requests, and one per version).
    pub histograms: u64,
    /// Requests the workloads send over the run (rates integrated, `set-rate` events included).
    pub requests: u64,
    /// Estimated memory of the windows.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error(
        "run `{name}` records {} windows of {} histograms, about {}; raise `scenario.window` \
         (or shorten `scenario.duration`), or pass --allow-large",
        group(.cost.windows), .cost.histograms, size(.cost.bytes)
    )]
    Memory { name: String, cost: Cost },
    #[error(
        "run `{name}` sends {} requests (more than {}); lower the workload rates or \
         `scenario.duration`, or pass --allow-large",
        group(.cost.requests), group(MAX_REQUESTS)
    )]
    Requests { name: String, cost: Cost },
}

/// Estimates what running `sc` costs.
pub fn estimate(sc: &Scenario) -> Cost {
    let duration = sc.duration.as_nanos();
    let window = sc.window.as_nanos().max(1);
    let windows = duration.div_ceil(window);
    let histograms = 1 + sc
        .services
        .iter()
        .map(|s| s.versions.len() as u64)
        .sum::<u64>();
    let requests: f64 = sc
        .workloads
        .iter()
        .map(|wl| {
            let steps = sc.effective_rate(wl).steps;
            steps
                .iter()
                .enumerate()
                .map(|(i, (from, rate))| {
                    let from = from.as_nanos().min(duration);
                    let to = steps
                        .get(i + 1)
                        .map_or(duration, |(t, _)| t.as_nanos().min(duration));
                    rate.per_sec() * to.saturating_sub(from) as f64 / 1e9
                })
                .sum::<f64>()
        })
        .sum();
    Cost {
        windows,
        histograms,
        // Saturating: f64 → u64 casts clamp.
        requests: requests.ceil() as u64,
        bytes: windows
            .saturating_mul(histograms)
            .saturating_mul(BYTES_PER_HISTOGRAM),
    }
}

/// The estimate, or an error when it is above the limits and `allow_large` is false.
pub fn check(sc: &Scenario, allow_large: bool) -> Result<Cost, CostError> {
    let cost = estimate(sc);
    let name = sc.name.clone();
    if allow_large {
        Ok(cost)
    } else if cost.bytes > MAX_BYTES {
        Err(CostError::Memory { name, cost })
    } else if cost.requests > MAX_REQUESTS {
        Err(CostError::Requests { name, cost })
    } else {
        Ok(cost)
    }
}

/// 60000000 → "60,000,000".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.0} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(group(60_000_000), "60,000,000");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
    }
}
