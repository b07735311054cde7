//! What every strategy needs to read the replica views and act on them: counts per version that
//! include actions the views do not show yet, and idempotent scaling.
//!
//! A `Start` is counted as a pending replica of its version until a new replica of that version
//! appears in the views; a `Drain` takes the replica out of every count of live replicas at once.
//! So two polls with the same views compute the same counts and emit nothing the second time,
//! whether or not the driver has already applied the first poll's actions.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, ReplicaId, ReplicaState, ReplicaView, Traffic};
use crate::model::time::{Duration, Instant};

/// What the strategies asked for, across polls.
#[derive(Clone, Debug)]
pub(super) struct Book {
    /// Replicas of each version in the views when the rollout began (ever started, Gone
    /// included); later ones are the answers to our `Start`s.
    baseline: BTreeMap<String, u32>,
    /// `Start` actions emitted, per version.
    started: BTreeMap<String, u32>,
    /// Replicas we asked to drain.
    drained: BTreeSet<ReplicaId>,
    /// The traffic in force (as last set; the driver starts with `ByReadyReplicas`).
    traffic: Traffic,
}

impl Book {
    pub(super) fn new() -> Self {
        Book {
            baseline: BTreeMap::new(),
            started: BTreeMap::new(),
            drained: BTreeSet::new(),
            traffic: Traffic::ByReadyReplicas,
        }
    }

    fn set_baseline(&mut self, views: &[ReplicaView]) {
        self.baseline.clear();
        for v in views {
            *self.baseline.entry(v.version.clone()).or_default() += 1;
        }
    }
}

/// One poll: the views, the book, the actions so far and the earliest deadline seen.
pub(super) struct Cx<'a> {
    pub(super) now: Instant,
    views: &'a [ReplicaView],
    book: &'a mut Book,
    pub(super) actions: Vec<Action>,
    wake: Instant,
}

fn is_live_state(s: ReplicaState) -> bool {
    matches!(
        s,
        ReplicaState::Starting | ReplicaState::Ready | ReplicaState::NotReady
    )
}

impl<'a> Cx<'a> {
    pub(super) fn new(now: Instant, views: &'a [ReplicaView], book: &'a mut Book) -> Self {
        Cx {
            now,
            views,
            book,
            actions: Vec::new(),
            wake: Instant::MAX,
        }
    }

    /// Takes the views of the rollout's first poll as the baseline for pending starts.
    pub(super) fn begin(&mut self) {
        self.book.set_baseline(self.views);
    }

    /// The earliest time a strategy asked to be polled again.
    pub(super) fn wake(&self) -> Instant {
        self.wake
    }

    pub(super) fn wake_at(&mut self, t: Instant) {
        if t > self.now {
            self.wake = self.wake.min(t);
        }
    }

    pub(super) fn note(&mut self, kind: &str, detail: impl Into<String>) {
        self.actions.push(Action::Note {
            kind: kind.to_string(),
            detail: detail.into(),
        });
    }

    /// Sets the traffic unless it is already in force, with a `"traffic"` note.
    pub(super) fn set_traffic(&mut self, t: Traffic) {
        if self.book.traffic == t {
            return;
        }
        let detail = match &t {
            Traffic::ByReadyReplicas => {
                "new connections: equal share per ready replica".to_string()
            }
            Traffic::Weights(w) => {
                let parts: Vec<String> = w
                    .iter()
                    .map(|(v, bp)| format!("{v} {}.{:02}%", bp / 100, bp % 100))
                    .collect();
                format!("new connections: {}", parts.join(", "))
            }
        };
        self.book.traffic = t.clone();
        self.actions.push(Action::SetTraffic(t));
        self.note("traffic", detail);
    }

