//! Routes through a topology: the one definition of "the route from A to B" that the simulator's
//! hops and the data plane's next-hop routes are both read from.
//!
//! The graph's vertices are nodes and services (a service vertex stands for each of its
//! replicas); its edges are the declared links, in declaration order. Guarantees:
//!
//! - **Shortest by hop count.** Every route is a shortest path among those whose interior
//!   vertices are nodes: a service is a path's end, never crossed.
//! - **Ties go to the earlier link.** Walking from the source, each step takes the first link
//!   (in declaration order) of the current vertex that lies on a shortest path. So the route from
//!   A to B is the first hop from A towards B followed by the route from that hop to B, which is
//!   what hop-by-hop forwarding tables built from [`Graph::next_hop`] deliver.
//! - **Towards a set.** Distances can be taken to several targets at once (a prefix attached to
//!   both ends of a link): the route then ends at the nearest of them.

use std::collections::VecDeque;

/// A vertex: a node or a service, by its index among the nodes or the services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Vertex {
    Node(usize),
    Service(usize),
}

/// Which way a route crosses a link: `Forward` goes from the link's first end to its second.
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

/// One step of a route: across link `link` (its declaration index) in direction `dir`, to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub link: usize,
    pub dir: Dir,
    pub to: Vertex,
}

/// Hop counts towards a set of targets, per vertex; `None` where no route reaches them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distances {
    hops: Vec<Option<u32>>,
}

/// The topology as a graph, with the links of each vertex in declaration order.
#[derive(Clone, Debug)]
pub struct Graph {
    nodes: usize,
    /// Per vertex (nodes first, then services): the steps leaving it, in link order.
    adjacency: Vec<Vec<Step>>,
}

impl Graph {
    /// A graph of `nodes` nodes and `services` services with `links` as its edges, the i-th link
    /// going from its first end to its second. Panics on a vertex out of range.
    pub fn new(
        nodes: usize,
        services: usize,
        links: impl IntoIterator<Item = [Vertex; 2]>,
    ) -> Graph {
        let mut g = Graph {
            nodes,
            adjacency: vec![Vec::new(); nodes + services],
        };
        for (link, [a, b]) in links.into_iter().enumerate() {
            let (ia, ib) = (g.index(a), g.index(b));
            g.adjacency[ia].push(Step {
                link,
                dir: Dir::Forward,
                to: b,
            });
            g.adjacency[ib].push(Step {
                link,
                dir: Dir::Reverse,
                to: a,
            });
        }
        g
    }

    fn index(&self, v: Vertex) -> usize {
        let i = match v {
            Vertex::Node(n) => n,
            Vertex::Service(s) => self.nodes + s,
        };
        assert!(i < self.adjacency.len(), "{v:?} is not in the graph");
        i
    }

    /// The steps leaving `v`, one per link it is an end of, in link order.
    pub fn links_of(&self, v: Vertex) -> &[Step] {
        &self.adjacency[self.index(v)]
    }

    /// Hop counts from every vertex to the nearest of `targets`. A service that is not a target
    /// gets none: routes do not cross services.
    pub fn distances(&self, targets: &[Vertex]) -> Distances {
        let mut hops = vec![None; self.adjacency.len()];
        let mut queue = VecDeque::new();
        for &t in targets {
            let i = self.index(t);
            if hops[i].is_none() {
                hops[i] = Some(0);
                queue.push_back(i);
            }
        }
        while let Some(v) = queue.pop_front() {
            let d = hops[v].expect("queued vertices have a distance");
            for step in &self.adjacency[v] {
                let w = self.index(step.to);
                if hops[w].is_none() && matches!(step.to, Vertex::Node(_)) {
                    hops[w] = Some(d + 1);
                    queue.push_back(w);
                }
            }
        }
        Distances { hops }
    }

    /// The hop count from `v` in `d`.
    pub fn distance(&self, d: &Distances, v: Vertex) -> Option<u32> {
        d.hops[self.index(v)]
    }

