//! Tier 1 of the kube backend's tests: `sdnbed manifests` for every scenario in `scenarios/`
//! (every run of its sweep) validates strictly against the Kubernetes 1.30 and 1.37 schemas
//! (PyPI `kubernetes-validate`, installed by test.sh), and its YAML reads back as its JSON.

use std::path::{Path, PathBuf};
use std::process::Command;

const VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn sdnbed(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn rendered(file: &Path, json: bool) -> Vec<u8> {
    let f = file.to_str().expect("utf-8 path");
    let mut args = vec!["manifests", f];
    if json {
        args.push("--json");
    }
    let out = sdnbed(&args);
    assert!(
        out.status.success(),
        "sdnbed manifests {f}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn every_scenario_renders_to_objects_that_validate_strictly_on_two_kubernetes_versions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("scenarios"))
        .expect("scenarios/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    let tmp = tempfile::tempdir().expect("tempdir");
    for file in &files {
        let stem = file.file_stem().and_then(|s| s.to_str()).expect("name");
        let (y, j) = (
            tmp.path().join(format!("{stem}.yaml")),
            tmp.path().join(format!("{stem}.jsonl")),
        );
        std::fs::write(&y, rendered(file, false)).expect("write yaml");
        std::fs::write(&j, rendered(file, true)).expect("write json");
        let out = Command::new("python3")
            .arg(root.join("tests/kube/validate.py"))
            .args([&y, &j])
            .args(VERSIONS)
            .output()
            .expect("python3 runs (test.sh installs kubernetes-validate)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every object was checked on both versions: a Namespace, Deployments and a Job at least.
        for kind in ["Namespace/", "Deployment/", "Service/", "Job/"] {
            for v in VERSIONS {
                assert!(
                    stdout.contains(&format!("ok {v} {kind}")),
                    "{}: no {kind} checked on {v}:\n{stdout}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn an_sdn_canary_brings_its_gateway_and_a_bad_override_is_refused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml =
        String::from_utf8(rendered(&root.join("scenarios/bad-canary.toml"), false)).expect("utf-8");
    assert!(yaml.contains("kind: RoleBinding"), "{yaml}");
    assert!(yaml.contains("- NET_ADMIN"), "{yaml}");
    assert!(yaml.contains("sdnbed.weights/web: \"v1=10000\""), "{yaml}");
    let out = sdnbed(&[
        "manifests",
        "scenarios/quickstart.toml",
        "--set",
        "link.0.emulator=userspace",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("link client-gw cannot be expressed"), "{err}");
}
