#!/usr/bin/env python3
"""Side-by-side comparison of sdnbed's workload with wrk and nginx on loopback.

    bench/compare_wrk.py [--pairs 5] [--duration 10s]

Against one nginx (one worker process, access log off, a 64-byte body), each pair runs back to
back, in an order that alternates between pairs so that drift on a shared machine hits both sides:

  generator: wrk -t1 -c32 -dD   vs  sdnbed load --rate max --threads 1 --connections 32 --duration D
  server:    wrk -t1 -c32 -dD against nginx  vs  the same against sdnbed serve (zero service time,
             the same 64-byte body)

For every run it prints requests per second and CPU time per request (client: rusage of the
child; server: /proc/PID/stat of every thread). On a shared machine the CPU per request is the
steadier of the two. The summary gives the median ratios. Clients are pinned to CPU 0 and
servers to CPU 1 when there are two CPUs. Installs the Debian packages wrk and nginx-light if
they are missing. Targets: generator >= 1.0x wrk, server >= 0.8x nginx (requests per second).
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid):
    """CPU seconds used so far by every thread of `pid`."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def run_client(argv):
    """Runs a client; returns its stdout and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--duration", default="10s")
    args = ap.parse_args()
    secs = args.duration.rstrip("s")

    if not shutil.which("wrk") or not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk", "nginx-light"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    sdnbed = os.path.join(ROOT, "target", "release", "sdnbed")

    pin_client, pin_server = [], []
    if shutil.which("taskset") and os.cpu_count() >= 2:
        pin_client, pin_server = ["taskset", "-c", "0"], ["taskset", "-c", "1"]

    work = tempfile.mkdtemp(prefix="sdnbed-compare.")
    procs = []
    try:
        nginx_port = free_port()
        body = "x" * 64
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};
    uwsgi_temp_path {work}; scgi_temp_path {work};
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
""")
        master = subprocess.Popen(pin_server + [nginx, "-c", conf, "-p", work])
        procs.append(master)
        serve = subprocess.Popen(pin_server + [sdnbed, "serve", "--listen", "127.0.0.1:0", "--version", "bench",
                                              "--response-size", "64B"], stdout=subprocess.PIPE, text=True)
        procs.append(serve)
        serve_port = int(serve.stdout.readline().strip().rsplit(":", 1)[1])
        deadline = time.time() + 5
        workers = []
        while not workers and time.time() < deadline:
            time.sleep(0.1)
            workers = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True).stdout.split()
        nginx_worker = int(workers[0])

        def wrk(port, server_pid):
            s0 = proc_cpu(server_pid)
            out, cpu = run_client(pin_client + ["wrk", "-t1", "-c32", f"-d{secs}s", f"http://127.0.0.1:{port}/"])
            s1 = proc_cpu(server_pid)
            reqs = int(next(l for l in out.splitlines() if "requests in" in l).split()[0])
            rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec:")).split()[1])
            return rps, cpu / reqs * 1e6, (s1 - s0) / reqs * 1e6

        def load(port):
            out, cpu = run_client(pin_client + [sdnbed, "load", "--url", f"http://127.0.0.1:{port}/", "--rate", "max",
                                                "--threads", "1", "--connections", "32", "--duration", f"{secs}s",
                                                "--json"])
            j = json.loads(out)
            return j["achieved_rate"], cpu / j["requests"] * 1e6

        print("pair | wrk->nginx req/s (wrk us/req, nginx us/req) | load->nginx req/s (load us/req) | "
              "wrk->serve req/s (serve us/req) | load/wrk | serve/nginx")
        gen, srv, gen_cpu, srv_cpu = [], [], [], []
        for i in range(args.pairs):
            steps = ["wrk", "load", "serve"] if i % 2 == 0 else ["serve", "load", "wrk"]
            r = {}
            for step in steps:
                if step == "wrk":
                    r["wrk"] = wrk(nginx_port, nginx_worker)
                elif step == "load":
                    r["load"] = load(nginx_port)
                else:
                    r["serve"] = wrk(serve_port, serve.pid)
            (w_rps, w_cpu, n_cpu), (l_rps, l_cpu), (s_rps, _, s_cpu) = r["wrk"], r["load"], r["serve"]
            gen.append(l_rps / w_rps)
            srv.append(s_rps / w_rps)
            gen_cpu.append(w_cpu / l_cpu)
            srv_cpu.append(n_cpu / s_cpu)
            print(f"{i + 1:4} | {w_rps:10.0f} ({w_cpu:.2f}, {n_cpu:.2f}) | {l_rps:10.0f} ({l_cpu:.2f}) | "
                  f"{s_rps:10.0f} ({s_cpu:.2f}) | {gen[-1]:.3f} | {srv[-1]:.3f}", flush=True)
        print(f"median load/wrk req/s ratio (target >= 1.0):    {statistics.median(gen):.3f}")
        print(f"median serve/nginx req/s ratio (target >= 0.8): {statistics.median(srv):.3f}")
        print(f"median CPU per request, wrk/load (> 1: load is cheaper):     {statistics.median(gen_cpu):.3f}")
        print(f"median CPU per request, nginx/serve (> 1: serve is cheaper): {statistics.median(srv_cpu):.3f}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
