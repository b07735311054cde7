//! Attribution of connections to versions by steering target, for servers that do not name
//! their version (a researcher's own image): the piece a backend hands the load generator as
//! [`LoadConfig::attribute`](crate::workload::load::LoadConfig::attribute).
//!
//! Two facts suffice. A backend knows each replica's address and version ([`ReplicaVersions`]:
//! it inserts a replica when it starts and removes it on release). And the gateway's conntrack
//! knows, for each client connection to a VIP, the replica its DNAT chose
//! ([`crate::dataplane::conntrack`]). [`Attribution::resolve`] puts them together:
//!
//! 1. a peer that is itself a known replica (a workload aimed at a node, or at a replica's own
//!    address) is that replica's version, with no lookup;
//! 2. otherwise, if a gateway lookup is configured, the reply source of the connection's
//!    conntrack entry there (`local -> peer` is the original tuple: the client sees no NAT) is
//!    looked up among the replicas;
//! 3. otherwise (or if that replica is unknown) the connection has no version.
//!
//! Guarantees and limits: resolution happens once, when a connection is established, so a
//! replica must be inserted before it can be steered to and removed only after it stopped
//! accepting; a later change of steering does not move an established connection (conntrack
//! does not either). Replicas are told apart by IP address alone (every replica has its own
//! address in the netns and docker backends). Lookup failures never fail a request: the
//! connection goes unattributed and [`Attribution::counts`] says how often, with the last error.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::dataplane::conntrack::{SteeringLookup, TcpTuple};
use crate::workload::load::Attribute;

/// Replica address → version name, shared by a backend (which writes) and the resolvers of its
/// workloads (which read). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ReplicaVersions(Arc<RwLock<HashMap<IpAddr, Arc<str>>>>);

impl ReplicaVersions {
    pub fn new() -> ReplicaVersions {
        ReplicaVersions::default()
    }
    /// The replica at `addr` runs `version` (replaces what was known of that address).
    pub fn insert(&self, addr: IpAddr, version: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addr, Arc::from(version));
    }
    /// The replica at `addr` is gone.
    pub fn remove(&self, addr: IpAddr) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addr);
    }
    pub fn get(&self, addr: IpAddr) -> Option<Arc<str>> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&addr)
            .cloned()
    }
}

/// How resolution went, over a resolver's life.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttributionCounts {
    /// Connections given a version.
    pub resolved: u64,
    /// Connections with no version: no conntrack entry, or a target that is no known replica.
    pub unknown: u64,
    /// Connections whose lookup failed (socket errors, malformed answers).
    pub failed: u64,
    /// The last failure, naming the namespace and tuple.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    resolved: AtomicU64,
    unknown: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// The resolver of one workload: the run's replica map and, for a workload aimed at a VIP,
/// the conntrack of the service's gateway.
#[derive(Clone)]
pub struct Attribution {
    versions: ReplicaVersions,
    gateway: Option<Arc<dyn SteeringLookup>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Attribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attribution")
            .field("gateway", &self.gateway.is_some())
            .field("counts", &self.counts())
            .finish()
    }
}

impl Attribution {
    /// A resolver for a workload aimed at a VIP steered by `gateway` (e.g. a
    /// [`crate::dataplane::conntrack::Conntrack`] opened in the gateway's namespace).
    pub fn via_gateway(versions: ReplicaVersions, gateway: Arc<dyn SteeringLookup>) -> Attribution {
        Attribution {
            versions,
            gateway: Some(gateway),
            counters: Arc::default(),
        }
    }

    /// A resolver for a workload aimed at a node or replica address: the peer is the replica.
    pub fn direct(versions: ReplicaVersions) -> Attribution {
        Attribution {
            versions,
            gateway: None,
            counters: Arc::default(),
        }
    }

