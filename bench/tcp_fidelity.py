#!/usr/bin/env python3
"""Sim against netns (Linux TCP) on one scenario, side by side: the table of bench/tcp.md.

For each value of KEY (default: `link.0.loss` at 0.1 %, 1 %, 3 %) and each backend it runs
`sdnbed run SCENARIO --backend B --set KEY=VALUE --set sweep.repetitions=N` (repetition r uses
seed + r), then prints one Markdown row per value and backend with the mean over repetitions of
mean, p50, p90, p99 and timeouts, and, for sim, the ratio to netns of p50/p90/p99.

  bench/tcp_fidelity.py                                 # bench/tcp_loss.toml, 5 repetitions
  bench/tcp_fidelity.py --reps 3 --out /tmp/fid         # keep the runs in /tmp/fid
  bench/tcp_fidelity.py --out /tmp/fid --backends sim   # rerun sim only, reuse netns in /tmp/fid
  bench/tcp_fidelity.py --scenario scenarios/link-failure.toml --key '' --reps 3

netns runs need root and run one at a time (each takes the scenario's duration); with
`--backends sim` the netns runs already under OUT are reused. Env SDNBED: the binary (default
target/release/sdnbed).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys


def run(sdnbed, scenario, backend, key, value, reps, out):
    args = [sdnbed, "run", scenario, "--backend", backend, "--out", out, "--no-plots",
            "--set", f"sweep.repetitions={reps}"]
    if key:
        args += ["--set", f'{key}="{value}"']
    print("+", " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def collect(out):
    """Summaries of every run under OUT (all experiments there)."""
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "*", "*", "runs", "*", "run.json"))):
        with open(path) as f:
            d = json.load(f)
        o = d["summary"]["overall"]
        lat = o["latency"]
        errs = o.get("errors", {})
        timeouts = errs.get("timeout", 0) if isinstance(errs, dict) else 0
        rows.append({"mean": lat["mean_ms"], "p50": lat["p50_ms"], "p90": lat["p90_ms"],
                     "p99": lat["p99_ms"], "timeouts": timeouts})
    return rows


def mean_of(rows, k):
    return statistics.fmean(r[k] for r in rows) if rows else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="bench/tcp_loss.toml")
    ap.add_argument("--key", default="link.0.loss", help="key to vary ('' for none)")
    ap.add_argument("--values", default="0.1%,1%,3%")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--backends", default="sim,netns")
    ap.add_argument("--out", default="/tmp/tcp_fidelity")
    a = ap.parse_args()
    sdnbed = os.environ.get("SDNBED", "target/release/sdnbed")
    values = a.values.split(",") if a.key else ["-"]
    backends = a.backends.split(",")
    for v in values:
        for b in backends:
            d = os.path.join(a.out, v.replace("%", "pct"), b)
            if b == "sim" and os.path.isdir(d):
                subprocess.run(["rm", "-rf", d], check=True)
            run(sdnbed, a.scenario, b, a.key, v, a.reps, d)
    print(f"| {a.key or 'scenario'} | backend | runs | mean ms | p50 ms | p90 ms | p99 ms | timeouts | sim/netns p50 | p90 | p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for v in values:
        base = os.path.join(a.out, v.replace("%", "pct"))
        got = {b: collect(os.path.join(base, b)) for b in ("sim", "netns")}
        for b in ("sim", "netns"):
            rows = got[b]
            if not rows:
                continue
            ratio = ["", "", ""]
            if b == "sim" and got["netns"]:
                ratio = [f"{mean_of(rows, k) / mean_of(got['netns'], k):.2f}" for k in ("p50", "p90", "p99")]
            print(f"| {v} | {b} | {len(rows)} | {mean_of(rows, 'mean'):.1f} | {mean_of(rows, 'p50'):.1f} | "
                  f"{mean_of(rows, 'p90'):.1f} | {mean_of(rows, 'p99'):.1f} | {mean_of(rows, 'timeouts'):.1f} | "
                  + " | ".join(ratio) + " |")


if __name__ == "__main__":
    main()
