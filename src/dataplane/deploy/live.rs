//! Live operations on a deployed run: replicas, steering, link state and shaping, counters,
//! processes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::dataplane::ledger::{self, Entry};
use crate::dataplane::netlink::netns_path;
use crate::dataplane::nft;
use crate::dataplane::ops::{ExecError, Executor, IfCounters, Op};
use crate::dataplane::plan::ReplicaPlan;
use crate::model::link::{LinkCounters, LinkParams};
use crate::model::rollout::ReplicaId;
use crate::model::steering::SteeringTable;

use super::signal::critical;
use super::{qdisc_op, Dataplane, DataplaneError, Replica, ReplicaInfo};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSample {
    /// Scenario link index (None: the implicit link of a service without links).
    pub link: Option<usize>,
    pub from: String,
    pub to: String,
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
}

impl LinkSample {
    /// As the link model counts (for `links.csv`, the same columns on every backend). The
    /// kernel reports one drop count per direction (queue overflow, and netem's random loss
    /// where netem is used); it is reported as queue drops.
    pub fn counters(&self) -> LinkCounters {
        LinkCounters {
            packets: self.packets,
            bytes: self.bytes,
            dropped_queue: self.drops,
            dropped_loss: 0,
            dropped_down: 0,
        }
    }
}

impl<E: Executor> Dataplane<E> {
    /// Adds replica `id` of `service`: its namespace, one veth per attachment (shaped like its
    /// link), addresses, routes, and its policy filter if a policy selects the service.
    pub fn add_replica(
        &mut self,
        service: &str,
        id: ReplicaId,
    ) -> Result<ReplicaInfo, DataplaneError> {
        let si = self.service_index(service)?;
        if self.replicas[si].contains_key(&id) {
            return Err(DataplaneError::DuplicateReplica {
                service: service.to_string(),
                id,
            });
        }
        let used: BTreeSet<u32> = self.replicas[si].values().map(|r| r.slot).collect();
        let slot = (0..)
            .find(|s| !used.contains(s))
            .expect("finitely many replicas");
        let sp = &self.plan.services[si];
        let rp = sp.replica(&self.plan, id, slot)?;
        let mut ops = vec![Op::NetnsAdd {
            name: rp.netns.clone(),
            adopt: None,
        }];
        for v in &rp.veths {
            let node = &self.plan.nodes[sp.attachments[v.attachment].node];
            ops.push(Op::VethAdd {
                ns: rp.netns.clone(),
                name: v.iface.name.clone(),
                ifindex: v.iface.ifindex,
                peer_ns: node.netns.clone(),
                peer_name: v.node_iface.name.clone(),
                peer_ifindex: v.node_iface.ifindex,
            });
        }
        for v in &rp.veths {
            let a = &sp.attachments[v.attachment];
            let node = &self.plan.nodes[a.node];
            ops.push(Op::AddrAdd {
                ns: rp.netns.clone(),
                ifindex: v.iface.ifindex,
                addr: v.iface.addr,
                prefix_len: v.iface.prefix_len,
            });
            ops.push(Op::AddrAdd {
                ns: node.netns.clone(),
                ifindex: v.node_iface.ifindex,
                addr: v.node_iface.addr,
                prefix_len: v.node_iface.prefix_len,
            });
            if let Some(params) = a.link.and_then(|l| self.params.get(&l)) {
                ops.extend(qdisc_op(&rp.netns, v.iface.ifindex, params));
                ops.extend(qdisc_op(&node.netns, v.node_iface.ifindex, params));
            }
            if a.link.is_some_and(|l| self.down.contains(&l)) {
                ops.push(Op::LinkSet {
                    ns: rp.netns.clone(),
                    ifindex: v.iface.ifindex,
                    up: false,
                });
            }
        }
        for r in &rp.routes {
            ops.push(Op::RouteAdd {
                ns: rp.netns.clone(),
                route: *r,
            });
        }
        if let Some(f) = self.plan.filters.get(service) {
            ops.push(Op::Nft {
                ns: rp.netns.clone(),
                script: nft::table(&[], Some(f)),
            });
        }
        let info = ReplicaInfo {
            netns: rp.netns.clone(),
            addr: rp.veths[0].iface.addr,
        };
        let _c = critical();
        self.replicas[si].insert(id, Replica { slot, plan: rp });
        if let Err(e) = self.run_ops(ops) {
            if let Some(r) = self.replicas[si].remove(&id) {
                let _ = self.exec.apply(&[Op::NetnsDel { name: r.plan.netns }]);
            }
            return Err(e);
        }
        Ok(info)
    }

