#!/usr/bin/env bash
# The worker's own CPU per task, this checkout against an earlier commit, measured side by side in one run:
# bench/worker.sh scenario (d) (3 backends x 4 slots, 0 ms LLM), alternating the two versions RUNS times each.
# The earlier commit is built in a git worktree under bench/target/baseline (nothing of it is committed).
# Each run warms its worker up with WARMUP tasks first (default 20,000: with 2,000 the JIT compiler still takes a third of
# the worker's CPU in the measured window, and the routes have far more code to compile than the old gateway), then
# measures N. Both the worker's whole CPU and its CPU without the JIT compiler's threads are reported.
# usage: [WARMUP=20000] bench/worker-compare.sh [baseline-commit=57cf371] [runs=3] [tasks=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-57cf371}
RUNS=${2:-3}
N=${3:-10000}
DIR=bench/target/baseline
if [ ! -f "$DIR/target/llm-batch.jar" ] || [ "$(git -C "$DIR" rev-parse --short HEAD 2>/dev/null)" != "$(git rev-parse --short "$BASE")" ]; then
  git worktree remove --force "$DIR" 2>/dev/null || rm -rf "$DIR"
  git worktree add --detach "$DIR" "$BASE" >/dev/null
  (cd "$DIR" && mvn -B -q -o package -DskipTests)
fi
[ -f target/llm-batch.jar ] || mvn -B -q package -DskipTests
echo "| run | version | tasks/s (d) | worker CPU ms per task | without the JIT compiler |"
echo "|---|---|---|---|---|"
for i in $(seq 1 "$RUNS"); do
  for v in baseline current; do
    if [ $v = baseline ]; then app=$DIR; label="$BASE (before)"; else app=.; label="$(git rev-parse --short HEAD) (now)"; fi
    out=$(WARMUP=${WARMUP:-20000} APP_DIR=$app bash bench/worker.sh "$N" d)
    rate=$(grep '^| (d)' <<<"$out" | awk -F'|' '{gsub(/ /,"",$7); print $7}')
    cpu=$(grep '^cpu_ms_per_task=' <<<"$out" | cut -d= -f2)
    nojit=$(grep '^cpu_ms_per_task_without_jit=' <<<"$out" | cut -d= -f2)
    echo "| $i | $label | $rate | $cpu | $nojit |"
  done
done
