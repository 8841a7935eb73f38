#!/usr/bin/env bash
# The pipeline on a real three-node RabbitMQ cluster (ClusterSuiteIT): three nodes of the installed RabbitMQ of their
# own (llmb1..3@localhost, AMQP on 127.0.0.1:20361-20363, data under /tmp/llmbatch-llmb), clustered, quorum queues,
# llmbatch.rabbitmq.url listing the three; two workers, a collector and an ingest node as separate processes, LLM
# simulators counting calls per prompt, a MongoDB-wire server. Scenarios, 10,000 tasks each: kill -9 of the task
# queue's leader (restarted later), a rolling restart of the three nodes, the node a worker consumes from stopped while
# it holds unacknowledged tasks. Prints the table (target/cluster/results.md), then one line
#   cluster: <stored> of <tasks> stored, <lost> lost, <redone> redone
# and exits non-zero when anything was lost or a scenario failed. The machine's broker on 5672 is not touched.
# Needs root (rabbitmq-server drops to the rabbitmq user), rabbitmqctl, ss, java, mvn.
# usage: bench/cluster.sh [tasks=10000] [scenarios=all|kill-leader,kill-leader-far,rolling-restart,worker-node-stop] [llm-latency-ms=200]
#                         ['key=value;...' worker settings, e.g. 'llmbatch.worker.prefetch=3' to compare]
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-10000}
SCENARIOS=${2:-all}
LATENCY=${3:-200}
WORKER=${4:-}
PREFIX=llmb
DIR=/tmp/llmbatch-$PREFIX

# the harness stops its nodes itself; this is for a harness that was killed (Ctrl-C, kill -9)
cleanup() {
  for i in 1 2 3; do
    node=$PREFIX$i@localhost
    rabbitmqctl -q -n "$node" stop >/dev/null 2>&1 || true
    pidfile=$DIR/n$i/pid
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      # only that node's VM: the pid file may name a reused pid
      if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$node"; then kill -9 "$pid"; fi
    fi
  done
  rm -rf "$DIR"
}
trap cleanup EXIT

mkdir -p target/cluster && rm -f target/cluster/results.md
status=0
mvn -B -q verify -Dit.test=ClusterSuiteIT -Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false \
  -Dcluster="$SCENARIOS" -Dcluster.tasks="$TASKS" -Dcluster.llm-latency="$LATENCY" -Dcluster.restart=during -Dcluster.worker-settings="$WORKER" \
  -Dcluster.node-prefix=$PREFIX -Dcluster.base-port=20360 -Dcluster.dir="$DIR" > target/cluster.log 2>&1 || status=$?
grep -E "Tests run:|FAIL" target/cluster.log | tail -3 || true
[ -f target/cluster/results.md ] && cat target/cluster/results.md
# columns: | scenario | tasks | stored | lost | duplicates | redone | ...; a FAILED row counts as not stored
read -r tasks stored lost redone failed < <(awk -F'|' 'NR > 2 {
    gsub(/[ ,]/, "", $3); gsub(/[ ,]/, "", $4); gsub(/[ ,]/, "", $5); gsub(/[ ,]/, "", $7)
    if ($3 ~ /^FAILED/) { f++ } else { t += $3; s += $4; l += $5; r += $7 } }
  END { printf "%d %d %d %d %d\n", t, s, l, r, f }' target/cluster/results.md 2>/dev/null || echo "0 0 0 0 1")
[ "$status" -eq 0 ] || echo "FAILED (exit $status): see target/cluster.log and target/failsafe-reports/" >&2
[ "$failed" -eq 0 ] || echo "$failed scenario(s) failed before counting" >&2
echo "cluster: $stored of $tasks stored, $lost lost, $redone redone"
[ "$status" -eq 0 ] && [ "$lost" -eq 0 ] && [ "$failed" -eq 0 ]
