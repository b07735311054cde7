//! The command line: one file per subcommand. Exit status: 0 success, 1 failure, 2 invalid
//! input (a scenario that does not validate, or bad arguments).

use clap::{Parser, Subcommand};

mod compare;
pub mod lab;
pub mod load;
mod manifests;
mod pause;
mod plot;
mod report;
mod run;
pub mod serve;
mod validate;

/// Exit status for input that does not validate.
pub const EXIT_INVALID: i32 = 2;

#[derive(Parser)]
#[command(
    name = "sdnbed",
    version,
    about = "A research testbed and simulator for deployments on programmable networks",
    long_about = "sdnbed runs a scenario (topology, links, policies, workload, the rollout of a new \
service version, timed events, a parameter sweep) on a backend and writes an immutable, \
self-describing results directory with time series, per-version and per-phase statistics and \
figures.\n\nThe scenario format is documented in docs/scenario.md.",
    after_help = "Examples:\n  sdnbed run scenarios/quickstart.toml\n  sdnbed run scenarios/strategies.toml --jobs 2\n  \
sdnbed run scenarios/quickstart.toml --set rollout.strategy=canary --set 'rollout.canary.steps=[{weight=10,pause=\"10s\"},{weight=100}]' --seed 3\n  sdnbed validate scenarios/*.toml\n  \
sdnbed compare results/strategies/<experiment> --format latex"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(run::RunArgs),
    Validate(validate::ValidateArgs),
    Plot(plot::PlotArgs),
    Compare(compare::CompareArgs),
    Report(report::ReportArgs),
    /// Print a scenario as Kubernetes objects (YAML), as `run --backend kube` applies them.
    Manifests(manifests::ManifestsArgs),
    /// Deploy a scenario on network namespaces, services serving, and leave it up (lab mode,
    /// root).
    Up(lab::UpArgs),
    /// Run a rollout on a live lab (`sdnbed up`), printing its events as they happen.
    Rollout(lab::RolloutArgs),
    /// Run a command in a node's namespace of a lab run.
    Exec(lab::ExecArgs),
    /// Remove a lab run.
    Down(lab::DownArgs),
    /// Remove what run ledgers list (after a crash or kill -9 too).
    Clean(lab::CleanArgs),
    /// Run the built-in HTTP service (what replicas run on the real backends).
    Serve(serve::ServeArgs),
    /// Run the open-loop load generator against a URL.
    Load(load::LoadArgs),
    /// Sleep as a sandbox container's pid 1 until SIGTERM or SIGINT, reaping children.
    #[command(hide = true)]
    Pause(pause::PauseArgs),
}

/// Runs the command line and returns the process exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_INVALID } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Report(a) => report::run(a),
        Command::Manifests(a) => manifests::run(a),
        Command::Up(a) => lab::up(a),
        Command::Rollout(a) => lab::rollout(a),
        Command::Exec(a) => lab::exec(a),
        Command::Down(a) => lab::down(a),
        Command::Clean(a) => lab::clean(a),
        Command::Serve(a) => serve::run(a).map(|()| 0),
        Command::Load(a) => load::run(a).map(|()| 0),
        Command::Pause(a) => pause::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Parses `KEY=VALUE` for `--set`.
fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!(
            "`{s}` is not KEY=VALUE (e.g. rollout.strategy=canary)"
        )),
    }
}
