//! Routes of a plan: each node's and each replica's routes to every prefix, read from the
//! scenario's routing graph ([`crate::model::route`]), the routes the simulator follows too.

use std::collections::BTreeMap;

use crate::model::route::{Distances, Vertex};
use crate::scenario::types::Scenario;

use super::{Ipv4Net, LinkPlan, NodePlan, PlanError, ReplicaRoute, Route, ServicePlan};

/// Fills in the routes of `nodes` and `services` (whose interfaces, pools and VIPs are laid out)
/// and marks the nodes that forward.
pub(super) fn install(
    sc: &Scenario,
    nodes: &mut [NodePlan],
    links: &[LinkPlan],
    services: &mut [ServicePlan],
) -> Result<(), PlanError> {
    // Routes from the scenario's routing graph: the first link towards each prefix.
    let graph = sc.graph();
    let link_plan: BTreeMap<usize, &LinkPlan> = links.iter().map(|l| (l.link, l)).collect();
    // Every prefix and the nodes it is attached to.
    let mut prefixes: Vec<(Ipv4Net, Vec<usize>)> = Vec::new();
    for l in links {
        let [a, b] = &l.ends;
        let ia = &nodes[a.node].ifaces[a.iface];
        prefixes.push((Ipv4Net::new(ia.addr, 31)?, vec![a.node, b.node]));
    }
    for s in services.iter() {
        for a in &s.attachments {
            prefixes.push((a.pool, vec![a.node]));
        }
        prefixes.push((Ipv4Net::new(s.vip, 32)?, vec![s.gateway]));
    }
    let mut dist_cache: BTreeMap<Vec<usize>, Distances> = BTreeMap::new();
    let mut dist_to = |set: &Vec<usize>| -> Distances {
        dist_cache
            .entry(set.clone())
            .or_insert_with(|| {
                let targets: Vec<Vertex> = set.iter().map(|&n| Vertex::Node(n)).collect();
                graph.distances(&targets)
            })
            .clone()
    };
    for (v, node) in nodes.iter_mut().enumerate() {
        let node_links = node.ifaces.len();
        let n_atts = services
            .iter()
            .flat_map(|s| &s.attachments)
            .filter(|a| a.node == v)
            .count();
        if node_links + n_atts >= 2 {
            node.forwarding = true;
        }
        match node_links {
            0 => {}
            1 => {
                let ifc = &node.ifaces[0];
                let via = ifc.peer_addr;
                node.routes.push(Route { dst: None, via });
            }
            _ => {
                let mut routes = Vec::new();
                for (net, set) in &prefixes {
                    if set.contains(&v) {
                        continue;
                    }
                    let Some(step) = graph.next_hop(Vertex::Node(v), &dist_to(set)) else {
                        continue;
                    };
                    // A step between nodes crosses a node link, which leaves `v` from the
                    // end its direction starts at.
                    let iface = link_plan[&step.link].ends[step.dir.index()].iface;
                    routes.push(Route {
                        dst: Some(*net),
                        via: node.ifaces[iface].peer_addr,
                    });
                }
                node.routes = routes;
            }
        }
    }
    // Replica routes: default through the only attachment, else per prefix through the
    // attachment whose node is closest.
    for svc in services.iter_mut() {
        let atts: Vec<usize> = svc.attachments.iter().map(|a| a.node).collect();
        let routes = if atts.len() == 1 {
            vec![ReplicaRoute { dst: None, via: 0 }]
        } else {
            let mut r = Vec::new();
            for (net, set) in &prefixes {
                if svc.attachments.iter().any(|a| a.pool == *net) {
                    continue;
                }
                let d = dist_to(set);
                let best = (0..atts.len())
                    .filter_map(|k| Some((graph.distance(&d, Vertex::Node(atts[k]))?, k)))
                    .min_by_key(|&(hops, _)| hops);
                if let Some((_, k)) = best {
                    r.push(ReplicaRoute {
                        dst: Some(*net),
                        via: k,
                    });
                }
            }
            r
        };
        svc.routes = routes;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::tests::*;
    use super::super::*;
    use crate::scenario::types::*;

    #[test]
    fn routes_reach_every_prefix_by_shortest_paths() {
        let sc = sample();
        let p = Plan::build(&sc, "r1", block()).unwrap();
        // client has one link: a default route to gw.
        let client = p.node("client").unwrap();
        let gw = p.node("gw").unwrap();
        assert_eq!(
            client.routes,
            vec![Route {
                dst: None,
                via: gw.ifaces[0].addr
            }]
        );
        // gw is attached to everything except host—db: one route, via host.
        let host = p.node("host").unwrap();
        let hd = Ipv4Net::new(host.ifaces[1].addr, 31).unwrap();
        assert_eq!(
            gw.routes,
            vec![Route {
                dst: Some(hd),
                via: host.ifaces[0].addr
            }]
        );
        assert!(gw.forwarding && host.forwarding);
        assert!(!client.forwarding);
        // host: routes to client—gw, both pools and both VIPs, all via gw.
        assert_eq!(host.routes.len(), 5);
        assert!(host.routes.iter().all(|r| r.via == gw.ifaces[1].addr));
        // Follow next hops from db to the web VIP: db → host → gw, where the VIP lives.
        let vip = p.service("web").unwrap().vip;
        let mut at = "db";
        for _ in 0..4 {
            let nd = p.node(at).unwrap();
            if nd.vips.contains(&vip) {
                break;
            }
            let r = nd
                .routes
                .iter()
                .find(|r| r.dst.is_none_or(|d| d.contains(vip)))
                .unwrap();
            at = p
                .nodes
                .iter()
                .find(|m| m.ifaces.iter().any(|i| i.addr == r.via))
                .unwrap()
                .name
                .as_str();
        }
        assert_eq!(at, "gw");
        // A replica of web defaults to its gw end.
        let r = p.service("web").unwrap().replica(&p, 0, 0).unwrap();
        assert_eq!(
            r.routes,
            vec![Route {
                dst: None,
                via: r.veths[0].node_iface.addr
            }]
        );
    }

    /// Follows next hops from `from` towards `dst`; the node where it is attached, if reached.
    fn walk(p: &Plan, from: usize, dst: Ipv4Addr) -> Option<usize> {
        let mut at = from;
        for _ in 0..p.nodes.len() {
            let nd = &p.nodes[at];
            let attached = nd
                .ifaces
                .iter()
                .any(|i| Ipv4Net::new(i.addr, 31).unwrap().contains(dst))
                || nd.vips.contains(&dst)
                || p.services
                    .iter()
                    .flat_map(|s| &s.attachments)
                    .any(|a| a.node == at && a.pool.contains(dst));
            if attached {
                return Some(at);
            }
            let r = nd
                .routes
                .iter()
                .filter(|r| r.dst.is_none_or(|d| d.contains(dst)))
                .max_by_key(|r| r.dst.map_or(0, |d| d.prefix_len()))?;
            at = p
                .nodes
                .iter()
                .position(|m| m.ifaces.iter().any(|i| i.addr == r.via))?;
        }
        None
    }

    #[test]
    fn routes_are_complete_in_a_ring_with_a_tail() {
        // a — b — c — d — a (a ring) and d — e; web hangs off c.
        let names = ["a", "b", "c", "d", "e"];
        let sc = scenario(
            names.iter().map(|x| node(x, NodeKind::Host)).collect(),
            vec![service("web", 2, 80, "c")],
            vec![
                link(n("a"), n("b"), None),
                link(n("b"), n("c"), None),
                link(n("c"), n("d"), None),
                link(n("d"), n("a"), None),
                link(n("d"), n("e"), None),
                link(LinkEnd::Service("web".into()), n("c"), None),
            ],
            vec![],
        );
        let p = Plan::build(&sc, "r1", block()).unwrap();
        let web = p.service("web").unwrap();
        let mut targets: Vec<Ipv4Addr> = p
            .nodes
            .iter()
            .flat_map(|n| n.ifaces.iter().map(|i| i.addr))
            .collect();
        targets.push(web.vip);
        targets.push(web.replica(&p, 0, 3).unwrap().veths[0].iface.addr);
        for from in 0..p.nodes.len() {
            for &dst in &targets {
                assert!(
                    walk(&p, from, dst).is_some(),
                    "{} cannot reach {dst}",
                    p.nodes[from].name
                );
            }
        }
        // Shortest paths: e reaches b's side of a—b in 3 hops (e → d → a), not via c.
        let e = p.nodes.iter().position(|n| n.name == "e").unwrap();
        let d = p.node("d").unwrap();
        assert!(p.nodes[e].routes.iter().all(|r| r.via == d.ifaces[2].addr));
        let b_on_ab = p.node("b").unwrap().ifaces[0].addr;
        let via_d = d
            .routes
            .iter()
            .find(|r| r.dst.is_some_and(|x| x.contains(b_on_ab)))
            .unwrap();
        assert_eq!(via_d.via, p.node("a").unwrap().ifaces[1].addr);
    }
}
