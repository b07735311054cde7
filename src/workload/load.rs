//! The open-loop load generator (`sdnbed load`).
//!
//! Each of `threads` threads runs one epoll loop with its share of the connections and of the
//! schedule ([`crate::model::arrivals`]). At each intended send time the request goes to an idle
//! kept-alive connection (the least recently used, so every connection carries traffic), or to a
//! new connection if the pool is not full (or `connections` is 0), or waits in a FIFO for a
//! connection. Its latency is always `done - intended`: time spent waiting for a connection or
//! behind a stalled server counts (coordinated omission corrected, as in wrk2). In closed-loop
//! mode ([`Rate::Max`]) each connection sends its next request as soon as the previous response
//! is complete, and latency runs from the actual send, as in wrk.
//!
//! Failures are classified: a refused connect is `refused`; a connection that ends or is reset
//! before the response is complete is `reset`; no complete response within `timeout` of the
//! intended time is `timeout` (the connection is then closed, since HTTP/1.1 cannot cancel); a
//! 5xx status is `http_5xx`; anything else (4xx, malformed response, local socket errors) is
//! `other`. One exception, allowed by RFC 9112 §9.3.1 for idempotent requests: a request sent on
//! a reused connection that ends before any byte of the response (the server closed it while
//! idle, e.g. when draining) is retried once on another connection and counted in `retries`.
//! An error without a response is attributed to the version that last answered on that
//! connection (with L4 steering a connection stays on one replica), or to none.
//!
//! A server that does not send `x-sdnbed-version` (a researcher's own image) is attributed
//! through [`LoadConfig::attribute`]: called once per connection, as soon as it is
//! established, with the connection's local and peer addresses, it names the version behind it
//! (e.g. from the gateway's conntrack entry, see [`crate::workload::attribution`]). Its answer
//! is the version of every response on that connection that carries no header (a header always
//! wins) and of errors on that connection before any answer. Unset, it costs nothing; set, it
//! costs one call (and `getsockname`) per connection, on the generator thread.
//!
//! The generator reports how well it kept its schedule ([`ScheduleReport`]): the lag between each
//! intended time and the moment it handed the request on (its own timing), the lag until the
//! request was written (which adds waiting for a connection), and the rate it really sent at.
//! It never slows the schedule down to match the server.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::http::{RequestTemplate, ResponseHead, ResponseReader};
use super::stats::{Completion, ErrorKind, Outcome, SharedRecorder, Sink};
use super::sys::{self, InBuf, Poller, READABLE, WRITABLE};
use super::timer::{Clock, DeadlineWait, DEFAULT_SPIN};
use super::WorkloadError;
use crate::metrics::{
    ErrorCounts, LatencySummary, Recorder, RecorderConfig, RunMetrics, RunSummary, Stats,
};
use crate::model::arrivals::ArrivalProcess;
use crate::model::rng::SeedTree;
use crate::model::time::{Duration, Instant};
use crate::scenario::{Arrivals, RateSchedule};

/// The offered load.
#[derive(Clone, Debug, PartialEq)]
pub enum Rate {
    /// Open loop: requests at the schedule's times, whatever the server does.
    Open {
        schedule: RateSchedule,
        arrivals: Arrivals,
    },
    /// Closed loop at full speed: each connection sends as soon as it has its answer.
    Max,
}

/// Called at the start of every generator thread, before it creates a socket, with the thread's
/// index (e.g. to enter a network namespace with `setns(2)`).
pub type ThreadStart = Arc<dyn Fn(usize) -> io::Result<()> + Send + Sync>;

/// Names the version behind one established connection from its (local, peer) addresses;
/// `None` if it cannot tell. Called on the generator threads, so it should be quick (a
/// conntrack lookup is tens of µs).
pub type Attribute = Arc<dyn Fn(SocketAddr, SocketAddr) -> Option<String> + Send + Sync>;

