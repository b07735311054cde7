//! `sdnbed validate FILE…`: checks scenario files without running anything, with the same
//! checks `sdnbed run` makes before it starts ([`check_runs`]).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::scenario::{cost, diagnose_at, load_experiment, BackendKind, Experiment, LoadOptions};

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
/// is within the limits ([`cost`]) unless `allow_large`. The error is ready to print, placed
/// on the key of `file` it is about where there is one.
pub fn check_runs(file: &Path, exp: &Experiment, allow_large: bool) -> Result<(), String> {
    use crate::sim::SimError;
    let at = |key: &str, msg: String, hint: &str| {
        diagnose_at(file, key, msg, Some(hint.to_string()))
            .to_string()
            .trim_end()
            .to_string()
    };
    for spec in &exp.runs {
        let sc = &spec.scenario;
        if super::run::backend_for(sc.backend).is_none() {
            return Err(format!(
                "error: {}: the {} backend is not part of this build yet; run with --backend \
                 sim, netns or docker",
                file.display(),
                sc.backend.as_str()
            ));
        }
        match crate::sim::check(sc) {
            Ok(()) => {}
            Err(SimError::NoRoute { workload, from, to }) => {
                return Err(at(
                    &format!("workload.{workload}.to"),
                    format!("workload {workload}: no route from {from} to {to}"),
                    "add a [[link]] that connects them",
                ))
            }
            Err(SimError::ServiceUnreachable { service, gateway }) => {
                return Err(at(
                    &format!("service.{service}.gateway"),
                    format!("service {service}: its links do not reach its gateway {gateway}"),
                    &format!(
                        "link the service to {gateway} (or remove its links to attach it to \
                         the gateway directly)"
                    ),
                ))
            }
        }
        if let Err(e) = cost::check(sc, allow_large) {
            let key = match e {
                cost::CostError::Memory { .. } => "scenario.window",
                cost::CostError::Requests { .. } => "scenario.duration",
            };
            return Err(at(
                key,
                e.to_string(),
                "the limits are about 2 GiB of windows and 50,000,000 requests per run",
            ));
        }
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
            Ok(exp) => match check_runs(file, &exp, args.allow_large) {
                Ok(()) => println!("{}", describe(file, &exp)),
                Err(e) => {
                    eprintln!("{e}");
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
