//! The emulator proper: one packet thread that carries every emulated link of a run.
//!
//! Each link has two ends, A and B, each a descriptor on which IP packets, each behind a
//! `virtio_net_hdr` (a TUN device with offloads, see [`gso`]), are read (what that end's node
//! sends into the link) and written (what the link delivers to that node). A TCP super-packet
//! is cut into its segments first, and each segment is a packet from then on. A packet
//! read from end A at `now` is offered to direction A→B's [`LinkDirection`] (the simulator's
//! model, unchanged), which answers with its arrival time or why it is dropped; the packet then
//! waits in one delivery heap shared by all links and is written to end B at its arrival time.
//!
//! Guarantees:
//! - **Same model, same seeds.** Direction A→B draws from the seed given for it (the
//!   simulator's `link/A-B/fwd`), B→A from `…/rev`: the same seed gives the same drop and
//!   jitter sequence for the same packets as in the simulator. Sizes offered to the model are
//!   IP packet lengths (the model's 1500-byte packets are IP packets of a 1500-byte MTU).
//! - **Order.** Deliveries are made in arrival order, ties in the order packets were read; the
//!   model keeps each direction FIFO unless `reorder` is set.
//! - **Timing.** A delivery is never early. A packet's entry time is the kernel's timestamp of
//!   its send into the TUN device ([`EntryTap`]), so the time it waits for the packet thread
//!   to wake up or get a CPU does not count as link delay; only a packet the tap missed is
//!   timed at the `read`. A delivery is late by the time the thread takes to get there: with
//!   the default, [`Timing::Sleep`], it sleeps until [`DEFAULT_SPIN`] before the next delivery
//!   at real-time priority and busy-polls the rest, so that is one loop iteration unless the
//!   timer wakes later than the spin margin. [`Timing`] lists the busy-polling choices and
//!   their cost. The waits are `workload::timer`'s (timerfd with an absolute deadline, 1 ns
//!   slack, spin before the deadline), the one timer of sdnbed's real-time loops.
//! - **Its own CPU.** The thread runs on the CPU that [`super::cpus::Placement`] keeps for it,
//!   where replicas and load generators should not run, at `SCHED_FIFO` priority whenever it
//!   sleeps or a delivery is near.
//! - **Super-packets stay whole when the link keeps them whole.** When every segment of a TCP
//!   super-packet arrives at the same instant (no rate, no jitter: e.g. an unshaped or
//!   delay-only link), it is delivered as the one super-packet it was read as, which the
//!   receiving stack takes in one `write`; the model still counts every segment. With capture
//!   on, the segments are written one by one, as the capture shows them.
//! - **Changes in place.** [`EmuControl::set_params`] and [`EmuControl::set_up`] act on the
//!   models between two packets: queued packets keep their schedule, nothing is lost.
//! - **Capture.** A link with a capture directory gets `<name>.entered.pcap` (every packet read,
//!   dropped or not, at its read time) and `<name>.left.pcap` (every packet delivered, at its
//!   delivery time), both directions in each, `LINKTYPE_RAW`.
//! - **Owned.** Dropping the [`Emulator`] stops and joins the thread and closes the ends.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::linkemu::cpus::Placement;
use crate::linkemu::gso::{self, VNET_HDR_LEN};
use crate::linkemu::pcap::PcapWriter;
use crate::linkemu::tap::EntryTap;
use crate::linkemu::LinkEmuError;
use crate::model::link::{LinkCounters, LinkDirection, LinkParams};
use crate::model::rng::Rng;
use crate::model::time::Instant;
use crate::workload::sys::{self, Event, EventFd, Poller, READABLE};
use crate::workload::timer::{Clock, DeadlineWait, DEFAULT_SPIN};

/// How the packet thread waits for packets and deliveries: accuracy against CPU time. Each
/// choice's cost and error are measured in `bench/linkemu.md`; the default is the one that
/// measured best on a shared 2-CPU machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Timing {
    /// Sleeps until [`DEFAULT_SPIN`] before the next delivery (at real-time priority, so the
    /// wake-up preempts other work) and busy-polls only that stretch. Entry times come from
    /// the tap, so sleeping costs no accuracy there; a timer that wakes later than the spin
    /// margin delivers late. CPU: about the spin margin per delivery (2–3 % of a CPU for a
    /// ping every 1 ms).
    #[default]
    Sleep,
    /// Busy-polls while any packet is in flight, at normal priority except within the spin
    /// margin of a delivery, and sleeps when none is: deliveries do not wait for a timer's
    /// wake-up, but on a CPU shared with other work the poll takes turns with it. CPU: all of
    /// one while packets are in flight (a ping every 100 ms over 2×10 ms: 20 %).
    Ready,
    /// Always busy-polls: one CPU for as long as the emulator runs.
    Spin,
}

