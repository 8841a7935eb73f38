#!/usr/bin/env bash
# N seed tasks (default 28,000) through ingest -> worker -> collector in one llm-batch process on this
# machine, with 0 ms simulated LLM backends (3 x 4 slots): tasks/s from the POST to the last document.
# Needs RabbitMQ on 127.0.0.1:5672, java, mvn, python3. usage: bench/e2e.sh [n=28000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-28000}
mkdir -p bench/target
[ -f target/llm-batch.jar ] && [ -d target/test-classes ] || mvn -B -q package -DskipTests
mvn -B -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile=bench/target/test-cp.txt
python3 bench/gen_tasks.py "$N" bench/target/e2e-payload.json bench/target/e2e-tasks.csv bench_e2e_tasks
echo "| tasks | documents | POST answered after | last document after | end-to-end rate |"
echo "|---|---|---|---|---|"
java -Xmx1g -cp "target/test-classes:target/classes:$(cat bench/target/test-cp.txt)" bench/E2eBench.java \
  bench/target/e2e-payload.json "$N" 2>/dev/null | grep "^|"
