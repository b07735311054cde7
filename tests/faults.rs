//! Privileged fault suite: signals at any moment of a netns run, and back-to-back runs, leave
//! nothing behind and lose no data.
//!
//! Each case runs `sdnbed run` on a short version of `scenarios/rolling-netns.toml` (2 s, a
//! rolling update at 0.5 s: deploy, replica starts and stops, steering changes and teardown all
//! happen inside the signal window), sends SIGINT, SIGTERM or SIGKILL at a moment between 0 and
//! after the end of the run, runs `sdnbed clean OUT` after SIGKILL (the only signal that cannot tear
//! down), and then checks from the run's ledger copy that every namespace and process it lists
//! is gone, that its main ledger is gone, that no `sdnbed serve` of this binary survives, and
//! that every run directory present is complete (no half-written run; summary rows = runs).

mod scenario_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use scenario_support::files_under;
use sdnbed::dataplane::ledger;

/// One case at a time: the orphan check counts this binary's `sdnbed serve` processes.
static SERIAL: Mutex<()> = Mutex::new(());

const SHORT: &[&str] = &[
    "--set",
    "scenario.duration=2s",
    "--set",
    "scenario.warmup=0s",
    "--set",
    "rollout.at=500ms",
    "--set",
    "service.web.termination.pre_stop=100ms",
];

fn start(out: &Path, duration: &str) -> Child {
    let mut args: Vec<String> = SHORT.iter().map(|s| s.to_string()).collect();
    args[1] = format!("scenario.duration={duration}");
    Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .args([
            "run",
            "scenarios/rolling-netns.toml",
            "--backend",
            "netns",
            "--no-plots",
        ])
        .args(&args)
        .arg("--out")
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `sdnbed serve` processes of this binary (a leaked one is reparented, so look at them all).
fn serve_processes() -> Vec<u32> {
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_sdnbed")).unwrap();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        let same_exe = std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe);
        if same_exe && !zombie && cmd.split(|b| *b == 0).any(|a| a == b"serve") {
            out.push(pid);
        }
    }
    out
}

/// What a case left: objects of the run still there, and incomplete run directories.
#[derive(Debug, Default)]
struct Left {
    objects: Vec<String>,
    lost: Vec<String>,
}

fn inspect(out: &Path) -> Left {
    let mut left = Left::default();
    let files = files_under(out);
    for copy in files.iter().filter(|p| p.ends_with("ledger.jsonl")) {
        let entries = ledger::read(copy).unwrap();
        left.objects.extend(ledger::remaining(&entries));
        if let Some((run, main)) = ledger::files(&entries) {
            if main.exists() {
                left.objects.push(format!("ledger of run {run}"));
            }
        }
    }
    left.objects.extend(
        serve_processes()
            .iter()
            .map(|p| format!("sdnbed serve {p}")),
    );
    // Every run directory is whole; summary.csv, if any, has one row per run.
    let runs: Vec<PathBuf> = files
        .iter()
        .filter(|p| {
            p.parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "runs")
        })
        .cloned()
        .collect();
    let dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent())
        .filter(|d| {
            d.parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "runs")
        })
        .map(Path::to_path_buf)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(runs.is_empty(), "files directly in runs/: {runs:?}");
    for d in &dirs {
        let name = d.file_name().unwrap().to_string_lossy();
        let whole = [
            "run.json",
            "scenario.toml",
            "timeseries.csv",
            "latency.hlog",
            "events.jsonl",
        ]
        .iter()
        .all(|f| d.join(f).is_file());
        if name.starts_with('.') || !whole {
            left.lost
                .push(format!("incomplete run directory {}", d.display()));
        }
    }
    for s in files.iter().filter(|p| p.ends_with("summary.csv")) {
        let rows = std::fs::read_to_string(s).unwrap().lines().count() - 1;
        let runs = s.parent().unwrap().join("runs");
        let complete = dirs.iter().filter(|d| d.starts_with(&runs)).count();
        if rows != complete {
            left.lost
                .push(format!("{}: {rows} rows for {complete} runs", s.display()));
        }
    }
    left
}

fn clean(out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .arg("clean")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "clean: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Cleans up after a failed case too, so a failing test leaves nothing.
struct Guard(PathBuf);

impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
                .arg("clean")
                .arg(&self.0)
                .output();
        }
    }
}

#[test]
fn signals_at_any_moment_leave_nothing() {
    let _s = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = serve_processes();
    assert!(
        before.is_empty(),
        "sdnbed serve already running: {before:?}"
    );
    let moments_ms = [0u64, 40, 120, 300, 800, 1600, 2600, 4000];
    let mut table = Vec::new();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        for &ms in &moments_ms {
            let tmp = tempfile::tempdir().unwrap();
            let _g = Guard(tmp.path().to_path_buf());
            let t = Instant::now();
            let mut child = start(tmp.path(), "2s");
            std::thread::sleep(Duration::from_millis(ms));
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, sig) };
            let status = child.wait().unwrap();
            if sig == libc::SIGKILL {
                clean(tmp.path());
            }
            let left = inspect(tmp.path());
            table.push(format!(
                "signal {sig:>2} at {ms:>4} ms: exit {:?} after {:?}, left {:?}",
                status.code(),
                t.elapsed(),
                left
            ));
            assert!(
                left.objects.is_empty() && left.lost.is_empty(),
                "signal {sig} at {ms} ms: {left:?}"
            );
        }
    }
    eprintln!("{}", table.join("\n"));
}

#[test]
fn twenty_back_to_back_runs_leave_nothing() {
    let _s = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let _g = Guard(tmp.path().to_path_buf());
    for i in 0..20 {
        let child = start(tmp.path(), "1s");
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "run {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let left = inspect(tmp.path());
    assert!(left.objects.is_empty() && left.lost.is_empty(), "{left:?}");
    let complete = files_under(tmp.path())
        .iter()
        .filter(|p| p.ends_with("run.json"))
        .count();
    assert_eq!(complete, 20);
}
