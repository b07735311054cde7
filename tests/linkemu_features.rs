//! Privileged: each feature of the user-space link emulator, end to end between two network
//! namespaces whose link the emulator carries (TUN devices in place of the veth pair).
//!
//! Statistical bounds are ±4.5 standard deviations of the estimator (false alarm ~1 in 150,000
//! per bound) plus, for timings, an allowance for the emulator's and the receiver's wake-up
//! latency on a shared 2-core machine, stated at each test. Tests in this binary run one at a
//! time (`serial`) so they do not disturb each other's timing.

mod linkemu_common;
mod netns_common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use linkemu_common::*;
use sdnbed::linkemu::pcap;
use sdnbed::model::link::{Jitter, JitterDist, LinkDirection, LinkParams, Loss, Trace};
use sdnbed::model::rng::{Rng, SeedTree};
use sdnbed::model::time::{Duration, Instant};
use sdnbed::scenario::units::{BitRate, QueueLimit};

/// Runs a timing-bound check up to three times and fails only if every attempt does. On the
/// shared 2-core VMs an attempt can lose its CPU at the wrong moment and miss a bound by a
/// fraction of a millisecond; a real regression misses it in all three (the same rule as
/// `workload_precision.rs`). Each attempt builds and tears down its own hosts.
///
/// Before that, the machine's own timer is measured: where a 1 ms sleep wakes more than
/// [`MAX_WAKE_P99`] late at p99 (as on some VMs, idle), the emulator cannot keep these bounds
/// whatever it does, and the check is skipped with the measurement printed.
fn in_one_of_three(check: impl Fn()) {
    if let Some(why) = timer_too_late() {
        eprintln!("skipped: {why}");
        return;
    }
    for attempt in 1..=3 {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&check)) {
            Ok(()) => return,
            Err(e) if attempt == 3 => std::panic::resume_unwind(e),
            Err(_) => eprintln!("attempt {attempt} missed a timing bound; trying again"),
        }
    }
}

/// The wake-up lateness (p99) above which the timing bounds of these tests cannot hold.
const MAX_WAKE_P99: std::time::Duration = std::time::Duration::from_micros(300);

