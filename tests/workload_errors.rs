//! Failures are counted by kind: refused, timeout and 5xx, each exactly as many as requests.

mod workload_support;

use sdnbed::model::time::Duration;
use workload_support::{closed_port, open_loop, run_load, ServerProc};

#[test]
fn workload_refused_connections_are_counted_as_refused() {
    let cfg = open_loop(closed_port(), 200.0, Duration::from_millis(500), 4);
    let s = run_load(&cfg);
    assert_eq!(s.requests, 100);
    assert_eq!(s.errors.refused, 100, "{s:?}");
    assert_eq!(s.ok, 0);
    // Nothing answered, so nothing has a latency or a version.
    assert_eq!(s.latency_ns.count, 0);
    assert!(s.by_version.is_empty(), "{:?}", s.by_version);
}

#[test]
fn workload_slow_answers_are_counted_as_timeouts() {
    let server = ServerProc::spawn(&[
        "--version",
        "slow",
        "--service-time",
        "const(1s)",
        "--workers",
        "1000",
    ]);
    let mut cfg = open_loop(server.addr, 100.0, Duration::from_millis(500), 8);
    cfg.timeout = Duration::from_millis(150);
    let s = run_load(&cfg);
    assert_eq!(s.requests, 50);
    assert_eq!(s.errors.timeout, 50, "{s:?}");
    // No connection ever got an answer, so no version can be blamed.
    assert!(s.by_version.is_empty(), "{:?}", s.by_version);
    assert_eq!(s.latency_ns.count, 0);
}

#[test]
fn workload_5xx_answers_are_counted_per_version() {
    let server = ServerProc::spawn(&["--version", "bad", "--error-rate", "100%"]);
    let s = run_load(&open_loop(
        server.addr,
        400.0,
        Duration::from_millis(500),
        4,
    ));
    assert_eq!(s.requests, 200);
    assert_eq!(s.errors.http_5xx, 200, "{s:?}");
    assert_eq!(s.by_version["bad"].errors.http_5xx, 200);
    // Failed requests never enter the latency statistics, even when answered.
    assert_eq!(s.latency_ns.count, 0);
    assert_eq!(
        server.metric("sdnbed_requests_total{version=\"bad\",code=\"500\"}"),
        200
    );
}

#[test]
fn workload_closed_loop_keeps_trying_a_refusing_server() {
    let mut cfg = open_loop(closed_port(), 1.0, Duration::from_millis(300), 2);
    cfg.rate = sdnbed::workload::load::Rate::Max;
    let s = run_load(&cfg);
    // Both connections are tried at the start and then once per scan (every timeout / 100,
    // at most 10 ms): about 2 + 2 × 30 attempts in 300 ms, not a spin on the dead port.
    assert_eq!(s.ok, 0);
    assert_eq!(s.errors.refused, s.requests);
    assert!((50..=70).contains(&s.requests), "{} attempts", s.requests);
}
