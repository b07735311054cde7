//! The README's "Using it" commands, run as the README shows them (simulated; results in a
//! temporary directory instead of results/).

use std::path::Path;
use std::process::Command;

fn sdnbed(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sdnbed {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn readme_using_it_commands_work() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let steps = "--set 'rollout.canary.steps=[{weight=10,pause=\"10s\"},{weight=100}]' --seed 3";
    assert!(
        readme.contains(steps),
        "the README shows the canary example this test runs"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let scenarios: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
            .unwrap()
            .map(|e| e.unwrap().path().to_string_lossy().into_owned())
            .filter(|p| p.ends_with(".toml"))
            .collect();
    let mut validate = vec!["validate"];
    validate.extend(scenarios.iter().map(String::as_str));
    sdnbed(&validate);

    let run = sdnbed(&[
        "run",
        "scenarios/quickstart.toml",
        "--set",
        "rollout.strategy=canary",
        "--set",
        "rollout.canary.steps=[{weight=10,pause=\"10s\"},{weight=100}]",
        "--seed",
        "3",
        "--out",
        out,
    ]);
    assert!(run.contains("rollout promoted"), "{run}");

    sdnbed(&["run", "scenarios/strategies.toml", "--out", out]);
    let exp = std::fs::read_dir(tmp.path().join("strategies"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let exp = exp.to_str().unwrap();
    assert!(
        Path::new(exp).join("report.html").is_file(),
        "run writes the report"
    );
    let tex = sdnbed(&["compare", exp, "--format", "latex"]);
    assert!(tex.contains("\\toprule") && tex.contains("canary & "));
    let pairs = sdnbed(&["compare", exp, "--table", "pairs"]);
    assert!(pairs.contains("| recreate | canary |"), "{pairs}");
    assert!(sdnbed(&["report", exp]).trim_end().ends_with("report.html"));
    let plot = sdnbed(&["plot", exp]);
    assert!(plot.contains("sweep-rollout-strategy.png"), "{plot}");
}