/// What to send, where and how.
#[derive(Clone)]
pub struct LoadConfig {
    pub target: SocketAddr,
    /// The `host` header.
    pub host: String,
    pub path: String,
    pub rate: Rate,
    pub duration: Duration,
    /// Kept-alive connections over all threads; 0 opens a new connection for every request.
    pub connections: usize,
    /// Requests per connection before it is closed and replaced; 0 = unlimited.
    pub max_requests_per_connection: u64,
    pub timeout: Duration,
    /// Body bytes per request (0: `GET`, otherwise `POST`).
    pub request_size: usize,
    pub threads: usize,
    /// Root of the seed tree; thread `i` draws arrivals from `rng("load/<i>")`.
    pub seed: u64,
    pub on_thread_start: Option<ThreadStart>,
    /// The version of a connection whose responses carry no `x-sdnbed-version` (see the module
    /// docs); `None`: such responses have no version.
    pub attribute: Option<Attribute>,
    /// The run's clock. `None`: a clock whose origin is [`START_LEAD`] after the call, so that
    /// connection pools are up before the first request.
    pub clock: Option<Clock>,
}

impl std::fmt::Debug for LoadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadConfig")
            .field("target", &self.target)
            .field("path", &self.path)
            .field("rate", &self.rate)
            .field("duration", &self.duration)
            .field("connections", &self.connections)
            .field("threads", &self.threads)
            .field("attribute", &self.attribute.is_some())
            .finish_non_exhaustive()
    }
}

/// Dispatches at least this late are reported to the sink ([`Sink::lag`]).
pub const LAG_REPORT_THRESHOLD: Duration = Duration::from_millis(1);

/// Time between [`run`] being called and the run's origin when no clock is given.
pub const START_LEAD: Duration = Duration::from_millis(100);

