//! A 200 ms server stall (SIGSTOP) under 1,000 req/s shows in the corrected tail latency,
//! with the shape theory predicts; a closed loop hides it.

mod workload_support;

use std::time::Duration as StdDuration;

use sdnbed::model::time::{Duration, Instant};
use sdnbed::workload::load::{self, Rate, RecordedRun};
use sdnbed::workload::sys::monotonic_ns;
use sdnbed::workload::timer::{sleep_until, Clock};
use workload_support::{open_loop, run_recorded, ServerProc};

const STALL_AT: Instant = Instant(1_000_000_000);
const STALL: Duration = Duration::from_millis(200);

/// Runs `cfg` while another thread stops the server for [`STALL`] at [`STALL_AT`]; returns the
/// run and how long the server was really stopped (a loaded machine can oversleep).
fn run_with_stall(server: &ServerProc, mut cfg: load::LoadConfig) -> (RecordedRun, u64) {
    let clock = Clock::with_origin_ns(monotonic_ns() + 100_000_000);
    cfg.clock = Some(clock);
    let pid = server.pid();
    std::thread::scope(|s| {
        let stopper = s.spawn(move || {
            sleep_until(&clock, STALL_AT, Duration::from_micros(50));
            // SAFETY: signals to our own child process.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            let stopped = clock.now();
            std::thread::sleep(StdDuration::from(STALL));
            unsafe { libc::kill(pid, libc::SIGCONT) };
            clock.now().saturating_since(stopped).as_nanos()
        });
        let run = run_recorded(&cfg);
        (run, stopper.join().expect("stopper"))
    })
}

#[test]
fn workload_stall_shows_in_corrected_tail_and_not_in_closed_loop() {
    let server = ServerProc::spawn(&["--version", "v1"]);
    let (open, stall) = run_with_stall(
        &server,
        open_loop(server.addr, 1000.0, Duration::from_secs(2), 16),
    );
    let s = open.summary();
    assert_eq!(s.requests, 2000);
    assert_eq!(s.ok, 2000, "{s:?}");
    // Requests intended during a stall of S ms wait for its end: the one intended at its start
    // waits S, so max ≈ S; latency falls linearly over the stall, so at 1 req/ms about
    // S − 100 requests exceed 100 ms, which puts p99.9 (the 2 slowest) near S too.
    let ms = 1_000_000;
    eprintln!("stall {} ms: {:?}", stall / ms, s.latency_ns);
    assert!(
        s.latency_ns.max + 5 * ms >= stall && s.latency_ns.max <= stall + 50 * ms,
        "max {}",
        s.latency_ns.max
    );
    assert!(
        s.latency_ns.p999 + 20 * ms >= stall,
        "p99.9 {}",
        s.latency_ns.p999
    );
    assert!(s.latency_ns.p50 < 20 * ms, "p50 {}", s.latency_ns.p50);
    let over_100: u64 = open
        .metrics
        .windows
        .iter()
        .filter_map(|w| w.total.histogram())
        .map(|h| h.count_between(100 * ms, u64::MAX))
        .sum();
    let theory = (stall / ms).saturating_sub(100) as f64;
    assert!(
        (over_100 as f64 - theory).abs() <= (0.15 * theory).max(15.0),
        "{over_100} requests over 100 ms, theory {theory}"
    );

    // The same stall under a closed loop: only the 4 requests in flight see it, and the loop
    // sends nothing meanwhile, so the percentiles stay low and only the max shows the stall.
    let mut closed = open_loop(server.addr, 1.0, Duration::from_secs(2), 4);
    closed.rate = Rate::Max;
    let (closed, stall) = run_with_stall(&server, closed);
    let c = closed.summary();
    assert!(c.requests > 5000, "{c:?}");
    assert!(
        c.latency_ns.max + 5 * ms >= stall,
        "closed-loop max {}",
        c.latency_ns.max
    );
    assert!(
        c.latency_ns.p99 < 20 * ms,
        "closed-loop p99 {}",
        c.latency_ns.p99
    );
}
