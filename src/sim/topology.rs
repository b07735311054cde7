//! Routes of messages through the scenario's topology, as hops with link directions.
//!
//! The routes themselves are [`crate::model::route`]'s over [`Scenario::graph`] (shortest by
//! hop count, ties to the earlier `[[link]]`, services never crossed), the same routes the data
//! plane installs. A service with no link of its own is attached to its gateway by an implicit
//! unshaped link, which adds no hop.
//!
//! A link with a service end is one link per replica: its hops are "per replica" and resolved to
//! the replica's own link instance when a message is bound to a replica.

use crate::model::route::{Graph, Vertex};
use crate::scenario::types::{LinkEnd, Scenario};

pub use crate::model::route::Dir;

/// One hop of a route: the declared link (index into `Scenario::links`) and the direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    pub link: usize,
    pub dir: Dir,
    /// The link has a service end: resolve it to the replica's own instance.
    pub per_replica: bool,
}

pub struct Topology {
    graph: Graph,
}

impl Topology {
    pub fn new(s: &Scenario) -> Topology {
        Topology { graph: s.graph() }
    }

    /// Hops from node `from` to node `to`; None if they are not connected.
    pub fn node_route(&self, s: &Scenario, from: &str, to: &str) -> Option<Vec<Hop>> {
        self.route(s, s.node_vertex(from), s.node_vertex(to))
    }

    /// Hops from the gateway of `service` to any of its replicas. Empty when the service has no
    /// link of its own (the implicit unshaped link); None if links exist but none reaches the
    /// gateway.
    pub fn service_route(&self, s: &Scenario, service: usize) -> Option<Vec<Hop>> {
        let target = Vertex::Service(service);
        if self.graph.links_of(target).is_empty() {
            return Some(Vec::new());
        }
        self.route(s, s.node_vertex(&s.services[service].gateway), target)
    }

    fn route(&self, s: &Scenario, from: Vertex, to: Vertex) -> Option<Vec<Hop>> {
        let steps = self.graph.path(from, to)?;
        Some(
            steps
                .iter()
                .map(|step| Hop {
                    link: step.link,
                    dir: step.dir,
                    per_replica: s.links[step.link]
                        .between
                        .iter()
                        .any(|e| matches!(e, LinkEnd::Service(_))),
                })
                .collect(),
        )
    }
}

/// The hops of `route` walked backwards (the reply path).
pub fn reversed(route: &[Hop]) -> Vec<Hop> {
    route
        .iter()
        .rev()
        .map(|h| Hop {
            dir: h.dir.flip(),
            ..*h
        })
        .collect()
}
