//! Every response is attributed to the version that served it, and the generator's counts agree
//! with the servers' own `/metrics`.

mod workload_support;

use sdnbed::model::time::Duration;
use workload_support::{open_loop, run_load, ServerProc};

#[test]
fn workload_versions_are_attributed_per_response() {
    // Two versions share one port (SO_REUSEPORT); a new connection per request lets the kernel
    // spread requests over both.
    let mut v1 = ServerProc::spawn(&["--version", "v1", "--reuse-port"]);
    let listen = v1.addr.to_string();
    let mut v2 = ServerProc::spawn(&[
        "--version",
        "v2",
        "--reuse-port",
        "--listen",
        &listen,
        "--error-rate",
        "20%",
    ]);
    let s = run_load(&open_loop(v1.addr, 400.0, Duration::from_secs(1), 0));
    assert_eq!(s.requests, 400);
    assert_eq!(
        s.errors.refused + s.errors.reset + s.errors.timeout + s.errors.other,
        0,
        "{s:?}"
    );
    let (a, b) = (&s.by_version["v1"], &s.by_version["v2"]);
    assert_eq!(a.requests + b.requests, 400);
    // Both got a real share (binomial(400, 1/2) is below 120 with probability ~1e-16).
    assert!(
        a.requests > 120 && b.requests > 120,
        "v1 {} v2 {}",
        a.requests,
        b.requests
    );
    // Only v2 fails, and the generator saw exactly the answers each server says it sent.
    assert_eq!(a.errors.http_5xx, 0);
    let (v1_200, v2_200, v2_500) = (
        v1.drain_and_count(200),
        v2.drain_and_count(200),
        v2.drain_and_count(500),
    );
    assert_eq!((a.ok, b.ok, b.errors.http_5xx), (v1_200, v2_200, v2_500));
    // 20 % errors: 3 sd of binomial(~200, 0.2) is ~17.
    let share = v2_500 as f64 / b.requests as f64;
    assert!((share - 0.2).abs() < 0.09, "v2 error share {share}");
}

#[test]
fn workload_ready_and_metrics_endpoints_answer() {
    let s = ServerProc::spawn(&["--version", "v9"]);
    let ready = s.get("/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(
        ready.to_ascii_lowercase().contains("x-sdnbed-version: v9"),
        "{ready}"
    );
    let metrics = s.get("/metrics");
    assert!(
        metrics.contains("sdnbed_requests_in_flight{version=\"v9\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sdnbed_ready{version=\"v9\"} 1"),
        "{metrics}"
    );
}
