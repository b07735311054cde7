//! A sans-IO model of one direction of a Linux TCP connection: a [`Sender`] (congestion control,
//! loss recovery, retransmission timer) and a [`Receiver`] (in-order delivery, SACK, delayed
//! ACKs). Time is an argument; neither touches a clock or a socket. The simulator drives one
//! pair per direction of every connection, with segments of one MSS on its links.
//!
//! The unit of the congestion window is a segment, as in Linux (`snd_cwnd`); sequence numbers
//! are bytes of the stream, starting at 0 after the handshake.
//!
//! # What is modelled (Linux 6.x defaults)
//!
//! - **Initial window** of 10 segments (RFC 6928), and **slow start after idle**
//!   (`tcp_slow_start_after_idle = 1`): a sender that has had nothing in flight for longer than
//!   its RTO halves its window once per RTO of idleness, down to the initial window, before it
//!   sends again (`tcp_cwnd_restart`). Kept-alive connections that idle between requests start
//!   each response from about 10 segments, as on a real host.
//! - **Congestion control**: CUBIC (the default, `tcp_cubic.c` with fast convergence and the
//!   Reno-friendly region, β = 717/1024, C = 0.4) or NewReno, selectable. The window grows
//!   only while the sender is window-limited (`tcp_is_cwnd_limited`: in slow start while
//!   `cwnd < 2 × max_packets_out`).
//! - **Loss detection with SACK** (`tcp_sack = 1`, three blocks per ACK as with timestamps):
//!   a segment is lost when three SACKed segments lie above it (RFC 6675's DupThresh, the
//!   "three duplicate ACKs"), or by RACK (`tcp_recovery = 1`, RFC 8985): when a segment sent
//!   later has been delivered and the segment's own time (its RTT plus a reordering window of
//!   min_rtt/4, zero once in recovery or past DupThresh) has passed.
//! - **Fast recovery** with Proportional Rate Reduction (RFC 6937, `tcp_cwnd_reduction`):
//!   `ssthresh` from the congestion control on entry, the window brought down to it over one
//!   round trip, recovery ends when the recovery point is acknowledged.
//! - **Tail-loss probe** (`tcp_early_retrans = 3`, RFC 8985): with nothing SACKed, a probe
//!   after 2·SRTT (+2 ms, or +200 ms with a single segment in flight), capped by the RTO; it
//!   sends new data if there is any, else the last segment again. A probe that repairs a loss
//!   reduces the window as Linux's `tcp_process_tlp_ack` does.
//! - **Retransmission timeout** as Linux computes it: RFC 6298's SRTT and RTTVAR (Karn's rule:
//!   no sample from a retransmitted segment), but `RTO = SRTT + max(4·RTTVAR, 200 ms)` (Linux
//!   applies its minimum to the variance term, so an RTO is 200 ms plus the RTT), 1 s before
//!   the first sample, doubled on each expiry (exponential backoff) up to 120 s. On expiry the
//!   window collapses to one segment, `ssthresh` comes from the congestion control, every
//!   unSACKed segment is marked lost and retransmitted in slow start.
//! - **Delayed ACKs** as Linux does them: an ACK for every second full segment, otherwise after
//!   the 40 ms delayed-ACK timer (`TCP_ATO_MIN`); *quick-ack mode* (every segment acknowledged
//!   at once, up to 16) at the start of a connection, after an idle gap longer than the RTO and
//!   after out-of-order data; *ping-pong mode* (no quick acks, the ACK waits to ride on the
//!   reply) once this end answers within 40 ms of receiving, left when a delayed ACK has to
//!   fire on its own. Out-of-order, duplicate and hole-filling segments are acknowledged at
//!   once. Data sent by an end carries its pending ACK (piggybacking).
//! - **Receive window**: the sender keeps at most `rwnd` bytes beyond the cumulative ACK. The
//!   receiving application reads at once, so the window stays at its initial value (64 KiB,
//!   Linux's initial advertised window with the default `tcp_rmem`).
//! - **Handshake**: [`syn_rto`] gives the SYN (and SYN-ACK) retransmission timeout, 1 s doubling
//!   (`TCP_TIMEOUT_INIT`); [`Sender::with_handshake_rtt`] seeds SRTT with the handshake's round
//!   trip as Linux does (none if the SYN was retransmitted, Karn). The simulator carries the SYN
//!   and SYN-ACK itself, because steering happens to them on the way.
//!
//! # What is not, and why it does (not) matter here
//!
//! - **Timestamps** (RFC 7323): they only refine RTT samples of retransmitted segments and
//!   protect against wrapped sequence numbers. Karn's rule gives the same RTO on loss-free
//!   stretches; after a retransmission our RTO rests on older samples for one round trip.
//!   Negligible at the loss rates and RTTs scenarios use.
//! - **Pacing** (`fq`/internal pacing): Linux paces only with `fq` or with a congestion control
//!   that asks for it (BBR); CUBIC over the default qdisc sends bursts, as modelled.
//! - **HyStart** (CUBIC's early slow-start exit): it acts only at windows of 16 segments and
//!   more and on delay increases from queueing; short request/response flows never reach it,
//!   long bulk flows would leave slow start somewhat later here than on Linux.
//! - **F-RTO and DSACK-based undo**: spurious retransmissions (there is no reordering on our
//!   FIFO links) are rare, so undoing a window reduction hardly ever happens on Linux either.
//! - **BBR**: a host configured for BBR (`net.ipv4.tcp_congestion_control = bbr`) paces and
//!   does not restart slow start after idle; compare against netns with CUBIC.
//! - **Receive-buffer autotuning, window scaling limits, Nagle, autocorking, TSO/GSO**: the
//!   application writes whole messages and reads at once, so none of them changes when a byte
//!   arrives; TSO only groups segments inside the host.
//! - **Zero-window probes, keep-alive probes, FIN/RST handshakes**: connection opening,
//!   refusal, reset and close are the simulator's (one packet each).

use std::collections::VecDeque;

use crate::model::time::{Duration, Instant};

/// Congestion control of a sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CongestionControl {
    /// Linux's default (`tcp_cubic.c`).
    #[default]
    Cubic,
    /// RFC 5681/6582 (`reno` in Linux).
    NewReno,
}

