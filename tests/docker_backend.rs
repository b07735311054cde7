//! The docker backend end to end against the real Docker Engine (CI runs as root, and test.sh
//! starts dockerd when it is not running): nodes and replicas as containers, the same data
//! plane as netns wired into them, the same runner and files.
//!
//! The images of user versions are built from tests/fixtures/docker-service (`FROM
//! sdnbed:builtin`, sdnbed's own server told not to name its version), so attribution must
//! come from the gateway's steering, as for any researcher's image.

mod netns_common;
mod scenario_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use scenario_support::{files_under, load};
use sdnbed::backend::docker;
use sdnbed::backend::netns::NetnsOptions;
use sdnbed::backend::RunOutput;
use sdnbed::model::rollout::{Outcome, Phase};
use sdnbed::scenario::Scenario;

/// Names of the containers labelled with run `run` (running or not).
fn containers_of(run: &str) -> Vec<String> {
    let o = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=sdnbed.run={run}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Nothing of run `run` is left: no container, namespace, veth, nft table or ledger.
fn assert_gone(run: &str) {
    let left = containers_of(run);
    assert!(left.is_empty(), "containers left: {left:?}");
    netns_common::assert_gone(run);
}

/// Runs `s` in containers as run `tag`, then checks that nothing of the run is left.
fn run(s: &Scenario, tag: &str) -> RunOutput {
    let run_id = netns_common::run_id(tag);
    let work = tempfile::tempdir().unwrap();
    let opts = NetnsOptions {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_sdnbed")),
        run_id: run_id.clone(),
        work_dir: work.path().to_path_buf(),
        deploy: Default::default(),
    };
    let out = docker::run(s, &opts);
    assert_gone(&run_id);
    out.unwrap_or_else(|e| panic!("docker run failed: {e}"))
}

/// The rolling update of rolling-netns.toml, shortened, with both versions built from the
/// fixtures' Dockerfiles.
fn rolling_of_images() -> Scenario {
    load(
        "scenarios/rolling-netns.toml",
        &[
            ("scenario.backend", "\"docker\""),
            ("scenario.duration", "\"14s\""),
            ("rollout.at", "\"3s\""),
            (
                "service.web.versions.v1.build",
                "\"../tests/fixtures/docker-service/v1\"",
            ),
            (
                "service.web.versions.v2.build",
                "\"../tests/fixtures/docker-service/v2\"",
            ),
        ],
    )
}

#[test]
fn rolling_update_of_user_images_with_drain_loses_no_request_and_attributes_both() {
    let out = run(&rolling_of_images(), "droll");
    let sum = &out.metrics.summary;
    assert!(sum.overall.sent > 3000, "sent {}", sum.overall.sent);
    assert_eq!(
        sum.overall.ok, sum.overall.sent,
        "errors under keep-alive load with drain: {:?}",
        sum.overall.errors
    );
    assert_eq!(out.rollout_outcome, Some(Outcome::Promoted));
    // The images never name their version: every answered request is attributed through the
    // gateway's conntrack, to the version of the replica it reached.
    let answered: u64 = sum.versions.values().map(|v| v.ok).sum();
    assert_eq!(
        answered,
        sum.overall.ok,
        "versions: {:?}",
        sum.versions.keys()
    );
    let during = &sum.phase_versions[&Phase::During];
    assert!(
        during.contains_key("v1") && during.contains_key("v2"),
        "{:?}",
        during.keys()
    );
    let after = &sum.phase_versions[&Phase::After];
    assert!(
        after.contains_key("v2") && !after.contains_key("v1"),
        "{:?}",
        after.keys()
    );
    // Every replaced replica was drained and its container reported gone by the engine.
    assert_eq!(out.events.iter().filter(|e| e.kind == "gone").count(), 4);
    assert!(
        out.events
            .iter()
            .filter(|e| e.source == "engine" && e.kind == "container-die")
            .count()
            >= 4,
        "the engine's die events are in the run's events"
    );
}

#[test]
fn a_canary_of_a_bad_image_is_aborted_and_rolled_back() {
    let s = load(
        "scenarios/docker-canary.toml",
        &[("scenario.duration", "\"24s\""), ("rollout.at", "\"4s\"")],
    );
    let out = run(&s, "dcanary");
    assert!(
        matches!(out.rollout_outcome, Some(Outcome::Aborted { .. })),
        "{:?}",
        out.rollout_outcome
    );
    let sum = &out.metrics.summary;
    // v2's errors were seen as v2's (the image names no version), and after the rollback only
    // v1 answers.
    let v2 = &sum.versions["v2"];
    assert!(v2.sent > 0 && v2.ok < v2.sent, "v2: {v2:?}");
    let after = &sum.phase_versions[&Phase::After];
    assert!(!after.contains_key("v2"), "{:?}", after.keys());
    assert!(out.events.iter().any(|e| e.kind == "abort"));
}

#[test]
fn policies_hold_across_containers() {
    // Two clients; a policy lets only `alice` reach the service. The runner checks every
    // (source, destination, port) pair against the policies before load starts and fails the
    // run on an unexpected answer; the lines it logs say what was observed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(
        &file,
        r#"
[scenario]
name = "docker-policy"
duration = "3s"
warmup = "1s"
backend = "docker"

[[node]]
name = "alice"
kind = "client"

[[node]]
name = "mallory"
kind = "client"

[[node]]
name = "gw"
kind = "gateway"

[service.web]
replicas = 2

[service.web.versions.v1]

[[link]]
between = ["alice", "gw"]

[[link]]
between = ["mallory", "gw"]

[[policy]]
name = "only-alice"
from = ["alice"]
to = "web"
ports = [8080]

[[workload]]
name = "users"
from = "alice"
to = "web"
rate = "100/s"
"#,
    )
    .unwrap();
    let exp = sdnbed::scenario::load_experiment(&file, &Default::default()).unwrap();
    let out = run(&exp.runs[0].scenario, "dpolicy");
    let lines: Vec<&str> = out
        .events
        .iter()
        .filter(|e| e.kind == "reachability")
        .map(|e| e.detail.as_str())
        .collect();
    let line = |from: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{from} → web")))
            .unwrap_or_else(|| panic!("no line for {from}: {lines:?}"))
            .to_string()
    };
    assert!(line("alice").contains("allowed"), "{lines:?}");
    assert!(line("mallory").contains("denied"), "{lines:?}");
    assert_eq!(
        out.metrics.summary.overall.ok,
        out.metrics.summary.overall.sent
    );
}

