//! The fault suite's input half: a seeded mutation fuzzer over the scenario format, and the
//! crash reproducers of issue 13 as regression tests.
//!
//! The fuzzer mutates every scenario in `scenarios/` (byte cuts, line swaps and duplicates,
//! extreme numbers and units, invalid UTF-8, truncation) and loads each mutant the way
//! `sdnbed validate` does: parse and validate, then the route and cost checks. It asserts that
//! nothing panics, that every rejection except those with no place to give (an empty file, a
//! missing table) carries a line and column, and that every accepted mutant's cost is within
//! the limits (so none can abort on allocation when run).

mod scenario_support;

use std::path::Path;
use std::process::Command;

use sdnbed::scenario::{cost, load_experiment, LoadOptions};

/// Mutants per CI run (every one is loaded and checked; about 8 s in a debug build).
const CASES: usize = 2000;

/// xorshift64*: the fuzzer's own seeded generator, so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "4294967296",
    "99999999999999999999",
    "1e400",
    "0.0000001",
    "nan",
    "inf",
];
const STRINGS: &[&str] = &[
    "",
    "1us",
    "250ns",
    "99999999999999999999s",
    "-5ms",
    "2000/ms",
    "0/s",
    "docker",
    "kube",
    "x\\u0000",
    "∞",
    "1000000%",
    "lognormal(median=0ms,p99=0ms)",
    "empirical(/nonexistent.csv)",
];

fn mutate(rng: &mut Rng, text: &mut Vec<u8>) {
    let len = text.len();
    match rng.below(8) {
        0 => {
            let at = rng.below(len);
            let n = 1 + rng.below(20);
            text.drain(at..(at + n).min(len));
        }
        1 | 2 => {
            // Replace a number or the content of a string.
            let s = String::from_utf8_lossy(text).into_owned();
            let starts: Vec<usize> = s
                .char_indices()
                .filter(|(i, c)| {
                    (c.is_ascii_digit() || *c == '"')
                        && s[..*i].chars().last().is_some_and(|p| p == ' ' || p == '[')
                })
                .map(|(i, _)| i)
                .collect();
            if starts.is_empty() {
                return;
            }
            let at = starts[rng.below(starts.len())];
            let rest = &s[at..];
            let (end, new) = if let Some(inner) = rest.strip_prefix('"') {
                let close = inner.find('"').map_or(rest.len(), |i| i + 2);
                (at + close, format!("\"{}\"", rng.pick(STRINGS)))
            } else {
                let n = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
                    .unwrap_or(rest.len());
                (at + n, rng.pick(NUMBERS).to_string())
            };
            *text = format!("{}{new}{}", &s[..at], &s[end..]).into_bytes();
        }
        3 | 4 => {
            let mut lines: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
            if rng.below(2) == 0 {
                lines.swap(a, b);
            } else {
                let l = lines[a].clone();
                lines.insert(b, l);
            }
            *text = lines.join(&b'\n');
        }
        5 => {
            let at = rng.below(len);
            text.insert(at, [0xff, 0xc3, 0x80][rng.below(3)]);
        }
        6 => text.truncate(rng.below(len)),
        _ => {
            // Remove a whole table.
            let s = String::from_utf8_lossy(text).into_owned();
            let heads: Vec<usize> = s.match_indices("\n[").map(|(i, _)| i).collect();
            if let Some(&at) = heads.get(rng.below(heads.len())) {
                let end = s[at + 2..].find("\n[").map_or(s.len(), |i| at + 2 + i);
                *text = format!("{}{}", &s[..at], &s[end..]).into_bytes();
            }
        }
    }
}

/// Rejections with no place in the file to point at.
fn unplaceable(message: &str) -> bool {
    [
        "missing the [scenario] table",
        "the scenario defines no [[node]]",
    ]
    .iter()
    .any(|m| message.contains(m))
}

