//! The transport: a message (SYN, SYN-ACK, request, response, RST, FIN) crosses its route hop by
//! hop through the link models, lost packets are retransmitted after TCP's timeouts, and on
//! arrival the message takes effect at the client or the server.
//!
//! The seam: the client pool and the server only call [`World::send`]; the transport calls
//! back into them (`dispatch`, `finish`, `close_conn`, `on_request_at_server`) and touches
//! their connection and request records for the handshake. A TCP model replaces this file.

use crate::metrics::{ErrorKind, Outcome};
use crate::model::link::{packet_sizes, HEADER_BYTES, MSS};
use crate::model::time::{Duration, Instant};

use super::clients::{ConnState, ReqState};
use super::{Ev, World, NONE};

/// Linux's minimum retransmission timeout, the first data retransmission's delay.
pub(super) const DATA_RTO: Duration = Duration::from_millis(200);

/// Linux's initial SYN retransmission timeout.
pub(super) const SYN_RTO: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MsgKind {
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

pub(super) struct Msg {
    pub(super) req: u32,
    pub(super) gen: u32,
    pub(super) wl: u16,
    pub(super) kind: MsgKind,
    pub(super) up: bool,
    pub(super) replica: u32,
    pub(super) hop: u16,
    pub(super) payload: u32,
    /// Packets lost on the current hop, to be retransmitted.
    pub(super) lost: u32,
    pub(super) attempt: u8,
    /// Latest arrival of the packets that crossed the current hop so far.
    pub(super) arrival: Instant,
}

impl<'s> World<'s> {
    pub(super) fn send(
        &mut self,
        req: u32,
        kind: MsgKind,
        up: bool,
        replica: u32,
        hop: u16,
        payload: u32,
    ) {
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
    pub(super) fn cross(&mut self, id: u32) {
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
}
