#!/usr/bin/env python3
"""Deploy and tear-down time of a star of N containers: sdnbed's docker backend against bare
`docker run` (issue #9).

A star of N containers is one gateway node `gw` and N-1 host nodes h1..h(N-1), each on its own
unshaped link to `gw`: N nodes, so N sandbox containers (no link emulator, no server). For each
N and each of PAIRS pairs, in alternating order (odd pairs sdnbed first, even pairs bare first):

  (a) `sdnbed up STAR --backend docker --topology-only --run ID`, then `sdnbed down ID`: the
      N sandboxes (`/sdnbed pause` in sdnbed's built-in image, network mode none), the ledger,
      each sandbox's namespace adopted, N-1 veth pairs, addresses, routes, nftables;
  (b) the same N containers bare: `docker run -d --network none --name X --entrypoint /sdnbed
      IMAGE pause`, all N started at once (one docker CLI per container, `&` then wait), then
      `docker rm -f` of all N, again all at once. IMAGE is the tag sdnbed's sandboxes just used.

Up and down are timed separately, by wall clock around the commands. Reported: every pair's
times and ratio a/b, the medians, and the ratio of the medians.

With FULL=1 (the default) it also times, on a service star of the same N (gateway `gw`, client
`client`, service `web` with N-2 replicas behind `gw`: N sandboxes, plus N-2 server containers
when the servers run), `sdnbed up --topology-only` against the full `sdnbed up` (servers
started and ready, keeper holding the run), each followed by `sdnbed down`.

Usage (root, a Docker Engine): bench/docker_deploy.py [N ...]          default: 20 50
Env: SDNBED (default target/release/sdnbed, built with `cargo build --release` if missing),
     PAIRS (default 5), FULL (default 1; 0 skips the service star), FULL_PAIRS (default 3),
     SYSCTL=1 gives the bare containers the sandboxes' two IPv6 sysctls too.
Output: CSV on stdout (one line per measurement), the summary on stderr. Leaves nothing behind:
bare containers carry the label sdnbed.bench=<id> and are removed on exit (also on Ctrl-C and
SIGTERM), and every sdnbed run it started is taken down (`sdnbed clean --force RUN`).
"""

import atexit
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDNBED = os.environ.get("SDNBED", os.path.join(ROOT, "target/release/sdnbed"))
PAIRS = int(os.environ.get("PAIRS", "5"))
FULL = os.environ.get("FULL", "1") != "0"
FULL_PAIRS = int(os.environ.get("FULL_PAIRS", "3"))
SYSCTL = os.environ.get("SYSCTL", "0") == "1"
BENCH = f"db{os.getpid()}"  # unique per invocation: run ids, container names, label
LABEL = f"sdnbed.bench={BENCH}"

tmp = tempfile.mkdtemp(prefix="sdnbed-dockerbench-")
runs_up = []  # sdnbed runs that may be up


def cleanup():
    for run in runs_up:
        subprocess.run([SDNBED, "clean", "--force", run], capture_output=True)
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL}"], capture_output=True, text=True
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    subprocess.run(["rm", "-rf", tmp])


def on_signal(signum, _frame):
    sys.exit(128 + signum)  # runs atexit


atexit.register(cleanup)
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)


def host_star(n):
    """gw + h1..h(n-1), each linked to gw: n nodes."""
    f = os.path.join(tmp, f"star{n}.toml")
    with open(f, "w") as o:
        o.write(f'[scenario]\nname = "star{n}"\nduration = "1s"\n')
        o.write('\n[[node]]\nname = "gw"\nkind = "gateway"\n')
        for i in range(1, n):
            o.write(f'\n[[node]]\nname = "h{i}"\nkind = "host"\n')
        for i in range(1, n):
            o.write(f'\n[[link]]\nbetween = ["h{i}", "gw"]\n')
    return f


def service_star(n):
    """gw, client, and web with n-2 replicas behind gw: n sandboxes, n-2 servers."""
    f = os.path.join(tmp, f"svcstar{n}.toml")
    with open(f, "w") as o:
        o.write(
            f"""[scenario]
name = "svcstar{n}"
duration = "1s"

[[node]]
name = "client"
kind = "client"

[[node]]
name = "gw"
kind = "gateway"

[service.web]
replicas = {n - 2}
port = 8080
gateway = "gw"
version = "v1"
readiness = {{ initial_delay = "0s", period = "50ms", failure_threshold = 3 }}

[service.web.versions.v1]
service_time = "const(1ms)"
startup = "0s"

[[link]]
between = ["client", "gw"]

[[link]]
between = ["web", "gw"]
"""
        )
    return f


def timed(argv, **kw):
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return dt


