//! What the netns and docker backends share: sdnbed's own data plane under the run, with the
//! replicas' servers as the only difference between them.
//!
//! [`Plane`] is the network of a run: the data plane ([`crate::dataplane`]) in network
//! namespaces, the user-space link emulator where it carries links, and the readiness prober.
//! [`OnPlane`] puts a [`Servers`] (what runs in a replica's namespace: `sdnbed serve` processes
//! for netns, containers for docker) on it and is the runner's [`Effects`]: steering, links,
//! counters, reachability, probes and workloads are carried out here once, for both.
//!
//! # How the effects are carried out
//!
//! - A replica is its namespace and veths ([`Dataplane::add_replica`], and the emulator's side
//!   of its links), then its server, started by the [`Servers`] in that namespace. Release:
//!   the server's remains go first, then the namespace.
//! - Readiness probes: `GET <ready path>` from a thread in each service's gateway namespace,
//!   timeout 300 ms. Policies let a service's own gateway through (as NetworkPolicy lets a
//!   pod's node, where the kubelet probes from), so probes pass them.
//! - Steering: one nftables transaction per table; links: the emulator where it carries the
//!   link, else the kernel (`ip link set up/down`, `tc` shaping).
//! - Workloads: the load generator's threads enter the client's namespace. Requests whose
//!   answer names no version (`x-sdnbed-version`) are attributed by the replica the gateway
//!   steered their connection to.
//!
//! # Departures from the simulator
//!
//! Real time has jitter of its own: timers here fire within about a millisecond, and the
//! rollout's decisions use the runner's clock, not the generator's. Errors without an answer
//! are attributed to the version that last answered on the same connection (the generator's
//! rule), where the simulator attributes them to no version.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use super::effects::{
    EffectError, Inbox, Network, Probes, ReplicaSpec, Replicas, Report, Signal, WorkloadSpec,
    Workloads,
};
use super::runner::{self, Mode, Runner, RunnerError};
use crate::backend::RunOutput;
use crate::dataplane::conntrack::Conntrack;
use crate::dataplane::deploy::{install_signal_teardown, Dataplane, DataplaneError, DeployOptions};
use crate::dataplane::netlink::{netns_path, Kernel};
use crate::linkemu::{Attached, LinkEmuError};
use crate::model::link::LinkParams;
use crate::model::rollout::ReplicaId;
use crate::model::steering::SteeringTable;
use crate::model::time::{Duration, Instant};
use crate::output::LinkRow;
use crate::scenario::types::{LinkEnd, Scenario, Target};
use crate::workload::attribution::{Attribution, ReplicaVersions};
use crate::workload::load::{self, LoadConfig, Rate};
use crate::workload::stats::{Completion, Sink};
use crate::workload::timer::Clock;