    /// The version behind the established connection `local -> peer` (see the module docs).
    pub fn resolve(&self, local: SocketAddr, peer: SocketAddr) -> Option<Arc<str>> {
        let c = &self.counters;
        let found = match (self.versions.get(peer.ip()), &self.gateway) {
            (Some(v), _) => Some(v),
            (None, None) => None,
            (None, Some(gw)) => {
                let steered = TcpTuple::new(local, peer).and_then(|t| gw.reply_source(&t));
                match steered {
                    Ok(to) => to.and_then(|to| self.versions.get(to.ip())),
                    Err(e) => {
                        c.failed.fetch_add(1, Ordering::Relaxed);
                        *c.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(e.to_string());
                        return None;
                    }
                }
            }
        };
        let counter = if found.is_some() {
            &c.resolved
        } else {
            &c.unknown
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The closure [`LoadConfig::attribute`](crate::workload::load::LoadConfig::attribute)
    /// takes; it shares this resolver's counts.
    pub fn resolver(&self) -> Attribute {
        let me = self.clone();
        Arc::new(move |local, peer| me.resolve(local, peer).map(|v| v.to_string()))
    }

    pub fn counts(&self) -> AttributionCounts {
        let c = &self.counters;
        AttributionCounts {
            resolved: c.resolved.load(Ordering::Relaxed),
            unknown: c.unknown.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            last_error: c
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::conntrack::FakeSteering;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn setup() -> (ReplicaVersions, Arc<FakeSteering>) {
        let v = ReplicaVersions::new();
        v.insert(sa("10.1.0.2:8080").ip(), "v1");
        v.insert(sa("10.1.0.3:8080").ip(), "v2");
        (v, Arc::new(FakeSteering::new()))
    }

    #[test]
    fn a_vip_connection_takes_the_version_of_the_replica_conntrack_names() {
        let (v, gw) = setup();
        let (local, vip) = (sa("10.0.0.2:40000"), sa("10.9.0.1:8080"));
        gw.steer(TcpTuple::new(local, vip).unwrap(), sa("10.1.0.3:8080"));
        let a = Attribution::via_gateway(v, gw.clone());
        let r = a.resolver();
        assert_eq!(r(local, vip).as_deref(), Some("v2"));
        assert_eq!(gw.calls(), vec![TcpTuple::new(local, vip).unwrap()]);
        // Another connection with no entry: unknown, and said so.
        assert_eq!(r(sa("10.0.0.2:40001"), vip), None);
        assert_eq!(
            a.counts(),
            AttributionCounts {
                resolved: 1,
                unknown: 1,
                failed: 0,
                last_error: None
            }
        );
    }

    #[test]
    fn a_peer_that_is_a_replica_needs_no_lookup() {
        let (v, gw) = setup();
        let a = Attribution::via_gateway(v.clone(), gw.clone());
        assert_eq!(
            a.resolve(sa("10.0.0.2:40000"), sa("10.1.0.2:8080"))
                .as_deref(),
            Some("v1")
        );
        assert!(gw.calls().is_empty());
        let d = Attribution::direct(v);
        assert_eq!(
            d.resolve(sa("10.0.0.2:40000"), sa("10.1.0.3:8080"))
                .as_deref(),
            Some("v2")
        );
        assert_eq!(d.resolve(sa("10.0.0.2:40000"), sa("10.1.0.9:8080")), None);
    }

    #[test]
    fn a_released_or_replaced_replica_changes_what_new_connections_resolve_to() {
        let (v, gw) = setup();
        let (local, vip) = (sa("10.0.0.2:40000"), sa("10.9.0.1:8080"));
        gw.steer(TcpTuple::new(local, vip).unwrap(), sa("10.1.0.3:8080"));
        let a = Attribution::via_gateway(v.clone(), gw);
        v.remove(sa("10.1.0.3:8080").ip());
        assert_eq!(a.resolve(local, vip), None);
        v.insert(sa("10.1.0.3:8080").ip(), "v3");
        assert_eq!(a.resolve(local, vip).as_deref(), Some("v3"));
    }

    #[test]
    fn lookup_failures_leave_the_connection_unattributed_and_are_counted() {
        let (v, gw) = setup();
        gw.fail_lookups();
        let a = Attribution::via_gateway(v, gw);
        assert_eq!(a.resolve(sa("10.0.0.2:40000"), sa("10.9.0.1:8080")), None);
        let c = a.counts();
        assert_eq!((c.resolved, c.unknown, c.failed), (0, 0, 1));
        let e = c.last_error.unwrap();
        assert!(
            e.contains("10.0.0.2:40000 -> 10.9.0.1:8080") && e.contains("fake"),
            "{e}"
        );
    }
}
