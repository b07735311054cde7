//! Per-request results and where they go: the [`Sink`] a generator thread feeds, and its
//! implementations on top of the run's [`Recorder`] (`crate::metrics`).
//!
//! The generator hands every finished request to its thread's sink as a [`Completion`]
//! (intended send time, completion time, version, outcome), and reports when it dispatched a
//! request late ([`Sink::lag`]). A [`Recorder`] is itself a sink (one thread, or a backend that
//! drives one). [`SharedRecorder`] lets several generator threads feed one recorder: each thread
//! buffers its completions and hands them over in batches under a lock, so the hot path takes
//! no lock and memory stays bounded. What the recorder does with them (windows of intended send
//! time, per-version statistics, latency of successful requests only) is documented in
//! `crate::metrics`.

use std::sync::{Arc, Mutex};

use crate::metrics::Recorder;
pub use crate::metrics::{ErrorKind, Outcome};
use crate::model::time::{Duration, Instant};

/// One finished request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion<'a> {
    /// When the schedule meant to send it (the send time in closed-loop mode).
    pub intended: Instant,
    pub done: Instant,
    /// The version that answered (`x-sdnbed-version`, else the connection's resolved version,
    /// see [`super::load::LoadConfig::attribute`]), or, for a failure without an answer, the
    /// version that last answered on the same connection, else its resolved version; `None` if
    /// there was none.
    pub version: Option<&'a str>,
    pub outcome: Outcome,
}

/// Where a generator thread puts its finished requests. Called on the generator's hot path:
/// implementations must not block for long.
pub trait Sink: Send {
    fn record(&mut self, c: &Completion<'_>);
    /// The generator dispatched a request `lag` after its intended time `at`.
    fn lag(&mut self, at: Instant, lag: Duration);
}

impl Sink for Recorder {
    fn record(&mut self, c: &Completion<'_>) {
        Recorder::record(self, c.intended, c.done, c.version, c.outcome);
    }
    fn lag(&mut self, at: Instant, lag: Duration) {
        self.generator_lag(at, lag);
    }
}

/// Completions buffered before a thread takes the shared recorder's lock.
const BATCH: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Buffered {
    intended: Instant,
    done: Instant,
    /// Index into the thread's version names.
    version: Option<u16>,
    outcome: Outcome,
}

/// One generator thread's handle on a recorder shared by all threads. Completions reach the
/// recorder in batches and at the latest when the handle is flushed or dropped.
#[derive(Debug)]
pub struct SharedRecorder {
    shared: Arc<Mutex<Recorder>>,
    buf: Vec<Buffered>,
    versions: Vec<String>,
}

impl SharedRecorder {
    pub fn new(shared: Arc<Mutex<Recorder>>) -> Self {
        SharedRecorder {
            shared,
            buf: Vec::with_capacity(BATCH),
            versions: Vec::new(),
        }
    }

    fn version_index(&mut self, v: &str) -> Option<u16> {
        if let Some(i) = self.versions.iter().rposition(|x| x == v) {
            return Some(i as u16);
        }
        if self.versions.len() >= usize::from(u16::MAX) {
            // Far more versions than any run has; record this one unbuffered.
            return None;
        }
        self.versions.push(v.to_string());
        Some((self.versions.len() - 1) as u16)
    }

    /// Hands the buffered completions to the recorder.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut rec = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for b in self.buf.drain(..) {
            let version = b.version.map(|i| self.versions[usize::from(i)].as_str());
            rec.record(b.intended, b.done, version, b.outcome);
        }
    }
}

impl Sink for SharedRecorder {
    fn record(&mut self, c: &Completion<'_>) {
        let version = match c.version {
            None => None,
            Some(v) => match self.version_index(v) {
                Some(i) => Some(i),
                None => {
                    self.flush();
                    let mut rec = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                    rec.record(c.intended, c.done, c.version, c.outcome);
                    return;
                }
            },
        };
        self.buf.push(Buffered {
            intended: c.intended,
            done: c.done,
            version,
            outcome: c.outcome,
        });
        if self.buf.len() >= BATCH {
            self.flush();
        }
    }
    fn lag(&mut self, at: Instant, lag: Duration) {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generator_lag(at, lag);
    }
}

impl Drop for SharedRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RecorderConfig;

    fn config() -> RecorderConfig {
        RecorderConfig {
            window: Duration::from_millis(100),
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            steady_replicas: 1,
            new_version: None,
        }
    }

    fn feed(sink: &mut dyn Sink, thread: u64) {
        for i in 0..5000u64 {
            let intended = Instant((i * 2 + thread) * 100_000);
            let (version, outcome) = match i % 10 {
                0 => (None, Outcome::Error(ErrorKind::Refused)),
                1 => (Some("v2"), Outcome::Error(ErrorKind::Http5xx)),
                _ => (Some(if i % 2 == 0 { "v1" } else { "v2" }), Outcome::Ok),
            };
            let done = intended + Duration::from_micros(100 + i % 900);
            sink.record(&Completion {
                intended,
                done,
                version,
                outcome,
            });
        }
    }

    #[test]
    fn shared_recorder_from_threads_equals_direct_recording() {
        let mut direct = Recorder::new(config());
        feed(&mut direct, 0);
        feed(&mut direct, 1);
        let shared = Arc::new(Mutex::new(Recorder::new(config())));
        std::thread::scope(|s| {
            for t in 0..2 {
                let shared = Arc::clone(&shared);
                s.spawn(move || feed(&mut SharedRecorder::new(shared), t));
            }
        });
        let shared = Arc::try_unwrap(shared)
            .expect("threads done")
            .into_inner()
            .expect("not poisoned");
        let (a, b) = (
            direct.finish(Instant(1_000_000_000)),
            shared.finish(Instant(1_000_000_000)),
        );
        assert_eq!(a.summary, b.summary);
        assert_eq!(a.summary.overall.sent, 10_000);
        assert_eq!(a.summary.overall.errors.refused, 1000);
        assert_eq!(a.summary.versions["v2"].errors.http_5xx, 1000);
        assert_eq!(a.windows.len(), b.windows.len());
        for (x, y) in a.windows.iter().zip(&b.windows) {
            assert_eq!(x.total.stats(), y.total.stats());
        }
    }

    #[test]
    fn lag_reports_reach_the_recorder() {
        let shared = Arc::new(Mutex::new(Recorder::new(config())));
        let mut s = SharedRecorder::new(Arc::clone(&shared));
        s.lag(Instant(5_000_000), Duration::from_millis(3));
        drop(s);
        let m = Arc::try_unwrap(shared)
            .unwrap()
            .into_inner()
            .unwrap()
            .finish(Instant(1_000_000_000));
        assert_eq!(m.summary.generator.lag_reports, 1);
        assert_eq!(m.summary.generator.max_lag_ms, Some(3.0));
    }
}