/// Timeout of one readiness probe (connect and answer).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    LinkEmu(#[from] LinkEmuError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error("the readiness prober in namespace {netns}: {source}")]
    Prober {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Conntrack(#[from] crate::dataplane::conntrack::ConntrackError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PlaneError {
    let what = what.into();
    move |source| PlaneError::Io { what, source }
}

/// What runs in the replicas' namespaces: their servers' start, signals, exits and logs. The
/// namespace is wired before [`Servers::start`] and stays until after [`Servers::release`].
pub trait Servers {
    /// Starts replica `spec.id`'s server in namespace `netns`, recording what it starts in the
    /// run's ledger through `dp` first. Returns once it is started, not ready.
    fn start(
        &mut self,
        dp: &mut Dataplane<Kernel>,
        spec: &ReplicaSpec,
        netns: &str,
    ) -> Result<(), EffectError>;
    /// Sends `signal` to the replica's server; nothing if it is not running.
    fn signal(&mut self, id: ReplicaId, signal: Signal);
    /// Kills the server and starts it again in place.
    fn restart(
        &mut self,
        dp: &mut Dataplane<Kernel>,
        spec: &ReplicaSpec,
    ) -> Result<(), EffectError>;
    /// The replicas whose server exited since the last call, each once.
    fn reap(&mut self) -> Result<Vec<ReplicaId>, EffectError>;
    fn running(&self, id: ReplicaId) -> bool;
    /// Removes what is left of a gone replica's server, before its namespace goes.
    fn release(&mut self, id: ReplicaId) -> Result<(), EffectError>;
    fn log_path(&self, id: ReplicaId) -> Option<PathBuf>;
    /// SIGTERM to every server, SIGKILL to those still running after `grace`; waits for them.
    fn stop_all(&mut self, grace: std::time::Duration);
}

/// Where and how a run on the data plane happens.
#[derive(Clone, Debug)]
pub struct PlaneOptions {
    /// The `sdnbed` binary: what replicas run (`sdnbed serve`), and what sdnbed's own image
    /// holds.
    pub exe: PathBuf,
    /// Unique id of this run; part of every kernel object's and container's name.
    pub run_id: String,
    /// Replica logs go to `<work_dir>/replicas/`, the ledger copy to `<work_dir>/ledger.jsonl`.
    pub work_dir: PathBuf,
    pub deploy: DeployOptions,
}

impl PlaneOptions {
    /// A measured run's options: its id, work directory and binary, the default address pool
    /// and ledger.
    pub fn for_run(ctx: &super::RunContext) -> PlaneOptions {
        PlaneOptions {
            exe: ctx.exe.clone(),
            run_id: ctx.run_id.clone(),
            work_dir: ctx.work_dir.clone(),
            deploy: Default::default(),
        }
    }
}

/// The arguments of `sdnbed serve` for replica `spec`: the built-in server as the scenario
/// describes the replica's version.
pub fn serve_args(s: &Scenario, spec: &ReplicaSpec) -> Vec<String> {
    let service = &s.services[spec.svc];
    let v = &service.versions[spec.version];
    let response = s
        .workloads
        .iter()
        .find(|w| w.to == Target::Service(service.name.clone()))
        .map_or(0, |w| w.response.0);
    [
        "serve".to_string(),
        "--listen".into(),
        format!("0.0.0.0:{}", service.port),
        "--version".into(),
        v.name.clone(),
        "--service-time".into(),
        v.service_time.to_string(),
        "--workers".into(),
        service.workers.to_string(),
        "--startup".into(),
        v.startup.to_string(),
        "--error-rate".into(),
        v.error_rate.to_string(),
        "--response-size".into(),
        format!("{response}B"),
        "--seed".into(),
        spec.seed.to_string(),
    ]
    .into()
}

/// A replica's place on the data plane.
struct Placed {
    svc: usize,
    addr: Ipv4Addr,
    /// The HTTP path its readiness probes ask for.
    ready_path: String,
}

/// The network of a run on sdnbed's data plane: namespaces (fresh or adopted from sandboxes),
/// emulated links and the readiness prober.
pub struct Plane<'s> {
    s: &'s Scenario,
    dp: Dataplane<Kernel>,
    /// The emulated links (empty when the kernel's netem, or no shaping, does it all).
    emu: Attached,
    replicas: Vec<Placed>,
    inbox: Inbox,
    /// The prober of each gateway node, by name.
    probe_tx: BTreeMap<String, Sender<(ReplicaId, SocketAddrV4, String)>>,
    /// Replica address → version, for requests whose answer names no version.
    versions: ReplicaVersions,
    /// One conntrack handle per gateway namespace, opened on first use.
    conntrack: BTreeMap<String, Arc<Conntrack>>,
}

impl<'s> Plane<'s> {
    /// Deploys the network (ledger first, so `sdnbed clean` can always undo it; copied to
    /// `<work_dir>/ledger.jsonl`) and the prober; returns it and the inbox its reports arrive
    /// on.
    pub fn deploy(
        s: &'s Scenario,
        run_id: &str,
        work_dir: &Path,
        deploy: &DeployOptions,
    ) -> Result<(Self, Receiver<Report>), PlaneError> {
        install_signal_teardown().map_err(io_err("installing the Ctrl-C handler"))?;
        std::fs::create_dir_all(work_dir.join("replicas"))
            .map_err(io_err(format!("creating {}", work_dir.display())))?;
        let deploy = DeployOptions {
            ledger_copy: Some(work_dir.join("ledger.jsonl")),
            ..deploy.clone()
        };
        // Links that need delay, jitter, loss or a trace go through the user-space emulator
        // where the kernel has no netem (or the scenario asks for it); `capture = true` links
        // write pcaps.
        let capture_dir = work_dir.join("pcap");
        let (dp, emu) = crate::linkemu::deploy(s, run_id, &deploy, Some(&capture_dir))?;
        let (tx, rx) = mpsc::channel();
        // Readiness probes go from each service's gateway.
        let mut probe_tx = BTreeMap::new();
        for svc in &s.services {
            if !probe_tx.contains_key(&svc.gateway) {
                let prober = spawn_prober(&dp_netns(&dp, &svc.gateway)?, tx.clone())?;
                probe_tx.insert(svc.gateway.clone(), prober);
            }
        }
        let plane = Plane {
            s,
            dp,
            emu,
            replicas: Vec::new(),
            inbox: tx,
            probe_tx,
            versions: ReplicaVersions::new(),
            conntrack: BTreeMap::new(),
        };
        Ok((plane, rx))
    }

