//! Tier 3 of the kube backend's tests: the API conversation against a real cluster (kind, k3d,
//! GKE, …), when `SDNBED_KUBECONFIG` names its kubeconfig; skipped, saying so, when it is unset.
//!
//!     SDNBED_KUBECONFIG=~/.kube/config SDNBED_IMAGE_REGISTRY=registry.example/me \
//!       cargo test --test kube_cluster -- --nocapture
//!
//! The cluster must be able to pull the built-in image (`R/sdnbed:<version>`, R from
//! `SDNBED_IMAGE_REGISTRY`, or the local name `sdnbed:<version>` when unset, as kind and k3d
//! can load local images) and its nodes need `sch_netem` for the quickstart's links. The test
//! applies the quickstart with `steering = "replicas"` in a namespace of its own, waits for its
//! four v1 pods to be ready, carries out one rolling step (one v2 up and ready, one v1 down)
//! and deletes the namespace, also when it fails.

use std::path::Path;
use std::time::Duration;

use sdnbed::backend::kube::api::Cluster;
use sdnbed::backend::kube::manifests::{render, RenderOptions, DEFAULT_TC_IMAGE};

/// Deletes the run's namespace however the test ends.
struct Teardown<'a>(&'a Cluster);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.delete_run() {
            eprintln!("teardown of {}: {e}", self.0.namespace());
        }
    }
}

#[test]
fn quickstart_rolling_step_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("SDNBED_KUBECONFIG") else {
        eprintln!("skipped: SDNBED_KUBECONFIG is unset (tier 3 needs a real cluster)");
        return;
    };
    std::env::set_var("KUBECONFIG", kubeconfig);
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml"),
    )
    .expect("quickstart");
    let opts = sdnbed::scenario::LoadOptions {
        overrides: vec![("rollout.steering".into(), "replicas".into())],
        ..Default::default()
    };
    let s = sdnbed::scenario::parse_experiment(&text, "quickstart.toml", None, &opts)
        .expect("valid")
        .runs
        .remove(0)
        .scenario;
    let run = format!("t3-{}", std::process::id());
    let registry = std::env::var("SDNBED_IMAGE_REGISTRY").ok();
    let o = RenderOptions {
        run_id: run.clone(),
        image: RenderOptions::image_for(registry.as_deref()),
        tc_image: DEFAULT_TC_IMAGE.into(),
    };
    let objs = render(&s, &o).expect("renders");
    let c = Cluster::connect(None, &run).expect("connects");
    let _teardown = Teardown(&c);
    c.apply(&objs).expect("server-side apply");
    let within = Duration::from_secs(180);
    assert_eq!(c.wait_ready("web", "v1", 4, within).expect("watch"), 4);
    c.scale("web-v2", 1).expect("surge");
    assert_eq!(c.wait_ready("web", "v2", 1, within).expect("watch"), 1);
    c.scale("web-v1", 3).expect("scale down");
    assert!(c.runs().expect("runs").contains(&run));
}
