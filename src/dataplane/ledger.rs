//! The teardown ledger: every kernel object a run creates is written here before it exists.
//!
//! A ledger is an append-only file of JSON lines, `/run/sdnbed/<run>.ledger` (plus an optional
//! copy, e.g. in the run directory). Entries are written and `fsync`ed before the batch that
//! creates their objects is sent, so after any crash, `kill -9` included, the ledger lists a
//! superset of what exists. Teardown reads only the ledger: it removes exactly what is listed
//! (namespaces take their veths, nftables tables and processes with them), tolerates objects
//! that are already gone, and deletes the ledger last, so it can be repeated after an
//! interruption.
//!
//! Address blocks are allocated from the same files: under an exclusive lock on
//! `/run/sdnbed/pool.lock`, a run takes the first block of the pool that no ledger lists and
//! records it before releasing the lock, so concurrent runs get disjoint blocks; deleting a
//! ledger frees its block.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataplane::ops::{ExecError, Executor, Op};
use crate::dataplane::plan::Ipv4Net;

/// Where ledgers live unless told otherwise.
pub const DEFAULT_DIR: &str = "/run/sdnbed";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("run `{0}` already has a ledger (a run id is used once; `sdnbed clean {0}` frees it)")]
    RunExists(String),
    #[error("no ledger for run `{run}` in {dir}")]
    NoLedger { run: String, dir: PathBuf },
    #[error("the pool {pool} has no free block of {size} addresses (runs hold: {held})")]
    PoolExhausted {
        pool: Ipv4Net,
        size: u64,
        held: String,
    },
    #[error("teardown of run `{run}`: {error}")]
    Teardown { run: String, error: ExecError },
    #[error("teardown of run `{run}`: removing its containers: {error} (ledger kept for `sdnbed clean`)")]
    Containers { run: String, error: String },
    #[error("teardown of run `{run}` left {} (ledger {path} kept for `sdnbed clean`)", .left.join(", "))]
    Remains {
        run: String,
        path: PathBuf,
        left: Vec<String>,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |error| LedgerError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// One line of a ledger.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "object", rename_all = "kebab-case")]
pub enum Entry {
    /// The process that created the ledger (pid and start time in clock ticks since boot).
    Owner {
        pid: u32,
        start: u64,
    },
    /// The run's address block.
    Block {
        net: String,
    },
    Netns {
        name: String,
    },
    Veth {
        ns: String,
        ifindex: u32,
        peer_ns: String,
    },
    /// Table `ip sdnbed` in a namespace.
    NftTable {
        ns: String,
    },
    /// A container of the run (a sandbox holding a namespace, or a replica's service joined to
    /// one), by name; removed from its engine at teardown, before the namespaces go.
    Container {
        name: String,
    },
    /// A process started in one of the run's namespaces.
    Process {
        pid: u32,
        start: u64,
    },
    /// Where the ledger and its copy are, so a copy alone leads back to the run.
    Files {
        run: String,
        ledger: PathBuf,
        copy: Option<PathBuf>,
    },
    /// A lab left up on purpose (`sdnbed up`): live until `sdnbed down`.
    Held,
}

impl Entry {
    /// The entry an op must leave before it runs, if it creates something.
    pub fn for_op(op: &Op) -> Option<Entry> {
        match op {
            Op::NetnsAdd { name, .. } => Some(Entry::Netns { name: name.clone() }),
            Op::VethAdd {
                ns,
                ifindex,
                peer_ns,
                ..
            } => Some(Entry::Veth {
                ns: ns.clone(),
                ifindex: *ifindex,
                peer_ns: peer_ns.clone(),
            }),
            Op::Nft { ns, .. } => Some(Entry::NftTable { ns: ns.clone() }),
            _ => None,
        }
    }
}

/// An open ledger.
#[derive(Debug)]
pub struct Ledger {
    run: String,
    path: PathBuf,
    file: File,
    copy: Option<(PathBuf, File)>,
    written: BTreeSet<Entry>,
}

fn ledger_path(dir: &Path, run: &str) -> PathBuf {
    dir.join(format!("{run}.ledger"))
}

impl Ledger {
    /// Creates the ledger of `run` in `dir` (and appends the same lines to `copy` if given),
    /// recording the calling process as its owner. Fails if the run already has one.
    pub fn create(dir: &Path, run: &str, copy: Option<&Path>) -> Result<Ledger, LedgerError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = ledger_path(dir, run);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    LedgerError::RunExists(run.to_string())
                } else {
                    LedgerError::Io {
                        path: path.clone(),
                        error: e,
                    }
                }
            })?;
        let copy = match copy {
            Some(p) => {
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                let f = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(p)
                    .map_err(io(p))?;
                Some((p.to_path_buf(), f))
            }
            None => None,
        };
        let mut ledger = Ledger {
            run: run.to_string(),
            path,
            file,
            copy,
            written: BTreeSet::new(),
        };
        let pid = std::process::id();
        let files = Entry::Files {
            run: run.to_string(),
            ledger: ledger.path.clone(),
            copy: ledger.copy.as_ref().map(|(p, _)| p.clone()),
        };
        ledger.record(&[
            Entry::Owner {
                pid,
                start: process_start(pid).unwrap_or(0),
            },
            files,
        ])?;
        Ok(ledger)
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the entries not yet written and `fsync`s, before the caller creates the objects.
    pub fn record(&mut self, entries: &[Entry]) -> Result<(), LedgerError> {
        let mut text = String::new();
        for e in entries {
            if self.written.insert(e.clone()) {
                text.push_str(&serde_json::to_string(e).expect("entries serialise"));
                text.push('\n');
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(text.as_bytes())
            .map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        if let Some((p, f)) = &mut self.copy {
            f.write_all(text.as_bytes()).map_err(io(p))?;
            f.sync_data().map_err(io(p))?;
        }
        Ok(())
    }

    /// Records the entries `ops` need (see [`Entry::for_op`]).
    pub fn record_ops(&mut self, ops: &[Op]) -> Result<(), LedgerError> {
        let entries: Vec<Entry> = ops.iter().filter_map(Entry::for_op).collect();
        self.record(&entries)
    }

    /// Takes a block of `size` addresses (a power of two) from `pool` that no other ledger in
    /// this ledger's directory holds, and records it.
    pub fn allocate_block(&mut self, pool: Ipv4Net, size: u64) -> Result<Ipv4Net, LedgerError> {
        let dir = self
            .path
            .parent()
            .unwrap_or(Path::new(DEFAULT_DIR))
            .to_path_buf();
        let lock_path = dir.join("pool.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(
            |(_, e)| LedgerError::Io {
                path: lock_path.clone(),
                error: e.into(),
            },
        )?;
        let mut held: Vec<Ipv4Net> = Vec::new();
        for run in list_runs(&dir)? {
            if run == self.run {
                continue;
            }
            for e in read(&ledger_path(&dir, &run))? {
                if let Entry::Block { net } = e {
                    if let Ok(n) = net.parse() {
                        held.push(n);
                    }
                }
            }
        }
        let len = 32 - size.trailing_zeros() as u8;
        let fits = size.is_power_of_two() && len >= pool.prefix_len();
        let found = fits
            .then(|| {
                (0..pool.size() / size)
                    .filter_map(|i| Ipv4Net::new(pool.nth(i * size), len).ok())
                    .find(|c| !held.iter().any(|h| h.overlaps(c)))
            })
            .flatten();
        let block = found.ok_or_else(|| LedgerError::PoolExhausted {
            pool,
            size,
            held: held
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        self.record(&[Entry::Block {
            net: block.to_string(),
        }])?;
        Ok(block)
    }
}

/// Reads a ledger; a torn last line (a crash mid-write) is ignored.
pub fn read(path: &Path) -> Result<Vec<Entry>, LedgerError> {
    let f = File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(io(path))?;
        if let Ok(e) = serde_json::from_str(&line) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Run ids with a ledger in `dir`, sorted.
pub fn list_runs(dir: &Path) -> Result<Vec<String>, LedgerError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for ent in rd {
        let ent = ent.map_err(io(dir))?;
        let name = ent.file_name().to_string_lossy().to_string();
        if let Some(run) = name.strip_suffix(".ledger") {
            out.push(run.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// What tearing down a ledger's entries takes: containers to remove, processes to kill, then
/// ops, newest first.
/// Veths and tables inside namespaces the ledger also lists go with their namespace.
#[derive(Debug, PartialEq, Eq)]
pub struct TeardownPlan {
    pub containers: Vec<String>,
    pub processes: Vec<(u32, u64)>,
    pub ops: Vec<Op>,
}

pub fn teardown_plan(entries: &[Entry]) -> TeardownPlan {
    let namespaces: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Netns { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut containers = Vec::new();
    let mut processes = Vec::new();
    let mut ops: Vec<Op> = Vec::new();
    for e in entries.iter().rev() {
        let op = match e {
            Entry::Container { name } => {
                if !containers.contains(name) {
                    containers.push(name.clone());
                }
                continue;
            }
            Entry::Process { pid, start } => {
                processes.push((*pid, *start));
                continue;
            }
            Entry::Owner { .. } | Entry::Block { .. } | Entry::Files { .. } | Entry::Held => {
                continue
            }
            Entry::Netns { name } => Op::NetnsDel { name: name.clone() },
            Entry::Veth {
                ns,
                ifindex,
                peer_ns,
            } => {
                if namespaces.contains(ns.as_str()) || namespaces.contains(peer_ns.as_str()) {
                    continue;
                }
                Op::LinkDel {
                    ns: ns.clone(),
                    ifindex: *ifindex,
                }
            }
            Entry::NftTable { ns } => {
                if namespaces.contains(ns.as_str()) {
                    continue;
                }
                Op::NftDelTable { ns: ns.clone() }
            }
        };
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    TeardownPlan {
        containers,
        processes,
        ops,
    }
}

/// A process's state letter and start time in clock ticks since boot (fields 3 and 22 of
/// `/proc/PID/stat`).
fn stat(pid: u32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = s[s.rfind(')')? + 2..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.nth(18)?.parse().ok()?))
}

/// The start time of a process (field 22 of `/proc/PID/stat`), to tell it from a later process
/// that reuses its pid.
pub fn process_start(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Whether process `pid` started at `start` still runs (a zombie, exited but not yet reaped,
/// does not).
pub fn running(pid: u32, start: u64) -> bool {
    matches!(stat(pid), Some((state, s)) if s == start && state != 'Z')
}

/// The ledger's owner, if it is another process and still running.
fn live_owner(entries: &[Entry]) -> Option<(u32, u64)> {
    entries.iter().find_map(|e| match e {
        Entry::Owner { pid, start } if *pid != std::process::id() && running(*pid, *start) => {
            Some((*pid, *start))
        }
        _ => None,
    })
}

/// Whether the ledger's owner process is still running.
pub fn owner_alive(entries: &[Entry]) -> bool {
    live_owner(entries).is_some()
}

/// Why a run is live, if it is: its owner runs, or it is a lab held up (`sdnbed up`).
pub fn live(entries: &[Entry]) -> Option<String> {
    if let Some((pid, _)) = live_owner(entries) {
        return Some(format!("its process {pid} is still running"));
    }
    entries
        .contains(&Entry::Held)
        .then(|| "it is a lab held up by `sdnbed up` (`sdnbed down` removes it)".to_string())
}

/// The objects a ledger lists that still exist: namespaces whose file is still mounted and
/// processes still running. Veths and tables live in the run's namespaces and go with them.
pub fn remaining(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Netns { name } if crate::dataplane::netlink::netns_path(name).exists() => {
                Some(format!("namespace {name}"))
            }
            Entry::Process { pid, start } if running(*pid, *start) => {
                Some(format!("process {pid}"))
            }
            _ => None,
        })
        .collect()
}

/// The run a ledger (or its copy) belongs to, and the path of its main ledger.
pub fn files(entries: &[Entry]) -> Option<(String, PathBuf)> {
    entries.iter().find_map(|e| match e {
        Entry::Files { run, ledger, .. } => Some((run.clone(), ledger.clone())),
        _ => None,
    })
}

/// How long a live owner gets to tear its run down after SIGTERM before it is killed.
const OWNER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks a live owner (a `sdnbed run` in progress, or the keeper `sdnbed up` leaves to carry
/// emulated links) to tear its run down itself: SIGTERM, then up to [`OWNER_GRACE`] to exit,
/// SIGKILL after that. Its own teardown stops what only it holds (the link emulator) before
/// the namespaces go.
fn stop_owner(entries: &[Entry]) {
    use nix::sys::signal::{kill, Signal};
    let Some((pid, start)) = live_owner(entries) else {
        return;
    };
    let target = nix::unistd::Pid::from_raw(pid as i32);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = std::time::Instant::now() + OWNER_GRACE;
    while running(pid, start) {
        if std::time::Instant::now() > deadline {
            let _ = kill(target, Signal::SIGKILL);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Tears down run `run` from its ledger in `dir` alone, then deletes the ledger, but only once
/// every object it lists is confirmed gone ([`remaining`]); otherwise the ledger stays and the
/// error says what is left. Idempotent. A live owner other than the caller is first asked to
/// do it itself (`stop_owner`).
pub fn teardown(dir: &Path, run: &str, exec: &mut dyn Executor) -> Result<(), LedgerError> {
    let path = ledger_path(dir, run);
    if !path.exists() {
        return Err(LedgerError::NoLedger {
            run: run.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    stop_owner(&read(&path)?);
    if !path.exists() {
        // The owner tore the run down.
        return Ok(());
    }
    remove_listed(run, &path, &read(&path)?, exec)?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Tears down the run a ledger copy (e.g. `ledger.jsonl` in a run's output directory) belongs
/// to: through its main ledger when that still exists, else from the copy's entries (the copy
/// is the run's record and stays). Returns the run id.
pub fn teardown_copy(copy: &Path, exec: &mut dyn Executor) -> Result<String, LedgerError> {
    let entries = read(copy)?;
    let Some((run, main)) = files(&entries) else {
        return Err(LedgerError::NoLedger {
            run: format!("of {}", copy.display()),
            dir: copy.to_path_buf(),
        });
    };
    if main.exists() {
        let dir = main.parent().unwrap_or(Path::new(DEFAULT_DIR));
        teardown(dir, &run, exec)?;
    } else {
        stop_owner(&entries);
        remove_listed(&run, copy, &entries, exec)?;
    }
    Ok(run)
}

/// Kills the listed processes, removes the listed objects, and checks that nothing is left.
fn remove_listed(
    run: &str,
    path: &Path,
    entries: &[Entry],
    exec: &mut dyn Executor,
) -> Result<(), LedgerError> {
    let plan = teardown_plan(entries);
    // Containers first: a sandbox's namespace is then only the data plane's mount of it.
    if !plan.containers.is_empty() {
        crate::engine::Engine::connect()
            .and_then(|engine| engine.remove(&plan.containers))
            .map_err(|e| LedgerError::Containers {
                run: run.to_string(),
                error: e.to_string(),
            })?;
    }
    for (pid, start) in &plan.processes {
        if process_start(*pid) == Some(*start) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    exec.apply(&plan.ops)
        .map_err(|error| LedgerError::Teardown {
            run: run.to_string(),
            error,
        })?;
    // SIGKILL is asynchronous: give the processes a bounded moment (2 s) to be gone.
    let mut left = remaining(entries);
    for _ in 0..100 {
        if left.is_empty() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        left = remaining(entries);
    }
    Err(LedgerError::Remains {
        run: run.to_string(),
        path: path.to_path_buf(),
        left,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ops::Recorder;

    #[test]
    fn record_then_teardown_in_reverse_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("run/ledger.jsonl");
        let mut l = Ledger::create(dir.path(), "r1", Some(&copy)).unwrap();
        let ops = vec![
            Op::NetnsAdd {
                name: "a".into(),
                adopt: None,
            },
            Op::NetnsAdd {
                name: "b".into(),
                adopt: Some(7),
            },
            Op::VethAdd {
                ns: "a".into(),
                name: "e0-b".into(),
                ifindex: 100,
                peer_ns: "b".into(),
                peer_name: "e0-a".into(),
                peer_ifindex: 100,
            },
            Op::Nft {
                ns: "a".into(),
                script: "add table ip sdnbed".into(),
            },
        ];
        l.record_ops(&ops).unwrap();
        l.record_ops(&ops).unwrap(); // written once
        let entries = read(l.path()).unwrap();
        assert_eq!(entries.len(), 6);
        assert_eq!(read(&copy).unwrap(), entries);
        assert!(matches!(
            Ledger::create(dir.path(), "r1", None),
            Err(LedgerError::RunExists(_))
        ));
        let plan = teardown_plan(&entries);
        assert_eq!(
            plan.ops,
            vec![
                Op::NetnsDel { name: "b".into() },
                Op::NetnsDel { name: "a".into() }
            ]
        );
        let mut rec = Recorder::default();
        teardown(dir.path(), "r1", &mut rec).unwrap();
        assert_eq!(rec.ops, plan.ops);
        assert!(!l.path().exists());
        assert!(matches!(
            teardown(dir.path(), "r1", &mut rec),
            Err(LedgerError::NoLedger { .. })
        ));
    }

    #[test]
    fn a_failed_teardown_keeps_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::create(dir.path(), "r2", None).unwrap();
        l.record_ops(&[Op::NetnsAdd {
            name: "x".into(),
            adopt: None,
        }])
        .unwrap();
        let mut rec = Recorder {
            fail_on: Some("ip netns del x".into()),
            ..Default::default()
        };
        assert!(teardown(dir.path(), "r2", &mut rec).is_err());
        assert!(l.path().exists());
    }

    #[test]
    fn blocks_are_disjoint_across_ledgers_and_freed_by_teardown() {
        let dir = tempfile::tempdir().unwrap();
        let pool: Ipv4Net = "198.18.0.0/22".parse().unwrap();
        let mut a = Ledger::create(dir.path(), "a", None).unwrap();
        let mut b = Ledger::create(dir.path(), "b", None).unwrap();
        let mut c = Ledger::create(dir.path(), "c", None).unwrap();
        assert_eq!(
            a.allocate_block(pool, 512).unwrap().to_string(),
            "198.18.0.0/23"
        );
        assert_eq!(
            b.allocate_block(pool, 256).unwrap().to_string(),
            "198.18.2.0/24"
        );
        assert_eq!(
            c.allocate_block(pool, 256).unwrap().to_string(),
            "198.18.3.0/24"
        );
        let mut d = Ledger::create(dir.path(), "d", None).unwrap();
        assert!(matches!(
            d.allocate_block(pool, 256),
            Err(LedgerError::PoolExhausted { .. })
        ));
        teardown(dir.path(), "b", &mut Recorder::default()).unwrap();
        assert_eq!(
            d.allocate_block(pool, 256).unwrap().to_string(),
            "198.18.2.0/24"
        );
    }

    #[test]
    fn torn_last_line_is_ignored_and_dead_owner_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ledger");
        fs::write(
            &p,
            "{\"object\":\"owner\",\"pid\":4000000,\"start\":1}\n{\"object\":\"netns\",\"na",
        )
        .unwrap();
        let e = read(&p).unwrap();
        assert_eq!(e.len(), 1);
        assert!(!owner_alive(&e));
        assert_eq!(list_runs(dir.path()).unwrap(), vec!["x".to_string()]);
    }
}
