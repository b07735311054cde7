//! `sdnbed validate FILE…`: checks scenario files without running anything, with the same
//! checks `sdnbed run` makes before it starts ([`check_runs`]).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::scenario::{cost, load_experiment, BackendKind, Experiment, LoadOptions};

/// Check scenario files (format, references, routes, backend, cost) and show the runs they
/// expand to.
#[derive(Args)]
pub struct ValidateArgs {
    /// Scenario files to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Apply KEY=VALUE overrides before checking, as `run --set` does.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = super::parse_set)]
    set: Vec<(String, String)>,
    /// Accept runs above the cost limits (see `run --allow-large`).
    #[arg(long)]
    allow_large: bool,
}

/// What `run` checks of every run of an experiment, beyond the file format, before anything
/// starts: the backend is part of this build, every workload has a route, and the run's cost
/// is within the limits ([`cost`]) unless `allow_large`. The error is one line, for
/// `error: FILE: …`.
pub fn check_runs(exp: &Experiment, allow_large: bool) -> Result<(), String> {
    for spec in &exp.runs {
        let sc = &spec.scenario;
        if matches!(sc.backend, BackendKind::Docker | BackendKind::Kube) {
            return Err(format!(
                "the {} backend is not part of this build yet; run with --backend sim or netns",
                sc.backend.as_str()
            ));
        }
        crate::sim::check(sc).map_err(|e| e.to_string())?;
        cost::check(sc, allow_large).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What `run` needs of the machine for these runs, checked before it touches anything: the
/// netns backend needs root.
pub fn check_privileges(exp: &Experiment) -> Result<(), String> {
    let netns = exp
        .runs
        .iter()
        .any(|r| r.scenario.backend == BackendKind::Netns);
    // SAFETY: geteuid has no preconditions and cannot fail.
    if netns && unsafe { libc::geteuid() } != 0 {
        return Err(
            "the netns backend needs root (network namespaces, veths, nftables); run with sudo, \
             or with --backend sim"
                .into(),
        );
    }
    Ok(())
}

fn describe(file: &Path, exp: &Experiment) -> String {
    format!(
        "{}: ok ({} run{}{})",
        file.display(),
        exp.runs.len(),
        if exp.runs.len() == 1 { "" } else { "s" },
        if exp.swept_keys.is_empty() {
            String::new()
        } else {
            format!(", sweeping {}", exp.swept_keys.join(", "))
        }
    )
}

pub fn run(args: ValidateArgs) -> anyhow::Result<i32> {
    let opts = LoadOptions {
        overrides: args.set,
        ..Default::default()
    };
    let mut status = 0;
    for file in &args.files {
        match load_experiment(file, &opts) {
            Ok(exp) => match check_runs(&exp, args.allow_large) {
                Ok(()) => println!("{}", describe(file, &exp)),
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    status = super::EXIT_INVALID;
                }
            },
            Err(e) => {
                eprintln!("{e}");
                status = super::EXIT_INVALID;
            }
        }
    }
    Ok(status)
}
