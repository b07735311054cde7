//! Traffic-control options built by hand, as bytes.
//!
//! netlink-packet-route has typed options only for `ingress` and `fq_codel`, so the `tbf` and
//! `netem` options are encoded here exactly as iproute2's `tc` encodes them (same attribute order,
//! same rate table, same integer truncations), and unit-tested against bytes captured from `tc`
//! with `strace -f -e trace=sendmsg -xx` (the fixtures under `testdata/` name the command).
//!
//! Timing constants come from the kernel's packet scheduler clock, fixed since Linux 2.6.31:
//! a scheduler tick is 64 ns (`PSCHED_SHIFT = 6`), so `tc` converts microseconds to ticks with a
//! factor of 1000 / 64 (what `/proc/net/psched` reports as `000003e8 00000040 000f4240 …`).

use crate::model::link::{default_queue, JitterDist, LinkParams, Loss};
use crate::scenario::units::QueueLimit;

/// Bytes of one full-size frame as a qdisc counts it (1500-byte MTU + Ethernet header).
pub const FRAME_BYTES: u64 = 1514;

/// `TCA_TBF_PARMS`, `TCA_TBF_RTAB`, `TCA_TBF_RATE64`, `TCA_TBF_BURST` (linux/pkt_sched.h).
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RTAB: u16 = 2;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
/// `TC_LINKLAYER_ETHERNET`.
const LINKLAYER_ETHERNET: u8 = 1;
/// Microseconds to scheduler ticks (64 ns each).
const TICKS_PER_USEC: f64 = 1000.0 / 64.0;

/// A token-bucket filter, `tc qdisc replace dev DEV root tbf rate R burst B limit L`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tbf {
    /// Bytes per second.
    pub rate: u64,
    /// Bucket size in bytes.
    pub burst: u32,
    /// Queue limit in bytes (packets waiting for tokens).
    pub limit: u32,
}

impl Tbf {
    /// The shaping for one direction of a link with these parameters, or None for an unshaped
    /// link. The bucket holds 4 ms of traffic (one tick at HZ = 250, tc's rule of thumb
    /// `burst ≥ rate / HZ`) but at least two full frames: a smaller bucket overflows while the
    /// qdisc waits for a late timer on a loaded machine, and the link then falls short of its
    /// rate (measured: 6–7 % short at 10 Mbit/s with a 2.4 ms bucket). The queue is the link's
    /// queue limit (its default: one bandwidth-delay product, at least 64 packets), counted in
    /// full frames.
    pub fn for_link(params: &LinkParams) -> Option<Tbf> {
        let bps = params.bandwidth?.bits_per_sec();
        let rate = (bps / 8).max(1);
        let burst = (rate / 250).max(2 * FRAME_BYTES).min(u64::from(u32::MAX)) as u32;
        let limit = match default_queue(params) {
            QueueLimit::Packets(n) => n.saturating_mul(FRAME_BYTES),
            QueueLimit::Bytes(b) => b,
        }
        .max(FRAME_BYTES)
        .min(u64::from(u32::MAX)) as u32;
        Some(Tbf { rate, burst, limit })
    }

    /// The attributes nested in `TCA_OPTIONS`, as (type, payload) pairs in `tc`'s order.
    pub fn options(&self) -> Vec<(u16, Vec<u8>)> {
        let rate32 = self.rate.min(u64::from(u32::MAX)) as u32;
        // tc: cell_log from mtu 2047 (the default when no mtu is given): 2047 >> 3 = 255.
        let cell_log = 3u8;
        let mut parms = Vec::with_capacity(36);
        // struct tc_ratespec rate
        parms.push(cell_log);
        parms.push(LINKLAYER_ETHERNET);
        parms.extend_from_slice(&0u16.to_ne_bytes()); // overhead
        parms.extend_from_slice(&(-1i16).to_ne_bytes()); // cell_align
        parms.extend_from_slice(&0u16.to_ne_bytes()); // mpu
        parms.extend_from_slice(&rate32.to_ne_bytes());
        // struct tc_ratespec peakrate: unused
        parms.extend_from_slice(&[0u8; 12]);
        parms.extend_from_slice(&self.limit.to_ne_bytes());
        parms.extend_from_slice(&xmittime(self.rate, u64::from(self.burst)).to_ne_bytes());
        parms.extend_from_slice(&0u32.to_ne_bytes()); // mtu (peak rate only)
        let mut out = vec![
            (TCA_TBF_PARMS, parms),
            (TCA_TBF_BURST, self.burst.to_ne_bytes().to_vec()),
        ];
        if self.rate >= 1 << 32 {
            out.push((TCA_TBF_RATE64, self.rate.to_ne_bytes().to_vec()));
        }
        let mut rtab = Vec::with_capacity(1024);
        for i in 0..256u64 {
            rtab.extend_from_slice(&xmittime(u64::from(rate32), (i + 1) << cell_log).to_ne_bytes());
        }
        out.push((TCA_TBF_RTAB, rtab));
        out
    }
}