/// Parameters of a connection; [`TcpConfig::default`] is Linux's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TcpConfig {
    pub cc: CongestionControl,
    /// Payload bytes per segment.
    pub mss: u32,
    /// Initial congestion window in segments.
    pub initial_window: u32,
    pub min_rto: Duration,
    pub max_rto: Duration,
    /// RTO before any RTT sample (and the SYN's).
    pub initial_rto: Duration,
    /// Delayed-ACK timer.
    pub delack: Duration,
    /// Most quick ACKs in a row.
    pub max_quickacks: u32,
    /// The receiver's window in bytes.
    pub rwnd: u64,
    /// SACKed segments above a hole that mark it lost.
    pub dupthresh: u32,
    /// Tail-loss probes.
    pub tlp: bool,
    /// Time-based loss detection (RACK).
    pub rack: bool,
    pub slow_start_after_idle: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            cc: CongestionControl::Cubic,
            mss: 1460,
            initial_window: 10,
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            initial_rto: Duration::from_secs(1),
            delack: Duration::from_millis(40),
            max_quickacks: 16,
            rwnd: 65_535,
            dupthresh: 3,
            tlp: true,
            rack: true,
            slow_start_after_idle: true,
        }
    }
}

/// Retransmission timeout of the `attempt`-th retransmission of a SYN or SYN-ACK (1 s, 2 s, …).
pub fn syn_rto(cfg: &TcpConfig, attempt: u32) -> Duration {
    cfg.initial_rto.saturating_mul(1u64 << attempt.min(16))
}

/// A segment the sender puts on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub seq: u64,
    pub len: u32,
    pub retransmit: bool,
}

/// What an ACK says: the cumulative ACK and up to three SACK blocks, most recent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ack {
    pub ack: u64,
    pub sack: [(u64, u64); 3],
    pub nsack: u8,
}

impl Ack {
    pub fn blocks(&self) -> &[(u64, u64)] {
        &self.sack[..self.nsack as usize]
    }
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    start: u64,
    end: u64,
    /// Last transmission.
    sent_at: Instant,
    retransmitted: bool,
    sacked: bool,
    /// Marked lost, not yet retransmitted.
    lost: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CaState {
    Open,
    /// Fast recovery until `high` is acknowledged.
    Recovery {
        high: u64,
    },
    /// After an RTO, until `high` is acknowledged.
    Loss {
        high: u64,
    },
}

#[derive(Clone, Copy, Debug, Default)]
struct Cubic {
    last_max_cwnd: f64,
    epoch_start: Option<Instant>,
    k: f64,
    origin: f64,
    ack_cnt: u32,
    tcp_cwnd: u32,
}

const CUBIC_BETA: f64 = 717.0 / 1024.0;
const CUBIC_C: f64 = 0.4;

/// The sending half: the stream the application wrote, what is in flight, the window and the
/// timers.
#[derive(Clone, Debug)]
pub struct Sender {
    cfg: TcpConfig,
    una: u64,
    nxt: u64,
    written: u64,
    segs: VecDeque<Sent>,
    cwnd: u32,
    ssthresh: u32,
    cwnd_cnt: u32,
    cubic: Cubic,
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Duration,
    rto: Duration,
    backoff: u32,
    rto_at: Option<Instant>,
    tlp_at: Option<Instant>,
    rack_at: Option<Instant>,
    /// Sequence end of an outstanding probe, and whether it was a retransmission.
    tlp_high: Option<(u64, bool)>,
    state: CaState,
    prior_cwnd: u32,
    prr_delivered: u32,
    prr_out: u32,
    /// Newest (transmission time, end sequence) among delivered segments, and that segment's
    /// RTT (RACK; the sequence breaks ties between segments sent at the same instant).
    rack_sent: (Instant, u64),
    rack_rtt: Duration,
    last_send: Option<Instant>,
    max_packets_out: u32,
    cwnd_limited: bool,
    cwnd_usage_seq: u64,
    /// Segments sent by the current `poll_transmit` burst.
    burst: u32,
    /// A probe may go one segment beyond the window.
    force_one: bool,
}

impl Sender {
    pub fn new(cfg: TcpConfig) -> Sender {
        Sender {
            cfg,
            una: 0,
            nxt: 0,
            written: 0,
            segs: VecDeque::new(),
            cwnd: cfg.initial_window,
            ssthresh: u32::MAX,
            cwnd_cnt: 0,
            cubic: Cubic::default(),
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: Duration::MAX,
            rto: cfg.initial_rto,
            backoff: 0,
            rto_at: None,
            tlp_at: None,
            rack_at: None,
            tlp_high: None,
            state: CaState::Open,
            prior_cwnd: 0,
            prr_delivered: 0,
            prr_out: 0,
            rack_sent: (Instant::ZERO, 0),
            rack_rtt: Duration::ZERO,
            last_send: None,
            max_packets_out: 0,
            cwnd_limited: false,
            cwnd_usage_seq: 0,
            burst: 0,
            force_one: false,
        }
    }