    pub fn dataplane(&self) -> &Dataplane<Kernel> {
        &self.dp
    }

    /// Where reports for the runner go, for a backend's own threads.
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    /// Wires replica `spec.id`'s namespace and links; returns the namespace's name.
    fn add_replica(&mut self, spec: &ReplicaSpec) -> Result<String, EffectError> {
        debug_assert_eq!(spec.id as usize, self.replicas.len());
        let service = &self.s.services[spec.svc];
        let info = self.dp.add_replica(&service.name, spec.id)?;
        self.emu.add_replica(&self.dp, &service.name, spec.id)?;
        self.versions
            .insert(info.addr.into(), &service.versions[spec.version].name);
        self.replicas.push(Placed {
            svc: spec.svc,
            addr: info.addr,
            ready_path: service.versions[spec.version].readiness_path().to_string(),
        });
        Ok(info.netns)
    }

    fn release(&mut self, id: ReplicaId) -> Result<(), EffectError> {
        let p = &self.replicas[id as usize];
        let name = &self.s.services[p.svc].name;
        self.versions.remove(p.addr.into());
        self.emu.remove_replica(name, id);
        self.dp.remove_replica(name, id)?;
        Ok(())
    }

    /// Removes the network.
    pub fn teardown(self) -> Result<(), PlaneError> {
        self.dp.teardown()?;
        Ok(())
    }

    /// The `links.csv` name and direction of declared link `li` (None: the implicit link of a
    /// service without links) counted from `from` to `to`, named as the simulator names them:
    /// `a-b`, or `a-b/<replica>` for a replica's own link; `fwd` from `between[0]`.
    fn link_row(&self, li: Option<usize>, from: &str, to: &str) -> (String, &'static str) {
        let Some(li) = li else {
            return (format!("{from}-{to}"), "fwd");
        };
        let l = &self.s.links[li];
        // A replica end is named `<service>-<id>`.
        let replica_of = |name: &str, end: &LinkEnd| match end {
            LinkEnd::Service(s) => name
                .strip_prefix(s.as_str())?
                .strip_prefix('-')?
                .parse::<u32>()
                .ok(),
            LinkEnd::Node(_) => None,
        };
        let is_end = |name: &str, end: &LinkEnd| match end {
            LinkEnd::Node(n) => n == name,
            LinkEnd::Service(_) => replica_of(name, end).is_some(),
        };
        let (a, b) = (l.between[0].name(), l.between[1].name());
        let replica = [from, to]
            .iter()
            .find_map(|n| l.between.iter().find_map(|e| replica_of(n, e)));
        let name = match replica {
            Some(id) => format!("{a}-{b}/{id}"),
            None => format!("{a}-{b}"),
        };
        let direction = if is_end(from, &l.between[0]) {
            "fwd"
        } else {
            "rev"
        };
        (name, direction)
    }
}

/// A backend's effects on sdnbed's data plane: the [`Plane`] and the servers on it.
pub struct OnPlane<'s, S: Servers> {
    pub plane: Plane<'s>,
    pub servers: S,
}

impl<'s, S: Servers> OnPlane<'s, S> {
    /// Stops what is left of the servers, then removes the network.
    pub fn teardown(mut self) -> Result<(), PlaneError> {
        self.servers.stop_all(std::time::Duration::ZERO);
        self.plane.teardown()
    }
}

