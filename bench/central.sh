#!/usr/bin/env bash
# The central part's capacity (CentralBench): one broker, results already queued (~1 KB each), drained by one
# collector, then by two collectors at once: results stored per second, and every result stored exactly once.
# Prints target/central/results.md. Needs RabbitMQ on 127.0.0.1:5672, java, mvn. usage: bench/central.sh [results=50000]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/central
status=0
mvn -B -q verify -Dit.test=CentralBench -Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false -Dcentral.results="${1:-50000}" \
  > target/central.log 2>&1 || status=$?
grep -E "Tests run:|FAIL" target/central.log | tail -2 || true
cat target/central/results.md 2>/dev/null || true
[ "$status" -eq 0 ] || echo "FAILED (exit $status): see target/central.log and target/failsafe-reports/" >&2
exit "$status"
