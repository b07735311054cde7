//! Run directories: files, read-back, the interval log, determinism, immutability, summary.csv.

mod output_fixture;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use sdnbed::metrics::Phase;
use sdnbed::results::{self, ResultsError};

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn run_directory_holds_every_file_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs").join("0000-r0");
    let rec = output_fixture::record(7, 0, &[], 0);
    results::write_run(&dir, &rec).unwrap();
    let names: Vec<String> = files(&dir).into_keys().collect();
    assert_eq!(
        names,
        [
            "events.jsonl",
            "latency.hlog",
            "links.csv",
            "run.json",
            "scenario.toml",
            "timeseries.csv"
        ]
    );
    let links = fs::read_to_string(dir.join("links.csv")).unwrap();
    assert_eq!(
        links,
        "t_s,link,direction,packets,bytes,dropped_queue,dropped_loss,dropped_down\n\
         1,client-gw,fwd,10,15000,0,0,0\n"
    );

    let run = results::read_run(&dir).unwrap();
    assert_eq!(run.summary, rec.metrics.summary);
    assert_eq!(run.resolved_scenario["rollout"]["to"], "v2");
    assert_eq!(run.seeds["workload.users"], 7);
    assert_eq!(
        fs::read_to_string(dir.join("scenario.toml")).unwrap(),
        output_fixture::TOML
    );
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(run.provenance.kernel, kernel.trim());
    assert_eq!(run.provenance.wall_s, 1.234);

    // The time series agrees with the recorder: 600 windows × (total + v1 + v2).
    let rows = results::read_timeseries(&dir).unwrap();
    assert_eq!(rows.len(), 600 * 3);
    let totals: Vec<_> = rows.iter().filter(|r| r.scope == "total").collect();
    assert_eq!(totals.len(), 600);
    let sent: u64 = totals.iter().map(|r| r.sent).sum();
    let all_sent: u64 = rec
        .metrics
        .windows
        .iter()
        .map(|w| w.total.stats().sent)
        .sum();
    assert_eq!(sent, all_sent);
    let w200 = &totals[200];
    assert_eq!(
        (w200.t_start_s, w200.t_end_s, w200.phase.as_str()),
        (20.0, 20.1, "during")
    );
    let v2_at_31 = rows
        .iter()
        .find(|r| r.version == "v2" && r.t_start_s == 31.0)
        .unwrap();
    assert_eq!(v2_at_31.weight_pct, Some(50.0));
    assert_eq!(v2_at_31.replicas["ready"], 4);
    let total_at_36 = totals.iter().find(|r| r.t_start_s == 36.0).unwrap();
    assert_eq!(
        (total_at_36.replicas_total, total_at_36.replicas["draining"]),
        (8, 4)
    );
    // Shares of the versions in a window add up to one.
    let shares: f64 = rows
        .iter()
        .filter(|r| r.scope == "version" && r.t_start_s == 30.0)
        .filter_map(|r| r.share)
        .sum();
    assert!((shares - 1.0).abs() < 1e-5, "{shares}");

    let events = results::read_events(&dir).unwrap();
    assert_eq!(events.len(), 9);
    assert!(events.windows(2).all(|w| w[0].t_s <= w[1].t_s));
}

#[test]
fn interval_log_reads_back_with_the_crate_iterator() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let rec = output_fixture::record(11, 0, &[], 0);
    results::write_run(&dir, &rec).unwrap();
    let bytes = fs::read(dir.join("latency.hlog")).unwrap();
    let mut deserializer = Deserializer::new();
    let (mut untagged, mut v2, mut v2_count) = (0, 0, 0u64);
    let mut total_count = 0u64;
    for entry in IntervalLogIterator::new(&bytes) {
        let LogEntry::Interval(h) = entry.unwrap() else {
            continue;
        };
        let decoded = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            h.encoded_histogram(),
        )
        .unwrap();
        let hist: hdrhistogram::Histogram<u64> =
            deserializer.deserialize(&mut decoded.as_slice()).unwrap();
        match h.tag().map(|t| t.as_str().to_string()) {
            None => {
                assert_eq!(
                    h.start_timestamp().as_nanos(),
                    untagged as u128 * 100_000_000
                );
                assert_eq!(h.duration().as_millis(), 100);
                untagged += 1;
                total_count += hist.len();
            }
            Some(t) if t == "v2" => {
                v2 += 1;
                v2_count += hist.len();
            }
            Some(t) => assert_eq!(t, "v1"),
        }
    }
    assert_eq!((untagged, v2), (600, 600));
    let ok: u64 = rec.metrics.windows.iter().map(|w| w.total.stats().ok).sum();
    assert_eq!(total_count, ok);
    let v2_ok: u64 = rec
        .metrics
        .windows
        .iter()
        .map(|w| w.versions["v2"].stats().ok)
        .sum();
    assert_eq!(v2_count, v2_ok);
}

