//! `sdnbed plot DIR`: (re)draws the figures of a run or an experiment directory.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Draw the figures of a run directory, or of an experiment and all its runs.
#[derive(Args)]
pub struct PlotArgs {
    /// A run directory (holds run.json) or an experiment directory (holds runs/).
    dir: PathBuf,
}

pub fn run(args: PlotArgs) -> anyhow::Result<i32> {
    let files = if args.dir.join("run.json").is_file() {
        crate::report::plot_run(&args.dir)
            .with_context(|| format!("plotting {}", args.dir.display()))?
    } else if args.dir.join("runs").is_dir() {
        let mut files = Vec::new();
        let mut runs: Vec<PathBuf> = std::fs::read_dir(args.dir.join("runs"))
            .with_context(|| format!("reading {}", args.dir.join("runs").display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("run.json").is_file())
            .collect();
        runs.sort();
        for r in runs {
            files.extend(
                crate::report::plot_run(&r).with_context(|| format!("plotting {}", r.display()))?,
            );
        }
        files.extend(
            crate::report::plot_experiment(&args.dir)
                .with_context(|| format!("plotting {}", args.dir.display()))?,
        );
        files
    } else {
        anyhow::bail!(
            "{} is neither a run directory (with run.json) nor an experiment directory (with runs/)",
            args.dir.display()
        );
    };
    for f in files {
        println!("{}", f.display());
    }
    Ok(0)
}
