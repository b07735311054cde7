//! Privileged: a deployment held by a process that is killed with SIGKILL is removed by
//! `sdnbed clean RUN` from its ledger alone (namespaces, veths, nft tables and the processes
//! started in them); one whose process gets SIGTERM tears itself down.

mod netns_common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netns_common::*;
use sdnbed::cli::lab::{clean, CleanArgs};
use sdnbed::dataplane::ledger::{self, Entry};
use sdnbed::dataplane::netlink::{command_in, netns_path};
use sdnbed::scenario::types::{NodeKind, Policy};

/// Not a test on its own: the child process of the tests below. Deploys run
/// `$SDNBED_TEST_HOLD`, starts `sleep` in a replica, says READY and waits to be killed.
#[test]
#[ignore = "helper process for the lifecycle tests"]
// The helper is killed before it could wait for `sleep`; teardown or clean kills `sleep`.
#[allow(clippy::zombie_processes)]
fn hold_a_deployment() {
    let Ok(run) = std::env::var("SDNBED_TEST_HOLD") else {
        return;
    };
    if std::env::var("SDNBED_TEST_SIGNAL").is_ok() {
        sdnbed::dataplane::install_signal_teardown().unwrap();
    }
    let sc = scenario(
        vec![
            node("client", NodeKind::Client),
            node("gw", NodeKind::Gateway),
        ],
        vec![service("web", 1, 8080, "gw")],
        vec![link(n("client"), n("gw"), Some(50_000_000))],
        vec![Policy {
            name: "p".into(),
            from: vec!["client".into()],
            to: "web".into(),
            ports: vec![8080],
        }],
    );
    let mut dp = deploy(&sc, &run);
    let r = dp.add_replica("web", 0).unwrap();
    let child = command_in(&r.netns, "sleep")
        .unwrap()
        .arg("1000")
        .spawn()
        .unwrap();
    dp.record_process(child.id()).unwrap();
    println!("READY");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Starts the helper for `run` and waits until it is deployed; returns it and the sleep pid.
fn start_holder(run: &str, signal_hook: bool) -> (std::process::Child, u32) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "hold_a_deployment", "--ignored", "--nocapture"])
        .env("SDNBED_TEST_HOLD", run)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if signal_hook {
        cmd.env("SDNBED_TEST_SIGNAL", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let ready = BufReader::new(out)
        .lines()
        .any(|l| l.map(|l| l.contains("READY")).unwrap_or(false));
    assert!(ready, "helper did not deploy");
    let entries = ledger::read(Path::new(&format!("/run/sdnbed/{run}.ledger"))).unwrap();
    let sleep = entries
        .iter()
        .find_map(|e| match e {
            Entry::Process { pid, .. } => Some(*pid),
            _ => None,
        })
        .expect("the helper recorded its process");
    for ns in ["client", "gw", "web-0"] {
        assert!(netns_path(&format!("sdnbed-{run}-{ns}")).exists());
    }
    (child, sleep)
}

fn process_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            // A zombie waiting for its new parent to reap it is dead too.
            Ok(s) if s[s.rfind(')').unwrap() + 2..].starts_with('Z') => return true,
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[test]
fn sigkill_then_clean_leaves_nothing() {
    let run = run_id("kill");
    let (mut child, sleep) = start_holder(&run, false);
    child.kill().unwrap(); // SIGKILL: no teardown runs
    child.wait().unwrap();
    assert!(netns_path(&format!("sdnbed-{run}-gw")).exists());
    let code = clean(CleanArgs {
        run: Some(run.clone()),
        all: false,
        force: false,
        results: "results".into(),
    })
    .unwrap();
    assert_eq!(code, 0);
    assert_gone(&run);
    assert!(process_gone(sleep), "sleep {sleep} survived the clean");
    // Cleaning again is an error (no ledger), and touches nothing.
    assert!(clean(CleanArgs {
        run: Some(run.clone()),
        all: false,
        force: false,
        results: "results".into(),
    })
    .is_err());
}

#[test]
fn sigterm_tears_down() {
    let run = run_id("term");
    let (mut child, sleep) = start_holder(&run, true);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert_gone(&run);
    assert!(
        process_gone(sleep),
        "sleep {sleep} survived SIGTERM teardown"
    );
}
