//! `sdnbed run --resume DIR` completes a sweep interrupted by SIGKILL: the runs finished
//! before the kill are neither redone nor touched, the missing ones run, and the summary lists
//! every run once.

mod scenario_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use scenario_support::files_under;

const ARGS: &[&str] = &[
    "run",
    "scenarios/steering.toml",
    "--set",
    "scenario.duration=20s",
    "--no-plots",
    "--jobs",
    "1",
];

/// Every file under the experiment's runs/ with its bytes and modification time.
fn snapshot(runs: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    files_under(runs)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p.clone(), (std::fs::read(&p).unwrap(), m))
        })
        .collect()
}

#[test]
fn resume_completes_an_interrupted_sweep_without_touching_finished_runs() {
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .args(ARGS)
        .arg("--out")
        .arg(out.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once two runs are complete (of six).
    let deadline = Instant::now() + Duration::from_secs(60);
    let count = || {
        files_under(out.path())
            .iter()
            .filter(|p| p.ends_with("run.json"))
            .count()
    };
    while count() < 2 {
        assert!(Instant::now() < deadline, "no run completed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = count();
    assert!(
        done < 6,
        "the sweep finished before the kill; nothing to resume"
    );
    let exp = files_under(out.path())
        .into_iter()
        .find(|p| p.ends_with("run.json"))
        .and_then(|p| p.parent()?.parent()?.parent().map(Path::to_path_buf))
        .unwrap();
    let before = snapshot(&exp.join("runs"));
    let o = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .args(ARGS)
        .arg("--resume")
        .arg(&exp)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Only the missing runs ran (one line each).
    let lines = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains("requests"))
        .count();
    assert_eq!(lines, 6 - done);
    let after = snapshot(&exp.join("runs"));
    for (p, v) in &before {
        // Temporary directories of the killed run are removed, complete runs untouched.
        if p.components()
            .any(|c| c.as_os_str().to_string_lossy().contains(".tmp-"))
        {
            assert!(!after.contains_key(p), "{} left", p.display());
        } else {
            assert_eq!(after.get(p), Some(v), "{} changed", p.display());
        }
    }
    assert_eq!(count(), 6);
    let summary = std::fs::read_to_string(exp.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1 + 6, "{summary}");
    // Resuming a complete experiment runs nothing.
    let o = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .args(ARGS)
        .arg("--resume")
        .arg(&exp)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(snapshot(&exp.join("runs")), after);
}