    /// A sender whose SRTT starts from the handshake's round trip (None: the SYN or SYN-ACK was
    /// retransmitted, so there is no valid sample).
    pub fn with_handshake_rtt(cfg: TcpConfig, rtt: Option<Duration>) -> Sender {
        let mut s = Sender::new(cfg);
        if let Some(r) = rtt {
            s.rtt_sample(r);
        }
        s
    }

    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }
    pub fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    pub fn rto(&self) -> Duration {
        self.rto
    }
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
    /// Bytes acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.una
    }
    pub fn in_recovery(&self) -> bool {
        !matches!(self.state, CaState::Open)
    }

    /// The application writes `bytes` more.
    pub fn write(&mut self, bytes: u64) {
        self.written += bytes;
    }

    /// Bytes the application has written so far (the stream's end).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Segments in the network by RFC 6675's estimate: sent, neither SACKed nor marked lost.
    fn in_flight(&self) -> u32 {
        self.segs.iter().filter(|s| !s.sacked && !s.lost).count() as u32
    }

    fn rtt_sample(&mut self, r: Duration) {
        self.min_rtt = self.min_rtt.min(r);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = Duration::from_nanos(r.as_nanos() / 2);
            }
            Some(s) => {
                let diff = s.as_nanos().abs_diff(r.as_nanos());
                self.rttvar = Duration::from_nanos((3 * self.rttvar.as_nanos() + diff) / 4);
                self.srtt = Some(Duration::from_nanos((7 * s.as_nanos() + r.as_nanos()) / 8));
            }
        }
        let var = self.rttvar.saturating_mul(4).max(self.cfg.min_rto);
        self.rto = (self.srtt.expect("set above") + var).min(self.cfg.max_rto);
    }

    fn backed_off_rto(&self) -> Duration {
        self.rto
            .saturating_mul(1u64 << self.backoff.min(16))
            .min(self.cfg.max_rto)
    }

    /// The ACK `a` arrives at `now`.
    pub fn on_ack(&mut self, now: Instant, a: &Ack) {
        if a.ack > self.nxt {
            return; // acknowledges what was never sent (a stale connection's): ignore
        }
        let prior_in_flight = self.in_flight();
        let mut delivered = 0u32;
        // RTT samples as tcp_clean_rtx_queue takes them: from the oldest newly acknowledged
        // segment never retransmitted (none if a retransmitted one is among them, Karn), else
        // from the oldest newly SACKed one; RACK and min_rtt use the newest delivered.
        let mut oldest_acked: Option<Instant> = None;
        let mut retx_acked = false;
        let mut oldest_sacked: Option<Instant> = None;
        let mut newest: Option<Sent> = None;
        let note = |s: &Sent, newest: &mut Option<Sent>| {
            if newest.is_none_or(|n| (s.sent_at, s.end) >= (n.sent_at, n.end)) {
                *newest = Some(*s);
            }
        };
        let advanced = a.ack > self.una;
        // Cumulatively acknowledged segments leave the scoreboard.
        while let Some(s) = self.segs.front() {
            if s.end > a.ack {
                break;
            }
            let s = self.segs.pop_front().expect("front exists");
            if !s.sacked {
                delivered += 1;
                note(&s, &mut newest);
                if s.retransmitted {
                    retx_acked = true;
                } else if oldest_acked.is_none() {
                    oldest_acked = Some(s.sent_at);
                }
            }
        }
        if advanced {
            self.una = a.ack;
            if let Some(s) = self.segs.front_mut() {
                // A partially acknowledged segment (never with whole-segment sends): trim it.
                s.start = s.start.max(a.ack);
            }
        }
        for &(l, r) in a.blocks() {
            for s in self.segs.iter_mut() {
                if s.start >= r {
                    break;
                }
                if !s.sacked && s.start >= l && s.end <= r {
                    s.sacked = true;
                    s.lost = false;
                    delivered += 1;
                    note(s, &mut newest);
                    if !s.retransmitted {
                        oldest_sacked = Some(oldest_sacked.map_or(s.sent_at, |o| o.min(s.sent_at)));
                    }
                }
            }
        }
        let sample = match (oldest_acked, retx_acked) {
            (Some(t), false) => Some(t),
            _ => oldest_sacked,
        };
        if let Some(t) = sample {
            self.rtt_sample(now.saturating_since(t));
        }
        if let Some(n) = newest {
            let rtt = now.saturating_since(n.sent_at);
            if !n.retransmitted {
                self.min_rtt = self.min_rtt.min(rtt);
            }
            if (n.sent_at, n.end) >= self.rack_sent {
                self.rack_sent = (n.sent_at, n.end);
                self.rack_rtt = rtt;
            }
        }
        if advanced {
            self.backoff = 0;
        }
        // A tail-loss probe answered: if it was a retransmission, it repaired a loss.
        if let Some((high, retx)) = self.tlp_high {
            if a.ack >= high {
                self.tlp_high = None;
                if retx && self.state == CaState::Open {
                    self.ssthresh = self.cc_ssthresh();
                    self.cwnd = self.ssthresh.max(1);
                }
            }
        }
        self.detect_losses(now);
        match self.state {
            CaState::Recovery { high } | CaState::Loss { high } if self.una >= high => {
                if matches!(self.state, CaState::Recovery { .. }) {
                    self.cwnd = self.ssthresh.max(1);
                }
                self.state = CaState::Open;
            }
            _ => {}
        }
        if self.state == CaState::Open && self.segs.iter().any(|s| s.lost) {
            self.enter_recovery();
        }
        match self.state {
            CaState::Recovery { .. } => self.prr(delivered, prior_in_flight),
            CaState::Open | CaState::Loss { .. } => {
                // tcp_may_raise_cwnd: only on a cumulative advance (RFC 5681), by everything
                // delivered.
                if delivered > 0 && advanced && self.is_cwnd_limited() {
                    self.grow(now, delivered);
                }
            }
        }
        self.arm_timers(now, advanced);
    }

    fn enter_recovery(&mut self) {
        self.prior_cwnd = self.cwnd;
        self.ssthresh = self.cc_ssthresh();
        self.prr_delivered = 0;
        self.prr_out = 0;
        self.state = CaState::Recovery { high: self.nxt };
        self.tlp_high = None;
    }

    /// PRR (RFC 6937), as `tcp_cwnd_reduction`: the window the next sends may use.
    fn prr(&mut self, delivered: u32, _prior_in_flight: u32) {
        if delivered == 0 {
            return;
        }
        let in_flight = self.in_flight() as i64;
        self.prr_delivered += delivered;
        let ssthresh = self.ssthresh as i64;
        let delta = ssthresh - in_flight;
        let sndcnt = if delta < 0 {
            let num = ssthresh * self.prr_delivered as i64;
            let prior = self.prior_cwnd.max(1) as i64;
            (num + prior - 1) / prior - self.prr_out as i64
        } else {
            (self.prr_delivered as i64 - self.prr_out as i64)
                .max(delivered as i64)
                .min(delta)
        };
        // The first retransmission goes out at once (fast retransmit).
        let min = i64::from(self.prr_out == 0);
        self.cwnd = (in_flight + sndcnt.max(min)).max(1) as u32;
    }

    fn cc_ssthresh(&mut self) -> u32 {
        let cwnd = self.cwnd;
        match self.cfg.cc {
            CongestionControl::NewReno => (cwnd / 2).max(2),
            CongestionControl::Cubic => {
                let c = &mut self.cubic;
                c.epoch_start = None;
                c.last_max_cwnd = if f64::from(cwnd) < c.last_max_cwnd {
                    f64::from(cwnd) * (1.0 + CUBIC_BETA) / 2.0
                } else {
                    f64::from(cwnd)
                };
                ((f64::from(cwnd) * CUBIC_BETA) as u32).max(2)
            }
        }
    }

    fn is_cwnd_limited(&self) -> bool {
        if self.cwnd < self.ssthresh {
            return self.cwnd_limited || self.cwnd < 2 * self.max_packets_out;
        }
        self.cwnd_limited
    }

    /// Window growth on `acked` newly delivered segments (slow start, then CA).
    fn grow(&mut self, now: Instant, mut acked: u32) {
        if self.cwnd < self.ssthresh {
            let to = (self.cwnd + acked).min(self.ssthresh);
            acked -= to - self.cwnd;
            self.cwnd = to;
            if acked == 0 {
                return;
            }
        }
        let cnt = match self.cfg.cc {
            CongestionControl::NewReno => self.cwnd,
            CongestionControl::Cubic => self.cubic_cnt(now, acked),
        };
        // tcp_cong_avoid_ai
        if self.cwnd_cnt >= cnt {
            self.cwnd_cnt = 0;
            self.cwnd += 1;
        }
        self.cwnd_cnt += acked;
        if self.cwnd_cnt >= cnt {
            let d = self.cwnd_cnt / cnt;
            self.cwnd_cnt -= d * cnt;
            self.cwnd += d;
        }
    }

    /// CUBIC's `bictcp_update`: ACKs per window increment.
    fn cubic_cnt(&mut self, now: Instant, acked: u32) -> u32 {
        let cwnd = self.cwnd;
        let delay_min = if self.min_rtt == Duration::MAX {
            0.0
        } else {
            self.min_rtt.as_secs_f64()
        };
        let c = &mut self.cubic;
        c.ack_cnt += acked;
        let start = match c.epoch_start {
            Some(t) => t,
            None => {
                c.epoch_start = Some(now);
                c.ack_cnt = acked;
                c.tcp_cwnd = cwnd;
                if c.last_max_cwnd <= f64::from(cwnd) {
                    c.k = 0.0;
                    c.origin = f64::from(cwnd);
                } else {
                    c.k = ((c.last_max_cwnd - f64::from(cwnd)) / CUBIC_C).cbrt();
                    c.origin = c.last_max_cwnd;
                }
                now
            }
        };
        let t = now.saturating_since(start).as_secs_f64() + delay_min;
        let target = c.origin + CUBIC_C * (t - c.k).powi(3);
        let mut cnt = if target > f64::from(cwnd) {
            ((f64::from(cwnd) / (target - f64::from(cwnd))) as u32).max(1)
        } else {
            100 * cwnd
        };
        if c.last_max_cwnd == 0.0 && cnt > 20 {
            cnt = 20;
        }
        // The Reno-friendly region (tcp_friendliness).
        let delta = ((cwnd * 27) >> 3).max(1);
        while c.ack_cnt > delta {
            c.ack_cnt -= delta;
            c.tcp_cwnd += 1;
        }
        if c.tcp_cwnd > cwnd {
            let max_cnt = cwnd / (c.tcp_cwnd - cwnd);
            cnt = cnt.min(max_cnt);
        }
        cnt.max(2)
    }

    /// RACK and DupThresh: marks segments lost; arms the reordering timer for those not yet.
    fn detect_losses(&mut self, now: Instant) {
        self.rack_at = None;
        let sacked = self.segs.iter().filter(|s| s.sacked).count() as u32;
        if sacked == 0 && self.rack_rtt.is_zero() {
            return;
        }
        // DupThresh: a hole with `dupthresh` SACKed segments above it.
        let mut above = 0u32;
        for s in self.segs.iter_mut().rev() {
            if s.sacked {
                above += 1;
            } else if above >= self.cfg.dupthresh && !s.lost && !s.retransmitted {
                s.lost = true;
            }
        }
        if !self.cfg.rack {
            return;
        }
        let reo_wnd = if !matches!(self.state, CaState::Open)
            || sacked >= self.cfg.dupthresh
            || self.min_rtt == Duration::MAX
        {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.min_rtt.as_nanos() / 4)
                .min(self.srtt.unwrap_or(Duration::MAX))
        };
        let mut earliest: Option<Instant> = None;
        for s in self.segs.iter_mut() {
            if s.sacked || s.lost || (s.sent_at, s.end) >= self.rack_sent {
                continue;
            }
            let deadline = s.sent_at + self.rack_rtt + reo_wnd;
            // (RACK's "sent before" is by time, ties by sequence: a burst leaves at one instant.)
            if deadline <= now {
                s.lost = true;
            } else {
                earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
            }
        }
        self.rack_at = earliest;
    }

    /// Restarts the retransmission timer and the probe after an ACK or a send.
    fn arm_timers(&mut self, now: Instant, restart_rto: bool) {
        if self.segs.is_empty() {
            self.rto_at = None;
            self.tlp_at = None;
            return;
        }
        if restart_rto || self.rto_at.is_none() {
            self.rto_at = Some(now + self.backed_off_rto());
        }
        self.tlp_at = None;
        let sacked = self.segs.iter().any(|s| s.sacked);
        if self.cfg.tlp && self.state == CaState::Open && !sacked && self.tlp_high.is_none() {
            let pto = match self.srtt {
                Some(s) => {
                    let extra = if self.segs.len() == 1 {
                        self.cfg.min_rto
                    } else {
                        Duration::from_millis(2)
                    };
                    s.saturating_mul(2) + extra
                }
                None => self.cfg.initial_rto,
            };
            // Never later than the RTO would fire: then the probe goes in its place.
            self.tlp_at = Some(self.rto_at.map_or(now + pto, |r| r.min(now + pto)));
        }
    }

    /// The next deadline: retransmission timer, probe or RACK's reordering timer.
    pub fn poll_at(&self) -> Instant {
        [self.rto_at, self.tlp_at, self.rack_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Instant::MAX)
    }

    /// Timers due at `now` act: RACK marks losses, a probe is scheduled to go, the RTO fires.
    pub fn on_timer(&mut self, now: Instant) {
        if self.rack_at.is_some_and(|t| t <= now) {
            self.detect_losses(now);
            if self.state == CaState::Open && self.segs.iter().any(|s| s.lost) {
                self.enter_recovery();
                // tcp_rack_reo_timeout reduces as if one segment had been delivered.
                self.prr(1, self.in_flight());
            }
        }
        if self.tlp_at.is_some_and(|t| t <= now) {
            self.tlp_at = None;
            self.send_probe(now);
        } else if self.rto_at.is_some_and(|t| t <= now) {
            self.on_rto(now);
        }
    }

    fn on_rto(&mut self, now: Instant) {
        if !matches!(self.state, CaState::Loss { .. }) {
            self.ssthresh = self.cc_ssthresh();
        }
        self.cwnd = 1;
        self.cwnd_cnt = 0;
        self.state = CaState::Loss { high: self.nxt };
        self.tlp_high = None;
        self.tlp_at = None;
        self.rack_at = None;
        for s in self.segs.iter_mut() {
            if !s.sacked {
                s.lost = true;
            }
        }
        self.backoff += 1;
        self.rto_at = Some(now + self.backed_off_rto());
    }

    /// A tail-loss probe: new data if the window allows, else the last segment once more.
    fn send_probe(&mut self, now: Instant) {
        if self.nxt < self.written {
            let end = (self.nxt + u64::from(self.cfg.mss)).min(self.written);
            self.tlp_high = Some((end, false));
        } else if let Some(last) = self.segs.back_mut() {
            last.lost = true;
            self.tlp_high = Some((last.end, true));
        }
        // The probe may go one segment beyond the window (`push_one == 2`).
        self.force_one = true;
        self.rto_at = Some(now + self.backed_off_rto());
    }

    /// The next segment to send at `now`, if the window and the data allow one: lost segments
    /// first, then new data. Call until None; each call counts as sent.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment> {
        let in_flight = self.in_flight();
        if self.segs.is_empty() && self.nxt < self.written {
            self.restart_after_idle(now);
        }
        if in_flight >= self.cwnd && !self.force_one {
            let waiting = self.segs.iter().any(|s| s.lost) || self.nxt < self.written;
            self.end_burst(waiting);
            return None;
        }
        let seg = if let Some(s) = self.segs.iter_mut().find(|s| s.lost) {
            s.lost = false;
            s.retransmitted = true;
            s.sent_at = now;
            Segment {
                seq: s.start,
                len: (s.end - s.start) as u32,
                retransmit: true,
            }
        } else if self.nxt < self.written && self.nxt < self.una + self.cfg.rwnd {
            let len = (self.written - self.nxt)
                .min(u64::from(self.cfg.mss))
                .min(self.una + self.cfg.rwnd - self.nxt);
            let s = Sent {
                start: self.nxt,
                end: self.nxt + len,
                sent_at: now,
                retransmitted: false,
                sacked: false,
                lost: false,
            };
            self.nxt += len;
            self.segs.push_back(s);
            Segment {
                seq: s.start,
                len: len as u32,
                retransmit: false,
            }
        } else {
            self.end_burst(false);
            return None;
        };
        if matches!(self.state, CaState::Recovery { .. }) {
            self.prr_out += 1;
        }
        self.burst += 1;
        self.force_one = false;
        self.last_send = Some(now);
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.backed_off_rto());
        }
        self.arm_timers(now, false);
        Some(seg)
    }

    /// `tcp_cwnd_validate`: whether the window limited this burst, and the most in flight.
    fn end_burst(&mut self, limited: bool) {
        if self.burst == 0 && !limited {
            return;
        }
        self.burst = 0;
        let out = self.segs.len() as u32;
        if self.una >= self.cwnd_usage_seq
            || limited
            || (!self.cwnd_limited && out > self.max_packets_out)
        {
            self.cwnd_limited = limited;
            self.max_packets_out = out;
            self.cwnd_usage_seq = self.nxt;
        }
    }

    /// `tcp_cwnd_restart`: after more than an RTO with nothing in flight, the window halves per
    /// RTO of idleness, not below the initial window.
    fn restart_after_idle(&mut self, now: Instant) {
        let Some(last) = self.last_send else {
            return;
        };
        if !self.cfg.slow_start_after_idle {
            return;
        }
        let idle = now.saturating_since(last);
        if idle <= self.rto {
            return;
        }
        if let Some(e) = self.cubic.epoch_start.as_mut() {
            *e += idle;
        }
        if self.state == CaState::Open {
            self.ssthresh = self.ssthresh.max(self.cwnd / 2 + self.cwnd / 4);
        }
        let restart = self.cfg.initial_window.min(self.cwnd);
        let mut cwnd = self.cwnd;
        let mut left = idle.as_nanos() as i128 - self.rto.as_nanos() as i128;
        while left > 0 && cwnd > restart {
            cwnd >>= 1;
            left -= self.rto.as_nanos() as i128;
        }
        self.cwnd = cwnd.max(restart);
        self.max_packets_out = 0;
        self.cwnd_limited = false;
    }
}

