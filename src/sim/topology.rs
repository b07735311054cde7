//! Routes through the scenario's topology.
//!
//! The graph's vertices are the nodes plus one vertex per service (standing for each of its
//! replicas); its edges are the `[[link]]`s. A service with no link of its own is attached to its
//! gateway by an implicit unshaped link. Routes are shortest paths by hop count (ties broken by
//! the order of `[[link]]` in the file); a service vertex is never crossed, only reached.
//!
//! A link with a service end is one link per replica: its hops are "per replica" and resolved to
//! the replica's own link instance when a message is bound to a replica.

use std::collections::VecDeque;

use crate::scenario::types::{LinkEnd, Scenario};

/// Which way a message crosses a link: `Forward` goes from `between[0]` to `between[1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Forward,
    Reverse,
}

impl Dir {
    pub fn index(self) -> usize {
        match self {
            Dir::Forward => 0,
            Dir::Reverse => 1,
        }
    }
    pub fn flip(self) -> Dir {
        match self {
            Dir::Forward => Dir::Reverse,
            Dir::Reverse => Dir::Forward,
        }
    }
}

/// One hop of a route: the declared link (index into `Scenario::links`) and the direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    pub link: usize,
    pub dir: Dir,
    /// The link has a service end: resolve it to the replica's own instance.
    pub per_replica: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Vertex {
    Node(usize),
    Service(usize),
}

pub struct Topology {
    vertices: Vec<Vertex>,
    /// For each vertex: (neighbour vertex index, link index, direction from this vertex).
    adjacency: Vec<Vec<(usize, usize, Dir)>>,
}

impl Topology {
    pub fn new(s: &Scenario) -> Topology {
        let mut vertices: Vec<Vertex> = (0..s.nodes.len()).map(Vertex::Node).collect();
        vertices.extend((0..s.services.len()).map(Vertex::Service));
        let mut adjacency = vec![Vec::new(); vertices.len()];
        let index_of = |end: &LinkEnd| -> usize {
            match end {
                LinkEnd::Node(n) => s
                    .nodes
                    .iter()
                    .position(|x| &x.name == n)
                    .expect("validated"),
                LinkEnd::Service(n) => {
                    s.nodes.len()
                        + s.services
                            .iter()
                            .position(|x| &x.name == n)
                            .expect("validated")
                }
            }
        };
        for (li, link) in s.links.iter().enumerate() {
            let (a, b) = (index_of(&link.between[0]), index_of(&link.between[1]));
            adjacency[a].push((b, li, Dir::Forward));
            adjacency[b].push((a, li, Dir::Reverse));
        }
        Topology {
            vertices,
            adjacency,
        }
    }

    fn node_vertex(s: &Scenario, name: &str) -> usize {
        s.nodes
            .iter()
            .position(|x| x.name == name)
            .expect("validated")
    }

    /// Hops from node `from` to node `to`; None if they are not connected.
    pub fn node_route(&self, s: &Scenario, from: &str, to: &str) -> Option<Vec<Hop>> {
        self.route(s, Self::node_vertex(s, from), Self::node_vertex(s, to))
    }

    /// Hops from the gateway of `service` to any of its replicas. Empty when the service has no
    /// link of its own (the implicit unshaped link); None if links exist but none reaches the
    /// gateway.
    pub fn service_route(&self, s: &Scenario, service: usize) -> Option<Vec<Hop>> {
        let target = s.nodes.len() + service;
        if self.adjacency[target].is_empty() {
            return Some(Vec::new());
        }
        let gw = Self::node_vertex(s, &s.services[service].gateway);
        self.route(s, gw, target)
    }

    fn route(&self, s: &Scenario, from: usize, to: usize) -> Option<Vec<Hop>> {
        let mut prev: Vec<Option<(usize, usize, Dir)>> = vec![None; self.vertices.len()];
        let mut seen = vec![false; self.vertices.len()];
        let mut queue = VecDeque::from([from]);
        seen[from] = true;
        while let Some(v) = queue.pop_front() {
            if v == to {
                break;
            }
            // Only the destination may be a service vertex.
            if v != from && matches!(self.vertices[v], Vertex::Service(_)) {
                continue;
            }
            for &(w, link, dir) in &self.adjacency[v] {
                if !seen[w] {
                    seen[w] = true;
                    prev[w] = Some((v, link, dir));
                    queue.push_back(w);
                }
            }
        }
        if !seen[to] {
            return None;
        }
        let mut hops = Vec::new();
        let mut v = to;
        while v != from {
            let (p, link, dir) = prev[v].expect("on the BFS tree");
            let per_replica = s.links[link]
                .between
                .iter()
                .any(|e| matches!(e, LinkEnd::Service(_)));
            hops.push(Hop {
                link,
                dir,
                per_replica,
            });
            v = p;
        }
        hops.reverse();
        Some(hops)
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
