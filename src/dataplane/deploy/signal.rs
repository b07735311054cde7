//! Teardown on SIGINT and SIGTERM, safe at any moment of a run.
//!
//! One mechanism covers every phase (deploy, replica changes, steering, teardown itself):
//! every change to the kernel, and every process start, happens inside a [`critical`] section.
//! On a signal the handler thread first closes the gate (no section starts any more: a thread
//! that tries parks until the process exits) and waits for the sections in flight to finish, so
//! nothing is created behind its back. Then it kills this process's children (a replica's
//! server whose start was in flight has no ledger line yet), tears every live run down from its
//! ledger, kills children once more, and exits with 128 + the signal number. A ledger is
//! deleted only when every object it lists is confirmed gone (see [`ledger::teardown`]), so a
//! teardown that fails leaves the record `sdnbed clean` needs.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::dataplane::ledger;

/// Runs torn down on SIGINT/SIGTERM: (ledger dir, run).
static ACTIVE: Mutex<BTreeSet<(PathBuf, String)>> = Mutex::new(BTreeSet::new());

pub(super) fn set_active(dir: &Path, run: &str, on: bool) {
    let mut a = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
    let key = (dir.to_path_buf(), run.to_string());
    if on {
        a.insert(key);
    } else {
        a.remove(&key);
    }
}

/// The gate: how many critical sections are in flight, and whether a signal closed it.
struct Gate {
    in_flight: usize,
    closed: bool,
}

static GATE: Mutex<Gate> = Mutex::new(Gate {
    in_flight: 0,
    closed: false,
});
static GATE_CV: Condvar = Condvar::new();

thread_local! {
    /// Nesting depth of this thread's critical sections (a nested one never blocks).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// How long the signal thread waits for sections in flight before tearing down anyway.
const DRAIN: Duration = Duration::from_secs(10);

/// A critical section: while one is alive, signal teardown waits. See [`critical`].
#[must_use = "the section ends when this is dropped"]
pub struct Critical(());

/// Enters a critical section, for a change the ledger must see whole: record, then create (a
/// batch of ops; a process start followed by [`Dataplane::record_process`](super::Dataplane)).
/// After a signal closed the gate, the calling thread parks here until the process exits.
/// Sections nest.
pub fn critical() -> Critical {
    if DEPTH.with(|d| d.get()) == 0 {
        let mut g = GATE.lock().unwrap_or_else(|p| p.into_inner());
        if g.closed {
            drop(g);
            loop {
                std::thread::park();
            }
        }
        g.in_flight += 1;
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    Critical(())
}

impl Drop for Critical {
    fn drop(&mut self) {
        let depth = DEPTH.with(|d| {
            d.set(d.get() - 1);
            d.get()
        });
        if depth == 0 {
            let mut g = GATE.lock().unwrap_or_else(|p| p.into_inner());
            g.in_flight -= 1;
            GATE_CV.notify_all();
        }
    }
}

/// Closes the gate and waits (up to [`DRAIN`]) until no critical section is in flight.
fn close_gate() {
    let mut g = GATE.lock().unwrap_or_else(|p| p.into_inner());
    g.closed = true;
    let deadline = std::time::Instant::now() + DRAIN;
    while g.in_flight > 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            eprintln!("sdnbed: a kernel change still in flight after {DRAIN:?}; tearing down");
            break;
        }
        g = GATE_CV
            .wait_timeout(g, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// SIGKILLs every child of this process and reaps it.
fn kill_children() {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for ent in rd.flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4 (ppid) comes after the command name in parentheses.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// On SIGINT or SIGTERM, stops every kernel change of this process, then tears down every live
/// [`Dataplane`](super::Dataplane) of this process from its ledger, then exits with 128 + the
/// signal number (see the module docs). Call early (the CLI and backends do); calls after the
/// first do nothing.
pub fn install_signal_teardown() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if *installed {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    *installed = true;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            close_gate();
            let runs: Vec<(PathBuf, String)> = ACTIVE
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            if !runs.is_empty() {
                kill_children();
                match crate::dataplane::netlink::Kernel::new() {
                    Ok(mut k) => {
                        for (dir, run) in runs {
                            match ledger::teardown(&dir, &run, &mut k) {
                                Ok(()) | Err(ledger::LedgerError::NoLedger { .. }) => {}
                                Err(e) => {
                                    eprintln!("sdnbed: teardown of {run} after signal {sig}: {e}")
                                }
                            }
                        }
                    }
                    Err(e) => eprintln!("sdnbed: cannot tear down after signal {sig}: {e}"),
                }
                kill_children();
            }
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}
