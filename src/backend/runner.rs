//! The real-time runner: what every real backend (netns, docker, kube) does in a run that is not
//! about its own world. It carries out the driver's commands ([`crate::driver`]) in real time
//! through the narrow effect traits of [`super::effects`], and keeps the books the simulator
//! keeps, so both write the same files.
//!
//! The runner is sans-IO in the same way as the driver: [`Runner`] takes `now` on every call
//! ([`Runner::advance`], [`Runner::report`]) and says when it next needs a call
//! ([`Runner::next_deadline`]). Only [`run`] reads a clock and waits on the inbox; the unit
//! tests below drive the same code in explicit time with the recording fake.
//!
//! # A run, in order
//!
//! 1. [`Runner::set_up`], at time zero: the starting replicas of every service are started and
//!    waited for (their `startup` plus [`SETUP_GRACE`]); steering follows each as it becomes
//!    ready. Then every (source, destination, port) is checked against the policies, into the
//!    run's events.
//! 2. [`Runner::begin`]: timed events, link sampling (every `window`), readiness probes (every
//!    `period`), reaping (every [`REAP_EVERY`]) and, when measuring, the workloads.
//! 3. Until every workload has finished (measuring) or for ever (a lab, [`Mode::Hold`]): timers
//!    in time order, reports as they come, the rollout strategy polled after each.
//! 4. [`Runner::finish`]: the last link sample, every replica stopped, the run's output.
//!
//! # Guarantees
//!
//! - Draining is the driver's timeline: steering first (after `propagation_delay`), SIGTERM at
//!   `pre_stop`, SIGKILL at `grace` if the server still runs; a server that exits on its own
//!   (or dies) meanwhile is Gone at the next reap and gets no more signals.
//! - A gone replica's network attachment is released only once neither the installed steering
//!   table nor a pending one names it (steering that learns late may still send it
//!   connections, which are then refused, as on Kubernetes).
//! - Readiness follows [`ProbeCounter`]: one success makes a replica ready, `failure_threshold`
//!   consecutive failures not ready. A killed replica restarts in place, so probes notice only
//!   an outage that spans the threshold.
//! - An effect that fails ends the run with that error; a workload that fails ends it once the
//!   others are done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use super::effects::{EffectError, Effects, ReplicaSpec, Report, Signal, WorkloadSpec};
use super::RunOutput;
use crate::driver::{Carrier, Command, Driver, Due};
use crate::metrics::Recorder;
use crate::model::link::LinkParams;
use crate::model::queue::EventQueue;
use crate::model::rng::SeedTree;
use crate::model::rollout::{Outcome, Phase, ReplicaId, ReplicaState};
use crate::model::service::ProbeCounter;
use crate::model::time::{Duration, Instant};
use crate::output::{LinkRow, RunEvent};
use crate::scenario::types::Scenario;
use crate::workload::timer::Clock;

/// How long the starting replicas may take to become ready, beyond their `startup`.
pub const SETUP_GRACE: Duration = Duration::from_secs(10);
/// Time between starting the generators and the run's time zero, for their connection pools.
pub const START_LEAD: Duration = Duration::from_millis(200);
/// The runner looks for exited replica servers this often.
pub const REAP_EVERY: Duration = Duration::from_millis(20);
/// At the end of a run, how long servers get between SIGTERM and SIGKILL.
const FINAL_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(
        "replica {replica} of {service} was not ready {within} after it started (its log: {log})"
    )]
    NotReady {
        service: String,
        replica: ReplicaId,
        within: Duration,
        log: String,
    },
    #[error("workload {workload}: {source}")]
    Workload {
        workload: String,
        #[source]
        source: EffectError,
    },
    #[error(transparent)]
    Effect(#[from] EffectError),
}

/// Whether the run measures (workloads, timed events, link samples; ends when the workloads
/// do) or holds a lab open (services only, rollouts on demand, until stopped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Measure,
    Hold,
}

