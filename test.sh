#!/usr/bin/env bash
# Runs all of sdnbed's checks and tests on a fresh machine, installing what they need first.
# CI runs exactly this (.ci/run). Needs Rust (cargo); installs Debian packages when missing and
# when run as root.
set -euo pipefail
cd "$(dirname "$0")"

# System packages the tests use (network namespaces and nftables for the real backends' tests).
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
# The HTML report's browser test and the paper's LaTeX (tests/output_html.rs, output_latex.rs).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v pdflatex >/dev/null 2>&1 || missing+=(texlive-latex-base texlive-latex-recommended texlive-fonts-recommended)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "warning: ${missing[*]} missing and cannot be installed here; tests that need them will fail" >&2
  fi
fi

# Python packages the kube backend's tests use: offline Kubernetes schemas (tier 1) and a
# Kubernetes API emulator over HTTP (tier 2).
if ! python3 -c 'import kubernetes_validate, kmock' >/dev/null 2>&1; then
  echo "installing kubernetes-validate and kmock"
  python3 -m pip install -q 'kubernetes-validate==1.37.*' 'kmock==0.8' \
    || python3 -m pip install -q --break-system-packages 'kubernetes-validate==1.37.*' 'kmock==0.8'
fi

# The docker backend's tests (tests/docker_engine.rs) talk to a Docker Engine on its unix socket.
# Start dockerd in the background when none answers (root), waiting up to 30 s.
engine_up() { curl -sf --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1; }
if ! engine_up; then
  if [ "$(id -u)" -ne 0 ] || ! command -v dockerd >/dev/null 2>&1; then
    echo "error: no Docker Engine answers on /var/run/docker.sock and dockerd cannot be started here" >&2
    exit 1
  fi
  echo "starting dockerd (log: /tmp/sdnbed-dockerd.log)"
  nohup dockerd >/tmp/sdnbed-dockerd.log 2>&1 &
  for _ in $(seq 60); do engine_up && break; sleep 0.5; done
  if ! engine_up; then
    echo "error: dockerd did not answer on /var/run/docker.sock within 30 s; last lines of its log:" >&2
    tail -n 20 /tmp/sdnbed-dockerd.log >&2 || true
    exit 1
  fi
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
