//! A recording fake of every effect trait ([`super::effects`]): it keeps a log of each call in
//! order and plays a world in which replicas start at once, run until signalled, and answer
//! probes as the test says. With it the runner is unit-tested in explicit time, without root.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::effects::{
    EffectError, Network, Probes, ReplicaSpec, Replicas, Signal, WorkloadSpec, Workloads,
};
use crate::model::link::LinkParams;
use crate::model::rollout::ReplicaId;
use crate::model::steering::SteeringTable;
use crate::model::time::{Duration, Instant};
use crate::output::LinkRow;

/// One call the runner made, as the fake saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Start(ReplicaSpec),
    Signal(ReplicaId, Signal),
    Restart(ReplicaId),
    Release(ReplicaId),
    Probe(ReplicaId),
    /// Service, and the replicas the table sends new connections to (sorted).
    Steer(usize, Vec<ReplicaId>),
    LinkUp(usize, bool),
    LinkParams(usize, LinkParams),
    Workload(usize),
    StopAll,
}

/// The recording fake. Servers exit on SIGTERM when `exit_on_term` (the built-in server with
/// nothing in flight), always on SIGKILL, and whenever the test calls [`Recording::exit`].
#[derive(Default)]
pub struct Recording {
    pub calls: Vec<Call>,
    pub exit_on_term: bool,
    running: BTreeSet<ReplicaId>,
    exited: Vec<ReplicaId>,
}

impl Recording {
    pub fn new() -> Self {
        Recording {
            exit_on_term: true,
            ..Default::default()
        }
    }

    /// The calls since the last take, leaving the log empty.
    pub fn take(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }

    /// Replica `id`'s server exits now (a crash, or the end of a drain); the runner sees it at
    /// its next reap.
    pub fn exit(&mut self, id: ReplicaId) {
        if self.running.remove(&id) {
            self.exited.push(id);
        }
    }
}

impl Replicas for Recording {
    fn start(&mut self, spec: &ReplicaSpec) -> Result<(), EffectError> {
        self.running.insert(spec.id);
        self.calls.push(Call::Start(spec.clone()));
        Ok(())
    }
    fn signal(&mut self, id: ReplicaId, signal: Signal) {
        self.calls.push(Call::Signal(id, signal));
        if signal == Signal::Kill || self.exit_on_term {
            self.exit(id);
        }
    }
    fn restart(&mut self, spec: &ReplicaSpec) -> Result<(), EffectError> {
        // The old process is reaped by the restart itself, as a real backend does.
        self.running.insert(spec.id);
        self.calls.push(Call::Restart(spec.id));
        Ok(())
    }
    fn reap(&mut self) -> Result<Vec<ReplicaId>, EffectError> {
        Ok(std::mem::take(&mut self.exited))
    }
    fn running(&self, id: ReplicaId) -> bool {
        self.running.contains(&id)
    }
    fn release(&mut self, id: ReplicaId) -> Result<(), EffectError> {
        self.calls.push(Call::Release(id));
        Ok(())
    }
    fn log_path(&self, id: ReplicaId) -> Option<PathBuf> {
        Some(PathBuf::from(format!("replica-{id}.log")))
    }
    fn stop_all(&mut self, _grace: std::time::Duration) {
        self.calls.push(Call::StopAll);
        let ids: Vec<ReplicaId> = self.running.iter().copied().collect();
        for id in ids {
            self.exit(id);
        }
    }
}

impl Probes for Recording {
    fn probe(&mut self, id: ReplicaId) {
        self.calls.push(Call::Probe(id));
    }
    fn wait_ready(&mut self, id: ReplicaId, _within: Duration) -> Result<bool, EffectError> {
        Ok(self.running.contains(&id))
    }
}

impl Network for Recording {
    fn steer(&mut self, svc: usize, table: &SteeringTable) -> Result<(), EffectError> {
        let targets: BTreeSet<ReplicaId> =
            table.ranges().iter().filter_map(|r| r.replica).collect();
        self.calls
            .push(Call::Steer(svc, targets.into_iter().collect()));
        Ok(())
    }
    fn set_link_up(&mut self, link: usize, up: bool) -> Result<(), EffectError> {
        self.calls.push(Call::LinkUp(link, up));
        Ok(())
    }
    fn set_link_params(&mut self, link: usize, params: &LinkParams) -> Result<(), EffectError> {
        self.calls.push(Call::LinkParams(link, params.clone()));
        Ok(())
    }
    fn link_counters(&mut self, _at: Instant) -> Result<Vec<LinkRow>, EffectError> {
        Ok(Vec::new())
    }
    fn check_reachability(&mut self) -> Result<Vec<String>, EffectError> {
        Ok(Vec::new())
    }
}

impl Workloads for Recording {
    fn start_workload(&mut self, spec: &WorkloadSpec) -> Result<(), EffectError> {
        self.calls.push(Call::Workload(spec.wl));
        Ok(())
    }
}
