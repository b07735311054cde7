//! `sdnbed load` as a child process, the way a backend runs it: the JSON object, the `--out`
//! files, and an honest report when it cannot keep its schedule.

mod workload_support;

use std::process::Command;

use sdnbed::results::timeseries;
use workload_support::ServerProc;

fn load(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .arg("load")
        .args(args)
        .arg("--json")
        .output()
        .expect("run sdnbed load");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn workload_cli_json_and_out_dir() {
    let s = ServerProc::spawn(&["--version", "v3", "--service-time", "const(200us)"]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", s.addr);
    let out = dir.path().join("run");
    let j = load(&[
        "--url",
        &url,
        "--rate",
        "400/s",
        "--arrivals",
        "constant",
        "--duration",
        "500ms",
        "--window",
        "100ms",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(j["requests"], 200);
    assert_eq!(j["ok"], 200);
    for k in ["refused", "reset", "timeout", "5xx", "other"] {
        assert_eq!(j["errors"][k], 0, "{k}");
    }
    assert!(
        (j["achieved_rate"].as_f64().unwrap() - 400.0).abs() < 4.0,
        "{}",
        j["achieved_rate"]
    );
    let lat = &j["latency_ns"];
    for k in ["mean", "p50", "p90", "p99", "p999", "max"] {
        // Every request waited at least its 200 us of service.
        assert!(lat[k].as_f64().unwrap() >= 200_000.0, "{k} = {}", lat[k]);
    }
    assert!(
        lat["p50"].as_u64() <= lat["p99"].as_u64() && lat["p99"].as_u64() <= lat["max"].as_u64()
    );
    assert_eq!(j["by_version"]["v3"]["ok"], 200);

    let csv = std::fs::read_to_string(out.join("timeseries.csv")).unwrap();
    let rows = timeseries::parse(&csv).expect("the run's timeseries format");
    let totals: Vec<_> = rows.iter().filter(|r| r.scope == "total").collect();
    assert_eq!(totals.len(), 5, "five 100 ms windows");
    assert!(
        totals.iter().all(|r| r.sent == 40 && r.ok == 40),
        "{totals:?}"
    );
    let hlog = std::fs::read(out.join("latency.hlog")).unwrap();
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let intervals = IntervalLogIterator::new(&hlog)
        .filter(|e| matches!(e, Ok(LogEntry::Interval(_))))
        .count();
    // One untagged and one `v3` interval per window.
    assert_eq!(intervals, 10);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["requests"], 200);
}

#[test]
fn workload_cli_says_when_it_falls_behind() {
    let s = ServerProc::spawn(&["--version", "v1"]);
    let url = format!("http://{}/", s.addr);
    // Far more than one (debug-build) generator thread can send: it must not pretend.
    let j = load(&[
        "--url",
        &url,
        "--rate",
        "400000/s",
        "--arrivals",
        "constant",
        "--duration",
        "100ms",
        "--connections",
        "16",
    ]);
    assert_eq!(j["requests"], 40_000);
    let sched = &j["schedule"];
    assert_eq!(sched["behind"], true, "{sched}");
    assert!(
        j["achieved_rate"].as_f64().unwrap() < 0.99 * 400_000.0,
        "{}",
        j["achieved_rate"]
    );
    // 40,000 requests through 16 connections cannot all leave on time.
    assert!(
        sched["send_lag_max_ns"].as_u64().unwrap() > 10_000_000,
        "{sched}"
    );
    // Every request is accounted for: a request still waiting for a connection `timeout` after
    // its intended time is a timeout without being sent (on a machine busy enough for that).
    let sent = sched["sent"].as_u64().unwrap();
    let timeouts = j["errors"]["timeout"].as_u64().unwrap();
    assert!(sent <= 40_000 && sent + timeouts >= 40_000, "{j}");
}

#[test]
fn workload_cli_rejects_bad_flags() {
    for args in [
        &["--url", "http://127.0.0.1:1/"][..],
        &["--url", "ftp://x/", "--rate", "1/s"],
        &["--url", "http://127.0.0.1:1/", "--rate", "fast"],
        &["--url", "http://127.0.0.1:1/", "--schedule", "1s:10/s"],
        &[
            "--url",
            "http://127.0.0.1:1/",
            "--rate",
            "max",
            "--connections",
            "0",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
            .arg("load")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}
