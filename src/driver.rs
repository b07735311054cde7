//! The driver core shared by every backend: which replicas exist and in what state, what
//! steering is told and when, and the rollout strategy's decisions.
//!
//! Pure and sans-IO like [`crate::model`]: every call takes `now`, and what the backend must do
//! in its world comes back as [`Command`]s (start a replica, drain one, install a steering table
//! at a given time, poll again at a given time). The simulator carries them out in virtual time,
//! the netns backend with processes, rtnetlink and nftables; so both mean the same thing by a
//! drain, a propagation delay or a rollout step, and keep the same books for the recorder.
//!
//! Guarantees:
//! - Replica ids are indexes in creation order, over all services, and are never reused.
//! - Steering learns of every change that affects it (a replica entering or leaving Ready, a new
//!   traffic split) as a snapshot taken at the change and applied `propagation_delay` later
//!   (the rolled-out service's; at once for other services).
//! - The rollout strategy is polled when a replica of its service changes state and when its
//!   own deadline comes; never twice for the same change.
//! - The recorder is told about replica counts (live replicas of the observed service: the
//!   rolled-out one, or the first), effective steering weights, phase changes and aborts.

use crate::metrics::{Recorder, RecorderConfig, ReplicaCounts};
use crate::model::rollout::{
    Action, Outcome, Phase, ReplicaId, ReplicaState, ReplicaView, RolloutDriver, Traffic,
};
use crate::model::service::DrainTimeline;
use crate::model::steering::{Endpoint, SteeringTable};
use crate::model::time::{Duration, Instant};
use crate::results::RunEvent;
use crate::scenario::types::{Scenario, Target};

/// A replica as the driver sees it; the backend keeps what it needs to realise it alongside,
/// under the same id.
#[derive(Clone, Debug)]
pub struct ReplicaRecord {
    pub svc: usize,
    pub version: usize,
    pub state: ReplicaState,
    pub since: Instant,
}

/// What the backend must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The strategy added replica `id` (state Starting): create and start it.
    Start { id: ReplicaId },
    /// Replica `id` left steering to drain: SIGTERM at `sigterm`, SIGKILL at `sigkill` if it is
    /// still running; it is Gone once its process has exited.
    Drain {
        id: ReplicaId,
        sigterm: Instant,
        sigkill: Instant,
    },
    /// At `at`, install [`Driver::steering_table`]`(svc, snapshot)`.
    Steer {
        svc: usize,
        snapshot: usize,
        at: Instant,
    },
    /// Call [`Driver::wake`] and [`Driver::poll`] at `at`.
    PollAt { at: Instant },
}

type Snapshot = (Traffic, Vec<(ReplicaId, usize)>);

pub struct Driver<'s> {
    s: &'s Scenario,
    replicas: Vec<ReplicaRecord>,
    traffic: Vec<Traffic>,
    snapshots: Vec<Vec<Option<Snapshot>>>,
    rollout: Option<RolloutDriver>,
    rollout_svc: Option<usize>,
    dirty: bool,
    poll_scheduled: Instant,
    phase: Phase,
    observed_svc: Option<usize>,
    counts: ReplicaCounts,
    events: Vec<RunEvent>,
    /// Per workload: its requests go to the rolled-out service (decided once, not per request).
    feeds_rollout: Vec<bool>,
}

impl<'s> Driver<'s> {
    pub fn new(s: &'s Scenario) -> Self {
        let rollout_svc = s.rollout.as_ref().map(|r| {
            s.services
                .iter()
                .position(|x| x.name == r.service)
                .expect("validated")
        });
        let observed_svc = rollout_svc.or((!s.services.is_empty()).then_some(0));
        Driver {
            s,
            replicas: Vec::new(),
            traffic: vec![Traffic::ByReadyReplicas; s.services.len()],
            snapshots: vec![Vec::new(); s.services.len()],
            rollout: s
                .rollout
                .as_ref()
                .zip(rollout_svc)
                .map(|(r, si)| RolloutDriver::new(r, &s.services[si])),
            rollout_svc,
            dirty: rollout_svc.is_some(),
            poll_scheduled: Instant::MAX,
            phase: Phase::Before,
            observed_svc,
            counts: ReplicaCounts::new(),
            events: Vec::new(),
            feeds_rollout: s
                .workloads
                .iter()
                .map(|w| match (&w.to, rollout_svc) {
                    (Target::Service(name), Some(si)) => *name == s.services[si].name,
                    _ => false,
                })
                .collect(),
        }
    }

    /// The recorder configuration for this scenario (the same on every backend).
    pub fn recorder_config(&self) -> RecorderConfig {
        RecorderConfig {
            window: self.s.window,
            duration: self.s.duration,
            warmup: self.s.warmup,
            steady_replicas: self.observed_svc.map_or(0, |m| self.s.services[m].replicas),
            new_version: self.s.rollout.as_ref().map(|r| r.to.clone()),
        }
    }

    pub fn replicas(&self) -> &[ReplicaRecord] {
        &self.replicas
    }

    pub fn replica(&self, id: ReplicaId) -> &ReplicaRecord {
        &self.replicas[id as usize]
    }

