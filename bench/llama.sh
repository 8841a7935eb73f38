#!/usr/bin/env bash
# The worker against a real OpenAI-compatible server: two llama.cpp llama-server processes (built by
# ../shared/tools/llama/build.sh, random-weight r134m.gguf over the real LLaMA vocabulary, -np 2 -t 1: 2 slots each, about
# a second per answer), once driven by a bare HTTP client at the same concurrency (bench/BareClient.java), once by one
# worker process taking N seed tasks from RabbitMQ and publishing N results (bench/WorkerLoad.java). Both runs
# alternate RUNS times; the ratio worker/bare is the worker's cost at the GPU's side.
# Needs RabbitMQ on 127.0.0.1:5672. usage: bench/llama.sh [tasks=120] [runs=3] [max_tokens=48]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-120}
RUNS=${2:-3}
MAXTOK=${3:-48}
LLAMA=${LLAMA_DIR:-$HOME/.cache/llama-server}
[ -x "$LLAMA/llama.cpp/build/bin/llama-server" ] || bash ../shared/tools/llama/build.sh
WORK=bench/target/llama
mkdir -p "$WORK"
[ -f target/llm-batch.jar ] || mvn -B -q package -DskipTests
JAR=target/llm-batch.jar
QT=bench_llama_tasks QR=bench_llama_results QD=bench_llama_tasks.dlq
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for port in 18741 18742; do
  "$LLAMA/llama.cpp/build/bin/llama-server" -m "$LLAMA/r134m.gguf" --host 127.0.0.1 --port $port -a tiny -c 2048 -np 2 -t 1 \
    --no-webui > "$WORK/llama-$port.log" 2>&1 &
  PIDS+=($!)
done
for port in 18741 18742; do
  for _ in $(seq 1 60); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
done
# both sides ask for exactly MAXTOK tokens (ignore_eos: a random-weight model stops at random otherwise): the worker's
# request route gets the field the way a user adds one, by editing the route file (in a copy of the repo's files)
APP=$WORK/app
rm -rf "$APP"; mkdir -p "$APP"; cp -r routes prompts application.properties "$APP/"
python3 - "$APP/routes/llm-gateway.camel.yaml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
anchor = "                  max_tokens: {{llmbatch.llm.max-tokens}},\n"
assert anchor in s
open(p, "w").write(s.replace(anchor, anchor + "                  ignore_eos: true,\n", 1))
PY
(cd "$APP" && exec java -Xmx512m -jar "$OLDPWD/$JAR" -Dllmbatch.rabbitmq.url=amqp://guest:guest@127.0.0.1:5672/ -Dllmbatch.roles=worker \
  -Dllmbatch.queue.tasks=$QT -Dllmbatch.queue.results=$QR -Dllmbatch.queue.tasks-dlq=$QD -Dllmbatch.llm.api=openai \
  -Dllmbatch.llm.model=tiny -Dllmbatch.llm.max-tokens=$MAXTOK -Dcamel.management.port=0 -Dcamel.main.routesReloadEnabled=false \
  -Dllmbatch.llm.endpoints="http://127.0.0.1:18741;slots=2,http://127.0.0.1:18742;slots=2") > "$WORK/worker.log" 2>&1 &
WORKER=$!
PIDS+=($WORKER)
sleep 8
# warm both paths up (the servers' caches, the JIT)
java bench/BareClient.java 8 2 $MAXTOK http://127.0.0.1:18741 http://127.0.0.1:18742 > /dev/null
java -cp $JAR bench/WorkerLoad.java 8 $QT $QR $QD 120 > /dev/null
echo "| run | bare client, 4 at once: req/s | worker: tasks/s | worker / bare |"
echo "|---|---|---|---|"
for i in $(seq 1 "$RUNS"); do
  bare=$(java bench/BareClient.java "$N" 2 $MAXTOK http://127.0.0.1:18741 http://127.0.0.1:18742)
  work=$(java -cp $JAR bench/WorkerLoad.java "$N" $QT $QR $QD 600)
  b=$(sed -E 's/.*rate=([0-9.]+).*/\1/' <<<"$bare"); w=$(sed -E 's/.*rate=([0-9.]+).*/\1/' <<<"$work")
  echo "| $i | $b ($bare) | $w ($work) | $(printf '%.3f' "$(echo "$w / $b" | bc -l)") |"
done
