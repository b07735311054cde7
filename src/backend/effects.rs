//! The narrow traits through which the real-time runner ([`super::runner`]) acts on a backend's
//! world. Each names what it does, not how: netns does them with namespaces and processes,
//! docker with containers, kube with API objects. [`super::fake`] records every call, so the
//! runner is tested in explicit time without root.
//!
//! Contract shared by all three:
//! - Calls come from the runner's one thread, in time order; none may block for long except
//!   [`Probes::wait_ready`] (setup, before time zero) and [`Replicas::stop_all`] (the end).
//! - Answers that take time (a readiness probe, a workload's requests) come back as
//!   [`Report`]s through the [`Inbox`] the backend was given when it was made.
//! - A replica id is the driver's ([`crate::driver`]): creation order, never reused.

use std::path::PathBuf;
use std::sync::mpsc::Sender;

use crate::metrics::Outcome;
use crate::model::link::LinkParams;
use crate::model::rollout::ReplicaId;
use crate::model::steering::SteeringTable;
use crate::model::time::{Duration, Instant};
use crate::output::LinkRow;
use crate::scenario::types::{RateSchedule, Rollout};

/// Any failure of an effect, with the object that failed in its message.
pub type EffectError = Box<dyn std::error::Error + Send + Sync>;

/// What one replica runs: service `svc`'s version `version` (indexes into the scenario), with
/// its own seed for service times and errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSpec {
    pub id: ReplicaId,
    pub svc: usize,
    pub version: usize,
    pub seed: u64,
}

/// The signals the runner sends: SIGTERM to drain (stop accepting, finish what is held), and
/// SIGKILL after the grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

/// Replicas: start, signal, reap, restart in place, release.
pub trait Replicas {
    /// Creates replica `spec.id` (its network attachment included) and starts its server.
    /// Returns once it is started, not ready.
    fn start(&mut self, spec: &ReplicaSpec) -> Result<(), EffectError>;
    /// Sends `signal` to the replica's server; nothing if it is not running.
    fn signal(&mut self, id: ReplicaId, signal: Signal);
    /// Kills the server (SIGKILL) and starts it again in place: same id, address and seed.
    fn restart(&mut self, spec: &ReplicaSpec) -> Result<(), EffectError>;
    /// The replicas whose server exited since the last call, each once.
    fn reap(&mut self) -> Result<Vec<ReplicaId>, EffectError>;
    /// Whether the replica's server is running (started and not reaped).
    fn running(&self, id: ReplicaId) -> bool;
    /// Removes what is left of a gone replica (its network attachment): steering no longer
    /// names it, in the installed table or a pending one.
    fn release(&mut self, id: ReplicaId) -> Result<(), EffectError>;
    /// Where the replica's output goes, for messages.
    fn log_path(&self, id: ReplicaId) -> Option<PathBuf>;
    /// The end of the run: SIGTERM to every server, SIGKILL to those still running after
    /// `grace`, and waits for them.
    fn stop_all(&mut self, grace: std::time::Duration);
}

/// Readiness probes (`GET /ready` from the service's gateway, or the platform's own).
pub trait Probes {
    /// Starts one probe of replica `id`; its answer comes back as [`Report::Probe`].
    fn probe(&mut self, id: ReplicaId);
    /// Probes replica `id` until it answers or `within` has passed (setup only: blocks).
    fn wait_ready(&mut self, id: ReplicaId, within: Duration) -> Result<bool, EffectError>;
}

/// The network: steering, link changes, counters.
pub trait Network {
    /// Installs `table` as service `svc`'s steering, atomically (new connections only).
    fn steer(&mut self, svc: usize, table: &SteeringTable) -> Result<(), EffectError>;
    /// Declared link `link`, every instance of it, up or down.
    fn set_link_up(&mut self, link: usize, up: bool) -> Result<(), EffectError>;
    /// Declared link `link`, every instance of it and those created later, takes `params`.
    fn set_link_params(&mut self, link: usize, params: &LinkParams) -> Result<(), EffectError>;
    /// Every link direction's running counters, named as the simulator names them.
    fn link_counters(&mut self, at: Instant) -> Result<Vec<LinkRow>, EffectError>;
    /// Probes every (source, destination, port) the scenario implies against the policies
    /// before load starts; an unexpected answer is an error. One line per pair, for the run's
    /// events.
    fn check_reachability(&mut self) -> Result<Vec<String>, EffectError>;
}

/// What a workload generator needs from the runner; the backend adds where it runs and what
/// it targets.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub wl: usize,
    /// The rate over the run, events folded in ([`crate::driver::Driver::workload_schedule`]).
    pub schedule: RateSchedule,
    pub seed: u64,
    /// Time zero of the run in `CLOCK_MONOTONIC` nanoseconds (shared by every process here).
    pub origin_ns: u64,
}

/// Workloads: start a generator; it reports each request and its end through the inbox.
pub trait Workloads {
    fn start_workload(&mut self, spec: &WorkloadSpec) -> Result<(), EffectError>;
}

/// Everything the runner needs of a backend.
pub trait Effects: Replicas + Probes + Network + Workloads {}
impl<T: Replicas + Probes + Network + Workloads> Effects for T {}

/// What comes back to the runner from the backend's threads and from control clients.
pub enum Report {
    /// One request of workload `wl` finished.
    Done {
        wl: usize,
        intended: Instant,
        done: Instant,
        version: Option<String>,
        outcome: Outcome,
    },
    /// A generator fell behind its schedule by `lag` at `at`.
    Lag { at: Instant, lag: Duration },
    /// One readiness probe's answer.
    Probe { replica: ReplicaId, ok: bool },
    /// Workload `wl`'s generator has finished (each waits for its requests in flight).
    WorkloadFinished {
        wl: usize,
        result: Result<(), EffectError>,
    },
    /// Something the platform saw happen (a container died, was killed for memory), for the
    /// run's events (`events.jsonl`), at the time it arrives.
    Note {
        source: &'static str,
        kind: String,
        detail: String,
    },
    /// Lab mode: begin `rollout` now. `reply` gets one JSON line per event (as `events.jsonl`
    /// writes them), then `{"outcome": …}`, or `{"error": …}` if it cannot begin.
    Rollout {
        rollout: Box<Rollout>,
        reply: Sender<String>,
    },
}

/// Where backend threads send their [`Report`]s.
pub type Inbox = Sender<Report>;
