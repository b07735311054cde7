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
//!
//! # What a timed event means
//!
//! The driver owns the meaning of every `[[event]]`, including its undo (after `duration`);
//! backends only carry out the commands it returns from [`Driver::scenario_event`]. The rule:
//! **an event's undo takes away that event's change and nothing else.** At any moment a
//! parameter has the value the declared scenario gives, changed by the events still active
//! (started and not undone), applied in the order they started, so that the latest-started
//! active event wins per parameter. When no event is active, the declared value returns.
//!
//! - `link-down` / `link-up`: the link's up state ([`Command::LinkUp`]); declared: up.
//! - `set-link`: each active event's patch, applied in start order over the declared
//!   parameters, replaces only the parameters it names ([`Command::LinkParams`]).
//! - `set-rate`: the same rule gives each workload one piecewise rate schedule,
//!   [`Driver::workload_schedule`], fixed before the run, because event times are. The
//!   simulator and the load generator both draw their arrivals from it; the event itself only
//!   enters the run's story.
//! - `kill-replica`: no undo. Kills the oldest `count` ready and running replicas
//!   ([`Command::Restart`]): SIGKILL, then the same replica starts again in place.
//!
//! Events and their undos are due at [`Command::EventAt`] times, which the driver hands out
//! with [`Driver::timed_events`] (all events) and from `scenario_event` (an undo).

use crate::metrics::{Recorder, RecorderConfig, ReplicaCounts};
use crate::model::link::LinkParams;
use crate::model::rollout::{
    Action, Outcome, Phase, ReplicaId, ReplicaState, ReplicaView, RolloutDriver, Traffic,
};
use crate::model::service::DrainTimeline;
use crate::model::steering::{Endpoint, SteeringTable};
use crate::model::time::{Duration, Instant};
use crate::output::RunEvent;
use crate::scenario::types::{EventAction, RateSchedule, Rollout, Scenario, Service, Target};

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
#[derive(Clone, Debug, PartialEq)]
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
    /// At `at`, call [`Driver::scenario_event`]`(index, undo)`.
    EventAt {
        index: usize,
        undo: bool,
        at: Instant,
    },
    /// Declared link `link` (every instance of it) goes up or down.
    LinkUp { link: usize, up: bool },
    /// Declared link `link` (every instance of it, and those created later) takes `params`.
    LinkParams { link: usize, params: LinkParams },
    /// Kill replica `id`'s process (SIGKILL) and start it again in place; probes notice only if
    /// the outage spans `failure_threshold` probes.
    Restart { id: ReplicaId },
}

/// A deadline of the driver's, kept on the backend's own timeline (the simulator's event queue,
/// the runner's timers) and acted on when it comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Call [`Driver::wake`] (the strategy's own deadline).
    RolloutPoll,
    /// SIGTERM replica `id`, if its server still runs.
    Sigterm(ReplicaId),
    /// SIGKILL replica `id`, if its server still runs (its grace is over).
    Sigkill(ReplicaId),
    /// Install [`Driver::steering_table`]`(svc, snapshot)`.
    Steer { svc: u32, snapshot: u32 },
    /// Call [`Driver::scenario_event`]`(index, undo)`.
    Event { index: u32, undo: bool },
}

/// What a backend does with the driver's commands. [`Command::carry_out`] is the one mapping
/// of commands onto these, so the simulator and the real-time runner schedule the same
/// deadlines in the same order, and differ only in how each is carried out.
pub trait Carrier {
    type Error;
    /// Keep `due` for `at`; it comes back to the backend then.
    fn schedule(&mut self, at: Instant, due: Due);
    /// Create and start replica `id` (state Starting in the driver's books).
    fn start_replica(&mut self, id: ReplicaId) -> Result<(), Self::Error>;
    /// Install a steering snapshot now ([`Driver::steering_table`]).
    fn steer(&mut self, svc: usize, snapshot: usize) -> Result<(), Self::Error>;
    fn set_link_up(&mut self, link: usize, up: bool) -> Result<(), Self::Error>;
    fn set_link_params(&mut self, link: usize, params: LinkParams) -> Result<(), Self::Error>;
    /// SIGKILL replica `id`'s server and start it again in place.
    fn restart_replica(&mut self, id: ReplicaId) -> Result<(), Self::Error>;
}

