//! The service model: how one replica serves requests and how its lifecycle runs in time.
//!
//! - [`WorkerPool`]: `workers` requests are served concurrently; more wait in a FIFO queue with
//!   no bound (a replica's accept queue; clients time out long before memory matters).
//! - [`Probe`]: when a readiness probe first sees a started replica, and when a dead one is
//!   noticed (in virtual time); [`ProbeCounter`] the same verdicts from real probes' answers.
//!   Probes run every `period` from `initial_delay` after the process starts; one
//!   success marks ready, `failure_threshold` consecutive failures mark not ready (Kubernetes
//!   semantics, success threshold 1).
//! - Termination follows Kubernetes: removal from steering, `pre_stop`, then SIGTERM (stop
//!   accepting, finish in-flight and queued work, close kept-alive connections), SIGKILL after
//!   `grace`.
//!
//! [`Service`] and [`Version`] are a service's parameters as the scenario declares them (built
//! and validated by `scenario`, re-exported as `scenario::Service`).

use std::collections::VecDeque;

use crate::model::dist::Dist;
use crate::model::rollout::ReplicaState;
use crate::model::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub replicas: u32,
    pub port: u16,
    /// A node of kind `gateway`.
    pub gateway: String,
    /// The version running at start; a key of `versions`.
    pub version: String,
    /// Concurrent requests one replica serves; more wait in its FIFO queue.
    pub workers: u32,
    pub readiness: Readiness,
    pub termination: Termination,
    /// CPU limit in cores (docker, kube); the simulator ignores it.
    pub cpu: Option<f64>,
    /// Memory limit in bytes (docker, kube); the simulator ignores it.
    pub memory: Option<u64>,
    /// Keyed by version name, in file order.
    pub versions: Vec<Version>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Readiness {
    pub initial_delay: Duration,
    pub period: Duration,
    /// Consecutive failed probes before a ready replica is marked not ready.
    pub failure_threshold: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Termination {
    /// Wait after removal from steering before SIGTERM.
    pub pre_stop: Duration,
    /// After SIGTERM, time allowed to finish in-flight and queued requests before SIGKILL.
    pub grace: Duration,
}

#[derive(Clone, Debug)]
pub struct Version {
    pub name: String,
    pub service_time: Dist,
    /// Process start → listening.
    pub startup: Duration,
    /// Share of requests answered 500, in [0, 1].
    pub error_rate: f64,
    /// docker/kube: a user image instead of the built-in server.
    pub image: Option<String>,
    /// docker: a directory with a Dockerfile, built into this version's image (resolved
    /// against the scenario file's directory). Never together with `image`.
    pub build: Option<std::path::PathBuf>,
    pub command: Option<Vec<String>>,
    /// docker/kube: environment of the version's container, in file order.
    pub env: Vec<(String, String)>,
    /// The HTTP path readiness probes ask for (`/ready` on the built-in server).
    pub ready_path: Option<String>,
}

impl Version {
    /// Whether the version runs a researcher's image (given or built) instead of sdnbed's own
    /// server.
    pub fn is_user_image(&self) -> bool {
        self.image.is_some() || self.build.is_some()
    }

    /// The path readiness probes ask for: the scenario's, else `/ready` on the built-in server
    /// and `/` on a researcher's image.
    pub fn readiness_path(&self) -> &str {
        match &self.ready_path {
            Some(p) => p,
            None if self.is_user_image() => "/",
            None => "/ready",
        }
    }
}

impl Service {
    pub fn version(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.name == name)
    }
}

/// Concurrent workers with a FIFO queue behind them. It knows which requests are in service,
/// so that a killed process can report everything it held.
#[derive(Clone, Debug)]
pub struct WorkerPool<T> {
    workers: usize,
    serving: Vec<T>,
    queue: VecDeque<T>,
}

impl<T: PartialEq> WorkerPool<T> {
    pub fn new(workers: u32) -> Self {
        WorkerPool {
            workers: workers.max(1) as usize,
            serving: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    /// A request arrives: true if a worker takes it now, false if it waits in the queue.
    pub fn arrive(&mut self, item: T) -> bool {
        if self.serving.len() < self.workers {
            self.serving.push(item);
            true
        } else {
            self.queue.push_back(item);
            false
        }
    }

    /// `done` finished: returns the next queued request, which the freed worker now serves.
    pub fn complete(&mut self, done: &T) -> Option<T>
    where
        T: Clone,
    {
        if let Some(i) = self.serving.iter().position(|x| x == done) {
            self.serving.swap_remove(i);
        }
        let next = self.queue.pop_front()?;
        self.serving.push(next.clone());
        Some(next)
    }

    pub fn in_service(&self) -> usize {
        self.serving.len()
    }
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
    pub fn is_idle(&self) -> bool {
        self.serving.is_empty() && self.queue.is_empty()
    }

    /// Empties the pool (the process died): the requests in service, then the queued ones.
    pub fn kill(&mut self) -> Vec<T> {
        let mut all: Vec<T> = self.serving.drain(..).collect();
        all.extend(self.queue.drain(..));
        all
    }
}

/// Readiness-probe timing for one replica process.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub readiness: Readiness,
}

impl Probe {
    /// The probe times of a process started at `started` are `started + initial_delay + k·period`.
    fn probe_at(&self, started: Instant, k: u64) -> Instant {
        started + self.readiness.initial_delay + self.readiness.period.saturating_mul(k)
    }

    /// The first probe at or after `t` of a process started at `started`.
    fn first_probe_from(&self, started: Instant, t: Instant) -> (u64, Instant) {
        let first = self.probe_at(started, 0);
        if t <= first {
            return (0, first);
        }
        let period = self.readiness.period.as_nanos().max(1);
        let k = (t.as_nanos() - first.as_nanos()).div_ceil(period);
        (k, self.probe_at(started, k))
    }

