#!/usr/bin/env python3
"""The user-space link emulator measured as users measure a link: `ping` (iputils),
`sockperf` and `iperf3`, run in the nodes of a lab (`sdnbed up` / `sdnbed exec`), beside the
same measurements on a plain veth pair deployed the same way in the same run (the machine's
floor).

    sudo python3 bench/linkemu_tools.py [--quick] [--timing ready,sleep,spin] [--repeat N]

Needs root, a release build (`cargo build --release`; or SDNBED=path) and the Debian packages
iputils-ping, sockperf and iperf3 (installed with apt-get when missing).

Labs (two hosts h1, h2 joined by one link; each is `sdnbed up`, measured, `sdnbed down`):
  floor   plain veth, no emulator
  emu10   10 ms each way, emulator = "userspace"         (RTT error = RTT - 20 ms)
  emu0    unshaped, emulator = "userspace"               (iperf3)
  emu1g   1 Gbit/s, 1,000-packet queue, emulator = "userspace" (iperf3)
The emulated labs run once per --timing value (SDNBED_LINKEMU_TIMING of the keeper process).

Measurements:
  ping      `ping -i I -c N` from h1 to h2 at I = 1, 5, 100 ms: each reply's time= (0.1 ms
            resolution at 20 ms, 0.001 ms on the floor), percentiles of the error.
  sockperf  `sockperf under-load --mps M --reply-every 1 --full-rtt --no-rdtsc` (every message
            answered, one every 1, 5, 100 ms, round trip in µs; ping-pong mode cannot keep a
            1 ms interval over a 20 ms round trip, it waits for each reply), and at 1 ms beside
            an `iperf3 -b 100M` TCP flow h1->h2.
  iperf3    `iperf3 -c h2 -t 5 -O 1 -J`: receiver's goodput.
  cpu       the keeper process's CPU time (utime + stime from /proc) over each measurement, in %
            of one CPU: what the emulator costs.

Servers (sockperf sr, iperf3 -s) run through `nsenter --net=/run/sdnbed/netns/NS` so that they
can be stopped by their pid; clients run through `sdnbed exec`. Prints one line per figure and a
JSON summary at the end.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SDNBED = os.environ.get("SDNBED", os.path.join(os.path.dirname(__file__), "..", "target", "release", "sdnbed"))
NETNS_DIR = "/run/sdnbed/netns"
TICK = os.sysconf("SC_CLK_TCK")

LINKS = {
    "floor": "",
    "emu10": 'delay = "10ms"\nemulator = "userspace"\n',
    "emu0": 'emulator = "userspace"\n',
    "emu1g": 'bandwidth = "1Gbit"\nqueue = "1000 packets"\nemulator = "userspace"\n',
}


def scenario(kind):
    return f"""[scenario]
name = "lt{kind}"
seed = 1
duration = "10s"
backend = "netns"

[[node]]
name = "h1"
kind = "host"

[[node]]
name = "h2"
kind = "host"