/// The receiving half: in-order delivery, out-of-order ranges for SACK, and when to ACK.
#[derive(Clone, Debug)]
pub struct Receiver {
    cfg: TcpConfig,
    nxt: u64,
    /// Out-of-order ranges above `nxt`, sorted, disjoint.
    ooo: Vec<(u64, u64)>,
    /// Most recently received out-of-order ranges' starts, newest first (SACK block order).
    recent: Vec<u64>,
    /// Bytes received in order since the last ACK.
    unacked: u64,
    quick: u32,
    pingpong: bool,
    ack_now: bool,
    delack_at: Option<Instant>,
    last_rcv: Option<Instant>,
}

impl Receiver {
    pub fn new(cfg: TcpConfig) -> Receiver {
        Receiver {
            cfg,
            nxt: 0,
            ooo: Vec::new(),
            recent: Vec::new(),
            unacked: 0,
            quick: 0,
            pingpong: false,
            ack_now: false,
            delack_at: None,
            last_rcv: None,
        }
    }

    /// Bytes delivered in order to the application.
    pub fn delivered(&self) -> u64 {
        self.nxt
    }

    fn incr_quickack(&mut self) {
        let q = ((self.cfg.rwnd / (2 * u64::from(self.cfg.mss))) as u32)
            .max(2)
            .min(self.cfg.max_quickacks);
        self.quick = self.quick.max(q);
    }

