//! Policies of a plan: the allow lists of Kubernetes NetworkPolicy (ingress) at each selected
//! target, and the connections to probe before a run (see the plan's guarantees on policies).

use crate::scenario::types::{Scenario, Target};

use super::{Ipv4Net, Plan};

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

impl Plan {
    /// Adds the allow list of every policy of `sc` to its target's filters. A selected
    /// service's filter also lets its own gateway through, as NetworkPolicy always allows a
    /// pod's own node: the gateway is where its replicas hang off, where readiness probes come
    /// from (the kubelet's, in Kubernetes), and it reaches them from its interfaces and VIPs.
    pub(super) fn add_filters(&mut self, sc: &Scenario) {
        for p in &sc.policies {
            let mut sources = Vec::new();
            for f in &p.from {
                sources.extend(self.sources_of(f));
            }
            self.filters.entry(p.to.clone()).or_default().push(Allow {
                policy: p.name.clone(),
                sources,
                ports: p.ports.clone(),
            });
        }
        let gateways: Vec<(String, usize)> = self
            .services
            .iter()
            .filter(|sp| self.filters.contains_key(&sp.name))
            .map(|sp| (sp.name.clone(), sp.gateway))
            .collect();
        for (svc, gw) in gateways {
            let node = &self.nodes[gw];
            let mut sources = self.sources_of(&node.name.clone());
            sources.extend(node.vips.iter().map(|&addr| Source {
                net: Ipv4Net { addr, len: 32 },
                parity: None,
            }));
            let allows = self.filters.get_mut(&svc).expect("selected");
            allows.push(Allow {
                policy: "own-gateway".into(),
                sources,
                ports: Vec::new(),
            });
        }
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
        if self
            .service(to)
            .is_some_and(|s| self.nodes[s.gateway].name == from)
        {
            return true;
        }
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

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;

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
}
