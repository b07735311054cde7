//! The server's service model: workers, the FIFO queue, CPU work, startup delay, connection
//! recycling and readiness while draining.

mod workload_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use sdnbed::model::time::Duration;
use workload_support::{open_loop, run_recorded, ServerProc};

/// `n` requests arrive within `n / 10` ms at a server with a 40 ms service time.
fn burst_latencies_ms(server: &ServerProc, n: u64) -> Vec<u64> {
    let cfg = open_loop(
        server.addr,
        10_000.0,
        Duration::from_micros(100 * n),
        n as usize,
    );
    let run = run_recorded(&cfg);
    assert_eq!(run.summary().ok, n, "{:?}", run.summary());
    let h = run.metrics.windows[0].total.histogram().expect("latencies");
    let mut out: Vec<u64> = h
        .iter_recorded()
        .flat_map(|v| {
            std::iter::repeat_n(
                v.value_iterated_to() / 1_000_000,
                v.count_at_value() as usize,
            )
        })
        .collect();
    out.sort_unstable();
    out
}

/// With `workers` workers and a FIFO queue, request `i` (in arrival order) leaves at
/// 40 ms × (i / workers + 1). A request arrives up to `n / 10` ms after the first and the
/// loopback adds a little, so allow [expected − 1, expected + 15] ms.
fn assert_fifo(lat: &[u64], workers: usize) {
    for (i, l) in lat.iter().enumerate() {
        let want = 40 * (i / workers + 1) as u64;
        assert!(
            *l + 1 >= want && *l <= want + 15,
            "request {i}: {l} ms, expected ~{want} ms; all {lat:?}"
        );
    }
}

#[test]
fn workload_sleep_workers_serve_a_fifo_queue() {
    let s = ServerProc::spawn(&[
        "--version",
        "q",
        "--service-time",
        "const(40ms)",
        "--workers",
        "2",
    ]);
    assert_fifo(&burst_latencies_ms(&s, 8), 2);
}

#[test]
fn workload_cpu_workers_serve_a_fifo_queue() {
    // One CPU worker: on a 2-core machine more spinning workers would starve the event loop.
    let s = ServerProc::spawn(&[
        "--version",
        "c",
        "--service-time",
        "const(40ms)",
        "--workers",
        "1",
        "--work",
        "cpu",
    ]);
    assert_fifo(&burst_latencies_ms(&s, 4), 1);
}

#[test]
fn workload_port_opens_only_after_startup() {
    let start = StdInstant::now();
    let s = ServerProc::spawn(&["--version", "late", "--startup", "300ms"]);
    let waited = start.elapsed();
    assert!(
        waited >= StdDuration::from_millis(300),
        "listening after {waited:?}"
    );
    assert!(s.get("/ready").starts_with("HTTP/1.1 200"));
}

#[test]
fn workload_connections_are_recycled_after_max_requests() {
    let mut s = ServerProc::spawn(&["--version", "r"]);
    let mut cfg = open_loop(s.addr, 500.0, Duration::from_millis(400), 2);
    cfg.max_requests_per_connection = 10;
    let sum = run_recorded(&cfg).summary();
    assert_eq!(sum.ok, 200, "{sum:?}");
    s.drain_and_count(200);
    // 200 requests, 10 per connection: exactly 20 connections reached the server.
    assert_eq!(s.connections(), 20);
}

#[test]
fn workload_ready_turns_503_while_draining() {
    let mut s = ServerProc::spawn(&["--version", "d", "--service-time", "const(400ms)"]);
    let mut conn = TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(StdDuration::from_secs(5)))
        .unwrap();
    conn.write_all(b"GET /work HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(StdDuration::from_millis(100));
    s.signal(libc::SIGTERM);
    std::thread::sleep(StdDuration::from_millis(100));
    // A probe pipelined behind the request in service, received while draining.
    conn.write_all(b"GET /ready HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .expect("both answers, then the server closes");
    let first = text
        .find("HTTP/1.1 200")
        .expect("the request in service is answered");
    let second = text.find("HTTP/1.1 503").expect("the probe says not ready");
    assert!(first < second, "{text}");
    assert!(
        text[second..]
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{text}"
    );
    assert!(s
        .wait_exit(StdDuration::from_secs(5))
        .is_some_and(|st| st.success()));
    assert_eq!(s.drain_and_count(200), 1);
}

#[test]
fn workload_pipelined_requests_are_answered_in_order() {
    let s = ServerProc::spawn(&[
        "--version",
        "p",
        "--service-time",
        "const(20ms)",
        "--response-size",
        "7B",
    ]);
    let mut conn = TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(StdDuration::from_secs(5)))
        .unwrap();
    // The slow workload request first: the probe and the metrics behind it must wait for it.
    conn.write_all(
        b"POST /a HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabcGET /ready HTTP/1.1\r\nhost: t\r\n\r\n\
          GET /metrics HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .expect("three answers, then close");
    let work = text.find("xxxxxxx").expect("the 7-byte body");
    let ready = text.find("ready\n").expect("the probe");
    let metrics = text.find("sdnbed_requests_in_flight").expect("the metrics");
    assert!(work < ready && ready < metrics, "{text}");
    assert_eq!(text.matches("x-sdnbed-version: p\r\n").count(), 3, "{text}");
    // The metrics were taken after the workload request was answered.
    assert!(
        text.contains("sdnbed_requests_total{version=\"p\",code=\"200\"} 1"),
        "{text}"
    );
}

#[test]
fn workload_garbage_gets_400_and_the_connection_closes() {
    let srv = ServerProc::spawn(&["--version", "v1"]);
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.set_read_timeout(Some(StdDuration::from_secs(5))).unwrap();
    // A valid request first, then a line that is not HTTP: the first is answered, then 400,
    // then the server closes (the stream after garbage cannot be parsed).
    c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\nNOT HTTP AT ALL\x01\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 2, "{text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 400"), "{text}");
}
