//! The live data plane of one run: deploy a [`Plan`], change it while the run goes on, tear it
//! down.
//!
//! Guarantees:
//!
//! - **Ledger first.** Every batch of ops is recorded in the run's ledger (fsync'd) before it is
//!   applied, so teardown from the ledger alone is always complete.
//! - **Owned.** A [`Dataplane`] tears its run down when dropped, unwinding from a panic
//!   included; [`install_signal_teardown`] does the same on Ctrl-C and SIGTERM. A failed deploy
//!   tears down what it made before returning the error. [`Dataplane::keep`] hands the run to
//!   `sdnbed down`/`sdnbed clean` instead (lab mode).
//! - **Delay, jitter and loss** use kernel `netem` (with its own rate, instead of `tbf`) where
//!   the kernel has it, detected once per run in a scratch namespace and never assumed. Where
//!   it has not, or netem cannot express the link (a trace, normal or Pareto jitter), or the
//!   scenario asks for `emulator = "userspace"`, the link belongs to the user-space link
//!   emulator ([`crate::linkemu`]), which takes it out of the plan before the data plane
//!   deploys (`linkemu::deploy`, which both `sdnbed run --backend netns` and `sdnbed up` use).
//!   Given such a link anyway, the deploy (or `set_link_shaping`) fails before changing
//!   anything, naming the link and what it needs.
//! - **Steering** changes are one nftables transaction each (see `nft`); they apply to new
//!   connections, established ones stay on their replica (conntrack). What a change is based
//!   on, and when it is made (`propagation_delay`), is the driver's business: the data plane
//!   applies a [`SteeringTable`] when told to.
//! - **Replicas** are added in a few small batches (one namespace, one veth per attachment,
//!   addresses, routes, shaping, and an nft filter only when a policy selects the service).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::dataplane::ledger::{self, Entry, Ledger, LedgerError};
use crate::dataplane::netlink::netns_path;
use crate::dataplane::nft::{self, SteeredService};
use crate::dataplane::ops::{ExecError, Executor, IfCounters, Op, LO};
use crate::dataplane::plan::{self, Ipv4Net, Plan, PlanError, ReplicaPlan};
use crate::dataplane::probe::{self, Reach};
use crate::dataplane::tc::{needs_emulation, Shaper};
use crate::model::link::{LinkCounters, LinkParams};
use crate::model::rollout::ReplicaId;
use crate::model::steering::SteeringTable;
use crate::scenario::types::{EmulatorChoice, Scenario};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(
        "link {link} needs {what}, which takes kernel netem or the user-space link emulator: \
         {why}; deploy through `linkemu::deploy`, which hands such links to the emulator"
    )]
    NeedsEmulator {
        link: String,
        what: String,
        why: String,
    },
    #[error("no service `{0}` in this run")]
    UnknownService(String),
    #[error("service `{service}` has no replica {id} in the data plane")]
    UnknownReplica { service: String, id: ReplicaId },
    #[error("service `{service}` already has replica {id}")]
    DuplicateReplica { service: String, id: ReplicaId },
    #[error("scenario link #{0} does not exist")]
    UnknownLink(usize),
    #[error("reachability does not match the policies:\n  {}", .0.join("\n  "))]
    PolicyMismatch(Vec<String>),
    #[error("probing reachability: {0}")]
    Probe(std::io::Error),
}

/// Where the run's addresses and ledger come from.
#[derive(Clone, Debug)]
pub struct DeployOptions {
    /// The pool blocks are taken from (default 198.18.0.0/15).
    pub pool: Ipv4Net,
    /// Ledger directory (default `/run/sdnbed`).
    pub ledger_dir: PathBuf,
    /// A second copy of the ledger, e.g. in the run directory.
    pub ledger_copy: Option<PathBuf>,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            pool: plan::default_pool(),
            ledger_dir: PathBuf::from(ledger::DEFAULT_DIR),
            ledger_copy: None,
        }
    }
}

