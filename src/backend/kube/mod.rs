//! The kube backend: a scenario as Kubernetes API objects, written with kube-rs, never kubectl.
//!
//! What exists so far: [`manifests`], the scenario rendered as the objects a run applies
//! (Namespace, Deployments per version, Services, NetworkPolicies, the load Job, the sdn
//! gateway), which `sdnbed manifests` prints as YAML. The module docs of [`manifests`] say what
//! a link, a probe and a grace period mean on a cluster and what is refused.
//!
//! # How it is tested without a cluster
//! - Tier 1 (`tests/kube_manifests.rs`, in CI): every scenario in `scenarios/`, every run of its
//!   sweep, rendered and validated strictly against the Kubernetes 1.30 and 1.37 schemas by the
//!   PyPI package `kubernetes-validate` (`tests/kube/validate.py`).

pub mod manifests;
pub mod yaml;