/// The first directory under `dir`.
fn first_dir(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

#[test]
fn quickstart_in_containers_writes_what_the_simulator_and_netns_write() {
    // As in netns_backend.rs: 500 requests/s, 24 s, rollout at 6 s. p50 and p99 of each backend
    // are printed side by side (`cargo test --test docker_backend -- --nocapture`).
    let tmp = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for backend in ["sim", "netns", "docker"] {
        let out = tmp.path().join(backend);
        let o = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
            .args(["run", "scenarios/quickstart.toml", "--backend", backend])
            .arg("--out")
            .arg(&out)
            .args([
                "--set",
                "workload.users.rate=\"500/s\"",
                "--set",
                "scenario.duration=\"24s\"",
                "--set",
                "rollout.at=\"6s\"",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let exp = first_dir(&out.join("quickstart"));
        if backend != "sim" {
            let ledger = files_under(&exp.join(backend))
                .into_iter()
                .find(|p| p.ends_with("ledger.jsonl"))
                .unwrap();
            let text = std::fs::read_to_string(ledger).unwrap();
            let at = text.find("sdnbed-").expect("the ledger names namespaces") + "sdnbed-".len();
            let run_id: String = text[at..].chars().take_while(|c| *c != '-').collect();
            assert_gone(&run_id);
        }
        runs.push(first_dir(&exp.join("runs")));
    }
    let names = |run: &Path| {
        let mut f: Vec<String> = files_under(run)
            .iter()
            .map(|p| p.strip_prefix(run).unwrap().display().to_string())
            .collect();
        f.sort();
        f
    };
    assert_eq!(
        names(&runs[0]),
        names(&runs[2]),
        "sim and docker write the same files"
    );
    assert_eq!(
        names(&runs[1]),
        names(&runs[2]),
        "netns and docker write the same files"
    );
    let summary = |run: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap()
    };
    let q =
        |v: &serde_json::Value, k: &str| v["summary"]["overall"]["latency"][k].as_f64().unwrap();
    println!("quickstart at 500/s: backend, p50 ms, p99 ms");
    for (b, r) in ["sim", "netns", "docker"].iter().zip(&runs) {
        let v = summary(r);
        assert_eq!(v["outcome"], "promoted", "{b}");
        println!("{b}, {:.2}, {:.2}", q(&v, "p50_ms"), q(&v, "p99_ms"));
    }
    // The median is dominated by the emulated 2 × 10 ms: containers add no network of their
    // own, so docker's agrees with the simulator's as netns's does.
    let (a, d) = (
        q(&summary(&runs[0]), "p50_ms"),
        q(&summary(&runs[2]), "p50_ms"),
    );
    assert!((d - a).abs() / a < 0.2, "p50 sim {a} ms, docker {d} ms");
}

#[test]
fn sigkill_of_a_run_then_clean_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .args([
            "run",
            "scenarios/rolling-netns.toml",
            "--backend",
            "docker",
            "--out",
        ])
        .arg(tmp.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the run is under way: its ledger copy lists its four servers' containers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let run_id = loop {
        let text = files_under(tmp.path())
            .into_iter()
            .find(|p| p.ends_with("ledger.jsonl"))
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default();
        let servers = text
            .lines()
            .filter(|l| l.contains("\"container\"") && l.contains("-server"))
            .count();
        if servers >= 4 {
            let at = text.find("sdnbed-").expect("the ledger names namespaces") + "sdnbed-".len();
            break text[at..]
                .chars()
                .take_while(|c| *c != '-')
                .collect::<String>();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not start: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !containers_of(&run_id).is_empty(),
        "containers outlive a SIGKILLed run until cleaned"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .arg("clean")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_gone(&run_id);
}