/// Splits `http://host[:port][/path]` into the address to connect to, the `host` header and
/// the path (resolving the host name with the system resolver).
pub fn parse_url(url: &str) -> Result<(SocketAddr, String, String), WorkloadError> {
    let bad = |why: &str| WorkloadError::Config(format!("`{url}` is not a usable URL: {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| bad(&e.to_string()))?
        .next()
        .ok_or_else(|| bad("the host has no address"))?;
    Ok((addr, authority.to_string(), path.to_string()))
}

/// How well the generator kept its schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduleReport {
    /// Requests per second the schedule asked for on average (`None` for `--rate max`).
    pub target_rate: Option<f64>,
    /// Requests written to a socket per second: sent / max(duration, last first send). Below
    /// the target when requests waited for a free connection or the generator ran late.
    pub achieved_rate: f64,
    /// Requests the schedule produced (open loop; Poisson arrivals vary around the target).
    pub scheduled: u64,
    /// Requests written to a socket (retries not counted again).
    pub sent: u64,
    /// Lateness of the generator's own timing: when it handed each request on, against its
    /// intended time, ns (open loop only). Large values mean a CPU-bound generator.
    pub lag_p50_ns: u64,
    pub lag_p99_ns: u64,
    pub lag_max_ns: u64,
    /// Lateness of each request's first write against its intended time, ns (open loop only):
    /// dispatch lag plus time spent waiting for a free connection or a connect.
    pub send_lag_p99_ns: u64,
    pub send_lag_max_ns: u64,
    /// The generator did not offer the load its schedule asked for: achieved rate under 99 % of
    /// the scheduled requests per second of the duration, or p99 dispatch lag over 1 ms.
    pub behind: bool,
    /// Requests retried after a reused connection closed before answering.
    pub retries: u64,
}

/// The sinks (one per thread, in thread order) and the schedule report.
pub struct LoadRun<S> {
    pub sinks: Vec<S>,
    pub schedule: ScheduleReport,
    /// From the origin until the last request finished.
    pub elapsed: Duration,
}

/// Runs the generator to completion: every request intended within the duration ends up in a
/// sink exactly once (answered, failed or timed out); in-flight requests get up to `timeout`
/// after the duration. `make_sink(i)` builds thread `i`'s sink.
pub fn run<S: Sink>(
    cfg: &LoadConfig,
    make_sink: impl Fn(usize) -> S + Sync,
) -> Result<LoadRun<S>, WorkloadError> {
    if cfg.threads == 0 {
        return Err(WorkloadError::Config("threads must be at least 1".into()));
    }
    if cfg.rate == Rate::Max && cfg.connections == 0 {
        return Err(WorkloadError::Config(
            "a closed loop (rate max) needs connections > 0".into(),
        ));
    }
    if cfg.timeout.is_zero() {
        return Err(WorkloadError::Config("timeout must be positive".into()));
    }
    let threads = if cfg.connections > 0 {
        cfg.threads.min(cfg.connections)
    } else {
        cfg.threads
    };
    let clock = cfg
        .clock
        .unwrap_or_else(|| Clock::with_origin_ns(sys::monotonic_ns() + START_LEAD.as_nanos()));
    let template = Arc::new(RequestTemplate::new(&cfg.host, &cfg.path, cfg.request_size));
    let seeds = SeedTree::new(cfg.seed);
    let results: Vec<Result<(S, ThreadStats), WorkloadError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let template = Arc::clone(&template);
                let make_sink = &make_sink;
                let seeds = &seeds;
                scope.spawn(move || {
                    if let Some(hook) = &cfg.on_thread_start {
                        hook(i).map_err(|e| {
                            WorkloadError::io(format!("generator thread {i} start hook"), e)
                        })?;
                    }
                    let pool = if cfg.connections == 0 {
                        0
                    } else {
                        cfg.connections / threads + usize::from(i < cfg.connections % threads)
                    };
                    let arrivals = match &cfg.rate {
                        Rate::Open { schedule, arrivals } => Some(ArrivalProcess::new(
                            schedule,
                            *arrivals,
                            cfg.duration,
                            i,
                            threads,
                            seeds.rng(&format!("load/{i}")),
                        )),
                        Rate::Max => None,
                    };
                    let mut g = Gen::new(cfg, clock, template, pool, arrivals, make_sink(i))?;
                    g.run()?;
                    Ok((g.sink, g.stats))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(WorkloadError::Config("a generator thread panicked".into()))
                })
            })
            .collect()
    });
    let mut sinks = Vec::with_capacity(threads);
    let mut lag: Histogram<u32> = Histogram::new(3).expect("valid precision");
    let mut send_lag: Histogram<u32> = Histogram::new(3).expect("valid precision");
    let (mut scheduled, mut sent, mut retries) = (0, 0, 0);
    let (mut last_send, mut end) = (Instant::ZERO, Instant::ZERO);
    for r in results {
        let (sink, st) = r?;
        sinks.push(sink);
        let _ = lag.add(&st.lag);
        let _ = send_lag.add(&st.send_lag);
        sent += st.sent;
        scheduled += st.scheduled;
        retries += st.retries;
        last_send = last_send.max(st.last_send);
        end = end.max(st.end);
    }
    let span = cfg
        .duration
        .max(last_send.saturating_since(Instant::ZERO))
        .as_secs_f64()
        .max(1e-9);
    let achieved_rate = sent as f64 / span;
    let target_rate = match &cfg.rate {
        Rate::Open { schedule, .. } => Some(mean_rate(schedule, cfg.duration)),
        Rate::Max => None,
    };
    let q = |h: &Histogram<u32>, p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    let lag_p99 = q(&lag, 0.99);
    let scheduled_rate = scheduled as f64 / cfg.duration.as_secs_f64().max(1e-9);
    let behind =
        (target_rate.is_some() && achieved_rate < 0.99 * scheduled_rate) || lag_p99 > 1_000_000;
    Ok(LoadRun {
        sinks,
        schedule: ScheduleReport {
            target_rate,
            achieved_rate,
            scheduled,
            sent,
            lag_p50_ns: q(&lag, 0.5),
            lag_p99_ns: lag_p99,
            lag_max_ns: q(&lag, 1.0),
            send_lag_p99_ns: q(&send_lag, 0.99),
            send_lag_max_ns: q(&send_lag, 1.0),
            behind,
            retries,
        },
        elapsed: end.saturating_since(Instant::ZERO),
    })
}

/// A finished run recorded into one [`Recorder`] shared by all generator threads.
pub struct RecordedRun {
    pub metrics: RunMetrics,
    pub schedule: ScheduleReport,
    pub elapsed: Duration,
}

impl RecordedRun {
    pub fn summary(&self) -> LoadSummary {
        LoadSummary::new(&self.metrics.summary, &self.schedule, self.elapsed)
    }
}

/// Runs the generator into a recorder built from `rc` (whose duration should be the run's) and
/// finishes it at the end of the duration.
pub fn run_recorded(cfg: &LoadConfig, rc: RecorderConfig) -> Result<RecordedRun, WorkloadError> {
    let shared = Arc::new(Mutex::new(Recorder::new(rc)));
    let run = run(cfg, |_| SharedRecorder::new(Arc::clone(&shared)))?;
    // Dropping the sinks flushes their last batches.
    drop(run.sinks);
    let recorder = Arc::try_unwrap(shared)
        .map_err(|_| WorkloadError::Config("a generator thread kept the recorder".into()))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(RecordedRun {
        metrics: recorder.finish(Instant::ZERO + cfg.duration),
        schedule: run.schedule,
        elapsed: run.elapsed,
    })
}

