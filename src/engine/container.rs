//! Containers: create and start (one or many at once), signal, restart, inspect, remove.
//!
//! Guarantees:
//! - [`Engine::run_many`] has at most [`RUN_CONCURRENCY`] create/start calls in flight and
//!   always lets every started call finish before it returns, so on an error the caller's ledger
//!   names every container that may exist.
//! - Removal is idempotent: a container that is already gone (or being removed) is not an error.
//! - Labels filter with the engine's `label=` filter; [`run_filter`] and [`any_run_filter`] are
//!   the exact filters sent.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, RemoveContainerOptions,
    WaitContainerOptions,
};
use futures_util::{StreamExt, TryStreamExt};

use super::{status, ContainerSpec, ContainerState, Engine, EngineError, NetworkMode, RUN_LABEL};

/// Create/start calls [`Engine::run_many`] keeps in flight.
pub const RUN_CONCURRENCY: usize = 16;

/// The engine's create body for `spec` (pure). Sysctls with a joined network are refused:
/// the engine would refuse them later, with a less clear message.
pub fn create_body(spec: &ContainerSpec) -> Result<ContainerCreateBody, EngineError> {
    if !spec.sysctls.is_empty() && spec.network != NetworkMode::None {
        return Err(EngineError::InvalidSpec {
            name: spec.name.clone(),
            message: "sysctls need network mode none (a joined network namespace belongs to \
                      the container that made it)"
                .into(),
        });
    }
    let network_mode = match &spec.network {
        NetworkMode::None => "none".to_string(),
        NetworkMode::Container(c) => format!("container:{c}"),
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        host_config: Some(HostConfig {
            network_mode: Some(network_mode),
            nano_cpus: spec.nano_cpus,
            memory: spec.memory,
            sysctls: (!spec.sysctls.is_empty()).then(|| spec.sysctls.clone().into_iter().collect()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The `filters` of a container list for one run's containers.
pub fn run_filter(run: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{RUN_LABEL}={run}")])])
}

/// The `filters` of a container list for every container carrying a run label.
pub fn any_run_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![RUN_LABEL.to_string()])])
}

/// A container's name as given at create (the API lists it with a leading `/`).
pub fn bare_name(api_name: &str) -> &str {
    api_name.strip_prefix('/').unwrap_or(api_name)
}

/// True for the engine's answer that a container is not running (kill of a stopped one).
fn not_running(e: &bollard::errors::Error) -> bool {
    status(e) == Some(409)
}

/// True for a remove that found nothing to do: gone, or removal already in progress.
fn already_removed(e: &bollard::errors::Error) -> bool {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => *status_code == 404 || (*status_code == 409 && message.contains("in progress")),
        _ => false,
    }
}

fn cerr<'a>(
    name: &'a str,
    op: &'static str,
) -> impl FnOnce(bollard::errors::Error) -> EngineError + 'a {
    move |e| EngineError::api(format!("container {name}"), op, e)
}

impl Engine {
    /// Creates and starts `specs` concurrently (at most [`RUN_CONCURRENCY`] in flight); returns
    /// each container's host pid (State.Pid), in order. On a failure returns the first error in
    /// `specs` order after every other call finished (the caller removes what was made: names
    /// are in its ledger first).
    pub fn run_many(&self, specs: &[ContainerSpec]) -> Result<Vec<u32>, EngineError> {
        let results: Vec<Result<u32, EngineError>> = self.block_on(
            futures_util::stream::iter(specs.iter().map(|s| self.run_async(s)))
                .buffered(RUN_CONCURRENCY)
                .collect(),
        );
        results.into_iter().collect()
    }

    /// Creates and starts one container; returns its host pid.
    pub fn run(&self, spec: &ContainerSpec) -> Result<u32, EngineError> {
        self.block_on(self.run_async(spec))
    }

