//! Helpers shared by the workload integration tests: child `sdnbed serve` processes that are
//! killed when dropped (even when a test fails), and an in-process generator run.

#![allow(dead_code)] // each test file uses a subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use sdnbed::metrics::RecorderConfig;
use sdnbed::model::time::Duration;
use sdnbed::scenario::units::RequestRate;
use sdnbed::scenario::{Arrivals, RateSchedule};
use sdnbed::workload::load::{self, LoadConfig, LoadSummary, Rate, RecordedRun};

/// A `sdnbed serve` child process; SIGKILLed and reaped on drop unless it already exited.
pub struct ServerProc {
    child: Child,
    pub addr: SocketAddr,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// What the server printed on stderr, once it exited.
    report: String,
}

impl ServerProc {
    /// Starts `sdnbed serve ARGS` (add `--listen 127.0.0.1:0` yourself or let this do it) and
    /// waits up to 10 s for its `listening on` line.
    pub fn spawn(args: &[&str]) -> ServerProc {
        ServerProc::spawn_cmd(Command::new(env!("CARGO_BIN_EXE_sdnbed")), args)
    }

    /// As [`Self::spawn`], inside network namespace `netns` (a name under sdnbed's netns
    /// directory).
    pub fn spawn_in(netns: &str, args: &[&str]) -> ServerProc {
        let cmd = sdnbed::dataplane::netlink::command_in(netns, env!("CARGO_BIN_EXE_sdnbed"))
            .expect("namespace exists");
        ServerProc::spawn_cmd(cmd, args)
    }

    fn spawn_cmd(mut cmd: Command, args: &[&str]) -> ServerProc {
        cmd.arg("serve");
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn sdnbed serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut r = BufReader::new(stdout);
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the child never blocks on a full pipe.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let mut proc = ServerProc {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stderr: Some(stderr),
            report: String::new(),
        };
        let line = rx
            .recv_timeout(StdDuration::from_secs(10))
            .expect("server did not report its port within 10 s");
        proc.addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        proc
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: StdDuration) -> Option<ExitStatus> {
        let start = StdInstant::now();
        while start.elapsed() < limit {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            std::thread::sleep(StdDuration::from_millis(10));
        }
        None
    }

    /// SIGTERMs the server, waits up to 10 s for it to exit 0, and returns how many workload
    /// responses it reports having sent with `status`.
    pub fn drain_and_count(&mut self, status: u16) -> u64 {
        if self.stderr.is_some() {
            self.signal(libc::SIGTERM);
            let st = self
                .wait_exit(StdDuration::from_secs(10))
                .expect("server exits after SIGTERM");
            assert!(st.success(), "server exit status {st:?}");
            let err = self
                .stderr
                .take()
                .expect("checked")
                .join()
                .expect("stderr reader");
            self.report = err;
        }
        // "... responses {200: 12, 500: 3}"
        let list = self
            .report
            .rsplit_once("responses {")
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("no report in {:?}", self.report));
        list.trim_end()
            .trim_end_matches('}')
            .split(", ")
            .filter_map(|kv| kv.split_once(": "))
            .find(|(k, _)| k.parse::<u16>() == Ok(status))
            .map_or(0, |(_, v)| v.parse().expect("a count"))
    }

    /// Connections the server reports having accepted (after [`Self::drain_and_count`]).
    pub fn connections(&self) -> u64 {
        // "... drained after N connections; ..."
        self.report
            .rsplit_once("drained after ")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no connection count in {:?}", self.report))
    }

    /// `GET path` on a fresh connection; returns the whole response.
    pub fn get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(StdDuration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read response");
        out
    }

    /// The value of a `/metrics` sample line starting with `prefix`.
    pub fn metric(&self, prefix: &str) -> u64 {
        let page = self.get("/metrics");
        page.lines()
            .find_map(|l| {
                l.strip_prefix(prefix)
                    .map(|v| v.trim().parse::<u64>().expect("a number"))
            })
            .unwrap_or(0)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An open-loop configuration against `addr` with constant arrivals.
pub fn open_loop(
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    connections: usize,
) -> LoadConfig {
    LoadConfig {
        target: addr,
        host: addr.to_string(),
        path: "/".into(),
        rate: Rate::Open {
            schedule: RateSchedule::constant(RequestRate(rate)),
            arrivals: Arrivals::Constant,
        },
        duration,
        connections,
        max_requests_per_connection: 0,
        timeout: Duration::from_secs(2),
        request_size: 0,
        threads: 1,
        seed: 1,
        on_thread_start: None,
        attribute: None,
        clock: None,
    }
}

/// Runs the generator in-process into a recorder with 100 ms windows.
pub fn run_recorded(cfg: &LoadConfig) -> RecordedRun {
    let rc = RecorderConfig {
        window: Duration::from_millis(100),
        duration: cfg.duration,
        warmup: Duration::ZERO,
        steady_replicas: 0,
        new_version: None,
    };
    load::run_recorded(cfg, rc).expect("generator runs")
}

/// Runs the generator in-process and summarises it.
pub fn run_load(cfg: &LoadConfig) -> LoadSummary {
    run_recorded(cfg).summary()
}

/// A loopback port with nothing listening on it (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
