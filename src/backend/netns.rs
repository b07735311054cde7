//! The `netns` backend: a scenario with real processes, real TCP and the kernel's data plane.
//!
//! The data plane ([`crate::dataplane`]) builds the topology in network namespaces; every
//! replica is an `sdnbed serve` process in its own namespace, every workload the load generator
//! ([`crate::workload::load`]) on threads inside its client's namespace. The run itself (what
//! happens when, drain, readiness, steering updates, timed events) is the real-time runner's
//! ([`super::runner`]); the network, probes and workloads are [`super::plane`]'s, shared with
//! the docker backend. This file only says how a replica's server runs here: [`Processes`].
//!
//! A replica's server is `sdnbed serve` in its own process group, recorded in the ledger, its
//! output in `<work_dir>/replicas/<service>-<id>.log`. Restart in place: SIGKILL, wait, spawn
//! again in the same namespace.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use super::effects::{EffectError, ReplicaSpec, Signal};
use super::plane::{self, OnPlane, Plane, PlaneError, PlaneOptions, Servers};
use crate::backend::RunOutput;
use crate::dataplane::deploy::{Dataplane, DataplaneError};
use crate::dataplane::netlink::{command_in, Kernel};
use crate::model::rollout::ReplicaId;
use crate::scenario::types::Scenario;

/// Where and how a netns run happens.
pub use super::plane::PlaneOptions as NetnsOptions;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(transparent)]
    Plane(#[from] PlaneError),
    #[error("starting replica {replica} of {service} in namespace {netns}: {source}")]
    Spawn {
        service: String,
        replica: ReplicaId,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "version {version} of {service} runs a container image, which the netns backend \
         cannot run (it runs sdnbed's own server): use --backend docker"
    )]
    UserImage { service: String, version: String },
}

/// The netns backend.
pub struct Netns;

impl super::Backend for Netns {
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

/// Deploys `scenario`'s network with `sdnbed serve` processes as its replicas' servers.
fn deploy<'s>(
    scenario: &'s Scenario,
    opts: &'s NetnsOptions,
) -> Result<
    (
        OnPlane<'s, Processes<'s>>,
        std::sync::mpsc::Receiver<super::effects::Report>,
    ),
    NetnsError,
> {
    if let Some((svc, v)) = scenario
        .services
        .iter()
        .find_map(|svc| Some((svc, svc.versions.iter().find(|v| v.is_user_image())?)))
    {
        return Err(NetnsError::UserImage {
            service: svc.name.clone(),
            version: v.name.clone(),
        });
    }
    let (plane, inbox) = Plane::deploy(scenario, &opts.run_id, &opts.work_dir, &opts.deploy)?;
    let servers = Processes {
        s: scenario,
        opts,
        replicas: Vec::new(),
    };
    Ok((OnPlane { plane, servers }, inbox))
}

/// Runs `scenario` on network namespaces. Needs root.
pub fn run(scenario: &Scenario, opts: &NetnsOptions) -> Result<RunOutput, NetnsError> {
    let (fx, inbox) = deploy(scenario, opts)?;
    Ok(plane::run(scenario, fx, &inbox)?)
}

/// Deploys `scenario` on namespaces with its services serving and steering in place, and holds
/// it open (lab mode); see [`plane::hold`]. Returns only on an error.
pub fn hold(
    scenario: &Scenario,
    opts: &NetnsOptions,
    ready: impl FnOnce(&Dataplane<Kernel>, super::effects::Inbox) -> Result<(), EffectError>,
) -> Result<(), NetnsError> {
    let (fx, inbox) = deploy(scenario, opts)?;
    Ok(plane::hold(scenario, fx, &inbox, ready)?)
}

/// What the netns backend keeps of a replica's server (same id as the driver's).
struct Process {
    netns: String,
    child: Option<Child>,
    log: PathBuf,
}

/// Replicas' servers as `sdnbed serve` processes.
pub struct Processes<'s> {
    s: &'s Scenario,
    opts: &'s NetnsOptions,
    replicas: Vec<Process>,
}

impl Processes<'_> {
    /// `sdnbed serve` for `spec` in namespace `netns`, in its own process group, output
    /// appended to `log`, recorded in the ledger.
    fn spawn(
        &self,
        dp: &mut Dataplane<Kernel>,
        spec: &ReplicaSpec,
        netns: &str,
        log: &Path,
    ) -> Result<Child, NetnsError> {
        let service = &self.s.services[spec.svc];
        let spawn_err = |source| NetnsError::Spawn {
            service: service.name.clone(),
            replica: spec.id,
            netns: netns.to_string(),
            source,
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let mut cmd = command_in(netns, &self.opts.exe).map_err(spawn_err)?;
        cmd.args(plane::serve_args(self.s, spec))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // Started and recorded in one critical section: a signal either finds it in the
        // ledger or stops the run before it starts.
        dp.spawn(&mut cmd).map_err(|e| match e {
            DataplaneError::Spawn(source) => spawn_err(source),
            e => NetnsError::Plane(e.into()),
        })
    }
}

impl Servers for Processes<'_> {
    fn start(
        &mut self,
        dp: &mut Dataplane<Kernel>,
        spec: &ReplicaSpec,
        netns: &str,
    ) -> Result<(), EffectError> {
        debug_assert_eq!(spec.id as usize, self.replicas.len());
        let name = &self.s.services[spec.svc].name;
        let log = self
            .opts
            .work_dir
            .join("replicas")
            .join(format!("{name}-{}.log", spec.id));
        let child = self.spawn(dp, spec, netns, &log)?;
        self.replicas.push(Process {
            netns: netns.to_string(),
            child: Some(child),
            log,
        });
        Ok(())
    }

    fn signal(&mut self, id: ReplicaId, signal: Signal) {
        if let Some(child) = &self.replicas[id as usize].child {
            let sig = match signal {
                Signal::Term => libc::SIGTERM,
                Signal::Kill => libc::SIGKILL,
            };
            // SAFETY: kill(2) on our own child's pid; it has not been reaped (we hold the Child).
            unsafe {
                libc::kill(child.id() as libc::pid_t, sig);
            }
        }
    }

    fn restart(
        &mut self,
        dp: &mut Dataplane<Kernel>,
        spec: &ReplicaSpec,
    ) -> Result<(), EffectError> {
        let r = &mut self.replicas[spec.id as usize];
        if let Some(mut child) = r.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let (netns, log) = (r.netns.clone(), r.log.clone());
        let child = self.spawn(dp, spec, &netns, &log)?;
        self.replicas[spec.id as usize].child = Some(child);
        Ok(())
    }

    fn reap(&mut self) -> Result<Vec<ReplicaId>, EffectError> {
        let mut exited = Vec::new();
        for (id, r) in self.replicas.iter_mut().enumerate() {
            if let Some(c) = &mut r.child {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    r.child = None;
                    exited.push(id as ReplicaId);
                }
            }
        }
        Ok(exited)
    }

    fn running(&self, id: ReplicaId) -> bool {
        self.replicas[id as usize].child.is_some()
    }

    /// Nothing to do: a reaped process leaves nothing, and the namespace takes the rest.
    fn release(&mut self, _id: ReplicaId) -> Result<(), EffectError> {
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
            if let Some(c) = &mut r.child {
                while std::time::Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            r.child = None;
        }
    }
}