/// Runs `scenario` to its end on `fx`, then tears it down.
pub fn run<S: Servers>(
    scenario: &Scenario,
    fx: OnPlane<'_, S>,
    inbox: &Receiver<Report>,
) -> Result<RunOutput, PlaneError> {
    let (result, fx) = runner::run(Runner::new(scenario, fx, Mode::Measure), inbox);
    let teardown = fx.teardown();
    let out = result?;
    teardown?;
    Ok(out)
}

/// Holds `fx` open with its services serving and steering in place (lab mode) until the
/// process is told to stop (SIGTERM or Ctrl-C tear it down from the ledger). `ready` is called
/// once the services are up, with the runner's inbox, through which rollouts on demand arrive
/// ([`Report::Rollout`]). Returns only on an error.
pub fn hold<S: Servers>(
    scenario: &Scenario,
    fx: OnPlane<'_, S>,
    inbox: &Receiver<Report>,
    ready: impl FnOnce(&Dataplane<Kernel>, Inbox) -> Result<(), EffectError>,
) -> Result<(), PlaneError> {
    let tx = fx.plane.inbox.clone();
    let mut runner = Runner::new(scenario, fx, Mode::Hold);
    let result = (|| -> Result<(), PlaneError> {
        runner.set_up()?;
        ready(&runner.effects().plane.dp, tx).map_err(RunnerError::Effect)?;
        let clock = Clock::start_now();
        runner.begin(clock.origin_ns())?;
        loop {
            runner.advance(clock.now())?;
            let wait = runner.next_deadline().saturating_since(clock.now());
            if let Ok(r) = inbox.recv_timeout(wait.min(runner::REAP_EVERY).into()) {
                runner.report(clock.now(), r)?;
            }
        }
    })();
    let (_, fx) = runner.finish();
    let teardown = fx.teardown();
    result?;
    teardown?;
    Ok(())
}

/// A generator thread's sink: every finished request goes to the runner, which owns the
/// recorder and the rollout's analysis.
struct ChannelSink {
    wl: usize,
    tx: Inbox,
}

impl Sink for ChannelSink {
    fn record(&mut self, c: &Completion<'_>) {
        let _ = self.tx.send(Report::Done {
            wl: self.wl,
            intended: c.intended,
            done: c.done,
            version: c.version.map(str::to_string),
            outcome: c.outcome,
        });
    }
    fn lag(&mut self, at: Instant, lag: Duration) {
        let _ = self.tx.send(Report::Lag { at, lag });
    }
}

impl<S: Servers> Replicas for OnPlane<'_, S> {
    fn start(&mut self, spec: &ReplicaSpec) -> Result<(), EffectError> {
        let netns = self.plane.add_replica(spec)?;
        self.servers.start(&mut self.plane.dp, spec, &netns)
    }

    fn signal(&mut self, id: ReplicaId, signal: Signal) {
        self.servers.signal(id, signal);
    }

    fn restart(&mut self, spec: &ReplicaSpec) -> Result<(), EffectError> {
        self.servers.restart(&mut self.plane.dp, spec)
    }

    fn reap(&mut self) -> Result<Vec<ReplicaId>, EffectError> {
        self.servers.reap()
    }

    fn running(&self, id: ReplicaId) -> bool {
        self.servers.running(id)
    }

    fn release(&mut self, id: ReplicaId) -> Result<(), EffectError> {
        self.servers.release(id)?;
        self.plane.release(id)
    }

    fn log_path(&self, id: ReplicaId) -> Option<PathBuf> {
        self.servers.log_path(id)
    }

    fn stop_all(&mut self, grace: std::time::Duration) {
        self.servers.stop_all(grace);
    }
}

