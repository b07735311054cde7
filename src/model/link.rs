//! The link model: one direction of a link, sans-IO.
//!
//! Shared by the simulator and the user-space link emulator so that a simulated and an emulated
//! link mean exactly the same thing.

use std::sync::Arc;

use crate::model::time::Duration;
use crate::model::units::{BitRate, QueueLimit};

/// Parameters of a link, applied to each direction separately.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LinkParams {
    /// None: unshaped (no serialization delay, no queue).
    pub bandwidth: Option<BitRate>,
    /// One-way propagation delay.
    pub delay: Duration,
    pub jitter: Option<Jitter>,
    pub loss: Loss,
    /// None: one bandwidth-delay product, at least 64 packets.
    pub queue: Option<QueueLimit>,
    /// A Mahimahi delivery-opportunity trace; replaces `bandwidth`.
    pub trace: Option<Arc<Trace>>,
    /// Let jitter reorder packets; by default delivery stays FIFO.
    pub reorder: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter {
    pub amount: Duration,
    pub distribution: JitterDist,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitterDist {
    /// delay + N(0, amount²), clamped at zero.
    Normal,
    /// delay + U(−amount, +amount), clamped at zero.
    Uniform,
    /// delay + a Pareto variate (shape 3) whose mean is `amount`: only ever adds delay.
    Pareto,
}

#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Loss {
    #[default]
    None,
    /// Each packet is lost independently with this probability.
    Bernoulli(f64),
    /// Two-state Markov chain (netem's `gemodel`): `p` good→bad, `r` bad→good per packet; a packet
    /// is delivered with probability `k` in the good state and `h` in the bad state.
    GilbertElliott { p: f64, r: f64, h: f64, k: f64 },
}

/// A Mahimahi trace: each line a millisecond timestamp at which one 1500-byte packet may leave;
/// the trace loops with the period of its last timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Where it was read from, as written in the scenario.
    pub source: String,
    /// Non-decreasing millisecond offsets; repeated values are several opportunities.
    pub opportunities_ms: Vec<u64>,
}

/// Bytes one trace delivery opportunity carries (Mahimahi's MTU).
pub const TRACE_OPPORTUNITY_BYTES: u64 = 1500;

impl Trace {
    /// Parses Mahimahi's format: one non-negative integer per line, non-decreasing, the last
    /// positive (it is the loop period).
    pub fn parse(source: &str, text: &str) -> Result<Trace, String> {
        let mut ops = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            let v: u64 = t.parse().map_err(|_| {
                format!(
                    "{source} line {}: `{t}` is not a millisecond timestamp",
                    i + 1
                )
            })?;
            if ops.last().is_some_and(|&last| v < last) {
                return Err(format!(
                    "{source} line {}: timestamps must not decrease",
                    i + 1
                ));
            }
            ops.push(v);
        }
        match ops.last() {
            None => Err(format!("{source}: the trace is empty")),
            Some(0) => Err(format!(
                "{source}: the last timestamp (the loop period) must be positive"
            )),
            Some(_) => Ok(Trace {
                source: source.to_string(),
                opportunities_ms: ops,
            }),
        }
    }

    /// The loop period.
    pub fn period(&self) -> Duration {
        Duration::from_millis(*self.opportunities_ms.last().expect("validated non-empty"))
    }

    /// Average capacity in bits per second.
    pub fn mean_rate_bps(&self) -> f64 {
        self.opportunities_ms.len() as f64 * TRACE_OPPORTUNITY_BYTES as f64 * 8.0
            / self.period().as_secs_f64()
    }
}

/// Bytes of IPv4 + TCP header each packet carries on the wire besides its payload.
pub const HEADER_BYTES: u64 = 40;
/// Payload bytes per packet (TCP MSS on a 1500-byte MTU).
pub const MSS: u64 = 1460;

/// Why a packet did not cross.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Drop-tail: the queue was full.
    Queue,
    /// Random loss (Bernoulli or Gilbert-Elliott).
    Loss,
    /// The link is down.
    Down,
}

/// Running totals of one direction, for `links.csv`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub packets: u64,
    pub bytes: u64,
    pub dropped_queue: u64,
    pub dropped_loss: u64,
    pub dropped_down: u64,
}

