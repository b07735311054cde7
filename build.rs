//! Records the git commit the binary was built from, for run provenance (`run.json`).
//!
//! Sets `SDNBED_GIT_COMMIT` to `git rev-parse HEAD`, with `-dirty` appended when tracked files
//! differ from HEAD, or to `unknown` outside a git checkout or without git. Reruns when HEAD, the
//! index or the sources change, so the dirty flag follows edits under `src/`.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = PathBuf::from(dir);
        for f in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={}", dir.join(f).display());
        }
    }
    if let Some(dir) = git(&["rev-parse", "--git-common-dir"]) {
        let dir = PathBuf::from(dir);
        for f in ["packed-refs", "refs/heads"] {
            println!("cargo:rerun-if-changed={}", dir.join(f).display());
        }
    }
    let commit = match git(&["rev-parse", "HEAD"]) {
        Some(head) if !head.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .map(|s| !s.is_empty())
                .unwrap_or(false);
            if dirty {
                format!("{head}-dirty")
            } else {
                head
            }
        }
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=SDNBED_GIT_COMMIT={commit}");
}