/// Why this machine's timer is too late for the timing bounds, if it is: 300 sleeps of 1 ms
/// with the emulator's own timer and no spin.
fn timer_too_late() -> Option<String> {
    use sdnbed::workload::timer::{sleep_until, Clock};
    let clock = Clock::start_now();
    let mut late: Vec<u64> = (0..300)
        .map(|_| {
            let deadline = clock.now() + Duration::from_millis(1);
            sleep_until(&clock, deadline, Duration::ZERO).as_nanos()
        })
        .collect();
    late.sort_unstable();
    let p99 = std::time::Duration::from_nanos(late[296]);
    (p99 > MAX_WAKE_P99).then(|| {
        format!(
            "this machine's timer wakes {p99:?} late at p99 (the bounds need at most \
             {MAX_WAKE_P99:?}); timing bounds not checked here"
        )
    })
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn delay_is_added_each_way() {
    let _g = serial();
    in_one_of_three(|| {
        let r = two_hosts(
            LinkParams {
                delay: ms(10),
                ..Default::default()
            },
            1,
            None,
        );
        let got = udp_stream(&r, 200, 1000.0, 100, StdDuration::from_millis(100), |_| {});
        assert_eq!(got.len(), 200);
        let mut d: Vec<u64> = got.iter().map(|g| g.delay_ns).collect();
        d.sort();
        // Never early; the median within 1 ms of 10 ms (wake-ups of the emulator and receiver).
        assert!(d[0] >= 10_000_000, "min {}", d[0]);
        assert!(
            percentile(&d, 0.5) < 11_000_000,
            "median {}",
            percentile(&d, 0.5)
        );
        let c = r.emu.counters();
        assert_eq!((c[0].1.as_str(), c[0].2.as_str()), ("h1", "h2"));
        assert_eq!(c[0].3.packets, 200);
        // 100 bytes of UDP payload + 8 UDP + 20 IP.
        assert_eq!(c[0].3.bytes, 200 * 128);
        // The routes were re-installed through the TUN devices: ping works both ways.
        assert!(netns_common::ping(&r.h1, r.a2, StdDuration::from_secs(1)));
        assert!(netns_common::ping(&r.h2, r.a1, StdDuration::from_secs(1)));
        // link-down drops at the model (counted), link-up carries again.
        let mut emu = r.emu;
        emu.set_up(0, false).unwrap();
        assert!(!netns_common::ping(
            &r.h1,
            r.a2,
            StdDuration::from_millis(100)
        ));
        emu.set_up(0, true).unwrap();
        assert!(netns_common::ping(&r.h1, r.a2, StdDuration::from_secs(1)));
        assert!(emu.counters()[0].3.dropped_down >= 1);
        assert!(emu.set_up(1, false).is_err(), "no link #1");
    });
}

/// One-way delays of 3,000 datagrams at 3,000/s through jitter that may reorder.
fn jitter_sample(dist: JitterDist) -> Vec<f64> {
    let r = two_hosts(
        LinkParams {
            delay: ms(5),
            jitter: Some(Jitter {
                amount: ms(1),
                distribution: dist,
            }),
            reorder: true,
            ..Default::default()
        },
        2,
        None,
    );
    let got = udp_stream(&r, 3000, 3000.0, 64, StdDuration::from_millis(100), |_| {});
    assert_eq!(got.len(), 3000);
    got.iter().map(|g| g.delay_ns as f64 / 1e6).collect()
}

/// The median and the interquartile range of `xs`. The emulator's timing noise is only ever
/// late and comes in rare bursts (a preempted packet thread delays the packets of those few
/// milliseconds), which moves means and standard deviations but hardly the quartiles; so the
/// distributions are checked on quartiles.
fn median_iqr(xs: &[f64]) -> (f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.75) - q(0.25))
}

#[test]
fn jitter_distributions() {
    let _g = serial();
    in_one_of_three(|| {
        // 3,000 samples: a quartile's standard error is about 0.03 ms for these distributions; the
        // bounds allow ±4 of them plus up to 0.1 ms of wake-up latency.
        // Normal, sd 1 ms around 5 ms: median 5 ms, IQR 1.349 ms.
        let d = jitter_sample(JitterDist::Normal);
        let (med, iqr) = median_iqr(&d);
        assert!((4.9..5.2).contains(&med), "normal median {med}");
        assert!((1.22..1.48).contains(&iqr), "normal IQR {iqr}");
        // Uniform ±1 ms: median 5 ms, IQR 1 ms, nothing below 4 ms.
        let d = jitter_sample(JitterDist::Uniform);
        let (med, iqr) = median_iqr(&d);
        assert!((4.9..5.2).contains(&med), "uniform median {med}");
        assert!((0.88..1.12).contains(&iqr), "uniform IQR {iqr}");
        assert!(d.iter().all(|&x| x >= 4.0), "uniform below 4 ms");
        // Pareto, shape 3, mean 1 ms: its scale is 2/3 ms, so nothing below 5.667 ms, and its
        // median 2/3 · 2^(1/3) = 0.840 ms extra (its quartiles are 0.734 and 1.058 ms: IQR 0.324).
        let d = jitter_sample(JitterDist::Pareto);
        let (med, iqr) = median_iqr(&d);
        assert!((5.80..5.95).contains(&med), "pareto median {med}");
        assert!((0.27..0.40).contains(&iqr), "pareto IQR {iqr}");
        assert!(d.iter().all(|&x| x >= 5.666), "pareto below its scale");
    });
}

#[test]
fn jitter_keeps_fifo_order_unless_reorder() {
    let _g = serial();
    let r = two_hosts(
        LinkParams {
            delay: ms(5),
            jitter: Some(Jitter {
                amount: ms(2),
                distribution: JitterDist::Uniform,
            }),
            ..Default::default()
        },
        3,
        None,
    );
    // 2,000 datagrams 0.5 ms apart under ±2 ms of jitter: without FIFO, many would overtake.
    let got = udp_stream(&r, 2000, 2000.0, 64, StdDuration::from_millis(100), |_| {});
    assert_eq!(got.len(), 2000);
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "reordered");
}