/// `TCA_NETEM_LOSS`, `TCA_NETEM_RATE`, `TCA_NETEM_RATE64`; `NETEM_LOSS_GE`; `NLA_F_NESTED`.
const TCA_NETEM_LOSS: u16 = 5;
const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_RATE64: u16 = 8;
const NETEM_LOSS_GE: u16 = 2;
const NLA_F_NESTED: u16 = 1 << 15;

/// A `netem` qdisc: delay, uniform jitter, loss and rate for one link direction, in the
/// kernel's units (`tc qdisc replace dev DEV root netem delay D J loss … rate R limit L`).
/// Used instead of `tbf` where a link needs delay, jitter or loss and the kernel has netem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Netem {
    pub delay_us: u32,
    /// Uniform in ±jitter around the delay (netem without a distribution table).
    pub jitter_us: u32,
    /// Independent loss, scaled to `u32::MAX` = 100 %.
    pub loss: u32,
    /// Gilbert-Elliott as the kernel keeps it: p, r, h (delivery in the bad state),
    /// k1 = 1 − k (loss in the good state), each scaled to `u32::MAX`.
    pub gilbert_elliott: Option<[u32; 4]>,
    /// Bytes per second; None: unlimited.
    pub rate: Option<u64>,
    /// Queue limit in packets.
    pub limit: u32,
}

fn scaled(p: f64) -> u32 {
    (p.clamp(0.0, 1.0) * f64::from(u32::MAX)).round_ties_even() as u32
}

impl Netem {
    /// The netem for a link, or why kernel netem cannot reproduce it (sdnbed's model is then
    /// only available from the user-space emulator).
    pub fn for_link(params: &LinkParams) -> Result<Netem, String> {
        if params.trace.is_some() {
            return Err("netem cannot replay a delivery trace".into());
        }
        let jitter_us = match params.jitter {
            None => 0,
            Some(j) if j.distribution == JitterDist::Uniform => j.amount.as_nanos() / 1000,
            Some(j) => {
                return Err(format!(
                    "{:?} jitter needs a netem distribution table, which sdnbed does not load",
                    j.distribution
                ))
            }
        };
        let (loss, gilbert_elliott) = match params.loss {
            Loss::None => (0, None),
            Loss::Bernoulli(p) => (scaled(p), None),
            Loss::GilbertElliott { p, r, h, k } => {
                (0, Some([scaled(p), scaled(r), scaled(h), scaled(1.0 - k)]))
            }
        };
        let limit = match default_queue(params) {
            QueueLimit::Packets(n) => n,
            QueueLimit::Bytes(b) => b.div_ceil(FRAME_BYTES),
        }
        .clamp(1, u64::from(u32::MAX)) as u32;
        Ok(Netem {
            delay_us: (params.delay.as_nanos() / 1000).min(u64::from(u32::MAX)) as u32,
            jitter_us: jitter_us.min(u64::from(u32::MAX)) as u32,
            loss,
            gilbert_elliott,
            rate: params.bandwidth.map(|b| (b.bits_per_sec() / 8).max(1)),
            limit,
        })
    }

