//! `sdnbed pause` (hidden): pid 1 of the docker backend's sandbox containers, the holder of a
//! network namespace that replicas join (`network_mode: container:<sandbox>`), like
//! Kubernetes' pause container.
//!
//! It blocks SIGTERM, SIGINT and SIGCHLD and waits for them with `sigwait`, so it needs no
//! signal handler and no files (it runs in the `FROM scratch` builtin image). Blocked signals
//! are delivered even to a pid namespace's init, which ignores signals it has no handler for.
//! On SIGCHLD it reaps every exited child (as pid 1 it inherits orphans); on SIGTERM or SIGINT
//! it exits 0.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

#[derive(clap::Args, Debug)]
pub struct PauseArgs {}

pub fn run(_args: PauseArgs) -> anyhow::Result<i32> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        set.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    loop {
        match set.wait()? {
            Signal::SIGCHLD => reap(),
            _ => return Ok(0),
        }
    }
}

/// Reaps every child that has exited, without blocking.
fn reap() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
