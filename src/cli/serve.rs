//! `sdnbed serve`: the built-in HTTP service, one version of a scenario service.
//!
//! Prints `listening on ADDR` on stdout once the port is open (after `--startup`), so a parent
//! process can learn a port chosen with `:0`. SIGTERM or SIGINT drains the server (see
//! `workload::server`): it stops accepting, finishes what it holds, closes every kept-alive
//! connection with `connection: close`, prints what it served on stderr and exits 0. SIGKILL after
//! a grace period is the caller's business.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;

use crate::model::dist::Dist;
use crate::model::time::Duration;
use crate::scenario::units::{parse_dist, parse_duration, parse_ratio_str, parse_size, ByteSize};
use crate::workload::server::{serve, ServeConfig, ServerControl, Work};

/// How a worker spends a request's service time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkArg {
    /// Wait without using a CPU; any number of workers cost one thread.
    Sleep,
    /// Burn the CPU for the service time; one thread per worker.
    Cpu,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Version name sent in every response's `x-sdnbed-version` header.
    #[arg(long, default_value = "v1")]
    pub version: String,
    /// Service-time distribution of a workload request, e.g. "const(2ms)",
    /// "lognormal(median=2ms,p99=10ms)". Sub-millisecond times are honoured.
    #[arg(long, default_value = "0s", value_parser = dist_arg)]
    pub service_time: Dist,
    /// Requests served at once; further requests wait in a FIFO queue.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: u32,
    /// Delay before the port opens (process start → listening).
    #[arg(long, default_value = "0s", value_parser = duration_arg)]
    pub startup: Duration,
    /// Share of workload requests answered 500, e.g. "0.2%" or 0.002.
    #[arg(long, default_value = "0", value_parser = ratio_arg)]
    pub error_rate: f64,
    /// Body size of a workload response, e.g. "4KiB".
    #[arg(long, default_value = "0B", value_parser = size_arg)]
    pub response_size: ByteSize,
    /// Seed of the service-time and error draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sleep through the service time, or burn it on the CPU.
    #[arg(long, value_enum, default_value = "sleep")]
    pub work: WorkArg,
    /// Set SO_REUSEPORT so that another server can share the port (e.g. a successor).
    #[arg(long)]
    pub reuse_port: bool,
    /// Send no `x-sdnbed-version` header: stands in for a researcher's image in tests of
    /// attribution by steering target.
    #[arg(long, hide = true)]
    pub no_version_header: bool,
}

pub(crate) fn dist_arg(s: &str) -> Result<Dist, String> {
    parse_dist(s, None).map_err(|e| e.to_string())
}
pub(crate) fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}
pub(crate) fn ratio_arg(s: &str) -> Result<f64, String> {
    parse_ratio_str(s).map_err(|e| e.to_string())
}
pub(crate) fn size_arg(s: &str) -> Result<ByteSize, String> {
    parse_size(s).map_err(|e| e.to_string())
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let response_size =
        usize::try_from(args.response_size.0).context("--response-size is too large")?;
    let cfg = ServeConfig {
        listen: args.listen,
        version: args.version,
        version_header: !args.no_version_header,
        service_time: args.service_time,
        work: match args.work {
            WorkArg::Sleep => Work::Sleep,
            WorkArg::Cpu => Work::Cpu,
        },
        workers: args.workers as usize,
        startup: args.startup,
        error_rate: args.error_rate,
        response_size,
        seed: args.seed,
        reuse_port: args.reuse_port,
    };
    crate::workload::sys::raise_fd_limit().context("raising the open-file limit")?;
    let ctl = ServerControl::new().context("creating the server's control eventfd")?;
    drain_on_signals(ctl.clone()).context("installing the SIGTERM handler")?;
    let stats = serve(&cfg, &ctl, |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
    })
    .with_context(|| format!("serving version {} on {}", cfg.version, cfg.listen))?;
    let served: Vec<String> = stats
        .responses
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    eprintln!(
        "sdnbed serve {}: drained after {} connections; responses {{{}}}",
        cfg.version,
        stats.connections,
        served.join(", ")
    );
    Ok(())
}

/// Blocks SIGTERM and SIGINT in this thread (and the threads it spawns later) and drains the
/// server from a thread that waits for them with `sigwait`.
fn drain_on_signals(ctl: ServerControl) -> std::io::Result<()> {
    // SAFETY: sigset manipulation on a local set, then pthread_sigmask on the calling thread.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r));
        }
        set
    };
    std::thread::Builder::new()
        .name("sdnbed-signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is a valid signal set; `sig` a valid out-pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                ctl.drain();
            }
        })?;
    Ok(())
}
