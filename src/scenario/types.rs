//! The validated scenario: what the rest of sdnbed consumes.
//!
//! These types can only be built by `scenario::load`/`scenario::parse` (through validation), so
//! code after that point never re-checks them: every name a link, policy, workload, rollout or
//! event refers to exists, units are parsed, canary weights increase, times lie inside the run.
//! Names are kept as `String`s and looked up by the consumer (`Scenario::service`, …); the
//! lookups cannot fail for names taken from the scenario itself.

use std::collections::BTreeMap;

use crate::model::link::LinkParams;
use crate::model::route::{Graph, Vertex};
use crate::model::time::Duration;
use crate::scenario::units::{ByteSize, RequestRate};

// The parameter types the models consume live in `model/`; the scenario builds them.
pub use crate::model::analysis::{Analysis, Judge};
pub use crate::model::arrivals::{Arrivals, RateSchedule};
pub use crate::model::rollout::{
    BlueGreenParams, CanaryParams, CanaryStep, RollingParams, Rollout, Steering, StrategyKind,
};
pub use crate::model::service::{Readiness, Service, Termination, Version};

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub duration: Duration,
    pub warmup: Duration,
    pub window: Duration,
    pub backend: BackendKind,
    pub nodes: Vec<Node>,
    /// In file order.
    pub services: Vec<Service>,
    pub links: Vec<Link>,
    pub policies: Vec<Policy>,
    pub workloads: Vec<Workload>,
    pub rollout: Option<Rollout>,
    /// Sorted by `at` (stable: equal times keep file order).
    pub events: Vec<Event>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    Sim,
    Netns,
    Docker,
    Kube,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Sim => "sim",
            BackendKind::Netns => "netns",
            BackendKind::Docker => "docker",
            BackendKind::Kube => "kube",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Client,
    Gateway,
    Host,
}

/// One end of a `[[link]]`: a node, or every replica of a service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkEnd {
    Node(String),
    Service(String),
}

