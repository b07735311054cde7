//! The `netns` backend: a scenario with real processes, real TCP and the kernel's data plane.
//!
//! The data plane ([`crate::dataplane`]) builds the topology in network namespaces; every
//! replica is an `sdnbed serve` process in its own namespace, every workload the load generator
//! ([`crate::workload::load`]) on threads inside its client's namespace. The same rollout state
//! machines as the simulator ([`crate::model::rollout`]) drive real actions in real time, and
//! the same recorder and result files come out, so a run here can be compared file for file with
//! a simulated one.
//!
//! # The run, in order
//!
//! 1. Deploy the network (ledger first, so `sdnbed clean` can always undo it), start the
//!    starting replicas and wait until their readiness probes pass, install steering.
//! 2. Probe every (source, destination, port) the scenario implies and compare with the
//!    policies; a mismatch fails the run before any load is sent. The matrix goes into the
//!    run's events.
//! 3. Start the clock (time zero of the run) and the generators; from then on a single driver
//!    thread owns all state and handles, in time order: rollout polls, readiness probes
//!    (`GET /ready` from the service's gateway namespace, every `period`), drain steps, steering
//!    updates (after `propagation_delay`), timed events and link sampling.
//! 4. When every generator has finished (each waits up to its timeout for requests still in
//!    flight), stop the replicas and tear the network down. Teardown also runs on an error, on
//!    Ctrl-C and SIGTERM (from the ledger) and on panic (the data plane's guard).
//!
//! # Semantics shared with the simulator
//!
//! Draining removes a replica from steering, waits `pre_stop`, sends SIGTERM (the server stops
//! accepting, finishes what it holds and closes kept-alive connections) and SIGKILL after
//! `grace`. `kill-replica` sends SIGKILL and restarts the process in place; probes notice only if
//! the outage spans `failure_threshold` probes. Steering is the same 10,000-slot table, installed
//! in one nftables transaction per change. `set-rate` events are folded into the generator's
//! schedule before it starts ([`Scenario::effective_rate`]).
//!
//! # Departures
//!
//! Real time has jitter of its own: timers here fire within about a millisecond, and the
//! rollout's decisions use the driver's clock, not the generator's. Errors without an answer are
//! attributed to the version that last answered on the same connection (the generator's rule),
//! where the simulator attributes them to no version.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;

use crate::backend::RunOutput;
use crate::dataplane::deploy::{install_signal_teardown, Dataplane, DataplaneError, DeployOptions};
use crate::dataplane::netlink::{command_in, netns_path, Kernel};
use crate::driver::{Command, Driver};
use crate::linkemu::{Attached, LinkEmuError};
use crate::metrics::{Outcome, Recorder};
use crate::model::link::LinkParams;
use crate::model::rng::SeedTree;
use crate::model::rollout::{Phase, ReplicaId, ReplicaState};
use crate::model::time::{Duration, Instant};
use crate::results::LinkRow;
use crate::scenario::types::{EventAction, LinkEnd, Scenario, Target};
use crate::workload::load::{self, LoadConfig, Rate};
use crate::workload::stats::{Completion, Sink};
use crate::workload::timer::Clock;
use crate::workload::WorkloadError;

