//! Blue-green: a full new set behind the old one, one switch, the old set kept for rollback.

use super::cluster::Cx;
use super::{analyse, Names, Outcome, Traffic};
use crate::model::analysis::Analysis;
use crate::model::analysis::Analyzer;
use crate::model::rollout::BlueGreenParams;
use crate::model::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
enum Stage {
    /// New set starting; traffic pinned to the old version.
    ScaleUp,
    /// Traffic on the new version since `at`; the old set is kept until `at + scale_down_delay`.
    Switched {
        at: Instant,
    },
    DrainOld,
    /// Switched back; draining the new set.
    Rollback {
        reason: String,
    },
}

#[derive(Clone, Debug)]
pub(super) struct BlueGreen {
    scale_down_delay: Duration,
    analyzer: Option<Analyzer>,
    stage: Stage,
}

impl BlueGreen {
    pub(super) fn new(p: &BlueGreenParams, analysis: Option<&Analysis>, n: &Names) -> Self {
        let analyzer = analysis
            .filter(|_| p.preview_analysis)
            .map(|a| Analyzer::new(*a, &n.to, &n.from));
        BlueGreen {
            scale_down_delay: p.scale_down_delay,
            analyzer,
            stage: Stage::ScaleUp,
        }
    }

    pub(super) fn analyzer_mut(&mut self) -> Option<&mut Analyzer> {
        self.analyzer.as_mut()
    }

    pub(super) fn poll(&mut self, cx: &mut Cx, n: &Names) -> Option<Outcome> {
        let only = |v: &str| Traffic::Weights(vec![(v.to_string(), 10_000)]);
        loop {
            match self.stage.clone() {
                Stage::ScaleUp => {
                    // The new set must not get new connections before the switch.
                    cx.set_traffic(only(&n.from));
                    cx.scale(&n.from, n.replicas);
                    cx.scale(&n.to, n.replicas);
                    if !cx.settled(&n.to, n.replicas, Duration::ZERO) {
                        return None;
                    }
                    cx.set_traffic(only(&n.to));
                    cx.note(
                        "switch",
                        format!(
                            "all {} {} replicas ready: new connections go to {}; {} kept for {}",
                            n.replicas, n.to, n.to, n.from, self.scale_down_delay
                        ),
                    );
                    if let Some(a) = &mut self.analyzer {
                        a.begin(cx.now);
                    }
                    self.stage = Stage::Switched { at: cx.now };
                }
                Stage::Switched { at } => {
                    cx.scale(&n.from, n.replicas);
                    cx.scale(&n.to, n.replicas);
                    if let Some(reason) = self.analyzer.as_mut().and_then(|a| analyse(cx, a)) {
                        cx.set_traffic(only(&n.from));
                        cx.note("abort", format!("switching back to {}: {reason}", n.from));
                        self.stage = Stage::Rollback { reason };
                        continue;
                    }
                    let end = at + self.scale_down_delay;
                    if cx.now < end {
                        cx.wake_at(end);
                        return None;
                    }
                    cx.note(
                        "stage",
                        format!("scale-down delay over: draining {}", n.from),
                    );
                    self.stage = Stage::DrainOld;
                }
                Stage::DrainOld => {
                    cx.scale(&n.from, 0);
                    cx.scale(&n.to, n.replicas);
                    let done = cx.finished(&n.to, &n.from, n.replicas, Duration::ZERO);
                    return done.then_some(Outcome::Promoted);
                }
                Stage::Rollback { reason } => {
                    cx.scale(&n.to, 0);
                    cx.scale(&n.from, n.replicas);
                    let done = cx.finished(&n.from, &n.to, n.replicas, Duration::ZERO);
                    return done.then_some(Outcome::Aborted { reason });
                }
            }
        }
    }
}
