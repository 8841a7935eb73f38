#!/usr/bin/env bash
# Collector vs raw driver on the same MongoDB-wire server: N ~1 KB documents upserted by pid in unordered
# bulks of 100. Target: the collector route drains the queue at >= 0.8x the raw driver's rate.
# Needs RabbitMQ on 127.0.0.1:5672, java, mvn. usage: bench/collector.sh [n=50000] [key=value ...] (collector settings)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
mkdir -p bench/target
[ -f target/llm-batch.jar ] && [ -d target/test-classes ] || mvn -B -q package -DskipTests
mvn -B -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile=bench/target/test-cp.txt
echo "| documents | raw driver | raw rate | collector route | route rate | route/raw |"
echo "|---|---|---|---|---|---|"
java -Xmx1g -cp "target/test-classes:target/classes:$(cat bench/target/test-cp.txt)" bench/CollectorBench.java "$N" "${@:2}" 2>/dev/null | grep "^|"