impl Command {
    /// Carries this command out at `now` through `c`: what is due later is scheduled, the rest
    /// is done at once.
    pub fn carry_out<C: Carrier>(self, now: Instant, c: &mut C) -> Result<(), C::Error> {
        match self {
            Command::Start { id } => c.start_replica(id)?,
            Command::Drain {
                id,
                sigterm,
                sigkill,
            } => {
                c.schedule(sigterm, Due::Sigterm(id));
                c.schedule(sigkill, Due::Sigkill(id));
            }
            Command::Steer { svc, snapshot, at } if at <= now => c.steer(svc, snapshot)?,
            Command::Steer { svc, snapshot, at } => {
                let (svc, snapshot) = (svc as u32, snapshot as u32);
                c.schedule(at, Due::Steer { svc, snapshot });
            }
            Command::PollAt { at } => c.schedule(at, Due::RolloutPoll),
            Command::EventAt { index, undo, at } => {
                let index = index as u32;
                c.schedule(at, Due::Event { index, undo });
            }
            Command::LinkUp { link, up } => c.set_link_up(link, up)?,
            Command::LinkParams { link, params } => c.set_link_params(link, params)?,
            Command::Restart { id } => c.restart_replica(id)?,
        }
        Ok(())
    }
}

type Snapshot = (Traffic, Vec<(ReplicaId, usize)>);