impl Timing {
    /// The environment's choice, `SDNBED_LINKEMU_TIMING=sleep|ready|spin` (default `sleep`);
    /// an unknown value is an error naming it.
    pub fn from_env() -> Result<Timing, LinkEmuError> {
        match std::env::var("SDNBED_LINKEMU_TIMING") {
            Err(_) => Ok(Timing::default()),
            Ok(v) => match v.as_str() {
                "ready" => Ok(Timing::Ready),
                "spin" => Ok(Timing::Spin),
                "sleep" => Ok(Timing::Sleep),
                _ => Err(LinkEmuError::Timing(v)),
            },
        }
    }
}

/// One link as the emulator carries it.
#[derive(Clone, Debug)]
pub struct LinkSpec {
    /// `A-B`, as in the simulator's seed names; names the pcap files.
    pub name: String,
    pub params: LinkParams,
    /// Seeds of A→B and B→A.
    pub seeds: [u64; 2],
    /// Where to write this link's pcap files (None: no capture).
    pub capture: Option<PathBuf>,
}

/// One end of a link: a non-blocking descriptor that reads and writes whole IP packets (a TUN
/// device, or anything alike), and the tap that says when each packet read from it entered
/// ([`EntryTap`]; without one, a packet's entry time is when the thread read it).
pub struct End {
    pub fd: OwnedFd,
    pub tap: Option<EntryTap>,
}

impl From<OwnedFd> for End {
    fn from(fd: OwnedFd) -> End {
        End { fd, tap: None }
    }
}

/// Running totals of both directions of one link (A→B, B→A).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkTotals {
    pub name: String,
    pub counters: [LinkCounters; 2],
}

enum Cmd {
    Params(usize, LinkParams),
    Up(usize, bool),
    Add(usize, Box<LinkState>),
    /// Removes a link, then signals that its ends are closed.
    Remove(usize, std::sync::mpsc::Sender<()>),
}

struct Shared {
    stop: AtomicBool,
    cmds: Mutex<Vec<Cmd>>,
    totals: Mutex<Vec<LinkTotals>>,
    wake: EventFd,
}

impl Shared {
    fn wake(&self) {
        self.wake.notify();
    }
}

/// The running emulator: owns its packet thread and the link ends.
pub struct Emulator {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<(), LinkEmuError>>>,
}

/// A handle to change links and read counters while the emulator runs.
#[derive(Clone)]
pub struct EmuControl {
    shared: Arc<Shared>,
}

fn os(what: &str) -> impl FnOnce(io::Error) -> LinkEmuError + '_ {
    move |source| LinkEmuError::Io {
        what: what.to_string(),
        source,
    }
}

impl Emulator {
    /// Starts the packet thread for `links`, each with its two ends (A, B).
    pub fn start(
        links: Vec<(LinkSpec, [End; 2])>,
        timing: Timing,
    ) -> Result<Emulator, LinkEmuError> {
        let wake = EventFd::new().map_err(os("eventfd"))?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            cmds: Mutex::new(Vec::new()),
            totals: Mutex::new(
                links
                    .iter()
                    .map(|(s, _)| LinkTotals {
                        name: s.name.clone(),
                        counters: Default::default(),
                    })
                    .collect(),
            ),
            wake,
        });
        let mut state = Vec::with_capacity(links.len());
        for (spec, fds) in links {
            state.push(Some(LinkState::new(spec, fds)?));
        }
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sdnbed-linkemu".into())
            .spawn(move || PacketLoop::new(state, sh, timing)?.run())
            .map_err(os("spawning the emulator thread"))?;
        Ok(Emulator {
            shared,
            thread: Some(thread),
        })
    }

    pub fn control(&self) -> EmuControl {
        EmuControl {
            shared: self.shared.clone(),
        }
    }

    /// Stops the thread, flushes captures and closes the link ends; reports a failure of the
    /// packet thread.
    pub fn stop(mut self) -> Result<(), LinkEmuError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), LinkEmuError> {
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        t.join().unwrap_or(Err(LinkEmuError::Panicked))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            eprintln!("sdnbed: link emulator: {e}");
        }
    }
}

