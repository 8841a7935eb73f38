#!/usr/bin/env bash
# The whole fault suite (FaultSuiteIT): 10,000 seed tasks per scenario through a worker and a collector running
# as separate processes, with LLM simulators and a MongoDB-wire server: kill -9 a worker, kill -9 the collector,
# RabbitMQ stop_app/start_app, MongoDB down 30 s, one LLM backend hanging, one answering 500, every backend down
# 60 s, poison messages. Prints the table (target/faults/results.md) that bench/RESULTS.md quotes.
# Needs RabbitMQ on 127.0.0.1:5672 with rabbitmqctl (the broker is restarted: not on a shared production broker).
# usage: bench/faults.sh [scenario,...|all] [-Dfaults.tasks=N] [-Dfaults.queue-type=quorum]   (about 12 minutes for all)
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIOS=${1:-all}
shift || true
mkdir -p target/faults && rm -f target/faults/results.md
status=0
mvn -B -q verify -Dit.test=FaultSuiteIT -Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false -Dfaults="$SCENARIOS" "$@" \
  > target/faults.log 2>&1 || status=$?
grep -E "Tests run|FAIL|ERROR\]" target/faults.log || true
cat target/faults/results.md 2>/dev/null || true
[ "$status" -eq 0 ] || echo "FAILED (exit $status): see target/faults.log and target/failsafe-reports/" >&2
exit "$status"