    /// Replicas of `version` that are starting, ready or not ready and that we have not asked
    /// to drain.
    fn live<'s>(&'s self, version: &'s str) -> impl Iterator<Item = &'a ReplicaView> + 's {
        let drained = &self.book.drained;
        self.views.iter().filter(move |r| {
            r.version == version && is_live_state(r.state) && !drained.contains(&r.id)
        })
    }

    /// `Start`s of `version` not yet visible in the views.
    fn pending(&self, version: &str) -> u32 {
        let seen = self.views.iter().filter(|r| r.version == version).count() as u32;
        let base = self.book.baseline.get(version).copied().unwrap_or(0);
        let started = self.book.started.get(version).copied().unwrap_or(0);
        started.saturating_sub(seen.saturating_sub(base))
    }

    /// Live replicas of `version`, pending starts included.
    pub(super) fn live_count(&self, version: &str) -> u32 {
        self.live(version).count() as u32 + self.pending(version)
    }

    /// Live replicas of `version` that have been Ready for at least `min_ready`; asks to be
    /// woken when a Ready one reaches that age.
    pub(super) fn available(&mut self, version: &str, min_ready: Duration) -> u32 {
        let now = self.now;
        let mut n = 0;
        let mut later = Instant::MAX;
        for r in self
            .live(version)
            .filter(|r| r.state == ReplicaState::Ready)
        {
            let at = r.since + min_ready;
            if at <= now {
                n += 1;
            } else {
                later = later.min(at);
            }
        }
        self.wake_at(later);
        n
    }

    /// Replicas of `version` that are not Gone yet (draining ones included), pending starts
    /// included.
    pub(super) fn remaining(&self, version: &str) -> u32 {
        let n = self
            .views
            .iter()
            .filter(|r| r.version == version && r.state != ReplicaState::Gone)
            .count();
        n as u32 + self.pending(version)
    }

    /// Exactly `n` live replicas of `version`, all available (Ready for `min_ready`).
    pub(super) fn settled(&mut self, version: &str, n: u32, min_ready: Duration) -> bool {
        self.live_count(version) == n
            && self.pending(version) == 0
            && self.available(version, min_ready) == n
    }

    /// The end state: exactly `n` replicas of `winner` are live and available, every other
    /// replica of it and every replica of `loser` is Gone.
    pub(super) fn finished(
        &mut self,
        winner: &str,
        loser: &str,
        n: u32,
        min_ready: Duration,
    ) -> bool {
        self.remaining(loser) == 0
            && self.remaining(winner) == n
            && self.settled(winner, n, min_ready)
    }

    pub(super) fn start(&mut self, version: &str, n: u32) {
        if n == 0 {
            return;
        }
        *self.book.started.entry(version.to_string()).or_default() += n;
        for _ in 0..n {
            self.actions.push(Action::Start {
                version: version.to_string(),
            });
        }
    }

    /// Drains up to `n` live replicas of `version`, in the order a Kubernetes ReplicaSet deletes
    /// pods: starting before not ready before ready, and among those the one that entered its
    /// state most recently (then the newest id) first.
    pub(super) fn drain(&mut self, version: &str, n: u32) -> u32 {
        let mut pick: Vec<&ReplicaView> = self.live(version).collect();
        let rank = |s: ReplicaState| match s {
            ReplicaState::Starting => 0,
            ReplicaState::NotReady => 1,
            _ => 2,
        };
        pick.sort_by_key(|r| {
            (
                rank(r.state),
                std::cmp::Reverse(r.since),
                std::cmp::Reverse(r.id),
            )
        });
        let ids: Vec<ReplicaId> = pick.iter().take(n as usize).map(|r| r.id).collect();
        for &id in &ids {
            self.book.drained.insert(id);
            self.actions.push(Action::Drain { replica: id });
        }
        ids.len() as u32
    }

    /// Starts or drains replicas of `version` until `target` are live (pending starts count).
    pub(super) fn scale(&mut self, version: &str, target: u32) {
        let live = self.live_count(version);
        if live < target {
            self.start(version, target - live);
        } else if live > target {
            self.drain(version, live - target);
        }
    }

    /// The version of a replica in the views.
    pub(super) fn version_of(&self, id: ReplicaId) -> Option<&'a str> {
        self.views
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.version.as_str())
    }
}
