//! Figures and tables from a synthetic run (a canary rollout at 20 s with a latency bump) and a
//! synthetic two-parameter experiment. The files are left in `target/tmp/output_report/` to be
//! looked at.

mod output_fixture;

use std::fs;
use std::path::{Path, PathBuf};

use sdnbed::report::{self, TableFormat, TableKind, TableOptions};
use sdnbed::results;

fn fresh(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("output_report")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = fs::read(path).unwrap();
    assert_eq!(&b[1..4], b"PNG", "{}", path.display());
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn run_figures_exist_and_are_not_trivial() {
    let dir = fresh("run").join("0000-r0");
    results::write_run(&dir, &output_fixture::record(7, 0, &[], 0)).unwrap();
    let paths = report::plot_run(&dir).unwrap();
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "latency.svg",
            "latency.png",
            "throughput.svg",
            "throughput.png",
            "replicas.svg",
            "replicas.png"
        ]
    );
    for p in &paths {
        assert_eq!(p.parent().unwrap(), dir.join("figures"));
        let len = fs::metadata(p).unwrap().len();
        assert!(len > 10_000, "{} is only {len} bytes", p.display());
        if p.extension().unwrap() == "png" {
            assert_eq!(png_size(p).0, 1050, "{}", p.display());
        }
    }
    let svg = fs::read_to_string(dir.join("figures/latency.svg")).unwrap();
    assert!(svg.contains("latency (ms)") && svg.contains("time (s)") && svg.contains("p99.9"));
    assert!(svg.contains("@font-face{font-family:'DejaVu Sans';src:url(data:font/ttf;base64,"));
    assert!(
        svg.starts_with("<svg width=\"3.5in\" height=\"2.3in\" viewBox=\"0 0 1050 690\""),
        "{}",
        &svg[..80]
    );
    let svg = fs::read_to_string(dir.join("figures/throughput.svg")).unwrap();
    for kind in ["reset", "timeout", "5xx"] {
        assert!(
            svg.contains(&format!(">\n{kind}\n<")),
            "no legend entry for {kind}"
        );
    }
    assert!(
        !svg.contains(">\nrefused\n<"),
        "a kind without errors has no legend entry"
    );
    // Redrawing replaces the derived figures.
    assert_eq!(report::plot_run(&dir).unwrap(), paths);
}

fn experiment() -> PathBuf {
    let root = fresh("experiment");
    let exp = results::create_experiment_dir(&root, "synthetic").unwrap();
    let mut index = 0;
    for strategy in ["canary", "rolling", "blue-green"] {
        for rate in ["1000/s", "4000/s"] {
            for rep in 0..3u32 {
                let params = [
                    ("rollout.strategy", strategy),
                    ("workload.users.rate", rate),
                ];
                let rec = output_fixture::record(1000 + index as u64, index, &params, rep);
                let dir = exp
                    .join("runs")
                    .join(results::run_dir_name(index, &rec.params, rep));
                results::write_run(&dir, &rec).unwrap();
                index += 1;
            }
        }
    }
    exp
}