    async fn run_async(&self, spec: &ContainerSpec) -> Result<u32, EngineError> {
        let body = create_body(spec)?;
        let d = self.docker();
        let name = spec.name.as_str();
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        d.create_container(Some(options), body)
            .await
            .map_err(cerr(name, "create"))?;
        d.start_container(name, None)
            .await
            .map_err(cerr(name, "start"))?;
        let state = self.state_async(name).await?;
        if !state.running || state.pid == 0 {
            return Err(EngineError::Container {
                name: name.to_string(),
                message: format!(
                    "exited right after start (exit code {}{})",
                    state.exit_code,
                    if state.oom_killed { ", OOM-killed" } else { "" }
                ),
            });
        }
        Ok(state.pid)
    }

    /// Sends `signal` ("SIGTERM", "SIGKILL", ...) to the container's main process; Ok if it is
    /// not running. A container that does not exist is an error.
    pub fn signal(&self, name: &str, signal: &str) -> Result<(), EngineError> {
        let options = KillContainerOptions {
            signal: signal.to_string(),
        };
        match self.block_on(self.docker().kill_container(name, Some(options))) {
            Err(e) if not_running(&e) => Ok(()),
            r => r.map_err(cerr(name, "kill")),
        }
    }

    /// Kills the container's process (SIGKILL), waits for it to exit, and starts the same
    /// container again; returns the new pid. Its network (network_mode container:X) is kept:
    /// the engine joins X's namespace again at start, so X must be running.
    pub fn restart(&self, name: &str) -> Result<u32, EngineError> {
        self.block_on(async {
            let d = self.docker();
            match d.kill_container(name, None::<KillContainerOptions>).await {
                Err(e) if not_running(&e) => {}
                r => r.map_err(cerr(name, "kill"))?,
            }
            let wait = WaitContainerOptions {
                condition: "not-running".into(),
            };
            // The wait stream yields one answer when the container has stopped; a non-zero exit
            // comes as an error that carries the code, which is expected after SIGKILL.
            let mut s = d.wait_container(name, Some(wait));
            match s.try_next().await {
                Ok(_) | Err(bollard::errors::Error::DockerContainerWaitError { .. }) => {}
                Err(e) => return Err(cerr(name, "wait")(e)),
            }
            d.start_container(name, None)
                .await
                .map_err(cerr(name, "start"))?;
            let state = self.state_async(name).await?;
            if !state.running {
                return Err(EngineError::Container {
                    name: name.to_string(),
                    message: format!("exited right after restart (exit code {})", state.exit_code),
                });
            }
            Ok(state.pid)
        })
    }

    /// The container's state, from `inspect`.
    pub fn state(&self, name: &str) -> Result<ContainerState, EngineError> {
        self.block_on(self.state_async(name))
    }

    pub(super) async fn state_async(&self, name: &str) -> Result<ContainerState, EngineError> {
        let info = self
            .docker()
            .inspect_container(name, None)
            .await
            .map_err(cerr(name, "inspect"))?;
        let s = info.state.unwrap_or_default();
        Ok(ContainerState {
            running: s.running.unwrap_or(false),
            pid: s.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
            exit_code: s.exit_code.unwrap_or(0),
            oom_killed: s.oom_killed.unwrap_or(false),
        })
    }

    /// Force-removes the containers (concurrently), with their anonymous volumes; already gone
    /// is Ok. Returns the first error in `names` order after every removal finished.
    pub fn remove(&self, names: &[String]) -> Result<(), EngineError> {
        let results: Vec<Result<(), EngineError>> = self.block_on(
            futures_util::stream::iter(names.iter().map(|n| self.remove_async(n)))
                .buffer_unordered(RUN_CONCURRENCY)
                .collect(),
        );
        results.into_iter().collect()
    }

    async fn remove_async(&self, name: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.docker().remove_container(name, Some(options)).await {
            Err(e) if already_removed(&e) => Ok(()),
            r => r.map_err(cerr(name, "remove")),
        }
    }

    /// Force-removes every container labelled `sdnbed.run=<run>`; returns their names.
    pub fn remove_run(&self, run: &str) -> Result<Vec<String>, EngineError> {
        let names = self.list_names(run_filter(run), &format!("containers of run {run}"))?;
        self.remove(&names)?;
        Ok(names)
    }