/// The schedule's average rate over `[0, duration)`.
fn mean_rate(s: &RateSchedule, duration: Duration) -> f64 {
    let end = duration.as_secs_f64();
    let mut total = 0.0;
    for (i, (from, rate)) in s.steps.iter().enumerate() {
        let a = from.as_secs_f64().min(end);
        let b = s
            .steps
            .get(i + 1)
            .map_or(end, |(next, _)| next.as_secs_f64().min(end));
        total += (b - a).max(0.0) * rate.per_sec();
    }
    if end > 0.0 {
        total / end
    } else {
        0.0
    }
}

struct ThreadStats {
    lag: Histogram<u32>,
    send_lag: Histogram<u32>,
    scheduled: u64,
    sent: u64,
    retries: u64,
    last_send: Instant,
    end: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Req {
    intended: Instant,
    retried: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Idle,
    Busy,
}

struct Conn {
    stream: TcpStream,
    gen: u32,
    state: State,
    req: Option<Req>,
    /// Deadline of the request in flight.
    deadline: Instant,
    /// Bytes of the current request written so far.
    wpos: usize,
    close_after: bool,
    rbuf: InBuf,
    reader: ResponseReader,
    /// Any byte of the current response has arrived.
    got_bytes: bool,
    served: u64,
    /// The last response head on this connection (for its version).
    last: Option<ResponseHead>,
    /// What [`LoadConfig::attribute`] said about this connection once it was established.
    resolved: Option<String>,
    interest: u32,
}

const READ_BUF: usize = 16 * 1024;
const READ_BUF_MAX: usize = 1024 * 1024;
/// With `connections = 0`, at most this many connections per thread are open at once; further
/// requests wait for one to finish (their latency still counts from the intended time).
const MAX_OPEN_PER_THREAD: usize = 20_000;

struct Gen<'a, S> {
    cfg: &'a LoadConfig,
    clock: Clock,
    template: Arc<RequestTemplate>,
    poller: Poller,
    wait: DeadlineWait,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    gen: u32,
    live: usize,
    /// Connections that may be open at once (pool size, or the per-request cap).
    limit: usize,
    idle: VecDeque<usize>,
    pending: VecDeque<Req>,
    arrivals: Option<ArrivalProcess>,
    next_arrival: Option<Instant>,
    end: Instant,
    scan_every: Duration,
    next_scan: Instant,
    in_flight: usize,
    sink: S,
    stats: ThreadStats,
}

impl<'a, S: Sink> Gen<'a, S> {
    fn new(
        cfg: &'a LoadConfig,
        clock: Clock,
        template: Arc<RequestTemplate>,
        pool: usize,
        mut arrivals: Option<ArrivalProcess>,
        sink: S,
    ) -> Result<Self, WorkloadError> {
        let poller = Poller::new(1024).map_err(|e| WorkloadError::io("epoll", e))?;
        let wait = DeadlineWait::new(&poller, DEFAULT_SPIN)
            .map_err(|e| WorkloadError::io("timerfd", e))?;
        let next_arrival = arrivals.as_mut().and_then(ArrivalProcess::next);
        let scan_every = Duration((cfg.timeout.as_nanos() / 100).clamp(
            Duration::from_micros(100).as_nanos(),
            Duration::from_millis(10).as_nanos(),
        ));
        Ok(Gen {
            cfg,
            clock,
            template,
            poller,
            wait,
            conns: Vec::new(),
            free: Vec::new(),
            gen: 0,
            live: 0,
            limit: if pool == 0 { MAX_OPEN_PER_THREAD } else { pool },
            idle: VecDeque::new(),
            pending: VecDeque::new(),
            arrivals,
            next_arrival,
            end: Instant::ZERO + cfg.duration,
            scan_every,
            next_scan: Instant::ZERO,
            in_flight: 0,
            sink,
            stats: ThreadStats {
                lag: Histogram::new(3).expect("valid precision"),
                send_lag: Histogram::new(3).expect("valid precision"),
                scheduled: 0,
                sent: 0,
                retries: 0,
                last_send: Instant::ZERO,
                end: Instant::ZERO,
            },
        })
    }

    fn closed_loop(&self) -> bool {
        self.arrivals.is_none()
    }

