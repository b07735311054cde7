//! SIGTERM during load with keep-alive clients loses no request: the draining server finishes
//! what it holds, closes its kept-alive connections, and the generator moves to the successor
//! that shares the port.

mod workload_support;

use std::time::Duration as StdDuration;

use sdnbed::model::time::{Duration, Instant};
use sdnbed::workload::sys::monotonic_ns;
use sdnbed::workload::timer::{sleep_until, Clock};
use workload_support::{open_loop, run_load, ServerProc};

/// Runs 1,000 req/s for 3 s over `connections` against `old` and `new` sharing a port, and
/// SIGTERMs `old` at 1 s; checks that every request was answered.
///
/// Only kept-alive connections are tested: with a connection per request, SO_REUSEPORT (this
/// test's stand-in for steering) lets the kernel queue new connections on `old` until its
/// listener closes, and resets those that complete their handshake in the last microseconds
/// (unless `net.ipv4.tcp_migrate_req` is set). A backend removes a replica from steering before
/// SIGTERM, so no new connection reaches a draining server.
fn sigterm_during_load(connections: usize) {
    // `old` has few workers, so at SIGTERM it holds requests both in service and queued.
    let mut old = ServerProc::spawn(&[
        "--version",
        "old",
        "--reuse-port",
        "--service-time",
        "const(5ms)",
        "--workers",
        "2",
    ]);
    let listen = old.addr.to_string();
    let mut new = ServerProc::spawn(&[
        "--version",
        "new",
        "--reuse-port",
        "--listen",
        &listen,
        "--service-time",
        "const(5ms)",
        "--workers",
        "64",
    ]);
    let mut cfg = open_loop(old.addr, 1000.0, Duration::from_secs(3), connections);
    let clock = Clock::with_origin_ns(monotonic_ns() + 100_000_000);
    cfg.clock = Some(clock);
    let old_pid = old.pid();
    let summary = std::thread::scope(|s| {
        s.spawn(move || {
            sleep_until(&clock, Instant(1_000_000_000), Duration::from_micros(50));
            // SAFETY: a signal to our own child process.
            unsafe { libc::kill(old_pid, libc::SIGTERM) };
        });
        run_load(&cfg)
    });
    eprintln!(
        "old {} new {} retried {}",
        summary.by_version["old"].ok, summary.by_version["new"].ok, summary.schedule.retries
    );
    assert_eq!(summary.requests, 3000);
    assert_eq!(summary.ok, 3000, "{summary:?}");
    let (o, n) = (&summary.by_version["old"], &summary.by_version["new"]);
    assert!(o.ok > 100 && n.ok > 1500, "old {} new {}", o.ok, n.ok);
    // `old` exited cleanly on its own, and every answer it sent arrived.
    assert!(old
        .wait_exit(StdDuration::from_secs(5))
        .is_some_and(|s| s.success()));
    assert_eq!(old.drain_and_count(200), o.ok);
    assert_eq!(new.drain_and_count(200), n.ok);
}

#[test]
fn workload_sigterm_under_keepalive_load_loses_no_request() {
    sigterm_during_load(16);
}
