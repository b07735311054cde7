//! The `sdnbed` binary end to end: what a user types, what lands on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod scenario_support;

use scenario_support::files_under;

fn sdnbed(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

/// The only experiment directory under `out`.
fn experiment(out: &Path, scenario: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join(scenario))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    dirs.pop().unwrap()
}

fn without_provenance(run_json: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(run_json).unwrap();
    v.as_object_mut()
        .unwrap()
        .remove("provenance")
        .expect("run.json has provenance");
    v
}

/// `report.html` of a one-run experiment with the run's start time (from its run.json) blanked:
/// the report shows the provenance, and only the time may differ between equal runs.
fn report_without_start(files: &BTreeMap<PathBuf, Vec<u8>>, report: &Path) -> Vec<u8> {
    let (_, run_json) = files
        .iter()
        .find(|(p, _)| p.ends_with("run.json"))
        .expect("a run.json");
    let v: serde_json::Value = serde_json::from_slice(run_json).unwrap();
    let started = v["provenance"]["started"].as_str().expect("a start time");
    String::from_utf8_lossy(&files[report])
        .replace(started, "STARTED")
        .into_bytes()
}

#[test]
fn same_seed_same_files_other_seed_other_files() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let out = tmp.path().join(name);
        let o = sdnbed(&[
            "run",
            "scenarios/quickstart.toml",
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        files(&experiment(&out, "quickstart"))
    };
    let (a, b, c) = (run("a", "7"), run("b", "7"), run("c", "8"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        if path.ends_with("run.json") {
            assert_eq!(
                without_provenance(bytes),
                without_provenance(&b[path]),
                "{}",
                path.display()
            );
        } else if path.ends_with("report.html") {
            assert!(
                report_without_start(&a, path) == report_without_start(&b, path),
                "{} differs between two runs with the same seed (beyond the start time)",
                path.display()
            );
        } else {
            assert!(
                *bytes == b[path],
                "{} differs between two runs with the same seed",
                path.display()
            );
        }
    }
    for expected in [
        "timeseries.csv",
        "latency.hlog",
        "events.jsonl",
        "links.csv",
        "scenario.toml",
        "figures/latency.png",
    ] {
        assert!(
            a.keys().any(|p| p.ends_with(expected)),
            "{expected} missing: {:?}",
            a.keys()
        );
    }
    let ts = |m: &BTreeMap<PathBuf, Vec<u8>>| {
        m.iter()
            .find(|(p, _)| p.ends_with("timeseries.csv"))
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(ts(&a), ts(&c), "another seed must give another run");
}

#[test]
fn invalid_input_exits_2_with_a_located_message() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[scenario]\nname = \"bad\"\n\n[[node]]\nname = \"a\"\n\n[[node]]\nname = \"b\"\n\n[[link]]\nbetween = [\"a\", \"b\"]\nbandwith = \"10Mbit\"\n",
    )
    .unwrap();
    for cmd in ["validate", "run"] {
        let o = sdnbed(&[cmd, bad.to_str().unwrap(), "--set", "scenario.seed=1"]);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("bandwith") && err.contains("bandwidth"),
            "{cmd}: {err}"
        );
        assert!(err.contains("bad.toml:12:1"), "{cmd}: {err}");
    }
    // Nothing was written for the invalid run.
    assert!(!Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("results/bad")
        .exists());
    let o = sdnbed(&["run", "scenarios/quickstart.toml", "--backend", "quantum"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn sweep_summary_compare_and_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = sdnbed(&[
        "run",
        "scenarios/strategies.toml",
        "--set",
        "sweep.repetitions=1",
        "--set",
        "scenario.duration=\"40s\"",
        "--no-plots",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let exp = experiment(&out, "strategies");
    let summary = std::fs::read_to_string(exp.join("summary.csv")).unwrap();
    assert_eq!(
        summary.lines().count(),
        5,
        "a header and one row per strategy:\n{summary}"
    );
    for s in ["recreate", "rolling", "blue-green", "canary"] {
        assert!(summary.contains(s), "{s} missing from\n{summary}");
    }
    let o = sdnbed(&["compare", exp.to_str().unwrap(), "--format", "latex"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("\\toprule") && table.contains("blue-green"),
        "{table}"
    );
    let o = sdnbed(&["plot", exp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(listed.lines().all(|l| Path::new(l).is_file()), "{listed}");
    assert!(
        listed.lines().count() >= 4 * 6,
        "every run's figures and the experiment's: {listed}"
    );
}
