//! The simulator against queueing theory and hand computation.

use sdnbed::scenario::{parse_experiment, LoadOptions, Scenario};

fn scenario(text: &str) -> Scenario {
    let exp = parse_experiment(text, "test.toml", None, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    exp.runs[0].scenario.clone()
}

/// A client and a gateway on an ideal link (no delay, no rate), one service with `replicas`
/// replicas of `workers` workers, exponential service times, Poisson arrivals, and a new
/// connection per request so that no client-side pool adds waiting.
fn queue_scenario(workers: u32, mean_ms: f64, rate: f64, seconds: u64) -> Scenario {
    scenario(&format!(
        r#"
[scenario]
name = "queue"
seed = 42
duration = "{seconds}s"
warmup = "20s"
window = "1s"

[[node]]
name = "client"
kind = "client"

[[node]]
name = "gw"
kind = "gateway"

[[link]]
between = ["client", "gw"]

[service.web]
replicas = 1
port = 8080
gateway = "gw"
version = "v1"
workers = {workers}

[service.web.versions.v1]
service_time = "exp(mean={mean_ms}ms)"

[[workload]]
name = "users"
from = "client"
to = "web"
rate = "{rate}/s"
arrivals = "poisson"
connections = 0
timeout = "60s"
"#
    ))
}

fn mean_latency_ms(s: &Scenario) -> (f64, u64) {
    let out = sdnbed::sim::run(s).expect("routes exist");
    let overall = &out.metrics.summary.overall;
    assert_eq!(
        overall.ok, overall.sent,
        "no request may fail in a stable queue"
    );
    (
        overall
            .latency
            .as_ref()
            .expect("requests succeeded")
            .mean_ms,
        overall.sent,
    )
}

/// Erlang C: the probability that an arrival waits in an M/M/c queue with offered load `a`.
fn erlang_c(c: u32, a: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..c {
        term *= a / f64::from(k);
        sum += term;
    }
    let last = term * a / f64::from(c) * f64::from(c) / (f64::from(c) - a);
    last / (sum + last)
}

#[test]
fn mm1_mean_sojourn_matches_formula() {
    // λ = 600/s, μ = 1000/s: W = 1 / (μ − λ) = 2.5 ms.
    let s = queue_scenario(1, 1.0, 600.0, 420);
    let (w, n) = mean_latency_ms(&s);
    assert!(n >= 200_000, "only {n} requests measured");
    let want = 1.0 / (1000.0 - 600.0) * 1e3;
    eprintln!("M/M/1: {n} requests, mean sojourn {w:.4} ms, theory {want:.4} ms");
    assert!(
        (w - want).abs() / want < 0.02,
        "M/M/1 mean sojourn {w:.4} ms, theory {want:.4} ms"
    );
}

#[test]
fn mmc_mean_sojourn_matches_erlang_c() {
    // c = 4, μ = 1000/s each, λ = 3000/s (ρ = 0.75): W = C(c, a) / (cμ − λ) + 1/μ.
    let s = queue_scenario(4, 1.0, 3000.0, 90);
    let (w, n) = mean_latency_ms(&s);
    assert!(n >= 200_000, "only {n} requests measured");
    let want = (erlang_c(4, 3.0) / (4000.0 - 3000.0) + 1.0 / 1000.0) * 1e3;
    eprintln!("M/M/4: {n} requests, mean sojourn {w:.4} ms, theory {want:.4} ms");
    assert!(
        (w - want).abs() / want < 0.02,
        "M/M/4 mean sojourn {w:.4} ms, theory {want:.4} ms"
    );
}

#[test]
fn keep_alive_request_latency_by_hand() {
    // One connection, one request every 100 ms (no queueing), const(1ms) service over a
    // 10 Mbit/s link with 5 ms delay each way. A kept-alive request costs:
    //   request 200 B + 40 B header = 240 B: 192 us serialization + 5 ms
    //   service 1 ms
    //   response 4096 B = packets of 1500, 1500, 1216 wire bytes = 4216 B: 3372.8 us + 5 ms
    // = 14.5648 ms. The first request also pays the handshake (a round trip of two 40-byte
    // packets: 2 × (32 us + 5 ms)), so the median is the kept-alive figure.
    let s = scenario(
        r#"
[scenario]
name = "by-hand"
duration = "10s"
window = "1s"

[[node]]
name = "client"
kind = "client"

[[node]]
name = "gw"
kind = "gateway"

[[link]]
between = ["client", "gw"]
bandwidth = "10Mbit"
delay = "5ms"

[service.web]
gateway = "gw"
port = 8080
version = "v1"

[service.web.versions.v1]
service_time = "const(1ms)"

[[workload]]
name = "users"
from = "client"
to = "web"
rate = "10/s"
arrivals = "constant"
connections = 1
request = "200B"
response = "4KiB"
"#,
    );
    let out = sdnbed::sim::run(&s).unwrap();
    let lat = out.metrics.summary.overall.latency.unwrap();
    assert_eq!(out.metrics.summary.overall.ok, 100);
    // HdrHistogram keeps 3 significant digits.
    assert!((lat.p50_ms - 14.5648).abs() < 0.015, "p50 {}", lat.p50_ms);
    let first = 14.5648 + 2.0 * (0.032 + 5.0);
    assert!((lat.max_ms - first).abs() < 0.015, "max {}", lat.max_ms);
}