#[derive(Clone, Copy, Debug)]
enum Timer {
    /// A deadline of the driver's.
    Due(Due),
    Probe {
        replica: ReplicaId,
    },
    SampleLinks,
    Reap,
}

/// What the runner keeps of a replica besides the driver's record of it (same id).
struct Tracked {
    spec: ReplicaSpec,
    probes: ProbeCounter,
    /// Its network attachment still exists.
    attached: bool,
}

pub struct Runner<'s, E> {
    s: &'s Scenario,
    fx: E,
    mode: Mode,
    driver: Driver<'s>,
    recorder: Recorder,
    seeds: SeedTree,
    seed_log: BTreeMap<String, u64>,
    timers: EventQueue<Timer>,
    replicas: Vec<Tracked>,
    /// The replicas each service's installed steering table sends connections to.
    installed: Vec<BTreeSet<ReplicaId>>,
    links: Vec<LinkRow>,
    now: Instant,
    workloads_running: usize,
    workload_error: Option<RunnerError>,
    /// Lab mode: where the progress of the rollout on demand goes, and how much of the
    /// driver's log it has seen.
    rollout_reply: Option<(std::sync::mpsc::Sender<String>, usize)>,
}

impl<'s, E: Effects> Runner<'s, E> {
    pub fn new(s: &'s Scenario, fx: E, mode: Mode) -> Self {
        let driver = Driver::new(s);
        let recorder = Recorder::new(driver.recorder_config());
        Runner {
            s,
            fx,
            mode,
            driver,
            recorder,
            seeds: SeedTree::new(s.seed),
            seed_log: BTreeMap::new(),
            timers: EventQueue::new(),
            replicas: Vec::new(),
            installed: vec![BTreeSet::new(); s.services.len()],
            links: Vec::new(),
            now: Instant::ZERO,
            workloads_running: 0,
            workload_error: None,
            rollout_reply: None,
        }
    }

    pub fn effects(&self) -> &E {
        &self.fx
    }

    pub fn effects_mut(&mut self) -> &mut E {
        &mut self.fx
    }