#[test]
fn experiment_figures_and_tables() {
    let exp = experiment();
    let paths = report::plot_experiment(&exp).unwrap();
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "sweep-rollout-strategy.svg",
            "sweep-rollout-strategy.png",
            "sweep-workload-users-rate.svg",
            "sweep-workload-users-rate.png"
        ]
    );
    for p in &paths {
        assert!(fs::metadata(p).unwrap().len() > 5_000, "{}", p.display());
    }
    let svg = fs::read_to_string(&paths[0]).unwrap();
    assert!(
        svg.contains("rate=1000/s")
            && svg.contains(">\nblue-green\n<")
            && svg.contains("p99 during rollout (ms)")
    );

    // Every group's median, min and max, checked against the runs themselves.
    let runs = results::list_runs(&exp).unwrap();
    let mut p99: Vec<f64> = runs
        .iter()
        .filter(|(_, r)| {
            r.params["rollout.strategy"] == "rolling" && r.params["workload.users.rate"] == "4000/s"
        })
        .map(|(_, r)| r.summary.overall.latency.unwrap().p99_ms)
        .collect();
    assert_eq!(p99.len(), 3);
    p99.sort_by(f64::total_cmp);

    let opts = |f| TableOptions::new(f);
    let csv = report::compare(&exp, &opts(TableFormat::Csv)).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 6);
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(
        &header[..4],
        ["rollout.strategy", "workload.users.rate", "runs", "outcome"]
    );
    let row: Vec<&str> = lines[4].split(',').collect();
    assert_eq!(&row[..4], ["rolling", "4000/s", "3", "completed"]);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let num = |name: &str| row[col(name)].parse::<f64>().unwrap();
    // The mean of the group's runs, inside its interval, the interval inside their range.
    let mean = p99.iter().sum::<f64>() / 3.0;
    assert!((num("p99_ms_mean") - mean).abs() < 1e-6);
    assert!(num("p99_ms_lo") >= p99[0] - 1e-6 && num("p99_ms_lo") <= mean);
    assert!(num("p99_ms_hi") <= p99[2] + 1e-6 && num("p99_ms_hi") >= mean);
    assert_eq!(num("p99_ms_n"), 3.0);
    assert_eq!(num("rollout_s_mean"), 20.0);

    let md = report::compare(&exp, &opts(TableFormat::Markdown)).unwrap();
    let md_lines: Vec<&str> = md.lines().collect();
    assert_eq!(md_lines.len(), 2 + 6 + 2);
    assert!(md_lines[0]
        .starts_with("| rollout.strategy | workload.users.rate | runs | outcome | p50 (ms)"));
    assert!(md_lines[1].ends_with("---: |"));
    assert!(
        md_lines[5].starts_with("| rolling | 4000/s | 3 | completed | "),
        "{}",
        md_lines[5]
    );
    assert!(md_lines[5].contains(" | 20.0 | 50.0 | "), "{}", md_lines[5]);

    let tex = report::compare(&exp, &opts(TableFormat::Latex)).unwrap();
    assert!(
        tex.starts_with("\\begin{table}[t]\n\\centering\n\\small\n"),
        "{tex}"
    );
    assert!(
        tex.contains("\\begin{tabular}{@{}llrrrr@{}}\n\\toprule\n"),
        "{tex}"
    );
    assert!(
        tex.contains("strategy & rate & p99 during & errors & rollout & extra \\\\\n"),
        "{tex}"
    );
    assert!(
        tex.contains(" &  & (ms) &  & (s) & (replica-s) \\\\\n"),
        "units in the header: {tex}"
    );
    assert!(tex.contains("\\midrule\n") && tex.ends_with("\\end{table}\n"));
    // Two header lines, then each of the 6 rows with its intervals on a line of its own.
    assert_eq!(tex.matches(" \\\\\n").count(), 2 + 6 * 2, "{tex}");
    let wide = TableOptions {
        wide: true,
        columns: Some(vec!["p50_ms".into(), "p99_ms".into()]),
        ..opts(TableFormat::Latex)
    };
    let tex = report::compare(&exp, &wide).unwrap();
    assert!(
        tex.starts_with("\\begin{table*}") && tex.contains("{@{}llrr@{}}"),
        "{tex}"
    );

    // Pairs: 6 groups, 15 pairs per metric, Holm never below the raw p-value.
    let pairs = TableOptions {
        kind: TableKind::Pairs,
        columns: Some(vec!["p99_ms".into()]),
        ..opts(TableFormat::Csv)
    };
    let csv = report::compare(&exp, &pairs).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 15);
    for r in &rows {
        let (p, holm): (f64, f64) = (r[6].parse().unwrap(), r[7].parse().unwrap());
        assert!(holm >= p && holm <= 1.0, "{r:?}");
    }
}