#[test]
fn mutated_scenarios_never_panic_and_rejections_have_locations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(root.join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    seeds.sort();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5d_b0_0b_13);
    let (mut accepted, mut rejected, mut unplaced) = (0, 0, Vec::new());
    for case in 0..CASES {
        let (name, text) = &seeds[case % seeds.len()];
        let mut m = text.clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut m);
        }
        // Next to its original, so relative paths (traces, empirical data) resolve the same.
        let path = dir.path().join(format!("case-{case}.toml"));
        std::fs::write(&path, &m).unwrap();
        let outcome =
            std::panic::catch_unwind(|| match load_experiment(&path, &LoadOptions::default()) {
                Ok(exp) => {
                    for r in &exp.runs {
                        let _ = sdnbed::sim::check(&r.scenario);
                        let _ = cost::check(&r.scenario, false);
                    }
                    Ok(exp)
                }
                Err(e) => Err(e),
            });
        match outcome {
            Err(_) => panic!(
                "case {case} (from {name}) panicked; its text: {}",
                String::from_utf8_lossy(&m)
            ),
            Ok(Ok(exp)) => {
                accepted += 1;
                for r in &exp.runs {
                    if let Ok(c) = cost::check(&r.scenario, false) {
                        assert!(c.bytes <= cost::MAX_BYTES && c.requests <= cost::MAX_REQUESTS);
                    }
                }
            }
            Ok(Err(e)) => {
                rejected += 1;
                for d in e.diagnostics() {
                    if d.line.is_none() && !unplaceable(&d.message) {
                        unplaced.push(format!("case {case}: {}", d.message));
                    }
                }
            }
        }
    }
    eprintln!("{CASES} mutants: {accepted} accepted, {rejected} rejected");
    assert!(
        rejected > CASES / 4 && accepted > 0,
        "the mutator is too weak or too strong"
    );
    assert!(
        unplaced.is_empty(),
        "rejections without a location:\n{}",
        unplaced.join("\n")
    );
}

/// Runs `sdnbed ARGS` in the repository; returns (status, stderr, elapsed).
fn sdnbed(args: &[&str]) -> (Option<i32>, String, std::time::Duration) {
    let t = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_sdnbed"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        t.elapsed(),
    )
}

#[test]
fn runaway_scenarios_are_refused_before_they_start() {
    let out = tempfile::tempdir().unwrap();
    let out_s = out.path().to_str().unwrap();
    for (file, set) in [
        ("scenarios/quickstart.toml", "scenario.window=1us"),
        ("scenarios/quickstart.toml", "scenario.window=250ns"),
        (
            "scenarios/quickstart.toml",
            "scenario.duration=99999999999999999999s",
        ),
        ("scenarios/bad-canary.toml", "workload.users.rate=2000/ms"),
    ] {
        let (code, err, took) = sdnbed(&["validate", file, "--set", set]);
        assert_eq!(code, Some(2), "validate {file} --set {set}: {err}");
        assert!(
            err.contains("--allow-large") && err.contains("-->"),
            "{err}"
        );
        let (code, err, took_run) = sdnbed(&["run", file, "--set", set, "--out", out_s]);
        assert_eq!(code, Some(2), "run {file} --set {set}: {err}");
        assert!(err.contains("--allow-large"), "{err}");
        assert!(took < std::time::Duration::from_secs(10) && took_run < took * 10 + took);
    }
    let left = scenario_support::files_under(out.path());
    assert!(left.is_empty(), "refused runs left {left:?}");
}

#[test]
fn validate_refuses_what_run_refuses() {
    let (code, err, _) = sdnbed(&[
        "validate",
        "scenarios/quickstart.toml",
        "--set",
        "scenario.backend=kube",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("kube backend is not part of this build"),
        "{err}"
    );
}

#[test]
fn invalid_utf8_is_placed_on_its_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, b"[scenario]\nname = \"ab\xffc\"\n").unwrap();
    let e = load_experiment(&p, &LoadOptions::default()).unwrap_err();
    let d = &e.diagnostics()[0];
    assert_eq!((d.line, d.column), (Some(2), Some(11)), "{e}");
    assert!(d.message.contains("byte 21"), "{e}");
}

#[test]
fn a_full_disk_leaves_no_half_run() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=200k", "tmpfs"])
        .arg(mnt)
        .status()
        .unwrap();
    assert!(ok.success());
    let (code, err, _) = sdnbed(&[
        "run",
        "scenarios/quickstart.toml",
        "--no-plots",
        "--out",
        mnt.to_str().unwrap(),
    ]);
    let left = scenario_support::files_under(mnt);
    let _ = Command::new("umount").arg(mnt).status();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains("latency.hlog") || err.contains("timeseries.csv"),
        "names the file: {err}"
    );
    assert!(left.is_empty(), "a failed run left {left:?}");
}
