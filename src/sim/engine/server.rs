//! The server side: replicas as the driver books them (start, startup, readiness, SIGTERM,
//! kill), each with its worker pool and service times, and the gateways' steering tables.

use crate::metrics::{ErrorKind, Outcome};
use crate::model::rng::Rng;
use crate::model::rollout::{ReplicaId, ReplicaState};
use crate::model::service::{Probe, WorkerPool};
use crate::model::steering::SteeringTable;
use crate::model::time::Instant;
use crate::scenario::types::LinkEnd;

use super::clients::ReqState;
use super::transport::{AppMsg, MsgKind, SERVER};
use super::{Ev, World};

/// What the simulator keeps of a replica besides the driver's record of it (same id).
pub(super) struct Replica {
    pub(super) svc: u16,
    pub(super) version: u16,
    /// Start of the current process (the readiness-probe grid).
    pub(super) started: Instant,
    pub(super) alive: bool,
    pub(super) listening: bool,
    pub(super) accepting: bool,
    pub(super) incarnation: u32,
    pub(super) conn_epoch: u32,
    /// Connections accepted with an epoch below this were open when the process died.
    pub(super) reset_below: u32,
    pub(super) pool: WorkerPool<(u32, u32)>,
    pub(super) rng: Rng,
    /// (declared link index, instance) for links with this replica's service as an end.
    pub(super) links: Vec<(usize, u32)>,
}

pub(super) struct SvcState {
    pub(super) table: SteeringTable,
    pub(super) rng: Rng,
}

impl<'s> World<'s> {
    pub(super) fn start_initial_replicas(&mut self) {
        for si in 0..self.s.services.len() {
            let ids =
                self.driver
                    .add_starting_replicas(si, ReplicaState::Ready, &mut self.recorder);
            for id in ids {
                self.realise_replica(id, true);
            }
            let steer = self.driver.steering_changed(Instant::ZERO, si);
            self.execute(steer);
        }
    }

    /// Creates replica `id` of the driver's books; `ready_now` for the replicas that exist when
    /// the run starts.
    pub(super) fn realise_replica(&mut self, id: ReplicaId, ready_now: bool) {
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

    pub(super) fn set_state(&mut self, id: u32, state: ReplicaState) {
        if let Some(steer) = self
            .driver
            .set_state(self.now, id, state, &mut self.recorder)
        {
            self.execute(steer);
        }
    }

    pub(super) fn on_sigterm(&mut self, id: u32) {
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
    pub(super) fn kill_process(&mut self, id: u32) {
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

    pub(super) fn apply_steering(&mut self, svc: usize, snapshot: usize) {
        if let Some(table) = self
            .driver
            .steering_table(self.now, svc, snapshot, &mut self.recorder)
        {
            self.svcs[svc].table = table;
        }
    }

    pub(super) fn on_request_at_server(
        &mut self,
        wl: u16,
        req: u32,
        gen: u32,
        replica: u32,
        live: bool,
    ) {
        if self.wls[wl as usize].target_svc.is_none() {
            // A plain node answers at once.
            if live {
                let payload = self.wls[wl as usize].response;
                let conn = self.reqs[req as usize].conn;
                self.tcp_send(
                    conn,
                    SERVER,
                    payload,
                    AppMsg::response(req, gen, false, false),
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

    pub(super) fn on_service_done(&mut self, replica: u32, incarnation: u32, req: u32, gen: u32) {
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
            let conn = q.conn;
            self.tcp_send(
                conn,
                SERVER,
                payload,
                AppMsg::response(req, gen, error, close),
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
}