impl EmuControl {
    /// Adds a link while the emulator runs (a replica's link); returns its index. Its packets
    /// are read from the thread's next loop iteration on.
    pub fn add_link(&self, spec: LinkSpec, ends: [End; 2]) -> Result<usize, LinkEmuError> {
        let name = spec.name.clone();
        let state = LinkState::new(spec, ends)?;
        let mut cmds = self.shared.cmds.lock().unwrap_or_else(|p| p.into_inner());
        let mut totals = self.shared.totals.lock().unwrap_or_else(|p| p.into_inner());
        let idx = totals.len();
        totals.push(LinkTotals {
            name,
            counters: Default::default(),
        });
        cmds.push(Cmd::Add(idx, Box::new(state)));
        drop((totals, cmds));
        self.shared.wake();
        Ok(idx)
    }

    /// Removes link `link` (its replica is gone): packets still queued on it are dropped, its
    /// ends are closed (their TUN devices are gone when this returns, so their names can be
    /// used again), its counters stay in [`EmuControl::totals`] as they were.
    pub fn remove_link(&self, link: usize) {
        if self.shared.stop.load(Ordering::SeqCst) {
            // Stopped: every end is closed already.
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        self.push(Cmd::Remove(link, tx));
        // The thread answers at its next loop iteration; the timeout only guards against a
        // thread that stopped between the check above and the command.
        let _ = rx.recv_timeout(std::time::Duration::from_secs(5));
    }

    /// `set-link`: new parameters for both directions of link `link` (index in the order given
    /// to [`Emulator::start`]); takes effect before the next packet the thread reads.
    pub fn set_params(&self, link: usize, params: LinkParams) {
        self.push(Cmd::Params(link, params));
    }

    /// `link-up` / `link-down` for both directions.
    pub fn set_up(&self, link: usize, up: bool) {
        self.push(Cmd::Up(link, up));
    }

    fn push(&self, c: Cmd) {
        self.shared
            .cmds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(c);
        self.shared.wake();
    }

    /// Counters of every link, as of the thread's last loop iteration.
    pub fn totals(&self) -> Vec<LinkTotals> {
        self.shared
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

struct Capture {
    entered: PcapWriter<BufWriter<File>>,
    left: PcapWriter<BufWriter<File>>,
}

impl Capture {
    fn create(dir: &Path, name: &str) -> Result<Capture, LinkEmuError> {
        let open = |suffix: &str| -> Result<PcapWriter<BufWriter<File>>, LinkEmuError> {
            let path = dir.join(format!("{name}.{suffix}.pcap"));
            let what = format!("creating {}", path.display());
            File::create(&path)
                .and_then(|f| PcapWriter::new(BufWriter::new(f)))
                .map_err(|source| LinkEmuError::Io { what, source })
        };
        Ok(Capture {
            entered: open("entered")?,
            left: open("left")?,
        })
    }
}

struct LinkState {
    /// Index 0: A→B (read at end A, written at end B); 1: B→A.
    dirs: [LinkDirection; 2],
    fds: [OwnedFd; 2],
    taps: [Option<EntryTap>; 2],
    /// The entry time of the last packet read at each end (entry times never go back).
    last_entry: [Instant; 2],
    dead: [bool; 2],
    capture: Option<Capture>,
}

impl LinkState {
    fn new(spec: LinkSpec, ends: [End; 2]) -> Result<LinkState, LinkEmuError> {
        let [a, b] = ends;
        let capture = match &spec.capture {
            Some(dir) => Some(Capture::create(dir, &spec.name)?),
            None => None,
        };
        Ok(LinkState {
            dirs: [
                LinkDirection::new(spec.params.clone(), Rng::new(spec.seeds[0])),
                LinkDirection::new(spec.params, Rng::new(spec.seeds[1])),
            ],
            fds: [a.fd, b.fd],
            taps: [a.tap, b.tap],
            last_entry: [Instant::ZERO; 2],
            dead: [false; 2],
            capture,
        })
    }

    fn flush(&mut self) -> Result<(), LinkEmuError> {
        if let Some(c) = &mut self.capture {
            c.entered.flush().map_err(os("writing a capture"))?;
            c.left.flush().map_err(os("writing a capture"))?;
        }
        Ok(())
    }
}

/// A packet on its way: ordered by arrival, then by the order it was read.
struct Pending {
    at: Instant,
    seq: u64,
    link: u32,
    /// The end it is written to.
    to: u8,
    buf: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The wake-up eventfd's token (the deadline wait's own is `u64::MAX`).
const TOKEN_WAKE: u64 = u64::MAX - 1;
/// Packets read from one end per loop iteration before deliveries are looked at again.
const READ_BATCH: usize = 64;
/// Largest frame read: a TSO super-packet of up to 64 KiB and its `virtio_net_hdr`.
const READ_BUF: usize = 65_536 + VNET_HDR_LEN;

struct PacketLoop {
    /// By index; None once removed.
    links: Vec<Option<LinkState>>,
    shared: Arc<Shared>,
    clock: Clock,
    /// Wall-clock nanoseconds since the epoch at the clock's origin, for pcap timestamps.
    unix_origin_ns: u64,
    timing: Timing,
    /// Whether the thread runs at real-time priority now (see [`PacketLoop::urgent`]).
    realtime: bool,
    poller: Poller,
    wait: DeadlineWait,
    heap: BinaryHeap<Reverse<Pending>>,
    pool: Vec<Vec<u8>>,
    seq: u64,
    rbuf: Vec<u8>,
    /// The packets made of the frame just read, and when the model says each arrives (None:
    /// dropped); both reused between reads.
    segments: Vec<Vec<u8>>,
    arrivals: Vec<Option<Instant>>,
}

impl PacketLoop {
    fn new(
        links: Vec<Option<LinkState>>,
        shared: Arc<Shared>,
        timing: Timing,
    ) -> Result<PacketLoop, LinkEmuError> {
        // Best effort: without a CPU of its own the thread still runs, only less punctually.
        let _ = Placement::of_this_process().and_then(|p| p.pin_emulator_thread());
        let poller = Poller::new(64).map_err(os("epoll_create1"))?;
        let wait = DeadlineWait::new(&poller, DEFAULT_SPIN).map_err(os("timerfd_create"))?;
        let clock = Clock::start_now();
        let lp = PacketLoop {
            unix_origin_ns: sys::realtime_ns().saturating_sub(clock.now().as_nanos()),
            clock,
            timing,
            realtime: false,
            poller,
            wait,
            links,
            shared,
            heap: BinaryHeap::new(),
            pool: Vec::new(),
            seq: 0,
            rbuf: vec![0; READ_BUF],
            segments: Vec::new(),
            arrivals: Vec::new(),
        };
        lp.poller
            .add(lp.shared.wake.raw(), TOKEN_WAKE, READABLE)
            .map_err(os("epoll_ctl"))?;
        for (i, l) in lp.links.iter().enumerate() {
            if let Some(l) = l {
                lp.register(i, l)?;
            }
        }
        Ok(lp)
    }

    fn register(&self, i: usize, l: &LinkState) -> Result<(), LinkEmuError> {
        for (e, fd) in l.fds.iter().enumerate() {
            self.poller
                .add(fd.as_raw_fd(), (i * 2 + e) as u64, READABLE)
                .map_err(os("epoll_ctl"))?;
        }
        Ok(())
    }

    fn unregister(&self, fd: RawFd) {
        // An error means it was not in the set.
        let _ = self.poller.delete(fd);
    }

    /// Until when the next wait may sleep: `None` for as long as I/O takes, a time already
    /// past for a busy poll.
    fn deadline(&self) -> Option<Instant> {
        let next = self.heap.peek().map(|Reverse(p)| p.at);
        match (self.timing, next) {
            (Timing::Spin, _) | (Timing::Ready, Some(_)) => Some(Instant::ZERO),
            (Timing::Sleep, next) | (Timing::Ready, next @ None) => next,
        }
    }

    /// Whether the thread needs its CPU before anything else: when it is about to sleep (its
    /// wake-up should preempt whatever runs) or a delivery is due within the spin margin. A
    /// busy poll far from any deadline runs at normal priority instead, so that a process that
    /// shares the CPU (a `ping` started by hand, say) gets it at once and not only when the
    /// kernel's real-time throttling steps in.
    fn urgent(&self) -> bool {
        match (self.heap.peek(), self.timing) {
            (None, timing) => timing != Timing::Spin,
            (Some(_), Timing::Sleep) => true,
            (Some(Reverse(p)), _) => p.at.saturating_since(self.clock.now()) <= DEFAULT_SPIN,
        }
    }

    fn run(mut self) -> Result<(), LinkEmuError> {
        let mut events: Vec<Event> = Vec::with_capacity(64);
        let r = loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                break Ok(());
            }
            self.apply_cmds()?;
            self.deliver_due();
            let urgent = self.urgent();
            if urgent != self.realtime {
                set_realtime(urgent);
                self.realtime = urgent;
            }
            let deadline = self.deadline();
            if let Err(e) = self
                .wait
                .wait(&mut self.poller, &self.clock, deadline, &mut events)
            {
                break Err(os("epoll_wait")(e));
            }
            let mut read_any = false;
            for ev in &events {
                match ev.token {
                    TOKEN_WAKE => self.shared.wake.clear(),
                    t => {
                        self.read_end((t / 2) as usize, (t % 2) as usize)?;
                        read_any = true;
                    }
                }
            }
            if read_any {
                self.publish();
            }
        };
        for l in self.links.iter_mut().flatten() {
            l.flush()?;
        }
        self.publish();
        r
    }

    fn apply_cmds(&mut self) -> Result<(), LinkEmuError> {
        let cmds = std::mem::take(&mut *self.shared.cmds.lock().unwrap_or_else(|p| p.into_inner()));
        for c in cmds {
            match c {
                Cmd::Params(i, p) => {
                    if let Some(Some(l)) = self.links.get_mut(i) {
                        for d in &mut l.dirs {
                            d.set_params(p.clone());
                        }
                    }
                }
                Cmd::Up(i, up) => {
                    if let Some(Some(l)) = self.links.get_mut(i) {
                        for d in &mut l.dirs {
                            d.set_up(up);
                        }
                    }
                }
                Cmd::Add(i, state) => {
                    self.register(i, &state)?;
                    if self.links.len() <= i {
                        self.links.resize_with(i + 1, || None);
                    }
                    self.links[i] = Some(*state);
                }
                Cmd::Remove(i, done) => {
                    self.publish();
                    if let Some(mut l) = self.links.get_mut(i).and_then(Option::take) {
                        for fd in &l.fds {
                            self.unregister(fd.as_raw_fd());
                        }
                        l.flush()?;
                    }
                    let _ = done.send(());
                }
            }
        }
        Ok(())
    }

    fn publish(&self) {
        let mut t = self.shared.totals.lock().unwrap_or_else(|p| p.into_inner());
        for (tot, l) in t.iter_mut().zip(&self.links) {
            if let Some(l) = l {
                tot.counters = [l.dirs[0].counters(), l.dirs[1].counters()];
            }
        }
    }

    /// Writes every packet whose arrival time has come.
    fn deliver_due(&mut self) {
        let mut now = self.clock.now();
        while let Some(Reverse(p)) = self.heap.peek() {
            if p.at > now {
                now = self.clock.now();
                if p.at > now {
                    break;
                }
            }
            let Some(Reverse(p)) = self.heap.pop() else {
                break;
            };
            let Some(Some(l)) = self.links.get_mut(p.link as usize) else {
                // Its link was removed: the packet goes with it.
                self.pool.push(p.buf);
                continue;
            };
            let to = p.to as usize;
            if !l.dead[to] {
                // SAFETY: writes the packet's bytes to the end's descriptor. A TUN write does
                // not block; a failure (device gone) loses the packet, as a dead device would.
                unsafe { libc::write(l.fds[to].as_raw_fd(), p.buf.as_ptr().cast(), p.buf.len()) };
            }
            if let Some(c) = &mut l.capture {
                let ts = self.unix_origin_ns + self.clock.now().as_nanos();
                if c.left.write(ts, gso::packet(&p.buf)).is_err() {
                    l.capture = None;
                }
            }
            self.pool.push(p.buf);
        }
    }

    /// Reads up to a batch of packets from end `end` of link `li` and offers each to its
    /// direction's model.
    fn read_end(&mut self, li: usize, end: usize) -> Result<(), LinkEmuError> {
        for _ in 0..READ_BATCH {
            // The link may have been removed by a command earlier in this iteration.
            let Some(Some(l)) = self.links.get(li) else {
                return Ok(());
            };
            let fd = l.fds[end].as_raw_fd();
            // Without a tap (or a packet it missed) the entry time is taken before the read: a
            // packet the read returns was queued before the call (the descriptor is
            // non-blocking), so it entered no later than this; how much earlier is how long it
            // waited for the thread.
            let read_at = self.clock.now();
            // SAFETY: reads at most rbuf.len() bytes into rbuf.
            let n = unsafe { libc::read(fd, self.rbuf.as_mut_ptr().cast(), self.rbuf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        // The device is gone (its namespace was deleted): stop watching it.
                        self.unregister(fd);
                        if let Some(Some(l)) = self.links.get_mut(li) {
                            l.dead[end] = true;
                        }
                        return Ok(());
                    }
                }
            }
            let frame = &self.rbuf[..n as usize];
            let Some(Some(l)) = self.links.get_mut(li) else {
                return Ok(());
            };
            let tapped = l.taps[end]
                .as_mut()
                .and_then(|t| t.entered(gso::packet(frame)));
            let now = match tapped {
                Some(real_ns) => self.clock.from_realtime(real_ns).min(read_at),
                None => read_at,
            }
            .max(l.last_entry[end]);
            l.last_entry[end] = now;
            // A TSO super-packet becomes the segments a real link carries (see `gso`).
            gso::split(frame, &mut self.pool, &mut self.segments);
            let unix_now = self.unix_origin_ns + now.as_nanos();
            self.arrivals.clear();
            for buf in &self.segments {
                let pkt = gso::packet(buf);
                if let Some(c) = &mut l.capture {
                    if c.entered.write(unix_now, pkt).is_err() {
                        l.capture = None;
                    }
                }
                let size = ip_len(pkt).unwrap_or(pkt.len()) as u64;
                self.arrivals.push(l.dirs[end].send(now, size).ok());
            }
            let to = (1 - end) as u8;
            let link = li as u32;
            // The segments of a super-packet that all arrive at one instant go as the
            // super-packet: the same bytes at the same time, in one write.
            let whole = match self.arrivals.as_slice() {
                [Some(at), rest @ ..] if !rest.is_empty() && l.capture.is_none() => {
                    rest.iter().all(|a| *a == Some(*at)).then_some(*at)
                }
                _ => None,
            };
            if let Some(at) = whole {
                self.pool.append(&mut self.segments);
                let mut buf = self.pool.pop().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(&self.rbuf[..n as usize]);
                self.segments.push(buf);
                self.arrivals.clear();
                self.arrivals.push(Some(at));
            }
            for (buf, at) in self.segments.drain(..).zip(&self.arrivals) {
                match *at {
                    Some(at) => {
                        self.seq += 1;
                        let seq = self.seq;
                        self.heap.push(Reverse(Pending {
                            at,
                            seq,
                            link,
                            to,
                            buf,
                        }));
                    }
                    None => self.pool.push(buf),
                }
            }
        }
        Ok(())
    }
}

