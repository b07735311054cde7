//! The kube backend: a scenario as Kubernetes API objects, written with kube-rs, never kubectl.
//!
//! What exists so far: [`manifests`], the scenario rendered as the objects a run applies
//! (Namespace, Deployments per version, Services, NetworkPolicies, the load Job, the sdn
//! gateway), which `sdnbed manifests` prints as YAML. The module docs of [`manifests`] say what
//! a link, a probe and a grace period mean on a cluster and what is refused; and [`api`], the
//! API conversation a run has with a cluster (server-side apply, replica counts, gateway
//! weights, readiness from a Pod watch that survives restarts, teardown by namespace, leftover
//! runs by label).
//!
//! Not yet built: the `Effects` of [`super::effects`] over [`api::Cluster`] (so `run --backend
//! kube` is still refused), the in-pod gateway program, results from the load Job, `--on kube`
//! and `sdnbed image push`.
//!
//! # How it is tested without a cluster
//! - Tier 1 (`tests/kube_manifests.rs`, in CI): every scenario in `scenarios/`, every run of its
//!   sweep, rendered and validated strictly against the Kubernetes 1.30 and 1.37 schemas by the
//!   PyPI package `kubernetes-validate` (`tests/kube/validate.py`).
//! - Tier 2 (`tests/kube_api.rs`, in CI): [`api::Cluster`] over real HTTP against PyPI
//!   `kmock`'s KubernetesEmulator (`tests/kube/emulator.py`), which answers what kmock lacks
//!   (server-side apply, Namespace objects, label selectors) and plays the Deployment and
//!   EndpointSlice controllers; the backend's code has no test-only branch.
//! - Tier 3 (a real cluster through `SDNBED_KUBECONFIG`): not written yet.

pub mod api;
pub mod manifests;
pub mod yaml;
