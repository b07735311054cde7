//! Rollout strategies as sans-IO state machines: they take time, replica views and request
//! observations, and emit [`Action`]s. They never read a clock; the discrete-event simulator and
//! the real-time backends drive the same [`RolloutDriver`].
//!
//! # Contract with the driver
//!
//! - Before `rollout.at` nothing happens: the driver has started `service.replicas` replicas of
//!   the starting version at time zero with [`Traffic::ByReadyReplicas`]. [`RolloutDriver::poll_at`]
//!   is `at` until the first poll at or after it; that poll begins the rollout ([`Phase::During`]).
//! - [`RolloutDriver::poll`] must be called at `poll_at()` and whenever a replica changes state.
//!   `replicas` lists every replica of the service ever started, Gone ones included: a `Start` is
//!   counted as pending until a new replica of its version appears there, a `Drain` removes its
//!   replica from every count at once. Polling twice with the same `now` and views emits nothing
//!   the second time, whether or not the driver has applied the first poll's actions yet.
//! - A poll does bounded work (each strategy iterates to a fixed point, at most one action per
//!   replica) and emits [`Action::SetTraffic`] only when the traffic changes.
//! - The rollout ends ([`Phase::After`], an [`Outcome`], `finished_at`) when exactly `replicas`
//!   replicas of one version are live and Ready (available, for rolling) and every replica of the
//!   other version is Gone: the new version when promoted, the old one when aborted and rolled
//!   back. `outcome()` is `Some` exactly in phase After; an abort is announced earlier by an
//!   `"abort"` note. Afterwards the driver does nothing more.
//! - During the rollout the strategies hold the versions they keep at their target counts, like
//!   a ReplicaSet: a replica that dies (a `kill-replica` event) is replaced. Exception: rolling
//!   does not replace old replicas, whose place goes to the new version.
//!
//! Every poll that starts or drains replicas adds a `"scale"` note summarising it. Other notes:
//! `"begin"`, `"traffic"` (after every `SetTraffic`, with the new shares), `"stage"` (a
//! strategy moved on), `"step"` (a canary weight took effect), `"switch"` (blue-green),
//! `"analysis"` (one judged interval), `"abort"`, and at the end `"promoted"` or
//! `"rolled-back"`.
//!
//! # Strategies
//!
//! **recreate** — drain every old replica; when all are Gone start `replicas` new ones; done
//! when all are Ready. Traffic `ByReadyReplicas` throughout, so there is an outage between the
//! last old replica leaving steering and the first new one being ready. As Kubernetes'
//! `Recreate`, which also waits for old pods to terminate.
//!
//! **rolling** — a Deployment's `RollingUpdate`. `max_surge` resolves rounding up,
//! `max_unavailable` rounding down; if both are zero, `max_unavailable` becomes 1 (as Kubernetes'
//! `ResolveFenceposts`). Live (not Draining/Gone) replicas never exceed `replicas + surge`; new
//! replicas are started within that bound; old replicas are drained first where not available
//! (Starting, NotReady, or Ready for less than `min_ready`) as far as
//! `total − minAvailable − unavailable new` allows, then available ones down to `minAvailable =
//! replicas − unavailable` available replicas, so the available count never drops below it when
//! it held at the start. Old replicas are drained in ReplicaSet deletion order. Departures from the
//! controller: counts come from live replicas rather than ReplicaSet `spec.replicas` (the same
//! thing once actions are executed); one poll iterates to a fixed point where the controller
//! needs several syncs; no `progressDeadlineSeconds`. Traffic `ByReadyReplicas`.
//!
//! **blue-green** — as Argo Rollouts' `blueGreen` with automatic promotion. At `at` new
//! connections are pinned to the old version (`Weights old=10000`), `replicas` new replicas start,
//! and when all are Ready the switch sets `Weights new=10000` (one atomic change). The old set is
//! kept for `scale_down_delay`, then drained. Both versions never receive new connections at the
//! same time. Traffic is always by version weights, also with `steering = "replicas"`: Argo
//! switches a Service's selector, which is a per-version choice too; the steering mode then only
//! sets how late the data plane learns of it (`propagation_delay`, applied by the driver). With
//! `preview_analysis` and an `analysis`, the new set is judged from the switch until the end of
//! `scale_down_delay`; more than `failure_limit` failed intervals switch back (`Weights
//! old=10000`) and drain the new set. Departure: Argo's `postPromotionAnalysis` holds the old set
//! until the analysis succeeds; here the delay bounds the analysis, so a delay shorter than one
//! interval judges nothing (the notes show no `"analysis"` then).
//!
//! **canary** — steps of weight in basis points, each followed by its pause (none: go on at
//! once; Argo would pause until a manual promotion, which sdnbed has not). A last step below
//! 100 % is followed by an implicit 100 % step. Canary replicas for weight `w`:
//! `max(1, ⌈w × replicas / 10000⌉)`, at most `replicas`.
//! - `steering = "sdn"` (Argo with traffic routing): new connections are pinned to stable at
//!   `at`; each step scales the canary up, waits until that many are Ready, then sets
//!   `Weights{stable: 10000 − w, canary: w}`. The stable set stays at `replicas` throughout. At
//!   100 %: canary at `replicas`, all Ready, `Weights canary=10000`, the step's pause, then the
//!   stable set is drained.
//! - `steering = "replicas"` (Argo without traffic routing): traffic stays `ByReadyReplicas` and
//!   the share is the replica ratio. Each step starts canary replicas, waits until they are Ready,
//!   then drains stable replicas down to `replicas − canary count`. Departure: Argo's
//!   `approximateWeightedCanaryStableReplicaCounts` picks counts closest to the weight and may keep
//!   extra replicas within `maxSurge`; we follow the simple formula and preserve capacity by
//!   shrinking the stable set only after the canary is Ready.
//! - Analysis (if configured) starts when the first step's weight takes effect and judges every
//!   `interval` (see [`crate::model::analysis`]) until the stable set starts draining at 100 %.
//!   Failed intervals count in total, as Argo's `failureLimit`; more than `failure_limit` abort:
//!   new connections back to stable at once (sdn), the canary drained, the stable set restored
//!   to `replicas` (replicas steering: restarted while the canary drains, as Argo scales the
//!   canary to zero on abort). The reason names the metric and its values.

