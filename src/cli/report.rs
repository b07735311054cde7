//! `sdnbed report DIR`: writes `DIR/report.html`, one self-contained page for a run or an
//! experiment.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Write DIR/report.html: what was run (scenario, sweep, seeds, provenance), the figures as
/// inline SVG (drawn first where missing), the tables, the timeline of rollout events,
/// per-version and per-phase statistics and, for an experiment, the comparison with 95 %
/// bootstrap intervals and Holm-corrected Mann-Whitney tests. The page loads nothing from
/// anywhere: it can be mailed or archived as it is. `sdnbed run` writes it for every
/// experiment unless --no-plots.
#[derive(Args)]
pub struct ReportArgs {
    /// A run directory (holds run.json) or an experiment directory (holds runs/).
    dir: PathBuf,
}

pub fn run(args: ReportArgs) -> anyhow::Result<i32> {
    let path = crate::report::write_report(&args.dir)
        .with_context(|| format!("writing the report of {}", args.dir.display()))?;
    println!("{}", path.display());
    Ok(0)
}
