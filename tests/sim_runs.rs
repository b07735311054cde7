//! Whole simulated runs: determinism, rollouts, failures.

mod scenario_support;

use scenario_support::load;
use sdnbed::scenario::{parse_experiment, LoadOptions};

fn fingerprint(out: &sdnbed::backend::RunOutput) -> String {
    let events: Vec<String> = out.events.iter().map(|e| format!("{:?}", e)).collect();
    format!(
        "{}\n{}",
        serde_json::to_string(&out.metrics).unwrap(),
        events.join("\n")
    )
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let a = sdnbed::sim::run(&load("scenarios/quickstart.toml", &[])).unwrap();
    let b = sdnbed::sim::run(&load("scenarios/quickstart.toml", &[])).unwrap();
    let c = sdnbed::sim::run(&load(
        "scenarios/quickstart.toml",
        &[("scenario.seed", "8")],
    ))
    .unwrap();
    assert_eq!(a.events_processed, b.events_processed);
    assert_eq!(fingerprint(&a), fingerprint(&b));
    assert_ne!(fingerprint(&a), fingerprint(&c));
}

#[test]
fn rolling_update_replaces_every_replica_without_errors_from_the_rollout() {
    let mut s = load("scenarios/quickstart.toml", &[]);
    // Ideal network and a flawless v2: every error would come from the rollout itself.
    s.links
        .iter_mut()
        .for_each(|l| l.params = Default::default());
    s.services[0].versions[1].error_rate = 0.0;
    let out = sdnbed::sim::run(&s).unwrap();
    let sum = &out.metrics.summary;
    assert_eq!(
        sum.overall.sent, sum.overall.ok,
        "errors: {:?}",
        sum.overall.errors
    );
    assert!(matches!(
        out.rollout_outcome,
        Some(sdnbed::model::rollout::Outcome::Promoted)
    ));
    // After the rollout only v2 answers.
    let after = &sum.phase_versions[&sdnbed::model::rollout::Phase::After];
    assert!(
        after.contains_key("v2") && !after.contains_key("v1"),
        "{:?}",
        after.keys()
    );
    let gone = out.events.iter().filter(|e| e.kind == "gone").count();
    assert_eq!(gone, 4, "the four v1 replicas are drained");
}

#[test]
fn bad_canary_is_aborted_and_rolled_back() {
    let out = sdnbed::sim::run(&load("scenarios/bad-canary.toml", &[])).unwrap();
    match &out.rollout_outcome {
        Some(sdnbed::model::rollout::Outcome::Aborted { reason }) => {
            assert!(
                reason.contains("error"),
                "reason names the metric: {reason}"
            )
        }
        other => panic!("expected an abort, got {other:?}"),
    }
    assert!(out
        .events
        .iter()
        .any(|e| e.source == "rollout" && e.kind == "abort"));
    // v2 never got beyond its first step's share and nothing of it is left at the end.
    let after = &out.metrics.summary.phase_versions[&sdnbed::model::rollout::Phase::After];
    assert!(
        !after.contains_key("v2"),
        "v2 still answers after the rollback"
    );
}

#[test]
fn refused_when_steering_learns_late_and_pre_stop_is_zero() {
    let errors = |pre_stop: &str, delay: &str| {
        let s = load(
            "scenarios/propagation.toml",
            &[
                (
                    "service.web.termination.pre_stop",
                    &format!("\"{pre_stop}\""),
                ),
                ("rollout.propagation_delay", &format!("\"{delay}\"")),
            ],
        );
        let out = sdnbed::sim::run(&s).unwrap();
        out.metrics.summary.overall.errors
    };
    let bad = errors("0s", "2s");
    let good = errors("3s", "2s");
    assert!(
        bad.refused > 0,
        "a replica that stops before steering knows refuses connections: {bad:?}"
    );
    assert_eq!(
        good.refused + good.reset,
        0,
        "pre_stop covering the delay loses nothing: {good:?}"
    );
}

#[test]
fn link_down_turns_into_timeouts_and_delays() {
    let out = sdnbed::sim::run(&load("scenarios/link-failure.toml", &[])).unwrap();
    let sum = &out.metrics.summary;
    assert!(
        sum.overall.errors.timeout > 0,
        "a 2 s outage with a 2 s timeout must time some requests out"
    );
    // Timed events are logged as `scenario` events (the figures mark those).
    let marked: Vec<&str> = out
        .events
        .iter()
        .filter(|e| e.source == "scenario")
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(marked, ["link-down", "undo"], "{:?}", out.events);
    let max = sum.overall.latency.as_ref().unwrap().max_ms;
    assert!(
        max > 1000.0,
        "retransmissions after the outage take over a second: {max}"
    );
}

#[test]
fn kill_replica_resets_what_it_held() {
    let s = parse_experiment(
        r#"
[scenario]
name = "kill"
duration = "20s"

[[node]]
name = "client"
kind = "client"

[[node]]
name = "gw"
kind = "gateway"

[[link]]
between = ["client", "gw"]
delay = "1ms"

[service.web]
replicas = 2
gateway = "gw"
port = 8080
version = "v1"
workers = 64
readiness = { initial_delay = "0s", period = "1s", failure_threshold = 2 }

[service.web.versions.v1]
service_time = "const(50ms)"
startup = "5s"

[[workload]]
name = "users"
from = "client"
to = "web"
rate = "400/s"
connections = 0

[[event]]
at = "10s"
action = "kill-replica"
service = "web"
"#,
        "kill.toml",
        None,
        &LoadOptions::default(),
    )
    .unwrap();
    let out = sdnbed::sim::run(&s.runs[0].scenario).unwrap();
    let e = &out.metrics.summary.overall.errors;
    // About 400/s × 50 ms / 2 = 10 requests were in service on the victim.
    assert!((5..=20).contains(&e.reset), "resets {e:?}");
    // Until probes fail twice (≈2 s), half the new connections meet a dead port.
    assert!(e.refused > 100, "refused {e:?}");
    assert!(out.events.iter().any(|ev| ev.kind == "not-ready"));
    assert!(out
        .events
        .iter()
        .any(|ev| ev.kind == "ready" && ev.at.as_secs_f64() > 14.0));
}