    /// The payload of `TCA_OPTIONS`: `struct tc_netem_qopt` followed by attributes, in `tc`'s
    /// order. Delays beyond 2^32 ticks (about 274 s) are clamped.
    pub fn options(&self) -> Vec<u8> {
        let ticks = |us: u32| (f64::from(us) * TICKS_PER_USEC).min(f64::from(u32::MAX)) as u32;
        let mut out = Vec::with_capacity(64);
        for v in [
            ticks(self.delay_us),
            self.limit,
            self.loss,
            0,
            0,
            ticks(self.jitter_us),
        ] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        let mut nlas: Vec<(u16, Vec<u8>)> = Vec::new();
        if let Some(ge) = self.gilbert_elliott {
            let inner: Vec<u8> = ge.iter().flat_map(|v| v.to_ne_bytes()).collect();
            nlas.push((
                TCA_NETEM_LOSS | NLA_F_NESTED,
                encode_nlas(&[(NETEM_LOSS_GE, inner)]),
            ));
        }
        if let Some(rate) = self.rate {
            if rate >= 1 << 32 {
                nlas.push((TCA_NETEM_RATE64, rate.to_ne_bytes().to_vec()));
            }
            // struct tc_netem_rate: rate, packet_overhead, cell_size, cell_overhead.
            let mut r = (rate.min(u64::from(u32::MAX)) as u32)
                .to_ne_bytes()
                .to_vec();
            r.extend_from_slice(&[0u8; 12]);
            nlas.push((TCA_NETEM_RATE, r));
        }
        out.extend_from_slice(&encode_nlas(&nlas));
        out
    }
}

/// What shapes one direction of a link: `tbf` for a rate alone, `netem` when the link also
/// needs delay, jitter or loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shaper {
    Tbf(Tbf),
    Netem(Netem),
}

impl Shaper {
    /// None for an unshaped link; an error when the link needs what netem cannot do.
    pub fn for_link(params: &LinkParams) -> Result<Option<Shaper>, String> {
        if needs_emulation(params).is_some() {
            Netem::for_link(params).map(|n| Some(Shaper::Netem(n)))
        } else {
            Ok(Tbf::for_link(params).map(Shaper::Tbf))
        }
    }
}

/// What a link needs beyond a rate (delay, jitter, loss, a trace), in words; None if nothing.
pub fn needs_emulation(p: &LinkParams) -> Option<String> {
    let mut what = Vec::new();
    if !p.delay.is_zero() {
        what.push(format!("delay {} ms", p.delay.as_millis_f64()));
    }
    if p.jitter.is_some() {
        what.push("jitter".to_string());
    }
    if p.loss != Loss::None {
        what.push("loss".to_string());
    }
    if p.trace.is_some() {
        what.push("a delivery trace".to_string());
    }
    (!what.is_empty()).then(|| what.join(", "))
}

/// iproute2's `tc_calc_xmittime`: the time to send `size` bytes at `rate` bytes/s, truncated to
/// whole microseconds, then to whole ticks.
fn xmittime(rate: u64, size: u64) -> u32 {
    let usec = (1_000_000.0 * (size as f64 / rate as f64)) as u32;
    (f64::from(usec) * TICKS_PER_USEC) as u32
}