/// Which of `n` packets a model direction with `params` and `seed` loses.
fn model_losses(params: &LinkParams, seed: u64, n: u64) -> Vec<u64> {
    let mut d = LinkDirection::new(params.clone(), Rng::new(seed));
    (0..n)
        .filter(|&i| d.send(Instant::from_nanos(i * 1000), 100).is_err())
        .collect()
}

fn emulated_losses(params: &LinkParams, seed: u64, n: u64) -> Vec<u64> {
    let r = two_hosts(params.clone(), seed, None);
    let got = udp_stream(&r, n, 20_000.0, 72, StdDuration::from_millis(100), |_| {});
    let c = r.emu.counters()[0].3;
    // Every datagram reached the model (none was dropped before it, e.g. in a full TUN queue).
    assert_eq!(c.packets + c.dropped_loss, n, "{c:?}");
    let mut seen = vec![false; n as usize];
    for g in got {
        seen[g.seq as usize] = true;
    }
    (0..n).filter(|&i| !seen[i as usize]).collect()
}

#[test]
fn loss_models_rates_and_seeds() {
    let _g = serial();
    let n = 20_000u64;
    // Bernoulli 5 %: binomial sd √(0.05·0.95/20000) = 0.0015, ±4.5σ = 0.0069.
    let bern = LinkParams {
        loss: Loss::Bernoulli(0.05),
        ..Default::default()
    };
    let lost = emulated_losses(&bern, 11, n);
    let rate = lost.len() as f64 / n as f64;
    assert!((rate - 0.05).abs() < 0.0069, "bernoulli {rate}");
    // The emulator lost exactly the packets the simulator's model loses with the seed the
    // simulator derives for this direction, so equal seeds give identical sequences.
    let seed = SeedTree::new(11).seed_for("link/h1-h2/fwd");
    assert_eq!(lost, model_losses(&bern, seed, n));
    assert_eq!(lost, emulated_losses(&bern, 11, n));
    assert_ne!(lost, emulated_losses(&bern, 12, n));
    // Gilbert-Elliott p = 1 %, r = 30 %, h = 0, k = 1: stationary loss p/(p+r) = 1/31. Losses
    // come in bursts (lag-1 correlation 1 − p − r = 0.69), which inflates the variance of the
    // share by (1+ρ)/(1−ρ) = 5.45: sd 0.0029, ±4.5σ = 0.013.
    let ge = LinkParams {
        loss: Loss::GilbertElliott {
            p: 0.01,
            r: 0.3,
            h: 0.0,
            k: 1.0,
        },
        ..Default::default()
    };
    let lost = emulated_losses(&ge, 21, n);
    let rate = lost.len() as f64 / n as f64;
    assert!((rate - 1.0 / 31.0).abs() < 0.013, "gilbert-elliott {rate}");
    let seed = SeedTree::new(21).seed_for("link/h1-h2/fwd");
    assert_eq!(lost, model_losses(&ge, seed, n));
}

#[test]
fn rate_shapes_tcp() {
    let _g = serial();
    in_one_of_three(|| {
        // 20 Mbit/s: full segments are 1500-byte IP packets carrying 1448 bytes (TCP timestamps),
        // so goodput is 20 × 1448/1500 = 19.31 Mbit/s; ±5 %.
        let r = two_hosts(
            LinkParams {
                bandwidth: Some(BitRate(20_000_000)),
                delay: ms(2),
                queue: Some(QueueLimit::Packets(200)),
                ..Default::default()
            },
            4,
            None,
        );
        let g = tcp_goodput(
            &r,
            StdDuration::from_millis(700),
            StdDuration::from_secs(2),
            &mut || {},
        );
        let want = 20e6 * 1448.0 / 1500.0;
        assert!((g / want - 1.0).abs() < 0.05, "goodput {g} want {want}");
    });
}