    pub fn driver(&self) -> &Driver<'s> {
        &self.driver
    }

    /// The run's story so far, in the order it was told.
    pub fn events(&self) -> &[RunEvent] {
        self.driver.events()
    }

    fn seed(&mut self, name: String) -> u64 {
        let seed = self.seeds.seed_for(&name);
        self.seed_log.insert(name, seed);
        seed
    }

    // ----- setup and time zero ---------------------------------------------------------------

    /// Starts each service's replicas and waits until they are ready (steering follows), then
    /// checks reachability against the policies. Happens "at" time zero.
    pub fn set_up(&mut self) -> Result<(), RunnerError> {
        for (si, svc) in self.s.services.iter().enumerate() {
            let ids =
                self.driver
                    .add_starting_replicas(si, ReplicaState::Starting, &mut self.recorder);
            for &id in &ids {
                self.realise(id)?;
            }
            let startup = svc.version(&svc.version).expect("validated").startup;
            let within = startup + SETUP_GRACE;
            for id in ids {
                if !self.fx.wait_ready(id, within)? {
                    return Err(RunnerError::NotReady {
                        service: svc.name.clone(),
                        replica: id,
                        within,
                        log: self
                            .fx
                            .log_path(id)
                            .map_or("none".into(), |p| p.display().to_string()),
                    });
                }
                self.set_state(id, ReplicaState::Ready)?;
            }
        }
        for line in self.fx.check_reachability()? {
            self.driver
                .log(Instant::ZERO, "dataplane", "reachability", line);
        }
        Ok(())
    }

    /// Time zero of the run, which is `origin_ns` on `CLOCK_MONOTONIC`: schedules the timers
    /// and, when measuring, starts the workloads.
    pub fn begin(&mut self, origin_ns: u64) -> Result<(), RunnerError> {
        if self.mode == Mode::Measure {
            let timed: Vec<Command> = self.driver.timed_events().collect();
            for c in timed {
                self.execute(c)?;
            }
            self.timers
                .push(Instant::ZERO + self.s.window, Timer::SampleLinks);
        }
        for id in 0..self.replicas.len() as ReplicaId {
            let period = self.s.services[self.replicas[id as usize].spec.svc]
                .readiness
                .period;
            self.timers
                .push(Instant::ZERO + period, Timer::Probe { replica: id });
        }
        self.timers.push(Instant::ZERO + REAP_EVERY, Timer::Reap);
        self.recorder.phase_change(Instant::ZERO, Phase::Before);
        if self.mode == Mode::Measure {
            for wl in 0..self.s.workloads.len() {
                let seed = self.seed(format!("workload/{}/arrivals", self.s.workloads[wl].name));
                let spec = WorkloadSpec {
                    wl,
                    schedule: self.driver.workload_schedule(wl),
                    seed,
                    origin_ns,
                };
                self.fx.start_workload(&spec)?;
                self.workloads_running += 1;
            }
        }
        Ok(())
    }

    // ----- the loop's two inputs: time and reports -------------------------------------------

    /// When the runner next needs [`Runner::advance`].
    pub fn next_deadline(&self) -> Instant {
        self.timers.next_at().unwrap_or(Instant::MAX)
    }

    /// Handles every timer due at or before `now`, then polls the strategy.
    pub fn advance(&mut self, now: Instant) -> Result<(), RunnerError> {
        self.now = self.now.max(now);
        while self.timers.next_at().is_some_and(|t| t <= self.now) {
            let (_, t) = self.timers.pop().expect("peeked");
            self.handle_timer(t)?;
        }
        self.after_event()
    }

    /// One report from the backend's threads (or a control client), at `now`.
    pub fn report(&mut self, now: Instant, r: Report) -> Result<(), RunnerError> {
        self.now = self.now.max(now);
        match r {
            Report::Done {
                wl,
                intended,
                done,
                version,
                outcome,
            } => {
                self.recorder
                    .record(intended, done, version.as_deref(), outcome);
                let latency = done.saturating_since(intended);
                self.driver.observe(
                    wl,
                    done,
                    version.as_deref(),
                    latency,
                    outcome == crate::metrics::Outcome::Ok,
                );
            }
            Report::Lag { at, lag } => self.recorder.generator_lag(at, lag),
            Report::Probe { replica, ok } => {
                let state = self.driver.replica(replica).state;
                if let Some(next) = self.replicas[replica as usize].probes.observe(state, ok) {
                    self.set_state(replica, next)?;
                }
            }
            Report::WorkloadFinished { wl, result } => {
                self.workloads_running -= 1;
                if let Err(source) = result {
                    self.workload_error.get_or_insert(RunnerError::Workload {
                        workload: self.s.workloads[wl].name.clone(),
                        source,
                    });
                }
            }
            Report::Note {
                source,
                kind,
                detail,
            } => self.driver.log(self.now, source, &kind, detail),
            Report::Rollout { rollout, reply } => {
                match self.driver.begin_rollout(self.now, &rollout) {
                    Ok(()) => {
                        let seen = self.driver.events().len();
                        self.rollout_reply = Some((reply, seen));
                    }
                    Err(e) => {
                        let _ = reply.send(serde_json::json!({ "error": e }).to_string());
                    }
                }
            }
        }
        self.after_event()
    }

    /// Measuring: every workload has finished. Holding: never.
    pub fn done(&self) -> bool {
        self.mode == Mode::Measure && self.workloads_running == 0
    }

    /// The end of the run: the last link sample, every replica stopped, the output; the
    /// effects come back for their own teardown.
    pub fn finish(mut self) -> (Result<RunOutput, RunnerError>, E) {
        self.fx.stop_all(FINAL_GRACE);
        if let Some(e) = self.workload_error.take() {
            return (Err(e), self.fx);
        }
        if let Err(e) = self.sample_links() {
            return (Err(e), self.fx);
        }
        let end = self.now.max(Instant::ZERO + self.s.duration);
        let (events, outcome) = self.driver.finish(end);
        let out = RunOutput {
            metrics: self.recorder.finish(end),
            events,
            seeds: self.seed_log,
            rollout_outcome: outcome,
            links: self.links,
            events_processed: 0,
        };
        (Ok(out), self.fx)
    }

    // ----- commands --------------------------------------------------------------------------

    fn after_event(&mut self) -> Result<(), RunnerError> {
        for c in self.driver.poll(self.now, &mut self.recorder) {
            self.execute(c)?;
        }
        self.tell_rollout_client();
        Ok(())
    }

    /// Carries out what the driver decided, in real time.
    fn execute(&mut self, c: Command) -> Result<(), RunnerError> {
        let now = self.now;
        c.carry_out(now, self)
    }

    fn set_state(&mut self, id: ReplicaId, state: ReplicaState) -> Result<(), RunnerError> {
        match self
            .driver
            .set_state(self.now, id, state, &mut self.recorder)
        {
            Some(steer) => self.execute(steer),
            None => Ok(()),
        }
    }

    /// Creates replica `id` of the driver's books.
    fn realise(&mut self, id: ReplicaId) -> Result<(), RunnerError> {
        debug_assert_eq!(id as usize, self.replicas.len());
        let (svc, version) = (self.driver.replica(id).svc, self.driver.replica(id).version);
        let service = &self.s.services[svc];
        let seed = self.seed(format!("replica/{}/{id}", service.name));
        let spec = ReplicaSpec {
            id,
            svc,
            version,
            seed,
        };
        self.fx.start(&spec)?;
        self.replicas.push(Tracked {
            spec,
            probes: ProbeCounter::new(&service.readiness),
            attached: true,
        });
        Ok(())
    }

    fn install_steering(&mut self, svc: usize, snapshot: usize) -> Result<(), RunnerError> {
        let Some(table) = self
            .driver
            .steering_table(self.now, svc, snapshot, &mut self.recorder)
        else {
            return Ok(());
        };
        self.fx.steer(svc, &table)?;
        self.installed[svc] = table.ranges().iter().filter_map(|r| r.replica).collect();
        self.release_gone(svc)
    }

    /// Releases the gone replicas of `svc` that no installed or pending table names any more.
    fn release_gone(&mut self, svc: usize) -> Result<(), RunnerError> {
        let mut referenced = self.installed[svc].clone();
        referenced.extend(self.driver.pending_endpoints(svc));
        for id in 0..self.replicas.len() as ReplicaId {
            let r = &self.replicas[id as usize];
            let gone = self.driver.replica(id).state == ReplicaState::Gone;
            if r.spec.svc == svc && gone && r.attached && !referenced.contains(&id) {
                self.fx.release(id)?;
                self.replicas[id as usize].attached = false;
            }
        }
        Ok(())
    }

    // ----- timers ----------------------------------------------------------------------------

    fn handle_timer(&mut self, t: Timer) -> Result<(), RunnerError> {
        match t {
            Timer::Due(Due::RolloutPoll) => self.driver.wake(),
            Timer::Probe { replica } => {
                if self.driver.replica(replica).state == ReplicaState::Gone {
                    return Ok(());
                }
                self.fx.probe(replica);
                let svc = self.replicas[replica as usize].spec.svc;
                let next = self.now + self.s.services[svc].readiness.period;
                self.timers.push(next, Timer::Probe { replica });
            }
            Timer::Due(Due::Sigterm(replica)) => {
                if self.fx.running(replica) {
                    self.fx.signal(replica, Signal::Term);
                }
            }
            Timer::Due(Due::Sigkill(replica)) => {
                if self.fx.running(replica) {
                    self.driver.log(
                        self.now,
                        "replica",
                        "sigkill",
                        format!("replica {replica} killed after its grace period"),
                    );
                    self.fx.signal(replica, Signal::Kill);
                }
            }
            Timer::Due(Due::Steer { svc, snapshot }) => {
                self.steer(svc as usize, snapshot as usize)?
            }
            Timer::Due(Due::Event { index, undo }) => {
                let fx = &self.fx;
                let commands = self
                    .driver
                    .scenario_event(self.now, index as usize, undo, |id| fx.running(id));
                for c in commands {
                    self.execute(c)?;
                }
            }
            Timer::SampleLinks => {
                self.sample_links()?;
                let next = self.now + self.s.window;
                if next <= Instant::ZERO + self.s.duration {
                    self.timers.push(next, Timer::SampleLinks);
                }
            }
            Timer::Reap => {
                self.reap()?;
                self.timers.push(self.now + REAP_EVERY, Timer::Reap);
            }
        }
        Ok(())
    }

    /// Collects exited servers: a draining replica is then Gone; any other crashed, and its
    /// probes will notice.
    fn reap(&mut self) -> Result<(), RunnerError> {
        for id in self.fx.reap()? {
            if self.driver.replica(id).state == ReplicaState::Draining {
                self.set_state(id, ReplicaState::Gone)?;
                self.release_gone(self.replicas[id as usize].spec.svc)?;
            } else {
                let log = self
                    .fx
                    .log_path(id)
                    .map_or(String::new(), |p| format!("; see {}", p.display()));
                self.driver.log(
                    self.now,
                    "replica",
                    "exited",
                    format!("replica {id} exited unexpectedly{log}"),
                );
            }
        }
        Ok(())
    }

    fn sample_links(&mut self) -> Result<(), RunnerError> {
        let rows = self.fx.link_counters(self.now)?;
        self.links.extend(rows);
        Ok(())
    }

    /// Lab mode: sends the rollout client what the driver logged since (`events.jsonl` lines),
    /// and at the end `{"outcome": "promoted"}` or `{"outcome": "rolled-back", "reason": …}`.
    fn tell_rollout_client(&mut self) {
        let Some((reply, seen)) = &mut self.rollout_reply else {
            return;
        };
        let events = self.driver.events();
        let mut gone = false;
        for e in &events[*seen..] {
            gone |= reply.send(e.to_jsonl()).is_err();
        }
        *seen = events.len();
        let outcome = match self.driver.rollout_status() {
            Some((Phase::After, Some(Outcome::Promoted))) => {
                Some(serde_json::json!({ "outcome": "promoted" }))
            }
            Some((Phase::After, Some(Outcome::Aborted { reason }))) => {
                Some(serde_json::json!({ "outcome": "rolled-back", "reason": reason }))
            }
            _ => None,
        };
        if let Some(o) = &outcome {
            let _ = reply.send(o.to_string());
        }
        if outcome.is_some() || gone {
            self.rollout_reply = None;
        }
    }
}

