//! Backends: where a run happens. Every backend takes a validated scenario and returns the same
//! [`RunOutput`], which `results` writes to the same files, so that runs on different backends
//! can be compared file for file.
//!
//! - `sim` ([`crate::sim`]): discrete-event simulation; deterministic, no privileges.
//! - `netns` ([`netns`]): real `sdnbed serve` processes and the load generator in Linux network
//!   namespaces wired by [`crate::dataplane`]; needs root.
//!
//! # Where a new backend plugs in
//!
//! ```text
//!  driver (what a rollout step, a drain, a timed event means) ──Commands──▶
//!    sim: carries them out in virtual time
//!    runner (timers, probing, drain, steering, link sampling, workloads) ──effects──▶
//!        netns: namespaces + processes │ docker: containers │ kube: API objects
//! ```
//!
//! A real backend implements the four traits of [`effects`] (`Replicas`, `Probes`, `Network`,
//! `Workloads`) for a type of its own, hands it to [`runner::Runner`] with [`runner::run`]
//! (a measured run) or holds it open in lab mode, and implements [`Backend`] to say how a run
//! starts and ends there. `cli::run` picks the backend in one `match`, so a new one is that
//! implementation plus one line there. It does not copy the run loop: what happens when, and
//! what it means, stays in the driver and the runner, and the runner's unit tests (with
//! [`fake::Recording`]) cover it for every backend. Docker and netns share the data plane
//! ([`crate::dataplane`]): a container is a process whose network namespace it wires.

pub mod docker;
pub mod effects;
pub mod fake;
pub mod kube;
pub mod netns;
pub mod plane;
pub mod runner;

use std::path::PathBuf;

pub use crate::output::RunOutput;

/// Any backend's failure, carrying the object that failed.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// What a run needs to know about where it happens, on any backend.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// Unique id of this run: part of every kernel object's, container's or API object's name.
    pub run_id: String,
    /// Scratch space for replica logs and the ledger copy; the run directory itself is written
    /// whole, at the end, from the [`RunOutput`].
    pub work_dir: PathBuf,
    /// The `sdnbed` binary replicas run (`sdnbed serve`).
    pub exe: PathBuf,
}

/// Where a run happens.
pub trait Backend: Sync {
    fn run(
        &self,
        scenario: &crate::scenario::Scenario,
        ctx: &RunContext,
    ) -> Result<RunOutput, BackendError>;
    /// Whether runs may share the machine: simulated runs may; real ones would distort each
    /// other's latencies, so they go one at a time.
    fn concurrent(&self) -> bool;
}

/// The simulator as a backend.
pub struct Sim;

impl Backend for Sim {
    fn run(
        &self,
        scenario: &crate::scenario::Scenario,
        _ctx: &RunContext,
    ) -> Result<RunOutput, BackendError> {
        Ok(crate::sim::run(scenario)?)
    }
    fn concurrent(&self) -> bool {
        true
    }
}
