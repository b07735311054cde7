//! The kube backend's conversation with an API server, through kube-rs (never kubectl):
//! server-side apply of a run's objects, replica counts and gateway weights, readiness from a
//! Pod watch, and teardown by namespace. Blocking methods over a runtime of its own, because
//! the runner that calls them is synchronous.
//!
//! Guarantees:
//! - Objects are applied with server-side apply (field manager `sdnbed`, forced), the Namespace
//!   first, so applying a run twice is harmless.
//! - Replica counts and weights are merge patches of the one field they change, so they never
//!   take ownership of the rest of the object away from the applied manifest.
//! - Readiness comes from the pods' `Ready` condition. The watch is restarted when the server
//!   ends it (as API servers do every few minutes), from a fresh list, so no change is lost.
//! - [`Cluster::delete_run`] deletes the run's namespace; deleting one that is already gone is
//!   not an error (teardown is idempotent).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};

use super::manifests::{RUN_LABEL, SERVICE_LABEL, VERSION_LABEL};

/// An API call that failed, with the object it was about.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("kubeconfig{}: {source}", context.as_ref().map_or(String::new(), |c| format!(" context {c}")))]
    Config {
        context: Option<String>,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{verb} {object}: {source}")]
    Call {
        verb: &'static str,
        object: String,
        source: Box<kube::Error>,
    },
    #[error("{object}: {what}")]
    Object { object: String, what: String },
    #[error("starting the API client's runtime: {0}")]
    Runtime(std::io::Error),
}

/// A connection to one cluster, scoped to one run's namespace.
pub struct Cluster {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    run_id: String,
    namespace: String,
}