    /// A data segment `[seq, seq + len)` arrives at `now`; `rto` is this end's current RTO (an
    /// idle gap longer than it re-enters quick-ack mode).
    pub fn on_segment(&mut self, now: Instant, seq: u64, len: u32, rto: Duration) {
        let end = seq + u64::from(len);
        match self.last_rcv {
            None => self.incr_quickack(),
            Some(t) if now.saturating_since(t) > rto => self.incr_quickack(),
            _ => {}
        }
        self.last_rcv = Some(now);
        if end <= self.nxt {
            // A duplicate: ACK at once (Linux sends a D-SACK; we send the plain ACK).
            self.incr_quickack();
            self.ack_now = true;
            return;
        }
        if seq > self.nxt {
            self.insert_ooo(seq, end);
            self.incr_quickack();
            self.ack_now = true;
            return;
        }
        let had_ooo = !self.ooo.is_empty();
        self.unacked += end - self.nxt;
        self.nxt = end;
        while let Some(&(l, r)) = self.ooo.first() {
            if l > self.nxt {
                break;
            }
            self.nxt = self.nxt.max(r);
            self.ooo.remove(0);
        }
        self.recent.retain(|&s| s > self.nxt);
        // A filled hole, more than one full segment unacknowledged, or quick-ack mode.
        if had_ooo || self.unacked > u64::from(self.cfg.mss) || (self.quick > 0 && !self.pingpong) {
            self.ack_now = true;
        } else if self.delack_at.is_none() {
            self.delack_at = Some(now + self.cfg.delack);
        }
    }

