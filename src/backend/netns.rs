//! The `netns` backend: a scenario with real processes, real TCP and the kernel's data plane.
//!
//! The data plane ([`crate::dataplane`]) builds the topology in network namespaces; every
//! replica is an `sdnbed serve` process in its own namespace, every workload the load generator
//! ([`crate::workload::load`]) on threads inside its client's namespace. The run itself (what
//! happens when, drain, readiness, steering updates, timed events) is the real-time runner's
//! ([`super::runner`]); this file only says how each effect is carried out here, through
//! [`NetnsEffects`].
//!
//! # How the effects are carried out
//!
//! - A replica is its namespace and veth ([`Dataplane::add_replica`], and the emulator's side
//!   of its links), then `sdnbed serve` in its own process group, recorded in the ledger, its
//!   output in `<work_dir>/replicas/<service>-<id>.log`. Restart in place: SIGKILL, wait, spawn
//!   again in the same namespace. Release: the namespace goes.
//! - Readiness probes: `GET /ready` from a thread in the first service's gateway namespace
//!   (routes reach every replica from there), timeout 300 ms.
//! - Steering: one nftables transaction per table; links: the emulator where it carries the
//!   link, else the kernel (`ip link set up/down`, `tc` shaping).
//! - Workloads: the load generator's threads enter the client's namespace.
//!
//! # Departures from the simulator
//!
//! Real time has jitter of its own: timers here fire within about a millisecond, and the
//! rollout's decisions use the runner's clock, not the generator's. Errors without an answer
//! are attributed to the version that last answered on the same connection (the generator's
//! rule), where the simulator attributes them to no version.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use super::effects::{
    EffectError, Inbox, Network, Probes, ReplicaSpec, Replicas, Report, Signal, WorkloadSpec,
    Workloads,
};
use super::runner::{self, Mode, Runner, RunnerError};
use crate::backend::RunOutput;
use crate::dataplane::deploy::{install_signal_teardown, Dataplane, DataplaneError, DeployOptions};
use crate::dataplane::netlink::{command_in, netns_path, Kernel};
use crate::linkemu::{Attached, LinkEmuError};
use crate::model::link::LinkParams;
use crate::model::rollout::ReplicaId;
use crate::model::steering::SteeringTable;
use crate::model::time::{Duration, Instant};
use crate::output::LinkRow;
use crate::scenario::types::{LinkEnd, Scenario, Target};
use crate::workload::load::{self, LoadConfig, Rate};
use crate::workload::stats::{Completion, Sink};
use crate::workload::timer::Clock;

/// Timeout of one readiness probe (connect and answer).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);

