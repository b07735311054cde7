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
use crate::dataplane::{install_signal_teardown, DeployOptions, Ipv4Net};
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
    /// Stay in the foreground and tear the run down at Ctrl-C (or SIGTERM), instead of
    /// returning and leaving the run to `sdnbed down`.
    #[arg(long)]
    pub foreground: bool,
    /// Internal: this process is the keeper `sdnbed up` starts (see `up`).
    #[arg(long, hide = true, conflicts_with = "foreground")]
    pub keeper: bool,
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
    /// The run to remove (whatever its ledger lists), or an output directory: every run whose
    /// ledger copy (`ledger.jsonl`) is under it, also when the run's main ledger is gone.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub run: Option<String>,
    /// Every run with a ledger whose owning process is gone (runs whose process crashed or was
    /// killed), and every run under `--results` whose ledger copy lists objects that still
    /// exist. Live runs and labs held by `sdnbed up` are skipped.
    #[arg(long)]
    pub all: bool,
    /// Remove RUN even if it is live (its process still runs, or `sdnbed up` holds it).
    #[arg(long)]
    pub force: bool,
    /// Where `--all` also looks for ledger copies.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

fn ledger_dir() -> &'static Path {
    Path::new(ledger::DEFAULT_DIR)
}

/// The keeper's log (its stderr, and its stdout once it holds), in the run's output directory.
const LOG_FILE: &str = "lab.log";

/// The keeper's last line on its stdout when it stays to carry emulated links (not shown).
const HOLDING: &str = "sdnbed-up-keeper: holding";

/// `sdnbed up FILE [--out DIR]`.
///
/// Links the kernel cannot shape (delay, jitter, loss or a trace without netem) are carried by
/// the user-space link emulator, which lives in a process. So the deploy runs in a child, the
/// keeper (`sdnbed up … --keeper`, in its own session, its stderr in `OUT/lab.log`): it deploys,
/// prints the run, and either leaves (nothing to carry: the run stays up without it) or stays to
/// carry the emulated links until `sdnbed down` stops it (SIGTERM, after which it tears the run
/// down itself). This process forwards what the keeper prints and returns once it is up, or
/// with the keeper's error.
pub fn up(args: UpArgs) -> anyhow::Result<i32> {
    let exp = match load_experiment(&args.file, &LoadOptions::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return Ok(super::EXIT_INVALID);
        }
    };
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
    if args.foreground || args.keeper {
        deploy_and_hold(&args, sc, &run, &out)
    } else {
        spawn_keeper(&args, &run, &out)
    }
}

fn spawn_keeper(args: &UpArgs, run: &str, out: &Path) -> anyhow::Result<i32> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let log_path = out.join(LOG_FILE);
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = Command::new(std::env::current_exe().context("finding the sdnbed binary")?);
    cmd.arg("up")
        .arg(&args.file)
        .arg("--out")
        .arg(out)
        .args(["--run", run, "--pool", &args.pool, "--keeper"]);
    if args.quiet {
        cmd.arg("--quiet");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
    // SAFETY: setsid is async-signal-safe. Its own session keeps the keeper out of the
    // terminal's signals once this process has returned.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("starting the keeper")?;
    // Ctrl-C or SIGTERM while the keeper deploys: ask it to tear down.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let signal_handle = signals.handle();
    let forward = std::thread::spawn(move || {
        for _ in signals.forever() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    });
    let mut holding = false;
    let stdout = child.stdout.take().expect("piped");
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading the keeper's output")?;
        if line == HOLDING {
            holding = true;
        } else {
            println!("{line}");
        }
    }
    let status = if holding {
        None
    } else {
        Some(child.wait().context("waiting for the keeper")?)
    };
    signal_handle.close();
    let _ = forward.join();
    match status {
        None => Ok(0),
        Some(s) if s.success() => {
            let _ = std::fs::remove_file(&log_path);
            Ok(0)
        }
        Some(s) => {
            eprint!("{}", std::fs::read_to_string(&log_path).unwrap_or_default());
            Ok(s.code().unwrap_or(1))
        }
    }
}