    fn run(&mut self) -> Result<(), WorkloadError> {
        let mut events = Vec::with_capacity(1024);
        // Before the origin: open the pool (open loop) so the first requests find connections.
        if !self.closed_loop() && self.cfg.connections > 0 {
            for _ in 0..self.limit {
                self.open(None);
            }
        }
        let origin = self.clock.origin_ns();
        // Raw monotonic time: the run's clock reads zero until its origin.
        let pre = Clock::with_origin_ns(0);
        let origin_on_pre = Instant(origin);
        while sys::monotonic_ns() < origin {
            self.wait
                .wait(&mut self.poller, &pre, Some(origin_on_pre), &mut events)
                .map_err(|e| WorkloadError::io("epoll_wait", e))?;
            for ev in &events {
                self.on_event(*ev);
            }
        }
        if self.closed_loop() {
            for _ in 0..self.limit {
                let now = self.clock.now();
                self.open(Some(Req {
                    intended: now,
                    retried: false,
                }));
            }
        }
        loop {
            let now = self.clock.now();
            self.dispatch_due(now);
            if now >= self.next_scan {
                self.expire(now);
                if self.closed_loop() && now < self.end {
                    // Replace connections that could not be opened (refused, reset), once per
                    // scan, so a server that comes back is found without hammering one that is
                    // down.
                    for _ in self.live..self.limit {
                        self.open(Some(Req {
                            intended: now,
                            retried: false,
                        }));
                    }
                }
                self.next_scan = now + self.scan_every;
            }
            if self.finished(now) {
                break;
            }
            // Arrivals need the precise wait; scans and the closed loop's end do not.
            let mut coarse = self.next_scan;
            if self.closed_loop() && now < self.end {
                coarse = coarse.min(self.end);
            }
            match self.next_arrival {
                // An arrival just after a coarse deadline is still waited for precisely.
                Some(t) if t <= coarse + DEFAULT_SPIN => {
                    self.wait
                        .wait(&mut self.poller, &self.clock, Some(t), &mut events)
                }
                _ => self
                    .wait
                    .wait_coarse(&mut self.poller, &self.clock, coarse, &mut events),
            }
            .map_err(|e| WorkloadError::io("epoll_wait", e))?;
            for ev in &events {
                self.on_event(*ev);
            }
        }
        self.stats.end = self.clock.now();
        for idx in 0..self.conns.len() {
            self.close(idx);
        }
        Ok(())
    }

    fn finished(&self, now: Instant) -> bool {
        let sending = if self.closed_loop() {
            now < self.end
        } else {
            self.next_arrival.is_some()
        };
        !sending && self.pending.is_empty() && self.in_flight == 0
    }

    /// Hands every arrival whose time has come to a connection.
    fn dispatch_due(&mut self, now: Instant) {
        while let Some(t) = self.next_arrival {
            if t > now {
                break;
            }
            self.next_arrival = self.arrivals.as_mut().and_then(ArrivalProcess::next);
            let lag = now.saturating_since(t);
            let _ = self.stats.lag.record(lag.as_nanos());
            if lag >= LAG_REPORT_THRESHOLD {
                self.sink.lag(t, lag);
            }
            self.stats.scheduled += 1;
            self.dispatch(Req {
                intended: t,
                retried: false,
            });
        }
    }

    fn dispatch(&mut self, req: Req) {
        while let Some(idx) = self.idle.pop_front() {
            if matches!(&self.conns[idx], Some(c) if c.state == State::Idle) {
                self.send(idx, req);
                return;
            }
        }
        if self.live < self.limit {
            self.open(Some(req));
        } else if req.retried {
            self.pending.push_front(req);
        } else {
            self.pending.push_back(req);
        }
    }

    /// Opens a connection, optionally carrying a request to send once connected.
    fn open(&mut self, req: Option<Req>) {
        let now = self.clock.now();
        let (stream, connected) = match sys::connect(&self.cfg.target) {
            Ok(s) => s,
            Err(e) => {
                if let Some(r) = req {
                    let kind = classify_connect(&e);
                    self.fail(r, None, kind, now);
                }
                return;
            }
        };
        self.gen = self.gen.wrapping_add(1);
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let interest = if connected { READABLE } else { WRITABLE };
        if let Err(e) = self
            .poller
            .add(stream.as_raw_fd(), token(idx, self.gen), interest)
        {
            self.free.push(idx);
            if let Some(r) = req {
                let kind = classify_connect(&e);
                self.fail(r, None, kind, now);
            }
            return;
        }
        self.live += 1;
        let deadline = req.map_or(Instant::MAX, |r| r.intended + self.cfg.timeout);
        if req.is_some() {
            self.in_flight += 1;
        }
        self.conns[idx] = Some(Conn {
            stream,
            gen: self.gen,
            state: State::Connecting,
            req,
            deadline,
            wpos: 0,
            close_after: false,
            rbuf: InBuf::new(READ_BUF, READ_BUF_MAX),
            reader: ResponseReader::new(),
            got_bytes: false,
            served: 0,
            last: None,
            resolved: None,
            interest,
        });
        if connected {
            self.on_connected(idx);
        }
    }