    /// Removes replica `id` of `service` (its namespace, veths and processes). Take it out of
    /// steering first: connections still steered to it fail.
    pub fn remove_replica(&mut self, service: &str, id: ReplicaId) -> Result<(), DataplaneError> {
        let si = self.service_index(service)?;
        let r = self.replicas[si]
            .remove(&id)
            .ok_or_else(|| DataplaneError::UnknownReplica {
                service: service.to_string(),
                id,
            })?;
        // The kernel destroys a namespace (and its veths) asynchronously; deleting the node
        // ends first frees their names and indexes at once, so the slot can be reused now.
        let sp = &self.plan.services[si];
        let mut ops: Vec<Op> = r
            .plan
            .veths
            .iter()
            .map(|v| Op::LinkDel {
                ns: self.plan.nodes[sp.attachments[v.attachment].node]
                    .netns
                    .clone(),
                ifindex: v.node_iface.ifindex,
            })
            .collect();
        ops.push(Op::NetnsDel { name: r.plan.netns });
        let _c = critical();
        self.exec.apply(&ops)?;
        Ok(())
    }

    /// The replica's namespace and steering address.
    pub fn replica(&self, service: &str, id: ReplicaId) -> Option<ReplicaInfo> {
        let si = self.plan.services.iter().position(|s| s.name == service)?;
        let r = self.replicas[si].get(&id)?;
        Some(ReplicaInfo {
            netns: r.plan.netns.clone(),
            addr: r.plan.veths[0].iface.addr,
        })
    }

    /// linkemu hook: replica `id` of `service` as realised (namespace, veths, routes).
    pub fn replica_plan(&self, service: &str, id: ReplicaId) -> Option<&ReplicaPlan> {
        let si = self.plan.services.iter().position(|s| s.name == service)?;
        Some(&self.replicas[si].get(&id)?.plan)
    }

    /// Installs `table` as the service's steering, atomically (one nftables transaction).
    pub fn set_steering(
        &mut self,
        service: &str,
        table: &SteeringTable,
    ) -> Result<(), DataplaneError> {
        let si = self.service_index(service)?;
        let mut ranges = Vec::new();
        for r in table.ranges() {
            let addr = match r.replica {
                None => None,
                Some(id) => Some(
                    self.replicas[si]
                        .get(&id)
                        .ok_or_else(|| DataplaneError::UnknownReplica {
                            service: service.to_string(),
                            id,
                        })?
                        .plan
                        .veths[0]
                        .iface
                        .addr,
                ),
            };
            ranges.push((*r, addr));
        }
        let sp = &self.plan.services[si];
        let op = Op::Nft {
            ns: self.plan.nodes[sp.gateway].netns.clone(),
            script: nft::steering_update(si, &ranges),
        };
        let _c = critical();
        self.exec.apply(&[op])?;
        Ok(())
    }

    /// The veth ends of scenario link `link`: (namespace, ifindex) pairs, for node links and for
    /// every current replica on a service link.
    fn link_ends(&self, link: usize) -> Result<Vec<(String, u32)>, DataplaneError> {
        let mut out = Vec::new();
        for l in self.plan.links.iter().filter(|l| l.link == link) {
            for e in &l.ends {
                let n = &self.plan.nodes[e.node];
                out.push((n.netns.clone(), n.ifaces[e.iface].ifindex));
            }
        }
        for (si, s) in self.plan.services.iter().enumerate() {
            for (k, a) in s.attachments.iter().enumerate() {
                if a.link != Some(link) {
                    continue;
                }
                for r in self.replicas[si].values() {
                    let v = &r.plan.veths[k];
                    out.push((r.plan.netns.clone(), v.iface.ifindex));
                    out.push((self.plan.nodes[a.node].netns.clone(), v.node_iface.ifindex));
                }
            }
        }
        if out.is_empty() && !self.params.contains_key(&link) {
            return Err(DataplaneError::UnknownLink(link));
        }
        Ok(out)
    }

    /// Sets scenario link `link` up or down (`ip link set … up|down` on both ends of every veth
    /// of the link; replicas added while it is down start down).
    ///
    /// Setting a link down makes the kernel drop the routes through it (as on real hardware),
    /// so setting it up again re-installs the routes of the namespaces at its ends.
    pub fn set_link_up(&mut self, link: usize, up: bool) -> Result<(), DataplaneError> {
        let ends = self.link_ends(link)?;
        let mut ops: Vec<Op> = ends
            .iter()
            .map(|(ns, ifindex)| Op::LinkSet {
                ns: ns.clone(),
                ifindex: *ifindex,
                up,
            })
            .collect();
        if up {
            let touched: BTreeSet<&str> = ends.iter().map(|(ns, _)| ns.as_str()).collect();
            let node_routes = self.plan.nodes.iter().map(|n| (&n.netns, &n.routes));
            let replica_routes = self
                .replicas
                .iter()
                .flat_map(|m| m.values())
                .map(|r| (&r.plan.netns, &r.plan.routes));
            for (ns, routes) in node_routes.chain(replica_routes) {
                if touched.contains(ns.as_str()) {
                    ops.extend(routes.iter().map(|r| Op::RouteAdd {
                        ns: ns.clone(),
                        route: *r,
                    }));
                }
            }
        }
        let _c = critical();
        self.exec.apply(&ops)?;
        if up {
            self.down.remove(&link);
        } else {
            self.down.insert(link);
        }
        Ok(())
    }