    /// When a process started at `started` that listens from `listening` is first seen ready.
    pub fn ready_at(&self, started: Instant, listening: Instant) -> Instant {
        self.first_probe_from(started, listening).1
    }

    /// A ready replica's process (started at `started`) stopped listening at `died` and listens
    /// again from `back` (`Instant::MAX`: never). Returns when it is marked not ready, if the
    /// probes fail `failure_threshold` times in a row before it is back.
    pub fn not_ready_at(&self, started: Instant, died: Instant, back: Instant) -> Option<Instant> {
        let (k, first_failed) = self.first_probe_from(started, died);
        let threshold = u64::from(self.readiness.failure_threshold.max(1));
        let decisive = self.probe_at(started, k + threshold - 1);
        (decisive < back).then_some(decisive.max(first_failed))
    }
}

/// The readiness verdicts of one replica's probes as they come in (the real backends' side of
/// [`Probe`]): one success marks a starting or not-ready replica ready; `failure_threshold`
/// consecutive failures mark a ready one not ready. Probes of a draining or gone replica
/// decide nothing.
#[derive(Clone, Copy, Debug)]
pub struct ProbeCounter {
    threshold: u32,
    failures: u32,
}

impl ProbeCounter {
    pub fn new(readiness: &Readiness) -> Self {
        ProbeCounter {
            threshold: readiness.failure_threshold.max(1),
            failures: 0,
        }
    }

    /// One probe answered `ok` while the replica was in `state`: the state it moves to, if any.
    pub fn observe(&mut self, state: ReplicaState, ok: bool) -> Option<ReplicaState> {
        let next = match (state, ok) {
            (ReplicaState::Starting | ReplicaState::NotReady, true) => Some(ReplicaState::Ready),
            (ReplicaState::Ready, false) => {
                self.failures += 1;
                (self.failures >= self.threshold).then_some(ReplicaState::NotReady)
            }
            _ => None,
        };
        if ok || next.is_some() {
            self.failures = 0;
        }
        next
    }
}

/// When the steps of draining a replica happen, from its removal from steering at `removed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainTimeline {
    pub sigterm: Instant,
    pub sigkill: Instant,
}

impl DrainTimeline {
    pub fn new(removed: Instant, pre_stop: Duration, grace: Duration) -> Self {
        let sigterm = removed + pre_stop;
        DrainTimeline {
            sigterm,
            sigkill: sigterm + grace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_counter_needs_threshold_consecutive_failures() {
        let r = Readiness {
            initial_delay: Duration::ZERO,
            period: Duration::from_millis(100),
            failure_threshold: 3,
        };
        let mut c = ProbeCounter::new(&r);
        use ReplicaState::*;
        assert_eq!(c.observe(Starting, false), None);
        assert_eq!(c.observe(Starting, true), Some(Ready));
        assert_eq!(c.observe(Ready, false), None);
        assert_eq!(c.observe(Ready, false), None);
        assert_eq!(c.observe(Ready, true), None, "a success resets the count");
        assert_eq!(c.observe(Ready, false), None);
        assert_eq!(c.observe(Ready, false), None);
        assert_eq!(c.observe(Ready, false), Some(NotReady));
        assert_eq!(c.observe(NotReady, false), None);
        assert_eq!(c.observe(NotReady, true), Some(Ready));
        assert_eq!(c.observe(Draining, false), None);
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
    fn at(v: u64) -> Instant {
        Instant::ZERO + ms(v)
    }

    #[test]
    fn pool_serves_fifo_beyond_workers() {
        let mut p = WorkerPool::new(2);
        assert!(p.arrive(1));
        assert!(p.arrive(2));
        assert!(!p.arrive(3));
        assert!(!p.arrive(4));
        assert_eq!(p.complete(&2), Some(3));
        assert_eq!(p.complete(&1), Some(4));
        assert_eq!(p.kill(), vec![3, 4]);
        assert!(p.is_idle());
        assert!(p.arrive(5));
        assert_eq!(p.complete(&5), None);
        assert!(p.is_idle());
    }

    #[test]
    fn readiness_waits_for_the_next_probe() {
        let probe = Probe {
            readiness: Readiness {
                initial_delay: ms(500),
                period: ms(250),
                failure_threshold: 3,
            },
        };
        // Listening before the first probe: ready at the first probe.
        assert_eq!(probe.ready_at(at(0), at(100)), at(500));
        // Listening at 1 s: probes at 500, 750, 1000 → ready at 1000.
        assert_eq!(probe.ready_at(at(0), at(1000)), at(1000));
        assert_eq!(probe.ready_at(at(0), at(1001)), at(1250));
        assert_eq!(probe.ready_at(at(10), at(1001)), at(1010));
    }

    #[test]
    fn failure_threshold_counts_consecutive_failed_probes() {
        let probe = Probe {
            readiness: Readiness {
                initial_delay: ms(0),
                period: ms(1000),
                failure_threshold: 3,
            },
        };
        // Dies at 2.5 s: probes at 3, 4, 5 s fail → not ready at 5 s.
        assert_eq!(
            probe.not_ready_at(at(0), at(2500), Instant::MAX),
            Some(at(5000))
        );
        // Back at 4.5 s: only two failures, never marked not ready.
        assert_eq!(probe.not_ready_at(at(0), at(2500), at(4500)), None);
    }

    #[test]
    fn drain_timeline() {
        let t = DrainTimeline::new(at(100), ms(1000), ms(10_000));
        assert_eq!(t.sigterm, at(1100));
        assert_eq!(t.sigkill, at(11_100));
    }
}