    fn on_connected(&mut self, idx: usize) {
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        c.state = State::Idle;
        if let Some(attribute) = &self.cfg.attribute {
            if let Ok(local) = c.stream.local_addr() {
                c.resolved = attribute(local, self.cfg.target);
            }
        }
        if let Some(req) = c.req.take() {
            self.in_flight -= 1;
            self.send(idx, req);
        } else {
            self.became_idle(idx);
        }
    }

    /// A connection is free: it takes the oldest waiting request, or the next closed-loop one.
    fn became_idle(&mut self, idx: usize) {
        let now = self.clock.now();
        while let Some(req) = self.pending.pop_front() {
            if req.intended + self.cfg.timeout <= now {
                // Expired while waiting for a connection.
                self.fail(req, None, ErrorKind::Timeout, now);
                continue;
            }
            self.send(idx, req);
            return;
        }
        if self.closed_loop() {
            if now < self.end {
                self.send(
                    idx,
                    Req {
                        intended: now,
                        retried: false,
                    },
                );
            } else {
                self.close(idx);
            }
        } else {
            self.idle.push_back(idx);
        }
    }

    fn send(&mut self, idx: usize, req: Req) {
        let now = self.clock.now();
        let max = self.cfg.max_requests_per_connection;
        let per_request = self.cfg.connections == 0;
        let timeout = self.cfg.timeout;
        if !req.retried {
            self.stats.sent += 1;
            self.stats.last_send = now;
            if self.arrivals.is_some() {
                let _ = self
                    .stats
                    .send_lag
                    .record(now.saturating_since(req.intended).as_nanos());
            }
        }
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        c.state = State::Busy;
        c.req = Some(req);
        c.deadline = req.intended + timeout;
        c.close_after = per_request || (max > 0 && c.served + 1 >= max);
        c.wpos = 0;
        c.got_bytes = false;
        c.reader.reset();
        self.in_flight += 1;
        self.write(idx);
    }