/// The runner carries commands out through the effects, in real time.
impl<E: Effects> Carrier for Runner<'_, E> {
    type Error = RunnerError;
    fn schedule(&mut self, at: Instant, due: Due) {
        self.timers.push(at, Timer::Due(due));
    }
    /// Starts it and schedules its first probe (`initial_delay`, at least one `period`).
    fn start_replica(&mut self, id: ReplicaId) -> Result<(), RunnerError> {
        self.realise(id)?;
        let readiness = self.s.services[self.driver.replica(id).svc].readiness;
        let first = self.now + readiness.initial_delay.max(readiness.period);
        self.timers.push(first, Timer::Probe { replica: id });
        Ok(())
    }
    fn steer(&mut self, svc: usize, snapshot: usize) -> Result<(), RunnerError> {
        self.install_steering(svc, snapshot)
    }
    fn set_link_up(&mut self, link: usize, up: bool) -> Result<(), RunnerError> {
        Ok(self.fx.set_link_up(link, up)?)
    }
    fn set_link_params(&mut self, link: usize, params: LinkParams) -> Result<(), RunnerError> {
        Ok(self.fx.set_link_params(link, &params)?)
    }
    fn restart_replica(&mut self, id: ReplicaId) -> Result<(), RunnerError> {
        let spec = self.replicas[id as usize].spec.clone();
        Ok(self.fx.restart(&spec)?)
    }
}

