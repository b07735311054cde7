//! Lab mode, for exploring a topology by hand (like Mininet's CLI, one command at a time):
//! `sdnbed up FILE [--backend docker]` deploys a scenario on the netns backend (or in
//! containers) with its services serving and steering in place, and leaves it up; `sdnbed rollout RUN` runs a rollout against it;
//! `sdnbed exec RUN NODE -- CMD…` runs a command in a node's namespace (in a replica's server
//! container, through the engine's exec, on docker); `sdnbed down RUN`
//! removes the run; `sdnbed clean [RUN|--all]` removes what ledgers list (after a crash or
//! `kill -9` too). Every command needs root.
//!
//! A lab with services is the real-time runner of a measured run ([`crate::backend::runner`])
//! held open without a workload ([`crate::backend::netns::hold`]), in a keeper process: one
//! orchestration for runs and labs. The keeper listens on an abstract Unix socket,
//! `@sdnbed-<run>.ctl` (it vanishes with the process), for rollouts on demand.

use std::io::{BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::backend::effects::{Inbox, Report};
use crate::backend::netns::NetnsOptions;
use crate::dataplane::ledger::{self, Entry};
use crate::dataplane::netlink::{command_in, Kernel};
use crate::dataplane::{install_signal_teardown, Dataplane, DeployOptions, Ipv4Net};
use crate::model::rollout::Traffic;
use crate::model::steering::{Endpoint, SteeringTable};
use crate::scenario::{load_experiment, LoadOptions};

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The scenario file. Its nodes, links, policies and services are deployed, each service
    /// with `replicas` replicas of its starting version serving (the built-in server, as in a
    /// run) and steering in place; no workload, timed event or rollout runs until
    /// `sdnbed rollout`. A sweep deploys its first run.
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
    /// netns (namespaces and `sdnbed serve` processes) or docker (every node and replica a
    /// container on the Docker Engine, the same network wired into them).
    #[arg(long, value_name = "B", default_value = "netns", value_parser = ["netns", "docker"])]
    pub backend: String,
    /// Stay in the foreground and tear the run down at Ctrl-C (or SIGTERM), instead of
    /// returning and leaving the run to `sdnbed down`.
    #[arg(long)]
    pub foreground: bool,
    /// Deploy the network only: every replica's namespace and steering, but no server runs
    /// (start your own with `sdnbed exec RUN SERVICE-ID -- …`), and no rollout can run.
    #[arg(long)]
    pub topology_only: bool,
    /// Internal: this process is the keeper `sdnbed up` starts (see `up`).
    #[arg(long, hide = true, conflicts_with = "foreground")]
    pub keeper: bool,
}

#[derive(Args, Debug)]
pub struct RolloutArgs {
    /// The run id `sdnbed up` printed (a lab with services, not `--topology-only`).
    pub run: String,
    /// The version to roll out. Default: the scenario's `rollout.to`.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// recreate, rolling, blue-green or canary. Default: the scenario's `rollout.strategy`.
    #[arg(long, value_name = "S")]
    pub strategy: Option<String>,
    /// Override one key of the scenario's rollout before it runs, e.g.
    /// `--set rollout.rolling.max_surge=2`; repeatable, validated as `run --set` is. The
    /// rollout begins at once, whatever `rollout.at` says.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = super::parse_set)]
    pub set: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The run id `sdnbed up` printed.
    pub run: String,
    /// A node, or a replica as `SERVICE-ID` (e.g. `web-0`). On docker, a replica's command
    /// runs inside its server container (the engine's exec), with the image's own tools.
    pub node: String,
    /// Run the command from this machine in the node's network namespace, also for a
    /// replica on docker (the host's tools: ping, ss, iperf3).
    #[arg(long)]
    pub netns: bool,
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
        .args(["--run", run, "--pool", &args.pool, "--keeper"])
        .args(["--backend", &args.backend]);
    if args.quiet {
        cmd.arg("--quiet");
    }
    if args.topology_only {
        cmd.arg("--topology-only");
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
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    if args.topology_only {
        return deploy_topology(args, sc, run, out, pool);
    }
    let opts = NetnsOptions {
        exe: std::env::current_exe().context("finding the sdnbed binary")?,
        run_id: run.to_string(),
        work_dir: out.to_path_buf(),
        deploy: DeployOptions {
            pool,
            ..Default::default()
        },
    };
    let file = std::fs::canonicalize(&args.file)
        .with_context(|| format!("finding {}", args.file.display()))?;
    let ready = |dp: &Dataplane<Kernel>, inbox| {
        listen_for_rollouts(run, file, out.to_path_buf(), inbox)?;
        announce(args, run, out, dp, Holding::Services)?;
        Ok(())
    };
    // Returns only with an error: SIGTERM or Ctrl-C tear the run down and exit.
    match args.backend.as_str() {
        "docker" => crate::backend::docker::hold(sc, &opts, ready)?,
        _ => crate::backend::netns::hold(sc, &opts, ready)?,
    }
    Ok(1)
}

/// `--topology-only`: the network and steering to the replicas' addresses, no server.
fn deploy_topology(
    args: &UpArgs,
    sc: &crate::scenario::Scenario,
    run: &str,
    out: &Path,
    pool: Ipv4Net,
) -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("finding the sdnbed binary")?;
    let opts = DeployOptions {
        pool,
        ledger_copy: Some(out.join("ledger.jsonl")),
        sandboxes: match args.backend.as_str() {
            "docker" => Some(crate::backend::docker::sandboxes(&exe, run)?),
            _ => None,
        },
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
    let holding = if emu.control().is_some() {
        Holding::Links
    } else {
        Holding::Nothing
    };
    announce(args, run, out, &dp, holding)?;
    if holding == Holding::Nothing && !args.foreground {
        dp.keep();
        return Ok(0);
    }
    // Until SIGTERM or Ctrl-C: the handler tears the run down (the emulator with it) and exits.
    let _hold = (dp, emu);
    loop {
        std::thread::park();
    }
}

/// What the process that deployed a lab still has to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holding {
    /// Nothing: the run stays up without it.
    Nothing,
    /// Carry the emulated links.
    Links,
    /// Run the services (and carry any emulated links).
    Services,
}