    fn write(&mut self, idx: usize) {
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        let bytes = self.template.bytes(c.close_after);
        while c.wpos < bytes.len() {
            match c.stream.write(&bytes[c.wpos..]) {
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.conn_failed(idx, &e);
                    return;
                }
            }
        }
        let interest = if c.wpos < bytes.len() {
            READABLE | WRITABLE
        } else {
            READABLE
        };
        self.set_interest(idx, interest);
    }

    fn set_interest(&mut self, idx: usize, interest: u32) {
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        if c.interest != interest {
            c.interest = interest;
            let _ = self
                .poller
                .modify(c.stream.as_raw_fd(), token(idx, c.gen), interest);
        }
    }

    fn on_event(&mut self, ev: sys::Event) {
        let idx = (ev.token & 0xffff_ffff) as usize;
        let Some(Some(c)) = self.conns.get(idx) else {
            return;
        };
        if c.gen != (ev.token >> 32) as u32 {
            return;
        }
        match c.state {
            State::Connecting => {
                if ev.writable() || ev.readable() {
                    match sys::take_socket_error(&c.stream) {
                        Ok(()) => {
                            self.set_interest(idx, READABLE);
                            self.on_connected(idx);
                        }
                        Err(e) => self.conn_failed(idx, &e),
                    }
                }
            }
            State::Idle | State::Busy => {
                if ev.writable()
                    && c.state == State::Busy
                    && c.wpos < self.template.bytes(c.close_after).len()
                {
                    self.write(idx);
                }
                if ev.readable() {
                    self.read(idx);
                }
            }
        }
    }

    fn read(&mut self, idx: usize) {
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        match c.rbuf.read_from(&mut c.stream) {
            Ok(0) => self.at_eof(idx),
            Ok(_) => self.parse(idx),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.conn_failed(idx, &e),
        }
    }

    fn parse(&mut self, idx: usize) {
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        if c.state != State::Busy {
            // Bytes nobody asked for: the stream is out of step; drop the connection.
            self.close(idx);
            return;
        }
        c.got_bytes = true;
        match c.reader.advance(c.rbuf.data()) {
            Ok(used) => {
                c.rbuf.consume(used);
                if c.reader.is_done() {
                    self.complete(idx);
                }
            }
            Err(_) => {
                let now = self.clock.now();
                if let Some(req) = c.req.take() {
                    self.in_flight -= 1;
                    let v = c.last;
                    let resolved = c.resolved.take();
                    self.fail(
                        req,
                        version_of(v.as_ref(), &resolved),
                        ErrorKind::Other,
                        now,
                    );
                }
                self.close(idx);
            }
        }
    }

    fn complete(&mut self, idx: usize) {
        let now = self.clock.now();
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        let Some(req) = c.req.take() else { return };
        self.in_flight -= 1;
        let head = *c.reader.head().expect("a complete response has a head");
        c.served += 1;
        c.last = Some(head);
        let outcome = match head.status {
            200..=399 => Outcome::Ok,
            500..=599 => Outcome::Error(ErrorKind::Http5xx),
            _ => Outcome::Error(ErrorKind::Other),
        };
        self.sink.record(&Completion {
            intended: req.intended,
            done: now,
            version: head.version().or(c.resolved.as_deref()),
            outcome,
        });
        let reusable = !head.close && !c.close_after && c.rbuf.is_empty();
        if reusable {
            c.state = State::Idle;
            self.became_idle(idx);
        } else {
            self.close(idx);
            self.refill();
        }
    }

    /// After a connection closed: waiting requests (or the closed loop) may need a new one.
    fn refill(&mut self) {
        if self.live >= self.limit {
            return;
        }
        if let Some(req) = self.pending.pop_front() {
            self.open(Some(req));
        } else if self.closed_loop() {
            let now = self.clock.now();
            if now < self.end {
                self.open(Some(Req {
                    intended: now,
                    retried: false,
                }));
            }
        }
    }

    fn at_eof(&mut self, idx: usize) {
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        if c.state == State::Busy && c.reader.finish_at_eof() {
            self.complete(idx);
            return;
        }
        let e = io::Error::from(io::ErrorKind::UnexpectedEof);
        self.conn_failed(idx, &e);
    }

    /// The connection broke; its request (if any) fails or is retried.
    fn conn_failed(&mut self, idx: usize, e: &io::Error) {
        let now = self.clock.now();
        let Some(c) = self.conns[idx].as_mut() else {
            return;
        };
        let connecting = c.state == State::Connecting;
        let req = c.req.take();
        let (served, got_bytes, last) = (c.served, c.got_bytes, c.last);
        let resolved = c.resolved.take();
        self.close(idx);
        let Some(mut req) = req else {
            self.refill();
            return;
        };
        self.in_flight -= 1;
        if connecting {
            self.fail(req, None, classify_connect(e), now);
            if self.closed_loop() {
                // The next scan tries again; reconnecting at once would spin on a dead server.
                return;
            }
        } else if served > 0 && !got_bytes && !req.retried {
            req.retried = true;
            self.stats.retries += 1;
            self.dispatch(req);
            return;
        } else {
            self.fail(
                req,
                version_of(last.as_ref(), &resolved),
                ErrorKind::Reset,
                now,
            );
        }
        self.refill();
    }

    fn fail(&mut self, req: Req, version: Option<&str>, kind: ErrorKind, now: Instant) {
        self.sink.record(&Completion {
            intended: req.intended,
            done: now,
            version,
            outcome: Outcome::Error(kind),
        });
    }

    /// Fails requests past their deadline, in flight or waiting.
    fn expire(&mut self, now: Instant) {
        let timeout = self.cfg.timeout;
        while let Some(r) = self.pending.front().copied() {
            if r.intended + timeout > now {
                break;
            }
            self.pending.pop_front();
            self.fail(r, None, ErrorKind::Timeout, now);
        }
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            if c.req.is_none() || c.deadline > now {
                continue;
            }
            let req = c.req.take().expect("checked above");
            let last = c.last;
            let resolved = c.resolved.take();
            self.in_flight -= 1;
            self.close(idx);
            self.fail(
                req,
                version_of(last.as_ref(), &resolved),
                ErrorKind::Timeout,
                now,
            );
            self.refill();
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(c) = self.conns[idx].take() {
            let _ = self.poller.delete(c.stream.as_raw_fd());
            if c.req.is_some() {
                self.in_flight -= 1;
            }
            self.live -= 1;
            self.free.push(idx);
        }
    }
}

