//! Lab mode, for exploring a topology by hand (like Mininet's CLI, one command at a time):
//! `sdnbed up FILE` deploys a scenario's network on the netns data plane and leaves it up,
//! `sdnbed exec RUN NODE -- CMD…` runs a command in a node's namespace, `sdnbed down RUN`
//! removes the run, and `sdnbed clean [RUN|--all]` removes what ledgers list (after a crash or
//! `kill -9` too). Every command needs root.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::dataplane::ledger::{self, Entry};
use crate::dataplane::netlink::{command_in, Kernel};
use crate::dataplane::{install_signal_teardown, prepare, Dataplane, DeployOptions, Ipv4Net};
use crate::model::rollout::Traffic;
use crate::model::steering::{Endpoint, SteeringTable};
use crate::scenario::{load_experiment, LoadOptions};

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The scenario file. Its nodes, links, policies and services are deployed (each service
    /// with its `replicas`, steered equally); no workload or rollout runs. A sweep deploys its
    /// first run.
    pub file: PathBuf,
    /// Where to write nodes.json (each node's namespace, addresses and routes) and a copy of
    /// the ledger. Default: results/lab/RUN.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The run id, used in every name (a-z, 0-9, `-`). Default: the scenario name and this
    /// process id.
    #[arg(long)]
    pub run: Option<String>,
    /// The address pool the run's block is taken from.
    #[arg(long, default_value = "198.18.0.0/15")]
    pub pool: String,
    /// Print only the run id (for scripts).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The run id `sdnbed up` printed.
    pub run: String,
    /// A node, or a replica as `SERVICE-ID` (e.g. `web-0`).
    pub node: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// The run id `sdnbed up` printed.
    pub run: String,
}

#[derive(Args, Debug)]
pub struct CleanArgs {
    /// The run to remove (whatever its ledger lists).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub run: Option<String>,
    /// Every run with a ledger whose owning process is gone (runs left by `sdnbed up`, and
    /// runs whose process crashed or was killed). Runs of live processes are skipped.
    #[arg(long)]
    pub all: bool,
}

fn ledger_dir() -> &'static Path {
    Path::new(ledger::DEFAULT_DIR)
}

/// `sdnbed up FILE [--out DIR]`.
pub fn up(args: UpArgs) -> anyhow::Result<i32> {
    let exp =
        load_experiment(&args.file, &LoadOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sc = &exp
        .runs
        .first()
        .context("the scenario expands to no run")?
        .scenario;
    let run = args
        .run
        .clone()
        .unwrap_or_else(|| format!("{}-{}", sc.name, std::process::id()));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("results/lab").join(&run));
    let pool: Ipv4Net = args.pool.parse()?;
    install_signal_teardown().context("installing the Ctrl-C handler")?;
    let opts = DeployOptions {
        pool,
        ledger_copy: Some(out.join("ledger.jsonl")),
        ..Default::default()
    };
    let (plan, l) = prepare(sc, &run, &opts)?;
    let kernel = Kernel::new().context("opening rtnetlink (sdnbed up needs root)")?;
    let mut dp = Dataplane::deploy(plan, l, kernel)?;
    for s in &sc.services {
        let mut eps = Vec::new();
        for id in 0..s.replicas {
            dp.add_replica(&s.name, id)?;
            eps.push(Endpoint {
                id,
                version: &s.version,
            });
        }
        dp.set_steering(
            &s.name,
            &SteeringTable::build(&Traffic::ByReadyReplicas, &eps),
        )?;
    }
    let desc = dp.describe();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let nodes_json = out.join("nodes.json");
    std::fs::write(&nodes_json, serde_json::to_string_pretty(&desc)? + "\n")
        .with_context(|| format!("writing {}", nodes_json.display()))?;
    let run = dp.keep();
    if args.quiet {
        println!("{run}");
        return Ok(0);
    }
    println!("run {run} is up ({})", desc["block"].as_str().unwrap_or(""));
    let empty = Vec::new();
    for n in desc["nodes"].as_array().unwrap_or(&empty) {
        let addrs: Vec<String> = n["ifaces"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|i| {
                format!(
                    "{}/{} ({})",
                    i["addr"].as_str().unwrap_or(""),
                    i["prefix_len"],
                    i["peer"].as_str().unwrap_or("")
                )
            })
            .collect();
        println!(
            "  {:<12} {:<28} {}",
            n["name"].as_str().unwrap_or(""),
            n["netns"].as_str().unwrap_or(""),
            addrs.join(", ")
        );
    }
    for s in desc["services"].as_array().unwrap_or(&empty) {
        println!(
            "  service {} at {}:{}",
            s["name"].as_str().unwrap_or(""),
            s["vip"].as_str().unwrap_or(""),
            s["port"]
        );
        for r in s["replicas"].as_array().unwrap_or(&empty) {
            println!(
                "    {:<10} {:<28} {}",
                r["name"].as_str().unwrap_or(""),
                r["netns"].as_str().unwrap_or(""),
                r["ifaces"][0]["addr"].as_str().unwrap_or("")
            );
        }
    }
    println!("wrote {}", nodes_json.display());
    println!("try:  sdnbed exec {run} NODE -- ip addr");
    println!("stop: sdnbed down {run}");
    Ok(0)
}

