//! The `docker` backend: the scenario's nodes and replicas as containers on the Docker Engine,
//! wired by sdnbed's own data plane.
//!
//! - **Nodes are sandboxes.** Each node, and each replica, is a small container of sdnbed's own
//!   image (`sdnbed pause`) with `network_mode: none`. The data plane records it in the ledger,
//!   creates it, and adopts its network namespace ([`crate::dataplane::Sandboxes`]), so
//!   addresses, routes, shaping, steering, policies and the link emulator are exactly those of
//!   the netns backend ([`super::plane`]).
//! - **Replicas' servers are containers** joined to their sandbox's network
//!   (`network_mode: container:<sandbox>`): the interfaces exist before the entrypoint runs and
//!   survive a restart of the server. A version runs sdnbed's built-in server (its own image,
//!   built `FROM scratch` from this binary and cached by content), a researcher's `image`, or
//!   one built from `build`'s Dockerfile (cached by the context's content), with the version's
//!   `command` and `env`, and the service's `cpu` and `memory` limits.
//! - **Lifecycle.** Every container carries `sdnbed.run=<id>` and is in the ledger before it is
//!   created; teardown (any way the run ends) and `sdnbed clean` remove them. The engine's
//!   `die` and `oom` events of the run's containers go to `events.jsonl` (source `engine`); a
//!   server's exit is noticed from its `die` event. `kill-replica` kills the server
//!   container; drain is the runner's (steering removal, `pre_stop`, SIGTERM, SIGKILL after
//!   the grace). Servers' output is kept in `<work_dir>/replicas/<service>-<id>.log`.
//!
//! Workloads run as on netns: the load generator's threads enter the client sandbox's network
//! namespace, so a run's measurements come from the same code on both backends.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use super::effects::{EffectError, Inbox, ReplicaSpec, Report, Signal};
use super::plane::{self, serve_args, OnPlane, Plane, PlaneError, PlaneOptions, Servers};
use crate::backend::RunOutput;
use crate::dataplane::deploy::{Dataplane, DeployOptions, Sandboxes};
use crate::dataplane::netlink::Kernel;
use crate::engine::{
    ContainerEvent, ContainerSpec, Engine, EngineError, EventWatch, NetworkMode, RUN_LABEL,
};
use crate::model::rollout::ReplicaId;
use crate::scenario::types::Scenario;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(transparent)]
    Plane(#[from] PlaneError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "version {version} of {service} runs image `{image}`, which is not on the engine \
         (no registry is asked): build or load it first, or give the version `build = \"DIR\"`"
    )]
    MissingImage {
        service: String,
        version: String,
        image: String,
    },
}

/// The docker backend.
pub struct Docker;

impl super::Backend for Docker {
    fn run(
        &self,
        scenario: &Scenario,
        ctx: &super::RunContext,
    ) -> Result<RunOutput, super::BackendError> {
        Ok(run(scenario, &PlaneOptions::for_run(ctx))?)
    }
    fn concurrent(&self) -> bool {
        false
    }
}

/// Runs `scenario` in containers. Needs root and a reachable Docker Engine.
pub fn run(scenario: &Scenario, opts: &PlaneOptions) -> Result<RunOutput, DockerError> {
    let (fx, inbox) = deploy(scenario, opts)?;
    Ok(plane::run(scenario, fx, &inbox)?)
}

/// Deploys `scenario` in containers with its services serving, and holds it open (lab mode);
/// see [`plane::hold`]. Returns only on an error.
pub fn hold(
    scenario: &Scenario,
    opts: &PlaneOptions,
    ready: impl FnOnce(&Dataplane<Kernel>, Inbox) -> Result<(), EffectError>,
) -> Result<(), DockerError> {
    let (fx, inbox) = deploy(scenario, opts)?;
    Ok(plane::hold(scenario, fx, &inbox, ready)?)
}

/// Sandboxes of run `run` in sdnbed's own image (built from `exe` if needed), for a data plane
/// deployed on containers without the rest of the backend (`sdnbed up --topology-only`).
pub fn sandboxes(exe: &std::path::Path, run: &str) -> Result<Arc<dyn Sandboxes>, DockerError> {
    let engine = Engine::connect()?;
    let image = engine.builtin_image(exe)?;
    Ok(Arc::new(Sandboxer {
        engine,
        image,
        run: run.to_string(),
    }))
}