mod blue_green;
mod canary;
mod cluster;
mod params;
mod simple;

use crate::model::analysis::Analyzer;
use crate::model::service::Service;
use crate::model::time::{Duration, Instant};

pub use self::params::{
    BlueGreenParams, CanaryParams, CanaryStep, RollingParams, Rollout, Steering, StrategyKind,
};

use self::blue_green::BlueGreen;
use self::canary::Canary;
use self::cluster::{Book, Cx};
use self::simple::{Recreate, Rolling};

pub type ReplicaId = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplicaState {
    /// Started, not ready yet.
    Starting,
    Ready,
    /// Was ready, now failing probes.
    NotReady,
    /// Removed from steering, shutting down.
    Draining,
    Gone,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Starting => "starting",
            ReplicaState::Ready => "ready",
            ReplicaState::NotReady => "not-ready",
            ReplicaState::Draining => "draining",
            ReplicaState::Gone => "gone",
        }
    }
}

/// What the strategy sees of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaView {
    pub id: ReplicaId,
    pub version: String,
    pub state: ReplicaState,
    /// When it entered `state`.
    pub since: Instant,
}

/// How new connections are spread over the ready replicas.
#[derive(Clone, Debug, PartialEq)]
pub enum Traffic {
    /// An equal share per ready replica (a Kubernetes Service).
    ByReadyReplicas,
    /// Version → basis points, summing to 10000; within a version, equal per ready replica.
    Weights(Vec<(String, u32)>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start one replica of this version; the driver assigns the id and the replica appears in
    /// later views as Starting.
    Start { version: String },
    /// Remove from steering, wait `pre_stop`, SIGTERM, SIGKILL after `grace`; later Gone.
    Drain { replica: ReplicaId },
    /// Applies to new connections only; the driver adds `propagation_delay` where the steering
    /// mode says so.
    SetTraffic(Traffic),
    /// For the run's events.jsonl (kinds listed in the module docs).
    Note { kind: String, detail: String },
}

/// Where a run stands relative to the rollout; statistics are kept per phase.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Before,
    During,
    After,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Promoted,
    Aborted { reason: String },
}

