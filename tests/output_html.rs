//! `report.html` of a synthetic run and a synthetic experiment: its content, that it loads
//! nothing from outside, and that headless Chromium (Debian `chromium`) renders it without
//! console messages, with its figures drawn and its tables present. The screenshots are left
//! in `target/tmp/output_html/` to be looked at. Without Chromium the browser part is skipped
//! with a message (test.sh installs it when run as root).

mod output_fixture;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sdnbed::report;
use sdnbed::results;

fn fresh(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("output_html")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn experiment() -> PathBuf {
    let exp = results::create_experiment_dir(&fresh("experiment"), "synthetic").unwrap();
    let mut index = 0;
    for strategy in ["canary", "rolling", "blue-green"] {
        for rep in 0..4u32 {
            let params = [("rollout.strategy", strategy)];
            let rec = output_fixture::record(2000 + index as u64, index, &params, rep);
            let dir = exp
                .join("runs")
                .join(results::run_dir_name(index, &rec.params, rep));
            results::write_run(&dir, &rec).unwrap();
            index += 1;
        }
    }
    exp
}

/// Checks the page runs after loading (appended to a copy of it): how many SVG figures have a
/// drawn, non-empty box, how many tables have body rows.
const PROBE: &str = r#"<script>
const drawn = [...document.querySelectorAll("figure svg")]
  .filter(s => { const b = s.getBBox(); return b.width > 100 && b.height > 100 && s.querySelectorAll("text").length > 5; }).length;
const tables = [...document.querySelectorAll("table")].filter(t => t.tBodies[0].rows.length > 0).length;
const fontOk = document.fonts.check("12px 'DejaVu Sans'");
document.body.setAttribute("data-probe", `figures=${drawn} tables=${tables} font=${fontOk}`);
</script>"#;

/// Loads `html` in headless Chromium: returns the probe's result and the console lines, and
/// writes a screenshot; `None` without Chromium.
fn chromium(html: &Path, shot: &Path) -> Option<(String, Vec<String>)> {
    let bin = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())?;
    let probe = html.with_extension("probe.html");
    let page = fs::read_to_string(html).unwrap();
    fs::write(&probe, page.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[String]| {
        let out = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1200,2400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let url = format!("file://{}", probe.display());
    let dom = run(&["--dump-dom".into(), url.clone()]);
    let dom_stderr = String::from_utf8_lossy(&dom.stderr).into_owned();
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let probe_result = dom
        .split("data-probe=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("no probe result")
        .to_string();
    let shot_run = run(&[
        format!("--screenshot={}", shot.display()),
        format!("file://{}", html.display()),
    ]);
    let console: Vec<String> = String::from_utf8_lossy(&shot_run.stderr)
        .lines()
        .chain(dom_stderr.lines())
        .filter(|l| l.contains("CONSOLE"))
        .map(String::from)
        .collect();
    Some((probe_result, console))
}

fn self_contained(page: &str) {
    // (An SVG's xmlns names a namespace; nothing is fetched from it.)
    let page = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for outside in ["http://", "https://", "src=\"", "<link", "<script"] {
        assert!(
            !page.contains(outside),
            "the page refers to something outside it: {outside}"
        );
    }
}

#[test]
fn experiment_report_renders_in_chromium() {
    let exp = experiment();
    let path = report::write_report(&exp).unwrap();
    assert_eq!(path, exp.join("report.html"));
    let page = fs::read_to_string(&path).unwrap();
    self_contained(&page);
    for part in [
        "<h1>synthetic — experiment</h1>",
        "<h2>What was run</h2>",
        "<dt>seed</dt>",
        "<h2>Comparison figures</h2>",
        "<h3>Pairwise comparisons</h3>",
        "<h3>Per phase</h3>",
        "<h3>Per version</h3>",
        "<h2>Timeline</h2>",
        "<td>canary</td><td>rolling</td>",
        "rollout.strategy",
    ] {
        assert!(page.contains(part), "no {part}");
    }
    // The font is embedded once, not once per figure.
    assert_eq!(page.matches("@font-face").count(), 1);
    // One sweep figure and the first run's three.
    assert_eq!(page.matches("<figure><svg").count(), 1 + 3);

    let shot = exp.join("report.png");
    let Some((probe, console)) = chromium(&path, &shot) else {
        eprintln!("skipped the browser check: no chromium (Debian: apt-get install chromium)");
        return;
    };
    assert_eq!(probe, "figures=4 tables=9 font=true", "what Chromium drew");
    assert!(console.is_empty(), "console messages: {console:?}");
    assert!(
        fs::metadata(&shot).unwrap().len() > 50_000,
        "a screenshot with content"
    );
}

#[test]
fn run_report_renders_in_chromium() {
    let dir = fresh("run").join("0000-r0");
    results::write_run(&dir, &output_fixture::record(7, 0, &[], 0)).unwrap();
    let path = report::write_report(&dir).unwrap();
    let page = fs::read_to_string(&path).unwrap();
    self_contained(&page);
    assert!(page.contains("<h1>synthetic — one run</h1>") && !page.contains("Pairwise"));
    // Every event of events.jsonl is in the timeline.
    let events = results::read_events(&dir).unwrap();
    assert!(!events.is_empty());
    for e in &events {
        assert!(page.contains(&format!("<td>{}</td>", e.kind)), "{}", e.kind);
    }
    let shot = dir.join("report.png");
    let Some((probe, console)) = chromium(&path, &shot) else {
        eprintln!("skipped the browser check: no chromium (Debian: apt-get install chromium)");
        return;
    };
    assert_eq!(probe, "figures=3 tables=5 font=true", "what Chromium drew");
    assert!(console.is_empty(), "console messages: {console:?}");
}
