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
//!   applies a [`SteeringTable`](crate::model::steering::SteeringTable) when told to.
//! - **Namespaces** are made fresh, or, given [`Sandboxes`] (the docker backend), adopted from
//!   containers: each sandbox is recorded in the ledger as a container, then created, then its
//!   network namespace is mounted under the name the data plane would have made. Everything
//!   after that (veths, addresses, routes, shaping, steering, policies, the link emulator) is
//!   the same on both.
//! - **Replicas** are added in a few small batches (one namespace, one veth per attachment,
//!   addresses, routes, shaping, and an nft filter only when a policy selects the service).
//!
//! Split by job: `signal` (teardown on SIGINT/SIGTERM), `live` (replicas, steering, links,
//! counters), `reach` (policy reachability checks), `describe` (the lab description).

mod describe;
mod live;
mod reach;
mod signal;

pub use live::LinkSample;
pub use reach::ProbeRow;
use signal::set_active;
pub use signal::{critical, install_signal_teardown, Critical};

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::dataplane::ledger::{self, Entry, Ledger, LedgerError};
use crate::dataplane::nft::{self, SteeredService};
use crate::dataplane::ops::{ExecError, Executor, Op, LO};
use crate::dataplane::plan::{self, Ipv4Net, Plan, PlanError, ReplicaPlan};
use crate::dataplane::tc::{needs_emulation, Shaper};
use crate::model::link::LinkParams;
use crate::model::rollout::ReplicaId;
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
    #[error("starting a process: {0}")]
    Spawn(std::io::Error),
    #[error("probing reachability: {0}")]
    Probe(std::io::Error),
    #[error("creating sandboxes {}: {error}", .names.join(", "))]
    Sandbox { names: Vec<String>, error: String },
}

/// Where a run's network namespaces come from when they are not made fresh: a container
/// engine's sandboxes, one per node and per replica, each named as the namespace it holds
/// (`sdnbed-<run>-<node>`). See the module docs for the order of record, create and adopt.
pub trait Sandboxes: Send + Sync {
    /// Creates and starts one sandbox per name, concurrently where it can; returns the host
    /// pid of each, in order, whose network namespace the data plane then adopts.
    fn create(
        &self,
        names: &[String],
    ) -> Result<Vec<u32>, Box<dyn std::error::Error + Send + Sync>>;
}

impl std::fmt::Debug for dyn Sandboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sandboxes")
    }
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
    /// Where namespaces come from: fresh when None, else these sandboxes'.
    pub sandboxes: Option<std::sync::Arc<dyn Sandboxes>>,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            pool: plan::default_pool(),
            ledger_dir: PathBuf::from(ledger::DEFAULT_DIR),
            ledger_copy: None,
            sandboxes: None,
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
    let _c = critical();
    let mut l = Ledger::create(&opts.ledger_dir, run, opts.ledger_copy.as_deref())?;
    set_active(&opts.ledger_dir, run, true);
    let built = l
        .allocate_block(opts.pool, size)
        .map_err(DataplaneError::from)
        .and_then(|block| Ok(Plan::build(sc, run, block)?));
    match built {
        Ok(p) => Ok((p, l)),
        Err(e) => {
            let _ = std::fs::remove_file(l.path());
            set_active(&opts.ledger_dir, run, false);
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
    sandboxes: Option<std::sync::Arc<dyn Sandboxes>>,
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
    /// Creates the plan's namespaces (fresh, or adopted from `sandboxes`), links, addresses,
    /// routes, shaping and nftables tables. On failure, whatever was made is torn down before
    /// the error is returned.
    pub fn deploy(
        plan: Plan,
        ledger: Ledger,
        exec: E,
        sandboxes: Option<std::sync::Arc<dyn Sandboxes>>,
    ) -> Result<Dataplane<E>, DataplaneError> {
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
            sandboxes,
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
            dp.run_ops(ops)
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

    /// Records and applies `ops` in one critical section; with sandboxes, the namespaces the
    /// ops add are first recorded as containers, created, and adopted.
    fn run_ops(&mut self, mut ops: Vec<Op>) -> Result<(), DataplaneError> {
        let _c = critical();
        self.adopt_sandboxes(&mut ops)?;
        if let Some(l) = &mut self.ledger {
            l.record_ops(&ops)?;
        }
        self.exec.apply(&ops)?;
        Ok(())
    }

    /// Gives every fresh namespace `ops` add a sandbox to adopt (see [`Sandboxes`]).
    fn adopt_sandboxes(&mut self, ops: &mut [Op]) -> Result<(), DataplaneError> {
        let Some(sandboxes) = self.sandboxes.clone() else {
            return Ok(());
        };
        let names: Vec<String> = ops
            .iter()
            .filter_map(|o| match o {
                Op::NetnsAdd { name, adopt: None } => Some(name.clone()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        if let Some(l) = &mut self.ledger {
            let entries: Vec<Entry> = names
                .iter()
                .map(|name| Entry::Container { name: name.clone() })
                .collect();
            l.record(&entries)?;
        }
        let pids = sandboxes
            .create(&names)
            .map_err(|e| DataplaneError::Sandbox {
                names: names.clone(),
                error: e.to_string(),
            })?;
        let mut pids = pids.into_iter();
        for op in ops {
            if let Op::NetnsAdd {
                adopt: a @ None, ..
            } = op
            {
                *a = pids.next();
            }
        }
        Ok(())
    }

    /// Records container `name` (one the caller is about to create in the run, e.g. a
    /// replica's service container joined to its sandbox) in the ledger, so teardown removes it.
    pub fn record_container(&mut self, name: &str) -> Result<(), DataplaneError> {
        if let Some(l) = &mut self.ledger {
            l.record(&[Entry::Container {
                name: name.to_string(),
            }])?;
        }
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
                    let _c = critical();
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

    /// linkemu hook: hands `owned` to the run; it is dropped at teardown (newest first),
    /// before the run's kernel objects are removed.
    pub fn own(&mut self, owned: Box<dyn std::any::Any + Send + Sync>) {
        self.owned.push(owned);
    }

    /// Leaves the run deployed (lab mode): no teardown on drop; `sdnbed down RUN` removes it.
    /// The ledger marks the run held, so `sdnbed clean --all` leaves it alone.
    pub fn keep(mut self) -> String {
        set_active(&self.ledger_dir, &self.plan.run, false);
        if let Some(mut l) = self.ledger.take() {
            if let Err(e) = l.record(&[Entry::Held]) {
                eprintln!(
                    "sdnbed: {e} (`sdnbed clean --all` will not know run {} is held)",
                    self.plan.run
                );
            }
        }
        self.plan.run.clone()
    }

    /// Tears the run down from its ledger and deletes the ledger.
    pub fn teardown(mut self) -> Result<(), DataplaneError> {
        self.teardown_inner()
    }

    fn teardown_inner(&mut self) -> Result<(), DataplaneError> {
        let _c = critical();
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
            adopt: None,
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
    use crate::model::steering::{Endpoint, SteeringTable};
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
        Dataplane::deploy(plan, l, rec, None)
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