/// `sdnbed exec RUN NODE -- CMD…`: the command's exit status.
pub fn exec(args: ExecArgs) -> anyhow::Result<i32> {
    let ns = format!("sdnbed-{}-{}", args.run, args.node);
    let path = ledger_dir().join(format!("{}.ledger", args.run));
    if !path.exists() {
        bail!(
            "no run `{}` (no ledger in {})",
            args.run,
            ledger_dir().display()
        );
    }
    let entries = ledger::read(&path)?;
    if !entries
        .iter()
        .any(|e| matches!(e, Entry::Netns { name } if *name == ns))
    {
        bail!(
            "run `{}` has no node `{}` (see its nodes.json)",
            args.run,
            args.node
        );
    }
    let status = command_in(&ns, &args.command[0])
        .with_context(|| format!("namespace {ns}"))?
        .args(&args.command[1..])
        .status()
        .with_context(|| format!("running {}", args.command[0]))?;
    Ok(status.code().unwrap_or(1))
}

/// `sdnbed down RUN`.
pub fn down(args: DownArgs) -> anyhow::Result<i32> {
    let mut k = Kernel::new().context("opening rtnetlink (sdnbed down needs root)")?;
    ledger::teardown(ledger_dir(), &args.run, &mut k)?;
    Ok(0)
}

/// `sdnbed clean [RUN|--all]`.
pub fn clean(args: CleanArgs) -> anyhow::Result<i32> {
    clean_in(ledger_dir(), args)
}

/// `clean` with ledgers in `dir`.
pub fn clean_in(dir: &Path, args: CleanArgs) -> anyhow::Result<i32> {
    let mut k = Kernel::new().context("opening rtnetlink (sdnbed clean needs root)")?;
    let runs = match args.run {
        Some(r) => vec![r],
        None => ledger::list_runs(dir)?,
    };
    let mut status = 0;
    for run in runs {
        let entries = ledger::read(&dir.join(format!("{run}.ledger")))?;
        if args.all && ledger::owner_alive(&entries) {
            eprintln!("skipping run {run}: its process is still running (sdnbed clean {run} removes it anyway)");
            continue;
        }
        let n = entries
            .iter()
            .filter(|e| matches!(e, Entry::Netns { .. }))
            .count();
        match ledger::teardown(dir, &run, &mut k) {
            Ok(()) => println!("removed run {run} ({n} namespaces)"),
            Err(e) => {
                eprintln!("error: {e}");
                status = 1;
            }
        }
    }
    Ok(status)
}
