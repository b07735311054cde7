//! The Docker Engine client under the docker backend: images, containers, logs, events and exec
//! through the Engine's HTTP API on its unix socket (bollard), never the `docker` CLI.
//!
//! [`Engine`] is a blocking facade: it owns a small multi-threaded tokio runtime (two workers)
//! and every method runs its request to completion on the calling thread, so the docker
//! backend's effects stay plain synchronous code. Methods may be called from any thread that is
//! not itself inside an async runtime, concurrently; clones share one connection pool and one
//! runtime. Background work ([`Engine::follow_logs`], [`Engine::watch_events`]) runs on that
//! runtime's workers and stops when the last clone of the `Engine` is dropped (the runtime is
//! shut down without waiting for it).
//!
//! Layers inside: [`image`] turns a binary or a directory into a build context (pure: the
//! `ldd` / ELF parsing, the deterministic tar and its hash are unit-tested without an engine),
//! [`container`] turns a [`ContainerSpec`] into the API's create body (pure) and runs the
//! container calls, [`stream`] holds the long-lived streams (logs, events, exec).
//!
//! # Engine versions
//!
//! The client negotiates its API version down to the engine's ([`Engine::connect`]), and needs
//! API 1.41 or newer: Docker Engine 20.10 and every later release. It is tested against 20.10.24
//! (API 1.41); newer engines accept the older API, and bollard speaks at most API 1.53, which it
//! uses with engines that are newer still. An older engine is refused with an error naming both
//! versions. Images are built with the classic builder (`version=1`), because BuildKit builds
//! need a session that 20.10 cannot run through this API; nothing is ever pulled (no registry
//! is assumed reachable), so `FROM` lines must name images that exist locally, or `scratch`.
//!
//! # Departures
//!
//! - The socket is `$DOCKER_HOST` when it is a `unix://` address, else `/var/run/docker.sock`;
//!   TCP and TLS engines are not supported.
//! - Errors carry the engine's message as text (bollard's error), prefixed by the object that
//!   failed; [`EngineError::is_not_found`] tells "no such container/image" apart.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bollard::Docker;

mod container;
pub mod image;
mod stream;

pub use stream::EventWatch;

/// The oldest Engine API this client works with (Docker Engine 20.10).
pub const MIN_API: (usize, usize) = (1, 41);

/// Label every sdnbed container carries, with the run id as value.
pub const RUN_LABEL: &str = "sdnbed.run";

/// The second tag of the current builtin image, for Dockerfiles: `FROM sdnbed:builtin`.
pub const BUILTIN_ALIAS: &str = "sdnbed:builtin";

/// Label of images sdnbed builds: `builtin` (sdnbed's own binary) or `build` (a Dockerfile).
pub const IMAGE_LABEL: &str = "sdnbed.image";

/// A connection to the Docker Engine, with its own small tokio runtime; every method blocks the
/// calling thread (callable from any non-async thread, concurrently). Clone is cheap.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    /// `Some` until drop, which shuts the runtime down without waiting for background tasks
    /// (a task may sit in a blocking read of our stdin).
    rt: Option<tokio::runtime::Runtime>,
    socket: String,
    engine_version: String,
    api_version: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// What went wrong, naming the object (socket, image, container, run, file) that failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Docker Engine at {socket} is unreachable (is dockerd running?): {source}")]
    Unreachable {
        socket: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error(
        "Docker Engine {engine} at {socket} speaks API {api}, older than the {}.{} sdnbed needs \
         (Docker Engine 20.10 or newer)",
        MIN_API.0,
        MIN_API.1
    )]
    TooOld {
        socket: String,
        engine: String,
        api: String,
    },
    #[error("starting the tokio runtime of the Engine client: {0}")]
    Runtime(#[source] std::io::Error),
    /// A call on one object: `object` is e.g. "container sdnbed-3f2a-web-1", "image
    /// sdnbed-builtin:…", "containers of run 3f2a".
    #[error("{object}: {op}: {source}")]
    Api {
        object: String,
        op: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("container {name}: {message}")]
    InvalidSpec { name: String, message: String },
    #[error("container {name}: {message}")]
    Container { name: String, message: String },
    /// A build that the engine ran and that failed; `output` holds its last lines.
    #[error("building {context}: {message}\n--- last lines of the build output ---\n{}", output.join("\n"))]
    Build {
        context: String,
        message: String,
        output: Vec<String>,
    },
    #[error("shared libraries of {exe}: {message}")]
    Libraries { exe: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    /// True when the engine answered 404: the container or image does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, EngineError::Api { source, .. } if status(source) == Some(404))
    }

    fn api(object: impl Into<String>, op: &'static str, source: bollard::errors::Error) -> Self {
        EngineError::Api {
            object: object.into(),
            op,
            source,
        }
    }

    fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// The HTTP status of an engine error answer, if it is one.
fn status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// One container to create and start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint when set.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command when set.
    pub cmd: Option<Vec<String>>,
    /// "K=V".
    pub env: Vec<String>,
    /// The caller adds `sdnbed.run` etc.
    pub labels: BTreeMap<String, String>,
    pub network: NetworkMode,
    /// CPU limit in billionths of a core (cores × 1e9).
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Namespaced kernel parameters; only allowed with [`NetworkMode::None`] (a container that
    /// joins another's network namespace cannot set network sysctls of its own).
    pub sysctls: BTreeMap<String, String>,
}

/// The container's network: its own empty namespace (only `lo`), or another container's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    /// `network_mode: none`: a fresh network namespace with only loopback, for the data plane
    /// to wire.
    None,
    /// `network_mode: container:<name>`: joins the named container's network namespace.
    Container(String),
}