/// Runs `runner` in real time: set-up, time zero [`START_LEAD`] later, then timers and the
/// reports from `inbox` until it is done (a measured run) or its inbox closes. The caller
/// tears down what the effects made, also when this fails.
pub fn run<'s, E: Effects>(
    mut runner: Runner<'s, E>,
    inbox: &Receiver<Report>,
) -> (Result<RunOutput, RunnerError>, E) {
    let result = drive(&mut runner, inbox);
    let (out, fx) = runner.finish();
    (result.and(out), fx)
}

fn drive<E: Effects>(
    runner: &mut Runner<'_, E>,
    inbox: &Receiver<Report>,
) -> Result<(), RunnerError> {
    runner.set_up()?;
    // Time zero: the generators' pools connect during the lead.
    let clock = Clock::with_origin_ns(Clock::start_now().origin_ns() + START_LEAD.as_nanos());
    runner.begin(clock.origin_ns())?;
    while !runner.done() {
        runner.advance(clock.now())?;
        let wait = runner
            .next_deadline()
            .saturating_since(clock.now())
            .min(REAP_EVERY);
        match inbox.recv_timeout(wait.into()) {
            Ok(r) => {
                runner.report(clock.now(), r)?;
                // Take what is queued in one go, without sleeping in between.
                while let Ok(r) = inbox.try_recv() {
                    runner.report(clock.now(), r)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::effects::Replicas;
    use crate::backend::fake::{Call, Recording};
    use crate::scenario::{parse_experiment, LoadOptions};

    const BASE: &str = r#"
[scenario]
name = "runner"
seed = 1
duration = "5s"
window = "100ms"

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
readiness = { initial_delay = "100ms", period = "100ms", failure_threshold = 2 }
termination = { pre_stop = "200ms", grace = "1s" }

[service.web.versions.v1]
service_time = "const(1ms)"
startup = "0s"

[service.web.versions.v2]
service_time = "const(1ms)"
startup = "0s"

[[link]]
between = ["client", "gw"]

[[workload]]
name = "users"
from = "client"
to = "web"
rate = "10/s"

[rollout]
service = "web"
to = "v2"
at = "1s"
strategy = "rolling"
"#;

    fn scenario(extra: &str) -> Scenario {
        let text = format!("{BASE}{extra}");
        let exp = parse_experiment(&text, "runner.toml", None, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        exp.runs[0].scenario.clone()
    }

    /// A runner of [`BASE`] with `extra`, set up and at time zero, its calls so far taken.
    /// (The scenario is leaked: a test's runner lives as long as the test.)
    fn at_zero(extra: &str, fx: Recording) -> Runner<'static, Recording> {
        let s: &'static Scenario = Box::leak(Box::new(scenario(extra)));
        let mut r = Runner::new(s, fx, Mode::Measure);
        r.set_up().unwrap();
        r.begin(0).unwrap();
        r.effects_mut().take();
        r
    }

    /// Runs the runner in explicit time up to `until` (ms), answering every probe with whether
    /// the fake's server runs, and returns every other call with the time it was made at (ms).
    fn play(
        r: &mut Runner<'_, Recording>,
        until: u64,
        mut at: impl FnMut(u64, &mut Recording),
    ) -> Vec<(u64, Call)> {
        let mut log = Vec::new();
        let until = Instant::ZERO + Duration::from_millis(until);
        while r.next_deadline() <= until {
            let now = r.next_deadline();
            let ms = now.saturating_since(Instant::ZERO).as_nanos() / 1_000_000;
            at(ms, r.effects_mut());
            r.advance(now).unwrap();
            for c in r.effects_mut().take() {
                match c {
                    Call::Probe(id) => {
                        let ok = r.effects().running(id);
                        r.report(now, Report::Probe { replica: id, ok }).unwrap();
                        log.extend(r.effects_mut().take().into_iter().map(|c| (ms, c)));
                    }
                    c => log.push((ms, c)),
                }
            }
        }
        log
    }

    #[test]
    fn rolling_update_issues_starts_steering_and_drains_in_order() {
        let s = scenario("[rollout.rolling]\nmax_surge = 1\nmax_unavailable = 0\n");
        let fx = Recording::new();
        let mut r = Runner::new(&s, fx, Mode::Measure);
        r.set_up().unwrap();
        r.begin(0).unwrap();
        let setup = r.effects_mut().take();
        let spec = |id, version, seed| {
            Call::Start(ReplicaSpec {
                id,
                svc: 0,
                version,
                seed,
            })
        };
        let seeds = SeedTree::new(1);
        let seed = |id: u32| seeds.seed_for(&format!("replica/web/{id}"));
        assert_eq!(
            setup,
            [
                spec(0, 0, seed(0)),
                spec(1, 0, seed(1)),
                Call::Steer(0, vec![0]),
                Call::Steer(0, vec![0, 1]),
                Call::Workload(0),
            ]
        );
        let log = play(&mut r, 3000, |_, _| {});
        // Surge 1: a new replica starts at the rollout's time; when it is ready (its first
        // probe, 100 ms later) it joins steering, an old one leaves steering (the newest first,
        // a ReplicaSet's deletion order) and the next new one starts; each old one gets SIGTERM
        // pre_stop (200 ms) after leaving steering, is gone at the reap that sees it exit, and
        // is released then, since steering no longer names it.
        assert_eq!(
            log,
            [
                (1000, spec(2, 1, seed(2))),
                (1100, Call::Steer(0, vec![0, 1, 2])),
                (1100, Call::Steer(0, vec![0, 2])),
                (1100, spec(3, 1, seed(3))),
                (1200, Call::Steer(0, vec![0, 2, 3])),
                (1200, Call::Steer(0, vec![2, 3])),
                (1300, Call::Signal(1, Signal::Term)),
                (1300, Call::Release(1)),
                (1400, Call::Signal(0, Signal::Term)),
                (1400, Call::Release(0)),
            ]
        );
        assert_eq!(
            r.driver().rollout_status().map(|(p, _)| p),
            Some(Phase::After)
        );
    }

    #[test]
    fn a_server_that_ignores_sigterm_gets_sigkill_after_its_grace() {
        let mut fx = Recording::new();
        fx.exit_on_term = false;
        let mut r = at_zero(
            "[rollout.rolling]\nmax_surge = 0\nmax_unavailable = 1\n",
            fx,
        );
        let log = play(&mut r, 1250, |_, _| {});
        let of_1: Vec<_> = log
            .iter()
            .filter(|(_, c)| matches!(c, Call::Signal(1, _) | Call::Release(1)))
            .cloned()
            .collect();
        // Unavailable 1, no surge: replica 1 (the newest old one) leaves steering at once,
        // SIGTERM after pre_stop, SIGKILL a grace (1 s) later, then it is gone and released.
        assert_eq!(log[0], (1000, Call::Steer(0, vec![0])));
        assert_eq!(of_1, [(1200, Call::Signal(1, Signal::Term))]);
        let log = play(&mut r, 2300, |_, _| {});
        assert!(
            log.contains(&(2200, Call::Signal(1, Signal::Kill))),
            "{log:?}"
        );
        assert!(log.contains(&(2200, Call::Release(1))), "{log:?}");
        assert!(r
            .events()
            .iter()
            .any(|e| e.kind == "sigkill" && e.detail.contains("replica 1")));
    }

    #[test]
    fn a_replica_that_dies_mid_drain_is_gone_and_gets_no_signal() {
        let mut fx = Recording::new();
        fx.exit_on_term = false;
        let mut r = at_zero(
            "[rollout.rolling]\nmax_surge = 0\nmax_unavailable = 1\n",
            fx,
        );
        // Replica 1 leaves steering at 1 s; its server dies at 1.1 s, before its SIGTERM.
        let log = play(&mut r, 3000, |ms, fx| {
            if ms == 1100 {
                fx.exit(1);
            }
        });
        assert!(log.contains(&(1100, Call::Release(1))), "{log:?}");
        assert!(
            !log.iter().any(|(_, c)| matches!(c, Call::Signal(1, _))),
            "{log:?}"
        );
        assert_eq!(r.driver().replica(1).state, ReplicaState::Gone);
        assert!(!r.events().iter().any(|e| e.kind == "exited"));
    }

    #[test]
    fn late_steering_keeps_a_gone_replica_until_no_table_names_it() {
        let s = scenario("propagation_delay = \"500ms\"\n[rollout.rolling]\nmax_surge = 1\nmax_unavailable = 0\n");
        let fx = Recording::new();
        let mut r = Runner::new(&s, fx, Mode::Measure);
        r.set_up().unwrap();
        r.begin(0).unwrap();
        // The starting replicas' steering, too, is learned late.
        assert!(!r
            .effects_mut()
            .take()
            .iter()
            .any(|c| matches!(c, Call::Steer(..))));
        let log = play(&mut r, 1650, |_, _| {});
        let at = |c: &Call| log.iter().find(|(_, x)| x == c).map(|(t, _)| *t);
        assert_eq!(at(&Call::Steer(0, vec![0, 1])), Some(500));
        // Replica 2 is ready at 1.1 s and replica 1 leaves steering then, but steering learns
        // both at 1.6 s. Replica 1 exits on SIGTERM at 1.3 s; it is released only once the
        // table that drops it is installed.
        assert_eq!(at(&Call::Signal(1, Signal::Term)), Some(1300));
        assert_eq!(at(&Call::Steer(0, vec![0, 1, 2])), Some(1600));
        assert_eq!(at(&Call::Steer(0, vec![0, 2])), Some(1600));
        assert_eq!(at(&Call::Release(1)), Some(1600));
        let order: Vec<&Call> = log
            .iter()
            .filter(|(t, _)| *t == 1600)
            .map(|(_, c)| c)
            .collect();
        let pos = |c: &Call| order.iter().position(|x| *x == c);
        assert!(pos(&Call::Steer(0, vec![0, 2])) < pos(&Call::Release(1)));
    }

    #[test]
    fn a_killed_replica_restarts_in_place_and_stays_ready_through_a_short_outage() {
        let events = r#"
[[event]]
at = "500ms"
action = "kill-replica"
service = "web"
count = 1
"#;
        let text = BASE.split("[rollout]").next().unwrap().to_string() + events;
        let exp = parse_experiment(&text, "kill.toml", None, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let s = exp.runs[0].scenario.clone();
        let mut r = Runner::new(&s, Recording::new(), Mode::Measure);
        r.set_up().unwrap();
        r.begin(0).unwrap();
        r.effects_mut().take();
        let log = play(&mut r, 2000, |_, _| {});
        assert_eq!(log, [(500, Call::Restart(0))]);
        assert_eq!(r.driver().replica(0).state, ReplicaState::Ready);
        assert!(r
            .events()
            .iter()
            .any(|e| e.kind == "kill-replica" && e.detail == "replica 0 killed; restarting"));
    }
}
