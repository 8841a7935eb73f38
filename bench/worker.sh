#!/usr/bin/env bash
# Worker throughput with the LLM simulator (one worker process, real RabbitMQ):
#  (a) 3 backends x 4 slots x 100 ms  -> ideal 120 tasks/s, target >= 95%; (a0) before it, a bare HTTP client (no broker)
#      on the same simulators, the most any client gets from them on this machine
#  (b) 3 backends 50/100/200 ms x 4 slots -> ideal 140 tasks/s, target >= 90%; also with round-robin
#  (c) (a) with one backend killed mid-run -> 0 tasks failed (every result arrives, DLQ empty)
#  (d) 3 backends x 4 slots x 0 ms -> the worker's own overhead, tasks/s
# Needs RabbitMQ on 127.0.0.1:5672, java, mvn. usage: [WARMUP=200] bench/worker.sh [tasks=2400] [scenarios=abcd]
# APP_DIR=dir runs the worker of another checkout (its target/llm-batch.jar, routes/ and application.properties), so
# two versions can be measured side by side (bench/worker-compare.sh). WORKER_JAVA_OPTS: more JVM options for the worker.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2400}
SCENARIOS=${2:-abcd}
HERE=$(pwd)
APP_DIR=$(cd "${APP_DIR:-.}" && pwd)
WORK=$HERE/bench/target/worker
mkdir -p "$WORK"
[ -f "$APP_DIR/target/llm-batch.jar" ] || (cd "$APP_DIR" && mvn -B -q package -DskipTests)
JAR=$HERE/target/llm-batch.jar
[ -f "$JAR" ] || mvn -B -q package -DskipTests
QT=bench_worker_tasks QR=bench_worker_results QD=bench_worker_tasks.dlq
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

sim() { # port latency slots
  java -Xmx256m -cp $JAR io.llmbatch.llm.LlmSimulator --port "$1" --latency-ms "$2" --slots "$3" > "$WORK/sim-$1.log" 2>&1 &
  PIDS+=($!); echo $!
}
worker() { # balance (sets WORKER_PID; call it directly, not in $(...), so the cleanup knows the process)
  (cd "$APP_DIR" && exec java -Xmx512m -XX:-UseDynamicNumberOfCompilerThreads ${WORKER_JAVA_OPTS:-} -jar target/llm-batch.jar -Dllmbatch.rabbitmq.url=amqp://guest:guest@127.0.0.1:5672/ -Dllmbatch.roles=worker -Dllmbatch.queue.tasks=$QT -Dllmbatch.queue.results=$QR \
    -Dllmbatch.queue.tasks-dlq=$QD -Dllmbatch.llm.balance="$1" -Dllmbatch.llm.cooldown=5000 \
    -Dllmbatch.llm.endpoints="http://127.0.0.1:18701;slots=4,http://127.0.0.1:18702;slots=4,http://127.0.0.1:18703;slots=4" \
    -Dcamel.main.routesReloadEnabled=false -Dcamel.management.port=0 > "$WORK/worker-$1.log" 2>&1) &
  WORKER_PID=$!; PIDS+=($WORKER_PID)
}
load() { java -cp $JAR bench/WorkerLoad.java "$N" $QT $QR $QD 300; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # the process's user + system CPU, in clock ticks
jit() { # the CPU of the process's JIT compiler threads, in clock ticks (a fixed set: -XX:-UseDynamicNumberOfCompilerThreads)
  local t sum=0
  for t in /proc/$1/task/*/stat; do
    if grep -q '(C[12] CompilerThre)' "$t" 2>/dev/null; then sum=$((sum + $(sed 's/.*) //' "$t" | awk '{print $12 + $13}'))); fi
  done
  echo $sum
}
stop_all() { cleanup; PIDS=(); sleep 1; }
warmup() { java -cp $JAR bench/WorkerLoad.java "${WARMUP:-200}" $QT $QR $QD 120 > /dev/null; }

echo "| scenario | tasks | results | dead-lettered | seconds | tasks/s | ideal | % of ideal |"
echo "|---|---|---|---|---|---|---|---|"
row() { # name ideal line
  local line=$3 got secs rate dead
  got=$(sed -E 's/.*results=([0-9]+).*/\1/' <<<"$line"); dead=$(sed -E 's/.*dead=([0-9]+).*/\1/' <<<"$line")
  secs=$(sed -E 's/.*seconds=([0-9.]+).*/\1/' <<<"$line"); rate=$(sed -E 's/.*rate=([0-9.]+).*/\1/' <<<"$line")
  if [ "$2" = "-" ]; then pct="-"; else pct=$(printf '%.1f%%' "$(echo "100 * $rate / $2" | bc -l)"); fi
  echo "| $1 | $N | $got | $dead | $secs | $rate | $2 | $pct |"
}

# (a)
if [[ $SCENARIOS == *a* ]]; then
sim 18701 100 4 >/dev/null; sim 18702 100 4 >/dev/null; sim 18703 100 4 >/dev/null
# the yardstick: a bare HTTP client, 4 requests at once on each simulator, no broker (the most any client gets from them)
SIMS="http://127.0.0.1:18701 http://127.0.0.1:18702 http://127.0.0.1:18703"
java bench/BareClient.java 240 4 512 $SIMS > /dev/null
bare=$(java bench/BareClient.java "$N" 4 512 $SIMS)
row "(a0) bare HTTP client on the same simulators" 120 "$(sed -E 's/requests=([0-9]+) ok=([0-9]+)/results=\2 dead=0/' <<<"$bare")"
worker least-busy; sleep 6; warmup
row "(a) 3x4 slots, 100 ms, least-busy" 120 "$(load)"
stop_all
fi
# (b)
if [[ $SCENARIOS == *b* ]]; then
for balance in least-busy round-robin; do
  sim 18701 50 4 >/dev/null; sim 18702 100 4 >/dev/null; sim 18703 200 4 >/dev/null; worker $balance; sleep 6; warmup
  row "(b) 3x4 slots, 50/100/200 ms, $balance" 140 "$(load)"
  stop_all
done
fi
# (c)
if [[ $SCENARIOS == *c* ]]; then
sim 18701 100 4 >/dev/null; sim 18702 100 4 >/dev/null; victim=$(sim 18703 100 4); worker least-busy; sleep 6; warmup
( sleep $((N / 240)); kill -9 "$victim" ) &
row "(c) as (a), one backend killed mid-run" 120 "$(load)"
stop_all
fi
# (d): also the worker's own CPU time per task (from /proc, so other processes on the machine do not count)
if [[ $SCENARIOS == *d* ]]; then
sim 18701 0 4 >/dev/null; sim 18702 0 4 >/dev/null; sim 18703 0 4 >/dev/null; worker least-busy; wpid=$WORKER_PID; sleep 6; warmup
before=$(cpu "$wpid"); jit_before=$(jit "$wpid"); line=$(load); after=$(cpu "$wpid"); jit_after=$(jit "$wpid")
row "(d) 3x4 slots, 0 ms (worker overhead)" - "$line"
echo "cpu_ms_per_task=$(echo "($after - $before) * 1000 / $(getconf CLK_TCK) / $N" | bc -l | xargs printf '%.3f')"
# the same without the JIT compiler's threads, which still compile after the warm-up and vary most from run to run
echo "cpu_ms_per_task_without_jit=$(echo "($after - $before - $jit_after + $jit_before) * 1000 / $(getconf CLK_TCK) / $N" | bc -l | xargs printf '%.3f')"
stop_all
fi