/// Opens run `run`'s ledger, takes its address block and builds its plan.
pub fn prepare(
    sc: &Scenario,
    run: &str,
    opts: &DeployOptions,
) -> Result<(Plan, Ledger), DataplaneError> {
    // Check names before anything is written.
    let size = plan::block_size(sc)?;
    Plan::build(
        sc,
        run,
        Ipv4Net::new(opts.pool.addr(), 32 - size.trailing_zeros() as u8)?,
    )?;
    let mut l = Ledger::create(&opts.ledger_dir, run, opts.ledger_copy.as_deref())?;
    let built = l
        .allocate_block(opts.pool, size)
        .map_err(DataplaneError::from)
        .and_then(|block| Ok(Plan::build(sc, run, block)?));
    match built {
        Ok(p) => Ok((p, l)),
        Err(e) => {
            let _ = std::fs::remove_file(l.path());
            Err(e)
        }
    }
}

/// A replica as the data plane realised it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub netns: String,
    /// Its address on its first attachment: the steering target.
    pub addr: Ipv4Addr,
}

/// Counters of one direction of one veth, for `links.csv`.
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

/// One probed (source, destination, port) triple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRow {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub expected: bool,
    pub observed: Reach,
}

/// Runs torn down on SIGINT/SIGTERM: (ledger dir, run).
static ACTIVE: Mutex<BTreeSet<(PathBuf, String)>> = Mutex::new(BTreeSet::new());

fn set_active(dir: &Path, run: &str, on: bool) {
    let mut a = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
    let key = (dir.to_path_buf(), run.to_string());
    if on {
        a.insert(key);
    } else {
        a.remove(&key);
    }
}

/// On SIGINT or SIGTERM, tears down every live [`Dataplane`] of this process from its ledger,
/// then exits with 128 + the signal number. Call early (the CLI and backends do); calls after
/// the first do nothing.
pub fn install_signal_teardown() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if *installed {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    *installed = true;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let runs: Vec<(PathBuf, String)> = ACTIVE
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            if !runs.is_empty() {
                match crate::dataplane::netlink::Kernel::new() {
                    Ok(mut k) => {
                        for (dir, run) in runs {
                            if let Err(e) = ledger::teardown(&dir, &run, &mut k) {
                                eprintln!("sdnbed: teardown of {run} after signal {sig}: {e}");
                            }
                        }
                    }
                    Err(e) => eprintln!("sdnbed: cannot tear down after signal {sig}: {e}"),
                }
            }
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}

struct Replica {
    slot: u32,
    plan: ReplicaPlan,
}