/// Writes nodes.json, prints what is up, and for a keeper that stays, tells `up` so and hands
/// its stdout back.
fn announce(
    args: &UpArgs,
    run: &str,
    out: &Path,
    dp: &Dataplane<Kernel>,
    holding: Holding,
) -> anyhow::Result<()> {
    let desc = dp.describe();
    let nodes_json = out.join("nodes.json");
    std::fs::write(&nodes_json, serde_json::to_string_pretty(&desc)? + "\n")
        .with_context(|| format!("writing {}", nodes_json.display()))?;
    let text = if args.quiet {
        format!("{run}\n")
    } else {
        let mut t = describe(run, &desc, &nodes_json);
        let log = if args.keeper {
            format!(" (log: {})", out.join(LOG_FILE).display())
        } else {
            String::new()
        };
        let pid = std::process::id();
        match holding {
            Holding::Nothing => {}
            Holding::Links => t += &format!("process {pid} carries the emulated links{log}\n"),
            Holding::Services => {
                t += &format!(
                    "process {pid} runs the services{log}; replica logs in {}\n",
                    out.join("replicas").display()
                );
                t += &format!("roll out: sdnbed rollout {run} [--to VERSION]\n");
            }
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
    if args.keeper && holding != Holding::Nothing {
        writeln!(stdout, "{HOLDING}")?;
        stdout.flush()?;
        // Hand the pipe back (the caller returns at its end); anything printed later goes to
        // the log with stderr.
        nix::unistd::dup2_stdout(std::io::stderr()).context("redirecting stdout to the log")?;
    }
    stdout.flush()?;
    Ok(())
}

/// The keeper's control socket for run `run`: an abstract Unix socket, gone with the process.
fn control_addr(run: &str) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("sdnbed-{run}.ctl"))
}

/// What `sdnbed rollout` asks the keeper for: one JSON line.
#[derive(serde::Serialize, serde::Deserialize)]
struct RolloutRequest {
    /// The version to roll out, instead of the scenario's `rollout.to`. Set after validation:
    /// the file's check that it differs from the starting version does not hold in a lab that
    /// has rolled out since (the runner checks it against the version running now).
    to: Option<String>,
    /// `--set`-style overrides of the lab's scenario file (`rollout.strategy`, … included).
    overrides: Vec<(String, String)>,
}

/// Serves rollout requests on the control socket, one at a time, on a thread of its own. Each
/// request re-reads the lab's scenario file with the request's overrides (validated as
/// `run --set` is), hands the rollout to the runner, and relays its events (written to
/// `OUT/rollouts/NN/events.jsonl` too) and its outcome back.
fn listen_for_rollouts(
    run: &str,
    file: PathBuf,
    out: PathBuf,
    inbox: Inbox,
) -> Result<(), crate::backend::effects::EffectError> {
    let listener = UnixListener::bind_addr(&control_addr(run)?)
        .map_err(|e| format!("the control socket @sdnbed-{run}.ctl: {e}"))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { continue };
                if let Err(e) = serve_rollout(conn, n, &file, &out, &inbox) {
                    eprintln!("sdnbed: a rollout request: {e:#}");
                }
            }
        })?;
    Ok(())
}

