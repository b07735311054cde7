//! The built-in HTTP service (`sdnbed serve`): one version of a scenario service, on one port.
//!
//! One event-loop thread owns the listener and every connection (HTTP/1.1 keep-alive,
//! pipelining answered in order). A workload request (any path but `/ready` and `/metrics`) is
//! served by one of `workers` workers for a service time drawn from the version's distribution;
//! requests beyond `workers` wait in one FIFO queue, in arrival order: the simulator's
//! [`WorkerPool`] decides who is served and who waits, so a replica queues here exactly as it
//! does in simulation. With [`Work::Sleep`] a
//! worker is a deadline in the loop's timer heap, woken by the precise timer of
//! [`super::timer`], so sub-millisecond service times are honoured and thousands of sleeping
//! requests cost nothing; with [`Work::Cpu`] each worker is a thread that burns the service time
//! on a CPU. Service times and error draws come from one seeded generator in arrival order.
//!
//! Draining ([`ServerControl::drain`], SIGTERM in the CLI): the server answers `/ready` with 503,
//! accepts what is already in its backlog and closes the listener, closes idle kept-alive
//! connections, finishes every request in service, queued or already received, sends the last
//! response of each connection with `connection: close`, and returns when no connection is left.
//! Connections accepted but never used get 500 ms to send their first request. A client that
//! sends on an idle kept-alive connection just as it is closed sees the connection end before
//! any response byte; HTTP lets it retry such a request, and `sdnbed load` does. Servers sharing
//! a port with `--reuse-port`: a connection whose handshake completes between the last accept
//! and the close of the listener is reset by the kernel unless `net.ipv4.tcp_migrate_req` is 1
//! in that namespace; drain a server only after steering stopped sending it new connections.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::http::{self, Route};
use super::sys::{self, EventFd, InBuf, Poller, READABLE, WRITABLE};
use super::timer::{self, Clock, DeadlineWait, DEFAULT_SPIN};
use super::WorkloadError;
use crate::model::dist::Dist;
use crate::model::rng::SeedTree;
use crate::model::service::WorkerPool;
use crate::model::time::{Duration, Instant};

/// How a worker spends a request's service time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Wait without using a CPU (a service that waits on something else).
    Sleep,
    /// Burn the time on a CPU, one thread per worker (a CPU-bound service).
    Cpu,
}

/// One version of a service, as `sdnbed serve` runs it.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Sent in every response's `x-sdnbed-version` (if `version_header`), and named in
    /// `/metrics`.
    pub version: String,
    /// Send `x-sdnbed-version`; false stands in for a foreign image that does not, so that
    /// attribution by steering target can be tested.
    pub version_header: bool,
    pub service_time: Dist,
    pub work: Work,
    /// Requests served at once (at least 1); more wait in the FIFO queue.
    pub workers: usize,
    /// Time between the call and the port opening.
    pub startup: Duration,
    /// Share of workload requests answered 500, in [0, 1].
    pub error_rate: f64,
    /// Body bytes of a workload response.
    pub response_size: usize,
    /// Root of the seed tree; the server draws from `SeedTree::new(seed).rng("serve/<version>")`.
    pub seed: u64,
    /// Set `SO_REUSEPORT`, so that another server can share the port (e.g. to take over while
    /// this one drains).
    pub reuse_port: bool,
}

#[derive(Debug)]
struct Control {
    drain: AtomicBool,
    wake: EventFd,
}

/// Tells a running server to drain; cheap to clone and usable from any thread or a signal
/// handling thread.
#[derive(Clone, Debug)]
pub struct ServerControl(Arc<Control>);

impl ServerControl {
    pub fn new() -> io::Result<Self> {
        Ok(ServerControl(Arc::new(Control {
            drain: AtomicBool::new(false),
            wake: EventFd::new()?,
        })))
    }
    /// Starts draining (idempotent). During startup it makes [`serve`] return without binding.
    pub fn drain(&self) {
        self.0.drain.store(true, Ordering::SeqCst);
        self.0.wake.notify();
    }
    pub fn is_draining(&self) -> bool {
        self.0.drain.load(Ordering::SeqCst)
    }
}

/// What a server did, returned when it has drained.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Workload responses by status code.
    pub responses: BTreeMap<u16, u64>,
    pub connections: u64,
}