/// One direction of a link: a drop-tail FIFO in front of a transmitter (fixed rate or trace),
/// then propagation delay plus jitter, with random loss.
///
/// The model is evaluated at enqueue time: [`LinkDirection::send`] returns when the packet will
/// arrive at the far end (or why it is dropped). This is exact for a FIFO transmitter because a
/// packet's departure depends only on the packets before it, and it needs no events of its own:
/// the simulator schedules one arrival, the emulator one timer. Calls must come in
/// non-decreasing `now`.
///
/// Guarantees:
/// - A packet of `size` bytes occupies the transmitter for `size × 8 / bandwidth` (rounded up to
///   the nanosecond), or, on a trace, the delivery opportunities whose 1500-byte credits cover it
///   (opportunities that pass unused are lost, as in Mahimahi).
/// - The queue holds the packets accepted but not yet fully transmitted; a packet that would
///   exceed the limit (packets, or bytes including its own size) is dropped (drop-tail).
/// - Loss is decided after the queue, one draw per packet (Gilbert-Elliott steps its chain once
///   per packet); a lost packet still used the transmitter.
/// - Without `reorder`, arrivals are kept in FIFO order: a packet never arrives before the one
///   sent ahead of it (jitter then delays a packet behind a slow predecessor, as netem does
///   since Linux 3.x when no reordering is asked for).
#[derive(Clone, Debug)]
pub struct LinkDirection {
    params: LinkParams,
    queue_limit: QueueLimit,
    rng: crate::model::rng::Rng,
    up: bool,
    /// Transmission end times and sizes of packets still in the queue, oldest first.
    backlog: std::collections::VecDeque<(Instant, u64)>,
    backlog_bytes: u64,
    /// When the transmitter is free again.
    busy_until: Instant,
    last_arrival: Instant,
    ge_bad: bool,
    trace_cursor: TraceCursor,
    counters: LinkCounters,
}

/// Position in a trace: the next usable opportunity and the credit left in it.
#[derive(Clone, Copy, Debug, Default)]
struct TraceCursor {
    cycle: u64,
    index: usize,
    credit: u64,
}

use crate::model::time::Instant;

impl LinkDirection {
    /// A direction whose random draws come from `rng` (one per direction, seeded by name).
    pub fn new(params: LinkParams, rng: crate::model::rng::Rng) -> Self {
        let queue_limit = default_queue(&params);
        LinkDirection {
            params,
            queue_limit,
            rng,
            up: true,
            backlog: Default::default(),
            backlog_bytes: 0,
            busy_until: Instant::ZERO,
            last_arrival: Instant::ZERO,
            ge_bad: false,
            trace_cursor: TraceCursor {
                cycle: 0,
                index: 0,
                credit: TRACE_OPPORTUNITY_BYTES,
            },
            counters: LinkCounters::default(),
        }
    }

    pub fn counters(&self) -> LinkCounters {
        self.counters
    }