/// Encodes (type, payload) pairs as netlink attributes (4-byte aligned), the payload of
/// `TCA_OPTIONS`.
pub fn encode_nlas(nlas: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, payload) in nlas {
        let len = 4 + payload.len();
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len() + (4 - len % 4) % 4, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::units::BitRate;

    fn unhex(s: &str) -> Vec<u8> {
        let s = s.trim();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn tbf_10mbit_matches_tc() {
        // tc qdisc add dev d0 root tbf rate 10mbit burst 32kbit latency 50ms
        // (32kbit = 4096 bytes; limit = 1250000 B/s × 50 ms + 4096 = 66596)
        let tbf = Tbf {
            rate: 1_250_000,
            burst: 4096,
            limit: 66_596,
        };
        let want = unhex(include_str!("testdata/tbf-10mbit.hex"));
        assert_eq!(encode_nlas(&tbf.options()), want);
    }

    #[test]
    fn tbf_100mbit_matches_tc() {
        // tc qdisc add dev d0 root tbf rate 100mbit burst 100000b limit 150000b
        let tbf = Tbf {
            rate: 12_500_000,
            burst: 100_000,
            limit: 150_000,
        };
        let want = unhex(include_str!("testdata/tbf-100mbit.hex"));
        assert_eq!(encode_nlas(&tbf.options()), want);
    }

    fn ms(n: u64) -> crate::model::time::Duration {
        crate::model::time::Duration::from_millis(n)
    }

    #[test]
    fn netem_matches_tc() {
        use crate::model::link::Jitter;
        // tc qdisc add dev d0 root netem delay 10ms 1ms loss 0.1% rate 100mbit limit 200
        let p = LinkParams {
            bandwidth: Some(BitRate(100_000_000)),
            delay: ms(10),
            jitter: Some(Jitter {
                amount: ms(1),
                distribution: JitterDist::Uniform,
            }),
            loss: Loss::Bernoulli(0.001),
            queue: Some(QueueLimit::Packets(200)),
            ..Default::default()
        };
        let want = unhex(include_str!("testdata/netem-rate.hex"));
        assert_eq!(Netem::for_link(&p).unwrap().options(), want);
        // tc qdisc add dev d0 root netem delay 5ms loss gemodel 1% 30% 100% 0% limit 64
        // (tc's arguments are p, r, 1−h, 1−k: the model's h = 0, k = 1)
        let ge = LinkParams {
            delay: ms(5),
            loss: Loss::GilbertElliott {
                p: 0.01,
                r: 0.3,
                h: 0.0,
                k: 1.0,
            },
            queue: Some(QueueLimit::Packets(64)),
            ..Default::default()
        };
        let want = unhex(include_str!("testdata/netem-ge.hex"));
        assert_eq!(Netem::for_link(&ge).unwrap().options(), want);
        // tc qdisc add dev d0 root netem delay 1ms rate 40gbit (limit 1000, tc's default)
        let fast = LinkParams {
            bandwidth: Some(BitRate(40_000_000_000)),
            delay: ms(1),
            queue: Some(QueueLimit::Packets(1000)),
            ..Default::default()
        };
        let want = unhex(include_str!("testdata/netem-rate64.hex"));
        assert_eq!(Netem::for_link(&fast).unwrap().options(), want);
        // tc qdisc add dev d0 root netem delay 10s
        let slow = LinkParams {
            delay: ms(10_000),
            queue: Some(QueueLimit::Packets(1000)),
            ..Default::default()
        };
        let want = unhex(include_str!("testdata/netem-10s.hex"));
        assert_eq!(Netem::for_link(&slow).unwrap().options(), want);
    }

    #[test]
    fn netem_refuses_what_it_cannot_do() {
        use crate::model::link::Jitter;
        let p = LinkParams {
            delay: ms(10),
            jitter: Some(Jitter {
                amount: ms(2),
                distribution: JitterDist::Normal,
            }),
            ..Default::default()
        };
        assert!(Netem::for_link(&p)
            .unwrap_err()
            .contains("distribution table"));
    }

    #[test]
    fn rate64_only_above_32_bits() {
        let tbf = Tbf {
            rate: 5_000_000_000,
            burst: 5_000_000,
            limit: 10_000_000,
        };
        let kinds: Vec<u16> = tbf.options().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            vec![TCA_TBF_PARMS, TCA_TBF_BURST, TCA_TBF_RATE64, TCA_TBF_RTAB]
        );
        let parms = &tbf.options()[0].1;
        assert_eq!(&parms[8..12], &u32::MAX.to_ne_bytes());
    }

    #[test]
    fn link_shaping_from_params() {
        let p = LinkParams {
            bandwidth: Some(BitRate(100_000_000)),
            ..Default::default()
        };
        // 12.5 MB/s: 4 ms = 50000 bytes; default queue 64 packets of 1514 bytes.
        assert_eq!(
            Tbf::for_link(&p),
            Some(Tbf {
                rate: 12_500_000,
                burst: 50_000,
                limit: 64 * 1514
            })
        );
        let slow = LinkParams {
            bandwidth: Some(BitRate(1_000_000)),
            queue: Some(QueueLimit::Bytes(20_000)),
            ..Default::default()
        };
        assert_eq!(
            Tbf::for_link(&slow),
            Some(Tbf {
                rate: 125_000,
                burst: 3028,
                limit: 20_000
            })
        );
        assert_eq!(Tbf::for_link(&LinkParams::default()), None);
    }
}