/// How long the starting replicas may take to become ready, beyond their `startup`.
const SETUP_GRACE: Duration = Duration::from_secs(10);
/// Timeout of one readiness probe (connect and answer).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);
/// Time between starting the generators and the run's time zero, for their connection pools.
const START_LEAD: Duration = Duration::from_millis(200);
/// The driver looks for exited replica processes at least this often.
const REAP_EVERY: Duration = Duration::from_millis(20);

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
    #[error("starting replica {replica} of {service} in namespace {netns}: {source}")]
    Spawn {
        service: String,
        replica: ReplicaId,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "replica {replica} of {service} was not ready {within} after it started (its log: {log})"
    )]
    NotReady {
        service: String,
        replica: ReplicaId,
        within: Duration,
        log: String,
    },
    #[error("the readiness prober in namespace {netns}: {source}")]
    Prober {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("workload {workload}: {source}")]
    Workload {
        workload: String,
        #[source]
        source: WorkloadError,
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

/// Runs `scenario` on network namespaces. Needs root.
pub fn run(scenario: &Scenario, opts: &NetnsOptions) -> Result<RunOutput, NetnsError> {
    install_signal_teardown().map_err(io_err("installing the Ctrl-C handler"))?;
    std::fs::create_dir_all(opts.work_dir.join("replicas"))
        .map_err(io_err(format!("creating {}", opts.work_dir.display())))?;
    let deploy = DeployOptions {
        ledger_copy: Some(opts.work_dir.join("ledger.jsonl")),
        ..opts.deploy.clone()
    };
    // Links that need delay, jitter, loss or a trace go through the user-space emulator where
    // the kernel has no netem (or the scenario asks for it); `capture = true` links write pcaps.
    let capture_dir = opts.work_dir.join("pcap");
    let (dp, emu) = crate::linkemu::deploy(scenario, &opts.run_id, &deploy, Some(&capture_dir))?;
    let mut run = NetnsRun::new(scenario, opts, dp, emu)?;
    let result = run.run();
    // Replicas first (their namespaces go with the data plane), then the network.
    run.stop_all_replicas();
    let NetnsRun { dp, .. } = run;
    let teardown = dp.teardown();
    let out = result?;
    teardown?;
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    RolloutPoll,
    Probe { replica: u32 },
    Sigterm { replica: u32 },
    Sigkill { replica: u32 },
    Steering { svc: usize, snapshot: usize },
    Scenario { index: usize, undo: bool },
    SampleLinks,
}

/// What the other threads tell the driver.
enum Msg {
    Done {
        wl: usize,
        intended: Instant,
        done: Instant,
        version: Option<String>,
        outcome: Outcome,
    },
    Lag {
        at: Instant,
        lag: Duration,
    },
    Probe {
        replica: u32,
        ok: bool,
    },
    WorkloadFinished {
        wl: usize,
        result: Result<(), WorkloadError>,
    },
}

/// A generator thread's sink: every finished request goes to the driver, which owns the
/// recorder and the rollout's analysis.
struct ChannelSink {
    wl: usize,
    tx: Sender<Msg>,
}

impl Sink for ChannelSink {
    fn record(&mut self, c: &Completion<'_>) {
        let _ = self.tx.send(Msg::Done {
            wl: self.wl,
            intended: c.intended,
            done: c.done,
            version: c.version.map(str::to_string),
            outcome: c.outcome,
        });
    }
    fn lag(&mut self, at: Instant, lag: Duration) {
        let _ = self.tx.send(Msg::Lag { at, lag });
    }
}

/// What the netns backend keeps of a replica besides the driver's record of it (same id).
struct Replica {
    svc: usize,
    version: usize,
    netns: String,
    addr: Ipv4Addr,
    child: Option<Child>,
    /// Consecutive failed probes while ready.
    failures: u32,
    log: PathBuf,
    /// Its namespace and veths still exist (they outlive the process while steering, which
    /// learns late, may still send it connections).
    in_dataplane: bool,
}

/// One netns run: the data plane, the replicas' processes and the shared driver.
struct NetnsRun<'s> {
    s: &'s Scenario,
    opts: &'s NetnsOptions,
    dp: Dataplane<Kernel>,
    /// The emulated links (empty when the kernel's netem, or no shaping, does it all).
    emu: Attached,
    driver: Driver<'s>,
    seeds: SeedTree,
    seed_log: BTreeMap<String, u64>,
    /// None until time zero of the run: setup happens "at" time zero.
    clock: Option<Clock>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    timer_seq: u64,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    probe_tx: Sender<(u32, SocketAddrV4)>,
    replicas: Vec<Replica>,
    /// The replicas each service's installed steering table sends connections to.
    installed: Vec<BTreeSet<ReplicaId>>,
    recorder: Recorder,
    links: Vec<LinkRow>,
    link_state: BTreeMap<usize, LinkParams>,
}

