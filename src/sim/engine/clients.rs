//! The client pool of each workload: open-loop arrivals, request slots, kept-alive or
//! per-request connections, dispatch of pending requests onto them, and client timeouts.

use std::collections::VecDeque;

use crate::metrics::{ErrorKind, Outcome};
use crate::model::rng::Rng;
use crate::model::time::{Duration, Instant};
use crate::scenario::types::{Arrivals, RateSchedule};
use crate::scenario::units::RequestRate;
use crate::sim::topology::Hop;

use super::transport::{AppMsg, Endpoint, MsgKind, CLIENT};
use super::{Ev, World, NONE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReqState {
    Pending,
    InFlight,
    Done,
}

pub(super) struct Request {
    pub(super) wl: u16,
    pub(super) gen: u32,
    pub(super) state: ReqState,
    pub(super) intended: Instant,
    pub(super) conn: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConnState {
    /// Not connected; the next request opens it.
    Closed,
    Connecting,
    Idle,
    Busy,
}

pub(super) struct Conn {
    pub(super) wl: u16,
    pub(super) state: ConnState,
    pub(super) replica: u32,
    /// The replica's connection epoch when this connection was accepted.
    pub(super) epoch: u32,
    pub(super) served: u32,
    pub(super) pooled: bool,
    /// Incarnation of this slot: bumped whenever the connection closes or the slot is reused,
    /// so segments and timers of an earlier connection are recognised and dropped.
    pub(super) gen: u32,
    /// When the SYN was first sent, and whether the SYN or SYN-ACK had to be retransmitted
    /// (then the handshake gives no RTT sample).
    pub(super) syn_at: Instant,
    pub(super) syn_retx: bool,
    /// The TCP ends: [client, server]. Boxed: the connection record stays small for the
    /// lookups every segment makes on every hop.
    pub(super) ep: Box<[Endpoint; 2]>,
    /// Messages written and not yet delivered, by direction: [requests up, responses down].
    pub(super) msgs: [VecDeque<AppMsg>; 2],
}

pub(super) struct Workload {
    pub(super) target_svc: Option<u16>,
    pub(super) target_node: Option<String>,
    pub(super) up: Vec<Hop>,
    pub(super) down: Vec<Hop>,
    /// Hop index on `up` at which a SYN reaches the service's gateway.
    pub(super) gw_hop: usize,
    /// The declared schedule with the `set-rate` events folded in (by the driver's rule).
    pub(super) schedule: RateSchedule,
    pub(super) arrivals: Arrivals,
    pub(super) rng: Rng,
    /// Intended time of the next arrival, in ns as a float so constant rates do not drift.
    pub(super) next_arrival: f64,
    pub(super) pending: VecDeque<(u32, u32)>,
    pub(super) idle: Vec<u32>,
    pub(super) pooled: bool,
    pub(super) max_per_conn: u32,
    pub(super) request: u32,
    pub(super) response: u32,
    pub(super) timeout: Duration,
    pub(super) deadlines: VecDeque<(Instant, u32, u32)>,
    pub(super) timeout_armed: bool,
}

impl<'s> World<'s> {
    pub(super) fn current_rate(&self, wl: u16) -> RequestRate {
        let w = &self.wls[wl as usize];
        w.schedule.rate_at(self.now.saturating_since(Instant::ZERO))
    }

    pub(super) fn on_arrival(&mut self, wl: u16) {
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

    pub(super) fn alloc_conn(&mut self, wl: u16, pooled: bool) -> u32 {
        let cfg = self.tcp_cfg;
        let c = Conn {
            wl,
            state: ConnState::Closed,
            replica: NONE,
            epoch: 0,
            served: 0,
            pooled,
            gen: 0,
            syn_at: Instant::ZERO,
            syn_retx: false,
            ep: Box::new([Endpoint::new(cfg, None), Endpoint::new(cfg, None)]),
            msgs: [VecDeque::new(), VecDeque::new()],
        };
        match self.free_conns.pop() {
            Some(i) => {
                let gen = self.conns[i as usize].gen.wrapping_add(1);
                self.conns[i as usize] = Conn { gen, ..c };
                i
            }
            None => {
                self.conns.push(c);
                (self.conns.len() - 1) as u32
            }
        }
    }

    /// Puts pending requests on free connections (or new ones, without a pool).
    pub(super) fn dispatch(&mut self, wl: u16) {
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
                let payload = self.wls[wl as usize].request;
                self.tcp_send(conn, CLIENT, payload, AppMsg::request(req, gen));
            } else {
                c.state = ConnState::Connecting;
                c.replica = NONE;
                c.syn_at = self.now;
                c.syn_retx = false;
                self.send(req, MsgKind::Syn, true, NONE, 0, 0);
            }
        }
    }

    pub(super) fn close_conn(&mut self, conn: u32) {
        if conn == NONE {
            return;
        }
        let c = &mut self.conns[conn as usize];
        c.state = ConnState::Closed;
        c.replica = NONE;
        c.served = 0;
        // Whatever is still on the wire belongs to a connection that no longer exists.
        c.gen = c.gen.wrapping_add(1);
        c.msgs[0].clear();
        c.msgs[1].clear();
        let wl = c.wl;
        if c.pooled {
            self.wls[wl as usize].idle.push(conn);
        } else {
            self.free_conns.push(conn);
        }
    }

    /// A request is over: record it, free its slot, give its connection back.
    pub(super) fn finish(
        &mut self,
        req: u32,
        done: Instant,
        version: Option<u16>,
        outcome: Outcome,
    ) {
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

    pub(super) fn on_timeout_check(&mut self, wl: u16) {
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
}
