//! Teardown on SIGINT and SIGTERM: the process-wide set of live runs and the signal thread.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// On SIGINT or SIGTERM, tears down every live [`Dataplane`](super::Dataplane) of this process from its ledger,
/// then exits with 128 + the signal number. Call early (the CLI and backends do); calls after
/// the first do nothing.
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
            let runs: Vec<(PathBuf, String)> = ACTIVE
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            if !runs.is_empty() {
                match crate::dataplane::netlink::Kernel::new() {
                    Ok(mut k) => {
                        for (dir, run) in runs {
                            if let Err(e) = ledger::teardown(&dir, &run, &mut k) {
                                eprintln!("sdnbed: teardown of {run} after signal {sig}: {e}");
                            }
                        }
                    }
                    Err(e) => eprintln!("sdnbed: cannot tear down after signal {sig}: {e}"),
                }
            }
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}
