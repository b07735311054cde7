//! The network of a scenario as a pure desired state: namespaces, veth pairs, addresses, routes,
//! shaping, service addresses and policy filters.
//!
//! `Plan::build` touches nothing: it maps a validated [`Scenario`], a run id and an address block
//! to names and numbers, so it is unit-tested without root. Guarantees:
//!
//! - **Names.** Node `n` of run `r` lives in network namespace `sdnbed-r-n`; replica `i` of
//!   service `s` in `sdnbed-r-s-i`. Interface names fit IFNAMSIZ (15 bytes) and are unique in
//!   their namespace: `e<i>-<peer>` for the i-th node link, `v<k>r<slot>-<service>` on a node for
//!   a replica of attachment `k`, the peer's name truncated to fit. Interface indexes are chosen
//!   here too (the kernel accepts a requested ifindex), so no request needs a lookup.
//! - **Addresses.** Every veth is a /31 (RFC 3021) inside the run's block, so blocks of
//!   concurrent runs never overlap. Each service attachment (a `[[link]]` with a service end, or
//!   the implicit unshaped link of a service without links to its gateway) owns an aligned pool
//!   of `capacity` /31s, one per replica slot: in slot `s` the node side is `pool + 2s` and the
//!   replica `pool + 2s + 1`. Each service's virtual IP is a /32 on its gateway's loopback.
//! - **Routes.** A node with one node link uses a default route through it; a node with more
//!   gets one route per prefix it is not attached to, through the first neighbour (in link
//!   order) on a shortest path: the next hop of [`crate::model::route`], whose routes the
//!   simulator follows too. Replicas never forward: services are always path ends.
//!   Gateways and nodes with two or more links forward.
//! - **Policies** follow Kubernetes NetworkPolicy (ingress): a node or service named as some
//!   policy's `to` is *selected*; a selected target accepts only new connections from a listed
//!   source on a listed port (all ports when the list is empty), plus replies to its own
//!   connections. Filters are enforced at the destination (the node's or each replica's
//!   namespace, like a CNI enforces at the pod), so they hold on every path, whether or not it
//!   crosses a gateway.
//!
//! This file holds the plan's types, names and interfaces, and `Plan::build`, which calls on
//! `addr` (prefixes, block size, pool layout), `routes` (routes from the routing graph) and
//! `policy` (allow lists, probe pairs).

mod addr;
mod policy;
mod routes;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::model::link::LinkParams;
use crate::scenario::types::{EmulatorChoice, LinkEnd, NodeKind, Scenario};

use self::addr::{attachments_of, capacity, pools};
pub use self::addr::{block_size, default_pool, Ipv4Net};
pub use self::policy::{Allow, Source};

/// Longest interface name Linux accepts (IFNAMSIZ − 1).
pub const IFNAMSIZ: usize = 15;
/// First interface index used for node links in a namespace (1 is `lo`).
const IFINDEX_NODE_LINKS: u32 = 100;
/// First interface index for replica veths on a node; attachment `k` uses `base + k × 2^16`.
const IFINDEX_REPLICAS: u32 = 1 << 20;
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("`{0}` cannot be used in names (only a-z, 0-9 and `-`)")]
    BadName(String),
    #[error("address block {block} is too small: the scenario needs {need} addresses")]
    BlockTooSmall { block: Ipv4Net, need: u64 },
    #[error("link between services `{0}` and `{1}`: a link needs at least one node end")]
    ServiceToService(String, String),
    #[error("`{0}` is not an IPv4 network (write e.g. 198.18.0.0/15)")]
    BadNet(String),
    #[error("service `{service}` has no replica slot left (capacity {capacity})")]
    NoSlot { service: String, capacity: u32 },
}

/// One interface in a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// The node or replica at the other end.
    pub peer: String,
    pub peer_addr: Ipv4Addr,
}

/// `ip route add DST via VIA` (DST None: the default route).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub dst: Option<Ipv4Net>,
    pub via: Ipv4Addr,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodePlan {
    pub name: String,
    #[serde(serialize_with = "ser_kind")]
    pub kind: NodeKind,
    pub netns: String,
    pub forwarding: bool,
    /// Node links only, in link order; replica veths are added at run time.
    pub ifaces: Vec<Iface>,
    pub routes: Vec<Route>,
    /// Virtual IPs of the services steered here (on `lo`).
    pub vips: Vec<Ipv4Addr>,
}

fn ser_kind<S: serde::Serializer>(k: &NodeKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match k {
        NodeKind::Client => "client",
        NodeKind::Gateway => "gateway",
        NodeKind::Host => "host",
    })
}

