//! Helpers for tests that run the repository's scenarios: load one with `--set`-style
//! overrides, and list what a run wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sdnbed::scenario::{load_experiment, LoadOptions, Scenario};

/// The first run of the scenario file at `path` (relative to the repository), with `overrides`
/// applied as `--set KEY=VALUE` would.
pub fn load(path: &str, overrides: &[(&str, &str)]) -> Scenario {
    let opts = LoadOptions {
        overrides: overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let exp = load_experiment(&path, &opts).unwrap_or_else(|e| panic!("{e}"));
    exp.runs[0].scenario.clone()
}

/// Every file under `dir`, recursively, in no particular order; none if `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
