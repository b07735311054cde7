//! Several generator threads share one schedule and one recorder; each runs the start hook
//! (where a backend enters a network namespace) before it opens a socket.

mod workload_support;

use std::sync::{Arc, Mutex};

use sdnbed::model::time::Duration;
use workload_support::{open_loop, run_recorded, ServerProc};

#[test]
fn workload_threads_split_the_schedule_and_run_the_start_hook() {
    let mut server = ServerProc::spawn(&["--version", "t", "--service-time", "const(300us)"]);
    let started = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = open_loop(server.addr, 2000.0, Duration::from_secs(1), 6);
    cfg.threads = 3;
    cfg.request_size = 1000;
    let hook_log = Arc::clone(&started);
    cfg.on_thread_start = Some(Arc::new(move |i| {
        hook_log.lock().unwrap().push(i);
        Ok(())
    }));
    let run = run_recorded(&cfg);
    let s = run.summary();
    // Constant arrivals over three threads: exactly the single-thread count, all answered.
    assert_eq!(s.requests, 2000);
    assert_eq!(s.ok, 2000, "{s:?}");
    assert_eq!(s.schedule.sent, 2000);
    let mut hooks = started.lock().unwrap().clone();
    hooks.sort_unstable();
    assert_eq!(hooks, [0, 1, 2]);
    // Ten 100 ms windows of 200 requests each: the threads' shares interleave evenly.
    let per_window: Vec<u64> = run
        .metrics
        .windows
        .iter()
        .map(|w| w.total.stats().sent)
        .collect();
    assert_eq!(per_window, vec![200; 10]);
    assert_eq!(server.drain_and_count(200), 2000);
    // Two connections per thread, all kept alive.
    assert_eq!(server.connections(), 6);
}

#[test]
fn workload_a_failing_start_hook_stops_the_run() {
    let server = ServerProc::spawn(&["--version", "t"]);
    let mut cfg = open_loop(server.addr, 100.0, Duration::from_millis(200), 2);
    cfg.threads = 2;
    cfg.on_thread_start = Some(Arc::new(|i| {
        if i == 1 {
            Err(std::io::Error::other("no such namespace"))
        } else {
            Ok(())
        }
    }));
    let rc = sdnbed::metrics::RecorderConfig {
        window: Duration::from_millis(100),
        duration: cfg.duration,
        warmup: Duration::ZERO,
        steady_replicas: 0,
        new_version: None,
    };
    let err = sdnbed::workload::load::run_recorded(&cfg, rc)
        .err()
        .expect("the run fails");
    assert!(err.to_string().contains("no such namespace"), "{err}");
}

#[test]
fn workload_closed_loop_runs_on_several_threads() {
    let mut server = ServerProc::spawn(&["--version", "m"]);
    let mut cfg = open_loop(server.addr, 1.0, Duration::from_millis(300), 4);
    cfg.rate = sdnbed::workload::load::Rate::Max;
    cfg.threads = 2;
    let s = run_recorded(&cfg).summary();
    assert!(s.requests > 300, "{s:?}");
    assert_eq!(s.ok, s.requests, "{s:?}");
    assert_eq!(s.schedule.sent, s.requests);
    assert_eq!(server.drain_and_count(200), s.ok);
    assert_eq!(server.connections(), 4);
}