fn serve_rollout(
    conn: UnixStream,
    n: usize,
    file: &Path,
    out: &Path,
    inbox: &Inbox,
) -> anyhow::Result<()> {
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let req: RolloutRequest = serde_json::from_str(&line).context("reading the request")?;
    let mut w = &conn;
    let opts = LoadOptions {
        overrides: req.overrides,
        ..Default::default()
    };
    let rollout = match load_experiment(file, &opts) {
        Ok(exp) => exp
            .runs
            .into_iter()
            .next()
            .and_then(|r| r.scenario.rollout)
            .map(|r| crate::scenario::Rollout {
                to: req.to.unwrap_or(r.to.clone()),
                ..r
            }),
        Err(e) => {
            writeln!(w, "{}", serde_json::json!({ "error": e.to_string() }))?;
            return Ok(());
        }
    };
    let Some(rollout) = rollout else {
        let e = "the scenario has no [rollout]: add one to the file, or give --set \
                 rollout.service=NAME --set rollout.to=VERSION";
        writeln!(w, "{}", serde_json::json!({ "error": e }))?;
        return Ok(());
    };
    let dir = out.join("rollouts").join(format!("{n:02}-{}", rollout.to));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let events_path = dir.join("events.jsonl");
    let mut events = std::fs::File::create(&events_path)
        .with_context(|| format!("creating {}", events_path.display()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    inbox
        .send(Report::Rollout {
            rollout: Box::new(rollout),
            reply: tx,
        })
        .context("the runner has stopped")?;
    for line in rx {
        let mut v: serde_json::Value = serde_json::from_str(&line)?;
        if v.get("outcome").is_some() {
            v["events"] = events_path.display().to_string().into();
        } else if v.get("error").is_none() {
            writeln!(events, "{line}")?;
        }
        // The client may have gone (Ctrl-C): the rollout goes on, and its file is written.
        let _ = writeln!(w, "{v}");
    }
    Ok(())
}

/// `sdnbed rollout RUN [--to VERSION] [--strategy S] [--set KEY=VALUE…]`: runs a rollout on a
/// live lab, printing its events as they happen. Exit status 0 when it ends (promoted or
/// rolled back, as printed), 2 when the keeper rejects it.
pub fn rollout(args: RolloutArgs) -> anyhow::Result<i32> {
    let mut overrides = Vec::new();
    if let Some(s) = &args.strategy {
        overrides.push(("rollout.strategy".to_string(), s.clone()));
    }
    overrides.extend(args.set.iter().cloned());
    let conn = UnixStream::connect_addr(&control_addr(&args.run)?).with_context(|| {
        format!(
            "no live lab `{}` takes rollouts (is its `sdnbed up` still running? a \
             --topology-only lab has no services to roll out)",
            args.run
        )
    })?;
    let mut w = &conn;
    let req = RolloutRequest {
        to: args.to.clone(),
        overrides,
    };
    writeln!(w, "{}", serde_json::to_string(&req)?)?;
    for line in BufReader::new(&conn).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        if let Some(e) = v["error"].as_str() {
            eprintln!("{e}");
            return Ok(super::EXIT_INVALID);
        }
        if let Some(o) = v["outcome"].as_str() {
            let reason = v["reason"]
                .as_str()
                .map_or(String::new(), |r| format!(": {r}"));
            println!("rollout {o}{reason}");
            println!("events: {}", v["events"].as_str().unwrap_or(""));
            return Ok(0);
        }
        println!(
            "{:>9.3}s  {} {}: {}",
            v["t_s"].as_f64().unwrap_or(0.0),
            v["source"].as_str().unwrap_or(""),
            v["kind"].as_str().unwrap_or(""),
            v["detail"].as_str().unwrap_or("")
        );
    }
    bail!(
        "the keeper of run {} stopped before the rollout ended",
        args.run
    )
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
    // A replica's server container (docker): the command runs inside it, through the engine.
    let server = format!("{ns}-server");
    if !args.netns
        && entries
            .iter()
            .any(|e| matches!(e, Entry::Container { name } if *name == server))
    {
        let engine = crate::engine::Engine::connect()?;
        let code = engine.exec(&server, &args.command, true)?;
        return Ok(i32::try_from(code).unwrap_or(1));
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