/// One end of a node link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndRef {
    /// Index into `Plan::nodes`.
    pub node: usize,
    /// Index into that node's `ifaces`.
    pub iface: usize,
}

/// A veth pair between two nodes, for scenario link `link`.
#[derive(Clone, Debug)]
pub struct LinkPlan {
    pub link: usize,
    pub ends: [EndRef; 2],
    pub params: LinkParams,
    /// The same parameters apply to each direction, shaped on the egress of each end.
    pub emulator: EmulatorChoice,
}

/// Where a service's replicas plug in: one veth per replica to `node`.
#[derive(Clone, Debug)]
pub struct Attachment {
    /// Scenario link index; None for the implicit link of a service without links.
    pub link: Option<usize>,
    /// Index into `Plan::nodes`.
    pub node: usize,
    /// Global attachment number (names and interface indexes on the node).
    pub number: usize,
    pub pool: Ipv4Net,
    pub capacity: u32,
    pub params: LinkParams,
    pub emulator: EmulatorChoice,
}

/// A route a replica installs, through attachment `via` (index into `attachments`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaRoute {
    pub dst: Option<Ipv4Net>,
    pub via: usize,
}

#[derive(Clone, Debug)]
pub struct ServicePlan {
    pub name: String,
    /// Index into `Plan::nodes`.
    pub gateway: usize,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub attachments: Vec<Attachment>,
    pub routes: Vec<ReplicaRoute>,
}

/// One veth of a replica, as realised in slot `slot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaVeth {
    pub attachment: usize,
    /// In the replica's namespace.
    pub iface: Iface,
    /// On the node.
    pub node_iface: Iface,
}

/// A replica's namespace and interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaPlan {
    pub netns: String,
    pub veths: Vec<ReplicaVeth>,
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub run: String,
    pub block: Ipv4Net,
    pub nodes: Vec<NodePlan>,
    pub links: Vec<LinkPlan>,
    pub services: Vec<ServicePlan>,
    /// Per selected target (node or service name): what it accepts.
    pub filters: BTreeMap<String, Vec<Allow>>,
}

/// `prefix` followed by as much of `name` as fits in IFNAMSIZ.
fn ifname(prefix: &str, name: &str) -> String {
    let room = IFNAMSIZ.saturating_sub(prefix.len());
    let mut s = prefix.to_string();
    s.extend(name.chars().take(room));
    s
}

fn check_name(s: &str) -> Result<(), PlanError> {
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(PlanError::BadName(s.to_string()));
    }
    Ok(())
}

impl Plan {
    /// Builds the plan of `sc` for run `run` inside `block` (which must hold
    /// [`block_size`] addresses).
    pub fn build(sc: &Scenario, run: &str, block: Ipv4Net) -> Result<Plan, PlanError> {
        check_name(run)?;
        for n in &sc.nodes {
            check_name(&n.name)?;
        }
        for s in &sc.services {
            check_name(&s.name)?;
        }
        let need = block_size(sc)?;
        if block.size() < need {
            return Err(PlanError::BlockTooSmall { block, need });
        }
        let node_ix: BTreeMap<&str, usize> = sc
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let mut nodes: Vec<NodePlan> = sc
            .nodes
            .iter()
            .map(|n| NodePlan {
                name: n.name.clone(),
                kind: n.kind,
                netns: format!("sdnbed-{run}-{}", n.name),
                forwarding: n.kind == NodeKind::Gateway,
                ifaces: Vec::new(),
                routes: Vec::new(),
                vips: Vec::new(),
            })
            .collect();

        // Layout, largest first so every piece stays aligned: pools, then /31s, then VIPs.
        let atts = attachments_of(sc)?;
        let mut next = 0u64;
        let mut services: Vec<ServicePlan> = sc
            .services
            .iter()
            .map(|s| ServicePlan {
                name: s.name.clone(),
                gateway: node_ix[s.gateway.as_str()],
                vip: Ipv4Addr::UNSPECIFIED,
                port: s.port,
                attachments: Vec::new(),
                routes: Vec::new(),
            })
            .collect();
        let pools = pools(sc, &atts, block, &mut next)?;
        for (number, ((si, link, node), pool)) in atts.iter().zip(pools).enumerate() {
            let params = link.map(|l| sc.links[l].params.clone()).unwrap_or_default();
            let emulator = link.map(|l| sc.links[l].emulator).unwrap_or_default();
            services[*si].attachments.push(Attachment {
                link: *link,
                node: node_ix[node.as_str()],
                number,
                pool,
                capacity: capacity(sc.services[*si].replicas),
                params,
                emulator,
            });
        }

        let mut links = Vec::new();
        for (li, l) in sc.links.iter().enumerate() {
            let (a, b) = match &l.between {
                [LinkEnd::Node(a), LinkEnd::Node(b)] => (node_ix[a.as_str()], node_ix[b.as_str()]),
                _ => continue,
            };
            let (addr_a, addr_b) = (block.nth(next), block.nth(next + 1));
            next += 2;
            let ia = nodes[a].ifaces.len();
            let ib = nodes[b].ifaces.len();
            let (name_a, name_b) = (nodes[a].name.clone(), nodes[b].name.clone());
            nodes[a].ifaces.push(Iface {
                name: ifname(&format!("e{ia}-"), &name_b),
                ifindex: IFINDEX_NODE_LINKS + ia as u32,
                addr: addr_a,
                prefix_len: 31,
                peer: name_b,
                peer_addr: addr_b,
            });
            nodes[b].ifaces.push(Iface {
                name: ifname(&format!("e{ib}-"), &name_a),
                ifindex: IFINDEX_NODE_LINKS + ib as u32,
                addr: addr_b,
                prefix_len: 31,
                peer: name_a,
                peer_addr: addr_a,
            });
            links.push(LinkPlan {
                link: li,
                ends: [EndRef { node: a, iface: ia }, EndRef { node: b, iface: ib }],
                params: l.params.clone(),
                emulator: l.emulator,
            });
        }
        for s in &mut services {
            s.vip = block.nth(next);
            next += 1;
            nodes[s.gateway].vips.push(s.vip);
        }

        routes::install(sc, &mut nodes, &links, &mut services)?;

        let mut plan = Plan {
            run: run.to_string(),
            block,
            nodes,
            links,
            services,
            filters: BTreeMap::new(),
        };
        plan.add_filters(sc);
        Ok(plan)
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.name == name)
    }
}