/// Real-time priority for the packet thread (`SCHED_FIFO` 50, as `chrt -f 50`) when `on`, so
/// that other processes on a busy machine do not delay a wake-up or a delivery by a scheduler
/// tick; normal priority (`SCHED_OTHER`) when not. If refused (unprivileged), the thread stays
/// at normal priority. The kernel's real-time throttling leaves others 5 % of the CPU in any
/// case.
fn set_realtime(on: bool) {
    let (policy, prio) = if on {
        (libc::SCHED_FIFO, 50)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let p = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: sets the calling thread's policy with a valid sched_param.
    unsafe { libc::sched_setscheduler(0, policy, &p) };
}

/// The total length an IPv4 or IPv6 header states (the bytes the link carries).
fn ip_len(p: &[u8]) -> Option<usize> {
    match p.first()? >> 4 {
        4 if p.len() >= 4 => Some(usize::from(u16::from_be_bytes([p[2], p[3]]))),
        6 if p.len() >= 6 => Some(40 + usize::from(u16::from_be_bytes([p[4], p[5]]))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::time::Duration;
    use std::os::fd::FromRawFd;

    /// A connected pair of SOCK_SEQPACKET sockets stands in for a TUN end: whole packets.
    fn pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two descriptors we then own.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        // SAFETY: both are ours.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn ipv4(len: u16, tag: u8) -> Vec<u8> {
        let mut p = vec![0u8; usize::from(len)];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p[19] = tag;
        p
    }

    /// `p` as a TUN end carries it: behind an empty `virtio_net_hdr`.
    fn framed(p: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN];
        f.extend_from_slice(p);
        f
    }

    fn recv_blocking(fd: &OwnedFd, timeout_ms: i32) -> Option<Vec<u8>> {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; then a read into a buffer we own.
        unsafe {
            if libc::poll(&mut pfd, 1, timeout_ms) != 1 {
                return None;
            }
            let mut b = vec![0u8; 2048];
            let n = libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), b.len());
            b.truncate(n.max(0) as usize);
            Some(b)
        }
    }

    #[test]
    fn delays_and_counts_packets_in_both_directions() {
        let (a_node, a_emu) = pair();
        let (b_node, b_emu) = pair();
        let dir = tempfile::tempdir().unwrap();
        let emu = Emulator::start(
            vec![(
                LinkSpec {
                    name: "a-b".into(),
                    params: LinkParams {
                        delay: Duration::from_millis(5),
                        ..Default::default()
                    },
                    seeds: [1, 2],
                    capture: Some(dir.path().to_path_buf()),
                },
                [a_emu.into(), b_emu.into()],
            )],
            Timing::default(),
        )
        .unwrap();
        let ctl = emu.control();
        let t0 = std::time::Instant::now();
        let p = framed(&ipv4(100, 7));
        // SAFETY: a write of our buffer to our socket.
        unsafe { libc::write(a_node.as_raw_fd(), p.as_ptr().cast(), p.len()) };
        let got = recv_blocking(&b_node, 1000).expect("delivered");
        let took = t0.elapsed();
        assert_eq!(got, p);
        // Never early; the upper bound only catches a packet that missed its timer (the machine
        // is shared, so preemption is allowed for).
        assert!(took >= std::time::Duration::from_millis(5), "{took:?}");
        assert!(took < std::time::Duration::from_millis(50), "{took:?}");
        let q = framed(&ipv4(60, 9));
        // SAFETY: as above.
        unsafe { libc::write(b_node.as_raw_fd(), q.as_ptr().cast(), q.len()) };
        assert_eq!(recv_blocking(&a_node, 1000).unwrap(), q);
        // A link set down drops at the model, counted as such.
        ctl.set_up(0, false);
        std::thread::sleep(std::time::Duration::from_millis(5));
        // SAFETY: as above.
        unsafe { libc::write(a_node.as_raw_fd(), p.as_ptr().cast(), p.len()) };
        assert_eq!(recv_blocking(&b_node, 50), None);
        let t = ctl.totals();
        assert_eq!(t[0].counters[0].packets, 1);
        assert_eq!(t[0].counters[0].bytes, 100);
        assert_eq!(t[0].counters[0].dropped_down, 1);
        assert_eq!(t[0].counters[1].packets, 1);
        emu.stop().unwrap();
        let (_, entered) = crate::linkemu::pcap::read_all(
            File::open(dir.path().join("a-b.entered.pcap")).unwrap(),
        )
        .unwrap();
        let (_, left) =
            crate::linkemu::pcap::read_all(File::open(dir.path().join("a-b.left.pcap")).unwrap())
                .unwrap();
        assert_eq!(entered.len(), 3);
        assert_eq!(left.len(), 2);
        assert_eq!(
            left[0].data,
            p[VNET_HDR_LEN..],
            "captured without the header"
        );
        // The pcap shows the link's delay: at least 5 ms between entering and leaving.
        let d = left[0].unix_us - entered[0].unix_us;
        assert!((5000..50_000).contains(&d), "{d}");
    }

    #[test]
    fn ip_len_reads_the_header() {
        assert_eq!(ip_len(&ipv4(1500, 0)), Some(1500));
        let mut v6 = vec![0x60, 0, 0, 0, 0x05, 0xb4];
        v6.resize(40, 0);
        assert_eq!(ip_len(&v6), Some(1500));
        assert_eq!(ip_len(&[]), None);
    }
}
