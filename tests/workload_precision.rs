//! Sub-millisecond honesty: a `const(1ms)` service at 500 req/s reports a median of 1 ms plus the
//! loopback round trip, within 1 %.

mod workload_support;

use sdnbed::model::time::Duration;
use sdnbed::scenario::units::RequestRate;
use sdnbed::scenario::{Arrivals, RateSchedule};
use sdnbed::workload::load::Rate;
use workload_support::{open_loop, run_load, ServerProc};

#[test]
fn workload_const_1ms_service_reports_p50_within_1_percent() {
    // The claim is about sdnbed's timing, not about what else runs on a shared 2-core VM: the
    // best of up to three independent attempts counts, and every attempt is printed. A timer
    // that rounds to milliseconds, or a generator that measures from the actual send, is off by
    // far more than 1 % in every attempt.
    let mut errors = Vec::new();
    for attempt in 1..=3 {
        let error = measure();
        eprintln!("attempt {attempt}: error {:+.3} %", error * 100.0);
        errors.push(error);
        if error.abs() <= 0.01 {
            return;
        }
    }
    panic!("p50 of const(1ms) off by more than 1 % in every attempt: {errors:?}");
}

/// One measurement: the relative error of the const(1ms) median against 1 ms plus the loopback
/// round trip measured alongside.
fn measure() -> f64 {
    // Two servers share one port, one answering at once, one after exactly 1 ms; the kernel
    // spreads the 16 kept-alive connections over both at random, and the generator uses every
    // connection in turn, so both medians come from the same seconds on the same machine and
    // their difference is the service time.
    let mut one = ServerProc::spawn(&[
        "--version",
        "one",
        "--reuse-port",
        "--service-time",
        "const(1ms)",
    ]);
    let listen = one.addr.to_string();
    // The reference answers after 1 ns, so that both requests take the same path through the
    // server (worker, timer, completion) and differ only in the time spent there.
    let mut zero = ServerProc::spawn(&[
        "--version",
        "zero",
        "--reuse-port",
        "--listen",
        &listen,
        "--service-time",
        "const(1ns)",
    ]);
    // Poisson arrivals: with evenly spaced ones every 1 ms, a 1 ms answer would always find the
    // generator just awake for its next send, and a zero-time answer never would; the
    // comparison would measure that coincidence instead of the service time.
    let mut cfg = open_loop(one.addr, 1000.0, Duration::from_secs(3), 16);
    cfg.rate = Rate::Open {
        schedule: RateSchedule::constant(RequestRate(1000.0)),
        arrivals: Arrivals::Poisson,
    };
    // Measured on the 2-core development VM: error +0.0 to +1.0 % when it is quiet (the 1 ms
    // answers find the generator's CPU in a deeper idle state), up to ±2 % under heavy load.
    let s = run_load(&cfg);
    assert_eq!(s.ok, s.requests, "{s:?}");
    let (with, base) = (&s.by_version["one"], &s.by_version["zero"]);
    // Both servers got a fair share of the 16 connections.
    assert!(
        with.requests > 600 && base.requests > 600,
        "{} {}",
        with.requests,
        base.requests
    );
    let base = base.latency_ns.p50 as f64;
    let want = 1e6 + base;
    let got = with.latency_ns.p50 as f64;
    eprintln!(
        "round trip p50 {base} ns; const(1ms) p50 {got} ns; error {:+.3} %",
        (got - want) / want * 100.0
    );
    assert_eq!(one.drain_and_count(200), with.ok);
    assert_eq!(zero.drain_and_count(200), s.by_version["zero"].ok);
    (got - want) / want
}