impl ServicePlan {
    /// The namespace, veths and routes of replica `id` in slot `slot`.
    pub fn replica(&self, plan: &Plan, id: u32, slot: u32) -> Result<ReplicaPlan, PlanError> {
        let netns = format!("sdnbed-{}-{}-{id}", plan.run, self.name);
        let rname = format!("{}-{id}", self.name);
        let mut veths = Vec::new();
        for (k, a) in self.attachments.iter().enumerate() {
            if slot >= a.capacity {
                return Err(PlanError::NoSlot {
                    service: self.name.clone(),
                    capacity: a.capacity,
                });
            }
            let node = &plan.nodes[a.node];
            let node_addr = a.pool.nth(2 * u64::from(slot));
            let addr = a.pool.nth(2 * u64::from(slot) + 1);
            veths.push(ReplicaVeth {
                attachment: k,
                iface: Iface {
                    name: ifname(&format!("e{k}-"), &node.name),
                    ifindex: IFINDEX_NODE_LINKS + k as u32,
                    addr,
                    prefix_len: 31,
                    peer: node.name.clone(),
                    peer_addr: node_addr,
                },
                node_iface: Iface {
                    name: ifname(&format!("v{}r{slot}-", a.number), &self.name),
                    ifindex: IFINDEX_REPLICAS + (a.number as u32) * (1 << 16) + slot,
                    addr: node_addr,
                    prefix_len: 31,
                    peer: rname.clone(),
                    peer_addr: addr,
                },
            });
        }
        let routes = self
            .routes
            .iter()
            .map(|r| Route {
                dst: r.dst,
                via: veths[r.via].iface.peer_addr,
            })
            .collect();
        Ok(ReplicaPlan {
            netns,
            veths,
            routes,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::time::Duration;
    use crate::scenario::types::*;
    use crate::scenario::units::BitRate;

    pub(crate) fn node(name: &str, kind: NodeKind) -> Node {
        Node {
            name: name.into(),
            kind,
        }
    }

    pub(crate) fn link(a: LinkEnd, b: LinkEnd, bw: Option<u64>) -> Link {
        Link {
            between: [a, b],
            params: LinkParams {
                bandwidth: bw.map(BitRate),
                ..Default::default()
            },
            emulator: EmulatorChoice::Auto,
            capture: false,
        }
    }

    pub(crate) fn service(name: &str, replicas: u32, port: u16, gateway: &str) -> Service {
        Service {
            name: name.into(),
            replicas,
            port,
            gateway: gateway.into(),
            version: "v1".into(),
            workers: 1,
            readiness: Readiness {
                initial_delay: Duration::ZERO,
                period: Duration::from_millis(100),
                failure_threshold: 3,
            },
            termination: Termination {
                pre_stop: Duration::ZERO,
                grace: Duration::from_secs(1),
            },
            cpu: None,
            memory: None,
            versions: vec![],
        }
    }

    pub(crate) fn scenario(
        nodes: Vec<Node>,
        services: Vec<Service>,
        links: Vec<Link>,
        policies: Vec<Policy>,
    ) -> Scenario {
        Scenario {
            name: "t".into(),
            description: String::new(),
            seed: 1,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            window: Duration::from_millis(100),
            backend: BackendKind::Netns,
            nodes,
            services,
            links,
            policies,
            workloads: vec![],
            rollout: None,
            events: vec![],
        }
    }

    pub(super) fn n(s: &str) -> LinkEnd {
        LinkEnd::Node(s.into())
    }

    /// client — gw — host, gw — db, web (service, linked to gw), api (service, no link).
    pub(super) fn sample() -> Scenario {
        scenario(
            vec![
                node("client", NodeKind::Client),
                node("gw", NodeKind::Gateway),
                node("host", NodeKind::Host),
                node("db", NodeKind::Host),
            ],
            vec![service("web", 4, 8080, "gw"), service("api", 2, 9000, "gw")],
            vec![
                link(n("client"), n("gw"), Some(100_000_000)),
                link(n("gw"), n("host"), None),
                link(n("host"), n("db"), None),
                link(LinkEnd::Service("web".into()), n("gw"), Some(10_000_000)),
            ],
            vec![Policy {
                name: "client-to-web".into(),
                from: vec!["client".into()],
                to: "web".into(),
                ports: vec![8080],
            }],
        )
    }

    pub(super) fn block() -> Ipv4Net {
        "198.18.4.0/24".parse().unwrap()
    }

    #[test]
    fn names_fit_and_are_unique_per_namespace() {
        let mut sc = sample();
        sc.nodes.push(node("a-very-long-node-name", NodeKind::Host));
        sc.links
            .push(link(n("gw"), n("a-very-long-node-name"), None));
        let p = Plan::build(&sc, "r1", "198.18.0.0/23".parse().unwrap()).unwrap();
        let gw = p.node("gw").unwrap();
        assert_eq!(gw.netns, "sdnbed-r1-gw");
        let names: Vec<&str> = gw.ifaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["e0-client", "e1-host", "e2-a-very-long-"]);
        for n in &p.nodes {
            for i in &n.ifaces {
                assert!(i.name.len() <= IFNAMSIZ);
            }
        }
        let web = p.service("web").unwrap();
        let r = web.replica(&p, 12345, 15).unwrap();
        assert_eq!(r.netns, "sdnbed-r1-web-12345");
        assert_eq!(r.veths[0].node_iface.name, "v0r15-web");
        assert_eq!(r.veths[0].iface.name, "e0-gw");
        assert!(web.replica(&p, 16, 16).is_err(), "capacity is 16 slots");
    }

    #[test]
    fn addresses_are_disjoint_and_inside_the_block() {
        let sc = sample();
        let p = Plan::build(&sc, "r1", block()).unwrap();
        let mut all: Vec<Ipv4Addr> = p
            .nodes
            .iter()
            .flat_map(|n| n.ifaces.iter().map(|i| i.addr))
            .collect();
        for s in &p.services {
            all.push(s.vip);
            for slot in 0..16 {
                for v in s.replica(&p, slot, slot).unwrap().veths {
                    all.push(v.iface.addr);
                    all.push(v.node_iface.addr);
                    // Both ends share one /31.
                    assert_eq!(
                        Ipv4Net::new(v.iface.addr, 31).unwrap(),
                        Ipv4Net::new(v.node_iface.addr, 31).unwrap()
                    );
                }
            }
        }
        assert!(all.iter().all(|a| block().contains(*a)));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "an address is used twice");
        // web and api: 16 slots each = 32 addresses; 3 node links = 6; 2 VIPs.
        assert_eq!(block_size(&sc).unwrap(), 256);
        let pools: Vec<String> = p
            .services
            .iter()
            .map(|s| s.attachments[0].pool.to_string())
            .collect();
        assert_eq!(pools, ["198.18.4.0/27", "198.18.4.32/27"]);
        assert!(!pools[0]
            .parse::<Ipv4Net>()
            .unwrap()
            .overlaps(&pools[1].parse().unwrap()));
    }

    #[test]
    fn block_too_small_and_bad_names_are_errors() {
        let sc = sample();
        let small: Ipv4Net = "198.18.0.0/26".parse().unwrap();
        assert!(matches!(
            Plan::build(&sc, "r1", small),
            Err(PlanError::BlockTooSmall { need: 256, .. })
        ));
        assert!(Plan::build(&sc, "R/1", block()).is_err());
        assert!("198.18.0.1/15".parse::<Ipv4Net>().is_err());
    }
}
