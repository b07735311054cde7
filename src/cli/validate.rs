//! `sdnbed validate FILE…`: checks scenario files without running anything.

use std::path::PathBuf;

use clap::Args;

use crate::scenario::{load_experiment, LoadOptions};

/// Check scenario files (format, references, routes) and show the runs they expand to.
#[derive(Args)]
pub struct ValidateArgs {
    /// Scenario files to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Apply KEY=VALUE overrides before checking, as `run --set` does.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = super::parse_set)]
    set: Vec<(String, String)>,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<i32> {
    let opts = LoadOptions {
        overrides: args.set,
        ..Default::default()
    };
    let mut status = 0;
    for file in &args.files {
        match load_experiment(file, &opts) {
            Ok(exp) => {
                let routes = exp
                    .runs
                    .iter()
                    .try_for_each(|r| crate::sim::check(&r.scenario));
                match routes {
                    Ok(()) => println!(
                        "{}: ok ({} run{}{})",
                        file.display(),
                        exp.runs.len(),
                        if exp.runs.len() == 1 { "" } else { "s" },
                        if exp.swept_keys.is_empty() {
                            String::new()
                        } else {
                            format!(", sweeping {}", exp.swept_keys.join(", "))
                        }
                    ),
                    Err(e) => {
                        eprintln!("error: {}: {e}", file.display());
                        status = super::EXIT_INVALID;
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                status = super::EXIT_INVALID;
            }
        }
    }
    Ok(status)
}
