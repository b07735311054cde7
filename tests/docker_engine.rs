//! The Docker Engine client against the real engine (root; test.sh makes sure dockerd runs).
//!
//! Every test uses its own run id and a guard that removes the run's containers on drop, also
//! when the test fails; images built from test-only content are removed the same way.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sdnbed::engine::{ContainerEvent, ContainerSpec, Engine, EngineError, NetworkMode, RUN_LABEL};

fn engine() -> Engine {
    Engine::connect().expect("the Docker Engine is reachable (test.sh starts dockerd)")
}

/// The builtin image of the binary under test, built once per test process.
fn builtin(e: &Engine) -> String {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        e.builtin_image(Path::new(env!("CARGO_BIN_EXE_sdnbed")))
            .expect("builtin image builds")
    })
    .clone()
}

/// A unique run id; removes the run's containers when dropped.
struct Run {
    engine: Engine,
    id: String,
}

impl Run {
    fn new(e: &Engine, test: &str) -> Run {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Run {
            engine: e.clone(),
            id: format!("t{}{test}{:x}", std::process::id(), nanos),
        }
    }

    fn name(&self, node: &str) -> String {
        format!("sdnbed-{}-{node}", self.id)
    }

    fn spec(&self, node: &str, image: &str, cmd: &[&str], network: NetworkMode) -> ContainerSpec {
        ContainerSpec {
            name: self.name(node),
            image: image.to_string(),
            entrypoint: None,
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            env: vec![],
            labels: BTreeMap::from([(RUN_LABEL.to_string(), self.id.clone())]),
            network,
            nano_cpus: None,
            memory: None,
            sysctls: BTreeMap::new(),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Err(e) = self.engine.remove_run(&self.id) {
            eprintln!("cleanup of run {}: {e}", self.id);
        }
    }
}

/// Removes an image when dropped.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let opts = bollard::query_parameters::RemoveImageOptions {
            force: true,
            ..Default::default()
        };
        let _ =
            rt().block_on(async { docker().await.remove_image(&self.0, Some(opts), None).await });
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The engine's `Created` of an image, straight from the API.
fn image_created(reference: &str) -> String {
    rt().block_on(async {
        let i = docker().await.inspect_image(reference).await.unwrap();
        i.created.unwrap()
    })
}

/// A bollard client of our own (for what the Engine facade does not offer), API negotiated.
async fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

