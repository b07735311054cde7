//! The LaTeX comparison table of scenarios/strategies.toml, compiled with pdflatex in a
//! two-column `article`: no overfull box, in the one-column `table` (default) and the
//! `table*` (`--wide`, every column). Skipped, with a message, where pdflatex is not installed
//! (test.sh installs it when run as root).

use std::path::Path;
use std::process::Command;

fn sdnbed(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sdnbed {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Compiles `table` in a two-column article in `dir` and returns pdflatex's log.
fn compile(dir: &Path, name: &str, table: &str) -> String {
    std::fs::write(dir.join(format!("{name}-table.tex")), table).unwrap();
    let doc = format!(
        "\\documentclass[twocolumn]{{article}}\n\\usepackage{{booktabs}}\n\\begin{{document}}\nA column of text.\n\\input{{{name}-table.tex}}\n\\end{{document}}\n"
    );
    std::fs::write(dir.join(format!("{name}.tex")), doc).unwrap();
    let out = Command::new("pdflatex")
        .args(["-interaction=nonstopmode", "-halt-on-error"])
        .arg(format!("{name}.tex"))
        .current_dir(dir)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap();
    assert!(out.status.success(), "pdflatex failed:\n{log}");
    log
}

#[test]
fn strategies_table_fits_a_two_column_paper() {
    if Command::new("pdflatex").arg("--version").output().is_err() {
        eprintln!("skipped: pdflatex is not installed (Debian: texlive-latex-base texlive-latex-recommended)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenario = root.join("scenarios/strategies.toml");
    let out = tmp.path().join("results");
    sdnbed(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-plots",
    ]);
    let exp = std::fs::read_dir(out.join("strategies"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let exp = exp.to_str().unwrap();

    let table = sdnbed(&["compare", exp, "--format", "latex"]);
    assert!(table.starts_with("\\begin{table}[t]"));
    for strategy in ["recreate", "rolling", "blue-green", "canary"] {
        assert!(table.contains(&format!("\n{strategy} & ")), "{table}");
    }
    let log = compile(tmp.path(), "one", &table);
    assert!(!log.contains("Overfull"), "{table}\n{log}");

    let all = "p50_ms,p99_ms,p999_ms,during_p99_ms,errors,rollout_s,extra_replica_s";
    let wide = sdnbed(&[
        "compare",
        exp,
        "--format",
        "latex",
        "--wide",
        "--columns",
        all,
    ]);
    assert!(wide.starts_with("\\begin{table*}[t]"));
    let log = compile(tmp.path(), "wide", &wide);
    assert!(!log.contains("Overfull"), "{wide}\n{log}");

    let pairs = sdnbed(&[
        "compare",
        exp,
        "--format",
        "latex",
        "--table",
        "pairs",
        "--columns",
        "during_p99_ms,errors",
    ]);
    // 4 strategies: 6 pairs per metric.
    assert_eq!(pairs.matches(" $-$ ").count(), 12, "{pairs}");
    let log = compile(tmp.path(), "pairs", &pairs);
    assert!(!log.contains("Overfull"), "{pairs}\n{log}");
}