/// The two versions and the target count.
#[derive(Clone, Debug)]
struct Names {
    service: String,
    from: String,
    to: String,
    replicas: u32,
}

#[derive(Clone, Debug)]
enum Strategy {
    Recreate(Recreate),
    Rolling(Rolling),
    BlueGreen(BlueGreen),
    Canary(Canary),
}

/// One rollout of one service, with the strategy the scenario chose.
#[derive(Clone, Debug)]
pub struct RolloutDriver {
    kind: StrategyKind,
    names: Names,
    at: Instant,
    strategy: Strategy,
    book: Book,
    next: Instant,
    started_at: Option<Instant>,
    finished_at: Option<Instant>,
    outcome: Option<Outcome>,
}

/// Judges the intervals that ended, notes each, and returns the abort reason once more than
/// `failure_limit` have failed.
fn analyse(cx: &mut Cx, a: &mut Analyzer) -> Option<String> {
    let mut reason = None;
    for report in a.poll(cx.now) {
        cx.note("analysis", report.to_string());
        if let crate::model::analysis::Verdict::Fail(why) = &report.verdict {
            if report.failed > a.failure_limit() && reason.is_none() {
                reason = Some(format!(
                    "{} failed analysis intervals > failure_limit {}; interval {} ({} to {}): {why}",
                    report.failed,
                    a.failure_limit(),
                    report.index,
                    report.start,
                    report.end
                ));
            }
        }
    }
    if let Some(t) = a.next_at() {
        cx.wake_at(t);
    }
    reason
}

impl RolloutDriver {
    pub fn new(rollout: &Rollout, service: &Service) -> Self {
        let names = Names {
            service: service.name.clone(),
            from: service.version.clone(),
            to: rollout.to.clone(),
            replicas: service.replicas,
        };
        let strategy = match rollout.strategy {
            StrategyKind::Recreate => Strategy::Recreate(Recreate::new()),
            StrategyKind::Rolling => {
                Strategy::Rolling(Rolling::new(&rollout.rolling, service.replicas))
            }
            StrategyKind::BlueGreen => Strategy::BlueGreen(BlueGreen::new(
                &rollout.blue_green,
                rollout.analysis.as_ref(),
                &names,
            )),
            StrategyKind::Canary => Strategy::Canary(Canary::new(
                &rollout.canary,
                rollout.steering,
                rollout.analysis.as_ref(),
                &names,
            )),
        };
        let at = Instant::ZERO + rollout.at;
        RolloutDriver {
            kind: rollout.strategy,
            names,
            at,
            strategy,
            book: Book::new(),
            next: at,
            started_at: None,
            finished_at: None,
            outcome: None,
        }
    }