impl<'s> NetnsRun<'s> {
    fn new(
        s: &'s Scenario,
        opts: &'s NetnsOptions,
        dp: Dataplane<Kernel>,
        emu: Attached,
    ) -> Result<Self, NetnsError> {
        let (tx, rx) = mpsc::channel();
        let driver = Driver::new(s);
        let recorder = Recorder::new(driver.recorder_config());
        // Readiness probes go from the first service's gateway; routes reach every replica
        // from there.
        let probe_tx = match s.services.first() {
            Some(svc) => spawn_prober(&dp_netns(&dp, &svc.gateway)?, tx.clone())?,
            None => mpsc::channel().0,
        };
        Ok(NetnsRun {
            s,
            opts,
            dp,
            emu,
            driver,
            seeds: SeedTree::new(s.seed),
            seed_log: BTreeMap::new(),
            clock: None,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            tx,
            rx,
            probe_tx,
            replicas: Vec::new(),
            installed: vec![BTreeSet::new(); s.services.len()],
            recorder,
            links: Vec::new(),
            link_state: BTreeMap::new(),
        })
    }

    fn now(&self) -> Instant {
        self.clock.map_or(Instant::ZERO, |c| c.now())
    }

    fn log(&mut self, source: &str, kind: &str, detail: String) {
        let now = self.now();
        self.driver.log(now, source, kind, detail);
    }

    fn at(&mut self, at: Instant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.push(Reverse((at, self.timer_seq, timer)));
    }

    // ----- the run ---------------------------------------------------------------------------

