//! Canary: steps of weight with pauses, judged by the analysis, promoted or rolled back.

use super::cluster::Cx;
use super::{analyse, Names, Outcome, Traffic};
use crate::model::analysis::Analysis;
use crate::model::analysis::Analyzer;
use crate::model::rollout::{CanaryParams, Steering};
use crate::model::time::{Duration, Instant};

const FULL: u32 = 10_000;

#[derive(Clone, Debug, PartialEq)]
enum Stage {
    /// Working towards step `i`; `reached` is when its weight took effect.
    Step { i: usize, reached: Option<Instant> },
    /// Canary at 100 %: draining the stable set.
    Finalize,
    /// Back to stable only; draining the canary.
    Abort { reason: String },
}

#[derive(Clone, Debug)]
pub(super) struct Canary {
    /// `(weight in basis points, pause)`; ends with a step of 10000 (added when the file's last
    /// step is lower).
    steps: Vec<(u32, Duration)>,
    steering: Steering,
    analyzer: Option<Analyzer>,
    stage: Stage,
}

fn pct(bp: u32) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}

impl Canary {
    pub(super) fn new(
        p: &CanaryParams,
        steering: Steering,
        analysis: Option<&Analysis>,
        n: &Names,
    ) -> Self {
        let mut steps: Vec<(u32, Duration)> = p
            .steps
            .iter()
            .map(|s| (s.weight_bp.min(FULL), s.pause.unwrap_or(Duration::ZERO)))
            .collect();
        if steps.last().is_none_or(|s| s.0 < FULL) {
            steps.push((FULL, Duration::ZERO));
        }
        let analyzer = analysis.map(|a| Analyzer::new(*a, &n.to, &n.from));
        Canary {
            steps,
            steering,
            analyzer,
            stage: Stage::Step {
                i: 0,
                reached: None,
            },
        }
    }

    pub(super) fn analyzer_mut(&mut self) -> Option<&mut Analyzer> {
        self.analyzer.as_mut()
    }

    /// Canary replicas for a weight: max(1, ⌈w × replicas / 10000⌉), at most `replicas`.
    fn canary_count(w: u32, replicas: u32) -> u32 {
        let c = (u64::from(w) * u64::from(replicas)).div_ceil(u64::from(FULL)) as u32;
        c.max(1).min(replicas)
    }

    fn weights(&self, w: u32, n: &Names) -> Traffic {
        if w >= FULL {
            Traffic::Weights(vec![(n.to.clone(), FULL)])
        } else {
            Traffic::Weights(vec![(n.from.clone(), FULL - w), (n.to.clone(), w)])
        }
    }

    pub(super) fn poll(&mut self, cx: &mut Cx, n: &Names) -> Option<Outcome> {
        let r = n.replicas;
        let sdn = self.steering == Steering::Sdn;
        let stable_only = Traffic::Weights(vec![(n.from.clone(), FULL)]);
        loop {
            match self.stage.clone() {
                Stage::Step { i, reached } => {
                    if sdn && i == 0 && reached.is_none() {
                        // Canary replicas get no new connections before the first step's weight.
                        cx.set_traffic(stable_only.clone());
                    }
                    let (w, pause) = self.steps[i];
                    let c = Self::canary_count(w, r);
                    cx.scale(&n.to, c);
                    // Replicas steering: the stable set shrinks only once the canary is ready.
                    let stable = match (sdn, reached) {
                        (true, _) => r,
                        (false, Some(_)) => r - c,
                        (false, None) if i == 0 => r,
                        (false, None) => r - Self::canary_count(self.steps[i - 1].0, r),
                    };
                    cx.scale(&n.from, stable);
                    if let Some(reason) = self.analyzer.as_mut().and_then(|a| analyse(cx, a)) {
                        if sdn {
                            cx.set_traffic(stable_only.clone());
                        }
                        cx.note("abort", format!("back to {}: {reason}", n.from));
                        self.stage = Stage::Abort { reason };
                        continue;
                    }
                    let Some(t) = reached else {
                        if cx.available(&n.to, Duration::ZERO) < c {
                            return None;
                        }
                        let total = self.steps.len();
                        if sdn {
                            cx.set_traffic(self.weights(w, n));
                            cx.note(
                                "step",
                                format!(
                                    "step {}/{total}: weight {} → {} {}, {} {} ({c} canary replicas)",
                                    i + 1,
                                    pct(w),
                                    n.from,
                                    pct(FULL - w),
                                    n.to,
                                    pct(w)
                                ),
                            );
                        } else {
                            cx.scale(&n.from, r - c);
                            cx.note(
                                "step",
                                format!(
                                    "step {}/{total}: weight {} → {c} of {r} replicas {}, {} {} \
                                     (share follows replica counts)",
                                    i + 1,
                                    pct(w),
                                    n.to,
                                    r - c,
                                    n.from
                                ),
                            );
                        }
                        if let Some(a) = &mut self.analyzer {
                            a.begin(cx.now);
                        }
                        self.stage = Stage::Step {
                            i,
                            reached: Some(cx.now),
                        };
                        continue;
                    };
                    if cx.now < t + pause {
                        cx.wake_at(t + pause);
                        return None;
                    }
                    if w >= FULL {
                        cx.note("stage", format!("{} at 100%: draining {}", n.to, n.from));
                        self.stage = Stage::Finalize;
                    } else {
                        self.stage = Stage::Step {
                            i: i + 1,
                            reached: None,
                        };
                    }
                }
                Stage::Finalize => {
                    cx.scale(&n.to, r);
                    cx.scale(&n.from, 0);
                    let done = cx.finished(&n.to, &n.from, r, Duration::ZERO);
                    return done.then_some(Outcome::Promoted);
                }
                Stage::Abort { reason } => {
                    cx.scale(&n.to, 0);
                    cx.scale(&n.from, r);
                    let done = cx.finished(&n.from, &n.to, r, Duration::ZERO);
                    return done.then_some(Outcome::Aborted { reason });
                }
            }
        }
    }
}