    fn insert_ooo(&mut self, l: u64, r: u64) {
        let i = self.ooo.partition_point(|&(a, _)| a < l);
        self.ooo.insert(i, (l, r));
        // Merge neighbours.
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ooo.len());
        for &(a, b) in &self.ooo {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.ooo = merged;
        let start = self
            .ooo
            .iter()
            .find(|&&(a, b)| a <= l && r <= b)
            .map(|&(a, _)| a)
            .unwrap_or(l);
        self.recent
            .retain(|&s| !self.ooo.iter().any(|&(a, b)| a == start && s >= a && s < b));
        self.recent.insert(0, start);
    }

    /// Whether an ACK should go out now (on its own, if no data carries it).
    pub fn ack_due(&self) -> bool {
        self.ack_now
    }

    /// This end sends data at `now`: the segment carries the ACK; answering within the
    /// delayed-ACK time of the last arrival enters ping-pong mode.
    pub fn on_data_sent(&mut self, now: Instant) {
        if self
            .last_rcv
            .is_some_and(|t| now.saturating_since(t) < self.cfg.delack)
        {
            self.pingpong = true;
        }
    }

    /// The ACK to send now (pure or carried by data); clears what was pending.
    pub fn take_ack(&mut self) -> Ack {
        if self.quick > 0 && self.unacked > 0 {
            self.quick -= 1;
        }
        self.ack_now = false;
        self.unacked = 0;
        self.delack_at = None;
        let mut a = Ack {
            ack: self.nxt,
            ..Ack::default()
        };
        for &s in self.recent.iter().take(3) {
            if let Some(&(l, r)) = self.ooo.iter().find(|&&(l, _)| l == s) {
                a.sack[a.nsack as usize] = (l, r);
                a.nsack += 1;
            }
        }
        a
    }

    pub fn poll_at(&self) -> Instant {
        self.delack_at.unwrap_or(Instant::MAX)
    }

