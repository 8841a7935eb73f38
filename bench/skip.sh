#!/usr/bin/env bash
# Skipping must not slow ingest (issue 14), in one run on one broker: (a) RabbitMQ PerfTest publishing N persistent
# 1 KB messages with confirms; (b) one POST /send_workq_message/ of N seed tasks to an ingest node (alone, as in
# bench/ingest.sh) with its MongoDB ledger (each task rendered and entered before it is published); then a worker and
# a collector (another process, 0 ms simulated LLM backends) generate and store all N; (c) the same POST again: every
# task's result is stored from the same request, so nothing is published and no LLM is called.
# (d) the same tasks as a CSV moved into the inbox of a fresh ingest node, until the file is in .done/ (nothing stored).
# (a2) PerfTest again, with the MongoDB work of (b) (its skip lookup and ledger upserts, by llm-batch's JobStore) run
# beside it on a mongo-java-server of its own: what publishing costs here when a MongoDB shares the two cores.
# Targets: (b) <= 1.5x (a), (c) < (b). MongoDB is mongo-java-server in the bench's JVM (no mongod here).
# MONGO_ONE_WAY_MS=M: the llm-batch processes reach MongoDB through a proxy that delays each way by M ms (a MongoDB on
# another machine; 0, the default, is loopback). APP_JAR: another build's jar (default target/llm-batch.jar).
# Needs RabbitMQ on 127.0.0.1:5672, rabbitmqctl, java, mvn, python3, bc. usage: bench/skip.sh [runs=3] [tasks=28000]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
N=${2:-28000}
Q_PT=bench_perftest
MONGO_ONE_WAY_MS=${MONGO_ONE_WAY_MS:-0}
APP_JAR=${APP_JAR:-target/llm-batch.jar}
RABBIT=amqp://guest:guest@127.0.0.1:5672/%2f
mkdir -p bench/target
[ -f target/llm-batch.jar ] && [ -d target/test-classes ] || mvn -B -q package -DskipTests
[ -d bench/target/perftest-lib ] || mvn -B -q -f bench/perftest/pom.xml dependency:copy-dependencies \
  -DoutputDirectory="$PWD/bench/target/perftest-lib"
mvn -B -q dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile=bench/target/test-cp.txt
python3 bench/gen_tasks.py "$N" bench/target/e2e-payload.json bench/target/e2e-tasks.csv bench_e2e_tasks
count() { rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$1" '$1==q {print $2}'; }
now() { date +%s.%N; }

printf '| run | (a) PerfTest 1 KB | (a2) PerfTest beside the ledger'"'"'s MongoDB work | (b) POST, ledger | (c) same POST, all stored | (d) inbox CSV, ledger | (b)/(a) | (b)/(a2) | (d)/(a2) | (c)/(b) | LLM calls in (c) | answer (c) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for run in $(seq 1 "$RUNS"); do
  rabbitmqctl -q purge_queue $Q_PT >/dev/null 2>&1 || true
  t0=$(now)
  java -cp "bench/target/perftest-lib/*" com.rabbitmq.perf.PerfTest -h "$RABBIT" -u $Q_PT -ad false -f persistent \
    -c 1000 -s 1000 -x 1 -y 0 -C "$N" > bench/target/skip-perftest.log 2>&1
  a=$(echo "$(now) - $t0" | bc)
  [ "$(count $Q_PT)" = "$N" ] || { echo "PerfTest left $(count $Q_PT) messages, expected $N" >&2; exit 1; }
  rabbitmqctl -q purge_queue $Q_PT >/dev/null 2>&1
  # | wall | PerfTest | MongoDB work |
  a2=$(java -Xmx1g -cp "target/test-classes:target/classes:$(cat bench/target/test-cp.txt)" bench/LedgerBeside.java \
    bench/target/e2e-payload.json "$N" "bench/target/perftest-lib/*" "$RABBIT" $Q_PT 2>/dev/null | grep "^|" | awk -F'|' '{gsub(/ /,"",$2); print $2}')
  [ "$(count $Q_PT)" = "$N" ] || { echo "PerfTest (a2) left $(count $Q_PT) messages, expected $N" >&2; exit 1; }
  row=$(java -Xmx1g -Dbench.mongo.one-way-ms="$MONGO_ONE_WAY_MS" -Dbench.jar="$APP_JAR" -cp "target/test-classes:target/classes:$(cat bench/target/test-cp.txt)" bench/E2eBench.java \
    bench/target/e2e-payload.json "$N" again 2>/dev/null | grep "^|")
  # | n | documents | first POST | second POST | answer | calls |
  b=$(echo "$row" | awk -F'|' '{gsub(/[ s]/,"",$4); print $4}')
  c=$(echo "$row" | awk -F'|' '{gsub(/[ s]/,"",$5); print $5}')
  answer=$(echo "$row" | awk -F'|' '{print $6}' | xargs)
  calls=$(echo "$row" | awk -F'|' '{print $7}' | xargs)
  rabbitmqctl -q purge_queue bench_e2e_tasks >/dev/null 2>&1 || true
  mkdir -p bench/target/e2e-inbox
  d=$(java -Xmx1g -Dbench.mongo.one-way-ms="$MONGO_ONE_WAY_MS" -Dbench.jar="$APP_JAR" -cp "target/test-classes:target/classes:$(cat bench/target/test-cp.txt)" bench/E2eBench.java \
    bench/target/e2e-payload.json "$N" inbox bench/target/e2e-tasks.csv 2>/dev/null | grep "^|" | awk -F'|' '{gsub(/[ s]/,"",$4); print $4}')
  [ "$(count bench_e2e_tasks)" = "$N" ] || { echo "the inbox left $(count bench_e2e_tasks) messages, expected $N" >&2; exit 1; }
  printf '| %d | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f | %.2f | %.2f | %.2f | %s | `%s` |\n' "$run" "$a" "$a2" "$b" "$c" "$d" \
    "$(echo "$b / $a" | bc -l)" "$(echo "$b / $a2" | bc -l)" "$(echo "$d / $a2" | bc -l)" "$(echo "$c / $b" | bc -l)" "$calls" "$answer"
done
rabbitmqctl -q delete_queue $Q_PT >/dev/null 2>&1 || true