    /// Replaces the shaping of scenario link `link` in both directions (new replicas get it
    /// too). Fails, changing nothing, if the new parameters need emulation.
    pub fn set_link_shaping(
        &mut self,
        link: usize,
        params: &LinkParams,
    ) -> Result<(), DataplaneError> {
        let ends = self.link_ends(link)?;
        let emu = self
            .plan
            .links
            .iter()
            .find(|l| l.link == link)
            .map(|l| l.emulator)
            .or_else(|| {
                self.plan
                    .services
                    .iter()
                    .flat_map(|s| &s.attachments)
                    .find(|a| a.link == Some(link))
                    .map(|a| a.emulator)
            })
            .unwrap_or_default();
        self.check_shaping(link, params, emu)?;
        let ops: Vec<Op> = ends
            .into_iter()
            .map(|(ns, ifindex)| {
                qdisc_op(&ns, ifindex, params).unwrap_or(Op::QdiscDel { ns, ifindex })
            })
            .collect();
        let _c = critical();
        self.exec.apply(&ops)?;
        self.params.insert(link, params.clone());
        Ok(())
    }

    /// Counters of every veth direction: node links first (plan order), then replica veths.
    pub fn link_counters(&mut self) -> Result<Vec<LinkSample>, DataplaneError> {
        let mut cache: BTreeMap<String, BTreeMap<u32, IfCounters>> = BTreeMap::new();
        let mut get = |exec: &mut E, ns: &str, ifindex: u32| -> Result<IfCounters, ExecError> {
            if !cache.contains_key(ns) {
                let c = exec.counters(ns)?.into_iter().collect();
                cache.insert(ns.to_string(), c);
            }
            Ok(cache[ns].get(&ifindex).copied().unwrap_or_default())
        };
        let mut out = Vec::new();
        let sample = |link, from: &str, to: &str, c: IfCounters| LinkSample {
            link,
            from: from.to_string(),
            to: to.to_string(),
            bytes: c.tx_bytes,
            packets: c.tx_packets,
            drops: c.tx_dropped,
        };
        for l in &self.plan.links {
            let [a, b] = &l.ends;
            let (na, nb) = (&self.plan.nodes[a.node], &self.plan.nodes[b.node]);
            let ca = get(&mut self.exec, &na.netns, na.ifaces[a.iface].ifindex)?;
            let cb = get(&mut self.exec, &nb.netns, nb.ifaces[b.iface].ifindex)?;
            out.push(sample(Some(l.link), &na.name, &nb.name, ca));
            out.push(sample(Some(l.link), &nb.name, &na.name, cb));
        }
        for (si, s) in self.plan.services.iter().enumerate() {
            for (k, a) in s.attachments.iter().enumerate() {
                let node = &self.plan.nodes[a.node];
                for (id, r) in &self.replicas[si] {
                    let v = &r.plan.veths[k];
                    let name = format!("{}-{id}", s.name);
                    let cr = get(&mut self.exec, &r.plan.netns, v.iface.ifindex)?;
                    let cn = get(&mut self.exec, &node.netns, v.node_iface.ifindex)?;
                    out.push(sample(a.link, &name, &node.name, cr));
                    out.push(sample(a.link, &node.name, &name, cn));
                }
            }
        }
        Ok(out)
    }

    /// The namespace file of node `node`.
    pub fn netns_path(&self, node: &str) -> Option<PathBuf> {
        self.plan.node(node).map(|n| netns_path(&n.netns))
    }

    /// Records a process started in one of the run's namespaces (e.g. a replica's server), so
    /// teardown and `sdnbed clean` stop it even if it has left the namespace.
    /// Signal-safe only inside the [`critical`] section that started the process (or use
    /// [`Dataplane::spawn`]).
    pub fn record_process(&mut self, pid: u32) -> Result<(), DataplaneError> {
        let _c = critical();
        let start = ledger::process_start(pid).unwrap_or(0);
        if let Some(l) = &mut self.ledger {
            l.record(&[Entry::Process { pid, start }])?;
        }
        Ok(())
    }

    /// Starts `cmd` (e.g. from [`command_in`](crate::dataplane::netlink::command_in)) and
    /// records the process, in one critical section: a signal either finds it in the ledger or
    /// stops the run before it starts.
    pub fn spawn(
        &mut self,
        cmd: &mut std::process::Command,
    ) -> Result<std::process::Child, DataplaneError> {
        let _c = critical();
        let child = cmd.spawn().map_err(DataplaneError::Spawn)?;
        self.record_process(child.id())?;
        Ok(child)
    }
}