    /// The delayed-ACK timer fires: the ACK is due, and ping-pong mode ends (Linux: "delayed
    /// ACK missed").
    pub fn on_timer(&mut self, now: Instant) {
        if self.delack_at.is_some_and(|t| t <= now) {
            self.delack_at = None;
            self.ack_now = true;
            self.pingpong = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
    fn at(v: u64) -> Instant {
        Instant::ZERO + ms(v)
    }
    const MSS: u64 = 1460;

    fn ack(n: u64) -> Ack {
        Ack {
            ack: n * MSS,
            ..Ack::default()
        }
    }
    fn sack(cum: u64, blocks: &[(u64, u64)]) -> Ack {
        let mut a = ack(cum);
        for &(l, r) in blocks {
            a.sack[a.nsack as usize] = (l * MSS, r * MSS);
            a.nsack += 1;
        }
        a
    }
    fn drain(s: &mut Sender, now: Instant) -> Vec<Segment> {
        std::iter::from_fn(|| s.poll_transmit(now)).collect()
    }
    fn reno() -> TcpConfig {
        TcpConfig {
            cc: CongestionControl::NewReno,
            ..TcpConfig::default()
        }
    }

    #[test]
    fn initial_window_is_ten_segments() {
        let mut s = Sender::new(TcpConfig::default());
        s.write(100 * MSS);
        let segs = drain(&mut s, at(0));
        assert_eq!(segs.len(), 10);
        assert_eq!(segs[9].seq, 9 * MSS);
        assert!(segs.iter().all(|g| g.len == 1460 && !g.retransmit));
    }

    #[test]
    fn slow_start_doubles_per_round_trip() {
        // Each ACK of one segment adds one segment: 10 → 20 → 40 over two round trips of
        // 10 ms, every segment acknowledged on its own.
        let mut s = Sender::with_handshake_rtt(reno(), Some(ms(10)));
        s.write(1000 * MSS);
        let mut sent = drain(&mut s, at(0)).len() as u64;
        assert_eq!(sent, 10);
        let mut acked = 0;
        for rtt in 1..=2u64 {
            let round = sent - acked;
            for _ in 0..round {
                acked += 1;
                s.on_ack(at(10 * rtt), &ack(acked));
                sent += drain(&mut s, at(10 * rtt)).len() as u64;
            }
            assert_eq!(s.cwnd(), 10 << rtt, "after round trip {rtt}");
            assert_eq!(sent - acked, u64::from(s.cwnd()));
        }
    }

    #[test]
    fn newreno_congestion_avoidance_adds_one_segment_per_window() {
        // In CA (cwnd ≥ ssthresh) a full window of ACKs adds one segment: 20 ACKs at cwnd 20
        // give 21 (RFC 5681 3.1).
        let mut s = Sender::with_handshake_rtt(reno(), Some(ms(10)));
        s.cwnd = 20;
        s.ssthresh = 20;
        s.write(1000 * MSS);
        let mut sent = drain(&mut s, at(0)).len() as u64;
        assert_eq!(sent, 20);
        for i in 1..=20 {
            s.on_ack(at(10), &ack(i));
            sent += drain(&mut s, at(10)).len() as u64;
        }
        assert_eq!(s.cwnd(), 21);
        // The next 21 ACKs add one more.
        for i in 21..=41 {
            s.on_ack(at(20), &ack(i));
            drain(&mut s, at(20));
        }
        assert_eq!(s.cwnd(), 22);
        assert!(sent > 40);
    }

    #[test]
    fn cubic_grows_along_its_cubic_after_a_loss() {
        // After a loss at W_max = 100: ssthresh = 70 (β = 717/1024), K = cbrt(30 / 0.4) =
        // 4.217 s (RFC 8312 eq. 1-2). At a 100 ms RTT the cubic dominates: W(2 s + min_rtt) =
        // 0.4 (2.1 − K)³ + 100 ≈ 96.2, and beyond K the window passes W_max again.
        let (w2, w6) = cubic_run(100);
        let k = (30.0f64 / 0.4).cbrt();
        let cubic = 0.4 * (2.1 - k).powi(3) + 100.0;
        assert!(
            (f64::from(w2) - cubic).abs() <= 3.0,
            "cwnd {w2} at 2 s, cubic says {cubic:.1}"
        );
        assert!(w6 > 100, "cwnd {w6} after 6 s");
        // At a 10 ms RTT the Reno-friendly estimate is ahead of the cubic (tcp_friendliness:
        // one segment per 27/8 windows of ACKs): 70 + 200 RTTs × 8/27 ≈ 129 at 2 s.
        let (w2, _) = cubic_run(10);
        assert!((i64::from(w2) - 129).abs() <= 3, "cwnd {w2} at 2 s");
    }

    /// CUBIC after a loss at 100 segments, whole windows acknowledged every `rtt_ms`: the
    /// window at 2 s and at 6 s.
    fn cubic_run(rtt_ms: u64) -> (u32, u32) {
        let cfg = TcpConfig {
            rwnd: u64::MAX / 8,
            ..TcpConfig::default()
        };
        let mut s = Sender::with_handshake_rtt(cfg, Some(ms(rtt_ms)));
        s.cwnd = 100;
        assert_eq!(s.cc_ssthresh(), 70);
        assert!((s.cubic.last_max_cwnd - 100.0).abs() < 1e-9);
        s.cwnd = 70;
        s.ssthresh = 70;
        s.write(u64::MAX / 4);
        let mut t = 0u64;
        let mut acked = 0u64;
        let mut sent = drain(&mut s, at(t)).len() as u64;
        let mut at_2s = 0;
        while t < 6000 {
            t += rtt_ms;
            let round = sent - acked;
            for _ in 0..round {
                acked += 1;
                s.on_ack(at(t), &ack(acked));
            }
            sent += drain(&mut s, at(t)).len() as u64;
            if t == 2000 {
                at_2s = s.cwnd();
            }
        }
        (at_2s, s.cwnd())
    }

    #[test]
    fn three_dupacks_trigger_fast_retransmit_and_recovery() {
        // 10 segments out, segment 3 (index 2) lost; SACKs of 4, 5, 6 arrive: the third one
        // marks segment 3 lost and it is retransmitted at once, without waiting for any timer.
        let mut s = Sender::with_handshake_rtt(reno(), Some(ms(10)));
        s.write(10 * MSS);
        assert_eq!(drain(&mut s, at(0)).len(), 10);
        s.on_ack(at(10), &ack(1));
        s.on_ack(at(10), &ack(2));
        assert!(drain(&mut s, at(10)).is_empty());
        // RACK is off here to isolate the DupThresh rule.
        s.cfg.rack = false;
        s.on_ack(at(11), &sack(2, &[(3, 4)]));
        s.on_ack(at(11), &sack(2, &[(3, 5)]));
        assert!(!s.in_recovery());
        s.on_ack(at(11), &sack(2, &[(3, 6)]));
        assert!(s.in_recovery());
        let out = drain(&mut s, at(11));
        assert_eq!(
            out[0],
            Segment {
                seq: 2 * MSS,
                len: 1460,
                retransmit: true
            }
        );
        // NewReno halves: ssthresh = 12 / 2 = 6 (cwnd had grown to 12 on two ACKs).
        assert_eq!(s.ssthresh(), 6);
        // The retransmission is acknowledged with everything: recovery ends at cwnd = ssthresh.
        s.on_ack(at(21), &ack(10));
        assert!(!s.in_recovery());
        assert_eq!(s.cwnd(), 6);
    }

    #[test]
    fn rack_detects_a_loss_after_one_sack_and_a_quarter_rtt() {
        // min_rtt 10 ms: the reordering window is 2.5 ms. Segment 1 lost, segment 2 SACKed at
        // 10.6 ms (sent at 0.6 ms ⇒ RACK RTT 10 ms): segment 1 (sent at 0) is lost at
        // 0 + 10 + 2.5 = 12.5 ms.
        let mut s = Sender::with_handshake_rtt(TcpConfig::default(), Some(ms(10)));
        s.write(2 * MSS);
        let us = |v: u64| Instant::ZERO + Duration::from_micros(v);
        assert!(s.poll_transmit(us(0)).is_some());
        assert!(s.poll_transmit(us(600)).is_some());
        s.on_ack(us(10_600), &sack(0, &[(1, 2)]));
        assert!(!s.in_recovery());
        assert_eq!(s.poll_at(), us(12_500));
        assert!(s.poll_transmit(us(10_600)).is_none());
        s.on_timer(us(12_500));
        assert!(s.in_recovery());
        assert_eq!(
            s.poll_transmit(us(12_500)),
            Some(Segment {
                seq: 0,
                len: 1460,
                retransmit: true
            })
        );
    }

    #[test]
    fn rto_backs_off_200_400_800_plus_rtt() {
        // RTT 1 ms: RTO = SRTT + max(4·RTTVAR, 200 ms) = 1 + 200 = 201 ms; each expiry doubles
        // it: 402, 804 ms (Linux's formula; RFC 6298 5.5 for the doubling).
        let cfg = TcpConfig {
            tlp: false,
            ..TcpConfig::default()
        };
        let mut s = Sender::with_handshake_rtt(cfg, Some(ms(1)));
        assert_eq!(s.rto(), ms(201));
        s.write(MSS);
        assert!(s.poll_transmit(at(0)).is_some());
        let mut t = at(0);
        for expect in [201, 402, 804] {
            assert_eq!(s.poll_at(), t + ms(expect));
            t = s.poll_at();
            s.on_timer(t);
            assert_eq!(s.cwnd(), 1);
            assert_eq!(
                s.poll_transmit(t),
                Some(Segment {
                    seq: 0,
                    len: 1460,
                    retransmit: true
                })
            );
        }
        // An ACK of new data ends the backoff; Karn: no sample from the retransmission.
        s.on_ack(t + ms(1), &ack(1));
        assert_eq!(s.rto(), ms(201));
        assert_eq!(s.poll_at(), Instant::MAX);
    }

    #[test]
    fn initial_rto_is_one_second_and_syn_backs_off() {
        let cfg = TcpConfig::default();
        assert_eq!(Sender::new(cfg).rto(), ms(1000));
        assert_eq!(syn_rto(&cfg, 0), ms(1000));
        assert_eq!(syn_rto(&cfg, 2), ms(4000));
    }

    #[test]
    fn tail_loss_probe_after_two_srtt() {
        // 10 segments out, the last two lost: no SACK can come. The probe fires at 2·SRTT +
        // 2 ms = 22 ms after the last ACK and resends the last segment; its SACK lets RACK
        // mark segment 9 lost at once, long before the 210 ms RTO.
        let mut s = Sender::with_handshake_rtt(TcpConfig::default(), Some(ms(10)));
        s.write(10 * MSS);
        assert_eq!(drain(&mut s, at(0)).len(), 10);
        s.on_ack(at(10), &ack(8));
        assert_eq!(s.poll_at(), at(32));
        s.on_timer(at(32));
        assert_eq!(
            s.poll_transmit(at(32)),
            Some(Segment {
                seq: 9 * MSS,
                len: 1460,
                retransmit: true
            })
        );
        s.on_ack(at(42), &sack(8, &[(9, 10)]));
        assert!(s.in_recovery());
        assert_eq!(
            s.poll_transmit(at(42)),
            Some(Segment {
                seq: 8 * MSS,
                len: 1460,
                retransmit: true
            })
        );
        s.on_ack(at(52), &ack(10));
        assert_eq!(s.acked(), 10 * MSS);
        assert_eq!(s.poll_at(), Instant::MAX);
        // With a single segment in flight the probe waits 2·SRTT + 200 ms, i.e. the RTO.
        s.write(MSS);
        assert!(s.poll_transmit(at(60)).is_some());
        assert_eq!(s.poll_at(), at(60) + s.rto());
    }

    #[test]
    fn recovers_a_burst_of_losses_in_one_round_trip() {
        // 20 segments out at cwnd 20, segments 5..=8 (4 of them) lost; SACKs for 9..20 arrive.
        // All four are marked lost and retransmitted within the recovery; PRR keeps the window
        // at ssthresh = 14 (CUBIC: 20 × 0.7) and recovery ends with everything acknowledged.
        let mut s = Sender::with_handshake_rtt(TcpConfig::default(), Some(ms(10)));
        s.cwnd = 20;
        s.ssthresh = 20;
        s.write(20 * MSS);
        assert_eq!(drain(&mut s, at(0)).len(), 20);
        s.on_ack(at(10), &ack(4));
        let mut retx = Vec::new();
        for k in 9..20u64 {
            s.on_ack(at(11), &sack(4, &[(8, k + 1)]));
            retx.extend(drain(&mut s, at(11)));
        }
        assert!(s.in_recovery());
        assert_eq!(s.ssthresh(), 14);
        let seqs: Vec<u64> = retx.iter().map(|g| g.seq / MSS).collect();
        assert_eq!(seqs, vec![4, 5, 6, 7]);
        assert!(retx.iter().all(|g| g.retransmit));
        s.on_ack(at(21), &ack(20));
        assert!(!s.in_recovery());
        assert_eq!(s.cwnd(), 14);
        assert_eq!(s.acked(), 20 * MSS);
    }

    #[test]
    fn idle_restart_halves_the_window_per_rto_down_to_the_initial_window() {
        let mut s = Sender::with_handshake_rtt(reno(), Some(ms(1)));
        s.cwnd = 80;
        s.write(MSS);
        assert!(s.poll_transmit(at(0)).is_some());
        s.on_ack(at(1), &ack(1));
        // Idle 1 + 3 RTOs of 201 ms: 80 → 40 → 20 → 10 (never below 10).
        s.write(MSS);
        assert!(s.poll_transmit(at(1 + 201 * 4)).is_some());
        assert_eq!(s.cwnd(), 10);
    }

    #[test]
    fn receive_window_limits_the_flight() {
        let cfg = TcpConfig {
            rwnd: 4 * MSS,
            ..TcpConfig::default()
        };
        let mut s = Sender::new(cfg);
        s.write(20 * MSS);
        assert_eq!(drain(&mut s, at(0)).len(), 4);
        s.on_ack(at(10), &ack(1));
        assert_eq!(drain(&mut s, at(10)).len(), 1);
    }

    #[test]
    fn receiver_quick_acks_at_start_then_delays() {
        let cfg = TcpConfig {
            max_quickacks: 2,
            ..TcpConfig::default()
        };
        let mut r = Receiver::new(cfg);
        let rto = ms(200);
        // Two quick ACKs, one per segment.
        for i in 0..2 {
            r.on_segment(at(0), i * MSS, 1460, rto);
            assert!(r.ack_due());
            assert_eq!(r.take_ack().ack, (i + 1) * MSS);
        }
        // Then one ACK per two segments, or the 40 ms timer.
        r.on_segment(at(1), 2 * MSS, 1460, rto);
        assert!(!r.ack_due());
        assert_eq!(r.poll_at(), at(41));
        r.on_segment(at(2), 3 * MSS, 1460, rto);
        assert!(r.ack_due());
        assert_eq!(r.take_ack().ack, 4 * MSS);
        r.on_segment(at(3), 4 * MSS, 100, rto);
        assert!(!r.ack_due());
        r.on_timer(at(43));
        assert!(r.ack_due());
        assert_eq!(r.take_ack().ack, 4 * MSS + 100);
    }

    #[test]
    fn receiver_sacks_out_of_order_data_at_once() {
        let mut r = Receiver::new(TcpConfig::default());
        let rto = ms(200);
        r.on_segment(at(0), 0, 1460, rto);
        r.take_ack();
        r.on_segment(at(1), 2 * MSS, 1460, rto);
        assert!(r.ack_due());
        let a = r.take_ack();
        assert_eq!((a.ack, a.blocks()), (MSS, &[(2 * MSS, 3 * MSS)][..]));
        r.on_segment(at(2), 4 * MSS, 1460, rto);
        let a = r.take_ack();
        // Most recent block first.
        assert_eq!(a.blocks(), &[(4 * MSS, 5 * MSS), (2 * MSS, 3 * MSS)][..]);
        // The hole fills: everything up to 3 MSS in order, the ACK goes at once.
        r.on_segment(at(3), MSS, 1460, rto);
        assert!(r.ack_due());
        let a = r.take_ack();
        assert_eq!((a.ack, a.blocks()), (3 * MSS, &[(4 * MSS, 5 * MSS)][..]));
    }

    #[test]
    fn pingpong_mode_delays_the_ack_for_the_reply() {
        let cfg = TcpConfig {
            max_quickacks: 1,
            ..TcpConfig::default()
        };
        let mut r = Receiver::new(cfg);
        let rto = ms(200);
        r.on_segment(at(0), 0, 200, rto);
        assert!(r.ack_due());
        r.on_data_sent(at(1));
        r.take_ack();
        // After an idle gap beyond the RTO quick-ack mode would come back, but this end
        // answers quickly (ping-pong): the ACK waits for the reply.
        r.on_segment(at(500), 200, 200, rto);
        assert!(!r.ack_due());
        assert_eq!(r.poll_at(), at(540));
    }
}
