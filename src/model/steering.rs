//! Traffic steering at a gateway: which replica a new connection goes to.
//!
//! The steering state is an interval table over 10,000 slots (one slot = 0.01 %), exactly the
//! map the netns data plane installs in nftables (`numgen random mod 10000` looked up in an
//! interval map of replica addresses). The simulator draws from the same table, so a weight
//! means the same thing on every backend.
//!
//! - `Traffic::ByReadyReplicas` (a Kubernetes Service): the slots are shared equally by all
//!   ready replicas, whatever their version.
//! - `Traffic::Weights` (SDN steering): each version gets its weight in slots, shared equally by
//!   its ready replicas. A version with weight but no ready replica keeps its slots with no
//!   endpoint: connections drawn there are refused, as they would be by a real map without an
//!   element for them.
//!
//! Remainders of integer division go to the replicas listed first, so tables are deterministic.

use crate::model::rng::Rng;
use crate::model::rollout::{ReplicaId, Traffic};

/// Slots in a steering table: 10,000, so that weights resolve to 0.01 %.
pub const SLOTS: u32 = 10_000;

/// One contiguous range of slots `[start, end)` and who serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u32,
    pub end: u32,
    /// None: no ready endpoint for this share.
    pub replica: Option<ReplicaId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SteeringTable {
    ranges: Vec<SlotRange>,
}

/// A replica as steering sees it.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint<'a> {
    pub id: ReplicaId,
    pub version: &'a str,
}

impl SteeringTable {
    /// Builds the table for `traffic` over the ready `endpoints` (in a stable order).
    pub fn build(traffic: &Traffic, endpoints: &[Endpoint<'_>]) -> SteeringTable {
        let mut ranges = Vec::new();
        let mut start = 0u32;
        let mut push = |slots: u32, replica: Option<ReplicaId>, ranges: &mut Vec<SlotRange>| {
            if slots > 0 {
                ranges.push(SlotRange {
                    start,
                    end: start + slots,
                    replica,
                });
                start += slots;
            }
        };
        match traffic {
            Traffic::ByReadyReplicas => {
                let ids: Vec<ReplicaId> = endpoints.iter().map(|e| e.id).collect();
                if ids.is_empty() {
                    push(SLOTS, None, &mut ranges);
                }
                for (id, slots) in share(SLOTS, &ids) {
                    push(slots, Some(id), &mut ranges);
                }
            }
            Traffic::Weights(weights) => {
                for (version, weight) in weights {
                    let ids: Vec<ReplicaId> = endpoints
                        .iter()
                        .filter(|e| e.version == version)
                        .map(|e| e.id)
                        .collect();
                    if ids.is_empty() {
                        push(*weight, None, &mut ranges);
                    }
                    for (id, slots) in share(*weight, &ids) {
                        push(slots, Some(id), &mut ranges);
                    }
                }
                // Weights are validated to sum to SLOTS; any shortfall has no endpoint.
                let assigned: u32 = weights.iter().map(|(_, w)| *w).sum();
                push(SLOTS.saturating_sub(assigned), None, &mut ranges);
            }
        }
        SteeringTable { ranges }
    }

    pub fn ranges(&self) -> &[SlotRange] {
        &self.ranges
    }

    /// The replica for slot `slot` (< SLOTS).
    pub fn lookup(&self, slot: u32) -> Option<ReplicaId> {
        let i = self.ranges.partition_point(|r| r.end <= slot);
        self.ranges.get(i).and_then(|r| r.replica)
    }

    /// Draws a slot uniformly, as `numgen random mod 10000` does.
    pub fn pick(&self, rng: &mut Rng) -> Option<ReplicaId> {
        self.lookup(rng.below(u64::from(SLOTS)) as u32)
    }

    /// Slots held by each version's replicas, for recording the effective weights.
    pub fn slots_of(
        &self,
        mut version_of: impl FnMut(ReplicaId) -> String,
    ) -> std::collections::BTreeMap<String, u32> {
        let mut out = std::collections::BTreeMap::new();
        for r in &self.ranges {
            if let Some(id) = r.replica {
                *out.entry(version_of(id)).or_insert(0) += r.end - r.start;
            }
        }
        out
    }
}

/// Splits `total` slots among `ids` as evenly as possible, the remainder to the first ones.
fn share(total: u32, ids: &[ReplicaId]) -> impl Iterator<Item = (ReplicaId, u32)> + '_ {
    let n = ids.len() as u32;
    let (base, rest) = total
        .checked_div(n)
        .map_or((0, 0), |base| (base, total % n));
    ids.iter()
        .enumerate()
        .map(move |(i, &id)| (id, base + u32::from((i as u32) < rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps() -> Vec<Endpoint<'static>> {
        vec![
            Endpoint {
                id: 0,
                version: "v1",
            },
            Endpoint {
                id: 1,
                version: "v1",
            },
            Endpoint {
                id: 2,
                version: "v1",
            },
            Endpoint {
                id: 3,
                version: "v2",
            },
        ]
    }

    #[test]
    fn equal_shares_by_ready_replicas() {
        let t = SteeringTable::build(&Traffic::ByReadyReplicas, &eps());
        let sizes: Vec<u32> = t.ranges().iter().map(|r| r.end - r.start).collect();
        assert_eq!(sizes, vec![2500, 2500, 2500, 2500]);
        let t = SteeringTable::build(&Traffic::ByReadyReplicas, &eps()[..3]);
        let sizes: Vec<u32> = t.ranges().iter().map(|r| r.end - r.start).collect();
        assert_eq!(sizes, vec![3334, 3333, 3333]);
    }

    #[test]
    fn weights_down_to_one_basis_point() {
        let w = Traffic::Weights(vec![("v1".into(), 9999), ("v2".into(), 1)]);
        let t = SteeringTable::build(&w, &eps());
        assert_eq!(t.lookup(9999), Some(3));
        assert_eq!(t.lookup(9998), Some(2));
        let slots = t.slots_of(|id| if id == 3 { "v2".into() } else { "v1".into() });
        assert_eq!(slots["v2"], 1);
        assert_eq!(slots["v1"], 9999);
    }

    #[test]
    fn weight_without_endpoint_is_refused_share() {
        let w = Traffic::Weights(vec![("v1".into(), 8000), ("v3".into(), 2000)]);
        let t = SteeringTable::build(&w, &eps());
        assert_eq!(t.lookup(7999).map(|_| ()), Some(()));
        assert_eq!(t.lookup(8000), None);
        assert_eq!(
            SteeringTable::build(&Traffic::ByReadyReplicas, &[]).lookup(0),
            None
        );
    }

    #[test]
    fn picks_follow_weights() {
        let w = Traffic::Weights(vec![("v1".into(), 8000), ("v2".into(), 2000)]);
        let t = SteeringTable::build(&w, &eps());
        let mut rng = Rng::new(42);
        let n = 100_000;
        let canary = (0..n).filter(|_| t.pick(&mut rng) == Some(3)).count() as f64 / n as f64;
        assert!((canary - 0.2).abs() < 0.006, "{canary}");
    }
}