/// The image each version of each service runs, by (service, version) index: built or found
/// before anything of the run exists, so a missing image or a failed build costs nothing to
/// undo.
fn resolve_images(
    s: &Scenario,
    engine: &Engine,
    builtin: &str,
) -> Result<Vec<Vec<String>>, DockerError> {
    let mut out = Vec::new();
    for svc in &s.services {
        let mut per = Vec::new();
        for v in &svc.versions {
            let image = match (&v.image, &v.build) {
                (Some(image), _) => {
                    if !engine.image_exists(image)? {
                        return Err(DockerError::MissingImage {
                            service: svc.name.clone(),
                            version: v.name.clone(),
                            image: image.clone(),
                        });
                    }
                    image.clone()
                }
                (None, Some(dir)) => {
                    eprintln!("building {} {} from {}", svc.name, v.name, dir.display());
                    engine.build_image(dir, &mut |line| {
                        let line = line.trim_end();
                        if !line.is_empty() {
                            eprintln!("  {line}");
                        }
                    })?
                }
                (None, None) => builtin.to_string(),
            };
            per.push(image);
        }
        out.push(per);
    }
    Ok(out)
}

type Effects<'s> = OnPlane<'s, Containers<'s>>;

/// Connects to the engine, readies every image, and deploys the network on sandboxes.
fn deploy<'s>(
    s: &'s Scenario,
    opts: &'s PlaneOptions,
) -> Result<(Effects<'s>, Receiver<Report>), DockerError> {
    let engine = Engine::connect()?;
    let builtin = engine.builtin_image(&opts.exe)?;
    let images = resolve_images(s, &engine, &builtin)?;
    let sandboxes: Arc<dyn Sandboxes> = Arc::new(Sandboxer {
        engine: engine.clone(),
        image: builtin,
        run: opts.run_id.clone(),
    });
    let deploy = DeployOptions {
        sandboxes: Some(sandboxes),
        ..opts.deploy.clone()
    };
    let (plane, inbox) = Plane::deploy(s, &opts.run_id, &opts.work_dir, &deploy)?;
    let exits = Arc::new(Mutex::new(Vec::new()));
    let watch = {
        let exits = exits.clone();
        let tx = plane.inbox();
        engine.watch_events(
            &opts.run_id,
            Box::new(move |e: ContainerEvent| on_event(&e, &exits, &tx)),
        )?
    };
    let servers = Containers {
        s,
        opts,
        engine,
        images,
        replicas: Vec::new(),
        exits,
        _watch: watch,
    };
    Ok((OnPlane { plane, servers }, inbox))
}

/// An engine event of the run: `die` and `oom` go to the run's events, and a `die` is kept for
/// [`Containers::reap`].
fn on_event(e: &ContainerEvent, exits: &Mutex<Vec<ContainerEvent>>, tx: &Inbox) {
    let detail = match e.exit_code {
        Some(code) => format!("{} exited with {code}", e.name),
        None => e.name.clone(),
    };
    if matches!(e.action.as_str(), "die" | "oom") {
        let _ = tx.send(Report::Note {
            source: "engine",
            kind: format!("container-{}", e.action),
            detail,
        });
    }
    if e.action == "die" {
        exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
    }
}

/// The labels of a container of run `run`.
fn labels(run: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (RUN_LABEL.to_string(), run.to_string()),
        ("sdnbed.role".to_string(), role.to_string()),
    ])
}

/// Sandboxes for the data plane: `sdnbed pause` in sdnbed's own image, no network of the
/// engine's, IPv6 off (as in the namespaces the data plane makes itself).
struct Sandboxer {
    engine: Engine,
    image: String,
    run: String,
}

impl Sandboxes for Sandboxer {
    fn create(
        &self,
        names: &[String],
    ) -> Result<Vec<u32>, Box<dyn std::error::Error + Send + Sync>> {
        let specs: Vec<ContainerSpec> = names
            .iter()
            .map(|name| ContainerSpec {
                name: name.clone(),
                image: self.image.clone(),
                entrypoint: Some(vec!["/sdnbed".into()]),
                cmd: Some(vec!["pause".into()]),
                env: Vec::new(),
                labels: labels(&self.run, "sandbox"),
                network: NetworkMode::None,
                nano_cpus: None,
                memory: None,
                sysctls: BTreeMap::from([
                    ("net.ipv6.conf.all.disable_ipv6".into(), "1".into()),
                    ("net.ipv6.conf.default.disable_ipv6".into(), "1".into()),
                ]),
            })
            .collect();
        Ok(self.engine.run_many(&specs)?)
    }
}

/// A replica's server container.
struct Server {
    /// Its sandbox, which holds its network namespace (named as the namespace).
    sandbox: String,
    name: String,
    running: bool,
    /// Wall-clock nanoseconds of its last (re)start: older `die` events are of an earlier run.
    started_nano: i64,
    log: PathBuf,
}

/// Replicas' servers as containers.
pub struct Containers<'s> {
    s: &'s Scenario,
    opts: &'s PlaneOptions,
    engine: Engine,
    /// The image of each (service, version).
    images: Vec<Vec<String>>,
    replicas: Vec<Server>,
    /// `die` events not yet reaped.
    exits: Arc<Mutex<Vec<ContainerEvent>>>,
    _watch: EventWatch,
}

