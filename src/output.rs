//! The records of one run, as every backend returns them: the simulator and the real-time
//! runner both produce a [`RunOutput`], and `results` writes it to the same files. Its own
//! module so that the simulator and the backends depend on it, not on each other.

use std::collections::BTreeMap;

use crate::metrics::RunMetrics;
use crate::model::time::Instant;

/// What one run produced, on any backend.
pub struct RunOutput {
    pub metrics: RunMetrics,
    pub events: Vec<RunEvent>,
    /// Every component's seed, by component name.
    pub seeds: BTreeMap<String, u64>,
    /// How the rollout ended, if there was one and it ended within the run.
    pub rollout_outcome: Option<crate::model::rollout::Outcome>,
    /// Per-link counters at the end of every window.
    pub links: Vec<LinkRow>,
    /// Simulator events processed (the simulator's unit of work, for benchmarks); 0 on real
    /// backends.
    pub events_processed: u64,
}

/// Something that happened during a run (a rollout step, a timed scenario event, a replica
/// crash), written to `events.jsonl`.
///
/// Figures draw `source = "rollout"` events as vertical lines (red when `kind` contains
/// `abort` or `rollback`) and `source = "scenario"` events (timed `[[event]]`s) as dashed grey
/// lines; other sources are recorded but not drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunEvent {
    pub at: Instant,
    pub source: String,
    pub kind: String,
    pub detail: String,
}

/// Counters of one direction of one link at the end of a window (`links.csv`): running totals,
/// as [`crate::model::link::LinkCounters`] counts them on every backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRow {
    pub at: Instant,
    /// `a-b` as in the scenario's `between`, with `/<replica>` for a link to a service replica.
    pub link: String,
    /// `fwd` (from `between[0]` to `between[1]`) or `rev`.
    pub direction: &'static str,
    pub counters: crate::model::link::LinkCounters,
}