#[test]
fn queue_overflow_drops_at_the_tail() {
    let _g = serial();
    in_one_of_three(|| {
        // 10 Mbit/s with a 20-packet queue (then the same in bytes: 20 × 1,250), offered 2,000
        // packets of 1,250 bytes (IP) at 2,000/s = 20 Mbit/s for 1 s: the link carries 1,000/s, so
        // about half is dropped at the queue.
        for queue in [QueueLimit::Packets(20), QueueLimit::Bytes(25_000)] {
            let r = two_hosts(
                LinkParams {
                    bandwidth: Some(BitRate(10_000_000)),
                    queue: Some(queue),
                    ..Default::default()
                },
                5,
                None,
            );
            let got = udp_stream(
                &r,
                2000,
                2000.0,
                1250 - 28,
                StdDuration::from_millis(200),
                |_| {},
            );
            let c = r.emu.counters()[0].3;
            assert_eq!(c.packets + c.dropped_queue, 2000, "{queue:?} {c:?}");
            assert_eq!(c.packets, got.len() as u64);
            // Carried: 1 s of transmission plus the 20 queued at the end: 1,020 (±2 %: pacing).
            assert!((c.packets as f64 - 1020.0).abs() < 20.0, "{queue:?} {c:?}");
            // The queueing delay never exceeds 20 packets × 1 ms plus one in transmission (+ 2 ms
            // for the emulator's wake-ups on a shared machine).
            let worst = got.iter().map(|g| g.delay_ns).max().unwrap();
            assert!(worst < 21_000_000 + 2_000_000, "{queue:?} {worst}");
            assert!(
                worst > 18_000_000,
                "{queue:?}: the queue never filled: {worst}"
            );
        }
    });
}

#[test]
fn trace_sets_the_rate() {
    let _g = serial();
    // Opportunities at 1, 2, 2, 4 ms, period 4 ms: 4 × 1500 B per 4 ms = 12 Mbit/s, so 1,000
    // full segments per second of 1448 bytes: goodput 11.58 Mbit/s; ±5 %.
    let trace = Arc::new(Trace::parse("test.mm", "1\n2\n2\n4\n").unwrap());
    let r = two_hosts(
        LinkParams {
            trace: Some(trace),
            queue: Some(QueueLimit::Packets(200)),
            ..Default::default()
        },
        6,
        None,
    );
    let g = tcp_goodput(
        &r,
        StdDuration::from_millis(700),
        StdDuration::from_secs(2),
        &mut || {},
    );
    let want = 1000.0 * 1448.0 * 8.0;
    assert!((g / want - 1.0).abs() < 0.05, "goodput {g} want {want}");
}

#[test]
fn set_link_mid_flow_keeps_queued_packets() {
    let _g = serial();
    in_one_of_three(|| {
        let r = two_hosts(
            LinkParams {
                delay: ms(20),
                ..Default::default()
            },
            7,
            None,
        );
        // 400 datagrams at 1,000/s; after the 200th is sent the delay becomes 5 ms. The ~20 in
        // flight keep their 20 ms; later ones take 5 ms (FIFO: behind the last slow one at first).
        let ctl = r.emu.control().expect("running").clone();
        let got = udp_stream(&r, 400, 1000.0, 64, StdDuration::from_millis(100), |i| {
            if i == 200 {
                ctl.set_params(
                    0,
                    LinkParams {
                        delay: ms(5),
                        ..Default::default()
                    },
                );
            }
        });
        assert_eq!(got.len(), 400, "a packet was lost in the change");
        let by_seq = |s: u64| got.iter().find(|g| g.seq == s).unwrap().delay_ns;
        for (seq, lo) in [(150, 20_000_000), (199, 20_000_000), (300, 5_000_000)] {
            let d = by_seq(seq);
            assert!((lo..lo + 2_000_000).contains(&d), "datagram {seq}: {d} ns");
        }
        assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
    });
}

