//! The strategies without analysis: recreate and rolling.

use super::cluster::Cx;
use super::{Names, Outcome};
use crate::model::rollout::RollingParams;
use crate::model::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecreateStage {
    DrainOld,
    StartNew,
}

/// Drain every old replica; once all are Gone start `replicas` new ones.
#[derive(Clone, Debug)]
pub(super) struct Recreate {
    stage: RecreateStage,
}

impl Recreate {
    pub(super) fn new() -> Self {
        Recreate {
            stage: RecreateStage::DrainOld,
        }
    }

    pub(super) fn poll(&mut self, cx: &mut Cx, n: &Names) -> Option<Outcome> {
        loop {
            match self.stage {
                RecreateStage::DrainOld => {
                    cx.scale(&n.from, 0);
                    if cx.remaining(&n.from) > 0 {
                        return None;
                    }
                    cx.note(
                        "stage",
                        format!(
                            "every {} replica is gone; starting {} × {}",
                            n.from, n.replicas, n.to
                        ),
                    );
                    self.stage = RecreateStage::StartNew;
                }
                RecreateStage::StartNew => {
                    cx.scale(&n.to, n.replicas);
                    return cx
                        .finished(&n.to, &n.from, n.replicas, Duration::ZERO)
                        .then_some(Outcome::Promoted);
                }
            }
        }
    }
}

/// A Kubernetes Deployment's rolling update (the Deployment controller's `rolloutRolling`).
#[derive(Clone, Debug)]
pub(super) struct Rolling {
    surge: u32,
    unavailable: u32,
    min_ready: Duration,
}

impl Rolling {
    pub(super) fn new(p: &RollingParams, replicas: u32) -> Self {
        let surge = p.max_surge.resolve(replicas, true);
        let mut unavailable = p.max_unavailable.resolve(replicas, false);
        // As Kubernetes' ResolveFenceposts: both zero would never make progress.
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        Rolling {
            surge,
            unavailable,
            min_ready: p.min_ready,
        }
    }

    /// The resolved `(max_surge, max_unavailable)`.
    pub(super) fn bounds(&self) -> (u32, u32) {
        (self.surge, self.unavailable)
    }

    pub(super) fn poll(&mut self, cx: &mut Cx, n: &Names) -> Option<Outcome> {
        let r = n.replicas;
        let max_total = r + self.surge;
        let min_available = i64::from(r.saturating_sub(self.unavailable));
        // Each pass either starts or drains at least one replica, so this ends; iterating to a
        // fixed point does in one poll what the controller does over several syncs.
        loop {
            let new_live = cx.live_count(&n.to);
            let old_live = cx.live_count(&n.from);
            let total = new_live + old_live;
            // reconcileNewReplicaSet: scale up within the surge.
            if new_live > r {
                cx.drain(&n.to, new_live - r);
                continue;
            }
            if new_live < r && total < max_total {
                cx.start(&n.to, (r - new_live).min(max_total - total));
                continue;
            }
            // reconcileOldReplicaSets: first old replicas that are not available, as far as
            // total − minAvailable − (unavailable new ones) allows, then available old ones
            // down to minAvailable.
            let new_avail = cx.available(&n.to, self.min_ready);
            let old_avail = cx.available(&n.from, self.min_ready);
            let new_unavailable = i64::from(new_live - new_avail.min(new_live));
            let max_cleanup = i64::from(total) - min_available - new_unavailable;
            let old_unhealthy = i64::from(old_live - old_avail.min(old_live));
            let cleanup = max_cleanup.min(old_unhealthy).max(0) as u32;
            let cleaned = cx.drain(&n.from, cleanup);
            let surplus = i64::from(new_avail + old_avail) - min_available;
            let down = surplus.min(i64::from(old_live - cleaned)).max(0) as u32;
            let drained = cx.drain(&n.from, down);
            if cleaned + drained == 0 {
                break;
            }
        }
        cx.finished(&n.to, &n.from, r, self.min_ready)
            .then_some(Outcome::Promoted)
    }
}