[[link]]
between = ["h1", "h2"]
{LINKS[kind]}"""


def ensure_tools():
    missing = [p for c, p in (("ping", "iputils-ping"), ("sockperf", "sockperf"), ("iperf3", "iperf3")) if not shutil.which(c)]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


class Lab:
    def __init__(self, kind, timing):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"sdnbed-lt-{kind}-")
        path = os.path.join(self.dir, "s.toml")
        with open(path, "w") as f:
            f.write(scenario(kind))
        env = {**os.environ}
        if timing:
            env["SDNBED_LINKEMU_TIMING"] = timing
        out = subprocess.run([SDNBED, "up", path, "--out", os.path.join(self.dir, "out")], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"sdnbed up: {out.stderr}{out.stdout}")
        self.run = re.search(r"run (\S+) is up", out.stdout).group(1)
        m = re.search(r"process (\d+) carries", out.stdout)
        self.keeper = int(m.group(1)) if m else None
        nodes = json.load(open(os.path.join(self.dir, "out", "nodes.json")))
        self.addr = {n["name"]: n["ifaces"][0]["addr"] for n in nodes["nodes"]}

    def close(self):
        subprocess.run([SDNBED, "down", self.run], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def exec(self, node, *cmd, **kw):
        return subprocess.run([SDNBED, "exec", self.run, node, "--", *cmd], capture_output=True, text=True, **kw)

    def server(self, node, *cmd):
        ns = os.path.join(NETNS_DIR, f"sdnbed-{self.run}-{node}")
        return subprocess.Popen(["nsenter", f"--net={ns}", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cpu_s(self):
        if self.keeper is None:
            return 0.0
        f = open(f"/proc/{self.keeper}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK


def stop(p):
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))]


def measured(lab, fn):
    """fn()'s result and the keeper's CPU share during it."""
    c0, t0 = lab.cpu_s(), time.monotonic()
    r = fn()
    return r, 100 * (lab.cpu_s() - c0) / (time.monotonic() - t0)


def ping(lab, interval_ms, count, base_ms):
    def go():
        out = lab.exec("h1", "ping", "-n", "-i", str(interval_ms / 1000), "-c", str(count), "-W", "1", lab.addr["h2"]).stdout
        return [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]

    rtts, cpu = measured(lab, go)
    err = [r - base_ms for r in rtts]
    return {"n": len(err), "p50": pct(err, 50), "p90": pct(err, 90), "p99": pct(err, 99), "max": max(err), "cpu%": cpu}


def sockperf(lab, interval_ms, secs, base_us, flow=False):
    srv = lab.server("h2", "sockperf", "sr", "-i", lab.addr["h2"], "-p", "11111")
    bg = None
    try:
        time.sleep(0.5)
        if flow:
            ipf = lab.server("h2", "iperf3", "-s", "-p", "5299")
            time.sleep(0.3)
            bg = subprocess.Popen([SDNBED, "exec", lab.run, "h1", "--", "iperf3", "-c", lab.addr["h2"], "-p", "5299", "-b", "100M", "-t", str(secs + 3)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)

        def go():
            return lab.exec("h1", "sockperf", "ul", "-i", lab.addr["h2"], "-p", "11111", "-t", str(secs), "--mps", str(int(1000 / interval_ms)), "--reply-every", "1", "--full-rtt", "--no-rdtsc").stdout

        out, cpu = measured(lab, go)
    finally:
        stop(srv)
        if bg:
            bg.wait()
            stop(ipf)
    p = {m.group(1): float(m.group(2)) for m in re.finditer(r"percentile (\d+\.\d+) =\s+([\d.]+)", out)}
    mx = float(re.search(r"<MAX> observation =\s+([\d.]+)", out).group(1))
    n = int(re.search(r"Total (\d+) observations", out).group(1))
    return {"n": n, "p50": p["50.000"] - base_us, "p90": p["90.000"] - base_us, "p99": p["99.000"] - base_us, "max": mx - base_us, "cpu%": cpu}


def iperf(lab, secs):
    srv = lab.server("h2", "iperf3", "-s", "-p", "5201")
    try:
        time.sleep(0.5)
        out, cpu = measured(lab, lambda: lab.exec("h1", "iperf3", "-c", lab.addr["h2"], "-p", "5201", "-t", str(secs), "-O", "1", "-J").stdout)
    finally:
        stop(srv)
    j = json.loads(out)
    return {"Mbit/s": j["end"]["sum_received"]["bits_per_second"] / 1e6, "cpu%": cpu}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer probes (for a smoke run)")
    ap.add_argument("--timing", default="sleep", help="comma-separated SDNBED_LINKEMU_TIMING values")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only", default="ping,sockperf,flow,iperf", help="which measurements")
    a = ap.parse_args()
    ensure_tools()
    only = a.only.split(",")
    q = 0.2 if a.quick else 1.0
    results = []

    def report(what, r):
        results.append({"what": what, **r})
        print(what, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)

    for rep in range(a.repeat):
        for timing in [None] + a.timing.split(","):
            kinds = ["floor"] if timing is None else ["emu10", "emu0", "emu1g"]
            for kind in kinds:
                lab = Lab(kind, timing)
                tag = f"#{rep} {kind}" + (f"/{timing}" if timing else "")
                try:
                    if kind in ("floor", "emu10"):
                        base_ms = 20.0 if kind == "emu10" else 0.0
                        if "ping" in only:
                            for iv, n in ((1, 5000), (5, 2000), (100, 200)):
                                report(f"{tag} ping {iv}ms err_ms", ping(lab, iv, max(20, int(n * q)), base_ms))
                        if "sockperf" in only:
                            for iv, secs in ((1, 10), (5, 10), (100, 30)):
                                report(f"{tag} sockperf {iv}ms err_us", sockperf(lab, iv, max(3, int(secs * q)), base_ms * 1000))
                        if "flow" in only:
                            report(f"{tag} sockperf 1ms+100Mbit err_us", sockperf(lab, 1, max(3, int(10 * q)), base_ms * 1000, flow=True))
                    if kind in ("floor", "emu0", "emu1g") and "iperf" in only:
                        report(f"{tag} iperf3", iperf(lab, 5))
                finally:
                    lab.close()
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