    /// Sets the link up or down. Packets already accepted still arrive (they are on the wire or
    /// in the queue of a device that stays); new ones are dropped while down.
    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }

    /// Replaces the parameters in place (`set-link`): queued packets keep their schedule, new
    /// packets see the new rate, delay, loss and queue limit. The loss chain and jitter stream
    /// continue.
    pub fn set_params(&mut self, params: LinkParams) {
        self.queue_limit = default_queue(&params);
        if params.trace != self.params.trace {
            self.trace_cursor = TraceCursor {
                cycle: 0,
                index: 0,
                credit: TRACE_OPPORTUNITY_BYTES,
            };
        }
        self.params = params;
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(end, size)) = self.backlog.front() {
            if end > now {
                break;
            }
            self.backlog.pop_front();
            self.backlog_bytes -= size;
        }
    }

    /// Offers one packet of `size` wire bytes at `now`: its arrival time at the far end, or why
    /// it was dropped.
    pub fn send(&mut self, now: Instant, size: u64) -> Result<Instant, DropReason> {
        if !self.up {
            self.counters.dropped_down += 1;
            return Err(DropReason::Down);
        }
        let shaped = self.params.bandwidth.is_some() || self.params.trace.is_some();
        let tx_end = if shaped {
            self.expire(now);
            let full = match self.queue_limit {
                QueueLimit::Packets(n) => self.backlog.len() as u64 >= n,
                QueueLimit::Bytes(b) => self.backlog_bytes + size > b,
            };
            if full {
                self.counters.dropped_queue += 1;
                return Err(DropReason::Queue);
            }
            let start = now.max(self.busy_until);
            let end = match &self.params.trace {
                Some(trace) => {
                    let trace = trace.clone();
                    self.trace_departure(&trace, start, size)
                }
                None => start + self.params.bandwidth.expect("shaped").transmit_time(size),
            };
            self.busy_until = end;
            self.backlog.push_back((end, size));
            self.backlog_bytes += size;
            end
        } else {
            now
        };
        if self.lose() {
            self.counters.dropped_loss += 1;
            return Err(DropReason::Loss);
        }
        let mut arrival = tx_end + self.params.delay;
        if let Some(j) = self.params.jitter {
            arrival = self.jittered(arrival, j);
        }
        if !self.params.reorder {
            arrival = arrival.max(self.last_arrival);
        }
        self.last_arrival = self.last_arrival.max(arrival);
        self.counters.packets += 1;
        self.counters.bytes += size;
        Ok(arrival)
    }

    fn lose(&mut self) -> bool {
        match self.params.loss {
            Loss::None => false,
            Loss::Bernoulli(p) => self.rng.chance(p),
            Loss::GilbertElliott { p, r, h, k } => {
                // Transition first, then draw the loss in the new state (netem's order).
                let u = self.rng.open01();
                if self.ge_bad {
                    if u < r {
                        self.ge_bad = false;
                    }
                } else if u < p {
                    self.ge_bad = true;
                }
                let deliver = if self.ge_bad { h } else { k };
                !self.rng.chance(deliver)
            }
        }
    }

    fn jittered(&mut self, arrival: Instant, j: Jitter) -> Instant {
        let a = j.amount.as_secs_f64();
        let offset = match j.distribution {
            JitterDist::Normal => a * self.rng.std_normal(),
            JitterDist::Uniform => a * (2.0 * self.rng.open01() - 1.0),
            // Pareto with shape 3 and mean `a`: scale = a·(shape−1)/shape; minus the scale
            // would make it start at zero but change the mean, so it starts at the scale.
            JitterDist::Pareto => {
                let shape = 3.0;
                (a * (shape - 1.0) / shape) / self.rng.open01().powf(1.0 / shape)
            }
        };
        let t = arrival.as_nanos() as f64 + offset * 1e9;
        let floor = (arrival - self.params.delay).as_nanos() as f64;
        Instant::from_nanos(t.max(floor).round() as u64)
    }

    /// Walks the trace from `start` until the credits of the opportunities cover `size` bytes;
    /// returns the time of the opportunity that carries the packet's last byte.
    fn trace_departure(&mut self, trace: &Trace, start: Instant, size: u64) -> Instant {
        let ops = &trace.opportunities_ms;
        let period = trace.period().as_nanos();
        let at = |c: &TraceCursor| Instant::from_nanos(c.cycle * period + ops[c.index] * 1_000_000);
        let mut c = self.trace_cursor;
        if at(&c) < start {
            // Skip to the first opportunity at or after `start`; the skipped credit is lost.
            let ns = start.as_nanos();
            c.cycle = ns / period;
            let within_ms = (ns % period).div_ceil(1_000_000);
            c.index = ops.partition_point(|&t| t < within_ms);
            if c.index == ops.len() {
                c.cycle += 1;
                c.index = 0;
            }
            c.credit = TRACE_OPPORTUNITY_BYTES;
        }
        let mut need = size;
        loop {
            let take = need.min(c.credit);
            need -= take;
            c.credit -= take;
            if need == 0 {
                let t = at(&c);
                if c.credit == 0 {
                    c.index += 1;
                    if c.index == ops.len() {
                        c.index = 0;
                        c.cycle += 1;
                    }
                    c.credit = TRACE_OPPORTUNITY_BYTES;
                }
                self.trace_cursor = c;
                return t;
            }
            c.index += 1;
            if c.index == ops.len() {
                c.index = 0;
                c.cycle += 1;
            }
            c.credit = TRACE_OPPORTUNITY_BYTES;
        }
    }
}

/// The default queue: one bandwidth-delay product of the round trip over this link (2 × delay),
/// at least 64 packets; 1000 packets (Linux's default txqueuelen) for an unshaped link.
pub fn default_queue(params: &LinkParams) -> QueueLimit {
    if let Some(q) = params.queue {
        return q;
    }
    let rate = match (&params.trace, params.bandwidth) {
        (Some(t), _) => t.mean_rate_bps(),
        (None, Some(b)) => b.bits_per_sec() as f64,
        (None, None) => return QueueLimit::Packets(1000),
    };
    let bdp_bytes = rate / 8.0 * 2.0 * params.delay.as_secs_f64();
    QueueLimit::Packets(((bdp_bytes / (MSS + HEADER_BYTES) as f64).ceil() as u64).max(64))
}