fn now_nano() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Containers<'_> {
    /// The server container of `spec`, joined to `sandbox`'s network.
    fn spec(&self, spec: &ReplicaSpec, sandbox: &str) -> ContainerSpec {
        let svc = &self.s.services[spec.svc];
        let v = &svc.versions[spec.version];
        let (entrypoint, cmd) = if v.is_user_image() {
            (None, v.command.clone())
        } else {
            (
                Some(vec!["/sdnbed".to_string()]),
                Some(serve_args(self.s, spec)),
            )
        };
        let mut labels = labels(&self.opts.run_id, "server");
        labels.insert("sdnbed.service".into(), svc.name.clone());
        labels.insert("sdnbed.version".into(), v.name.clone());
        labels.insert("sdnbed.replica".into(), spec.id.to_string());
        ContainerSpec {
            name: format!("{sandbox}-server"),
            image: self.images[spec.svc][spec.version].clone(),
            entrypoint,
            cmd,
            env: v.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            labels,
            network: NetworkMode::Container(sandbox.to_string()),
            nano_cpus: svc.cpu.map(|c| (c * 1e9) as i64),
            memory: svc.memory.map(|m| m as i64),
            sysctls: BTreeMap::new(),
        }
    }
}

impl Servers for Containers<'_> {
    fn start(
        &mut self,
        dp: &mut Dataplane<Kernel>,
        spec: &ReplicaSpec,
        netns: &str,
    ) -> Result<(), EffectError> {
        debug_assert_eq!(spec.id as usize, self.replicas.len());
        let c = self.spec(spec, netns);
        let svc = &self.s.services[spec.svc].name;
        let log = self
            .opts
            .work_dir
            .join("replicas")
            .join(format!("{svc}-{}.log", spec.id));
        {
            // Recorded and created in one critical section: a signal finds it in the ledger.
            let _c = crate::dataplane::deploy::critical();
            dp.record_container(&c.name)?;
            self.engine.run(&c)?;
        }
        self.engine.follow_logs(&c.name, &log)?;
        self.replicas.push(Server {
            sandbox: netns.to_string(),
            name: c.name,
            running: true,
            started_nano: now_nano(),
            log,
        });
        Ok(())
    }

    fn signal(&mut self, id: ReplicaId, signal: Signal) {
        let r = &self.replicas[id as usize];
        if !r.running {
            return;
        }
        let sig = match signal {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
        };
        if let Err(e) = self.engine.signal(&r.name, sig) {
            eprintln!("sdnbed: {sig} to {}: {e}", r.name);
        }
    }

    fn restart(
        &mut self,
        _dp: &mut Dataplane<Kernel>,
        spec: &ReplicaSpec,
    ) -> Result<(), EffectError> {
        let r = &mut self.replicas[spec.id as usize];
        self.engine.restart(&r.name)?;
        r.running = true;
        r.started_nano = now_nano();
        Ok(())
    }

    fn reap(&mut self) -> Result<Vec<ReplicaId>, EffectError> {
        let died: Vec<ContainerEvent> =
            std::mem::take(&mut *self.exits.lock().unwrap_or_else(|p| p.into_inner()));
        let by_name: HashMap<String, usize> = self
            .replicas
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let mut exited = Vec::new();
        for e in died {
            let Some(&i) = by_name.get(&e.name) else {
                continue;
            };
            let r = &mut self.replicas[i];
            if r.running && e.time_nano >= r.started_nano {
                r.running = false;
                exited.push(i as ReplicaId);
            }
        }
        Ok(exited)
    }

    fn running(&self, id: ReplicaId) -> bool {
        self.replicas[id as usize].running
    }

    /// Removes the server and its sandbox; the data plane then unmounts the namespace.
    fn release(&mut self, id: ReplicaId) -> Result<(), EffectError> {
        let r = &mut self.replicas[id as usize];
        r.running = false;
        self.engine.remove(&[r.name.clone(), r.sandbox.clone()])?;
        Ok(())
    }

    fn log_path(&self, id: ReplicaId) -> Option<PathBuf> {
        self.replicas.get(id as usize).map(|r| r.log.clone())
    }

    fn stop_all(&mut self, grace: std::time::Duration) {
        for id in 0..self.replicas.len() as ReplicaId {
            self.signal(id, Signal::Term);
        }
        let deadline = std::time::Instant::now() + grace;
        for r in &mut self.replicas {
            if !r.running {
                continue;
            }
            while std::time::Instant::now() < deadline
                && self.engine.state(&r.name).is_ok_and(|s| s.running)
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = self.engine.signal(&r.name, "SIGKILL");
            r.running = false;
        }
    }
}
