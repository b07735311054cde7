//! Every response is attributed to the version that served it, and the generator's counts agree
//! with the servers' own `/metrics`.

mod workload_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sdnbed::model::time::Duration;
use sdnbed::workload::load::Attribute;
use workload_support::{open_loop, run_load, ServerProc};

/// The (local, peer) addresses a resolver was called with.
type Calls = Arc<Mutex<Vec<(SocketAddr, SocketAddr)>>>;

/// A resolver that names every connection `resolved` and records what it was called with.
fn recording_resolver() -> (Attribute, Calls) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let f: Attribute = Arc::new(move |local, peer| {
        c.lock().unwrap().push((local, peer));
        Some("resolved".to_string())
    });
    (f, calls)
}

#[test]
fn workload_a_version_header_beats_the_resolver() {
    // v1 names itself, v2 stands in for a foreign image; both share one port, a new connection
    // per request.
    let mut named = ServerProc::spawn(&["--version", "v1", "--reuse-port"]);
    let listen = named.addr.to_string();
    let mut foreign = ServerProc::spawn(&[
        "--version",
        "v2",
        "--reuse-port",
        "--listen",
        &listen,
        "--no-version-header",
    ]);
    let (resolver, calls) = recording_resolver();
    let mut cfg = open_loop(named.addr, 400.0, Duration::from_secs(1), 0);
    cfg.attribute = Some(resolver);
    let s = run_load(&cfg);
    assert_eq!((s.requests, s.ok), (400, 400), "{s:?}");
    let names: Vec<&str> = s.by_version.keys().map(String::as_str).collect();
    assert_eq!(names, ["resolved", "v1"], "{s:?}");
    // Each server's own count matches what the generator attributed to it.
    assert_eq!(s.by_version["v1"].ok, named.drain_and_count(200));
    assert_eq!(s.by_version["resolved"].ok, foreign.drain_and_count(200));
    assert!(s.by_version["v1"].ok > 120 && s.by_version["resolved"].ok > 120);
    // Once per connection, with the connection's own addresses.
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 400);
    assert!(calls
        .iter()
        .all(|(l, p)| *p == named.addr && l.ip() == named.addr.ip() && l.port() != p.port()));
    let mut ports: Vec<u16> = calls.iter().map(|(l, _)| l.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 400, "one call per distinct connection");
}

#[test]
fn workload_the_resolver_is_asked_once_per_kept_alive_connection() {
    let mut foreign = ServerProc::spawn(&["--version", "v2", "--no-version-header"]);
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    let mut cfg = open_loop(foreign.addr, 200.0, Duration::from_secs(1), 4);
    cfg.attribute = Some(Arc::new(move |_, _| {
        n2.fetch_add(1, Ordering::Relaxed);
        Some("foreign".to_string())
    }));
    let s = run_load(&cfg);
    assert_eq!(s.requests, 200);
    assert_eq!(s.by_version["foreign"].ok, 200, "{s:?}");
    assert_eq!(n.load(Ordering::Relaxed), 4);
    assert_eq!(foreign.drain_and_count(200), 200);
    // Without a resolver the same answers have no version.
    let mut other = ServerProc::spawn(&["--version", "v2", "--no-version-header"]);
    let s = run_load(&open_loop(other.addr, 100.0, Duration::from_secs(1), 2));
    assert_eq!(s.ok, 100);
    assert!(s.by_version.is_empty(), "{s:?}");
    assert_eq!(other.drain_and_count(200), 100);
}

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

#[test]
fn workload_errors_before_any_answer_take_the_resolved_version() {
    // A server that reads each request and closes without answering.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let mut c = c;
            let mut b = [0u8; 512];
            let _ = std::io::Read::read(&mut c, &mut b);
        }
    });
    let mut cfg = open_loop(addr, 50.0, Duration::from_secs(1), 0);
    cfg.attribute = Some(Arc::new(|_, _| Some("foreign".to_string())));
    let s = run_load(&cfg);
    assert_eq!((s.requests, s.errors.reset), (50, 50), "{s:?}");
    assert_eq!(s.by_version["foreign"].errors.reset, 50, "{s:?}");
}
