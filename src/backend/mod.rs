//! Backends: where a run happens. Every backend takes a validated scenario and returns the same
//! [`RunOutput`], which `results` writes to the same files, so that runs on different backends
//! can be compared file for file.
//!
//! - `sim` ([`crate::sim`]): discrete-event simulation; deterministic, no privileges.
//! - `netns` ([`netns`]): real `sdnbed serve` processes and the load generator in Linux network
//!   namespaces wired by [`crate::dataplane`]; needs root.

pub mod effects;
pub mod fake;
pub mod netns;
pub mod runner;

use std::collections::BTreeMap;

use crate::metrics::RunMetrics;
use crate::results::{LinkRow, RunEvent};

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
