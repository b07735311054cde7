//! `sdnbed compare DIR`: a table of an experiment's runs, aggregated per parameter combination.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::report::TableFormat;

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Markdown,
    Csv,
    Latex,
}

/// Print a table comparing an experiment's parameter combinations (median over repetitions,
/// with min–max).
#[derive(Args)]
pub struct CompareArgs {
    /// An experiment directory (holds runs/ and summary.csv).
    dir: PathBuf,
    /// Table format.
    #[arg(long, value_enum, default_value = "markdown")]
    format: Format,
}

pub fn run(args: CompareArgs) -> anyhow::Result<i32> {
    let format = match args.format {
        Format::Markdown => TableFormat::Markdown,
        Format::Csv => TableFormat::Csv,
        Format::Latex => TableFormat::Latex,
    };
    let table = crate::report::compare(&args.dir, format)
        .with_context(|| format!("comparing the runs in {}", args.dir.display()))?;
    print!("{table}");
    Ok(0)
}
