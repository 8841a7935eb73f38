#!/usr/bin/env bash
# GPU hosts across a slow network (WanBench): workers reach the broker only through a latency-injecting TCP proxy
# (LatencyProxy in the test tree: 100 ms round trip +- 20 ms, every connection reset once a minute; the kernel here
# has no netem), LLM calls of 2 s on 4 slots per worker. The same worker on the local network runs beside it, and a
# second pair with other settings when given, all at the same time on the same broker. Prints the table
# (target/wan/results.md): slot utilisation (share of time the 4 slots had a call in flight while tasks waited), LLM
# calls per task, documents stored (each task exactly once). Exits non-zero when a task was lost or stored twice.
# Needs RabbitMQ on 127.0.0.1:5672, java, mvn.
# usage: bench/wan.sh [tasks per configuration=600] ['key=value;key=value' settings to compare with the defaults]
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-600}
args=(-Dwan.tasks="$TASKS")
[ -n "${2:-}" ] && args+=(-Dwan.after="$2")
mkdir -p target/wan && rm -f target/wan/results.md
status=0
mvn -B -q verify -Dit.test=WanBench -Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false "${args[@]}" > target/wan.log 2>&1 || status=$?
grep -E "Tests run:|FAIL" target/wan.log | tail -2 || true
cat target/wan/results.md 2>/dev/null || true
[ "$status" -eq 0 ] || echo "FAILED (exit $status): see target/wan.log and target/failsafe-reports/" >&2
exit "$status"
