//! A synthetic run shared by the output tests: 60 s at 500 req/s, 100 ms windows, a canary
//! rollout of v2 starting at 20 s (5 %, 25 %, 50 %, 100 % every 5 s, done at 40 s) with a
//! latency bump and a burst of resets while the first canary replica warms up, and a link-down
//! scenario event at 45 s. Deterministic: the same seed gives the same record.

use std::collections::BTreeMap;
use std::time::SystemTime;

use sdnbed::metrics::{ErrorKind, Outcome, Phase, Recorder, RecorderConfig};
use sdnbed::model::rng::Rng;
use sdnbed::model::time::{Duration, Instant};
use sdnbed::results::{RunEvent, RunRecord};

pub const TOML: &str = r#"[scenario]
name = "synthetic"
seed = 7
duration = "60s"
warmup = "5s"
window = "100ms"

[[node]]
name = "client"
kind = "client"

[rollout]
service = "web"
to = "v2"
at = "20s"
strategy = "canary"
"#;

fn ms(x: f64) -> Duration {
    Duration::from_secs_f64(x / 1e3)
}

fn at(s: f64) -> Instant {
    Instant::ZERO + Duration::from_secs_f64(s)
}

fn counts(pairs: &[(&str, &str, u32)]) -> BTreeMap<(String, String), u32> {
    pairs
        .iter()
        .map(|(v, s, n)| ((v.to_string(), s.to_string()), *n))
        .collect()
}

/// v2's share of traffic (basis points) at `t` seconds.
fn canary_bp(t: f64) -> u32 {
    match t {
        t if t < 20.0 => 0,
        t if t < 25.0 => 500,
        t if t < 30.0 => 2_500,
        t if t < 35.0 => 5_000,
        _ => 10_000,
    }
}

pub fn record(seed: u64, index: usize, params: &[(&str, &str)], repetition: u32) -> RunRecord {
    let mut rng = Rng::new(seed);
    let mut rec = Recorder::new(RecorderConfig {
        window: Duration::from_millis(100),
        duration: Duration::from_secs(60),
        warmup: Duration::from_secs(5),
        steady_replicas: 4,
        new_version: Some("v2".into()),
    });
    rec.replicas(at(0.0), &counts(&[("v1", "ready", 4)]));
    rec.weights(
        at(0.0),
        &[("v1".to_string(), 10_000), ("v2".to_string(), 0)].into(),
    );
    rec.phase_change(at(20.0), Phase::During);
    rec.replicas(
        at(20.0),
        &counts(&[("v1", "ready", 4), ("v2", "starting", 1)]),
    );
    rec.replicas(at(21.5), &counts(&[("v1", "ready", 4), ("v2", "ready", 1)]));
    rec.replicas(
        at(30.0),
        &counts(&[
            ("v1", "ready", 4),
            ("v2", "ready", 2),
            ("v2", "starting", 2),
        ]),
    );
    rec.replicas(at(31.0), &counts(&[("v1", "ready", 4), ("v2", "ready", 4)]));
    rec.replicas(
        at(35.0),
        &counts(&[("v1", "draining", 4), ("v2", "ready", 4)]),
    );
    rec.replicas(at(40.0), &counts(&[("v2", "ready", 4)]));
    for t in [20.0, 25.0, 30.0, 35.0] {
        let bp = canary_bp(t);
        rec.weights(
            at(t),
            &[("v1".to_string(), 10_000 - bp), ("v2".to_string(), bp)].into(),
        );
    }
    rec.phase_change(at(40.0), Phase::After);

    // Poisson arrivals at 500/s.
    let mut t = 0.0;
    loop {
        t += -rng.open01().ln() / 500.0;
        if t >= 60.0 {
            break;
        }
        let v2 = rng.below(10_000) < u64::from(canary_bp(t));
        let version = if v2 { "v2" } else { "v1" };
        let base = if v2 { 2.5 } else { 2.0 };
        let mut lat = base * (0.4 * rng.std_normal()).exp() + -rng.open01().ln() * 0.5;
        if (20.0..26.0).contains(&t) {
            lat += 15.0 * (-rng.open01().ln());
        }
        if (45.0..47.0).contains(&t) {
            lat += 40.0;
        }
        let (answered, outcome) = if (20.0..21.5).contains(&t) && rng.chance(0.05) {
            (None, Outcome::Error(ErrorKind::Reset))
        } else if (45.0..47.0).contains(&t) && rng.chance(0.02) {
            (None, Outcome::Error(ErrorKind::Timeout))
        } else if v2 && rng.chance(0.004) {
            (Some(version), Outcome::Error(ErrorKind::Http5xx))
        } else {
            (Some(version), Outcome::Ok)
        };
        rec.record(at(t), at(t) + ms(lat), answered, outcome);
    }
    let ev = |t: f64, source: &str, kind: &str, detail: &str| RunEvent {
        at: at(t),
        source: source.into(),
        kind: kind.into(),
        detail: detail.into(),
    };
    let events = vec![
        ev(20.0, "rollout", "start", "canary web v1 -> v2"),
        ev(20.0, "rollout", "step", "weight 5%"),
        ev(25.0, "rollout", "step", "weight 25%"),
        ev(30.0, "rollout", "step", "weight 50%"),
        ev(35.0, "rollout", "step", "weight 100%"),
        ev(40.0, "rollout", "complete", "v2 promoted"),
        ev(45.0, "scenario", "link-down", "client-gw for 2s"),
        ev(47.0, "scenario", "link-up", "client-gw"),
        ev(21.5, "replica", "ready", "web-v2-0"),
    ];
    RunRecord {
        scenario: "synthetic".into(),
        index,
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        repetition,
        seeds: [
            ("workload.users".to_string(), seed),
            ("sim".to_string(), seed ^ 0xabcdef),
        ]
        .into(),
        backend: "sim".into(),
        resolved_toml: TOML.into(),
        events,
        metrics: rec.finish(at(60.0)),
        links: vec![sdnbed::results::LinkRow {
            at: at(1.0),
            link: "client-gw".into(),
            direction: "fwd",
            counters: sdnbed::model::link::LinkCounters {
                packets: 10,
                bytes: 15_000,
                ..Default::default()
            },
        }],
        outcome: Some("completed".into()),
        started: SystemTime::now(),
        wall: std::time::Duration::from_millis(1234),
    }
}