/// The API resource of the kinds a run uses (no discovery round trip: they are fixed).
fn resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    let plural = match kind {
        "Namespace" => "namespaces",
        "Deployment" => "deployments",
        "Service" => "services",
        "NetworkPolicy" => "networkpolicies",
        "Job" => "jobs",
        "ServiceAccount" => "serviceaccounts",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Pod" => "pods",
        "EndpointSlice" => "endpointslices",
        _ => return None,
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

/// Whether a Pod object's `Ready` condition is true.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

impl Cluster {
    /// Connects with the kubeconfig (`KUBECONFIG` or `~/.kube/config`), its current context or
    /// `context`.
    pub fn connect(context: Option<&str>, run_id: &str) -> Result<Cluster, ApiError> {
        let cfg_err = |source: Box<dyn std::error::Error + Send + Sync>| ApiError::Config {
            context: context.map(str::to_string),
            source,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ApiError::Runtime)?;
        let opts = KubeConfigOptions {
            context: context.map(str::to_string),
            ..Default::default()
        };
        let client = rt.block_on(async {
            let kc = Kubeconfig::read().map_err(|e| cfg_err(e.into()))?;
            let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| cfg_err(e.into()))?;
            kube::Client::try_from(cfg).map_err(|e| cfg_err(e.into()))
        })?;
        Ok(Cluster {
            rt,
            client,
            run_id: run_id.to_string(),
            namespace: format!("sdnbed-{run_id}"),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self, ar: &ApiResource, namespaced: bool) -> Api<DynamicObject> {
        if namespaced {
            Api::namespaced_with(self.client.clone(), &self.namespace, ar)
        } else {
            Api::all_with(self.client.clone(), ar)
        }
    }

    /// Server-side applies `objs` (as [`super::manifests::render`] returns them) in order.
    pub fn apply(&self, objs: &[Value]) -> Result<(), ApiError> {
        let pp = PatchParams::apply("sdnbed").force();
        for obj in objs {
            let (kind, name) = (
                obj["kind"].as_str().unwrap_or_default(),
                obj["metadata"]["name"].as_str().unwrap_or_default(),
            );
            let object = format!("{kind} {name}");
            let ar = resource(obj["apiVersion"].as_str().unwrap_or_default(), kind).ok_or_else(
                || ApiError::Object {
                    object: object.clone(),
                    what: "a kind this backend does not apply".into(),
                },
            )?;
            let api = self.api(&ar, kind != "Namespace");
            self.rt
                .block_on(api.patch(name, &pp, &Patch::Apply(obj)))
                .map_err(|source| ApiError::Call {
                    verb: "apply",
                    object,
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    fn merge(&self, kind: &str, name: &str, patch: Value) -> Result<(), ApiError> {
        let ar = resource("apps/v1", kind).expect("known kind");
        self.rt
            .block_on(self.api(&ar, true).patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            ))
            .map(|_| ())
            .map_err(|source| ApiError::Call {
                verb: "patch",
                object: format!("{kind} {name}"),
                source: Box::new(source),
            })
    }

    /// Sets Deployment `name`'s replica count (`kubectl scale`, as a merge patch).
    pub fn scale(&self, deployment: &str, replicas: u32) -> Result<(), ApiError> {
        self.merge(
            "Deployment",
            deployment,
            json!({"spec": {"replicas": replicas}}),
        )
    }

    /// Writes the sdn gateway's weights for `service`: `version=basis points`, comma-separated,
    /// on the annotation the gateway watches.
    pub fn set_weights(
        &self,
        gateway: &str,
        service: &str,
        weights: &BTreeMap<String, u32>,
    ) -> Result<(), ApiError> {
        let value: Vec<String> = weights.iter().map(|(v, bp)| format!("{v}={bp}")).collect();
        self.merge(
            "Deployment",
            gateway,
            json!({"metadata": {"annotations": {
                super::manifests::weights_annotation(service): value.join(",")}}}),
        )
    }

    /// Watches the run's pods of `service` until `count` of `version` are ready or `within`
    /// has passed; restarts the watch whenever the server ends it. Returns the ready count.
    pub fn wait_ready(
        &self,
        service: &str,
        version: &str,
        count: usize,
        within: Duration,
    ) -> Result<usize, ApiError> {
        let ar = resource("v1", "Pod").expect("known kind");
        let api = self.api(&ar, true);
        let labels = format!(
            "{RUN_LABEL}={},{SERVICE_LABEL}={service},{VERSION_LABEL}={version}",
            self.run_id
        );
        let object = format!("pods {labels}");
        let call = |verb, source| ApiError::Call {
            verb,
            object: object.clone(),
            source: Box::new(source),
        };
        let deadline = Instant::now() + within;
        self.rt.block_on(async {
            let mut ready: BTreeMap<String, bool> = BTreeMap::new();
            loop {
                // A fresh list each time the watch (re)starts: what changed while no watch ran
                // is in it.
                let list = api
                    .list(&ListParams::default().labels(&labels))
                    .await
                    .map_err(|e| call("list", e))?;
                ready.clear();
                for p in &list.items {
                    let v = serde_json::to_value(p).unwrap_or_default();
                    ready.insert(p.metadata.name.clone().unwrap_or_default(), pod_ready(&v));
                }
                let n = ready.values().filter(|r| **r).count();
                if n >= count {
                    return Ok(n);
                }
                let rv = list.metadata.resource_version.unwrap_or_default();
                let stream = api
                    .watch(&WatchParams::default().labels(&labels), &rv)
                    .await
                    .map_err(|e| call("watch", e))?;
                let mut stream = std::pin::pin!(stream.into_stream());
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(ready.values().filter(|r| **r).count());
                    }
                    let ev = match tokio::time::timeout(left, stream.next()).await {
                        Err(_) => return Ok(ready.values().filter(|r| **r).count()),
                        // The server ended the watch: list and watch again.
                        Ok(None) => break,
                        Ok(Some(ev)) => ev.map_err(|e| call("watch", e))?,
                    };
                    match ev {
                        WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                            let v = serde_json::to_value(&p).unwrap_or_default();
                            ready.insert(p.metadata.name.unwrap_or_default(), pod_ready(&v));
                        }
                        WatchEvent::Deleted(p) => {
                            ready.remove(&p.metadata.name.unwrap_or_default());
                        }
                        WatchEvent::Bookmark(_) => {}
                        // 410 Gone and the like: list and watch again.
                        WatchEvent::Error(_) => break,
                    }
                    let n = ready.values().filter(|r| **r).count();
                    if n >= count {
                        return Ok(n);
                    }
                }
            }
        })
    }

    /// Deletes the run's namespace (and with it everything in it); gone already is fine.
    pub fn delete_run(&self) -> Result<(), ApiError> {
        let ar = resource("v1", "Namespace").expect("known kind");
        match self.rt.block_on(
            self.api(&ar, false)
                .delete(&self.namespace, &DeleteParams::background()),
        ) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(ApiError::Call {
                verb: "delete",
                object: format!("Namespace {}", self.namespace),
                source: Box::new(source),
            }),
        }
    }

    /// The run ids of every namespace labelled `sdnbed.run` (what `sdnbed clean` removes).
    pub fn runs(&self) -> Result<Vec<String>, ApiError> {
        let ar = resource("v1", "Namespace").expect("known kind");
        let list = self
            .rt
            .block_on(
                self.api(&ar, false)
                    .list(&ListParams::default().labels(RUN_LABEL)),
            )
            .map_err(|source| ApiError::Call {
                verb: "list",
                object: format!("namespaces {RUN_LABEL}"),
                source: Box::new(source),
            })?;
        Ok(list
            .items
            .iter()
            .filter_map(|n| n.metadata.labels.as_ref()?.get(RUN_LABEL).cloned())
            .collect())
    }
}