impl<S: Servers> Probes for OnPlane<'_, S> {
    fn probe(&mut self, id: ReplicaId) {
        let p = &self.plane.replicas[id as usize];
        let svc = &self.plane.s.services[p.svc];
        let target = SocketAddrV4::new(p.addr, svc.port);
        if let Some(prober) = self.plane.probe_tx.get(&svc.gateway) {
            let _ = prober.send((id, target, p.ready_path.clone()));
        }
    }

    fn wait_ready(&mut self, id: ReplicaId, within: Duration) -> Result<bool, EffectError> {
        let p = &self.plane.replicas[id as usize];
        let svc = &self.plane.s.services[p.svc];
        let target = SocketAddrV4::new(p.addr, svc.port);
        let gw = dp_netns(&self.plane.dp, &svc.gateway)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from(within);
        while !probe_from(&gw, target, &p.ready_path).unwrap_or(false) {
            if std::time::Instant::now() > deadline {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(true)
    }
}

impl<S: Servers> Network for OnPlane<'_, S> {
    fn steer(&mut self, svc: usize, table: &SteeringTable) -> Result<(), EffectError> {
        let name = &self.plane.s.services[svc].name;
        Ok(self.plane.dp.set_steering(name, table)?)
    }

    fn set_link_up(&mut self, link: usize, up: bool) -> Result<(), EffectError> {
        let p = &mut self.plane;
        if p.emu.carries(link) {
            p.emu.set_up(link, up)?;
        } else {
            p.dp.set_link_up(link, up)?;
        }
        Ok(())
    }

    fn set_link_params(&mut self, link: usize, params: &LinkParams) -> Result<(), EffectError> {
        let p = &mut self.plane;
        if p.emu.carries(link) {
            p.emu.set_link(link, params.clone())?;
        } else {
            p.dp.set_link_shaping(link, params)?;
        }
        Ok(())
    }

    /// The kernel's counters for veths, the emulator's for the links it carries.
    fn link_counters(&mut self, at: Instant) -> Result<Vec<LinkRow>, EffectError> {
        let p = &mut self.plane;
        let mut rows = Vec::new();
        for sample in p.dp.link_counters()? {
            if sample.link.is_some_and(|li| p.emu.carries(li)) {
                continue;
            }
            rows.push((
                sample.link,
                sample.from.clone(),
                sample.to.clone(),
                sample.counters(),
            ));
        }
        rows.extend(
            p.emu
                .counters()
                .into_iter()
                .map(|(li, from, to, c)| (Some(li), from, to, c)),
        );
        Ok(rows
            .into_iter()
            .map(|(li, from, to, counters)| {
                let (link, direction) = p.link_row(li, &from, &to);
                LinkRow {
                    at,
                    link,
                    direction,
                    counters,
                }
            })
            .collect())
    }

    fn check_reachability(&mut self) -> Result<Vec<String>, EffectError> {
        let p = &mut self.plane;
        let rows =
            p.dp.check_policies(p.s, std::time::Duration::from_millis(500))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let allowed = if r.expected { "allowed" } else { "denied" };
                format!(
                    "{} → {}:{} {allowed} ({})",
                    r.from,
                    r.to,
                    r.port,
                    r.observed.as_str()
                )
            })
            .collect())
    }
}