/// What `inspect` says of a container's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerState {
    pub running: bool,
    /// The host pid of the main process; 0 when it is not running.
    pub pid: u32,
    pub exit_code: i64,
    pub oom_killed: bool,
}

/// One container event of a watched run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The container's name (without the API's leading `/`).
    pub name: String,
    /// `start`, `die`, `oom` or `kill`.
    pub action: String,
    /// For `die`: the main process's exit status (128 + signal when killed by one).
    pub exit_code: Option<i64>,
    /// The engine's time of the event, ns since the Unix epoch.
    pub time_nano: i64,
}

impl Engine {
    /// Connects to the engine's unix socket (`$DOCKER_HOST` when it is `unix://…`, else
    /// `/var/run/docker.sock`), negotiates the API version down to the engine's, and refuses
    /// engines older than API 1.41.
    pub fn connect() -> Result<Engine, EngineError> {
        Engine::connect_to(&socket_path())
    }

    /// [`Engine::connect`] to the engine at the unix socket `socket`.
    pub fn connect_to(socket: &str) -> Result<Engine, EngineError> {
        let socket = socket.to_string();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sdnbed-engine")
            .enable_all()
            .build()
            .map_err(EngineError::Runtime)?;
        let unreachable = |source| EngineError::Unreachable {
            socket: socket.clone(),
            source,
        };
        let docker = Docker::connect_with_unix(&socket, 120, bollard::API_DEFAULT_VERSION)
            .map_err(unreachable)?;
        let (docker, version) = rt
            .block_on(async {
                let docker = docker.negotiate_version().await?;
                let version = docker.version().await?;
                Ok::<_, bollard::errors::Error>((docker, version))
            })
            .map_err(unreachable)?;
        let engine_version = version.version.unwrap_or_default();
        let server_api = version.api_version.unwrap_or_default();
        if !api_at_least(&server_api, MIN_API) {
            return Err(EngineError::TooOld {
                socket,
                engine: engine_version,
                api: server_api,
            });
        }
        let negotiated = docker.client_version();
        let api_version = format!("{}.{}", negotiated.major_version, negotiated.minor_version);
        Ok(Engine {
            inner: Arc::new(Inner {
                docker,
                rt: Some(rt),
                socket,
                engine_version,
                api_version,
            }),
        })
    }

    /// (engine version, negotiated API version), e.g. ("20.10.24", "1.41").
    pub fn versions(&self) -> (String, String) {
        (
            self.inner.engine_version.clone(),
            self.inner.api_version.clone(),
        )
    }

    /// The unix socket this engine was reached on.
    pub fn socket(&self) -> &str {
        &self.inner.socket
    }

    fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.inner.rt.as_ref().expect("runtime lives until drop")
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt().block_on(f)
    }
}

/// `$DOCKER_HOST` when it is a `unix://` address, else the default socket.
fn socket_path() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => h.trim_start_matches("unix://").to_string(),
        _ => "/var/run/docker.sock".to_string(),
    }
}

/// Whether API version `v` ("1.41") is at least `min`; false for what does not parse.
fn api_at_least(v: &str, min: (usize, usize)) -> bool {
    let mut parts = v.trim().split('.');
    let major = parts.next().and_then(|p| p.parse::<usize>().ok());
    let minor = parts.next().and_then(|p| p.parse::<usize>().ok());
    match (major, minor) {
        (Some(a), Some(b)) => (a, b) >= min,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_compare_numerically() {
        assert!(api_at_least("1.41", MIN_API));
        assert!(api_at_least("1.53", MIN_API));
        assert!(api_at_least("2.0", MIN_API));
        assert!(!api_at_least("1.40", MIN_API));
        assert!(!api_at_least("1.9", MIN_API));
        assert!(!api_at_least("", MIN_API));
        assert!(!api_at_least("banana", MIN_API));
    }

    #[test]
    fn too_old_names_both_versions() {
        let e = EngineError::TooOld {
            socket: "/var/run/docker.sock".into(),
            engine: "19.03.15".into(),
            api: "1.40".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("1.40") && msg.contains("1.41"), "{msg}");
        assert!(
            msg.contains("19.03.15") && msg.contains("/var/run/docker.sock"),
            "{msg}"
        );
    }
}