/// While draining, how long a connection accepted but not yet used may still send its first
/// request.
const DRAIN_LINGER: Duration = Duration::from_millis(500);

const LISTENER: u64 = u64::MAX - 1;
const WAKE: u64 = u64::MAX - 2;
const POOL: u64 = u64::MAX - 3;
const READ_CHUNK: usize = 16 * 1024;
/// Requests larger than this (head and body) are answered 400.
const READ_MAX: usize = 4 * 1024 * 1024;

/// Runs a server until it has drained: waits `cfg.startup` (cut short by a drain), binds, calls
/// `on_listening` with the bound address (useful with port 0), serves. The listening socket is
/// created on the calling thread, so a caller inside another network namespace (`setns`) serves
/// there.
pub fn serve(
    cfg: &ServeConfig,
    ctl: &ServerControl,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<ServeStats, WorkloadError> {
    let clock = Clock::start_now();
    let mut poller = Poller::new(256).map_err(|e| WorkloadError::io("epoll", e))?;
    poller
        .add(ctl.0.wake.raw(), WAKE, READABLE)
        .map_err(|e| WorkloadError::io("epoll", e))?;
    let mut wait =
        DeadlineWait::new(&poller, DEFAULT_SPIN).map_err(|e| WorkloadError::io("timerfd", e))?;
    let mut events = Vec::new();
    let opens_at = Instant::ZERO + cfg.startup;
    while clock.now() < opens_at && !ctl.is_draining() {
        wait.wait(&mut poller, &clock, Some(opens_at), &mut events)
            .map_err(|e| WorkloadError::io("epoll", e))?;
    }
    if ctl.is_draining() {
        return Ok(ServeStats::default());
    }
    let listener = sys::listen(&cfg.listen, cfg.reuse_port, 4096)
        .map_err(|e| WorkloadError::io(format!("listen on {}", cfg.listen), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| WorkloadError::io("getsockname", e))?;
    poller
        .add(listener.as_raw_fd(), LISTENER, READABLE)
        .map_err(|e| WorkloadError::io("epoll", e))?;
    on_listening(addr);
    let mut server = Server::new(cfg, ctl, clock, poller, wait, listener)?;
    server.run()?;
    Ok(server.stats)
}

/// What an answer is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Work,
    Ready,
    Metrics,
    BadRequest,
}

#[derive(Clone, Copy, Debug)]
struct Reply {
    status: u16,
    kind: Kind,
}

struct Conn {
    stream: TcpStream,
    gen: u32,
    rbuf: InBuf,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Requests received and not yet answered, in order: `(sequence, reply once ready)`.
    outstanding: VecDeque<(u64, Option<Reply>)>,
    next_seq: u64,
    /// The last response has been queued; close once it is written.
    closing: bool,
    /// No more requests are read: the peer ended its side, or asked to close.
    read_closed: bool,
    /// The epoll interest currently registered.
    interest: u32,
}

impl Conn {
    /// Answers 400 after what is already queued and stops reading: what follows in the stream
    /// cannot be parsed.
    fn reject(&mut self) {
        self.rbuf.clear();
        let seq = self.next_seq;
        self.next_seq += 1;
        let reply = Reply {
            status: 400,
            kind: Kind::BadRequest,
        };
        self.outstanding.push_back((seq, Some(reply)));
        self.read_closed = true;
    }
}

/// A request waiting for or holding a worker (unique by connection token and sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Job {
    token: u64,
    seq: u64,
    service: Duration,
    status: u16,
}

/// A sleeping worker's job, ordered by completion time (then by start order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    order: u64,
    job: Job,
}

/// The CPU workers: the jobs [`WorkerPool`] admitted (never more than there are threads),
/// threads that burn each job's time, and a done list.
struct Pool {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    done: Mutex<Vec<Job>>,
    wake: EventFd,
    stop: AtomicBool,
}

struct Server<'a> {
    cfg: &'a ServeConfig,
    ctl: &'a ServerControl,
    clock: Clock,
    poller: Poller,
    wait: DeadlineWait,
    listener: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    gen: u32,
    rng: crate::model::rng::Rng,
    zero_time: bool,
    /// Which jobs hold a worker and which wait, in FIFO order.
    workers: WorkerPool<Job>,
    /// Sleep workers: jobs in service by completion time.
    timers: BinaryHeap<Reverse<Due>>,
    timer_seq: u64,
    /// CPU workers (`Work::Cpu`): the threads that serve the admitted jobs.
    pool: Option<(Arc<Pool>, Vec<std::thread::JoinHandle<()>>)>,
    draining: bool,
    /// While draining: until when fresh connections may still send their first request.
    linger_until: Option<Instant>,
    body: Vec<u8>,
    stats: ServeStats,
}

