//! `latency.hlog`: an HdrHistogram interval log (V2, compressed histograms) readable by
//! HdrHistogram's `HistogramLogProcessor`.
//!
//! Per window, in time order: one untagged interval with all successful requests, then one
//! interval per version tagged `Tag=<version>` (empty histograms included, so every version
//! has one interval per window). Values are nanoseconds; interval start times are seconds since
//! the run's origin (no `StartTime`/`BaseTime` header, which would make identical runs differ);
//! the max column is in milliseconds (`MaxValueDivisor` 1e6).

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::metrics::RunMetrics;

/// Renders the interval log of `m`; the error describes what could not be serialized.
pub fn render(m: &RunMetrics) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment(
            "sdnbed latency log: values in ns; untagged = all versions, Tag=<version> per version",
        )
        .with_max_value_divisor(1e6)
        .begin_log_with(&mut buf, &mut serializer)
        .map_err(|e| e.to_string())?;
    let mut empty: Histogram<u32> =
        Histogram::new_with_bounds(1_000, 2_000, 3).map_err(|e| e.to_string())?;
    empty.auto(true);
    for w in &m.windows {
        let start = std::time::Duration::from_nanos(w.start.as_nanos());
        let len = std::time::Duration::from_nanos(w.end.saturating_since(w.start).as_nanos());
        let h = w.total.histogram().unwrap_or(&empty);
        writer
            .write_histogram(h, start, len, None)
            .map_err(|e| e.to_string())?;
        for (v, acc) in &w.versions {
            let tag = Tag::new(v).ok_or_else(|| format!("version {v:?} cannot be a log tag"))?;
            let h = acc.histogram().unwrap_or(&empty);
            writer
                .write_histogram(h, start, len, Some(tag))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(buf)
}