/// The live data plane of one run.
pub struct Dataplane<E: Executor> {
    plan: Plan,
    exec: E,
    ledger: Option<Ledger>,
    ledger_dir: PathBuf,
    /// Per service index: replicas by id.
    replicas: Vec<BTreeMap<ReplicaId, Replica>>,
    /// Current parameters of each scenario link (set-link changes them).
    params: BTreeMap<usize, LinkParams>,
    down: BTreeSet<usize>,
    netem: Option<bool>,
    /// linkemu hook: things the run owns besides kernel objects (the link emulator's thread and
    /// TUN devices), dropped newest first at teardown, before the namespaces go.
    owned: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

/// The qdisc op for one veth end with these parameters (None: unshaped). Parameters have
/// passed `check_shaping`, so a shaper that cannot be built is left out, never half-built.
fn qdisc_op(ns: &str, ifindex: u32, params: &LinkParams) -> Option<Op> {
    Shaper::for_link(params)
        .ok()
        .flatten()
        .map(|shaper| Op::Qdisc {
            ns: ns.to_string(),
            ifindex,
            shaper,
        })
}

impl<E: Executor> Dataplane<E> {
    /// Creates the plan's namespaces, links, addresses, routes, shaping and nftables tables.
    /// On failure, whatever was made is torn down before the error is returned.
    pub fn deploy(plan: Plan, ledger: Ledger, exec: E) -> Result<Dataplane<E>, DataplaneError> {
        let ledger_dir = ledger
            .path()
            .parent()
            .unwrap_or(Path::new(ledger::DEFAULT_DIR))
            .to_path_buf();
        set_active(&ledger_dir, &plan.run, true);
        let mut dp = Dataplane {
            params: BTreeMap::new(),
            replicas: plan.services.iter().map(|_| BTreeMap::new()).collect(),
            plan,
            exec,
            ledger: Some(ledger),
            ledger_dir,
            down: BTreeSet::new(),
            netem: None,
            owned: Vec::new(),
        };
        let r = (|| {
            for l in &dp.plan.links {
                dp.params.insert(l.link, l.params.clone());
            }
            for a in dp.plan.services.iter().flat_map(|s| &s.attachments) {
                if let Some(l) = a.link {
                    dp.params.insert(l, a.params.clone());
                }
            }
            let checks: Vec<(usize, LinkParams, EmulatorChoice)> = dp
                .plan
                .links
                .iter()
                .map(|l| (l.link, l.params.clone(), l.emulator))
                .chain(
                    dp.plan
                        .services
                        .iter()
                        .flat_map(|s| &s.attachments)
                        .filter_map(|a| a.link.map(|l| (l, a.params.clone(), a.emulator))),
                )
                .collect();
            for (l, p, emu) in checks {
                dp.check_shaping(l, &p, emu)?;
            }
            let ops = deploy_ops(&dp.plan);
            dp.run_ops(&ops)
        })();
        match r {
            Ok(()) => Ok(dp),
            Err(e) => {
                let _ = dp.teardown_inner();
                Err(e)
            }
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn run_ops(&mut self, ops: &[Op]) -> Result<(), DataplaneError> {
        if let Some(l) = &mut self.ledger {
            l.record_ops(ops)?;
        }
        self.exec.apply(ops)?;
        Ok(())
    }

    fn link_name(&self, link: usize) -> String {
        for l in &self.plan.links {
            if l.link == link {
                let [a, b] = &l.ends;
                return format!(
                    "{}—{}",
                    self.plan.nodes[a.node].name, self.plan.nodes[b.node].name
                );
            }
        }
        for s in &self.plan.services {
            for a in &s.attachments {
                if a.link == Some(link) {
                    return format!("{}—{}", s.name, self.plan.nodes[a.node].name);
                }
            }
        }
        format!("#{link}")
    }

    /// Fails when `p` needs more than rate shaping (see the module docs).
    fn check_shaping(
        &mut self,
        link: usize,
        p: &LinkParams,
        emu: EmulatorChoice,
    ) -> Result<(), DataplaneError> {
        let Some(what) = needs_emulation(p) else {
            return Ok(());
        };
        let why = if emu == EmulatorChoice::Userspace {
            "the scenario asks for emulator = \"userspace\"".to_string()
        } else {
            let netem = match self.netem {
                Some(n) => n,
                None => {
                    let scratch = format!("sdnbed-{}-netem-probe", self.plan.run);
                    if let Some(l) = &mut self.ledger {
                        l.record(&[Entry::Netns {
                            name: scratch.clone(),
                        }])?;
                    }
                    let n = self.exec.netem_available(&scratch)?;
                    self.netem = Some(n);
                    n
                }
            };
            match (netem, Shaper::for_link(p)) {
                (true, Ok(_)) => return Ok(()),
                (true, Err(reason)) => format!("this kernel has sch_netem, but {reason}"),
                (false, _) => "this kernel has no sch_netem".to_string(),
            }
        };
        Err(DataplaneError::NeedsEmulator {
            link: self.link_name(link),
            what,
            why,
        })
    }

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
        self.replicas[si].insert(id, Replica { slot, plan: rp });
        if let Err(e) = self.run_ops(&ops) {
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

    /// Probes every (source, destination, port) triple the scenario implies (see
    /// [`Plan::probe_pairs`]) and compares with the policies. A service source probes from its
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

    /// Records a process started in one of the run's namespaces (e.g. a replica's server), so
    /// teardown and `sdnbed clean` stop it even if it has left the namespace.
    pub fn record_process(&mut self, pid: u32) -> Result<(), DataplaneError> {
        let start = ledger::process_start(pid).unwrap_or(0);
        if let Some(l) = &mut self.ledger {
            l.record(&[Entry::Process { pid, start }])?;
        }
        Ok(())
    }

    /// The run as deployed, for people (`nodes.json` in lab mode): every node's namespace,
    /// interfaces, routes and VIPs, and every service's VIP and replicas.
    pub fn describe(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .plan
            .nodes
            .iter()
            .map(|n| serde_json::to_value(n).expect("plan serialises"))
            .collect();
        let services: Vec<serde_json::Value> = self
            .plan
            .services
            .iter()
            .enumerate()
            .map(|(si, s)| {
                let replicas: Vec<serde_json::Value> = self.replicas[si]
                    .iter()
                    .map(|(id, r)| {
                        serde_json::json!({
                            "name": format!("{}-{id}", s.name),
                            "netns": r.plan.netns,
                            "ifaces": r.plan.veths.iter().map(|v| &v.iface).collect::<Vec<_>>(),
                            "routes": r.plan.routes,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "name": s.name,
                    "vip": s.vip,
                    "port": s.port,
                    "gateway": self.plan.nodes[s.gateway].name,
                    "replicas": replicas,
                })
            })
            .collect();
        serde_json::json!({
            "run": self.plan.run,
            "block": self.plan.block,
            "nodes": nodes,
            "services": services,
        })
    }

    /// linkemu hook: hands `owned` to the run; it is dropped at teardown (newest first),
    /// before the run's kernel objects are removed.
    pub fn own(&mut self, owned: Box<dyn std::any::Any + Send + Sync>) {
        self.owned.push(owned);
    }

    /// Leaves the run deployed (lab mode): no teardown on drop; `sdnbed down RUN` removes it.
    pub fn keep(mut self) -> String {
        set_active(&self.ledger_dir, &self.plan.run, false);
        self.ledger = None;
        self.plan.run.clone()
    }

    /// Tears the run down from its ledger and deletes the ledger.
    pub fn teardown(mut self) -> Result<(), DataplaneError> {
        self.teardown_inner()
    }

    fn teardown_inner(&mut self) -> Result<(), DataplaneError> {
        while let Some(o) = self.owned.pop() {
            drop(o);
        }
        if self.ledger.take().is_none() {
            return Ok(());
        }
        let r = ledger::teardown(&self.ledger_dir, &self.plan.run, &mut self.exec);
        set_active(&self.ledger_dir, &self.plan.run, false);
        Ok(r?)
    }

    fn service_index(&self, service: &str) -> Result<usize, DataplaneError> {
        self.plan
            .services
            .iter()
            .position(|s| s.name == service)
            .ok_or_else(|| DataplaneError::UnknownService(service.to_string()))
    }
}

impl<E: Executor> Drop for Dataplane<E> {
    fn drop(&mut self) {
        if let Err(e) = self.teardown_inner() {
            eprintln!("sdnbed: teardown of run {}: {e}", self.plan.run);
        }
    }
}

/// The ops that deploy a plan, in dependency order: namespaces, veths, per-namespace
/// configuration (addresses, VIPs, routes, shaping), forwarding, nftables tables.
pub fn deploy_ops(plan: &Plan) -> Vec<Op> {
    let mut ops: Vec<Op> = plan
        .nodes
        .iter()
        .map(|n| Op::NetnsAdd {
            name: n.netns.clone(),
        })
        .collect();
    for l in &plan.links {
        let [a, b] = &l.ends;
        let (na, nb) = (&plan.nodes[a.node], &plan.nodes[b.node]);
        let (ia, ib) = (&na.ifaces[a.iface], &nb.ifaces[b.iface]);
        ops.push(Op::VethAdd {
            ns: na.netns.clone(),
            name: ia.name.clone(),
            ifindex: ia.ifindex,
            peer_ns: nb.netns.clone(),
            peer_name: ib.name.clone(),
            peer_ifindex: ib.ifindex,
        });
    }
    let mut shaped: BTreeMap<(usize, usize), &LinkParams> = BTreeMap::new();
    for l in &plan.links {
        for e in &l.ends {
            shaped.insert((e.node, e.iface), &l.params);
        }
    }
    for (ni, n) in plan.nodes.iter().enumerate() {
        for (ii, i) in n.ifaces.iter().enumerate() {
            ops.push(Op::AddrAdd {
                ns: n.netns.clone(),
                ifindex: i.ifindex,
                addr: i.addr,
                prefix_len: i.prefix_len,
            });
            if let Some(params) = shaped.get(&(ni, ii)) {
                ops.extend(qdisc_op(&n.netns, i.ifindex, params));
            }
        }
        for v in &n.vips {
            ops.push(Op::AddrAdd {
                ns: n.netns.clone(),
                ifindex: LO,
                addr: *v,
                prefix_len: 32,
            });
        }
        for r in &n.routes {
            ops.push(Op::RouteAdd {
                ns: n.netns.clone(),
                route: *r,
            });
        }
    }
    for n in plan.nodes.iter().filter(|n| n.forwarding) {
        ops.push(Op::Forwarding {
            ns: n.netns.clone(),
        });
    }
    for (ni, n) in plan.nodes.iter().enumerate() {
        let steered: Vec<SteeredService> = plan
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.gateway == ni)
            .map(|(i, s)| SteeredService {
                index: i,
                name: s.name.clone(),
                vip: s.vip,
                port: s.port,
            })
            .collect();
        let filters = plan.filters.get(&n.name).map(|v| v.as_slice());
        if !steered.is_empty() || filters.is_some() {
            ops.push(Op::Nft {
                ns: n.netns.clone(),
                script: nft::table(&steered, filters),
            });
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ops::Recorder;
    use crate::dataplane::plan::tests::{link, node, scenario, service};
    use crate::model::rollout::Traffic;
    use crate::model::steering::Endpoint;
    use crate::model::time::Duration as SimDuration;
    use crate::scenario::types::{LinkEnd, NodeKind, Policy};

    fn n(s: &str) -> LinkEnd {
        LinkEnd::Node(s.into())
    }

    /// client —(10 Mbit)— gw; web (2 replicas) —(20 Mbit)— gw; a policy selects web.
    fn sc() -> Scenario {
        scenario(
            vec![
                node("client", NodeKind::Client),
                node("gw", NodeKind::Gateway),
            ],
            vec![service("web", 2, 8080, "gw")],
            vec![
                link(n("client"), n("gw"), Some(10_000_000)),
                link(LinkEnd::Service("web".into()), n("gw"), Some(20_000_000)),
            ],
            vec![Policy {
                name: "p".into(),
                from: vec!["client".into()],
                to: "web".into(),
                ports: vec![8080],
            }],
        )
    }

    fn deployed(
        sc: &Scenario,
        dir: &Path,
        rec: Recorder,
    ) -> Result<Dataplane<Recorder>, DataplaneError> {
        let opts = DeployOptions {
            ledger_dir: dir.to_path_buf(),
            ..Default::default()
        };
        let (plan, l) = prepare(sc, "r1", &opts)?;
        Dataplane::deploy(plan, l, rec)
    }

    #[test]
    fn deploy_records_then_creates_in_dependency_order() {
        let dir = tempfile::tempdir().unwrap();
        let dp = deployed(&sc(), dir.path(), Recorder::default()).unwrap();
        let cmds: Vec<String> = dp.exec.ops.iter().map(|o| o.to_string()).collect();
        let gw_vip = dp.plan.service("web").unwrap().vip;
        let want_prefix = [
            "ip netns add sdnbed-r1-client",
            "ip netns add sdnbed-r1-gw",
            "ip link add e0-gw index 100 netns sdnbed-r1-client type veth peer name e0-client \
             index 100 netns sdnbed-r1-gw",
        ];
        assert_eq!(&cmds[..3], &want_prefix);
        assert!(cmds.contains(&format!("ip -n sdnbed-r1-gw addr add {gw_vip}/32 dev #1")));
        assert!(cmds.contains(
            &"tc -n sdnbed-r1-client qdisc replace dev #100 root tbf rate 10000000bit burst \
              5000b limit 96896b"
                .to_string()
        ));
        assert!(cmds
            .contains(&"ip -n sdnbed-r1-client route replace default via 198.18.0.33".to_string()));
        assert_eq!(
            &cmds[cmds.len() - 2..],
            &[
                "ip netns exec sdnbed-r1-gw sysctl -w net.ipv4.ip_forward=1".to_string(),
                "ip netns exec sdnbed-r1-gw nft -f -".to_string()
            ]
        );
        // Everything created is in the ledger.
        let entries = ledger::read(&dir.path().join("r1.ledger")).unwrap();
        for name in ["sdnbed-r1-client", "sdnbed-r1-gw"] {
            assert!(entries.contains(&Entry::Netns { name: name.into() }));
        }
        drop(dp);
        assert!(!dir.path().join("r1.ledger").exists(), "drop tears down");
    }

    #[test]
    fn replicas_get_slots_shaping_filters_and_steering() {
        let dir = tempfile::tempdir().unwrap();
        let mut dp = deployed(&sc(), dir.path(), Recorder::default()).unwrap();
        let before = dp.exec.ops.len();
        let r0 = dp.add_replica("web", 7).unwrap();
        assert_eq!(r0.netns, "sdnbed-r1-web-7");
        let ops: Vec<String> = dp.exec.ops[before..]
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(ops[0], "ip netns add sdnbed-r1-web-7");
        assert_eq!(
            ops[1],
            "ip link add e0-gw index 100 netns sdnbed-r1-web-7 type veth peer name v0r0-web \
             index 1048576 netns sdnbed-r1-gw"
        );
        // Shaped in both directions, filtered because a policy selects web.
        assert_eq!(
            ops.iter()
                .filter(|o| o.contains("tbf rate 20000000bit"))
                .count(),
            2
        );
        assert_eq!(
            ops.last().unwrap(),
            "ip netns exec sdnbed-r1-web-7 nft -f -"
        );
        let r1 = dp.add_replica("web", 8).unwrap();
        assert!(matches!(
            dp.add_replica("web", 8),
            Err(DataplaneError::DuplicateReplica { .. })
        ));
        // Slot 0 is reused after removal.
        dp.remove_replica("web", 7).unwrap();
        let r2 = dp.add_replica("web", 9).unwrap();
        assert_eq!(r2.addr, r0.addr);
        assert_ne!(r1.addr, r0.addr);

        let eps = [
            Endpoint {
                id: 8,
                version: "v1",
            },
            Endpoint {
                id: 9,
                version: "v2",
            },
        ];
        let w = Traffic::Weights(vec![("v1".into(), 8000), ("v2".into(), 2000)]);
        dp.set_steering("web", &SteeringTable::build(&w, &eps))
            .unwrap();
        match dp.exec.ops.last().unwrap() {
            Op::Nft { ns, script } => {
                assert_eq!(ns, "sdnbed-r1-gw");
                assert_eq!(
                    script,
                    &format!(
                        "flush map ip sdnbed svc_0\nadd element ip sdnbed svc_0 {{ 0-7999 : {}, \
                         8000-9999 : {} }}\n",
                        r1.addr, r2.addr
                    )
                );
            }
            other => panic!("{other}"),
        }
        let gone = [Endpoint {
            id: 7,
            version: "v1",
        }];
        assert!(matches!(
            dp.set_steering(
                "web",
                &SteeringTable::build(&Traffic::ByReadyReplicas, &gone)
            ),
            Err(DataplaneError::UnknownReplica { id: 7, .. })
        ));
        // Link down: both ends of the node link, or of every replica veth on a service link.
        let before = dp.exec.ops.len();
        dp.set_link_up(1, false).unwrap();
        assert_eq!(dp.exec.ops.len() - before, 4);
        assert!(matches!(
            dp.set_link_up(5, false),
            Err(DataplaneError::UnknownLink(5))
        ));
    }

    #[test]
    fn links_needing_emulation_fail_before_deploying() {
        let mut s = sc();
        s.links[0].params.delay = SimDuration::from_millis(10);
        let dir = tempfile::tempdir().unwrap();
        let err = deployed(&s, dir.path(), Recorder::default())
            .err()
            .expect("no netem: error")
            .to_string();
        assert!(err.contains("link client—gw needs delay 10 ms"), "{err}");
        assert!(err.contains("no sch_netem") && err.contains("user-space link emulator"));
        // Nothing but the netem probe's scratch namespace was made, and it was removed.
        assert!(!dir.path().join("r1.ledger").exists());
        // With kernel netem, the link gets a netem qdisc (rate included) on both ends.
        let with_netem = Recorder {
            netem: true,
            ..Default::default()
        };
        let dp = deployed(&s, dir.path(), with_netem).unwrap();
        let netem: Vec<String> = dp
            .exec
            .ops
            .iter()
            .map(|o| o.to_string())
            .filter(|o| o.contains("netem"))
            .collect();
        assert_eq!(
            netem,
            [
                "tc -n sdnbed-r1-client qdisc replace dev #100 root netem delay 10000us 0us rate \
                 10000000bit limit 64",
                "tc -n sdnbed-r1-gw qdisc replace dev #100 root netem delay 10000us 0us rate \
                 10000000bit limit 64"
            ]
        );
        drop(dp);
        // What netem cannot do still fails, with the reason.
        s.links[0].params.jitter = Some(crate::model::link::Jitter {
            amount: SimDuration::from_millis(1),
            distribution: crate::model::link::JitterDist::Pareto,
        });
        let err = deployed(
            &s,
            dir.path(),
            Recorder {
                netem: true,
                ..Default::default()
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("has sch_netem, but Pareto jitter needs a netem distribution table"),
            "{err}"
        );
    }
}