    /// Advances the strategy; see the module docs for when to call it.
    pub fn poll(&mut self, now: Instant, replicas: &[ReplicaView]) -> Vec<Action> {
        if now < self.at || self.finished_at.is_some() {
            return Vec::new();
        }
        let n = &self.names;
        let mut cx = Cx::new(now, replicas, &mut self.book);
        if self.started_at.is_none() {
            self.started_at = Some(now);
            cx.begin();
            let detail = match &self.strategy {
                Strategy::Rolling(r) => {
                    let (s, u) = r.bounds();
                    format!(
                        "rolling {}: {} → {}, {} replicas, surge {s}, unavailable {u}",
                        n.service, n.from, n.to, n.replicas
                    )
                }
                _ => format!(
                    "{} {}: {} → {}, {} replicas",
                    self.kind.as_str(),
                    n.service,
                    n.from,
                    n.to,
                    n.replicas
                ),
            };
            cx.note("begin", detail);
        }
        let done = match &mut self.strategy {
            Strategy::Recreate(s) => s.poll(&mut cx, n),
            Strategy::Rolling(s) => s.poll(&mut cx, n),
            Strategy::BlueGreen(s) => s.poll(&mut cx, n),
            Strategy::Canary(s) => s.poll(&mut cx, n),
        };
        summarise_scaling(&mut cx, n);
        self.next = cx.wake();
        if let Some(outcome) = done {
            let detail = match &outcome {
                Outcome::Promoted => {
                    format!("{} replicas of {} ready; {} gone", n.replicas, n.to, n.from)
                }
                Outcome::Aborted { reason } => {
                    format!(
                        "{} replicas of {} ready; {} gone ({reason})",
                        n.replicas, n.from, n.to
                    )
                }
            };
            let kind = if outcome == Outcome::Promoted {
                "promoted"
            } else {
                "rolled-back"
            };
            cx.note(kind, detail);
            self.finished_at = Some(now);
            self.outcome = Some(outcome);
            self.next = Instant::MAX;
        }
        cx.actions
    }

    /// When the driver next needs a poll even if no replica changes; [`Instant::MAX`] for never.
    pub fn poll_at(&self) -> Instant {
        self.next
    }

    /// Every completed request of the service, for the analysis (ignored by strategies that do
    /// not analyse).
    pub fn observe(&mut self, now: Instant, version: &str, latency: Duration, ok: bool) {
        let analyzer = match &mut self.strategy {
            Strategy::BlueGreen(s) => s.analyzer_mut(),
            Strategy::Canary(s) => s.analyzer_mut(),
            Strategy::Recreate(_) | Strategy::Rolling(_) => None,
        };
        if let Some(a) = analyzer {
            a.observe(now, version, latency, ok);
        }
    }

    pub fn phase(&self) -> Phase {
        match (self.started_at, self.finished_at) {
            (None, _) => Phase::Before,
            (Some(_), None) => Phase::During,
            (Some(_), Some(_)) => Phase::After,
        }
    }

    pub fn started_at(&self) -> Option<Instant> {
        self.started_at
    }
    pub fn finished_at(&self) -> Option<Instant> {
        self.finished_at
    }
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
}

/// Adds one `"scale"` note for the poll's starts and drains, with the live counts after them.
fn summarise_scaling(cx: &mut Cx, n: &Names) {
    let mut starts = std::collections::BTreeMap::<&str, u32>::new();
    let mut drains = std::collections::BTreeMap::<&str, Vec<String>>::new();
    for a in &cx.actions {
        match a {
            Action::Start { version } => *starts.entry(version.as_str()).or_default() += 1,
            Action::Drain { replica } => {
                let v = cx.version_of(*replica).unwrap_or("?");
                drains.entry(v).or_default().push(format!("#{replica}"));
            }
            _ => {}
        }
    }
    if starts.is_empty() && drains.is_empty() {
        return;
    }
    let mut parts: Vec<String> = starts
        .iter()
        .map(|(v, k)| format!("start {k} × {v}"))
        .collect();
    parts.extend(
        drains
            .iter()
            .map(|(v, ids)| format!("drain {v} {}", ids.join(" "))),
    );
    let detail = format!(
        "{} → live {} {}, {} {}",
        parts.join("; "),
        n.from,
        cx.live_count(&n.from),
        n.to,
        cx.live_count(&n.to)
    );
    cx.note("scale", detail);
}