#[test]
fn identical_inputs_give_identical_bytes_except_provenance() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    results::write_run(&a, &output_fixture::record(5, 0, &[], 0)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    results::write_run(&b, &output_fixture::record(5, 0, &[], 0)).unwrap();
    let (mut fa, mut fb) = (files(&a), files(&b));
    let strip = |bytes: Vec<u8>| {
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v.as_object_mut().unwrap().remove("provenance").unwrap();
        serde_json::to_string(&v).unwrap()
    };
    let (ja, jb) = (
        strip(fa.remove("run.json").unwrap()),
        strip(fb.remove("run.json").unwrap()),
    );
    assert_eq!(ja, jb);
    assert_eq!(fa, fb);
    // A different seed changes the data, so the comparison above can fail.
    let c = tmp.path().join("c");
    results::write_run(&c, &output_fixture::record(6, 0, &[], 0)).unwrap();
    assert_ne!(files(&c)["timeseries.csv"], fa["timeseries.csv"]);
}

#[test]
fn an_existing_run_directory_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let rec = output_fixture::record(1, 0, &[], 0);
    results::write_run(&dir, &rec).unwrap();
    let before = files(&dir);
    let err = results::write_run(&dir, &rec).unwrap_err();
    assert!(matches!(err, ResultsError::RunDirExists(_)), "{err}");
    assert_eq!(files(&dir), before);
}

#[test]
fn experiment_layout_and_summary_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = results::create_experiment_dir(tmp.path(), "synthetic").unwrap();
    let exp2 = results::create_experiment_dir(tmp.path(), "synthetic").unwrap();
    assert_ne!(exp, exp2);
    assert_eq!(exp.parent().unwrap(), tmp.path().join("synthetic"));
    let name = exp.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(name.len(), "20261126T091021Z-abcdef".len(), "{name}");
    assert!(exp.join("runs").is_dir());

    let keys = vec!["rollout.strategy".to_string()];
    for (i, strategy) in ["canary", "rolling"].iter().enumerate() {
        for rep in 0..2u32 {
            let index = i * 2 + rep as usize;
            let params = [("rollout.strategy", *strategy)];
            let rec = output_fixture::record(100 + index as u64, index, &params, rep);
            let dir = exp
                .join("runs")
                .join(results::run_dir_name(index, &rec.params, rep));
            results::write_run(&dir, &rec).unwrap();
        }
    }
    // An incomplete run (no run.json) is skipped.
    fs::create_dir(exp.join("runs").join("0099-broken-r0")).unwrap();

    let path = results::write_summary(&exp, &keys).unwrap();
    let (header, rows) = results::read_csv(&path).unwrap();
    assert_eq!(
        &header[..4],
        ["run", "index", "repetition", "rollout.strategy"]
    );
    assert_eq!(header.len(), 4 + results::SUMMARY_COLUMNS.len());
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[2][0], "0002-strategy-rolling-r0");
    assert_eq!(rows[2][3], "rolling");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let run = results::read_run(&exp.join("runs").join(&rows[1][0])).unwrap();
    let during = run.summary.phases[&Phase::During].latency.unwrap();
    assert_eq!(
        rows[1][col("during_p99_ms")].parse::<f64>().unwrap(),
        during.p99_ms
    );
    assert_eq!(rows[1][col("rollout_duration_s")], "20");
    assert_eq!(rows[1][col("outcome")], "completed");
    // Replicas above 4: 1 from 20 s to 30 s, 4 from 30 s to 31 s, 4 from 31 s to 40 s → 50.
    assert_eq!(rows[1][col("extra_replica_s")], "50");
    assert_eq!(
        rows[1][col("errors")],
        run.summary.overall.errors.total().to_string()
    );
}