/// The version of a failure without an answer: the version that last answered on its
/// connection (its header, else the resolved version), else the resolved one.
fn version_of<'a>(last: Option<&'a ResponseHead>, resolved: &'a Option<String>) -> Option<&'a str> {
    last.and_then(ResponseHead::version).or(resolved.as_deref())
}

fn token(idx: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | idx as u64
}

fn classify_connect(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    }
}

/// Latency in ns of successful requests (HdrHistogram values: within 0.1 %, capped at the exact
/// maximum; mean and max exact).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyNs {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencyNs {
    fn from_ms(l: Option<LatencySummary>) -> Self {
        let ns = |ms: f64| (ms * 1e6).round() as u64;
        l.map_or_else(LatencyNs::default, |l| LatencyNs {
            count: l.count,
            mean: l.mean_ms * 1e6,
            p50: ns(l.p50_ms),
            p90: ns(l.p90_ms),
            p99: ns(l.p99_ms),
            p999: ns(l.p999_ms),
            max: ns(l.max_ms),
        })
    }
}

/// Counts and latency of one version's answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionSummary {
    pub requests: u64,
    pub ok: u64,
    pub errors: ErrorCounts,
    pub latency_ns: LatencyNs,
}

impl VersionSummary {
    fn new(s: &Stats) -> Self {
        VersionSummary {
            requests: s.sent,
            ok: s.ok,
            errors: s.errors,
            latency_ns: LatencyNs::from_ms(s.latency),
        }
    }
}

/// The one-object summary `sdnbed load --json` prints (and `summary.json` in `--out`).
#[derive(Clone, Debug, Serialize)]
pub struct LoadSummary {
    pub requests: u64,
    pub ok: u64,
    pub errors: ErrorCounts,
    /// Requests sent per second (see [`ScheduleReport::achieved_rate`]).
    pub achieved_rate: f64,
    pub latency_ns: LatencyNs,
    /// Per version that answered (errors without an answer count in the totals only, unless
    /// their connection had been answered before or its version was resolved).
    pub by_version: BTreeMap<String, VersionSummary>,
    pub schedule: ScheduleReport,
    pub duration_s: f64,
    pub elapsed_s: f64,
}

impl LoadSummary {
    /// Summarises a run from its recorder's summary and the generator's schedule report.
    pub fn new(summary: &RunSummary, schedule: &ScheduleReport, elapsed: Duration) -> Self {
        let all = VersionSummary::new(&summary.overall);
        LoadSummary {
            requests: all.requests,
            ok: all.ok,
            errors: all.errors,
            achieved_rate: schedule.achieved_rate,
            latency_ns: all.latency_ns,
            by_version: summary
                .versions
                .iter()
                .map(|(k, s)| (k.clone(), VersionSummary::new(s)))
                .collect(),
            schedule: schedule.clone(),
            duration_s: summary.duration_s,
            elapsed_s: elapsed.as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::units::RequestRate;

    #[test]
    fn urls_split_into_address_host_and_path() {
        let (a, h, p) = parse_url("http://127.0.0.1:8080/x/y?z=1").unwrap();
        assert_eq!(
            (a.to_string().as_str(), h.as_str(), p.as_str()),
            ("127.0.0.1:8080", "127.0.0.1:8080", "/x/y?z=1")
        );
        let (a, _, p) = parse_url("http://127.0.0.1").unwrap();
        assert_eq!((a.port(), p.as_str()), (80, "/"));
        let (a, _, _) = parse_url("http://[::1]:81/").unwrap();
        assert_eq!(a.port(), 81);
        assert!(parse_url("https://127.0.0.1/").is_err());
        assert!(parse_url("http:///").is_err());
    }

    #[test]
    fn mean_rate_weights_steps_by_time() {
        let s = RateSchedule {
            steps: vec![
                (Duration::ZERO, RequestRate(500.0)),
                (Duration::from_secs(30), RequestRate(2000.0)),
            ],
        };
        assert!((mean_rate(&s, Duration::from_secs(60)) - 1250.0).abs() < 1e-9);
        assert!((mean_rate(&s, Duration::from_secs(20)) - 500.0).abs() < 1e-9);
    }
}
