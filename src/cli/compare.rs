//! `sdnbed compare DIR`: a table of an experiment's runs, aggregated per parameter combination.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::report::{TableFormat, TableKind, TableOptions};

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Markdown,
    Csv,
    Latex,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// One row per parameter combination: each metric's mean and interval.
    Summary,
    /// One row per metric and pair of combinations: difference, Mann-Whitney p, Holm p.
    Pairs,
}

/// Print a table comparing an experiment's parameter combinations: each metric's mean over
/// repetitions with its 95 % bootstrap interval, or (`--table pairs`) every pair's difference
/// with its interval and a Mann-Whitney test, Holm-corrected across the pairs of a metric.
///
/// LaTeX output is a booktabs `table` float that fits one column of a two-column paper (by
/// default the columns during_p99_ms, errors, rollout_s, extra_replica_s); `--wide` makes it a
/// `table*`. Markdown and CSV show every column unless `--columns` chooses.
#[derive(Args)]
pub struct CompareArgs {
    /// An experiment directory (holds runs/ and summary.csv).
    dir: PathBuf,
    /// Table format.
    #[arg(long, value_enum, default_value = "markdown")]
    format: Format,
    /// Which table.
    #[arg(long, value_enum, default_value = "summary")]
    table: Kind,
    /// Metric columns, comma-separated, in order: p50_ms, p99_ms, p999_ms, during_p99_ms,
    /// errors, during_errors, rollout_s, extra_replica_s, new_version_requests.
    #[arg(long, value_delimiter = ',', value_name = "KEYS")]
    columns: Option<Vec<String>>,
    /// LaTeX: a `table*` spanning both columns of a two-column paper.
    #[arg(long)]
    wide: bool,
}

pub fn run(args: CompareArgs) -> anyhow::Result<i32> {
    let opts = TableOptions {
        format: match args.format {
            Format::Markdown => TableFormat::Markdown,
            Format::Csv => TableFormat::Csv,
            Format::Latex => TableFormat::Latex,
        },
        kind: match args.table {
            Kind::Summary => TableKind::Summary,
            Kind::Pairs => TableKind::Pairs,
        },
        columns: args.columns,
        wide: args.wide,
    };
    let table = crate::report::compare(&args.dir, &opts)
        .with_context(|| format!("comparing the runs in {}", args.dir.display()))?;
    print!("{table}");
    Ok(0)
}
