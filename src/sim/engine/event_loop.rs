//! The run: events in (time, sequence) order, the driver's commands carried out in virtual time,
//! and the scenario's timed events.

use crate::driver::{Carrier, Command, Due};
use crate::model::link::LinkParams;
use crate::model::rollout::{Phase, ReplicaId, ReplicaState};
use crate::model::service::{Probe, WorkerPool};
use crate::model::time::{Duration, Instant};
use crate::output::RunOutput;

use super::{Ev, World};

impl<'s> World<'s> {
    pub(in crate::sim) fn run(mut self) -> RunOutput {
        self.start_initial_replicas();
        for wl in 0..self.wls.len() {
            self.queue
                .push(Instant::ZERO, Ev::Arrival { wl: wl as u16 });
        }
        if !self.links.is_empty() && !self.s.window.is_zero() {
            self.queue
                .push(Instant::ZERO + self.s.window, Ev::SampleLinks);
        }
        let timed: Vec<Command> = self.driver.timed_events().collect();
        for c in timed {
            self.execute(c);
        }
        self.recorder.phase_change(Instant::ZERO, Phase::Before);
        self.after_event();
        let max_timeout = self
            .wls
            .iter()
            .map(|w| w.timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        let horizon = self.end_of_arrivals + max_timeout + Duration::from_millis(1);
        let mut processed = 0u64;
        while let Some((at, ev)) = self.queue.pop() {
            if at > horizon {
                break;
            }
            self.now = at;
            processed += 1;
            self.handle(ev);
            self.after_event();
            if self.now >= self.end_of_arrivals && self.all_requests_done() {
                break;
            }
        }
        let end = self.end_of_arrivals.max(self.now);
        let (events, outcome) = self.driver.finish(end);
        RunOutput {
            metrics: self.recorder.finish(end),
            events,
            seeds: self.seed_log,
            rollout_outcome: outcome,
            links: self.link_rows,
            events_processed: processed,
        }
    }

    fn all_requests_done(&self) -> bool {
        self.wls.iter().all(|w| w.deadlines.is_empty())
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival { wl } => self.on_arrival(wl),
            Ev::Hop { msg } => self.cross(msg),
            Ev::Seg { seg } => self.seg_cross(seg, true),
            Ev::TcpTimers { slot } => {
                for (conn, gen, side) in self.timer_slots.remove(&slot).unwrap_or_default() {
                    self.on_tcp_timer(conn, gen, side as usize);
                }
            }
            Ev::ServiceDone {
                replica,
                incarnation,
                req,
                gen,
            } => self.on_service_done(replica, incarnation, req, gen),
            Ev::TimeoutCheck { wl } => self.on_timeout_check(wl),
            Ev::Listening {
                replica,
                incarnation,
            } => {
                let r = &mut self.replicas[replica as usize];
                if r.incarnation == incarnation && r.alive {
                    r.listening = true;
                }
            }
            Ev::Ready {
                replica,
                incarnation,
            } => {
                let r = &self.replicas[replica as usize];
                let state = self.driver.replica(replica).state;
                if r.incarnation == incarnation
                    && r.alive
                    && matches!(state, ReplicaState::Starting | ReplicaState::NotReady)
                {
                    self.set_state(replica, ReplicaState::Ready);
                }
            }
            Ev::NotReady {
                replica,
                incarnation,
            } => {
                let r = &self.replicas[replica as usize];
                if r.incarnation == incarnation
                    && self.driver.replica(replica).state == ReplicaState::Ready
                {
                    self.set_state(replica, ReplicaState::NotReady);
                }
            }
            Ev::Due(d) => self.on_due(d),
            Ev::SampleLinks => self.sample_links(),
        }
    }

    /// Runs the rollout strategy when something it watches changed or its deadline came.
    fn after_event(&mut self) {
        let commands = self.driver.poll(self.now, &mut self.recorder);
        for c in commands {
            self.execute(c);
        }
    }