impl LinkEnd {
    pub fn name(&self) -> &str {
        match self {
            LinkEnd::Node(n) | LinkEnd::Service(n) => n,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EmulatorChoice {
    /// Kernel netem where present, the user-space emulator otherwise.
    #[default]
    Auto,
    Kernel,
    Userspace,
}

#[derive(Clone, Debug)]
pub struct Link {
    /// As written; a `Service` end means one such link per replica.
    pub between: [LinkEnd; 2],
    /// The same parameters apply in both directions, each direction with its own state and seed.
    pub params: LinkParams,
    pub emulator: EmulatorChoice,
    /// Write a pcap of what entered and left the link (emulated backends).
    pub capture: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// Node or service names.
    pub from: Vec<String>,
    /// A node or service name.
    pub to: String,
    /// Empty means every port.
    pub ports: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Through the service's virtual IP on its gateway.
    Service(String),
    Node(String),
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    /// A node of kind `client` or `host`.
    pub from: String,
    pub to: Target,
    pub rate: RateSchedule,
    pub arrivals: Arrivals,
    /// Keep-alive pool size; 0 = a new connection for every request.
    pub connections: u32,
    /// 0 = unlimited.
    pub max_requests_per_connection: u32,
    pub request: ByteSize,
    pub response: ByteSize,
    pub timeout: Duration,
}

/// A pair of node or service names as written in `[[link]]`, in either order.
pub type LinkRef = [String; 2];

/// Optional replacements for a link's parameters (`set-link`).
#[derive(Clone, Debug, Default)]
pub struct LinkPatch {
    pub bandwidth: Option<Option<crate::scenario::units::BitRate>>,
    pub delay: Option<Duration>,
    pub jitter: Option<Option<crate::model::link::Jitter>>,
    pub loss: Option<crate::model::link::Loss>,
    pub queue: Option<crate::scenario::units::QueueLimit>,
}

impl LinkPatch {
    /// `base` with the patched parameters replaced (what a `set-link` event does).
    pub fn apply(&self, base: &LinkParams) -> LinkParams {
        let mut p = base.clone();
        if let Some(b) = self.bandwidth {
            p.bandwidth = b;
        }
        if let Some(d) = self.delay {
            p.delay = d;
        }
        if let Some(j) = self.jitter {
            p.jitter = j;
        }
        if let Some(l) = self.loss {
            p.loss = l;
        }
        if let Some(q) = self.queue {
            p.queue = Some(q);
        }
        p
    }
}

#[derive(Clone, Debug)]
pub enum EventAction {
    LinkDown {
        link: LinkRef,
    },
    LinkUp {
        link: LinkRef,
    },
    SetLink {
        link: LinkRef,
        patch: LinkPatch,
    },
    /// Kills (SIGKILL) `count` replicas of `service`, the oldest first, of `version` if given.
    KillReplica {
        service: String,
        version: Option<String>,
        count: u32,
    },
    SetRate {
        workload: String,
        rate: RequestRate,
    },
}

impl EventAction {
    pub fn name(&self) -> &'static str {
        match self {
            EventAction::LinkDown { .. } => "link-down",
            EventAction::LinkUp { .. } => "link-up",
            EventAction::SetLink { .. } => "set-link",
            EventAction::KillReplica { .. } => "kill-replica",
            EventAction::SetRate { .. } => "set-rate",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Event {
    pub at: Duration,
    pub action: EventAction,
    /// Undo after this long (link-down → link-up, set-link/set-rate → previous values).
    pub duration: Option<Duration>,
}

/// One run of an experiment: a fully resolved scenario plus where it sits in the sweep.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// 0-based position in the experiment, in expansion order.
    pub index: usize,
    /// Swept keys and the values of this run, as written (`"rollout.strategy" = "canary"`).
    pub params: BTreeMap<String, String>,
    /// 0-based repetition; the run's seed is the scenario seed plus this.
    pub repetition: u32,
    pub scenario: Scenario,
    /// The scenario file with this run's overrides applied: a run directory stores it, and it
    /// parses back to the same `Scenario`.
    pub resolved_toml: String,
}

/// A scenario file expanded over its `[sweep]` (one run when there is none).
#[derive(Clone, Debug)]
pub struct Experiment {
    pub name: String,
    /// The swept keys, in file order (the columns of `summary.csv`).
    pub swept_keys: Vec<String>,
    pub repetitions: u32,
    pub runs: Vec<RunSpec>,
}

impl Scenario {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
    pub fn workload(&self, name: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| w.name == name)
    }
}

impl Scenario {
    /// The topology as a routing graph ([`crate::model::route`]): vertices are the nodes and the
    /// services by their index here, edges the `[[link]]`s in file order, each from its first
    /// `between` end to its second.
    pub fn graph(&self) -> Graph {
        Graph::new(
            self.nodes.len(),
            self.services.len(),
            self.links
                .iter()
                .map(|l| [self.vertex(&l.between[0]), self.vertex(&l.between[1])]),
        )
    }
    /// The vertex of a link end in [`Scenario::graph`]. Panics on a name the scenario does not
    /// have (names taken from the scenario itself are always there).
    pub fn vertex(&self, end: &LinkEnd) -> Vertex {
        match end {
            LinkEnd::Node(n) => self.node_vertex(n),
            LinkEnd::Service(n) => Vertex::Service(
                self.services
                    .iter()
                    .position(|s| s.name == *n)
                    .expect("validated"),
            ),
        }
    }
    /// The vertex of node `name` in [`Scenario::graph`] (panics likewise).
    pub fn node_vertex(&self, name: &str) -> Vertex {
        Vertex::Node(
            self.nodes
                .iter()
                .position(|x| x.name == name)
                .expect("validated"),
        )
    }
}

impl Scenario {
    /// The rate schedule of workload `wl` with its `set-rate` events folded in: from an event's
    /// `at` the event's rate holds (until `at + duration` when it has one, after which the
    /// schedule's own rate is back). For generators that take their whole schedule up front.
    pub fn effective_rate(&self, wl: &Workload) -> RateSchedule {
        let overrides: Vec<(Duration, Option<Duration>, RequestRate)> = self
            .events
            .iter()
            .filter_map(|e| match &e.action {
                EventAction::SetRate { workload, rate } if *workload == wl.name => {
                    Some((e.at, e.duration.map(|d| e.at + d), *rate))
                }
                _ => None,
            })
            .collect();
        let mut points: Vec<Duration> = wl.rate.steps.iter().map(|(t, _)| *t).collect();
        for (at, until, _) in &overrides {
            points.push(*at);
            points.extend(until);
        }
        points.sort();
        points.dedup();
        let mut steps: Vec<(Duration, RequestRate)> = Vec::new();
        for t in points {
            // The latest event in force at t wins (events are sorted by time).
            let rate = overrides
                .iter()
                .rev()
                .find(|(at, until, _)| *at <= t && until.is_none_or(|u| t < u))
                .map_or_else(|| wl.rate.rate_at(t), |(_, _, r)| *r);
            if steps.last().is_none_or(|(_, r)| *r != rate) {
                steps.push((t, rate));
            }
        }
        RateSchedule { steps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_rate_events_fold_into_the_schedule() {
        let r = |v: f64| RequestRate(v);
        let s = |v: u64| Duration::from_secs(v);
        let wl = Workload {
            name: "users".into(),
            from: "client".into(),
            to: Target::Node("srv".into()),
            rate: RateSchedule {
                steps: vec![(s(0), r(100.0)), (s(30), r(200.0))],
            },
            arrivals: Arrivals::Constant,
            connections: 1,
            max_requests_per_connection: 0,
            request: ByteSize(0),
            response: ByteSize(0),
            timeout: s(1),
        };
        let ev = |at, rate, d: Option<u64>| Event {
            at: s(at),
            action: EventAction::SetRate {
                workload: "users".into(),
                rate: r(rate),
            },
            duration: d.map(s),
        };
        let sc = Scenario {
            name: "x".into(),
            description: String::new(),
            seed: 0,
            duration: s(60),
            warmup: s(0),
            window: s(1),
            backend: BackendKind::Sim,
            nodes: vec![],
            services: vec![],
            links: vec![],
            policies: vec![],
            workloads: vec![],
            rollout: None,
            events: vec![ev(10, 500.0, Some(5)), ev(25, 50.0, Some(10))],
        };
        let got = sc.effective_rate(&wl).steps;
        let want = vec![
            (s(0), r(100.0)),
            (s(10), r(500.0)),
            (s(15), r(100.0)),
            (s(25), r(50.0)),
            (s(35), r(200.0)),
        ];
        assert_eq!(got, want);
    }
}
