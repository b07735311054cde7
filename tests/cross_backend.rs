//! The simulator and the netns backend against each other (CI runs as root): one scenario with
//! overlapping `set-rate` events, a `set-link` with undo, a link outage and a killed replica
//! (tests/fixtures/cross-backend.toml), run on both. What the events mean comes from one place
//! (the driver), so the offered rate per window, the link's parameters over time and the story
//! of the run must agree; the measured latencies show that netns really applied them.
//!
//! Netns timing noise, stated: its timers fire within a few milliseconds (more on a busy
//! 2-core VM), so event times may differ by up to 100 ms; arrivals are constant and windows
//! are keyed by intended send time, so offered counts per window differ by at most 2 % (a
//! request the generator could not send at all is still counted where it was intended).

mod netns_common;
mod scenario_support;

use std::path::PathBuf;

use scenario_support::load;
use sdnbed::backend::netns::{self, NetnsOptions};
use sdnbed::backend::RunOutput;
use sdnbed::metrics::Window;

fn netns_run(s: &sdnbed::scenario::Scenario) -> RunOutput {
    let run_id = netns_common::run_id("cross");
    let work = tempfile::tempdir().unwrap();
    let opts = NetnsOptions {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_sdnbed")),
        run_id: run_id.clone(),
        work_dir: work.path().to_path_buf(),
        deploy: Default::default(),
    };
    let out = netns::run(s, &opts);
    netns_common::assert_gone(&run_id);
    out.unwrap_or_else(|e| panic!("netns run failed: {e}"))
}

/// The windows that start in [from, to) seconds.
fn windows(out: &RunOutput, from: f64, to: f64) -> Vec<&Window> {
    out.metrics
        .windows
        .iter()
        .filter(|w| {
            let t = w.start.as_secs_f64();
            t >= from - 1e-9 && t < to - 1e-9
        })
        .collect()
}

fn p50(w: &Window) -> f64 {
    w.total.stats().latency.map_or(f64::NAN, |l| l.p50_ms)
}

/// The scenario events (source "scenario") as (time s, kind, detail).
fn story(out: &RunOutput) -> Vec<(f64, String, String)> {
    out.events
        .iter()
        .filter(|e| e.source == "scenario")
        .map(|e| (e.at.as_secs_f64(), e.kind.clone(), e.detail.clone()))
        .collect()
}

#[test]
fn sim_and_netns_agree_on_what_timed_events_do() {
    let s = load("tests/fixtures/cross-backend.toml", &[]);
    let sim = sdnbed::sim::run(&s).unwrap();
    let real = netns_run(&s);

    // The offered rate per window: the declared 100/s, 300/s from 1 s, 200/s from 2 s to 5 s
    // (overlapping set-rate: the later start wins, and the earlier one's end changes nothing).
    let expected = |t: f64| match t {
        t if t < 1.0 => 100.0,
        t if t < 2.0 => 300.0,
        t if t < 5.0 => 200.0,
        _ => 100.0,
    };
    for (a, b) in windows(&sim, 0.0, 9.0).iter().zip(windows(&real, 0.0, 9.0)) {
        let t = a.start.as_secs_f64();
        let want = expected(t) * 0.5;
        let (x, y) = (a.total.stats().sent as f64, b.total.stats().sent as f64);
        assert!(
            (x - want).abs() <= 1.0,
            "sim window at {t} s: {x} sent, want {want}"
        );
        assert!(
            (y - x).abs() <= (0.02 * x).max(1.0),
            "window at {t} s: sim {x}, netns {y}"
        );
    }

    // The same story: the same events, the same parameters, the same victim, at the same times.
    let (a, b) = (story(&sim), story(&real));
    assert_eq!(a.len(), b.len(), "sim {a:#?}\nnetns {b:#?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.1, &x.2), (&y.1, &y.2), "sim {a:#?}\nnetns {b:#?}");
        assert!((x.0 - y.0).abs() < 0.1, "{x:?} against {y:?}");
    }
    let details: Vec<&str> = a.iter().map(|e| e.2.as_str()).collect();
    assert!(details.contains(&"link client-gw parameters changed: delay 20ms, bandwidth 100Mbit"));
    assert!(details.contains(&"link client-gw parameters changed: delay 1ms, bandwidth 100Mbit"));
    assert!(details.contains(&"replica 0 killed; restarting"));

    // The set-link really changed the link on both: 2 × 20 ms of delay while it held, about
    // 2 × 1 ms before and after.
    for (name, out) in [("sim", &sim), ("netns", &real)] {
        for w in windows(out, 6.0, 7.0) {
            let p = p50(w);
            assert!(
                (40.0..50.0).contains(&p),
                "{name}: p50 {p} ms at {:?}",
                w.start
            );
        }
        for w in windows(out, 3.0, 5.0) {
            let p = p50(w);
            assert!(p < 10.0, "{name}: p50 {p} ms at {:?}", w.start);
        }
        // The outage (7.5 s to 8 s) holds requests back until the link returns.
        let outage = windows(out, 7.5, 8.0);
        let max = outage[0].total.stats().latency.map_or(0.0, |l| l.max_ms);
        assert!(
            max > 300.0,
            "{name}: max latency {max} ms during the outage"
        );
    }
}