/// The deploy itself (`--keeper`, or `--foreground` by hand).
fn deploy_and_hold(
    args: &UpArgs,
    sc: &crate::scenario::Scenario,
    run: &str,
    out: &Path,
) -> anyhow::Result<i32> {
    use std::io::Write;

    if args.keeper {
        // A closed stdout (the caller gone) is then an error that tears the run down, not a
        // silent death that leaves it up with no emulator.
        // SAFETY: setting a signal disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
    let pool: Ipv4Net = args.pool.parse()?;
    install_signal_teardown().context("installing the Ctrl-C handler")?;
    let opts = DeployOptions {
        pool,
        ledger_copy: Some(out.join("ledger.jsonl")),
        ..Default::default()
    };
    let (mut dp, mut emu) = crate::linkemu::deploy(sc, run, &opts, Some(&out.join("pcap")))?;
    for s in &sc.services {
        let mut eps = Vec::new();
        for id in 0..s.replicas {
            dp.add_replica(&s.name, id)?;
            emu.add_replica(&dp, &s.name, id)?;
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
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let nodes_json = out.join("nodes.json");
    std::fs::write(&nodes_json, serde_json::to_string_pretty(&desc)? + "\n")
        .with_context(|| format!("writing {}", nodes_json.display()))?;
    let emulating = emu.control().is_some();
    let text = if args.quiet {
        format!("{run}\n")
    } else {
        let mut t = describe(run, &desc, &nodes_json);
        if emulating {
            let log = if args.keeper {
                format!(" (log: {})", out.join(LOG_FILE).display())
            } else {
                String::new()
            };
            t += &format!(
                "process {} carries the emulated links{log}\n",
                std::process::id()
            );
        }
        t += &if args.foreground {
            "Ctrl-C tears the run down\n".to_string()
        } else {
            format!("stop: sdnbed down {run}\n")
        };
        t
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if !(emulating || args.foreground) {
        stdout.flush()?;
        dp.keep();
        return Ok(0);
    }
    if args.keeper {
        writeln!(stdout, "{HOLDING}")?;
        stdout.flush()?;
        // Hand the pipe back (the caller returns at its end); anything printed later goes to
        // the log with stderr.
        nix::unistd::dup2_stdout(std::io::stderr()).context("redirecting stdout to the log")?;
    }
    stdout.flush()?;
    drop(stdout);
    // Until SIGTERM or Ctrl-C: the handler tears the run down (the emulator with it) and exits.
    let _hold = (dp, emu);
    loop {
        std::thread::park();
    }
}

/// What `sdnbed up` prints about a deployed run.
fn describe(run: &str, desc: &serde_json::Value, nodes_json: &Path) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "run {run} is up ({})",
        desc["block"].as_str().unwrap_or("")
    );
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
        let _ = writeln!(
            t,
            "  {:<12} {:<28} {}",
            n["name"].as_str().unwrap_or(""),
            n["netns"].as_str().unwrap_or(""),
            addrs.join(", ")
        );
    }
    for s in desc["services"].as_array().unwrap_or(&empty) {
        let _ = writeln!(
            t,
            "  service {} at {}:{}",
            s["name"].as_str().unwrap_or(""),
            s["vip"].as_str().unwrap_or(""),
            s["port"]
        );
        for r in s["replicas"].as_array().unwrap_or(&empty) {
            let _ = writeln!(
                t,
                "    {:<10} {:<28} {}",
                r["name"].as_str().unwrap_or(""),
                r["netns"].as_str().unwrap_or(""),
                r["ifaces"][0]["addr"].as_str().unwrap_or("")
            );
        }
    }
    let _ = writeln!(t, "wrote {}", nodes_json.display());
    let _ = writeln!(t, "try:  sdnbed exec {run} NODE -- ip addr");
    t
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

/// `sdnbed clean [RUN|DIR|--all]`.
pub fn clean(args: CleanArgs) -> anyhow::Result<i32> {
    clean_in(ledger_dir(), args)
}

/// `clean` with ledgers in `dir`.
pub fn clean_in(dir: &Path, args: CleanArgs) -> anyhow::Result<i32> {
    let mut k = Kernel::new().context("opening rtnetlink (sdnbed clean needs root)")?;
    let mut status = 0;
    let mut report = |what: &str, r: Result<String, ledger::LedgerError>| match r {
        Ok(run) => println!("removed run {run} ({what})"),
        Err(e) => {
            eprintln!("error: {e}");
            status = 1;
        }
    };
    match &args.run {
        Some(arg) if Path::new(arg).is_dir() => {
            for copy in ledger_copies(Path::new(arg)) {
                let entries = ledger::read(&copy)?;
                if let (Some(why), false) = (ledger::live(&entries), args.force) {
                    eprintln!("skipping {}: {why} (--force removes it)", copy.display());
                    continue;
                }
                report(
                    &copy.display().to_string(),
                    ledger::teardown_copy(&copy, &mut k),
                );
            }
        }
        Some(run) => {
            let path = dir.join(format!("{run}.ledger"));
            if !path.exists() {
                bail!(
                    "no ledger for run `{run}` in {} (`sdnbed clean DIR` also finds runs by \
                     the ledger copy in their output directory)",
                    dir.display()
                );
            }
            let entries = ledger::read(&path)?;
            if let (Some(why), false) = (ledger::live(&entries), args.force) {
                bail!("run `{run}` is live: {why}; pass --force to remove it anyway");
            }
            let n = namespaces(&entries);
            report(
                &format!("{n} namespaces"),
                ledger::teardown(dir, run, &mut k).map(|()| run.clone()),
            );
        }
        None => {
            for run in ledger::list_runs(dir)? {
                let entries = ledger::read(&dir.join(format!("{run}.ledger")))?;
                if let Some(why) = ledger::live(&entries) {
                    eprintln!("skipping run {run}: {why} (sdnbed clean {run} --force removes it)");
                    continue;
                }
                let n = namespaces(&entries);
                report(
                    &format!("{n} namespaces"),
                    ledger::teardown(dir, &run, &mut k).map(|()| run),
                );
            }
            for copy in ledger_copies(&args.results) {
                let entries = ledger::read(&copy)?;
                let orphan = ledger::files(&entries).is_some_and(|(_, main)| !main.exists());
                if orphan
                    && ledger::live(&entries).is_none()
                    && !ledger::remaining(&entries).is_empty()
                {
                    report(
                        &copy.display().to_string(),
                        ledger::teardown_copy(&copy, &mut k),
                    );
                }
            }
        }
    }
    Ok(status)
}

fn namespaces(entries: &[Entry]) -> usize {
    entries
        .iter()
        .filter(|e| matches!(e, Entry::Netns { .. }))
        .count()
}

/// The ledger copies (`ledger.jsonl`) under `root`, a few levels deep (an experiment's runs
/// are at `runs/RUN/`).
fn ledger_copies(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for ent in rd.flatten() {
            let p = ent.path();
            if ent.file_type().is_ok_and(|t| t.is_dir()) {
                if depth > 0 {
                    walk(&p, depth - 1, out);
                }
            } else if ent.file_name() == "ledger.jsonl" {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, 6, &mut out);
    out.sort();
    out
}
