//! The transport. Requests and responses travel on TCP: each connection has a
//! [`crate::model::tcp`] sender and receiver at both ends, and every segment (one MSS of
//! payload, or a pure ACK) crosses the route hop by hop through the link models as one packet;
//! a lost segment is simply not delivered, and the model's loss recovery (SACK, RACK, PRR,
//! tail-loss probes, the RTO) decides when it is sent again. A message takes effect when its
//! last byte is delivered in order.
//!
//! Connection control (SYN, SYN-ACK, RST, the close a draining server sends) travels as
//! one-packet messages ([`World::send`]): the SYN is steered at the gateway on its way, and a
//! lost control packet is resent after [`tcp::syn_rto`] (1 s, doubling) for a SYN or SYN-ACK
//! and 200 ms (doubling) otherwise, from the hop where it was lost. The handshake's round trip
//! seeds both ends' SRTT, unless the SYN or SYN-ACK was retransmitted.
//!
//! Departures: segments of a connection that closed (client timeout, reset) are dropped at
//! their next hop instead of occupying the rest of their route, and the server stops sending
//! at once (as if the client's RST arrived instantly).
//!
//! The seam: the client pool and the server call [`World::send`] (control) and
//! [`World::tcp_send`] (a request or response); the transport calls back into them
//! (`dispatch`, `finish`, `close_conn`, `on_request_at_server`).

use crate::metrics::{ErrorKind, Outcome};
use crate::model::link::HEADER_BYTES;
use crate::model::tcp::{self, Ack, Receiver, Sender, TcpConfig};
use crate::model::time::{Duration, Instant};

use super::clients::{ConnState, ReqState};
use super::{Ev, World, NONE};

/// Retransmission timeout of a lost RST or close (Linux's minimum RTO).
pub(super) const CONTROL_RTO: Duration = Duration::from_millis(200);

/// The TCP timer grid: 1 ms, Linux's jiffy at HZ = 1000.
const TIMER_GRID_NS: u64 = 1_000_000;

/// Index of the client's end in [`super::clients::Conn::ep`] (it sends the requests).
pub(super) const CLIENT: usize = 0;
/// Index of the server's end (it sends the responses).
pub(super) const SERVER: usize = 1;

/// One end of a connection: its sender, its receiver, and the earliest pending timer event.
#[derive(Clone, Debug)]
pub(super) struct Endpoint {
    pub(super) snd: Sender,
    pub(super) rcv: Receiver,
    timer_at: Instant,
}

impl Endpoint {
    pub(super) fn new(cfg: TcpConfig, rtt: Option<Duration>) -> Endpoint {
        Endpoint {
            snd: Sender::with_handshake_rtt(cfg, rtt),
            rcv: Receiver::new(cfg),
            timer_at: Instant::MAX,
        }
    }
}

/// A request or response written to a connection: it is delivered once the receiver has the
/// stream up to `end`.
#[derive(Clone, Copy, Debug)]
pub(super) struct AppMsg {
    end: u64,
    req: u32,
    gen: u32,
    /// None: a request; Some((error, close)): a response.
    response: Option<(bool, bool)>,
}

impl AppMsg {
    pub(super) fn request(req: u32, gen: u32) -> AppMsg {
        AppMsg {
            end: 0,
            req,
            gen,
            response: None,
        }
    }
    pub(super) fn response(req: u32, gen: u32, error: bool, close: bool) -> AppMsg {
        AppMsg {
            end: 0,
            req,
            gen,
            response: Some((error, close)),
        }
    }
}

