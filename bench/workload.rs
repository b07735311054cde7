//! Hot paths of the built-in workload: HTTP encoding and parsing, latency recording, pacing.
//!
//! `cargo bench --bench workload`. Each iteration is one request's worth of work, so the
//! results read as a per-request cost budget (at 200k req/s a thread has 5 µs per request).

use criterion::{black_box, criterion_group, criterion_main, Criterion};

use sdnbed::metrics::{Recorder, RecorderConfig};
use sdnbed::model::arrivals::ArrivalProcess;
use sdnbed::model::rng::Rng;
use sdnbed::model::time::{Duration, Instant};
use sdnbed::scenario::units::RequestRate;
use sdnbed::scenario::{Arrivals, RateSchedule};
use sdnbed::workload::http::{parse_request, write_response, RequestTemplate, ResponseReader};
use sdnbed::workload::stats::{Completion, Outcome, SharedRecorder, Sink};
use sdnbed::workload::timer::Clock;
use std::sync::{Arc, Mutex};

fn http(c: &mut Criterion) {
    let template = RequestTemplate::new("127.0.0.1:8080", "/", 0);
    c.bench_function("http/parse_request", |b| {
        b.iter(|| parse_request(black_box(template.bytes(false))).unwrap())
    });
    let mut out = Vec::with_capacity(512);
    c.bench_function("http/write_response_64B", |b| {
        b.iter(|| {
            out.clear();
            write_response(
                &mut out,
                200,
                Some("v1"),
                false,
                "text/plain",
                black_box(&[b'x'; 64]),
            );
            out.len()
        })
    });
    let mut wire = Vec::new();
    write_response(&mut wire, 200, Some("v1"), false, "text/plain", &[b'x'; 64]);
    let mut reader = ResponseReader::new();
    c.bench_function("http/parse_response_64B", |b| {
        b.iter(|| {
            reader.reset();
            let used = reader.advance(black_box(&wire)).unwrap();
            assert!(reader.is_done());
            used
        })
    });
}

fn completions() -> impl FnMut() -> Completion<'static> {
    let mut rng = Rng::new(3);
    let mut i = 0u64;
    move || {
        i += 1;
        // One request every 10 us over a minute, latencies of 50 us to 5 ms.
        let intended = Instant(i * 10_000 % 60_000_000_000);
        let lat = 50_000 + rng.below(5_000_000);
        Completion {
            intended,
            done: intended + Duration(lat),
            version: Some("v1"),
            outcome: Outcome::Ok,
        }
    }
}

fn recording(c: &mut Criterion) {
    let rc = RecorderConfig {
        window: Duration::from_millis(100),
        duration: Duration::from_secs(60),
        warmup: Duration::ZERO,
        steady_replicas: 0,
        new_version: None,
    };
    let mut direct = Recorder::new(rc.clone());
    let mut next = completions();
    c.bench_function("stats/record_recorder", |b| {
        b.iter(|| Sink::record(&mut direct, black_box(&next())))
    });
    let mut shared = SharedRecorder::new(Arc::new(Mutex::new(Recorder::new(rc))));
    let mut next = completions();
    c.bench_function("stats/record_shared_recorder", |b| {
        b.iter(|| shared.record(black_box(&next())))
    });
}

fn pacing(c: &mut Criterion) {
    let schedule = RateSchedule::constant(RequestRate(1e9));
    let long = Duration::from_secs(1_000_000);
    let mut constant = ArrivalProcess::new(&schedule, Arrivals::Constant, long, 0, 1, Rng::new(1));
    c.bench_function("pacing/next_constant", |b| b.iter(|| constant.next()));
    let mut poisson = ArrivalProcess::new(&schedule, Arrivals::Poisson, long, 0, 1, Rng::new(1));
    c.bench_function("pacing/next_poisson", |b| b.iter(|| poisson.next()));
    let clock = Clock::start_now();
    c.bench_function("pacing/clock_now", |b| b.iter(|| clock.now()));
}

criterion_group!(benches, http, recording, pacing);
criterion_main!(benches);