    fn run(&mut self) -> Result<RunOutput, NetnsError> {
        self.start_services()?;
        self.check_policies()?;
        // Time zero: the generators' pools connect during the lead.
        let origin = Clock::start_now().origin_ns() + START_LEAD.as_nanos();
        self.clock = Some(Clock::with_origin_ns(origin));
        let mut running = self.start_workloads()?;
        for (i, e) in self.s.events.iter().enumerate() {
            self.at(
                Instant::ZERO + e.at,
                Timer::Scenario {
                    index: i,
                    undo: false,
                },
            );
        }
        self.at(Instant::ZERO + self.s.window, Timer::SampleLinks);
        for id in 0..self.replicas.len() as u32 {
            let period = self.s.services[self.replicas[id as usize].svc]
                .readiness
                .period;
            self.at(Instant::ZERO + period, Timer::Probe { replica: id });
        }
        self.recorder.phase_change(Instant::ZERO, Phase::Before);
        let mut first_error = None;
        let mut last_reap = Instant::ZERO;
        while running > 0 {
            let now = self.now();
            while let Some(Reverse((at, _, t))) = self.timers.peek().copied() {
                if at > now {
                    break;
                }
                self.timers.pop();
                self.handle_timer(t)?;
            }
            if now.saturating_since(last_reap) >= REAP_EVERY {
                self.reap()?;
                last_reap = now;
            }
            self.after_event()?;
            let next = self.timers.peek().map_or(Instant::MAX, |r| r.0 .0);
            let wait = next.saturating_since(self.now()).min(REAP_EVERY);
            match self.rx.recv_timeout(wait.into()) {
                Ok(msg) => {
                    let mut msg = Some(msg);
                    // Take what is queued in one go, without sleeping in between.
                    while let Some(m) = msg {
                        if let Msg::WorkloadFinished { wl, result } = m {
                            running -= 1;
                            if let Err(e) = result {
                                let workload = self.s.workloads[wl].name.clone();
                                first_error.get_or_insert(NetnsError::Workload {
                                    workload,
                                    source: e,
                                });
                            }
                        } else {
                            self.handle_msg(m)?;
                        }
                        msg = self.rx.try_recv().ok();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.sample_links()?;
        let end = self.now().max(Instant::ZERO + self.s.duration);
        let driver = std::mem::replace(&mut self.driver, Driver::new(self.s));
        let recorder =
            std::mem::replace(&mut self.recorder, Recorder::new(driver.recorder_config()));
        let (events, outcome) = driver.finish(end);
        Ok(RunOutput {
            metrics: recorder.finish(end),
            events,
            seeds: std::mem::take(&mut self.seed_log),
            rollout_outcome: outcome,
            links: std::mem::take(&mut self.links),
            events_processed: 0,
        })
    }

    /// Starts each service's replicas and waits until they are ready (steering follows).
    fn start_services(&mut self) -> Result<(), NetnsError> {
        for (si, svc) in self.s.services.iter().enumerate() {
            let vi = svc
                .versions
                .iter()
                .position(|v| v.name == svc.version)
                .expect("validated");
            let mut ids = Vec::new();
            for _ in 0..svc.replicas {
                let id = self.driver.add_replica(
                    Instant::ZERO,
                    si,
                    vi,
                    ReplicaState::Starting,
                    &mut self.recorder,
                );
                self.realise_replica(id)?;
                ids.push(id);
            }
            let within = svc.versions[vi].startup + SETUP_GRACE;
            let deadline = std::time::Instant::now() + std::time::Duration::from(within);
            let gw = dp_netns(&self.dp, &svc.gateway)?;
            for id in ids {
                let r = &self.replicas[id as usize];
                let target = SocketAddrV4::new(r.addr, svc.port);
                while !probe_from(&gw, target).unwrap_or(false) {
                    if std::time::Instant::now() > deadline {
                        let log = r.log.display().to_string();
                        return Err(NetnsError::NotReady {
                            service: svc.name.clone(),
                            replica: id,
                            within,
                            log,
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                self.set_state(id, ReplicaState::Ready)?;
            }
        }
        Ok(())
    }

    fn check_policies(&mut self) -> Result<(), NetnsError> {
        let rows = self
            .dp
            .check_policies(self.s, std::time::Duration::from_millis(500))?;
        for r in rows {
            let allowed = if r.expected { "allowed" } else { "denied" };
            let detail = format!(
                "{} → {}:{} {allowed} ({})",
                r.from,
                r.to,
                r.port,
                r.observed.as_str()
            );
            self.log("dataplane", "reachability", detail);
        }
        Ok(())
    }

    /// Starts one generator thread group per workload; returns how many run.
    fn start_workloads(&mut self) -> Result<usize, NetnsError> {
        let clock = self.clock.expect("started at time zero");
        for (wi, wl) in self.s.workloads.iter().enumerate() {
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
            let seed_name = format!("workload/{}/arrivals", wl.name);
            let seed = self.seeds.seed_for(&seed_name);
            self.seed_log.insert(seed_name, seed);
            let cfg = LoadConfig {
                target,
                host,
                path: "/".into(),
                rate: Rate::Open {
                    schedule: self.s.effective_rate(wl),
                    arrivals: wl.arrivals,
                },
                duration: self.s.duration,
                connections: wl.connections as usize,
                max_requests_per_connection: u64::from(wl.max_requests_per_connection),
                timeout: wl.timeout,
                request_size: wl.request.0 as usize,
                threads: 1,
                seed,
                on_thread_start: Some(Arc::new(move |_| enter_netns(&netns))),
                clock: Some(clock),
            };
            let tx = self.tx.clone();
            std::thread::Builder::new()
                .name(format!("load-{}", wl.name))
                .spawn(move || {
                    let result = load::run(&cfg, |_| ChannelSink {
                        wl: wi,
                        tx: tx.clone(),
                    })
                    .map(|_| ());
                    let _ = tx.send(Msg::WorkloadFinished { wl: wi, result });
                })
                .map_err(io_err("starting a generator thread"))?;
        }
        Ok(self.s.workloads.len())
    }

    // ----- replicas --------------------------------------------------------------------------

    /// Creates replica `id` of the driver's books: its namespace and its `sdnbed serve`.
    fn realise_replica(&mut self, id: ReplicaId) -> Result<(), NetnsError> {
        debug_assert_eq!(id as usize, self.replicas.len());
        let (svc, version) = (self.driver.replica(id).svc, self.driver.replica(id).version);
        let service = &self.s.services[svc];
        let info = self.dp.add_replica(&service.name, id)?;
        self.emu.add_replica(&self.dp, &service.name, id)?;
        let log = self
            .opts
            .work_dir
            .join("replicas")
            .join(format!("{}-{id}.log", service.name));
        let seed_name = format!("replica/{}/{id}", service.name);
        let seed = self.seeds.seed_for(&seed_name);
        self.seed_log.insert(seed_name, seed);
        let child = self.start_process(svc, version, &info.netns, seed, &log, id)?;
        self.replicas.push(Replica {
            svc,
            version,
            netns: info.netns,
            addr: info.addr,
            child: Some(child),
            failures: 0,
            log,
            in_dataplane: true,
        });
        Ok(())
    }

    /// `sdnbed serve` for `version` in namespace `netns`, in its own process group, output
    /// appended to `log`, recorded in the ledger.
    fn start_process(
        &mut self,
        svc: usize,
        version: usize,
        netns: &str,
        seed: u64,
        log: &Path,
        id: u32,
    ) -> Result<Child, NetnsError> {
        let service = &self.s.services[svc];
        let v = &service.versions[version];
        let response = self
            .s
            .workloads
            .iter()
            .find(|w| w.to == Target::Service(service.name.clone()))
            .map_or(0, |w| w.response.0);
        let spawn_err = |source| NetnsError::Spawn {
            service: service.name.clone(),
            replica: id,
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
            .args(["--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(spawn_err)?;
        self.dp.record_process(child.id())?;
        Ok(child)
    }

    fn set_state(&mut self, id: ReplicaId, state: ReplicaState) -> Result<(), NetnsError> {
        let now = self.now();
        match self.driver.set_state(now, id, state, &mut self.recorder) {
            Some(steer) => self.execute(steer),
            None => Ok(()),
        }
    }

    /// Carries out what the driver decided, in real time.
    fn execute(&mut self, c: Command) -> Result<(), NetnsError> {
        match c {
            Command::Start { id } => {
                self.realise_replica(id)?;
                let readiness = self.s.services[self.replicas[id as usize].svc].readiness;
                let first = self.now() + readiness.initial_delay.max(readiness.period);
                self.at(first, Timer::Probe { replica: id });
            }
            Command::Drain {
                id,
                sigterm,
                sigkill,
            } => {
                self.at(sigterm, Timer::Sigterm { replica: id });
                self.at(sigkill, Timer::Sigkill { replica: id });
            }
            Command::Steer { svc, snapshot, at } => {
                if at <= self.now() {
                    self.apply_steering(svc, snapshot)?;
                } else {
                    self.at(at, Timer::Steering { svc, snapshot });
                }
            }
            Command::PollAt { at } => self.at(at, Timer::RolloutPoll),
        }
        Ok(())
    }

    fn after_event(&mut self) -> Result<(), NetnsError> {
        let now = self.now();
        for c in self.driver.poll(now, &mut self.recorder) {
            self.execute(c)?;
        }
        Ok(())
    }

    fn signal(&mut self, id: u32, sig: libc::c_int) {
        if let Some(child) = &self.replicas[id as usize].child {
            // SAFETY: kill(2) on our own child's pid; it has not been reaped (we hold the Child).
            unsafe {
                libc::kill(child.id() as libc::pid_t, sig);
            }
        }
    }

    /// Collects exited replica processes.
    fn reap(&mut self) -> Result<(), NetnsError> {
        for id in 0..self.replicas.len() as u32 {
            let exited = match &mut self.replicas[id as usize].child {
                Some(c) => matches!(c.try_wait(), Ok(Some(_))),
                None => false,
            };
            if !exited {
                continue;
            }
            self.replicas[id as usize].child = None;
            if self.driver.replica(id).state == ReplicaState::Draining {
                self.set_state(id, ReplicaState::Gone)?;
                self.release_gone(self.replicas[id as usize].svc)?;
            } else {
                // Not asked to stop: it crashed; probes will notice.
                let log = self.replicas[id as usize].log.display().to_string();
                self.log(
                    "replica",
                    "exited",
                    format!("replica {id} exited unexpectedly; see {log}"),
                );
            }
        }
        Ok(())
    }

    /// kill-replica: SIGKILL, then the same replica restarts in its namespace.
    fn kill_and_restart(&mut self, id: u32) -> Result<(), NetnsError> {
        self.log(
            "scenario",
            "kill-replica",
            format!("replica {id} killed; restarting"),
        );
        if let Some(mut child) = self.replicas[id as usize].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let r = &self.replicas[id as usize];
        let (svc, version, netns, log) = (r.svc, r.version, r.netns.clone(), r.log.clone());
        let seed = self
            .seeds
            .seed_for(&format!("replica/{}/{id}", self.s.services[svc].name));
        let child = self.start_process(svc, version, &netns, seed, &log, id)?;
        self.replicas[id as usize].child = Some(child);
        Ok(())
    }

    fn stop_all_replicas(&mut self) {
        for id in 0..self.replicas.len() as u32 {
            self.signal(id, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
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

    // ----- steering --------------------------------------------------------------------------

    fn apply_steering(&mut self, svc: usize, snapshot: usize) -> Result<(), NetnsError> {
        let now = self.now();
        let Some(table) = self
            .driver
            .steering_table(now, svc, snapshot, &mut self.recorder)
        else {
            return Ok(());
        };
        self.dp.set_steering(&self.s.services[svc].name, &table)?;
        self.installed[svc] = table.ranges().iter().filter_map(|r| r.replica).collect();
        self.release_gone(svc)
    }

    /// Removes the namespaces of gone replicas that no installed or pending steering table
    /// refers to any more.
    fn release_gone(&mut self, svc: usize) -> Result<(), NetnsError> {
        let mut referenced = self.installed[svc].clone();
        referenced.extend(self.driver.pending_endpoints(svc));
        for id in 0..self.replicas.len() as u32 {
            let r = &self.replicas[id as usize];
            let gone = self.driver.replica(id).state == ReplicaState::Gone;
            if r.svc == svc && gone && r.in_dataplane && !referenced.contains(&id) {
                let name = &self.s.services[svc].name;
                self.emu.remove_replica(name, id);
                self.dp.remove_replica(name, id)?;
                self.replicas[id as usize].in_dataplane = false;
            }
        }
        Ok(())
    }

    // ----- timers and messages ---------------------------------------------------------------

    fn handle_timer(&mut self, t: Timer) -> Result<(), NetnsError> {
        match t {
            Timer::RolloutPoll => self.driver.wake(),
            Timer::Probe { replica } => {
                if self.driver.replica(replica).state == ReplicaState::Gone {
                    return Ok(());
                }
                let r = &self.replicas[replica as usize];
                let service = &self.s.services[r.svc];
                let _ = self
                    .probe_tx
                    .send((replica, SocketAddrV4::new(r.addr, service.port)));
                let next = self.now() + service.readiness.period;
                self.at(next, Timer::Probe { replica });
            }
            Timer::Sigterm { replica } => self.signal(replica, libc::SIGTERM),
            Timer::Sigkill { replica } => {
                if self.replicas[replica as usize].child.is_some() {
                    self.log(
                        "replica",
                        "sigkill",
                        format!("replica {replica} killed after its grace period"),
                    );
                    self.signal(replica, libc::SIGKILL);
                }
            }
            Timer::Steering { svc, snapshot } => self.apply_steering(svc, snapshot)?,
            Timer::Scenario { index, undo } => self.scenario_event(index, undo)?,
            Timer::SampleLinks => {
                self.sample_links()?;
                let next = self.now() + self.s.window;
                if next <= Instant::ZERO + self.s.duration {
                    self.at(next, Timer::SampleLinks);
                }
            }
        }
        Ok(())
    }

    fn handle_msg(&mut self, m: Msg) -> Result<(), NetnsError> {
        match m {
            Msg::Done {
                wl,
                intended,
                done,
                version,
                outcome,
            } => {
                self.recorder
                    .record(intended, done, version.as_deref(), outcome);
                let latency = done.saturating_since(intended);
                self.driver.observe(
                    wl,
                    done,
                    version.as_deref(),
                    latency,
                    outcome == Outcome::Ok,
                );
            }
            Msg::Lag { at, lag } => self.recorder.generator_lag(at, lag),
            Msg::Probe { replica, ok } => {
                let state = self.driver.replica(replica).state;
                let r = &mut self.replicas[replica as usize];
                let threshold = self.s.services[r.svc].readiness.failure_threshold.max(1);
                let next = match (state, ok) {
                    (ReplicaState::Starting | ReplicaState::NotReady, true) => {
                        Some(ReplicaState::Ready)
                    }
                    (ReplicaState::Ready, true) => {
                        r.failures = 0;
                        None
                    }
                    (ReplicaState::Ready, false) => {
                        r.failures += 1;
                        (r.failures >= threshold).then_some(ReplicaState::NotReady)
                    }
                    _ => None,
                };
                if let Some(state) = next {
                    r.failures = 0;
                    self.set_state(replica, state)?;
                }
            }
            Msg::WorkloadFinished { .. } => unreachable!("handled by the run loop"),
        }
        Ok(())
    }

    fn scenario_event(&mut self, index: usize, undo: bool) -> Result<(), NetnsError> {
        let e = &self.s.events[index];
        let verb = if undo { "undo" } else { e.action.name() };
        match &e.action {
            EventAction::LinkDown { link } | EventAction::LinkUp { link } => {
                let up = matches!(e.action, EventAction::LinkUp { .. }) != undo;
                let li = self.driver.link_index(link);
                if self.emu.carries(li) {
                    self.emu.set_up(li, up)?;
                } else {
                    self.dp.set_link_up(li, up)?;
                }
                let state = if up { "up" } else { "down" };
                self.log(
                    "scenario",
                    verb,
                    format!("link {}-{} {state}", link[0], link[1]),
                );
            }
            EventAction::SetLink { link, patch } => {
                let li = self.driver.link_index(link);
                let declared = &self.s.links[li].params;
                let current = self.link_state.get(&li).unwrap_or(declared).clone();
                let params = if undo {
                    declared.clone()
                } else {
                    patch.apply(&current)
                };
                if self.emu.carries(li) {
                    self.emu.set_link(li, params.clone())?;
                } else {
                    self.dp.set_link_shaping(li, &params)?;
                }
                self.link_state.insert(li, params);
                self.log(
                    "scenario",
                    verb,
                    format!("link {}-{} parameters changed", link[0], link[1]),
                );
            }
            EventAction::KillReplica {
                service,
                version,
                count,
            } => {
                if undo {
                    return Ok(());
                }
                let replicas = &self.replicas;
                let victims = self
                    .driver
                    .kill_victims(service, version.as_deref(), *count, |id| {
                        replicas[id as usize].child.is_some()
                    });
                for id in victims {
                    self.kill_and_restart(id)?;
                }
            }
            EventAction::SetRate { workload, rate } => {
                // Already in the generator's schedule; recorded for the story of the run.
                let shown = if undo {
                    "back to its schedule".to_string()
                } else {
                    rate.to_string()
                };
                self.log(
                    "scenario",
                    verb,
                    format!("workload {workload} rate {shown}"),
                );
            }
        }
        if let (false, Some(d)) = (undo, e.duration) {
            if !matches!(e.action, EventAction::KillReplica { .. }) {
                self.at(
                    Instant::ZERO + e.at + d,
                    Timer::Scenario { index, undo: true },
                );
            }
        }
        Ok(())
    }

    /// Samples every link direction's counters: the kernel's for veths, the emulator's for
    /// the links it carries.
    fn sample_links(&mut self) -> Result<(), NetnsError> {
        let at = self.now();
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
        for (li, from, to, counters) in rows {
            let (link, direction) = self.link_row(li, &from, &to);
            self.links.push(LinkRow {
                at,
                link,
                direction,
                counters,
            });
        }
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
/// [`Msg::Probe`]; it ends when the driver drops its sender.
fn spawn_prober(netns: &str, tx: Sender<Msg>) -> Result<Sender<(u32, SocketAddrV4)>, NetnsError> {
    let (req_tx, req_rx) = mpsc::channel::<(u32, SocketAddrV4)>();
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
                if tx.send(Msg::Probe { replica, ok }).is_err() {
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