    /// Carries out what the driver decided, in virtual time.
    pub(super) fn execute(&mut self, c: Command) {
        let now = self.now;
        match c.carry_out(now, self) {
            Ok(()) => {}
            Err(never) => match never {},
        }
    }

    /// A deadline of the driver's came.
    fn on_due(&mut self, d: Due) {
        match d {
            Due::RolloutPoll => self.driver.wake(),
            Due::Sigterm(replica) => self.on_sigterm(replica),
            Due::Sigkill(replica) => {
                if self.replicas[replica as usize].alive {
                    self.log(
                        "replica",
                        "sigkill",
                        format!("replica {replica} killed after its grace period"),
                    );
                    self.kill_process(replica);
                    self.set_state(replica, ReplicaState::Gone);
                }
            }
            Due::Steer { svc, snapshot } => self.apply_steering(svc as usize, snapshot as usize),
            Due::Event { index, undo } => self.on_scenario_event(index, undo),
        }
    }

    /// A timed event (or its undo) is due: the driver says what it changes.
    fn on_scenario_event(&mut self, index: u32, undo: bool) {
        let replicas = &self.replicas;
        let commands = self
            .driver
            .scenario_event(self.now, index as usize, undo, |id| {
                replicas[id as usize].alive
            });
        for c in commands {
            self.execute(c);
        }
    }

    /// kill-replica: SIGKILL, then the process restarts in place (as a container restarts in
    /// its pod); probes notice the outage only if it outlasts `failure_threshold` periods.
    fn kill_and_restart(&mut self, id: u32) {
        let (svc, started) = {
            let r = &self.replicas[id as usize];
            (r.svc, r.started)
        };
        let service = &self.s.services[svc as usize];
        let startup = service.versions[self.replicas[id as usize].version as usize].startup;
        self.kill_process(id);
        let probe = Probe {
            readiness: service.readiness,
        };
        let back = self.now + startup;
        let not_ready = probe.not_ready_at(started, self.now, back);
        let r = &mut self.replicas[id as usize];
        r.alive = true;
        r.accepting = true;
        r.started = self.now;
        r.pool = WorkerPool::new(service.workers);
        let incarnation = r.incarnation;
        self.queue.push(
            back,
            Ev::Listening {
                replica: id,
                incarnation,
            },
        );
        if let Some(t) = not_ready {
            self.queue.push(
                t,
                Ev::NotReady {
                    replica: id,
                    incarnation,
                },
            );
            let ready = probe.ready_at(self.now, back).max(t);
            self.queue.push(
                ready,
                Ev::Ready {
                    replica: id,
                    incarnation,
                },
            );
        }
    }
}

/// The simulator carries commands out in virtual time, and nothing it does can fail.
impl Carrier for World<'_> {
    type Error = std::convert::Infallible;
    fn schedule(&mut self, at: Instant, due: Due) {
        self.queue.push(at, Ev::Due(due));
    }
    fn start_replica(&mut self, id: ReplicaId) -> Result<(), Self::Error> {
        self.realise_replica(id, false);
        Ok(())
    }
    fn steer(&mut self, svc: usize, snapshot: usize) -> Result<(), Self::Error> {
        self.apply_steering(svc, snapshot);
        Ok(())
    }
    fn set_link_up(&mut self, link: usize, up: bool) -> Result<(), Self::Error> {
        for i in self.link_instances(link) {
            for d in &mut self.links[i as usize].dirs {
                d.set_up(up);
            }
        }
        Ok(())
    }
    /// Every instance of the link, and those of replicas started later.
    fn set_link_params(&mut self, link: usize, params: LinkParams) -> Result<(), Self::Error> {
        for i in self.link_instances(link) {
            for d in &mut self.links[i as usize].dirs {
                d.set_params(params.clone());
            }
        }
        self.link_params[link] = params;
        Ok(())
    }
    fn restart_replica(&mut self, id: ReplicaId) -> Result<(), Self::Error> {
        self.kill_and_restart(id);
        Ok(())
    }
}