/// Where and how a netns run happens.
#[derive(Clone, Debug)]
pub struct NetnsOptions {
    /// The `sdnbed` binary replicas run (`sdnbed serve`).
    pub exe: PathBuf,
    /// Unique id of this run; part of every kernel object's name.
    pub run_id: String,
    /// Replica logs go to `<work_dir>/replicas/`, the ledger copy to `<work_dir>/ledger.jsonl`.
    pub work_dir: PathBuf,
    pub deploy: DeployOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    LinkEmu(#[from] LinkEmuError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error("starting replica {replica} of {service} in namespace {netns}: {source}")]
    Spawn {
        service: String,
        replica: ReplicaId,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the readiness prober in namespace {netns}: {source}")]
    Prober {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetnsError {
    let what = what.into();
    move |source| NetnsError::Io { what, source }
}

/// The netns backend.
pub struct Netns;

impl super::Backend for Netns {
    fn run(
        &self,
        scenario: &Scenario,
        ctx: &super::RunContext,
    ) -> Result<RunOutput, super::BackendError> {
        let opts = NetnsOptions {
            exe: ctx.exe.clone(),
            run_id: ctx.run_id.clone(),
            work_dir: ctx.work_dir.clone(),
            deploy: Default::default(),
        };
        Ok(run(scenario, &opts)?)
    }
    fn concurrent(&self) -> bool {
        false
    }
}

/// Runs `scenario` on network namespaces. Needs root.
pub fn run(scenario: &Scenario, opts: &NetnsOptions) -> Result<RunOutput, NetnsError> {
    let (fx, inbox) = NetnsEffects::deploy(scenario, opts)?;
    let (result, fx) = runner::run(Runner::new(scenario, fx, Mode::Measure), &inbox);
    let teardown = fx.teardown();
    let out = result?;
    teardown?;
    Ok(out)
}

/// Deploys `scenario` on namespaces with its services serving and steering in place, and holds
/// it open (lab mode) until the process is told to stop (SIGTERM or Ctrl-C tear it down from
/// the ledger). `ready` is called once the services are up, with the runner's inbox, through
/// which rollouts on demand arrive ([`Report::Rollout`]). Returns only on an error.
pub fn hold(
    scenario: &Scenario,
    opts: &NetnsOptions,
    ready: impl FnOnce(&Dataplane<Kernel>, Inbox) -> Result<(), EffectError>,
) -> Result<(), NetnsError> {
    let (fx, inbox) = NetnsEffects::deploy(scenario, opts)?;
    let tx = fx.inbox.clone();
    let mut runner = Runner::new(scenario, fx, Mode::Hold);
    let result = (|| -> Result<(), NetnsError> {
        runner.set_up()?;
        ready(&runner.effects().dp, tx).map_err(RunnerError::Effect)?;
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

/// What the netns backend keeps of a replica (same id as the driver's).
struct Replica {
    spec: ReplicaSpec,
    netns: String,
    addr: Ipv4Addr,
    child: Option<Child>,
    log: PathBuf,
}

/// The netns backend's effects: the data plane, the emulated links, the replicas' processes
/// and the readiness prober.
pub struct NetnsEffects<'s> {
    s: &'s Scenario,
    opts: &'s NetnsOptions,
    dp: Dataplane<Kernel>,
    /// The emulated links (empty when the kernel's netem, or no shaping, does it all).
    emu: Attached,
    replicas: Vec<Replica>,
    inbox: Inbox,
    probe_tx: Sender<(ReplicaId, SocketAddrV4)>,
}

impl<'s> NetnsEffects<'s> {
    /// Deploys the network (ledger first, so `sdnbed clean` can always undo it) and the
    /// prober; returns the effects and the inbox their reports arrive on.
    fn deploy(
        s: &'s Scenario,
        opts: &'s NetnsOptions,
    ) -> Result<(Self, mpsc::Receiver<Report>), NetnsError> {
        install_signal_teardown().map_err(io_err("installing the Ctrl-C handler"))?;
        std::fs::create_dir_all(opts.work_dir.join("replicas"))
            .map_err(io_err(format!("creating {}", opts.work_dir.display())))?;
        let deploy = DeployOptions {
            ledger_copy: Some(opts.work_dir.join("ledger.jsonl")),
            ..opts.deploy.clone()
        };
        // Links that need delay, jitter, loss or a trace go through the user-space emulator
        // where the kernel has no netem (or the scenario asks for it); `capture = true` links
        // write pcaps.
        let capture_dir = opts.work_dir.join("pcap");
        let (dp, emu) = crate::linkemu::deploy(s, &opts.run_id, &deploy, Some(&capture_dir))?;
        let (tx, rx) = mpsc::channel();
        // Readiness probes go from the first service's gateway; routes reach every replica
        // from there.
        let probe_tx = match s.services.first() {
            Some(svc) => spawn_prober(&dp_netns(&dp, &svc.gateway)?, tx.clone())?,
            None => mpsc::channel().0,
        };
        let fx = NetnsEffects {
            s,
            opts,
            dp,
            emu,
            replicas: Vec::new(),
            inbox: tx,
            probe_tx,
        };
        Ok((fx, rx))
    }

    /// Stops what is left of the replicas, then removes the network.
    fn teardown(mut self) -> Result<(), NetnsError> {
        self.stop_all(std::time::Duration::ZERO);
        self.dp.teardown()?;
        Ok(())
    }

    /// `sdnbed serve` for `spec` in namespace `netns`, in its own process group, output
    /// appended to `log`, recorded in the ledger.
    fn spawn(&mut self, spec: &ReplicaSpec, netns: &str, log: &Path) -> Result<Child, NetnsError> {
        let service = &self.s.services[spec.svc];
        let v = &service.versions[spec.version];
        let response = self
            .s
            .workloads
            .iter()
            .find(|w| w.to == Target::Service(service.name.clone()))
            .map_or(0, |w| w.response.0);
        let spawn_err = |source| NetnsError::Spawn {
            service: service.name.clone(),
            replica: spec.id,
            netns: netns.to_string(),
            source,
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let mut cmd = command_in(netns, &self.opts.exe).map_err(spawn_err)?;
        cmd.arg("serve")
            .args(["--listen", &format!("0.0.0.0:{}", service.port)])
            .args(["--version", &v.name])
            .args(["--service-time", &v.service_time.to_string()])
            .args(["--workers", &service.workers.to_string()])
            .args(["--startup", &v.startup.to_string()])
            .args(["--error-rate", &v.error_rate.to_string()])
            .args(["--response-size", &format!("{response}B")])
            .args(["--seed", &spec.seed.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // Started and recorded in one critical section: a signal either finds it in the
        // ledger or stops the run before it starts.
        self.dp.spawn(&mut cmd).map_err(|e| match e {
            DataplaneError::Spawn(source) => spawn_err(source),
            e => e.into(),
        })
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

impl Replicas for NetnsEffects<'_> {
    fn start(&mut self, spec: &ReplicaSpec) -> Result<(), EffectError> {
        debug_assert_eq!(spec.id as usize, self.replicas.len());
        let name = &self.s.services[spec.svc].name;
        let info = self.dp.add_replica(name, spec.id)?;
        self.emu.add_replica(&self.dp, name, spec.id)?;
        let log = self
            .opts
            .work_dir
            .join("replicas")
            .join(format!("{name}-{}.log", spec.id));
        let child = self.spawn(spec, &info.netns, &log)?;
        self.replicas.push(Replica {
            spec: spec.clone(),
            netns: info.netns,
            addr: info.addr,
            child: Some(child),
            log,
        });
        Ok(())
    }

    fn signal(&mut self, id: ReplicaId, signal: Signal) {
        if let Some(child) = &self.replicas[id as usize].child {
            let sig = match signal {
                Signal::Term => libc::SIGTERM,
                Signal::Kill => libc::SIGKILL,
            };
            // SAFETY: kill(2) on our own child's pid; it has not been reaped (we hold the Child).
            unsafe {
                libc::kill(child.id() as libc::pid_t, sig);
            }
        }
    }

    fn restart(&mut self, spec: &ReplicaSpec) -> Result<(), EffectError> {
        let r = &mut self.replicas[spec.id as usize];
        if let Some(mut child) = r.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let (netns, log) = (r.netns.clone(), r.log.clone());
        let child = self.spawn(spec, &netns, &log)?;
        self.replicas[spec.id as usize].child = Some(child);
        Ok(())
    }

    fn reap(&mut self) -> Result<Vec<ReplicaId>, EffectError> {
        let mut exited = Vec::new();
        for r in &mut self.replicas {
            if let Some(c) = &mut r.child {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    r.child = None;
                    exited.push(r.spec.id);
                }
            }
        }
        Ok(exited)
    }

    fn running(&self, id: ReplicaId) -> bool {
        self.replicas[id as usize].child.is_some()
    }

    fn release(&mut self, id: ReplicaId) -> Result<(), EffectError> {
        let name = &self.s.services[self.replicas[id as usize].spec.svc].name;
        self.emu.remove_replica(name, id);
        self.dp.remove_replica(name, id)?;
        Ok(())
    }

    fn log_path(&self, id: ReplicaId) -> Option<PathBuf> {
        self.replicas.get(id as usize).map(|r| r.log.clone())
    }

    fn stop_all(&mut self, grace: std::time::Duration) {
        for id in 0..self.replicas.len() as ReplicaId {
            self.signal(id, Signal::Term);
        }
        let deadline = std::time::Instant::now() + grace;
        for r in &mut self.replicas {
            if let Some(c) = &mut r.child {
                while std::time::Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            r.child = None;
        }
    }
}

impl Probes for NetnsEffects<'_> {
    fn probe(&mut self, id: ReplicaId) {
        let r = &self.replicas[id as usize];
        let port = self.s.services[r.spec.svc].port;
        let _ = self.probe_tx.send((id, SocketAddrV4::new(r.addr, port)));
    }

    fn wait_ready(&mut self, id: ReplicaId, within: Duration) -> Result<bool, EffectError> {
        let r = &self.replicas[id as usize];
        let svc = &self.s.services[r.spec.svc];
        let target = SocketAddrV4::new(r.addr, svc.port);
        let gw = dp_netns(&self.dp, &svc.gateway)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from(within);
        while !probe_from(&gw, target).unwrap_or(false) {
            if std::time::Instant::now() > deadline {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(true)
    }
}

impl Network for NetnsEffects<'_> {
    fn steer(&mut self, svc: usize, table: &SteeringTable) -> Result<(), EffectError> {
        Ok(self.dp.set_steering(&self.s.services[svc].name, table)?)
    }

    fn set_link_up(&mut self, link: usize, up: bool) -> Result<(), EffectError> {
        if self.emu.carries(link) {
            self.emu.set_up(link, up)?;
        } else {
            self.dp.set_link_up(link, up)?;
        }
        Ok(())
    }

    fn set_link_params(&mut self, link: usize, params: &LinkParams) -> Result<(), EffectError> {
        if self.emu.carries(link) {
            self.emu.set_link(link, params.clone())?;
        } else {
            self.dp.set_link_shaping(link, params)?;
        }
        Ok(())
    }

    /// The kernel's counters for veths, the emulator's for the links it carries.
    fn link_counters(&mut self, at: Instant) -> Result<Vec<LinkRow>, EffectError> {
        let mut rows = Vec::new();
        for sample in self.dp.link_counters()? {
            if sample.link.is_some_and(|li| self.emu.carries(li)) {
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
            self.emu
                .counters()
                .into_iter()
                .map(|(li, from, to, c)| (Some(li), from, to, c)),
        );
        Ok(rows
            .into_iter()
            .map(|(li, from, to, counters)| {
                let (link, direction) = self.link_row(li, &from, &to);
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
        let rows = self
            .dp
            .check_policies(self.s, std::time::Duration::from_millis(500))?;
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

impl Workloads for NetnsEffects<'_> {
    /// One generator thread group in the client's namespace.
    fn start_workload(&mut self, spec: &WorkloadSpec) -> Result<(), EffectError> {
        let wl = &self.s.workloads[spec.wl];
        let (target, host) = match &wl.to {
            Target::Service(name) => {
                let svc = self.s.service(name).expect("validated");
                let vip = self.dp.plan().service(name).expect("planned").vip;
                (
                    SocketAddr::V4(SocketAddrV4::new(vip, svc.port)),
                    name.clone(),
                )
            }
            Target::Node(n) => {
                let addr = self
                    .dp
                    .plan()
                    .node(n)
                    .and_then(|p| p.ifaces.first().map(|i| i.addr));
                let addr = addr.ok_or_else(|| NetnsError::Io {
                    what: format!("workload {}: node {n} has no address", wl.name),
                    source: std::io::Error::other("unconnected node"),
                })?;
                (SocketAddr::V4(SocketAddrV4::new(addr, 8080)), n.clone())
            }
        };
        let netns = netns_path(&dp_netns(&self.dp, &wl.from)?);
        let cfg = LoadConfig {
            target,
            host,
            path: "/".into(),
            rate: Rate::Open {
                schedule: spec.schedule.clone(),
                arrivals: wl.arrivals,
            },
            duration: self.s.duration,
            connections: wl.connections as usize,
            max_requests_per_connection: u64::from(wl.max_requests_per_connection),
            timeout: wl.timeout,
            request_size: wl.request.0 as usize,
            threads: 1,
            seed: spec.seed,
            on_thread_start: Some(Arc::new(move |_| enter_netns(&netns))),
            attribute: None,
            clock: Some(Clock::with_origin_ns(spec.origin_ns)),
        };
        let tx = self.inbox.clone();
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
fn dp_netns(dp: &Dataplane<Kernel>, node: &str) -> Result<String, NetnsError> {
    dp.plan()
        .node(node)
        .map(|n| n.netns.clone())
        .ok_or_else(|| NetnsError::Io {
            what: format!("node {node} is not in the plan"),
            source: std::io::Error::other("unknown node"),
        })
}

/// Moves the calling thread into the network namespace bind-mounted at `path`.
fn enter_netns(path: &Path) -> std::io::Result<()> {
    let f = File::open(path)?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// `GET /ready` answered 200.
fn probe_ready(target: SocketAddrV4) -> std::io::Result<bool> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(target), PROBE_TIMEOUT)?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
    s.set_write_timeout(Some(PROBE_TIMEOUT))?;
    s.write_all(b"GET /ready HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n")?;
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(buf[..n].starts_with(b"HTTP/1.1 200"))
}

/// One probe from namespace `netns`, on a short-lived thread (the caller stays where it is).
fn probe_from(netns: &str, target: SocketAddrV4) -> std::io::Result<bool> {
    let path = netns_path(netns);
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&path)?;
            probe_ready(target)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("probe thread panicked")))
    })
}

/// A thread in namespace `netns` that answers probe requests `(replica, address)` with
/// [`Report::Probe`]; it ends when the driver drops its sender.
fn spawn_prober(netns: &str, tx: Inbox) -> Result<Sender<(ReplicaId, SocketAddrV4)>, NetnsError> {
    let (req_tx, req_rx) = mpsc::channel::<(ReplicaId, SocketAddrV4)>();
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
            while let Ok((replica, target)) = req_rx.recv() {
                let ok = probe_ready(target).unwrap_or(false);
                if tx.send(Report::Probe { replica, ok }).is_err() {
                    break;
                }
            }
        })
        .map_err(io_err("starting the prober thread"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(req_tx),
        Ok(Err(source)) => Err(NetnsError::Prober {
            netns: netns.to_string(),
            source,
        }),
        Err(_) => Err(NetnsError::Prober {
            netns: netns.to_string(),
            source: std::io::Error::other("the prober thread ended"),
        }),
    }
}