/// Wire sizes of the packets that carry a message of `payload` bytes (at least one packet, so an
/// empty message is a bare header, like a SYN).
pub fn packet_sizes(payload: u64) -> impl Iterator<Item = u64> {
    let full = payload / MSS;
    let rest = payload % MSS;
    let n = if rest > 0 || full == 0 {
        full + 1
    } else {
        full
    };
    (0..n).map(move |i| {
        if i < full {
            MSS + HEADER_BYTES
        } else {
            rest + HEADER_BYTES
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rng::Rng;
    use crate::model::units::BitRate;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn link(params: LinkParams) -> LinkDirection {
        LinkDirection::new(params, Rng::new(1))
    }

    #[test]
    fn serialization_and_delay_by_hand() {
        // 10 Mbit/s, 5 ms: a 1500-byte packet takes 1.2 ms to serialize, then 5 ms to propagate.
        let mut l = link(LinkParams {
            bandwidth: Some(BitRate(10_000_000)),
            delay: ms(5),
            ..Default::default()
        });
        let t0 = Instant::ZERO;
        assert_eq!(l.send(t0, 1500), Ok(t0 + Duration::from_micros(6200)));
        // A second packet sent at once waits for the first: 2.4 ms + 5 ms.
        assert_eq!(l.send(t0, 1500), Ok(t0 + Duration::from_micros(7400)));
        // After the transmitter idles, a packet goes at once again.
        let t1 = Instant::ZERO + ms(100);
        assert_eq!(l.send(t1, 500), Ok(t1 + Duration::from_micros(400) + ms(5)));
    }

    #[test]
    fn drop_tail_drops_exactly_beyond_the_limit() {
        // 1 Mbit/s, 10-packet queue: a burst of 25 packets at one instant keeps 10, drops 15.
        let mut l = link(LinkParams {
            bandwidth: Some(BitRate(1_000_000)),
            queue: Some(QueueLimit::Packets(10)),
            ..Default::default()
        });
        let results: Vec<_> = (0..25).map(|_| l.send(Instant::ZERO, 1500)).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
        assert!(results[10..].iter().all(|r| *r == Err(DropReason::Queue)));
        assert_eq!(l.counters().dropped_queue, 15);
        // 12 ms per packet: after 24 ms two have left, so exactly two more fit.
        let t = Instant::ZERO + ms(24);
        assert!(l.send(t, 1500).is_ok());
        assert!(l.send(t, 1500).is_ok());
        assert_eq!(l.send(t, 1500), Err(DropReason::Queue));
    }

    #[test]
    fn byte_queue_counts_the_arriving_packet() {
        let mut l = link(LinkParams {
            bandwidth: Some(BitRate(1_000_000)),
            queue: Some(QueueLimit::Bytes(3000)),
            ..Default::default()
        });
        assert!(l.send(Instant::ZERO, 1500).is_ok());
        assert!(l.send(Instant::ZERO, 1500).is_ok());
        assert_eq!(l.send(Instant::ZERO, 1), Err(DropReason::Queue));
    }

    #[test]
    fn default_queue_is_bdp_at_least_64() {
        let p = LinkParams {
            bandwidth: Some(BitRate(1_000_000_000)),
            delay: ms(10),
            ..Default::default()
        };
        // 1 Gbit/s × 20 ms = 2.5 MB = 1667 packets of 1500 B.
        assert_eq!(default_queue(&p), QueueLimit::Packets(1667));
        let p = LinkParams {
            bandwidth: Some(BitRate(10_000_000)),
            delay: ms(1),
            ..Default::default()
        };
        assert_eq!(default_queue(&p), QueueLimit::Packets(64));
    }

    #[test]
    fn bernoulli_loss_rate_and_same_seed_same_sequence() {
        let p = LinkParams {
            loss: Loss::Bernoulli(0.01),
            ..Default::default()
        };
        let run = |seed| {
            let mut l = LinkDirection::new(p.clone(), Rng::new(seed));
            (0..200_000)
                .map(|_| l.send(Instant::ZERO, 100).is_err())
                .collect::<Vec<_>>()
        };
        let a = run(3);
        let lost = a.iter().filter(|&&x| x).count() as f64 / a.len() as f64;
        // ±4.5 standard deviations of a binomial(200k, 1%) share.
        assert!(
            (lost - 0.01).abs() < 4.5 * (0.01f64 * 0.99 / 200_000.0).sqrt(),
            "{lost}"
        );
        assert_eq!(a, run(3));
        assert_ne!(a, run(4));
    }

    #[test]
    fn gilbert_elliott_matches_stationary_loss() {
        // Simple Gilbert: p = 1 %, r = 30 %, h = 0 (bad loses all), k = 1 (good loses none).
        // Stationary P(bad) = p / (p + r) = 1/31; mean burst length 1/r.
        let p = LinkParams {
            loss: Loss::GilbertElliott {
                p: 0.01,
                r: 0.3,
                h: 0.0,
                k: 1.0,
            },
            ..Default::default()
        };
        let mut l = LinkDirection::new(p, Rng::new(9));
        let n = 500_000;
        let outcomes: Vec<bool> = (0..n)
            .map(|_| l.send(Instant::ZERO, 100).is_err())
            .collect();
        let lost = outcomes.iter().filter(|&&x| x).count() as f64 / n as f64;
        assert!((lost - 1.0 / 31.0).abs() < 0.002, "{lost}");
        let bursts = outcomes.windows(2).filter(|w| !w[0] && w[1]).count() as f64;
        let mean_burst = outcomes.iter().filter(|&&x| x).count() as f64 / bursts;
        assert!((mean_burst - 1.0 / 0.3).abs() < 0.15, "{mean_burst}");
    }

    #[test]
    fn jitter_keeps_fifo_unless_reorder() {
        let j = Some(Jitter {
            amount: ms(5),
            distribution: JitterDist::Uniform,
        });
        let mut fifo = link(LinkParams {
            delay: ms(10),
            jitter: j,
            ..Default::default()
        });
        let mut last = Instant::ZERO;
        for i in 0..1000 {
            let a = fifo
                .send(Instant::ZERO + Duration::from_micros(i * 100), 100)
                .unwrap();
            assert!(a >= last);
            last = a;
        }
        let mut re = link(LinkParams {
            delay: ms(10),
            jitter: j,
            reorder: true,
            ..Default::default()
        });
        let arrivals: Vec<_> = (0..1000)
            .map(|i| {
                re.send(Instant::ZERO + Duration::from_micros(i * 100), 100)
                    .unwrap()
            })
            .collect();
        assert!(
            arrivals.windows(2).any(|w| w[1] < w[0]),
            "uniform ±5 ms at 100 us spacing must reorder"
        );
        // Uniform ±5 ms around 10 ms: everything within [5, 15] ms of sending.
        for (i, a) in arrivals.iter().enumerate() {
            let d = a.saturating_since(Instant::ZERO + Duration::from_micros(i as u64 * 100));
            assert!(d >= ms(5) && d <= ms(15), "{d}");
        }
    }

    #[test]
    fn trace_delivers_at_opportunities() {
        // Opportunities at 1, 1, 5 ms, period 5 ms: 3 × 1500 B per 5 ms = 7.2 Mbit/s.
        let t = Arc::new(Trace::parse("t", "1\n1\n5\n").unwrap());
        assert!((t.mean_rate_bps() - 7_200_000.0).abs() < 1.0);
        let mut l = link(LinkParams {
            trace: Some(t),
            ..Default::default()
        });
        let z = Instant::ZERO;
        assert_eq!(l.send(z, 1500), Ok(z + ms(1)));
        assert_eq!(l.send(z, 1500), Ok(z + ms(1)));
        assert_eq!(l.send(z, 1500), Ok(z + ms(5)));
        // Next cycle: 6 ms. Two small packets share one opportunity's credit.
        assert_eq!(l.send(z, 700), Ok(z + ms(6)));
        assert_eq!(l.send(z, 700), Ok(z + ms(6)));
        // 100 B left in that opportunity; 200 B needs the next one, also at 6 ms.
        assert_eq!(l.send(z, 200), Ok(z + ms(6)));
        // Idle until 20 ms: opportunities passed unused are lost; next is at 21 ms.
        assert_eq!(l.send(z + ms(20), 1500), Ok(z + ms(21)));
    }

    #[test]
    fn down_link_drops_and_set_params_keeps_schedule() {
        let mut l = link(LinkParams {
            bandwidth: Some(BitRate(1_000_000)),
            ..Default::default()
        });
        assert_eq!(l.send(Instant::ZERO, 1500), Ok(Instant::ZERO + ms(12)));
        l.set_params(LinkParams {
            bandwidth: Some(BitRate(2_000_000)),
            ..Default::default()
        });
        // The first packet still occupies the transmitter until 12 ms; the next takes 6 ms.
        assert_eq!(l.send(Instant::ZERO, 1500), Ok(Instant::ZERO + ms(18)));
        l.set_up(false);
        assert_eq!(l.send(Instant::ZERO, 1500), Err(DropReason::Down));
    }

    #[test]
    fn packetization() {
        assert_eq!(packet_sizes(0).collect::<Vec<_>>(), vec![40]);
        assert_eq!(packet_sizes(200).collect::<Vec<_>>(), vec![240]);
        assert_eq!(
            packet_sizes(4096).collect::<Vec<_>>(),
            vec![1500, 1500, 1216]
        );
        assert_eq!(packet_sizes(2920).collect::<Vec<_>>(), vec![1500, 1500]);
    }
}