    /// The first step from `from` on a route to the targets of `d`: its first link that leads one
    /// hop closer. None at a target, or where the targets are unreachable.
    pub fn next_hop(&self, from: Vertex, d: &Distances) -> Option<Step> {
        let here = self.distance(d, from)?;
        self.links_of(from)
            .iter()
            .find(|s| self.distance(d, s.to).is_some_and(|h| h + 1 == here))
            .copied()
    }

    /// The route from `from` to `to`: empty when they are the same, None when no route exists.
    pub fn path(&self, from: Vertex, to: Vertex) -> Option<Vec<Step>> {
        let d = self.distances(&[to]);
        self.distance(&d, from)?;
        let mut steps = Vec::new();
        let mut at = from;
        while let Some(step) = self.next_hop(at, &d) {
            steps.push(step);
            at = step.to;
        }
        Some(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Vertex::{Node as N, Service as S};

    fn links(p: &[Step]) -> Vec<(usize, Dir)> {
        p.iter().map(|s| (s.link, s.dir)).collect()
    }

    #[test]
    fn shortest_path_wins_over_the_earlier_longer_one() {
        // 0-1-2-3 and a direct 0-3 declared last.
        let g = Graph::new(
            4,
            0,
            [[N(0), N(1)], [N(1), N(2)], [N(2), N(3)], [N(0), N(3)]],
        );
        assert_eq!(links(&g.path(N(0), N(3)).unwrap()), [(3, Dir::Forward)]);
        assert_eq!(links(&g.path(N(3), N(1)).unwrap()).len(), 2);
        assert_eq!(g.path(N(2), N(2)).unwrap(), []);
    }

    #[test]
    fn ties_go_to_the_earlier_link_and_directions_follow_declaration() {
        // A diamond 0-{1,2}-3 where the link via 2 is declared first, plus a parallel 0-2.
        let g = Graph::new(
            4,
            0,
            [
                [N(2), N(0)],
                [N(0), N(1)],
                [N(1), N(3)],
                [N(3), N(2)],
                [N(0), N(2)],
            ],
        );
        let p = g.path(N(0), N(3)).unwrap();
        assert_eq!(links(&p), [(0, Dir::Reverse), (3, Dir::Reverse)]);
        assert_eq!(p[0].to, N(2));
        // From 3 the first link towards 0 is link 2 (via 1).
        assert_eq!(
            links(&g.path(N(3), N(0)).unwrap()),
            [(2, Dir::Reverse), (1, Dir::Reverse)]
        );
    }

    #[test]
    fn services_are_ends_never_crossed() {
        // 0 - svc0 - 1 is the only connection between the nodes.
        let g = Graph::new(2, 1, [[N(0), S(0)], [S(0), N(1)]]);
        assert_eq!(g.path(N(0), N(1)), None);
        assert_eq!(links(&g.path(N(1), S(0)).unwrap()), [(1, Dir::Reverse)]);
        let d = g.distances(&[N(1)]);
        assert_eq!(g.distance(&d, S(0)), None);
        assert_eq!(g.next_hop(N(0), &d), None);
    }

    #[test]
    fn distances_to_a_set_reach_the_nearest() {
        // A line 0-1-2-3-4; targets {0, 4}.
        let g = Graph::new(5, 0, (0..4).map(|i| [N(i), N(i + 1)]));
        let d = g.distances(&[N(0), N(4)]);
        let hops: Vec<_> = (0..5).map(|i| g.distance(&d, N(i))).collect();
        assert_eq!(hops, [Some(0), Some(1), Some(2), Some(1), Some(0)]);
        assert_eq!(g.next_hop(N(2), &d).unwrap().to, N(1));
        assert_eq!(g.next_hop(N(3), &d).unwrap().to, N(4));
        assert_eq!(g.next_hop(N(4), &d), None);
    }
}
