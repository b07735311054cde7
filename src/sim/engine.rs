//! The simulation itself: clients, connections, messages, gateways and replicas in virtual time.
//!
//! One `World` holds all state; `run` pops events in (time, sequence) order until every request
//! whose intended send time falls inside the run has been answered or has timed out. See the
//! module documentation of [`crate::sim`] for the model and its departures from reality.

use std::collections::{BTreeMap, VecDeque};

use crate::driver::{Command, Driver};
use crate::metrics::{ErrorKind, Outcome, Recorder};
use crate::model::link::{packet_sizes, LinkDirection, LinkParams, HEADER_BYTES, MSS};
use crate::model::rng::{Rng, SeedTree};
use crate::model::rollout::{Phase, ReplicaId, ReplicaState};
use crate::model::service::{Probe, WorkerPool};
use crate::model::steering::SteeringTable;
use crate::model::time::{Duration, Instant};
use crate::output::LinkRow;
use crate::output::RunOutput;
use crate::scenario::types::{Arrivals, LinkEnd, RateSchedule, Scenario, Target};
use crate::scenario::units::RequestRate;

use super::topology::{reversed, Hop, Topology};
use super::SimError;
use crate::model::queue::EventQueue;

const NONE: u32 = u32::MAX;
/// Linux's minimum retransmission timeout, the first data retransmission's delay.
const DATA_RTO: Duration = Duration::from_millis(200);
/// Linux's initial SYN retransmission timeout.
const SYN_RTO: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum Ev {
    Arrival {
        wl: u16,
    },
    Hop {
        msg: u32,
    },
    ServiceDone {
        replica: u32,
        incarnation: u32,
        req: u32,
        gen: u32,
    },
    TimeoutCheck {
        wl: u16,
    },
    Listening {
        replica: u32,
        incarnation: u32,
    },
    Ready {
        replica: u32,
        incarnation: u32,
    },
    NotReady {
        replica: u32,
        incarnation: u32,
    },
    Sigterm {
        replica: u32,
    },
    Sigkill {
        replica: u32,
    },
    SteeringApply {
        svc: u16,
        snapshot: u32,
    },
    RolloutPoll,
    Scenario {
        index: u32,
        undo: bool,
    },
    /// End of a window: sample every link's counters.
    SampleLinks,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReqState {
    Pending,
    InFlight,
    Done,
}

struct Request {
    wl: u16,
    gen: u32,
    state: ReqState,
    intended: Instant,
    conn: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    /// Not connected; the next request opens it.
    Closed,
    Connecting,
    Idle,
    Busy,
}

struct Conn {
    wl: u16,
    state: ConnState,
    replica: u32,
    /// The replica's connection epoch when this connection was accepted.
    epoch: u32,
    served: u32,
    pooled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MsgKind {
    Syn,
    SynAck,
    /// Connection refused (RST to a SYN, or no endpoint at the gateway).
    Refused,
    /// The replica's process died with the connection open.
    Reset,
    /// The server closed the kept-alive connection before the request reached it; the client
    /// retries on a new connection.
    Closed,
    Request,
    Response {
        error: bool,
        close: bool,
    },
}

struct Msg {
    req: u32,
    gen: u32,
    wl: u16,
    kind: MsgKind,
    up: bool,
    replica: u32,
    hop: u16,
    payload: u32,
    /// Packets lost on the current hop, to be retransmitted.
    lost: u32,
    attempt: u8,
    /// Latest arrival of the packets that crossed the current hop so far.
    arrival: Instant,
}

struct LinkInstance {
    /// `a-b`, or `a-b/<replica>` for a replica's own link.
    name: String,
    dirs: [LinkDirection; 2],
}

/// What the simulator keeps of a replica besides the driver's record of it (same id).
struct Replica {
    svc: u16,
    version: u16,
    /// Start of the current process (the readiness-probe grid).
    started: Instant,
    alive: bool,
    listening: bool,
    accepting: bool,
    incarnation: u32,
    conn_epoch: u32,
    /// Connections accepted with an epoch below this were open when the process died.
    reset_below: u32,
    pool: WorkerPool<(u32, u32)>,
    rng: Rng,
    /// (declared link index, instance) for links with this replica's service as an end.
    links: Vec<(usize, u32)>,
}

struct Workload {
    target_svc: Option<u16>,
    target_node: Option<String>,
    up: Vec<Hop>,
    down: Vec<Hop>,
    /// Hop index on `up` at which a SYN reaches the service's gateway.
    gw_hop: usize,
    /// The declared schedule with the `set-rate` events folded in (by the driver's rule).
    schedule: RateSchedule,
    arrivals: Arrivals,
    rng: Rng,
    /// Intended time of the next arrival, in ns as a float so constant rates do not drift.
    next_arrival: f64,
    pending: VecDeque<(u32, u32)>,
    idle: Vec<u32>,
    pooled: bool,
    max_per_conn: u32,
    request: u32,
    response: u32,
    timeout: Duration,
    deadlines: VecDeque<(Instant, u32, u32)>,
    timeout_armed: bool,
}

struct SvcState {
    table: SteeringTable,
    rng: Rng,
}

pub(super) struct World<'s> {
    s: &'s Scenario,
    now: Instant,
    end_of_arrivals: Instant,
    queue: EventQueue<Ev>,
    seeds: SeedTree,
    seed_log: BTreeMap<String, u64>,
    links: Vec<LinkInstance>,
    /// Declared link → its shared instance (None for per-replica links).
    shared_link: Vec<Option<u32>>,
    /// Current parameters of each declared link (set-link changes them for future replicas too).
    link_params: Vec<LinkParams>,
    replicas: Vec<Replica>,
    svcs: Vec<SvcState>,
    wls: Vec<Workload>,
    reqs: Vec<Request>,
    free_reqs: Vec<u32>,
    conns: Vec<Conn>,
    free_conns: Vec<u32>,
    msgs: Vec<Msg>,
    free_msgs: Vec<u32>,
    recorder: Recorder,
    driver: Driver<'s>,
    link_rows: Vec<LinkRow>,
}

impl<'s> World<'s> {
    pub(super) fn new(s: &'s Scenario) -> Result<World<'s>, SimError> {
        let seeds = SeedTree::new(s.seed);
        let topo = Topology::new(s);
        let driver = Driver::new(s);
        let mut w = World {
            s,
            now: Instant::ZERO,
            end_of_arrivals: Instant::ZERO + s.duration,
            queue: EventQueue::new(),
            seeds,
            seed_log: BTreeMap::new(),
            links: Vec::new(),
            shared_link: vec![None; s.links.len()],
            link_params: s.links.iter().map(|l| l.params.clone()).collect(),
            replicas: Vec::new(),
            svcs: Vec::new(),
            wls: Vec::new(),
            reqs: Vec::new(),
            free_reqs: Vec::new(),
            conns: Vec::new(),
            free_conns: Vec::new(),
            msgs: Vec::new(),
            free_msgs: Vec::new(),
            recorder: Recorder::new(driver.recorder_config()),
            driver,
            link_rows: Vec::new(),
        };
        for (li, link) in s.links.iter().enumerate() {
            if !link
                .between
                .iter()
                .any(|e| matches!(e, LinkEnd::Service(_)))
            {
                let name = format!("link/{}-{}", link.between[0].name(), link.between[1].name());
                let id = w.new_link(&name, li);
                w.shared_link[li] = Some(id);
            }
        }
        for (si, svc) in s.services.iter().enumerate() {
            let steering_name = format!("gateway/{}/steering", svc.name);
            let rng = w.rng(&steering_name);
            w.svcs.push(SvcState {
                table: SteeringTable::default(),
                rng,
            });
            if topo.service_route(s, si).is_none() {
                return Err(SimError::ServiceUnreachable {
                    service: svc.name.clone(),
                    gateway: svc.gateway.clone(),
                });
            }
        }
        for (wi, wl) in s.workloads.iter().enumerate() {
            let (route, gw_hop, target_svc, target_node) = match &wl.to {
                Target::Service(name) => {
                    let si = s
                        .services
                        .iter()
                        .position(|x| &x.name == name)
                        .expect("validated");
                    let to_gw = topo
                        .node_route(s, &wl.from, &s.services[si].gateway)
                        .ok_or_else(|| SimError::NoRoute {
                            workload: wl.name.clone(),
                            from: wl.from.clone(),
                            to: s.services[si].gateway.clone(),
                        })?;
                    let gw_hop = to_gw.len();
                    let mut route = to_gw;
                    route.extend(topo.service_route(s, si).expect("checked above"));
                    (route, gw_hop, Some(si as u16), None)
                }
                Target::Node(n) => {
                    let route =
                        topo.node_route(s, &wl.from, n)
                            .ok_or_else(|| SimError::NoRoute {
                                workload: wl.name.clone(),
                                from: wl.from.clone(),
                                to: n.clone(),
                            })?;
                    (route, usize::MAX, None, Some(n.clone()))
                }
            };
            let rng = w.rng(&format!("workload/{}/arrivals", wl.name));
            let pooled = wl.connections > 0;
            let mut idle = Vec::new();
            if pooled {
                for _ in 0..wl.connections {
                    idle.push(w.alloc_conn(wi as u16, true));
                }
                idle.reverse();
            }
            w.wls.push(Workload {
                target_svc,
                target_node,
                down: reversed(&route),
                up: route,
                gw_hop,
                schedule: w.driver.workload_schedule(wi),
                arrivals: wl.arrivals,
                rng,
                next_arrival: 0.0,
                pending: VecDeque::new(),
                idle,
                pooled,
                max_per_conn: wl.max_requests_per_connection,
                request: wl.request.0.min(u64::from(u32::MAX)) as u32,
                response: wl.response.0.min(u64::from(u32::MAX)) as u32,
                timeout: wl.timeout,
                deadlines: VecDeque::new(),
                timeout_armed: false,
            });
        }
        Ok(w)
    }

    fn rng(&mut self, name: &str) -> Rng {
        let seed = self.seeds.seed_for(name);
        self.seed_log.insert(name.to_string(), seed);
        Rng::new(seed)
    }

    fn new_link(&mut self, name: &str, decl: usize) -> u32 {
        let params = self.link_params[decl].clone();
        let fwd = self.rng(&format!("{name}/fwd"));
        let rev = self.rng(&format!("{name}/rev"));
        self.links.push(LinkInstance {
            name: name.trim_start_matches("link/").to_string(),
            dirs: [
                LinkDirection::new(params.clone(), fwd),
                LinkDirection::new(params, rev),
            ],
        });
        (self.links.len() - 1) as u32
    }

    fn log(&mut self, source: &str, kind: &str, detail: String) {
        self.driver.log(self.now, source, kind, detail);
    }

    // ----- the run ---------------------------------------------------------------------------

    pub(super) fn run(mut self) -> RunOutput {
        self.start_initial_replicas();
        for wl in 0..self.wls.len() {
            self.queue
                .push(Instant::ZERO, Ev::Arrival { wl: wl as u16 });
        }
        if !self.links.is_empty() && !self.s.window.is_zero() {
            self.queue
                .push(Instant::ZERO + self.s.window, Ev::SampleLinks);
        }
        let timed: Vec<Command> = self.driver.timed_events().collect();
        for c in timed {
            self.execute(c);
        }
        self.recorder.phase_change(Instant::ZERO, Phase::Before);
        self.after_event();
        let max_timeout = self
            .wls
            .iter()
            .map(|w| w.timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        let horizon = self.end_of_arrivals + max_timeout + Duration::from_millis(1);
        let mut processed = 0u64;
        while let Some((at, ev)) = self.queue.pop() {
            if at > horizon {
                break;
            }
            self.now = at;
            processed += 1;
            self.handle(ev);
            self.after_event();
            if self.now >= self.end_of_arrivals && self.all_requests_done() {
                break;
            }
        }
        let end = self.end_of_arrivals.max(self.now);
        let (events, outcome) = self.driver.finish(end);
        RunOutput {
            metrics: self.recorder.finish(end),
            events,
            seeds: self.seed_log,
            rollout_outcome: outcome,
            links: self.link_rows,
            events_processed: processed,
        }
    }

    fn all_requests_done(&self) -> bool {
        self.wls.iter().all(|w| w.deadlines.is_empty())
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival { wl } => self.on_arrival(wl),
            Ev::Hop { msg } => self.cross(msg),
            Ev::ServiceDone {
                replica,
                incarnation,
                req,
                gen,
            } => self.on_service_done(replica, incarnation, req, gen),
            Ev::TimeoutCheck { wl } => self.on_timeout_check(wl),
            Ev::Listening {
                replica,
                incarnation,
            } => {
                let r = &mut self.replicas[replica as usize];
                if r.incarnation == incarnation && r.alive {
                    r.listening = true;
                }
            }
            Ev::Ready {
                replica,
                incarnation,
            } => {
                let r = &self.replicas[replica as usize];
                let state = self.driver.replica(replica).state;
                if r.incarnation == incarnation
                    && r.alive
                    && matches!(state, ReplicaState::Starting | ReplicaState::NotReady)
                {
                    self.set_state(replica, ReplicaState::Ready);
                }
            }
            Ev::NotReady {
                replica,
                incarnation,
            } => {
                let r = &self.replicas[replica as usize];
                if r.incarnation == incarnation
                    && self.driver.replica(replica).state == ReplicaState::Ready
                {
                    self.set_state(replica, ReplicaState::NotReady);
                }
            }
            Ev::Sigterm { replica } => self.on_sigterm(replica),
            Ev::Sigkill { replica } => {
                if self.replicas[replica as usize].alive {
                    self.log(
                        "replica",
                        "sigkill",
                        format!("replica {replica} killed after its grace period"),
                    );
                    self.kill_process(replica);
                    self.set_state(replica, ReplicaState::Gone);
                }
            }
            Ev::SteeringApply { svc, snapshot } => {
                self.apply_steering(svc as usize, snapshot as usize)
            }
            Ev::RolloutPoll => self.driver.wake(),
            Ev::Scenario { index, undo } => self.on_scenario_event(index, undo),
            Ev::SampleLinks => self.sample_links(),
        }
    }

    /// Runs the rollout strategy when something it watches changed or its deadline came.
    fn after_event(&mut self) {
        let commands = self.driver.poll(self.now, &mut self.recorder);
        for c in commands {
            self.execute(c);
        }
    }

    /// Carries out what the driver decided, in virtual time.
    fn execute(&mut self, c: Command) {
        match c {
            Command::Start { id } => self.realise_replica(id, false),
            Command::Drain {
                id,
                sigterm,
                sigkill,
            } => {
                self.queue.push(sigterm, Ev::Sigterm { replica: id });
                self.queue.push(sigkill, Ev::Sigkill { replica: id });
            }
            Command::Steer { svc, snapshot, at } => {
                if at <= self.now {
                    self.apply_steering(svc, snapshot);
                } else {
                    let (svc, snapshot) = (svc as u16, snapshot as u32);
                    self.queue.push(at, Ev::SteeringApply { svc, snapshot });
                }
            }
            Command::PollAt { at } => self.queue.push(at, Ev::RolloutPoll),
            Command::EventAt { index, undo, at } => {
                let index = index as u32;
                self.queue.push(at, Ev::Scenario { index, undo });
            }
            Command::LinkUp { link, up } => {
                for i in self.link_instances(link) {
                    for d in &mut self.links[i as usize].dirs {
                        d.set_up(up);
                    }
                }
            }
            Command::LinkParams { link, params } => {
                for i in self.link_instances(link) {
                    for d in &mut self.links[i as usize].dirs {
                        d.set_params(params.clone());
                    }
                }
                self.link_params[link] = params;
            }
            Command::Restart { id } => self.kill_and_restart(id),
        }
    }

    // ----- replicas --------------------------------------------------------------------------

    fn start_initial_replicas(&mut self) {
        for (si, svc) in self.s.services.iter().enumerate() {
            let vi = svc
                .versions
                .iter()
                .position(|v| v.name == svc.version)
                .expect("validated");
            for _ in 0..svc.replicas {
                let id = self.driver.add_replica(
                    Instant::ZERO,
                    si,
                    vi,
                    ReplicaState::Ready,
                    &mut self.recorder,
                );
                self.realise_replica(id, true);
            }
            let steer = self.driver.steering_changed(Instant::ZERO, si);
            self.execute(steer);
        }
    }

    /// Creates replica `id` of the driver's books; `ready_now` for the replicas that exist when
    /// the run starts.
    fn realise_replica(&mut self, id: ReplicaId, ready_now: bool) {
        debug_assert_eq!(id as usize, self.replicas.len());
        let rec = self.driver.replica(id);
        let (svc, version) = (rec.svc, rec.version);
        let service = &self.s.services[svc];
        let rng = self.rng(&format!("replica/{}/{id}", service.name));
        let mut links = Vec::new();
        for (li, link) in self.s.links.iter().enumerate() {
            if link
                .between
                .iter()
                .any(|e| *e == LinkEnd::Service(service.name.clone()))
            {
                let name = format!(
                    "link/{}-{}/{id}",
                    link.between[0].name(),
                    link.between[1].name()
                );
                links.push((li, self.new_link(&name, li)));
            }
        }
        self.replicas.push(Replica {
            svc: svc as u16,
            version: version as u16,
            started: self.now,
            alive: true,
            listening: ready_now,
            accepting: true,
            incarnation: 0,
            conn_epoch: 0,
            reset_below: 0,
            pool: WorkerPool::new(service.workers),
            rng,
            links,
        });
        if !ready_now {
            self.schedule_startup(id);
        }
    }

    fn schedule_startup(&mut self, id: u32) {
        let r = &self.replicas[id as usize];
        let service = &self.s.services[r.svc as usize];
        let startup = service.versions[r.version as usize].startup;
        let listening = self.now + startup;
        let ready = Probe {
            readiness: service.readiness,
        }
        .ready_at(self.now, listening);
        let incarnation = r.incarnation;
        self.queue.push(
            listening,
            Ev::Listening {
                replica: id,
                incarnation,
            },
        );
        self.queue.push(
            ready,
            Ev::Ready {
                replica: id,
                incarnation,
            },
        );
    }

    fn set_state(&mut self, id: u32, state: ReplicaState) {
        if let Some(steer) = self
            .driver
            .set_state(self.now, id, state, &mut self.recorder)
        {
            self.execute(steer);
        }
    }

    fn on_sigterm(&mut self, id: u32) {
        let r = &mut self.replicas[id as usize];
        if !r.alive {
            return;
        }
        // Stop accepting; kept-alive idle connections are closed (a request already on its way
        // on one meets a closed connection and is retried by the client).
        r.accepting = false;
        r.conn_epoch += 1;
        if r.pool.is_idle() {
            r.alive = false;
            r.listening = false;
            self.set_state(id, ReplicaState::Gone);
        }
    }

    /// The process dies: everything it held is reset.
    fn kill_process(&mut self, id: u32) {
        let r = &mut self.replicas[id as usize];
        r.alive = false;
        r.listening = false;
        r.accepting = false;
        r.incarnation += 1;
        r.conn_epoch += 1;
        r.reset_below = r.conn_epoch;
        // Requests still travelling to it meet the RST when they arrive.
        for (req, gen) in r.pool.kill() {
            if self.reqs[req as usize].gen == gen
                && self.reqs[req as usize].state == ReqState::InFlight
            {
                let conn = self.reqs[req as usize].conn;
                self.finish(req, self.now, None, Outcome::Error(ErrorKind::Reset));
                self.close_conn(conn);
            }
        }
    }

    // ----- steering --------------------------------------------------------------------------

    fn apply_steering(&mut self, svc: usize, snapshot: usize) {
        if let Some(table) = self
            .driver
            .steering_table(self.now, svc, snapshot, &mut self.recorder)
        {
            self.svcs[svc].table = table;
        }
    }

    // ----- workload --------------------------------------------------------------------------

    fn current_rate(&self, wl: u16) -> RequestRate {
        let w = &self.wls[wl as usize];
        w.schedule.rate_at(self.now.saturating_since(Instant::ZERO))
    }

    fn on_arrival(&mut self, wl: u16) {
        if self.now >= self.end_of_arrivals {
            return;
        }
        let req = self.alloc_req(wl);
        let rate = self.current_rate(wl).per_sec();
        let w = &mut self.wls[wl as usize];
        let gap_ns = match w.arrivals {
            Arrivals::Constant => 1e9 / rate,
            Arrivals::Poisson => -(1e9 / rate) * w.rng.open01().ln(),
        };
        w.next_arrival += gap_ns;
        let next = Instant::from_nanos(w.next_arrival.round() as u64);
        if next < self.end_of_arrivals {
            self.queue.push(next, Ev::Arrival { wl });
        }
        let deadline = self.now + w.timeout;
        w.deadlines
            .push_back((deadline, req, self.reqs[req as usize].gen));
        if !w.timeout_armed {
            w.timeout_armed = true;
            self.queue.push(deadline, Ev::TimeoutCheck { wl });
        }
        let gen = self.reqs[req as usize].gen;
        self.wls[wl as usize].pending.push_back((req, gen));
        self.dispatch(wl);
    }

    fn alloc_req(&mut self, wl: u16) -> u32 {
        let r = Request {
            wl,
            gen: 0,
            state: ReqState::Pending,
            intended: self.now,
            conn: NONE,
        };
        match self.free_reqs.pop() {
            Some(i) => {
                let gen = self.reqs[i as usize].gen + 1;
                self.reqs[i as usize] = Request { gen, ..r };
                i
            }
            None => {
                self.reqs.push(r);
                (self.reqs.len() - 1) as u32
            }
        }
    }

    fn alloc_conn(&mut self, wl: u16, pooled: bool) -> u32 {
        let c = Conn {
            wl,
            state: ConnState::Closed,
            replica: NONE,
            epoch: 0,
            served: 0,
            pooled,
        };
        match self.free_conns.pop() {
            Some(i) => {
                self.conns[i as usize] = c;
                i
            }
            None => {
                self.conns.push(c);
                (self.conns.len() - 1) as u32
            }
        }
    }

    /// Puts pending requests on free connections (or new ones, without a pool).
    fn dispatch(&mut self, wl: u16) {
        loop {
            let w = &mut self.wls[wl as usize];
            let Some(&(req, gen)) = w.pending.front() else {
                return;
            };
            let q = &self.reqs[req as usize];
            if q.gen != gen || q.state != ReqState::Pending {
                w.pending.pop_front();
                continue;
            }
            let conn = if w.pooled {
                match w.idle.pop() {
                    Some(c) => c,
                    None => return,
                }
            } else {
                self.alloc_conn(wl, false)
            };
            self.wls[wl as usize].pending.pop_front();
            let q = &mut self.reqs[req as usize];
            q.state = ReqState::InFlight;
            q.conn = conn;
            let c = &mut self.conns[conn as usize];
            if c.state == ConnState::Idle {
                c.state = ConnState::Busy;
                let replica = c.replica;
                let payload = self.wls[wl as usize].request;
                self.send(req, MsgKind::Request, true, replica, 0, payload);
            } else {
                c.state = ConnState::Connecting;
                c.replica = NONE;
                self.send(req, MsgKind::Syn, true, NONE, 0, 0);
            }
        }
    }

    fn close_conn(&mut self, conn: u32) {
        if conn == NONE {
            return;
        }
        let c = &mut self.conns[conn as usize];
        c.state = ConnState::Closed;
        c.replica = NONE;
        c.served = 0;
        let wl = c.wl;
        if c.pooled {
            self.wls[wl as usize].idle.push(conn);
        } else {
            self.free_conns.push(conn);
        }
    }

    /// A request is over: record it, free its slot, give its connection back.
    fn finish(&mut self, req: u32, done: Instant, version: Option<u16>, outcome: Outcome) {
        let q = &mut self.reqs[req as usize];
        debug_assert!(q.state != ReqState::Done);
        q.state = ReqState::Done;
        let wl = q.wl;
        let intended = q.intended;
        let vname = match (version, self.wls[wl as usize].target_svc) {
            (Some(v), Some(svc)) => Some(
                self.s.services[svc as usize].versions[v as usize]
                    .name
                    .as_str(),
            ),
            _ => self.wls[wl as usize]
                .target_node
                .as_deref()
                .filter(|_| version.is_some()),
        };
        self.recorder.record(intended, done, vname, outcome);
        let latency = done.saturating_since(intended);
        self.driver
            .observe(wl as usize, done, vname, latency, outcome == Outcome::Ok);
        // The slot is reused once no event can refer to it: events carry the generation.
        self.free_reqs.push(req);
    }

    fn on_timeout_check(&mut self, wl: u16) {
        loop {
            let w = &mut self.wls[wl as usize];
            let Some(&(deadline, req, gen)) = w.deadlines.front() else {
                w.timeout_armed = false;
                return;
            };
            let q = &self.reqs[req as usize];
            let live = q.gen == gen && q.state != ReqState::Done;
            // Answered requests leave the queue without waiting for their deadline, so the
            // check fires about once per timeout span, not once per request.
            if live && deadline > self.now {
                self.queue.push(deadline, Ev::TimeoutCheck { wl });
                return;
            }
            w.deadlines.pop_front();
            if live {
                let conn = if q.state == ReqState::InFlight {
                    q.conn
                } else {
                    NONE
                };
                self.finish(req, deadline, None, Outcome::Error(ErrorKind::Timeout));
                // The client abandons the connection the request was on.
                self.close_conn(conn);
                self.dispatch(wl);
            }
        }
    }

    // ----- messages --------------------------------------------------------------------------

    fn send(&mut self, req: u32, kind: MsgKind, up: bool, replica: u32, hop: u16, payload: u32) {
        let (gen, wl) = (self.reqs[req as usize].gen, self.reqs[req as usize].wl);
        let m = Msg {
            req,
            gen,
            wl,
            kind,
            up,
            replica,
            hop,
            payload,
            lost: 0,
            attempt: 0,
            arrival: Instant::ZERO,
        };
        let id = match self.free_msgs.pop() {
            Some(i) => {
                self.msgs[i as usize] = m;
                i
            }
            None => {
                self.msgs.push(m);
                (self.msgs.len() - 1) as u32
            }
        };
        self.cross(id);
    }

    /// Moves a message across as many hops as it crosses without delay; schedules its arrival
    /// at the end of the first hop that takes time.
    fn cross(&mut self, id: u32) {
        loop {
            let m = &self.msgs[id as usize];
            let live = {
                let q = &self.reqs[m.req as usize];
                q.gen == m.gen && q.state != ReqState::Done
            };
            // Messages of finished requests are dropped, except work already on its way to or
            // from a server, which still occupies links and replicas.
            if !live && !matches!(m.kind, MsgKind::Request | MsgKind::Response { .. }) {
                self.free_msgs.push(id);
                return;
            }
            let w = &self.wls[m.wl as usize];
            let route = if m.up { &w.up } else { &w.down };
            let hop_i = m.hop as usize;
            if m.up && m.kind == MsgKind::Syn && hop_i == w.gw_hop && m.replica == NONE {
                // The SYN reaches the gateway: steering picks the replica (DNAT).
                let svc = w.target_svc.expect("gw_hop only for service targets") as usize;
                let st = &mut self.svcs[svc];
                let picked = st.table.pick(&mut st.rng);
                let down_len = w.down.len();
                let m = &mut self.msgs[id as usize];
                match picked {
                    Some(r) => m.replica = r,
                    None => {
                        m.kind = MsgKind::Refused;
                        m.up = false;
                        m.hop = (down_len - hop_i) as u16;
                    }
                }
                continue;
            }
            if hop_i == route.len() {
                self.deliver(id, live);
                return;
            }
            let hop = route[hop_i];
            let instance = if hop.per_replica {
                let r = &self.replicas[m.replica as usize];
                r.links
                    .iter()
                    .find(|(li, _)| *li == hop.link)
                    .expect("replica has its links")
                    .1
            } else {
                self.shared_link[hop.link].expect("shared link")
            };
            let now = self.now;
            let (lost_before, payload) = (m.lost, m.payload);
            let dir = &mut self.links[instance as usize].dirs[hop.dir.index()];
            let mut arrival = m.arrival;
            let mut lost = 0u32;
            if lost_before > 0 {
                for _ in 0..lost_before {
                    match dir.send(now, MSS + HEADER_BYTES) {
                        Ok(a) => arrival = arrival.max(a),
                        Err(_) => lost += 1,
                    }
                }
            } else {
                for size in packet_sizes(u64::from(payload)) {
                    match dir.send(now, size) {
                        Ok(a) => arrival = arrival.max(a),
                        Err(_) => lost += 1,
                    }
                }
            }
            let m = &mut self.msgs[id as usize];
            m.arrival = arrival;
            if lost > 0 {
                // TCP retransmits what was lost after its timeout, doubling each time.
                let rto = if m.kind == MsgKind::Syn || m.kind == MsgKind::SynAck {
                    SYN_RTO
                } else {
                    DATA_RTO
                };
                m.lost = lost;
                m.attempt = m.attempt.saturating_add(1);
                let backoff = rto.saturating_mul(1u64 << (m.attempt - 1).min(16));
                self.queue.push(now + backoff, Ev::Hop { msg: id });
                return;
            }
            m.hop += 1;
            m.lost = 0;
            m.attempt = 0;
            m.arrival = Instant::ZERO;
            if arrival > now {
                self.queue.push(arrival, Ev::Hop { msg: id });
                return;
            }
        }
    }

    /// A message reached the end of its route.
    fn deliver(&mut self, id: u32, live: bool) {
        let Msg {
            req,
            gen,
            wl,
            kind,
            replica,
            ..
        } = self.msgs[id as usize];
        self.free_msgs.push(id);
        let conn = self.reqs[req as usize].conn;
        match kind {
            MsgKind::Syn => {
                let accepted = match self.wls[wl as usize].target_svc {
                    Some(_) => {
                        let r = &self.replicas[replica as usize];
                        r.alive && r.listening && r.accepting
                    }
                    None => true,
                };
                if accepted {
                    if replica != NONE {
                        let epoch = self.replicas[replica as usize].conn_epoch;
                        self.conns[conn as usize].epoch = epoch;
                    }
                    self.conns[conn as usize].replica = replica;
                    self.send(req, MsgKind::SynAck, false, replica, 0, 0);
                } else {
                    self.send(req, MsgKind::Refused, false, replica, 0, 0);
                }
            }
            MsgKind::SynAck => {
                let c = &mut self.conns[conn as usize];
                c.state = ConnState::Busy;
                let wl = c.wl;
                let payload = self.wls[wl as usize].request;
                self.send(req, MsgKind::Request, true, replica, 0, payload);
            }
            MsgKind::Request => self.on_request_at_server(wl, req, gen, replica, live),
            MsgKind::Refused | MsgKind::Reset => {
                let err = if kind == MsgKind::Refused {
                    ErrorKind::Refused
                } else {
                    ErrorKind::Reset
                };
                self.finish(req, self.now, None, Outcome::Error(err));
                self.close_conn(conn);
                self.dispatch(wl);
            }
            MsgKind::Closed => {
                // Retry on a new connection, ahead of requests that came later.
                self.close_conn(conn);
                let q = &mut self.reqs[req as usize];
                q.state = ReqState::Pending;
                q.conn = NONE;
                self.wls[wl as usize].pending.push_front((req, gen));
                self.dispatch(wl);
            }
            MsgKind::Response { error, close } => {
                if !live {
                    return;
                }
                let version = if replica == NONE {
                    Some(0)
                } else {
                    Some(self.replicas[replica as usize].version)
                };
                let outcome = if error {
                    Outcome::Error(ErrorKind::Http5xx)
                } else {
                    Outcome::Ok
                };
                self.finish(req, self.now, version, outcome);
                let max = self.wls[wl as usize].max_per_conn;
                let c = &mut self.conns[conn as usize];
                c.served += 1;
                if close || !c.pooled || (max > 0 && c.served >= max) {
                    self.close_conn(conn);
                } else {
                    c.state = ConnState::Idle;
                    self.wls[wl as usize].idle.push(conn);
                }
                self.dispatch(wl);
            }
        }
    }

    fn on_request_at_server(&mut self, wl: u16, req: u32, gen: u32, replica: u32, live: bool) {
        if self.wls[wl as usize].target_svc.is_none() {
            // A plain node answers at once.
            if live {
                let payload = self.wls[wl as usize].response;
                self.send(
                    req,
                    MsgKind::Response {
                        error: false,
                        close: false,
                    },
                    false,
                    NONE,
                    0,
                    payload,
                );
            }
            return;
        }
        let conn = self.reqs[req as usize].conn;
        let r = &mut self.replicas[replica as usize];
        // An abandoned request (timed out at the client) still reached the server on the
        // connection it was sent on; treat that connection as current.
        let conn_epoch = if live {
            self.conns[conn as usize].epoch
        } else {
            r.conn_epoch
        };
        let reply = if conn_epoch < r.reset_below {
            // The process that held this connection died: RST.
            Some(MsgKind::Reset)
        } else if conn_epoch != r.conn_epoch {
            // Closed gracefully (SIGTERM) before the request arrived, even if the process has
            // exited since: the client saw the FIN and retries.
            Some(MsgKind::Closed)
        } else if !r.alive {
            Some(MsgKind::Reset)
        } else {
            None
        };
        if let Some(kind) = reply {
            if live {
                self.send(req, kind, false, replica, 0, 0);
            }
            return;
        }
        let incarnation = r.incarnation;
        if r.pool.arrive((req, gen)) {
            self.start_service(replica, incarnation, req, gen);
        }
    }

    fn start_service(&mut self, replica: u32, incarnation: u32, req: u32, gen: u32) {
        let r = &mut self.replicas[replica as usize];
        let version = &self.s.services[r.svc as usize].versions[r.version as usize];
        let t = version.service_time.sample(&mut r.rng);
        self.queue.push(
            self.now + t,
            Ev::ServiceDone {
                replica,
                incarnation,
                req,
                gen,
            },
        );
    }

    fn on_service_done(&mut self, replica: u32, incarnation: u32, req: u32, gen: u32) {
        let r = &mut self.replicas[replica as usize];
        if r.incarnation != incarnation || !r.alive {
            return;
        }
        let version = &self.s.services[r.svc as usize].versions[r.version as usize];
        let error = r.rng.chance(version.error_rate);
        let close = !r.accepting;
        let next = r.pool.complete(&(req, gen));
        let exits = close && r.pool.is_idle();
        let q = &self.reqs[req as usize];
        if q.gen == gen && q.state == ReqState::InFlight {
            let payload = self.wls[q.wl as usize].response;
            self.send(
                req,
                MsgKind::Response { error, close },
                false,
                replica,
                0,
                payload,
            );
        }
        if let Some((nreq, ngen)) = next {
            self.start_service(replica, incarnation, nreq, ngen);
        }
        if exits {
            let r = &mut self.replicas[replica as usize];
            r.alive = false;
            r.listening = false;
            self.set_state(replica, ReplicaState::Gone);
        }
    }

    /// Records every link direction's running totals at the end of a window (`links.csv`).
    fn sample_links(&mut self) {
        for l in &self.links {
            for (dir, direction) in l.dirs.iter().zip(["fwd", "rev"]) {
                self.link_rows.push(LinkRow {
                    at: self.now,
                    link: l.name.clone(),
                    direction,
                    counters: dir.counters(),
                });
            }
        }
        let next = self.now + self.s.window;
        if next <= self.end_of_arrivals {
            self.queue.push(next, Ev::SampleLinks);
        }
    }

    // ----- scenario events -------------------------------------------------------------------

    fn link_instances(&self, decl: usize) -> Vec<u32> {
        match self.shared_link[decl] {
            Some(i) => vec![i],
            None => self
                .replicas
                .iter()
                .flat_map(|r| {
                    r.links
                        .iter()
                        .filter(|(li, _)| *li == decl)
                        .map(|(_, i)| *i)
                })
                .collect(),
        }
    }

    fn on_scenario_event(&mut self, index: u32, undo: bool) {
        let replicas = &self.replicas;
        let commands = self
            .driver
            .scenario_event(self.now, index as usize, undo, |id| {
                replicas[id as usize].alive
            });
        for c in commands {
            self.execute(c);
        }
    }

    /// kill-replica: SIGKILL, then the process restarts in place (as a container restarts in
    /// its pod); probes notice the outage only if it outlasts `failure_threshold` periods.
    fn kill_and_restart(&mut self, id: u32) {
        let (svc, started) = {
            let r = &self.replicas[id as usize];
            (r.svc, r.started)
        };
        let service = &self.s.services[svc as usize];
        let startup = service.versions[self.replicas[id as usize].version as usize].startup;
        self.kill_process(id);
        let probe = Probe {
            readiness: service.readiness,
        };
        let back = self.now + startup;
        let not_ready = probe.not_ready_at(started, self.now, back);
        let r = &mut self.replicas[id as usize];
        r.alive = true;
        r.accepting = true;
        r.started = self.now;
        r.pool = WorkerPool::new(service.workers);
        let incarnation = r.incarnation;
        self.queue.push(
            back,
            Ev::Listening {
                replica: id,
                incarnation,
            },
        );
        if let Some(t) = not_ready {
            self.queue.push(
                t,
                Ev::NotReady {
                    replica: id,
                    incarnation,
                },
            );
            let ready = probe.ready_at(self.now, back).max(t);
            self.queue.push(
                ready,
                Ev::Ready {
                    replica: id,
                    incarnation,
                },
            );
        }
    }
}