impl<S: Servers> Workloads for OnPlane<'_, S> {
    /// One generator thread group in the client's namespace.
    fn start_workload(&mut self, spec: &WorkloadSpec) -> Result<(), EffectError> {
        let wl = &self.plane.s.workloads[spec.wl];
        // Answers that name no version are attributed by steering target: through the
        // gateway's conntrack for a service's VIP, by the peer's own address for a node.
        let attribution = match &wl.to {
            Target::Service(name) => {
                let svc = self.plane.s.service(name).expect("validated");
                let gw = dp_netns(&self.plane.dp, &svc.gateway)?;
                let ct = match self.plane.conntrack.get(&gw) {
                    Some(ct) => ct.clone(),
                    None => {
                        let ct = Arc::new(Conntrack::open_in(&gw)?);
                        self.plane.conntrack.insert(gw, ct.clone());
                        ct
                    }
                };
                Attribution::via_gateway(self.plane.versions.clone(), ct)
            }
            Target::Node(_) => Attribution::direct(self.plane.versions.clone()),
        };
        let p = &self.plane;
        let (target, host) = match &wl.to {
            Target::Service(name) => {
                let svc = p.s.service(name).expect("validated");
                let vip = p.dp.plan().service(name).expect("planned").vip;
                (
                    SocketAddr::V4(SocketAddrV4::new(vip, svc.port)),
                    name.clone(),
                )
            }
            Target::Node(n) => {
                let addr =
                    p.dp.plan()
                        .node(n)
                        .and_then(|p| p.ifaces.first().map(|i| i.addr));
                let addr = addr.ok_or_else(|| PlaneError::Io {
                    what: format!("workload {}: node {n} has no address", wl.name),
                    source: std::io::Error::other("unconnected node"),
                })?;
                (SocketAddr::V4(SocketAddrV4::new(addr, 8080)), n.clone())
            }
        };
        let netns = netns_path(&dp_netns(&p.dp, &wl.from)?);
        let cfg = LoadConfig {
            target,
            host,
            path: "/".into(),
            rate: Rate::Open {
                schedule: spec.schedule.clone(),
                arrivals: wl.arrivals,
            },
            duration: p.s.duration,
            connections: wl.connections as usize,
            max_requests_per_connection: u64::from(wl.max_requests_per_connection),
            timeout: wl.timeout,
            request_size: wl.request.0 as usize,
            threads: 1,
            seed: spec.seed,
            on_thread_start: Some(Arc::new(move |_| enter_netns(&netns))),
            clock: Some(Clock::with_origin_ns(spec.origin_ns)),
            attribute: Some(attribution.resolver()),
        };
        let tx = p.inbox.clone();
        let wi = spec.wl;
        std::thread::Builder::new()
            .name(format!("load-{}", wl.name))
            .spawn(move || {
                let result = load::run(&cfg, |_| ChannelSink {
                    wl: wi,
                    tx: tx.clone(),
                })
                .map(|_| ())
                .map_err(EffectError::from);
                let _ = tx.send(Report::WorkloadFinished { wl: wi, result });
            })
            .map_err(io_err("starting a generator thread"))?;
        Ok(())
    }
}

/// The namespace name of node `node`.
fn dp_netns(dp: &Dataplane<Kernel>, node: &str) -> Result<String, PlaneError> {
    dp.plan()
        .node(node)
        .map(|n| n.netns.clone())
        .ok_or_else(|| PlaneError::Io {
            what: format!("node {node} is not in the plan"),
            source: std::io::Error::other("unknown node"),
        })
}

/// Moves the calling thread into the network namespace bind-mounted at `path`.
fn enter_netns(path: &Path) -> std::io::Result<()> {
    let f = File::open(path)?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// `GET path` answered 200.
fn probe_ready(target: SocketAddrV4, path: &str) -> std::io::Result<bool> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(target), PROBE_TIMEOUT)?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
    s.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {target}\r\nconnection: close\r\n\r\n"
    )?;
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    // Any 2xx, as Kubernetes' httpGet probes count success (and HTTP/1.0 servers answer too).
    Ok(n >= 12 && buf.starts_with(b"HTTP/1.") && buf[9] == b'2')
}

/// One probe from namespace `netns`, on a short-lived thread (the caller stays where it is).
fn probe_from(netns: &str, target: SocketAddrV4, path: &str) -> std::io::Result<bool> {
    let ns = netns_path(netns);
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&ns)?;
            probe_ready(target, path)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("probe thread panicked")))
    })
}

/// A thread in namespace `netns` that answers probe requests `(replica, address, path)` with
/// [`Report::Probe`]; it ends when the plane drops its sender.
fn spawn_prober(
    netns: &str,
    tx: Inbox,
) -> Result<Sender<(ReplicaId, SocketAddrV4, String)>, PlaneError> {
    let (req_tx, req_rx) = mpsc::channel::<(ReplicaId, SocketAddrV4, String)>();
    let path = netns_path(netns);
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("probes".into())
        .spawn(move || {
            if let Err(e) = enter_netns(&path) {
                let _ = ready_tx.send(Err(e));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            while let Ok((replica, target, path)) = req_rx.recv() {
                let ok = probe_ready(target, &path).unwrap_or(false);
                if tx.send(Report::Probe { replica, ok }).is_err() {
                    break;
                }
            }
        })
        .map_err(io_err("starting the prober thread"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(req_tx),
        Ok(Err(source)) => Err(PlaneError::Prober {
            netns: netns.to_string(),
            source,
        }),
        Err(_) => Err(PlaneError::Prober {
            netns: netns.to_string(),
            source: std::io::Error::other("the prober thread ended"),
        }),
    }
}
