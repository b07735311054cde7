//! The simulation itself: clients, connections, messages, gateways and replicas in virtual time.
//!
//! One `World` holds all state; `run` pops events in (time, sequence) order until every request
//! whose intended send time falls inside the run has been answered or has timed out. See the
//! module documentation of [`crate::sim`] for the model and its departures from reality.
//!
//! The world's jobs, one file each, all `impl World`:
//! - here: the state, its setup ([`World::new`]) and the links (instances, sampling);
//! - [`event_loop`]: the run, event dispatch, the driver's commands and the scenario's events;
//! - [`clients`]: the client pool: arrivals, requests, connections, dispatch, timeouts;
//! - [`transport`]: TCP segments and control packets crossing their route's hops, and what
//!   each message does when it arrives;
//! - [`server`]: replicas, their worker pools, readiness, SIGTERM and kill, gateway steering.

use std::collections::{BTreeMap, VecDeque};

use crate::driver::{Driver, Due};
use crate::metrics::Recorder;
use crate::model::link::{LinkDirection, LinkParams};
use crate::model::rng::{Rng, SeedTree};
use crate::model::steering::SteeringTable;
use crate::model::time::Instant;
use crate::output::LinkRow;
use crate::scenario::types::{LinkEnd, Scenario, Target};

use super::topology::{reversed, Topology};
use super::SimError;
use crate::model::queue::EventQueue;

use self::clients::{Conn, Request, Workload};
use self::server::{Replica, SvcState};
use self::transport::{Msg, Seg};
use crate::model::tcp::TcpConfig;

mod clients;
mod event_loop;
mod server;
mod transport;

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
enum Ev {
    Arrival {
        wl: u16,
    },
    Hop {
        msg: u32,
    },
    /// A TCP segment reaches the end of a hop.
    Seg {
        seg: u32,
    },
    /// TCP timers on the millisecond `slot` of the timer grid are due.
    TcpTimers {
        slot: u64,
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
    /// A deadline of the driver's.
    Due(Due),
    /// End of a window: sample every link's counters.
    SampleLinks,
}

struct LinkInstance {
    /// `a-b`, or `a-b/<replica>` for a replica's own link.
    name: String,
    dirs: [LinkDirection; 2],
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
    segs: Vec<Seg>,
    free_segs: Vec<u32>,
    /// Every connection's TCP parameters (Linux's defaults).
    tcp_cfg: TcpConfig,
    /// TCP timers by millisecond slot: (connection, its generation, side). One queue event per
    /// slot in use, so that the many timers a connection arms and then no longer needs (an
    /// RTO re-armed by every ACK) cost a vector entry, not a heap entry.
    timer_slots: BTreeMap<u64, Vec<(u32, u32, u8)>>,
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
            segs: Vec::new(),
            free_segs: Vec::new(),
            tcp_cfg: TcpConfig::default(),
            timer_slots: BTreeMap::new(),
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
}
