#!/usr/bin/env bash
# Regenerates the rollout-strategy comparison: runs scenarios/strategies.toml (4 strategies × 5
# repetitions, simulated, a few seconds) unless an experiment directory is given, then writes
#   out/strategies.tex       booktabs table (median [min–max] over repetitions)
#   out/strategies.csv       the same as CSV
#   out/strategies-p99.{png,svg}  p99 during the rollout and errors per strategy
# Usage: papers/rollout-strategies/make.sh [EXPERIMENT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cargo build --release --quiet
sdnbed="$root/target/release/sdnbed"
out="$here/out"
mkdir -p "$out"

if [ $# -ge 1 ]; then
  exp="$1"
else
  "$sdnbed" run scenarios/strategies.toml --out "$here/results" --no-plots >/dev/null
  exp="$(ls -d "$here"/results/strategies/*/ | sort | tail -n 1)"
fi

"$sdnbed" compare "$exp" --format latex > "$out/strategies.tex"
"$sdnbed" compare "$exp" --format csv > "$out/strategies.csv"
"$sdnbed" plot "$exp" | grep 'figures/sweep-rollout-strategy' | while read -r f; do
  cp "$f" "$out/strategies-p99.${f##*.}"
done
echo "from $exp:"
ls "$out"