def timed_parallel(argvs):
    """Starts every command at once (like `cmd & ... wait`); wall time until all finished."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for a in argvs]
    errs = [(a, p.wait(), p.stderr.read()) for a, p in zip(argvs, procs)]
    dt = time.monotonic() - t0
    for a, rc, err in errs:
        if rc != 0:
            raise SystemExit(f"{' '.join(a)} failed ({rc}): {err.decode().strip()}")
    return dt


def sdnbed_pair(file, run, topology_only=True):
    argv = [SDNBED, "up", file, "--backend", "docker", "--run", run, "--quiet"]
    argv += ["--out", os.path.join(tmp, run)]
    if topology_only:
        argv.append("--topology-only")
    runs_up.append(run)
    up = timed(argv)
    down = timed([SDNBED, "down", run])
    runs_up.remove(run)
    return up, down


def bare_pair(n, image, tag):
    names = [f"sdnbed-{BENCH}-{tag}-c{i}" for i in range(n)]
    extra = []
    if SYSCTL:
        extra = [
            "--sysctl", "net.ipv6.conf.all.disable_ipv6=1",
            "--sysctl", "net.ipv6.conf.default.disable_ipv6=1",
        ]
    up = timed_parallel(
        [
            ["docker", "run", "-d", "--network", "none", "--label", LABEL, *extra,
             "--name", x, "--entrypoint", "/sdnbed", image, "pause"]
            for x in names
        ]
    )
    down = timed_parallel([["docker", "rm", "-f", x] for x in names])
    return up, down


def sandbox_image(file, run):
    """Deploys once (a warm-up, not measured) and returns the image sdnbed's sandboxes ran."""
    argv = [SDNBED, "up", file, "--backend", "docker", "--topology-only", "--quiet"]
    argv += ["--run", run, "--out", os.path.join(tmp, run)]
    runs_up.append(run)
    timed(argv)
    image = subprocess.run(
        ["docker", "inspect", "-f", "{{.Config.Image}}", f"sdnbed-{run}-gw"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    timed([SDNBED, "down", run])
    runs_up.remove(run)
    return image


def med(xs):
    return statistics.median(xs)


def main():
    ns = [int(a) for a in sys.argv[1:]] or [20, 50]
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    if not os.access(SDNBED, os.X_OK):
        subprocess.run(["cargo", "build", "--release", "--bin", "sdnbed"], cwd=ROOT, check=True)
    image = sandbox_image(host_star(3), f"{BENCH}-warm")
    print(f"# image {image}, bare parallelism = N, sysctls on bare: {SYSCTL}", file=sys.stderr)
    print("kind,n,pair,first,up_s,down_s")
    summary = []
    for n in ns:
        star = host_star(n)
        a_up, a_down, b_up, b_down = [], [], [], []
        for p in range(1, PAIRS + 1):
            first = "sdnbed" if p % 2 == 1 else "bare"
            order = ["sdnbed", "bare"] if first == "sdnbed" else ["bare", "sdnbed"]
            for kind in order:
                if kind == "sdnbed":
                    up, down = sdnbed_pair(star, f"{BENCH}-{n}-{p}")
                    a_up.append(up)
                    a_down.append(down)
                else:
                    up, down = bare_pair(n, image, f"{n}-{p}")
                    b_up.append(up)
                    b_down.append(down)
                print(f"{kind},{n},{p},{first},{up:.3f},{down:.3f}", flush=True)
        summary.append((n, a_up, a_down, b_up, b_down))
    full = []
    if FULL:
        for n in ns:
            svc = service_star(n)
            t_up, t_down, f_up, f_down = [], [], [], []
            for p in range(1, FULL_PAIRS + 1):
                order = [True, False] if p % 2 == 1 else [False, True]
                for topo in order:
                    up, down = sdnbed_pair(svc, f"{BENCH}-s{n}-{p}{'t' if topo else 'f'}", topo)
                    (t_up if topo else f_up).append(up)
                    (t_down if topo else f_down).append(down)
                    kind = "svc-topology" if topo else "svc-full"
                    print(f"{kind},{n},{p},{'topology' if order[0] else 'full'},"
                          f"{up:.3f},{down:.3f}", flush=True)
            full.append((n, t_up, t_down, f_up, f_down))

    err = sys.stderr
    print("\nhost star: (a) sdnbed up/down --topology-only, (b) bare docker run/rm -f", file=err)
    for n, a_up, a_down, b_up, b_down in summary:
        ru = [a / b for a, b in zip(a_up, b_up)]
        rd = [a / b for a, b in zip(a_down, b_down)]
        print(
            f"N={n}: up   a {med(a_up):6.2f}s  b {med(b_up):6.2f}s  ratio of medians "
            f"{med(a_up) / med(b_up):.2f}  per pair {' '.join(f'{r:.2f}' for r in ru)} "
            f"(median {med(ru):.2f})",
            file=err,
        )
        print(
            f"      down a {med(a_down):6.2f}s  b {med(b_down):6.2f}s  ratio of medians "
            f"{med(a_down) / med(b_down):.2f}  per pair {' '.join(f'{r:.2f}' for r in rd)} "
            f"(median {med(rd):.2f})",
            file=err,
        )
    if full:
        print("\nservice star: sdnbed up --topology-only against full sdnbed up", file=err)
        for n, t_up, t_down, f_up, f_down in full:
            print(
                f"N={n}: up   topology {med(t_up):6.2f}s  full {med(f_up):6.2f}s  "
                f"(+{med(f_up) - med(t_up):.2f}s for {n - 2} servers)\n"
                f"      down topology {med(t_down):6.2f}s  full {med(f_down):6.2f}s",
                file=err,
            )


if __name__ == "__main__":
    main()