fn token(idx: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | idx as u64
}

impl<'a> Server<'a> {
    fn new(
        cfg: &'a ServeConfig,
        ctl: &'a ServerControl,
        clock: Clock,
        poller: Poller,
        wait: DeadlineWait,
        listener: TcpListener,
    ) -> Result<Self, WorkloadError> {
        let pool = if cfg.work == Work::Cpu && !cfg.service_time.is_zero() {
            let pool = Arc::new(Pool {
                queue: Mutex::new(VecDeque::new()),
                ready: Condvar::new(),
                done: Mutex::new(Vec::new()),
                wake: EventFd::new().map_err(|e| WorkloadError::io("eventfd", e))?,
                stop: AtomicBool::new(false),
            });
            poller
                .add(pool.wake.raw(), POOL, READABLE)
                .map_err(|e| WorkloadError::io("epoll", e))?;
            let threads = (0..cfg.workers.max(1))
                .map(|i| {
                    let pool = Arc::clone(&pool);
                    std::thread::Builder::new()
                        .name(format!("sdnbed-worker-{i}"))
                        .spawn(move || cpu_worker(&pool, clock))
                        .map_err(|e| WorkloadError::io("spawn worker thread", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some((pool, threads))
        } else {
            None
        };
        Ok(Server {
            cfg,
            ctl,
            clock,
            poller,
            wait,
            listener: Some(listener),
            conns: Vec::new(),
            free: Vec::new(),
            gen: 0,
            rng: SeedTree::new(cfg.seed).rng(&format!("serve/{}", cfg.version)),
            zero_time: cfg.service_time.is_zero(),
            workers: WorkerPool::new(u32::try_from(cfg.workers).unwrap_or(u32::MAX)),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            pool,
            draining: false,
            linger_until: None,
            body: vec![b'x'; cfg.response_size],
            stats: ServeStats::default(),
        })
    }

    fn run(&mut self) -> Result<(), WorkloadError> {
        let mut events = Vec::with_capacity(256);
        loop {
            // Service completions need the precise wait; the drain linger does not.
            let due = self.timers.peek().map(|Reverse(d)| d.at);
            match (due, self.linger_until) {
                (Some(t), Some(l)) if l + DEFAULT_SPIN < t => {
                    self.wait
                        .wait_coarse(&mut self.poller, &self.clock, l, &mut events)
                }
                (None, Some(l)) => {
                    self.wait
                        .wait_coarse(&mut self.poller, &self.clock, l, &mut events)
                }
                _ => self
                    .wait
                    .wait(&mut self.poller, &self.clock, due, &mut events),
            }
            .map_err(|e| WorkloadError::io("epoll_wait", e))?;
            for ev in &events {
                match ev.token {
                    LISTENER => self.accept_all()?,
                    WAKE => {
                        self.ctl.0.wake.clear();
                        if self.ctl.is_draining() && !self.draining {
                            self.start_drain()?;
                        }
                    }
                    POOL => self.collect_pool(),
                    t => self.on_conn_event(t, *ev),
                }
            }
            self.complete_due();
            if self.linger_until.is_some_and(|t| self.clock.now() >= t) {
                self.linger_until = None;
                self.close_idle(true);
            }
            if self.draining && self.conns.iter().all(Option::is_none) && self.busy() == 0 {
                break;
            }
        }
        if let Some((pool, threads)) = self.pool.take() {
            pool.stop.store(true, Ordering::SeqCst);
            pool.ready.notify_all();
            for t in threads {
                let _ = t.join();
            }
        }
        Ok(())
    }

    /// Requests holding or waiting for a worker.
    fn busy(&self) -> usize {
        self.workers.in_service() + self.workers.queued()
    }

    fn accept_all(&mut self) -> Result<(), WorkloadError> {
        let Some(listener) = &self.listener else {
            return Ok(());
        };
        loop {
            let stream = match sys::accept(listener) {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(()),
                // Out of descriptors and the like: leave the rest in the backlog for later.
                Err(_) => return Ok(()),
            };
            self.gen = self.gen.wrapping_add(1);
            let idx = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let tok = token(idx, self.gen);
            if self.poller.add(stream.as_raw_fd(), tok, READABLE).is_err() {
                self.free.push(idx);
                continue;
            }
            self.stats.connections += 1;
            self.conns[idx] = Some(Conn {
                stream,
                gen: self.gen,
                rbuf: InBuf::new(READ_CHUNK, READ_MAX),
                wbuf: Vec::with_capacity(4096),
                wpos: 0,
                outstanding: VecDeque::new(),
                next_seq: 0,
                closing: false,
                read_closed: false,
                interest: READABLE,
            });
        }
    }

    fn start_drain(&mut self) -> Result<(), WorkloadError> {
        self.draining = true;
        // Take what the kernel already accepted for us, then stop listening.
        self.accept_all()?;
        if let Some(l) = self.listener.take() {
            let _ = self.poller.delete(l.as_raw_fd());
        }
        // Read what already arrived, so that no received request is mistaken for idleness.
        for idx in 0..self.conns.len() {
            if let Some(c) = &self.conns[idx] {
                let tok = token(idx, c.gen);
                self.read(idx, tok);
            }
        }
        self.close_idle(false);
        self.linger_until = Some(self.clock.now() + DRAIN_LINGER);
        Ok(())
    }

    /// Closes connections with nothing received, in service or unwritten. Fresh connections
    /// (never answered) are kept unless `fresh_too`: their client may be about to send its first
    /// request and could not safely retry it elsewhere, whereas a request on a reused connection
    /// that finds it closed can be retried.
    fn close_idle(&mut self, fresh_too: bool) {
        for idx in 0..self.conns.len() {
            let idle = matches!(&self.conns[idx], Some(c) if c.outstanding.is_empty()
                && c.wpos == c.wbuf.len()
                && c.rbuf.is_empty()
                && (fresh_too || c.next_seq > 0));
            if idle {
                self.close(idx);
            }
        }
    }

    fn conn_index(&self, tok: u64) -> Option<usize> {
        let idx = (tok & 0xffff_ffff) as usize;
        match self.conns.get(idx) {
            Some(Some(c)) if c.gen == (tok >> 32) as u32 => Some(idx),
            _ => None,
        }
    }

    fn on_conn_event(&mut self, tok: u64, ev: sys::Event) {
        let Some(idx) = self.conn_index(tok) else {
            return;
        };
        let read_closed = self.conns[idx].as_ref().is_some_and(|c| c.read_closed);
        if ev.hangup() && read_closed {
            // Reset, or both directions over: nothing we write can arrive.
            self.close(idx);
            return;
        }
        if ev.writable() {
            self.flush(idx);
        }
        if ev.readable() && self.conns[idx].is_some() {
            self.read(idx, tok);
        }
    }

    fn read(&mut self, idx: usize, tok: u64) {
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        if c.read_closed {
            // Level-triggered input we no longer want (e.g. EOF after `connection: close`).
            self.flush(idx);
            return;
        }
        match c.rbuf.read_from(&mut c.stream) {
            Ok(0) => c.read_closed = true,
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // Too large to buffer.
                c.reject();
            }
            Err(_) => {
                self.close(idx);
                return;
            }
        }
        self.parse_requests(idx, tok);
        self.respond_ready(idx);
        let done = matches!(&self.conns[idx], Some(c) if c.read_closed && c.outstanding.is_empty() && c.wpos == c.wbuf.len());
        if done {
            self.close(idx);
        }
    }

    fn parse_requests(&mut self, idx: usize, tok: u64) {
        loop {
            let Some(c) = self.conns[idx].as_mut() else {
                return;
            };
            if c.closing || c.read_closed {
                return;
            }
            let head = match http::parse_request(c.rbuf.data()) {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(_) => {
                    // The stream cannot be resynchronised.
                    c.reject();
                    return;
                }
            };
            c.rbuf.consume(head.len);
            let seq = c.next_seq;
            c.next_seq += 1;
            if head.close {
                c.read_closed = true;
            }
            match head.route {
                Route::Ready => {
                    let status = if self.draining { 503 } else { 200 };
                    c.outstanding.push_back((
                        seq,
                        Some(Reply {
                            status,
                            kind: Kind::Ready,
                        }),
                    ));
                }
                Route::Metrics => c.outstanding.push_back((
                    seq,
                    Some(Reply {
                        status: 200,
                        kind: Kind::Metrics,
                    }),
                )),
                Route::Work => {
                    let service = self.cfg.service_time.sample(&mut self.rng);
                    let status = if self.rng.chance(self.cfg.error_rate) {
                        500
                    } else {
                        200
                    };
                    if self.zero_time {
                        c.outstanding.push_back((
                            seq,
                            Some(Reply {
                                status,
                                kind: Kind::Work,
                            }),
                        ));
                    } else {
                        c.outstanding.push_back((seq, None));
                        self.submit(Job {
                            token: tok,
                            seq,
                            service,
                            status,
                        });
                    }
                }
            }
            if head.close {
                return;
            }
        }
    }

    fn submit(&mut self, job: Job) {
        if self.workers.arrive(job) {
            self.start_job(job);
        }
    }

    /// A worker takes `job`: a CPU thread, or a deadline in the timer heap.
    fn start_job(&mut self, job: Job) {
        if let Some((pool, _)) = &self.pool {
            pool.queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(job);
            pool.ready.notify_one();
            return;
        }
        self.timer_seq += 1;
        let at = self.clock.now() + job.service;
        self.timers.push(Reverse(Due {
            at,
            order: self.timer_seq,
            job,
        }));
    }

    /// Completes sleep jobs whose time has come, admitting queued ones in FIFO order.
    fn complete_due(&mut self) {
        let now = self.clock.now();
        while let Some(Reverse(due)) = self.timers.peek().copied() {
            if due.at > now {
                break;
            }
            self.timers.pop();
            self.release(&due.job);
        }
    }

    fn collect_pool(&mut self) {
        let Some((pool, _)) = &self.pool else { return };
        pool.wake.clear();
        let done = std::mem::take(&mut *pool.done.lock().unwrap_or_else(|e| e.into_inner()));
        for job in done {
            self.release(&job);
        }
    }

    /// `job`'s service is over: its worker takes the next queued job, and `job` is answered.
    fn release(&mut self, job: &Job) {
        if let Some(next) = self.workers.complete(job) {
            self.start_job(next);
        }
        self.finish_job(job.token, job.seq, job.status);
    }

    fn finish_job(&mut self, tok: u64, seq: u64, status: u16) {
        // The connection may be gone: the client closed it or timed out; the work still counted.
        let Some(idx) = self.conn_index(tok) else {
            return;
        };
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        if let Some(slot) = c.outstanding.iter_mut().find(|(s, _)| *s == seq) {
            slot.1 = Some(Reply {
                status,
                kind: Kind::Work,
            });
        }
        self.respond_ready(idx);
    }

    /// Writes the answers that are ready, in request order, and flushes.
    fn respond_ready(&mut self, idx: usize) {
        let draining = self.draining;
        let version = self.cfg.version_header.then_some(self.cfg.version.as_str());
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        while let Some((_, Some(reply))) = c.outstanding.front().copied() {
            c.outstanding.pop_front();
            let last = c.outstanding.is_empty() && (c.read_closed || draining);
            let close = last || reply.kind == Kind::BadRequest;
            match reply.kind {
                Kind::Work => {
                    *self.stats.responses.entry(reply.status).or_insert(0) += 1;
                    let body: &[u8] = if reply.status == 200 { &self.body } else { b"" };
                    http::write_response(
                        &mut c.wbuf,
                        reply.status,
                        version,
                        close,
                        "text/plain",
                        body,
                    );
                }
                Kind::BadRequest => {
                    http::write_response(
                        &mut c.wbuf,
                        400,
                        version,
                        true,
                        "text/plain",
                        b"bad request\n",
                    );
                }
                Kind::Ready => {
                    let body: &[u8] = if reply.status == 200 {
                        b"ready\n"
                    } else {
                        b"not ready\n"
                    };
                    http::write_response(
                        &mut c.wbuf,
                        reply.status,
                        version,
                        close,
                        "text/plain",
                        body,
                    );
                }
                Kind::Metrics => {
                    let text = metrics_text(
                        &self.cfg.version,
                        &self.stats.responses,
                        self.workers.in_service(),
                        self.workers.queued(),
                        !draining,
                    );
                    http::write_response(
                        &mut c.wbuf,
                        200,
                        version,
                        close,
                        "text/plain; version=0.0.4",
                        text.as_bytes(),
                    );
                }
            }
            if close {
                c.closing = true;
                c.outstanding.clear();
                break;
            }
        }
        self.flush(idx);
    }

    fn flush(&mut self, idx: usize) {
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        while c.wpos < c.wbuf.len() {
            match c.stream.write(&c.wbuf[c.wpos..]) {
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(idx);
                    return;
                }
            }
        }
        let pending = c.wpos < c.wbuf.len();
        if !pending {
            c.wbuf.clear();
            c.wpos = 0;
        }
        // Input is watched until the peer or we end it; output while some is unwritten.
        let mut interest = if c.read_closed || c.closing {
            0
        } else {
            READABLE
        };
        if pending {
            interest |= WRITABLE;
        }
        if interest != c.interest {
            c.interest = interest;
            let _ = self
                .poller
                .modify(c.stream.as_raw_fd(), token(idx, c.gen), interest);
        }
        if !pending && (c.closing || (c.read_closed && c.outstanding.is_empty())) {
            self.close(idx);
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(c) = self.conns[idx].take() {
            let _ = self.poller.delete(c.stream.as_raw_fd());
            // Half-close first so the peer reads everything we wrote, then drop (close).
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            self.free.push(idx);
        }
    }
}

fn cpu_worker(pool: &Pool, clock: Clock) {
    loop {
        let job = {
            let mut q = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = q.pop_front() {
                    break j;
                }
                if pool.stop.load(Ordering::SeqCst) {
                    return;
                }
                q = pool.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        timer::spin_for(&clock, job.service);
        pool.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job);
        pool.wake.notify();
    }
}

/// The `/metrics` page in the Prometheus text exposition format (version 0.0.4).
fn metrics_text(
    version: &str,
    responses: &BTreeMap<u16, u64>,
    in_flight: usize,
    queued: usize,
    ready: bool,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# HELP sdnbed_requests_total Workload requests answered, by status code."
    );
    let _ = writeln!(s, "# TYPE sdnbed_requests_total counter");
    for (code, n) in responses {
        let _ = writeln!(
            s,
            "sdnbed_requests_total{{version=\"{version}\",code=\"{code}\"}} {n}"
        );
    }
    let _ = writeln!(
        s,
        "# HELP sdnbed_requests_in_flight Workload requests being served by a worker."
    );
    let _ = writeln!(s, "# TYPE sdnbed_requests_in_flight gauge");
    let _ = writeln!(
        s,
        "sdnbed_requests_in_flight{{version=\"{version}\"}} {in_flight}"
    );
    let _ = writeln!(
        s,
        "# HELP sdnbed_requests_queued Workload requests waiting for a worker."
    );
    let _ = writeln!(s, "# TYPE sdnbed_requests_queued gauge");
    let _ = writeln!(
        s,
        "sdnbed_requests_queued{{version=\"{version}\"}} {queued}"
    );
    let _ = writeln!(
        s,
        "# HELP sdnbed_ready 1 while the server accepts work, 0 while it drains."
    );
    let _ = writeln!(s, "# TYPE sdnbed_ready gauge");
    let _ = writeln!(
        s,
        "sdnbed_ready{{version=\"{version}\"}} {}",
        u8::from(ready)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_page_is_prometheus_text() {
        let mut r = BTreeMap::new();
        r.insert(200, 7);
        r.insert(500, 1);
        let t = metrics_text("v2", &r, 3, 4, false);
        assert!(t.contains("sdnbed_requests_total{version=\"v2\",code=\"200\"} 7\n"));
        assert!(t.contains("sdnbed_requests_total{version=\"v2\",code=\"500\"} 1\n"));
        assert!(t.contains("sdnbed_requests_in_flight{version=\"v2\"} 3\n"));
        assert!(t.contains("sdnbed_requests_queued{version=\"v2\"} 4\n"));
        assert!(t.contains("sdnbed_ready{version=\"v2\"} 0\n"));
        // Every sample line belongs to a declared metric.
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split('{').next().unwrap();
            assert!(t.contains(&format!("# TYPE {name} ")), "{line}");
        }
    }
}