/// Polls `f` until it returns `Some` or `limit` passes.
fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /` on 127.0.0.1:8080 inside the network namespace of process `pid`; the raw response.
fn get_in_netns(pid: u32) -> std::io::Result<String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::spawn(move || -> std::io::Result<String> {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let mut s = TcpStream::connect("127.0.0.1:8080")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET / HTTP/1.1\r\nhost: sdnbed\r\nconnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .join()
    .expect("request thread")
}

/// A file read from inside the network namespace of process `pid` (`/proc/sys/net/…` shows
/// the reader's namespace).
fn read_in_netns(pid: u32, path: &'static str) -> std::io::Result<String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        std::fs::read_to_string(path)
    })
    .join()
    .expect("reader thread")
}

fn answers_v1(pid: u32) -> String {
    eventually(Duration::from_secs(10), || get_in_netns(pid).ok())
        .expect("the server answers inside the sandbox's namespace")
}

#[test]
fn connects_with_negotiated_version_and_names_a_missing_socket() {
    let e = engine();
    let (engine_version, api) = e.versions();
    assert!(!engine_version.is_empty());
    let (major, minor) = api.split_once('.').expect("api is MAJOR.MINOR");
    let v = (
        major.parse::<usize>().unwrap(),
        minor.parse::<usize>().unwrap(),
    );
    assert!(v >= sdnbed::engine::MIN_API, "negotiated {api}");
    assert!(
        v <= (1, 53),
        "bollard speaks at most 1.53, negotiated {api}"
    );

    let err = Engine::connect_to("/nonexistent/docker.sock")
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/docker.sock"),
        "{err}"
    );
}

#[test]
fn builtin_image_is_built_once_and_cached_by_content() {
    let e = engine();
    let tag = builtin(&e);
    assert!(tag.starts_with("sdnbed-builtin:"), "{tag}");
    assert_eq!(tag.len(), "sdnbed-builtin:".len() + 16);
    assert!(e.image_exists(&tag).unwrap());
    let created = image_created(&tag);
    let again = e
        .builtin_image(Path::new(env!("CARGO_BIN_EXE_sdnbed")))
        .unwrap();
    assert_eq!(again, tag);
    assert_eq!(
        image_created(&tag),
        created,
        "the second call built nothing"
    );
    assert!(!e.image_exists("sdnbed-builtin:0000000000000000").unwrap());
}

#[test]
fn serve_runs_in_a_sandbox_and_keeps_its_network_across_restarts() {
    let e = engine();
    let image = builtin(&e);
    let run = Run::new(&e, "serve");
    let mut sandbox = run.spec("web-1-sb", &image, &["pause"], NetworkMode::None);
    sandbox
        .sysctls
        .insert("net.ipv4.ip_forward".into(), "1".into());
    let sb_pid = e.run(&sandbox).unwrap();
    assert_eq!(
        read_in_netns(sb_pid, "/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1",
        "the sandbox's sysctl is set in its own namespace"
    );
    let web = run.spec(
        "web-1",
        &image,
        &["serve", "--listen", "0.0.0.0:8080", "--version", "v1"],
        NetworkMode::Container(sandbox.name.clone()),
    );
    let pids = e.run_many(std::slice::from_ref(&web)).unwrap();
    assert_eq!(pids.len(), 1);
    assert_ne!(pids[0], sb_pid);
    let st = e.state(&web.name).unwrap();
    assert!(st.running && st.pid == pids[0], "{st:?}");

    let logs = tempfile::NamedTempFile::new().unwrap();
    e.follow_logs(&web.name, logs.path()).unwrap();

    let resp = answers_v1(sb_pid);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("x-sdnbed-version: v1"),
        "{resp}"
    );

    let new_pid = e.restart(&web.name).unwrap();
    assert_ne!(new_pid, pids[0]);
    assert_eq!(e.state(&web.name).unwrap().pid, new_pid);
    let resp = answers_v1(sb_pid);
    assert!(
        resp.to_ascii_lowercase().contains("x-sdnbed-version: v1"),
        "after restart: {resp}"
    );

    // One "listening on" line per start, each written once, though the follower re-attached.
    let text = eventually(Duration::from_secs(10), || {
        let t = std::fs::read_to_string(logs.path()).unwrap();
        (t.matches("listening on").count() >= 2).then_some(t)
    })
    .expect("both starts' output reaches the log file");
    std::thread::sleep(Duration::from_millis(300));
    let text_later = std::fs::read_to_string(logs.path()).unwrap();
    assert_eq!(text.matches("listening on").count(), 2, "{text}");
    assert_eq!(
        text_later.matches("listening on").count(),
        2,
        "{text_later}"
    );
}

#[test]
fn dockerfile_builds_are_tagged_by_content_cached_by_the_engine_and_failures_carry_output() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    let unique = format!(
        "hello from {} at {:?}\n",
        std::process::id(),
        Instant::now()
    );
    std::fs::write(dir.path().join("hello.txt"), unique).unwrap();

    let mut lines = Vec::new();
    let tag = e
        .build_image(dir.path(), &mut |l| lines.push(l.to_string()))
        .unwrap();
    let _cleanup = ImageGuard(tag.clone());
    assert!(tag.starts_with("sdnbed-build:"), "{tag}");
    assert!(
        lines.iter().any(|l| l.contains("COPY hello.txt")),
        "{lines:?}"
    );
    let created = image_created(&tag);

    let mut again = Vec::new();
    let tag2 = e
        .build_image(dir.path(), &mut |l| again.push(l.to_string()))
        .unwrap();
    assert_eq!(tag2, tag);
    // The engine is asked again (a `FROM` image may have changed), and its layer cache
    // answers: the same image, nothing run.
    assert!(
        again.iter().any(|l| l.contains("Using cache")),
        "a second build comes from the engine's cache: {again:?}"
    );
    assert_eq!(image_created(&tag), created);
    assert!(
        e.images().unwrap().contains(&tag),
        "built images carry sdnbed.image"
    );

    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY missing.txt /\n",
    )
    .unwrap();
    let err = e.build_image(dir.path(), &mut |_| {}).unwrap_err();
    let EngineError::Build {
        output, message, ..
    } = &err
    else {
        panic!("a failed build is a Build error: {err}")
    };
    assert!(message.contains("missing.txt"), "{err}");
    assert!(
        output.iter().any(|l| l.contains("COPY missing.txt")),
        "{err}"
    );
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );

    e.remove_images(std::slice::from_ref(&tag)).unwrap();
    assert!(!e.image_exists(&tag).unwrap());
    assert!(!e.images().unwrap().contains(&tag));
    e.remove_images(std::slice::from_ref(&tag)).unwrap(); // gone is fine
}

#[test]
fn events_report_deaths_with_exit_codes_and_exec_returns_the_exit_code() {
    let e = engine();
    let image = builtin(&e);
    let run = Run::new(&e, "events");
    let seen: Arc<Mutex<Vec<ContainerEvent>>> = Arc::default();
    let sink = seen.clone();
    let watch = e
        .watch_events(&run.id, Box::new(move |ev| sink.lock().unwrap().push(ev)))
        .unwrap();

    let sandbox = run.spec("sb", &image, &["pause"], NetworkMode::None);
    let web = run.spec(
        "web",
        &image,
        &["serve", "--listen", "0.0.0.0:8080"],
        NetworkMode::Container(sandbox.name.clone()),
    );
    e.run(&sandbox).unwrap();
    e.run(&web).unwrap();

    assert_eq!(
        e.exec(
            &sandbox.name,
            &["/sdnbed".into(), "--version".into()],
            false
        )
        .unwrap(),
        0
    );
    assert_eq!(
        e.exec(
            &sandbox.name,
            &["/sdnbed".into(), "pause".into(), "--bogus".into()],
            false
        )
        .unwrap(),
        2,
        "clap's exit status for bad arguments"
    );
    // 20.10 answers a command that cannot start with exit code 126 (newer engines may refuse
    // the start instead).
    let missing = e.exec(&sandbox.name, &["/no/such/binary".into()], false);
    assert!(matches!(missing, Ok(126) | Err(_)), "{missing:?}");

    e.signal(&web.name, "SIGKILL").unwrap();
    e.signal(&sandbox.name, "SIGTERM").unwrap();
    let deaths = |name: &str| -> Option<i64> {
        seen.lock()
            .unwrap()
            .iter()
            .find(|ev| ev.name == name && ev.action == "die")
            .and_then(|ev| ev.exit_code)
    };
    let web_exit = eventually(Duration::from_secs(10), || deaths(&web.name));
    assert_eq!(
        web_exit,
        Some(137),
        "SIGKILL: 128 + 9; events {:?}",
        seen.lock().unwrap()
    );
    let sb_exit = eventually(Duration::from_secs(10), || deaths(&sandbox.name));
    assert_eq!(
        sb_exit,
        Some(0),
        "pause exits 0 on SIGTERM; events {:?}",
        seen.lock().unwrap()
    );
    {
        let evs = seen.lock().unwrap();
        let starts = evs.iter().filter(|ev| ev.action == "start").count();
        assert_eq!(starts, 2, "{evs:?}");
        assert!(
            evs.iter()
                .any(|ev| ev.action == "kill" && ev.name == web.name),
            "{evs:?}"
        );
        assert!(evs.iter().all(|ev| ev.time_nano > 0));
    }
    let st = e.state(&web.name).unwrap();
    assert!(
        !st.running && st.exit_code == 137 && !st.oom_killed,
        "{st:?}"
    );
    // Signalling a stopped container is fine.
    e.signal(&web.name, "SIGTERM").unwrap();

    drop(watch);
    let n = seen.lock().unwrap().len();
    e.run(&run.spec("late", &image, &["pause"], NetworkMode::None))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        seen.lock().unwrap().len(),
        n,
        "a dropped watch delivers nothing"
    );
}

#[test]
fn remove_run_leaves_no_container_of_the_run() {
    let e = engine();
    let image = builtin(&e);
    let run = Run::new(&e, "remove");
    let other = Run::new(&e, "keep");
    let specs: Vec<ContainerSpec> = (0..3)
        .map(|i| run.spec(&format!("n{i}"), &image, &["pause"], NetworkMode::None))
        .collect();
    let pids = e.run_many(&specs).unwrap();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&p| p > 0));
    e.run(&other.spec("n0", &image, &["pause"], NetworkMode::None))
        .unwrap();

    // One Engine, used from several threads at once.
    let states: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = specs
            .iter()
            .map(|s| {
                let e = e.clone();
                sc.spawn(move || e.state(&s.name).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let state_pids: Vec<u32> = states.iter().map(|s| s.pid).collect();
    assert_eq!(state_pids, pids);

    let runs = e.runs().unwrap();
    assert!(
        runs.contains(&run.id) && runs.contains(&other.id),
        "{runs:?}"
    );

    let mut removed = e.remove_run(&run.id).unwrap();
    removed.sort();
    let mut want: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    want.sort();
    assert_eq!(removed, want);
    assert!(e.remove_run(&run.id).unwrap().is_empty());
    assert!(!e.runs().unwrap().contains(&run.id));
    assert!(
        e.runs().unwrap().contains(&other.id),
        "another run is untouched"
    );
    let gone = e.state(&specs[0].name).unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    assert!(gone.to_string().contains(&specs[0].name), "{gone}");
    // Removing what is gone is not an error.
    e.remove(&want).unwrap();
}

#[test]
fn run_many_reports_a_failure_after_the_others_finished() {
    let e = engine();
    let image = builtin(&e);
    let run = Run::new(&e, "fail");
    let good = run.spec("good", &image, &["pause"], NetworkMode::None);
    let bad = run.spec(
        "bad",
        "sdnbed-no-such-image:0",
        &["pause"],
        NetworkMode::None,
    );
    let err = e.run_many(&[bad.clone(), good.clone()]).unwrap_err();
    assert!(err.to_string().contains(&bad.name), "{err}");
    assert!(
        e.state(&good.name).unwrap().running,
        "the good one was still made"
    );
}

/// The children of process `pid` (from /proc), with their states.
fn children(pid: u32) -> Vec<(u32, char)> {
    let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    list.split_whitespace()
        .filter_map(|c| {
            let stat = std::fs::read_to_string(format!("/proc/{c}/stat")).ok()?;
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some((c.parse().ok()?, state))
        })
        .collect()
}

/// Kills (and reaps) a child process when dropped; a no-op once it has exited and been waited.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn pause_reaps_orphans_as_pid_1_and_exits_0_on_sigterm() {
    // `sdnbed pause` as init of a fresh pid namespace, as in a sandbox container.
    // --kill-child: pause dies with unshare, which the guard kills if the test fails.
    let mut unshare = KillOnDrop(
        std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child"])
            .arg(env!("CARGO_BIN_EXE_sdnbed"))
            .arg("pause")
            .spawn()
            .expect("unshare runs"),
    );
    let pause = eventually(Duration::from_secs(5), || {
        children(unshare.0.id()).first().map(|c| c.0)
    })
    .expect("pause started");
    // An orphan in its namespace: sh starts `sleep` in the background and exits at once.
    let st = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pause.to_string(),
            "-p",
            "--",
            "sh",
            "-c",
            "sleep 1 & exit 0",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let adopted = children(pause);
    assert_eq!(
        adopted.len(),
        1,
        "the orphaned sleep is pause's child: {adopted:?}"
    );
    let reaped = eventually(Duration::from_secs(5), || {
        children(pause).is_empty().then_some(())
    });
    assert!(reaped.is_some(), "no zombie left: {:?}", children(pause));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pause as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = unshare.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "pause exits 0 on SIGTERM");
}

/// Set for the child process [`exec_copies_our_stdin`] starts: the container to exec `cat` in.
const EXEC_HELPER_ENV: &str = "SDNBED_TEST_EXEC_STDIN_CONTAINER";

/// Not a test of its own: the child half of [`exec_copies_our_stdin`], which runs this test
/// binary again with `--ignored --exact exec_stdin_helper` and pipes its stdin.
#[test]
#[ignore = "run by exec_copies_our_stdin in a child process"]
fn exec_stdin_helper() {
    let name = std::env::var(EXEC_HELPER_ENV).expect("started by exec_copies_our_stdin");
    let code = engine().exec(&name, &["/cat".to_string()], true).unwrap();
    println!("\nexit={code}");
}

#[test]
fn exec_copies_our_stdin() {
    let e = engine();
    // An image with cat (linked against the same libc as sdnbed) beside the builtin binary.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("/usr/bin/cat", dir.path().join("cat")).unwrap();
    let dockerfile = format!("FROM {}\nCOPY cat /cat\n", builtin(&e));
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let image = e.build_image(dir.path(), &mut |_| {}).unwrap();
    let _cleanup = ImageGuard(image.clone());
    let run = Run::new(&e, "stdin");
    let sb = run.spec("sb", &image, &["pause"], NetworkMode::None);
    e.run(&sb).unwrap();

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "exec_stdin_helper", "--nocapture"])
        .env(EXEC_HELPER_ENV, &sb.name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello through exec\n")
        .unwrap(); // dropped here: end of file, which exec passes on as cat's end of input
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hello through exec\n"), "{text}");
    assert!(text.contains("exit=0"), "{text}");
}