/// A segment on the wire: data (`len > 0`) or a pure ACK, always carrying an ACK.
pub(super) struct Seg {
    conn: u32,
    gen: u32,
    /// Client → server.
    up: bool,
    hop: u16,
    seq: u64,
    len: u32,
    ack: Ack,
}

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
            // Control messages of finished requests are dropped.
            if !live {
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
                self.deliver(id);
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
            let payload = m.payload;
            let dir = &mut self.links[instance as usize].dirs[hop.dir.index()];
            let mut arrival = m.arrival;
            let lost = match dir.send(now, u64::from(payload) + HEADER_BYTES) {
                Ok(a) => {
                    arrival = arrival.max(a);
                    false
                }
                Err(_) => true,
            };
            let m = &mut self.msgs[id as usize];
            m.arrival = arrival;
            if lost {
                // The control packet is sent again after its timeout, doubling each time.
                let handshake = m.kind == MsgKind::Syn || m.kind == MsgKind::SynAck;
                let attempt = u32::from(m.attempt);
                m.lost = 1;
                m.attempt = m.attempt.saturating_add(1);
                let backoff = if handshake {
                    tcp::syn_rto(&self.tcp_cfg, attempt)
                } else {
                    CONTROL_RTO.saturating_mul(1u64 << attempt.min(16))
                };
                if handshake {
                    let conn = self.reqs[m.req as usize].conn;
                    if conn != NONE {
                        self.conns[conn as usize].syn_retx = true;
                    }
                }
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
    fn deliver(&mut self, id: u32) {
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
                // Established: both ends start their TCP state, seeded with the handshake's
                // round trip (Karn: none if the SYN or SYN-ACK was retransmitted); the request
                // travels with the third packet of the handshake.
                let cfg = self.tcp_cfg;
                let now = self.now;
                let c = &mut self.conns[conn as usize];
                c.state = ConnState::Busy;
                let rtt = (!c.syn_retx).then(|| now.saturating_since(c.syn_at));
                *c.ep = [Endpoint::new(cfg, rtt), Endpoint::new(cfg, rtt)];
                let wl = c.wl;
                let payload = self.wls[wl as usize].request;
                self.tcp_send(conn, CLIENT, payload, AppMsg::request(req, gen));
            }
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
        }
    }

    /// A response's last byte reached the client.
    fn on_response(&mut self, conn: u32, req: u32, gen: u32, error: bool, close: bool) {
        let q = &self.reqs[req as usize];
        if q.gen != gen || q.state == ReqState::Done {
            return;
        }
        let wl = q.wl;
        let replica = self.conns[conn as usize].replica;
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

impl<'s> World<'s> {
    /// The application at `side` of `conn` writes `bytes` (a request or a response).
    pub(super) fn tcp_send(&mut self, conn: u32, side: usize, bytes: u32, mut msg: AppMsg) {
        let c = &mut self.conns[conn as usize];
        let ep = &mut c.ep[side];
        ep.snd.write(u64::from(bytes));
        msg.end = ep.snd.written();
        c.msgs[side].push_back(msg);
        self.tcp_output(conn, side);
    }

    /// Sends what `side`'s window allows, then a pure ACK if one is due, and arms its timer.
    fn tcp_output(&mut self, conn: u32, side: usize) {
        let now = self.now;
        let gen = self.conns[conn as usize].gen;
        loop {
            let ep = &mut self.conns[conn as usize].ep[side];
            let Some(seg) = ep.snd.poll_transmit(now) else {
                break;
            };
            ep.rcv.on_data_sent(now);
            let ack = ep.rcv.take_ack();
            self.emit(conn, gen, side, seg.seq, seg.len, ack);
        }
        let ep = &mut self.conns[conn as usize].ep[side];
        if ep.rcv.ack_due() {
            let ack = ep.rcv.take_ack();
            self.emit(conn, gen, side, 0, 0, ack);
        }
        let ep = &mut self.conns[conn as usize].ep[side];
        let due = ep.snd.poll_at().min(ep.rcv.poll_at());
        if due == Instant::MAX {
            return;
        }
        // Timers fire on a 1 ms grid, as Linux's do (jiffies at HZ = 1000), rounded up.
        let slot = due.as_nanos().div_ceil(TIMER_GRID_NS);
        let at = Instant::from_nanos(slot * TIMER_GRID_NS);
        if at < ep.timer_at || ep.timer_at <= now {
            ep.timer_at = at;
            let v = self.timer_slots.entry(slot).or_default();
            if v.is_empty() {
                self.queue.push(at, Ev::TcpTimers { slot });
            }
            v.push((conn, gen, side as u8));
        }
    }

    fn emit(&mut self, conn: u32, gen: u32, side: usize, seq: u64, len: u32, ack: Ack) {
        let seg = Seg {
            conn,
            gen,
            up: side == CLIENT,
            hop: 0,
            seq,
            len,
            ack,
        };
        let id = match self.free_segs.pop() {
            Some(i) => {
                self.segs[i as usize] = seg;
                i
            }
            None => {
                self.segs.push(seg);
                (self.segs.len() - 1) as u32
            }
        };
        self.seg_cross(id, false);
    }

    /// Moves a segment across as many hops as it crosses without delay; schedules its arrival
    /// at the end of the first hop that takes time. A segment that reaches its end without
    /// delay still arrives through the event queue (`from_event` false), so that zero-delay
    /// routes do not recurse.
    pub(super) fn seg_cross(&mut self, id: u32, from_event: bool) {
        loop {
            let g = &self.segs[id as usize];
            let c = &self.conns[g.conn as usize];
            if c.gen != g.gen {
                self.free_segs.push(id);
                return;
            }
            let w = &self.wls[c.wl as usize];
            let route = if g.up { &w.up } else { &w.down };
            let hop_i = g.hop as usize;
            if hop_i == route.len() {
                if from_event {
                    self.seg_arrive(id);
                } else {
                    self.queue.push(self.now, Ev::Seg { seg: id });
                }
                return;
            }
            let hop = route[hop_i];
            let instance = if hop.per_replica {
                let r = &self.replicas[c.replica as usize];
                r.links
                    .iter()
                    .find(|(li, _)| *li == hop.link)
                    .expect("replica has its links")
                    .1
            } else {
                self.shared_link[hop.link].expect("shared link")
            };
            let size = u64::from(g.len) + HEADER_BYTES;
            let now = self.now;
            let dir = &mut self.links[instance as usize].dirs[hop.dir.index()];
            match dir.send(now, size) {
                Err(_) => {
                    // Lost or dropped: TCP's loss recovery decides what happens next.
                    self.free_segs.push(id);
                    return;
                }
                Ok(arrival) => {
                    self.segs[id as usize].hop += 1;
                    if arrival > now {
                        self.queue.push(arrival, Ev::Seg { seg: id });
                        return;
                    }
                }
            }
        }
    }

    /// A segment reached its end: the ACK it carries, then its data, then any message that is
    /// now complete, then whatever the end may send.
    fn seg_arrive(&mut self, id: u32) {
        let Seg {
            conn,
            up,
            seq,
            len,
            ack,
            ..
        } = self.segs[id as usize];
        self.free_segs.push(id);
        let side = if up { SERVER } else { CLIENT };
        let now = self.now;
        let c = &mut self.conns[conn as usize];
        let gen = c.gen;
        let ep = &mut c.ep[side];
        ep.snd.on_ack(now, &ack);
        if len > 0 {
            let rto = ep.snd.rto();
            ep.rcv.on_segment(now, seq, len, rto);
        }
        // Messages travel the other way: the client receives responses (written by the
        // server), the server requests.
        let from = 1 - side;
        loop {
            let c = &mut self.conns[conn as usize];
            if c.gen != gen {
                return;
            }
            let delivered = c.ep[side].rcv.delivered();
            let Some(m) = c.msgs[from].front().copied().filter(|m| m.end <= delivered) else {
                break;
            };
            c.msgs[from].pop_front();
            match m.response {
                None => {
                    let (wl, replica) = (c.wl, c.replica);
                    let q = &self.reqs[m.req as usize];
                    let live = q.gen == m.gen && q.state != ReqState::Done;
                    self.on_request_at_server(wl, m.req, m.gen, replica, live);
                }
                Some((error, close)) => self.on_response(conn, m.req, m.gen, error, close),
            }
        }
        if self.conns[conn as usize].gen == gen {
            self.tcp_output(conn, side);
        }
    }

    /// A TCP timer of `side` of `conn` is due (or an earlier one that was moved).
    pub(super) fn on_tcp_timer(&mut self, conn: u32, gen: u32, side: usize) {
        let now = self.now;
        let c = &mut self.conns[conn as usize];
        if c.gen != gen {
            return;
        }
        let ep = &mut c.ep[side];
        if ep.timer_at <= now {
            ep.timer_at = Instant::MAX;
        }
        ep.snd.on_timer(now);
        ep.rcv.on_timer(now);
        self.tcp_output(conn, side);
    }
}