    /// The name of replica `id`'s version.
    pub fn version_name(&self, id: ReplicaId) -> &'s str {
        let r = &self.replicas[id as usize];
        &self.s.services[r.svc].versions[r.version].name
    }

    /// The index of the service whose rollout this is, if any.
    pub fn rollout_service(&self) -> Option<usize> {
        self.rollout_svc
    }

    /// Adds a replica in `state` (the starting replicas of a service; the strategy's are added
    /// by [`Driver::poll`]). The backend realises it.
    pub fn add_replica(
        &mut self,
        now: Instant,
        svc: usize,
        version: usize,
        state: ReplicaState,
        rec: &mut Recorder,
    ) -> ReplicaId {
        let id = self.replicas.len() as ReplicaId;
        self.replicas.push(ReplicaRecord {
            svc,
            version,
            state,
            since: now,
        });
        self.count(svc, version, state, 1);
        if Some(svc) == self.observed_svc {
            rec.replicas(now, &self.counts);
        }
        if Some(svc) == self.rollout_svc {
            self.dirty = true;
        }
        id
    }

    /// Replica `id` is now in `state`. Returns the steering update this causes, if any.
    pub fn set_state(
        &mut self,
        now: Instant,
        id: ReplicaId,
        state: ReplicaState,
        rec: &mut Recorder,
    ) -> Option<Command> {
        let ReplicaRecord {
            svc,
            version,
            state: old,
            ..
        } = self.replicas[id as usize];
        if old == state {
            return None;
        }
        self.count(svc, version, old, -1);
        self.count(svc, version, state, 1);
        let r = &mut self.replicas[id as usize];
        r.state = state;
        r.since = now;
        if Some(svc) == self.observed_svc {
            rec.replicas(now, &self.counts);
        }
        if Some(svc) == self.rollout_svc {
            self.dirty = true;
        }
        if matches!(
            state,
            ReplicaState::Ready | ReplicaState::Gone | ReplicaState::NotReady
        ) {
            let detail = format!(
                "replica {id} ({}) {}",
                self.version_name(id),
                state.as_str()
            );
            self.log(now, "replica", state.as_str(), detail);
        }
        ((old == ReplicaState::Ready) != (state == ReplicaState::Ready))
            .then(|| self.steering_changed(now, svc))
    }

    /// Takes a steering snapshot of `svc` now, to be applied after the propagation delay.
    pub fn steering_changed(&mut self, now: Instant, svc: usize) -> Command {
        let endpoints: Vec<(ReplicaId, usize)> = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.svc == svc && r.state == ReplicaState::Ready)
            .map(|(i, r)| (i as ReplicaId, r.version))
            .collect();
        self.snapshots[svc].push(Some((self.traffic[svc].clone(), endpoints)));
        let delay = if Some(svc) == self.rollout_svc {
            self.s
                .rollout
                .as_ref()
                .map_or(Duration::ZERO, |r| r.propagation_delay)
        } else {
            Duration::ZERO
        };
        Command::Steer {
            svc,
            snapshot: self.snapshots[svc].len() - 1,
            at: now + delay,
        }
    }

    /// The table of a snapshot, for the backend to install now; records the effective weights.
    /// None if it was taken already.
    pub fn steering_table(
        &mut self,
        now: Instant,
        svc: usize,
        snapshot: usize,
        rec: &mut Recorder,
    ) -> Option<SteeringTable> {
        let (traffic, endpoints) = self.snapshots[svc][snapshot].take()?;
        if self.snapshots[svc].iter().all(Option::is_none) {
            self.snapshots[svc].clear();
        }
        let versions = &self.s.services[svc].versions;
        let eps: Vec<Endpoint<'_>> = endpoints
            .iter()
            .map(|&(id, v)| Endpoint {
                id,
                version: &versions[v].name,
            })
            .collect();
        let table = SteeringTable::build(&traffic, &eps);
        if Some(svc) == self.observed_svc {
            let replicas = &self.replicas;
            rec.weights(
                now,
                &table.slots_of(|id| versions[replicas[id as usize].version].name.clone()),
            );
        }
        Some(table)
    }

    /// Replicas that a pending (not yet installed) snapshot of `svc` still names.
    pub fn pending_endpoints(&self, svc: usize) -> impl Iterator<Item = ReplicaId> + '_ {
        self.snapshots[svc]
            .iter()
            .flatten()
            .flat_map(|(_, eps)| eps.iter().map(|(id, _)| *id))
    }

    /// The strategy's deadline came (a [`Command::PollAt`] fired).
    pub fn wake(&mut self) {
        self.poll_scheduled = Instant::MAX;
        self.dirty = true;
    }

    /// Runs the strategy if something it watches changed; returns what the backend must do.
    pub fn poll(&mut self, now: Instant, rec: &mut Recorder) -> Vec<Command> {
        let mut commands = Vec::new();
        if !self.dirty {
            return commands;
        }
        self.dirty = false;
        let (Some(svc), Some(driver)) = (self.rollout_svc, self.rollout.as_mut()) else {
            return commands;
        };
        let versions = &self.s.services[svc].versions;
        let views: Vec<ReplicaView> = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.svc == svc)
            .map(|(i, r)| ReplicaView {
                id: i as ReplicaId,
                version: versions[r.version].name.clone(),
                state: r.state,
                since: r.since,
            })
            .collect();
        let actions = driver.poll(now, &views);
        let (poll_at, phase) = (driver.poll_at(), driver.phase());
        for a in actions {
            match a {
                Action::Start { version } => {
                    let vi = versions
                        .iter()
                        .position(|v| v.name == version)
                        .expect("strategies start defined versions");
                    let id = self.add_replica(now, svc, vi, ReplicaState::Starting, rec);
                    self.log(
                        now,
                        "replica",
                        "start",
                        format!("replica {id} ({version}) starting"),
                    );
                    commands.push(Command::Start { id });
                }
                Action::Drain { replica } => {
                    if matches!(
                        self.replicas[replica as usize].state,
                        ReplicaState::Draining | ReplicaState::Gone
                    ) {
                        continue;
                    }
                    commands.extend(self.set_state(now, replica, ReplicaState::Draining, rec));
                    let term = self.s.services[svc].termination;
                    let t = DrainTimeline::new(now, term.pre_stop, term.grace);
                    commands.push(Command::Drain {
                        id: replica,
                        sigterm: t.sigterm,
                        sigkill: t.sigkill,
                    });
                }
                Action::SetTraffic(t) => {
                    self.traffic[svc] = t;
                    commands.push(self.steering_changed(now, svc));
                }
                Action::Note { kind, detail } => {
                    if kind == "abort" {
                        rec.abort(now);
                    }
                    self.log(now, "rollout", &kind, detail);
                }
            }
        }
        if phase != self.phase {
            self.phase = phase;
            rec.phase_change(now, phase);
            self.log(now, "rollout", "phase", phase.as_str().to_string());
        }
        if poll_at < self.poll_scheduled && poll_at != Instant::MAX {
            self.poll_scheduled = poll_at;
            commands.push(Command::PollAt {
                at: poll_at.max(now),
            });
        }
        commands
    }

    /// A request of workload `wl` finished: the rollout's analysis sees requests to its service.
    pub fn observe(
        &mut self,
        wl: usize,
        done: Instant,
        version: Option<&str>,
        latency: Duration,
        ok: bool,
    ) {
        if let (true, Some(driver), Some(v)) =
            (self.feeds_rollout[wl], self.rollout.as_mut(), version)
        {
            driver.observe(done, v, latency, ok);
        }
    }

    pub fn log(&mut self, at: Instant, source: &str, kind: &str, detail: String) {
        self.events.push(RunEvent {
            at,
            source: source.into(),
            kind: kind.into(),
            detail,
        });
    }

    /// The declared link `link` names (in either order).
    pub fn link_index(&self, link: &[String; 2]) -> usize {
        self.s
            .links
            .iter()
            .position(|l| {
                let (a, b) = (l.between[0].name(), l.between[1].name());
                (a == link[0] && b == link[1]) || (a == link[1] && b == link[0])
            })
            .expect("validated: events name declared links")
    }

    /// The replicas a `kill-replica` event kills: the oldest `count` ready ones of `service` (of
    /// `version` if given) for which `alive` holds.
    pub fn kill_victims(
        &self,
        service: &str,
        version: Option<&str>,
        count: u32,
        alive: impl Fn(ReplicaId) -> bool,
    ) -> Vec<ReplicaId> {
        let si = self
            .s
            .services
            .iter()
            .position(|x| x.name == service)
            .expect("validated");
        (0..self.replicas.len() as ReplicaId)
            .filter(|&id| {
                let r = &self.replicas[id as usize];
                r.svc == si && r.state == ReplicaState::Ready && alive(id)
            })
            .filter(|&id| version.is_none_or(|v| self.version_name(id) == v))
            .take(count as usize)
            .collect()
    }

    /// The run's events (sorted by time) and the rollout's outcome; notes a rollout that the
    /// run's end cut short.
    pub fn finish(mut self, end: Instant) -> (Vec<RunEvent>, Option<Outcome>) {
        let outcome = self.rollout.as_ref().and_then(|r| r.outcome().cloned());
        if let (Some(r), None) = (&self.rollout, &outcome) {
            if r.started_at().is_some() {
                self.log(
                    end,
                    "rollout",
                    "incomplete",
                    "the run ended before the rollout finished".into(),
                );
            }
        }
        self.events.sort_by_key(|e| e.at);
        (self.events, outcome)
    }

    /// Keeps the recorded replica counts: live replicas only (a gone replica is no capacity).
    fn count(&mut self, svc: usize, version: usize, state: ReplicaState, delta: i32) {
        if Some(svc) != self.observed_svc || state == ReplicaState::Gone {
            return;
        }
        let key = (
            self.s.services[svc].versions[version].name.clone(),
            state.as_str().to_string(),
        );
        let c = self.counts.entry(key.clone()).or_insert(0);
        *c = c.saturating_add_signed(delta);
        if *c == 0 {
            self.counts.remove(&key);
        }
    }
}