pub struct Driver<'s> {
    s: &'s Scenario,
    replicas: Vec<ReplicaRecord>,
    traffic: Vec<Traffic>,
    snapshots: Vec<Vec<Option<Snapshot>>>,
    rollout: Option<RolloutDriver>,
    /// The rollout being (or last) run: the scenario's, or one begun on demand.
    rollout_spec: Option<Rollout>,
    rollout_svc: Option<usize>,
    dirty: bool,
    poll_scheduled: Instant,
    phase: Phase,
    observed_svc: Option<usize>,
    counts: ReplicaCounts,
    events: Vec<RunEvent>,
    /// Per workload: its requests go to the rolled-out service (decided once, not per request).
    feeds_rollout: Vec<bool>,
    /// Timed events started and not undone, in the order they started.
    active_events: Vec<usize>,
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
            rollout_spec: s.rollout.clone(),
            rollout_svc,
            dirty: rollout_svc.is_some(),
            poll_scheduled: Instant::MAX,
            phase: Phase::Before,
            observed_svc,
            counts: ReplicaCounts::new(),
            events: Vec::new(),
            feeds_rollout: feeds(s, rollout_svc),
            active_events: Vec::new(),
        }
    }

    /// Begins `rollout` at `now`, whatever its `at` says (lab mode: a rollout on demand, from
    /// the version the service's live replicas run). Refused while another one is under way.
    pub fn begin_rollout(&mut self, now: Instant, rollout: &Rollout) -> Result<(), String> {
        if self
            .rollout
            .as_ref()
            .is_some_and(|r| r.phase() == Phase::During)
        {
            return Err("a rollout is under way in this run".into());
        }
        let si = self
            .s
            .services
            .iter()
            .position(|x| x.name == rollout.service)
            .ok_or_else(|| format!("no service `{}`", rollout.service))?;
        let service = &self.s.services[si];
        let current = self
            .replicas
            .iter()
            .find(|r| r.svc == si && r.state != ReplicaState::Gone)
            .map_or(service.version.as_str(), |r| {
                service.versions[r.version].name.as_str()
            });
        if service.version(&rollout.to).is_none() {
            return Err(format!(
                "service {} has no version `{}`",
                service.name, rollout.to
            ));
        }
        if current == rollout.to {
            return Err(format!(
                "service {} already runs version {}",
                service.name, rollout.to
            ));
        }
        let from = Service {
            version: current.to_string(),
            ..service.clone()
        };
        let spec = Rollout {
            at: now.saturating_since(Instant::ZERO),
            ..rollout.clone()
        };
        self.rollout = Some(RolloutDriver::new(&spec, &from));
        self.rollout_spec = Some(spec);
        self.rollout_svc = Some(si);
        self.observed_svc = Some(si);
        self.feeds_rollout = feeds(self.s, Some(si));
        self.phase = Phase::Before;
        self.dirty = true;
        Ok(())
    }

    /// The rollout's phase and outcome (None without a rollout).
    pub fn rollout_status(&self) -> Option<(Phase, Option<&Outcome>)> {
        self.rollout.as_ref().map(|r| (r.phase(), r.outcome()))
    }

    /// Every timed event of the scenario, as the commands that make it due.
    pub fn timed_events(&self) -> impl Iterator<Item = Command> + '_ {
        self.s
            .events
            .iter()
            .enumerate()
            .map(|(index, e)| Command::EventAt {
                index,
                undo: false,
                at: Instant::ZERO + e.at,
            })
    }

    /// Workload `wl`'s rate over the run: its declared schedule with the `set-rate` events
    /// folded in by the rule in the module docs.
    pub fn workload_schedule(&self, wl: usize) -> RateSchedule {
        self.s.effective_rate(&self.s.workloads[wl])
    }

    /// Timed event `index` (or its undo) is due: what it changes, as commands (see the module
    /// docs for the rule). `running` says whether a replica's process is running now (a killed
    /// replica that is restarting is not killed twice).
    pub fn scenario_event(
        &mut self,
        now: Instant,
        index: usize,
        undo: bool,
        running: impl Fn(ReplicaId) -> bool,
    ) -> Vec<Command> {
        let s = self.s;
        let e = &s.events[index];
        let verb = if undo { "undo" } else { e.action.name() };
        if undo {
            self.active_events.retain(|&i| i != index);
        } else {
            self.active_events.push(index);
        }
        let mut commands = Vec::new();
        match &e.action {
            EventAction::LinkDown { link } | EventAction::LinkUp { link } => {
                let li = self.link_index(link);
                let up = self.link_up(li);
                let state = if up { "up" } else { "down" };
                let detail = format!("link {}-{} {state}", link[0], link[1]);
                self.log(now, "scenario", verb, detail);
                commands.push(Command::LinkUp { link: li, up });
            }
            EventAction::SetLink { link, .. } => {
                let li = self.link_index(link);
                let params = self.link_params(li);
                let bandwidth = params
                    .bandwidth
                    .map_or("unshaped".to_string(), |b| b.to_string());
                let detail = format!(
                    "link {}-{} parameters changed: delay {}, bandwidth {bandwidth}",
                    link[0], link[1], params.delay
                );
                self.log(now, "scenario", verb, detail);
                commands.push(Command::LinkParams { link: li, params });
            }
            EventAction::KillReplica {
                service,
                version,
                count,
            } => {
                if !undo {
                    for id in self.kill_victims(service, version.as_deref(), *count, running) {
                        let detail = format!("replica {id} killed; restarting");
                        self.log(now, "scenario", "kill-replica", detail);
                        commands.push(Command::Restart { id });
                    }
                }
            }
            EventAction::SetRate { workload, .. } => {
                let wl = s
                    .workloads
                    .iter()
                    .position(|w| &w.name == workload)
                    .expect("validated");
                let rate = self
                    .workload_schedule(wl)
                    .rate_at(now.saturating_since(Instant::ZERO));
                let detail = format!("workload {workload} rate {rate}");
                self.log(now, "scenario", verb, detail);
            }
        }
        if let (false, Some(d)) = (undo, e.duration) {
            if !matches!(e.action, EventAction::KillReplica { .. }) {
                commands.push(Command::EventAt {
                    index,
                    undo: true,
                    at: Instant::ZERO + e.at + d,
                });
            }
        }
        commands
    }

    /// Declared link `li`'s up state now: the latest-started active link-down/link-up, else up.
    fn link_up(&self, li: usize) -> bool {
        self.active_events
            .iter()
            .rev()
            .find_map(|&i| match &self.s.events[i].action {
                EventAction::LinkDown { link } if self.link_index(link) == li => Some(false),
                EventAction::LinkUp { link } if self.link_index(link) == li => Some(true),
                _ => None,
            })
            .unwrap_or(true)
    }

    /// Declared link `li`'s parameters now: the active set-link patches over the declared ones.
    fn link_params(&self, li: usize) -> LinkParams {
        self.active_events
            .iter()
            .filter_map(|&i| match &self.s.events[i].action {
                EventAction::SetLink { link, patch } if self.link_index(link) == li => Some(patch),
                _ => None,
            })
            .fold(self.s.links[li].params.clone(), |p, patch| patch.apply(&p))
    }

    /// The recorder configuration for this scenario (the same on every backend).
    pub fn recorder_config(&self) -> RecorderConfig {
        RecorderConfig {
            window: self.s.window,
            duration: self.s.duration,
            warmup: self.s.warmup,
            steady_replicas: self.observed_svc.map_or(0, |m| self.s.services[m].replicas),
            new_version: self.rollout_spec.as_ref().map(|r| r.to.clone()),
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

    /// Adds service `svc`'s starting replicas (`replicas` of its starting version) in `state`;
    /// the backend realises them.
    pub fn add_starting_replicas(
        &mut self,
        svc: usize,
        state: ReplicaState,
        rec: &mut Recorder,
    ) -> Vec<ReplicaId> {
        let service = &self.s.services[svc];
        let version = service
            .versions
            .iter()
            .position(|v| v.name == service.version)
            .expect("validated");
        (0..service.replicas)
            .map(|_| self.add_replica(Instant::ZERO, svc, version, state, rec))
            .collect()
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
            self.rollout_spec
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

    /// The run's story so far, in the order it was told.
    pub fn events(&self) -> &[RunEvent] {
        &self.events
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
    fn link_index(&self, link: &[String; 2]) -> usize {
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
    /// `version` if given) whose process is running.
    fn kill_victims(
        &self,
        service: &str,
        version: Option<&str>,
        count: u32,
        running: impl Fn(ReplicaId) -> bool,
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
                r.svc == si && r.state == ReplicaState::Ready && running(id)
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

/// Per workload: whether its requests go to service `rollout_svc`.
fn feeds(s: &Scenario, rollout_svc: Option<usize>) -> Vec<bool> {
    s.workloads
        .iter()
        .map(|w| match (&w.to, rollout_svc) {
            (Target::Service(name), Some(si)) => *name == s.services[si].name,
            _ => false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{parse_experiment, LoadOptions};

    fn scenario(events: &str) -> Scenario {
        let text = format!(
            r#"
[scenario]
name = "events"
duration = "20s"

[[node]]
name = "client"
kind = "client"

[[node]]
name = "gw"
kind = "gateway"

[service.web]
replicas = 2
port = 8080
gateway = "gw"
version = "v1"

[service.web.versions.v1]
service_time = "const(1ms)"

[[link]]
between = ["client", "gw"]
bandwidth = "100Mbit"
delay = "1ms"

[[workload]]
name = "users"
from = "client"
to = "web"
rate = "100/s"
{events}"#
        );
        parse_experiment(&text, "events.toml", None, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .runs[0]
            .scenario
            .clone()
    }

    /// Plays every timed event and undo in time order; returns each command with its time (s).
    fn play(s: &Scenario) -> Vec<(f64, Command)> {
        let mut d = Driver::new(s);
        let mut due: Vec<Command> = d.timed_events().collect();
        let mut out = Vec::new();
        while !due.is_empty() {
            let i = (0..due.len())
                .min_by_key(|&i| match due[i] {
                    Command::EventAt { at, .. } => at,
                    _ => unreachable!(),
                })
                .unwrap();
            let Command::EventAt { index, undo, at } = due.remove(i) else {
                unreachable!()
            };
            for c in d.scenario_event(at, index, undo, |_| true) {
                match c {
                    Command::EventAt { .. } => due.push(c),
                    c => out.push((at.as_secs_f64(), c)),
                }
            }
        }
        out
    }

    #[test]
    fn overlapping_set_rate_returns_to_what_is_still_active_then_to_the_declared_rate() {
        // A: 1000/s from 1 s to 3 s; B: 500/s from 2 s to 5 s. B started last, so it wins from
        // 2 s; A's end changes nothing; at B's end the declared 100/s returns.
        let s = scenario(
            r#"
[[event]]
at = "1s"
action = "set-rate"
workload = "users"
rate = "1000/s"
duration = "2s"

[[event]]
at = "2s"
action = "set-rate"
workload = "users"
rate = "500/s"
duration = "3s"
"#,
        );
        let d = Driver::new(&s);
        let steps: Vec<(f64, f64)> = d
            .workload_schedule(0)
            .steps
            .iter()
            .map(|(t, r)| (t.as_secs_f64(), r.per_sec()))
            .collect();
        assert_eq!(
            steps,
            [(0.0, 100.0), (1.0, 1000.0), (2.0, 500.0), (5.0, 100.0)]
        );
    }

    #[test]
    fn a_set_link_undo_takes_away_only_its_own_patch() {
        // A sets the delay from 2 s to 6 s; B the bandwidth from 4 s to 8 s.
        let s = scenario(
            r#"
[[event]]
at = "2s"
action = "set-link"
link = ["client", "gw"]
delay = "20ms"
duration = "4s"

[[event]]
at = "4s"
action = "set-link"
link = ["gw", "client"]
bandwidth = "10Mbit"
duration = "4s"
"#,
        );
        let got: Vec<(f64, u64, Option<u64>)> = play(&s)
            .into_iter()
            .map(|(t, c)| match c {
                Command::LinkParams { link: 0, params } => (
                    t,
                    params.delay.as_nanos() / 1_000_000,
                    params.bandwidth.map(|b| b.bits_per_sec() / 1_000_000),
                ),
                c => panic!("{c:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                (2.0, 20, Some(100)),
                (4.0, 20, Some(10)),
                (6.0, 1, Some(10)),
                (8.0, 1, Some(100)),
            ]
        );
    }

    #[test]
    fn overlapping_outages_keep_the_link_down_until_the_last_one_ends() {
        // Down from 1 s to 5 s, and from 3 s to 7 s: the first one's end leaves it down.
        let s = scenario(
            r#"
[[event]]
at = "1s"
action = "link-down"
link = ["client", "gw"]
duration = "4s"

[[event]]
at = "3s"
action = "link-down"
link = ["client", "gw"]
duration = "4s"
"#,
        );
        let got: Vec<(f64, Command)> = play(&s);
        assert_eq!(
            got,
            [
                (1.0, Command::LinkUp { link: 0, up: false }),
                (3.0, Command::LinkUp { link: 0, up: false }),
                (5.0, Command::LinkUp { link: 0, up: false }),
                (7.0, Command::LinkUp { link: 0, up: true }),
            ]
        );
    }

    #[test]
    fn a_permanent_link_up_ends_an_outage_early() {
        let s = scenario(
            r#"
[[event]]
at = "1s"
action = "link-down"
link = ["client", "gw"]
duration = "4s"

[[event]]
at = "2s"
action = "link-up"
link = ["client", "gw"]
"#,
        );
        let got: Vec<(f64, Command)> = play(&s);
        assert_eq!(
            got,
            [
                (1.0, Command::LinkUp { link: 0, up: false }),
                (2.0, Command::LinkUp { link: 0, up: true }),
                (5.0, Command::LinkUp { link: 0, up: true }),
            ]
        );
    }

    #[test]
    fn kill_replica_picks_the_oldest_ready_running_replicas() {
        let s = scenario(
            r#"
[[event]]
at = "1s"
action = "kill-replica"
service = "web"
count = 1
"#,
        );
        let mut d = Driver::new(&s);
        let mut rec = Recorder::new(d.recorder_config());
        for _ in 0..2 {
            d.add_replica(Instant::ZERO, 0, 0, ReplicaState::Ready, &mut rec);
        }
        let at = Instant::ZERO + Duration::from_secs(1);
        // Replica 0 is restarting (not running): replica 1 is the victim.
        let c = d.scenario_event(at, 0, false, |id| id != 0);
        assert_eq!(c, [Command::Restart { id: 1 }]);
        assert!(d
            .events()
            .iter()
            .any(|e| e.kind == "kill-replica" && e.detail == "replica 1 killed; restarting"));
    }
}