    /// The distinct `sdnbed.run` label values of existing containers, sorted (for `sdnbed clean
    /// --all`).
    pub fn runs(&self) -> Result<Vec<String>, EngineError> {
        let list = self.list(any_run_filter(), "containers with an sdnbed.run label")?;
        let mut runs: Vec<String> = list
            .into_iter()
            .filter_map(|c| c.labels.and_then(|mut l| l.remove(RUN_LABEL)))
            .collect();
        runs.sort();
        runs.dedup();
        Ok(runs)
    }

    fn list(
        &self,
        filters: HashMap<String, Vec<String>>,
        what: &str,
    ) -> Result<Vec<bollard::models::ContainerSummary>, EngineError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        self.block_on(self.docker().list_containers(Some(options)))
            .map_err(|e| EngineError::api(what, "list", e))
    }

    fn list_names(
        &self,
        filters: HashMap<String, Vec<String>>,
        what: &str,
    ) -> Result<Vec<String>, EngineError> {
        let mut names: Vec<String> = self
            .list(filters, what)?
            .into_iter()
            .filter_map(|c| c.names?.first().map(|n| bare_name(n).to_string()))
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(network: NetworkMode) -> ContainerSpec {
        ContainerSpec {
            name: "sdnbed-r1-web-1".into(),
            image: "sdnbed-builtin:0123456789abcdef".into(),
            entrypoint: None,
            cmd: Some(vec!["serve".into(), "--version".into(), "v1".into()]),
            env: vec![],
            labels: BTreeMap::from([(RUN_LABEL.to_string(), "r1".to_string())]),
            network,
            nano_cpus: Some(500_000_000),
            memory: None,
            sysctls: BTreeMap::new(),
        }
    }

    #[test]
    fn create_body_carries_the_spec() {
        let body = create_body(&spec(NetworkMode::Container("sdnbed-r1-web-1-sb".into()))).unwrap();
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["Image"], "sdnbed-builtin:0123456789abcdef");
        assert_eq!(json["Cmd"], serde_json::json!(["serve", "--version", "v1"]));
        assert!(
            json.get("Entrypoint").is_none(),
            "unset entrypoint keeps the image's"
        );
        assert!(json.get("Env").is_none());
        assert_eq!(json["Labels"][RUN_LABEL], "r1");
        assert_eq!(
            json["HostConfig"]["NetworkMode"],
            "container:sdnbed-r1-web-1-sb"
        );
        assert_eq!(json["HostConfig"]["NanoCpus"], 500_000_000);
        assert!(json["HostConfig"].get("Memory").is_none());
        assert!(json["HostConfig"].get("Sysctls").is_none());
    }

    #[test]
    fn sysctls_go_with_network_none_only() {
        let mut s = spec(NetworkMode::None);
        s.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        let json = serde_json::to_value(create_body(&s).unwrap()).unwrap();
        assert_eq!(json["HostConfig"]["NetworkMode"], "none");
        assert_eq!(json["HostConfig"]["Sysctls"]["net.ipv4.ip_forward"], "1");

        s.network = NetworkMode::Container("sb".into());
        let e = create_body(&s).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("container sdnbed-r1-web-1: sysctls"),
            "{e}"
        );
    }

    #[test]
    fn label_filters_select_one_run_or_any_run() {
        let f = serde_json::to_string(&run_filter("3f2a")).unwrap();
        assert_eq!(f, r#"{"label":["sdnbed.run=3f2a"]}"#);
        let f = serde_json::to_string(&any_run_filter()).unwrap();
        assert_eq!(f, r#"{"label":["sdnbed.run"]}"#);
    }

    #[test]
    fn names_lose_the_api_slash() {
        assert_eq!(bare_name("/sdnbed-r1-web-1"), "sdnbed-r1-web-1");
        assert_eq!(bare_name("plain"), "plain");
    }

    #[test]
    fn removal_of_what_is_gone_is_not_an_error() {
        let err = |code: u16, msg: &str| bollard::errors::Error::DockerResponseServerError {
            status_code: code,
            message: msg.into(),
        };
        assert!(already_removed(&err(404, "No such container: x")));
        assert!(already_removed(&err(
            409,
            "removal of container x is already in progress"
        )));
        assert!(!already_removed(&err(409, "conflict: something else")));
        assert!(!already_removed(&err(500, "driver failed")));
    }
}
