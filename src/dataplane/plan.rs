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

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Serialize;

use crate::model::link::LinkParams;
use crate::model::route::{Distances, Vertex};
use crate::scenario::types::{EmulatorChoice, LinkEnd, NodeKind, Scenario, Target};

/// Longest interface name Linux accepts (IFNAMSIZ − 1).
pub const IFNAMSIZ: usize = 15;
/// First interface index used for node links in a namespace (1 is `lo`).
const IFINDEX_NODE_LINKS: u32 = 100;
/// First interface index for replica veths on a node; attachment `k` uses `base + k × 2^16`.
const IFINDEX_REPLICAS: u32 = 1 << 20;
/// Smallest block a run takes from the pool (a /24).
const MIN_BLOCK: u64 = 256;

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

/// An IPv4 prefix, always normalised to its network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Ipv4Net, PlanError> {
        if len > 32 {
            return Err(PlanError::BadNet(format!("{addr}/{len}")));
        }
        let mask = Self::mask(len);
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }
    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len)
        }
    }
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.len)
    }
    /// The `i`-th address (no bounds check beyond the prefix: callers stay inside).
    pub fn nth(&self, i: u64) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(i as u32))
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.len) == u32::from(self.addr)
    }
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Net {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Self, PlanError> {
        let bad = || PlanError::BadNet(s.to_string());
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        let net = Ipv4Net::new(addr, len)?;
        if net.addr != addr {
            return Err(bad());
        }
        Ok(net)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The default address pool: the benchmarking range (RFC 2544).
pub fn default_pool() -> Ipv4Net {
    Ipv4Net {
        addr: Ipv4Addr::new(198, 18, 0, 0),
        len: 15,
    }
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

/// Who a packet comes from, for a policy: a prefix, optionally only its addresses of one parity
/// (replica addresses are the odd ones of a service pool, node-side addresses the even ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub net: Ipv4Net,
    pub parity: Option<u8>,
}

/// One allow rule at a selected target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    pub policy: String,
    pub sources: Vec<Source>,
    /// Empty: every port and protocol.
    pub ports: Vec<u16>,
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

/// Replica slots reserved per service attachment.
fn capacity(replicas: u32) -> u32 {
    (replicas.saturating_mul(4)).max(16).next_power_of_two()
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

/// The service attachments a scenario implies: (service index, scenario link or None, node name).
fn attachments_of(sc: &Scenario) -> Result<Vec<(usize, Option<usize>, String)>, PlanError> {
    let mut out = Vec::new();
    for (si, s) in sc.services.iter().enumerate() {
        let mut any = false;
        for (li, l) in sc.links.iter().enumerate() {
            let node = match (&l.between[0], &l.between[1]) {
                (LinkEnd::Service(a), LinkEnd::Service(b)) if *a == s.name || *b == s.name => {
                    return Err(PlanError::ServiceToService(a.clone(), b.clone()))
                }
                (LinkEnd::Service(a), LinkEnd::Node(n))
                | (LinkEnd::Node(n), LinkEnd::Service(a))
                    if *a == s.name =>
                {
                    n.clone()
                }
                _ => continue,
            };
            any = true;
            out.push((si, Some(li), node));
        }
        if !any {
            out.push((si, None, s.gateway.clone()));
        }
    }
    Ok(out)
}

/// Addresses the scenario needs from its block, and the block size (a power of two, ≥ 256).
pub fn block_size(sc: &Scenario) -> Result<u64, PlanError> {
    let node_links = sc
        .links
        .iter()
        .filter(|l| matches!(l.between, [LinkEnd::Node(_), LinkEnd::Node(_)]))
        .count() as u64;
    let mut need = 2 * node_links + sc.services.len() as u64;
    for (si, _, _) in attachments_of(sc)? {
        need += 2 * u64::from(capacity(sc.services[si].replicas));
    }
    Ok(need.max(MIN_BLOCK).next_power_of_two())
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
        let mut order: Vec<usize> = (0..atts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(capacity(sc.services[atts[i].0].replicas)));
        let mut pools = vec![None; atts.len()];
        for i in order {
            let cap = capacity(sc.services[atts[i].0].replicas);
            pools[i] = Some(Ipv4Net::new(
                block.nth(next),
                32 - (2 * cap).trailing_zeros() as u8,
            )?);
            next += 2 * u64::from(cap);
        }
        for (number, ((si, link, node), pool)) in atts.iter().zip(pools).enumerate() {
            let params = link.map(|l| sc.links[l].params.clone()).unwrap_or_default();
            let emulator = link.map(|l| sc.links[l].emulator).unwrap_or_default();
            services[*si].attachments.push(Attachment {
                link: *link,
                node: node_ix[node.as_str()],
                number,
                pool: pool.expect("every attachment got a pool"),
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

        // Routes from the scenario's routing graph: the first link towards each prefix.
        let graph = sc.graph();
        let link_plan: BTreeMap<usize, &LinkPlan> = links.iter().map(|l| (l.link, l)).collect();
        // Every prefix and the nodes it is attached to.
        let mut prefixes: Vec<(Ipv4Net, Vec<usize>)> = Vec::new();
        for l in &links {
            let [a, b] = &l.ends;
            let ia = &nodes[a.node].ifaces[a.iface];
            prefixes.push((Ipv4Net::new(ia.addr, 31)?, vec![a.node, b.node]));
        }
        for s in &services {
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

        let mut plan = Plan {
            run: run.to_string(),
            block,
            nodes,
            links,
            services,
            filters: BTreeMap::new(),
        };
        for p in &sc.policies {
            let mut sources = Vec::new();
            for f in &p.from {
                sources.extend(plan.sources_of(f));
            }
            plan.filters.entry(p.to.clone()).or_default().push(Allow {
                policy: p.name.clone(),
                sources,
                ports: p.ports.clone(),
            });
        }
        Ok(plan)
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The source addresses of a node or service, as policies match them.
    fn sources_of(&self, name: &str) -> Vec<Source> {
        let mut out = Vec::new();
        if let Some((i, n)) = self.nodes.iter().enumerate().find(|(_, n)| n.name == name) {
            for ifc in &n.ifaces {
                out.push(Source {
                    net: Ipv4Net {
                        addr: ifc.addr,
                        len: 32,
                    },
                    parity: None,
                });
            }
            for a in self.services.iter().flat_map(|s| &s.attachments) {
                if a.node == i {
                    out.push(Source {
                        net: a.pool,
                        parity: Some(0),
                    });
                }
            }
        } else if let Some(s) = self.service(name) {
            for a in &s.attachments {
                out.push(Source {
                    net: a.pool,
                    parity: Some(1),
                });
            }
        }
        out
    }

    /// Whether a new TCP connection from `from` to `to` on `port` is allowed by the policies
    /// (NetworkPolicy semantics; routing is assumed).
    pub fn allowed(&self, from: &str, to: &str, port: u16) -> bool {
        match self.filters.get(to) {
            None => true,
            Some(allows) => allows.iter().any(|a| {
                (a.ports.is_empty() || a.ports.contains(&port)) && self.filters_source(a, from)
            }),
        }
    }

    fn filters_source(&self, allow: &Allow, from: &str) -> bool {
        let mine = self.sources_of(from);
        !mine.is_empty() && mine.iter().all(|s| allow.sources.contains(s))
    }

    /// The (source, destination, port) triples the scenario implies, to probe before a run:
    /// every workload's path, and for every selected target each port some policy names (or
    /// the service port) from every node and service other than the target.
    pub fn probe_pairs(&self, sc: &Scenario) -> Vec<(String, String, u16)> {
        let mut out: Vec<(String, String, u16)> = Vec::new();
        for w in &sc.workloads {
            if let Target::Service(s) = &w.to {
                if let Some(sp) = self.service(s) {
                    out.push((w.from.clone(), s.clone(), sp.port));
                }
            }
        }
        let names: Vec<&str> = self
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .chain(self.services.iter().map(|s| s.name.as_str()))
            .collect();
        for (target, allows) in &self.filters {
            let mut ports: Vec<u16> = allows.iter().flat_map(|a| a.ports.clone()).collect();
            if let Some(s) = self.service(target) {
                ports.push(s.port);
            }
            ports.sort_unstable();
            ports.dedup();
            for src in &names {
                if src == target {
                    continue;
                }
                for &p in &ports {
                    out.push((src.to_string(), target.clone(), p));
                }
            }
        }
        out.sort();
        out.dedup();
        out
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

    fn n(s: &str) -> LinkEnd {
        LinkEnd::Node(s.into())
    }

    /// client — gw — host, gw — db, web (service, linked to gw), api (service, no link).
    fn sample() -> Scenario {
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

    fn block() -> Ipv4Net {
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

    #[test]
    fn policies_select_targets() {
        let p = Plan::build(&sample(), "r1", block()).unwrap();
        assert!(p.allowed("client", "web", 8080));
        assert!(!p.allowed("client", "web", 9090));
        assert!(!p.allowed("host", "web", 8080));
        assert!(!p.allowed("api", "web", 8080));
        // Not selected by any policy: open.
        assert!(p.allowed("host", "api", 9000));
        let web_pool = p.service("web").unwrap().attachments[0].pool;
        let f = &p.filters["web"][0];
        assert_eq!(f.sources.len(), 1);
        assert_eq!(f.sources[0].net.prefix_len(), 32);
        assert!(!web_pool.contains(f.sources[0].net.addr()));
        let pairs = p.probe_pairs(&sample());
        // 4 nodes + api probe web:8080.
        assert_eq!(pairs.len(), 5);
        assert!(pairs.contains(&("client".into(), "web".into(), 8080)));
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