#[test]
fn capture_writes_what_entered_and_left() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let r = two_hosts(
        LinkParams {
            delay: ms(3),
            loss: Loss::Bernoulli(0.3),
            ..Default::default()
        },
        8,
        Some(dir.path()),
    );
    let got = udp_stream(&r, 50, 1000.0, 100, StdDuration::from_millis(50), |_| {});
    let c = r.emu.counters()[0].3;
    let (h1, h2) = (r.h1.clone(), r.h2.clone());
    drop(r);
    // Teardown stopped the emulator (the pcap files are complete) and removed the namespaces,
    // and with them the TUN devices.
    for ns in [h1, h2] {
        assert!(
            !sdnbed::dataplane::netlink::netns_path(&ns).exists(),
            "{ns} left"
        );
    }
    let read = |s: &str| {
        let f = std::fs::File::open(dir.path().join(format!("h1-h2.{s}.pcap"))).unwrap();
        let (lt, recs) = pcap::read_all(f).unwrap();
        assert_eq!(lt, pcap::LINKTYPE_RAW);
        recs
    };
    let (entered, left) = (read("entered"), read("left"));
    // Only our datagrams crossed (UDP to port 7000), all 50 entered, the survivors left.
    let seq = |r: &pcap::Record| {
        assert_eq!(r.data[0], 0x45);
        assert_eq!(r.data[9], 17);
        assert_eq!(u16::from_be_bytes([r.data[22], r.data[23]]), 7000);
        u64::from_le_bytes(r.data[28..36].try_into().unwrap())
    };
    assert_eq!(
        entered.iter().map(seq).collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>()
    );
    assert_eq!(left.len() as u64, c.packets);
    assert_eq!(left.len(), got.len());
    assert_eq!(
        left.iter().map(seq).collect::<Vec<_>>(),
        got.iter().map(|g| g.seq).collect::<Vec<_>>()
    );
    for l in &left {
        let e = entered.iter().find(|e| seq(e) == seq(l)).unwrap();
        assert_eq!(e.data, l.data);
        assert!(l.unix_us - e.unix_us >= 3000, "left before its delay");
    }
}

#[test]
fn kernel_choice_without_netem_fails_before_deploying() {
    use sdnbed::scenario::types::{EmulatorChoice, NodeKind};
    let mut l = netns_common::link(netns_common::n("h1"), netns_common::n("h2"), None);
    l.params.delay = ms(10);
    l.emulator = EmulatorChoice::Kernel;
    let sc = netns_common::scenario(
        vec![
            netns_common::node("h1", NodeKind::Host),
            netns_common::node("h2", NodeKind::Host),
        ],
        vec![],
        vec![l],
        vec![],
    );
    let run = netns_common::run_id("kern");
    let opts = sdnbed::dataplane::DeployOptions::default();
    let e = sdnbed::linkemu::deploy(&sc, &run, &opts, None)
        .err()
        .expect("this kernel has no netem");
    assert_eq!(
        e.to_string(),
        "link h1-h2 asks for emulator = \"kernel\" and needs delay 10 ms, but this kernel has no \
         sch_netem; use emulator = \"auto\" or \"userspace\" for the user-space link emulator"
    );
    // Nothing was deployed and nothing is left: no namespace and no ledger of this run.
    let left: Vec<_> = std::fs::read_dir(sdnbed::dataplane::netlink::NETNS_DIR)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&run))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!sdnbed::dataplane::ledger::list_runs(&opts.ledger_dir)
        .unwrap()
        .contains(&run));
}

