//! Policy reachability checks of a deployed run.

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::dataplane::ops::Executor;
use crate::dataplane::probe::{self, Reach};
use crate::scenario::types::Scenario;

use super::{Dataplane, DataplaneError};

/// One probed (source, destination, port) triple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRow {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub expected: bool,
    pub observed: Reach,
}

impl<E: Executor> Dataplane<E> {
    /// Probes every (source, destination, port) triple the scenario implies (see
    /// [`Plan::probe_pairs`](crate::dataplane::Plan::probe_pairs)) and compares with the policies. A service source probes from its
    /// lowest-id replica (skipped without replicas); a service destination through its VIP, so
    /// call it once steering has endpoints (an empty map answers every probe with a reset from
    /// the gateway, which reads as reachable).
    pub fn check_policies(
        &self,
        sc: &Scenario,
        timeout: Duration,
    ) -> Result<Vec<ProbeRow>, DataplaneError> {
        let mut rows = Vec::new();
        let mut pairs = Vec::new();
        for (from, to, port) in self.plan.probe_pairs(sc) {
            let src = match self.plan.node(&from) {
                Some(n) => Some(n.netns.clone()),
                None => self
                    .plan
                    .services
                    .iter()
                    .position(|s| s.name == from)
                    .and_then(|si| self.replicas[si].values().next())
                    .map(|r| r.plan.netns.clone()),
            };
            let dst = match self.plan.service(&to) {
                Some(s) => Some(s.vip),
                None => self
                    .plan
                    .node(&to)
                    .and_then(|n| n.ifaces.first().map(|i| i.addr)),
            };
            let (Some(src), Some(dst)) = (src, dst) else {
                continue;
            };
            pairs.push((src, SocketAddrV4::new(dst, port)));
            rows.push(ProbeRow {
                expected: self.plan.allowed(&from, &to, port),
                from,
                to,
                port,
                observed: Reach::Timeout,
            });
        }
        let seen = probe::probe_all(&pairs, timeout).map_err(DataplaneError::Probe)?;
        let mut bad = Vec::new();
        for (row, r) in rows.iter_mut().zip(seen) {
            row.observed = r;
            if r.reachable() != row.expected {
                bad.push(format!(
                    "{} → {}:{}: policies {} it, the probe saw {}",
                    row.from,
                    row.to,
                    row.port,
                    if row.expected { "allow" } else { "deny" },
                    r.as_str()
                ));
            }
        }
        if bad.is_empty() {
            Ok(rows)
        } else {
            Err(DataplaneError::PolicyMismatch(bad))
        }
    }
}
