//! `sdnbed manifests FILE`: prints a scenario's runs as Kubernetes objects (YAML), the objects
//! `run --backend kube` applies, for a person to read or `kubectl apply -f -`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::backend::kube::manifests::{render, RenderOptions, DEFAULT_TC_IMAGE};
use crate::backend::kube::yaml;
use crate::scenario::{load_experiment, LoadOptions};

/// Render a scenario as Kubernetes objects: per run of its sweep, a Namespace
/// `sdnbed-<scenario>-<run index>` with a Deployment per service version, Services,
/// NetworkPolicies, the load Job and, for `steering = "sdn"`, the gateway. What a link, a probe
/// and a grace period become on a cluster, and what is refused, is in src/backend/kube/manifests.rs.
#[derive(Args)]
pub struct ManifestsArgs {
    /// The scenario file.
    file: PathBuf,
    /// Override one key before rendering, as `run --set` does. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = super::parse_set)]
    set: Vec<(String, String)>,
    /// Registry the built-in image is pulled from (`R/sdnbed:<version>`). Default: the local
    /// name `sdnbed:<version>`.
    #[arg(long, value_name = "R")]
    image_registry: Option<String>,
    /// Image of the links' init container; it must have `tc` (iproute2).
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_TC_IMAGE)]
    tc_image: String,
    /// Print JSON (one object per line) instead of YAML.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ManifestsArgs) -> anyhow::Result<i32> {
    let opts = LoadOptions {
        overrides: args.set.clone(),
        ..Default::default()
    };
    let exp = match load_experiment(&args.file, &opts) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return Ok(super::EXIT_INVALID);
        }
    };
    let mut out = String::new();
    for spec in &exp.runs {
        let ro = RenderOptions {
            run_id: format!("{}-{}", exp.name, spec.index),
            image: RenderOptions::image_for(args.image_registry.as_deref()),
            tc_image: args.tc_image.clone(),
        };
        let objs = match render(&spec.scenario, &ro) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: {}: run {}: {e}", args.file.display(), spec.index);
                return Ok(super::EXIT_INVALID);
            }
        };
        if args.json {
            for o in &objs {
                out.push_str(&serde_json::to_string(o).context("writing JSON")?);
                out.push('\n');
            }
        } else {
            out.push_str(&yaml::documents(&objs));
        }
    }
    print!("{out}");
    if out.contains("kind: Role\n") || out.contains("\"kind\":\"Role\"") {
        eprintln!(
            "note: steering = \"sdn\" renders a gateway Deployment running `sdnbed gateway`, \
             which this build does not have yet; `--set rollout.steering=replicas` uses the \
             cluster's Service routing instead"
        );
    }
    Ok(0)
}