#[test]
fn replica_links_are_emulated_as_replicas_come_and_go() {
    use sdnbed::scenario::types::{EmulatorChoice, LinkEnd, NodeKind};
    let _g = serial();
    let mut web = netns_common::link(LinkEnd::Service("web".into()), netns_common::n("gw"), None);
    web.params.delay = ms(3);
    web.emulator = EmulatorChoice::Userspace;
    let sc = netns_common::scenario(
        vec![
            netns_common::node("client", NodeKind::Client),
            netns_common::node("gw", NodeKind::Gateway),
        ],
        vec![netns_common::service("web", 1, 8080, "gw")],
        vec![
            netns_common::link(netns_common::n("client"), netns_common::n("gw"), None),
            web,
        ],
        vec![],
    );
    let run = netns_common::run_id("rep");
    let (mut dp, mut emu) = sdnbed::linkemu::deploy(
        &sc,
        &run,
        &sdnbed::dataplane::DeployOptions::default(),
        None,
    )
    .unwrap();
    assert!(emu.carries(1) && !emu.carries(0));
    let gw = dp.plan().node("gw").unwrap().netns.clone();
    let rtt = |dst| {
        let t = std::time::Instant::now();
        assert!(netns_common::ping(&gw, dst, StdDuration::from_secs(1)));
        t.elapsed()
    };
    let mut addrs = Vec::new();
    for id in [0, 1] {
        let info = dp.add_replica("web", id).unwrap();
        emu.add_replica(&dp, "web", id).unwrap();
        addrs.push(info.addr);
    }
    // 3 ms each way on each replica's own link instance.
    for &a in &addrs {
        let t = rtt(a);
        assert!(
            t >= StdDuration::from_millis(6) && t < StdDuration::from_millis(40),
            "{t:?}"
        );
    }
    // set-link reaches every instance; a replica added later gets the new parameters.
    emu.set_link(
        1,
        LinkParams {
            delay: ms(10),
            ..Default::default()
        },
    )
    .unwrap();
    emu.remove_replica("web", 0);
    dp.remove_replica("web", 0).unwrap();
    let info = dp.add_replica("web", 2).unwrap();
    emu.add_replica(&dp, "web", 2).unwrap();
    for a in [addrs[1], info.addr] {
        let t = rtt(a);
        assert!(
            t >= StdDuration::from_millis(20) && t < StdDuration::from_millis(60),
            "{t:?}"
        );
    }
    // Counters per instance, direction A→B = web-ID→gw (the service is the link's first end);
    // the removed replica keeps its count.
    std::thread::sleep(StdDuration::from_millis(20));
    let c = emu.counters();
    let names: Vec<(String, String)> = c.iter().map(|r| (r.1.clone(), r.2.clone())).collect();
    assert_eq!(
        names,
        [
            ("web-0", "gw"),
            ("gw", "web-0"),
            ("web-1", "gw"),
            ("gw", "web-1"),
            ("web-2", "gw"),
            ("gw", "web-2")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert!(c.iter().all(|r| r.0 == 1 && r.3.packets >= 1), "{c:?}");
}

#[test]
fn auto_takes_the_emulator_exactly_when_the_kernel_has_no_netem() {
    use sdnbed::dataplane::ops::Executor;
    let netem = sdnbed::dataplane::netlink::Kernel::new()
        .unwrap()
        .netem_available(&format!("sdnbed-{}-probe", netns_common::run_id("auto")))
        .unwrap();
    let r = two_hosts_with(
        LinkParams {
            delay: ms(1),
            ..Default::default()
        },
        1,
        None,
        sdnbed::scenario::types::EmulatorChoice::Auto,
    );
    assert_eq!(r.emu.carries(0), !netem);
    assert!(netns_common::ping(&r.h1, r.a2, StdDuration::from_secs(1)));
}

#[test]
fn jitter_sequence_is_the_models_for_the_seed() {
    let _g = serial();
    in_one_of_three(|| {
        // Uniform ±2 ms around 4 ms, reordering allowed so that each packet's delay is its own
        // draw: the emulated one-way delays are the model's, drawn with the simulator's seed for
        // this direction, plus the emulation's own latency (never negative, small).
        let params = LinkParams {
            delay: ms(4),
            jitter: Some(Jitter {
                amount: ms(2),
                distribution: JitterDist::Uniform,
            }),
            reorder: true,
            ..Default::default()
        };
        let r = two_hosts(params.clone(), 31, None);
        let got = udp_stream(&r, 300, 1000.0, 64, StdDuration::from_millis(100), |_| {});
        assert_eq!(got.len(), 300);
        let mut model = LinkDirection::new(
            params,
            Rng::new(SeedTree::new(31).seed_for("link/h1-h2/fwd")),
        );
        let want: Vec<u64> = (0..300u64)
            .map(|i| {
                let t = Instant::from_nanos(i * 1_000_000);
                model.send(t, 92).unwrap().saturating_since(t).as_nanos()
            })
            .collect();
        let mut extra: Vec<i64> = got
            .iter()
            .map(|g| g.delay_ns as i64 - want[g.seq as usize] as i64)
            .collect();
        extra.sort();
        // The draws span 4 ms; a different sequence would miss by ~1.3 ms on average.
        assert!(
            extra[0] > -20_000,
            "earlier than the model: {} ns",
            extra[0]
        );
        assert!(
            extra[extra.len() * 95 / 100] < 300_000,
            "p95 {} ns",
            extra[extra.len() * 95 / 100]
        );
    });
}

/// A packet's entry time is when the node sent it, not when the emulator read it: the tap on a
/// TUN device reports the kernel's send time of a packet read 30 ms later.
#[test]
fn the_tap_times_a_packet_from_its_send() {
    use sdnbed::dataplane::netlink::netns_path;
    use sdnbed::linkemu::{tap::EntryTap, tun};
    use sdnbed::workload::timer::Clock;
    use std::os::fd::AsRawFd;
    let _g = serial();
    let run = netns_common::run_id("tap");
    let sc = netns_common::scenario(
        vec![
            netns_common::node("h1", sdnbed::scenario::types::NodeKind::Host),
            netns_common::node("h2", sdnbed::scenario::types::NodeKind::Host),
        ],
        vec![],
        vec![netns_common::link(
            netns_common::n("h1"),
            netns_common::n("h2"),
            None,
        )],
        vec![],
    );
    let dp = netns_common::deploy(&sc, &run);
    let ns = dp.plan().node("h1").unwrap().netns.clone();
    let t = tun::create(&ns, "tt0").expect("tun");
    let mut tap = EntryTap::open(&ns, t.ifindex).expect("tap");
    let path = netns_path(&ns);
    for args in [
        &["ip", "addr", "add", "10.250.0.1/30", "dev", "tt0"][..],
        &["ip", "link", "set", "tt0", "up"],
    ] {
        let st = std::process::Command::new("nsenter")
            .arg(format!("--net={}", path.display()))
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "{args:?}");
    }
    let sock = udp_in(&ns, "10.250.0.1:0".parse().unwrap());
    let clock = Clock::start_now();
    let sent = clock.now();
    sock.send_to(b"tap", "10.250.0.2:9").unwrap();
    std::thread::sleep(StdDuration::from_millis(30));
    let read_at = clock.now();
    // Read the device as the emulator does, frame by frame (the kernel may send IPv6
    // housekeeping too), until the datagram.
    let mut buf = vec![0u8; 2048];
    let entered = loop {
        // SAFETY: a non-blocking read into our buffer.
        let n = unsafe { libc::read(t.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n > 0, "the datagram never reached the device");
        let pkt = sdnbed::linkemu::gso::packet(&buf[..n as usize]);
        let ts = tap.entered(pkt);
        if pkt[0] >> 4 == 4 && pkt[9] == 17 {
            break clock.from_realtime(ts.expect("the tap saw the datagram"));
        }
    };
    // The clocks' offset is read at a different moment than the send: allow 0.2 ms.
    assert!(
        entered + Duration::from_micros(200) >= sent,
        "entered {entered} before sent {sent}"
    );
    assert!(
        entered.saturating_since(sent) < Duration::from_millis(2),
        "entered {entered}, sent {sent}"
    );
    assert!(read_at.saturating_since(entered) >= Duration::from_millis(29));
    drop((tap, t));
    drop(dp);
    netns_common::assert_gone(&run);
}
