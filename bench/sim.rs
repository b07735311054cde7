//! Simulator speed in events per second, on the quickstart and on a large case (1,000 replicas,
//! 100k requests/s, 60 s simulated; bench/large.toml).
//!
//!   cargo bench --bench sim
//!
//! Criterion reports time per run and, through `Throughput::Elements`, events per second (an
//! "element" is one processed simulator event; the count is deterministic for a seed).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sdnbed::scenario::{load_experiment, LoadOptions};

fn scenario(path: &str) -> sdnbed::scenario::Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let exp = load_experiment(&path, &LoadOptions::default()).expect("benchmark scenario is valid");
    exp.runs[0].scenario.clone()
}

fn bench(c: &mut Criterion) {
    for (name, path, samples) in [
        ("quickstart", "scenarios/quickstart.toml", 10),
        ("large_1000_replicas_100k_rps_60s", "bench/large.toml", 10),
    ] {
        let s = scenario(path);
        let events = sdnbed::sim::run(&s).expect("routes exist").events_processed;
        let mut group = c.benchmark_group("sim");
        group.sample_size(samples);
        group.throughput(Throughput::Elements(events));
        group.bench_function(name, |b| {
            b.iter(|| sdnbed::sim::run(&s).expect("routes exist"))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
