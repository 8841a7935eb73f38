#!/usr/bin/env bash
# Ingest speed on one broker, in one run: (a) RabbitMQ PerfTest publishing 28,000 persistent 1 KB
# messages with confirms, (b) one POST /send_workq_message/ of 28,000 seed tasks, (c) a 28,000-row CSV
# through the inbox (from the move into inbox/ until the file lands in .done/, i.e. all confirmed).
# Target: (b) and (c) each <= 1.5x (a). Needs RabbitMQ on 127.0.0.1:5672, java, mvn, python3, curl.
# usage: [APP_JAR=other-build.jar] bench/ingest.sh [runs=3] [tasks=28000]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
N=${2:-28000}
WORK=bench/target/ingest
PORT=18480
Q_APP=bench_ingest_tasks
Q_PT=bench_perftest
RABBIT=amqp://guest:guest@127.0.0.1:5672/%2f
mkdir -p "$WORK"

JAR=${APP_JAR:-target/llm-batch.jar}
[ -f "$JAR" ] || mvn -B -q package -DskipTests
[ -d bench/target/perftest-lib ] || mvn -B -q -f bench/perftest/pom.xml dependency:copy-dependencies \
  -DoutputDirectory="$PWD/bench/target/perftest-lib"
python3 bench/gen_tasks.py "$N" "$WORK/payload.json" "$WORK/tasks.csv" "$Q_APP"

purge() { rabbitmqctl -q purge_queue "$1" >/dev/null 2>&1 || true; }
count() { rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$1" '$1==q {print $2}'; }
now() { date +%s.%N; }

rm -rf "$WORK/inbox"; mkdir -p "$WORK/inbox"
java -Xmx512m -jar "$JAR" -Dllmbatch.rabbitmq.url=amqp://guest:guest@127.0.0.1:5672/ -Dllmbatch.roles=ingest -Dllmbatch.queue.tasks=$Q_APP \
  -Dllmbatch.ingest.allowed-queues=$Q_APP -Dcamel.server.port=$PORT -Dllmbatch.ingest.inbox="$WORK/inbox" \
  -Dllmbatch.ingest.poll-delay=100 -Dcamel.main.routesReloadEnabled=false > "$WORK/app.log" 2>&1 &
APP=$!
trap 'kill $APP 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do curl -s -o /dev/null "http://127.0.0.1:$PORT/api/tasks" && break; sleep 0.5; done

printf '| run | (a) PerfTest 1 KB | (b) POST /send_workq_message/ | (c) inbox CSV | (b)/(a) | (c)/(a) |\n|---|---|---|---|---|---|\n'
for run in $(seq 1 "$RUNS"); do
  purge $Q_PT; purge $Q_APP
  t0=$(now)
  java -cp "bench/target/perftest-lib/*" com.rabbitmq.perf.PerfTest -h "$RABBIT" -u $Q_PT -ad false -f persistent \
    -c 1000 -s 1000 -x 1 -y 0 -C "$N" > "$WORK/perftest.log" 2>&1
  a=$(echo "$(now) - $t0" | bc)
  [ "$(count $Q_PT)" = "$N" ] || { echo "PerfTest left $(count $Q_PT) messages, expected $N" >&2; exit 1; }

  purge $Q_APP
  b=$(curl -s -o "$WORK/answer.json" -w '%{time_total}' -XPOST "http://127.0.0.1:$PORT/send_workq_message/" \
      -H 'Content-Type: application/json' --data-binary @"$WORK/payload.json")
  grep -q "\"published\":$N" "$WORK/answer.json" || { echo "POST answered $(cat "$WORK/answer.json")" >&2; exit 1; }
  [ "$(count $Q_APP)" = "$N" ] || { echo "queue holds $(count $Q_APP), expected $N" >&2; exit 1; }

  purge $Q_APP
  rm -rf "$WORK/inbox/.done"
  cp "$WORK/tasks.csv" "$WORK/run.csv"; touch -d '-10 seconds' "$WORK/run.csv"
  t0=$(now)
  mv "$WORK/run.csv" "$WORK/inbox/tasks.csv"
  while [ ! -f "$WORK/inbox/.done/tasks.csv" ]; do sleep 0.02; done
  c=$(echo "$(now) - $t0" | bc)
  [ "$(count $Q_APP)" = "$N" ] || { echo "queue holds $(count $Q_APP) after the CSV, expected $N" >&2; exit 1; }

  printf '| %d | %.2f s | %.2f s | %.2f s | %.2f | %.2f |\n' "$run" "$a" "$b" "$c" \
    "$(echo "$b / $a" | bc -l)" "$(echo "$c / $a" | bc -l)"
done
grep -h "sending rate avg" "$WORK/perftest.log" | sed 's/^/PerfTest (last run): /'
purge $Q_PT; purge $Q_APP
