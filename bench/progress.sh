#!/usr/bin/env bash
# How right is the ETA? N seed tasks (default 10,000) through one llm-batch node (all roles, embedded MongoDB,
# the LLM simulator with LATENCY ms per answer and 4 slots) on the local RabbitMQ; /api/progress is polled
# every 5 s and each ETA is compared with the moment the last result was actually stored. The `status`
# command runs beside it; its last lines are printed.
# Needs RabbitMQ on 127.0.0.1:5672, java, mvn, python3. usage: bench/progress.sh [n=10000] [latency_ms=80]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
LATENCY=${2:-80}
WORK=bench/target/progress
rm -rf "$WORK" && mkdir -p "$WORK"
[ -f target/llm-batch.jar ] || mvn -B -q package -DskipTests
python3 bench/gen_tasks.py "$N" "$WORK/payload.json" "$WORK/tasks.csv" bench_progress_tasks
for q in bench_progress_tasks bench_progress_results bench_progress_tasks.dlq bench_progress_results.dlq; do
  rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
done
RABBITMQ_URL=${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/} java -Xmx512m -jar target/llm-batch.jar \
  -Dcamel.server.port=18881 -Dcamel.management.port=18882 -Dllmbatch.embedded.data-dir="$WORK/data" \
  -Dllmbatch.embedded.mongodb-port=18883 -Dllmbatch.embedded.llm-port=18884 -Dllmbatch.embedded.llm-latency="$LATENCY" \
  -Dllmbatch.queue.tasks=bench_progress_tasks -Dllmbatch.queue.results=bench_progress_results \
  -Dllmbatch.queue.tasks-dlq=bench_progress_tasks.dlq -Dllmbatch.queue.results-dlq=bench_progress_results.dlq \
  -Dllmbatch.ingest.allowed-queues=bench_progress_tasks -Dllmbatch.ingest.inbox="$WORK/inbox" \
  -Dllmbatch.cost.per-gpu-hour=1.5 -Dcamel.main.routesReloadEnabled=false > "$WORK/node.log" 2>&1 &
NODE=$!
trap 'kill $NODE 2>/dev/null || true; kill $STATUS 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf -o /dev/null http://127.0.0.1:18882/observe/health/ready && break; sleep 1; done
curl -sf -XPOST -H 'Content-Type: application/json' --data-binary @"$WORK/payload.json" http://127.0.0.1:18881/send_workq_message/ > "$WORK/post.json"
java -jar target/llm-batch.jar status http://127.0.0.1:18881/api/progress > "$WORK/status.txt" 2>&1 &
STATUS=$!
python3 - "$N" "$WORK" <<'PY'
import json, sys, time, urllib.request
n, work = int(sys.argv[1]), sys.argv[2]
start, samples, finish = time.time(), [], None
while True:
    time.sleep(5)
    p = json.load(urllib.request.urlopen("http://127.0.0.1:18881/api/progress"))
    t = time.time() - start
    samples.append((t, p["stored"] or 0, p["remaining"], p["eta_seconds"], p["rate_per_second"], (p.get("cost") or {}).get("per_1000")))
    if finish is None and (p["stored"] or 0) >= n:
        finish = t
    if p["remaining"] == 0 and finish is not None:
        break
print(f"{n} tasks stored after {finish:.0f} s (polled every 5 s, so within 5 s)")
print("| elapsed | stored | remaining | rate/s (last min) | ETA said | predicted end | actual end | error | cost/1000 |")
print("|---|---|---|---|---|---|---|---|---|")
for t, stored, remaining, eta, rate, cost in samples:
    if eta is None or remaining == 0:
        continue
    err = t + eta - finish
    print(f"| {t:.0f} s | {stored:,} | {remaining:,} | {rate:.1f} | {eta} s | {t + eta:.0f} s | {finish:.0f} s | {err:+.0f} s ({100 * err / (finish - t):+.0f}% of the time left) | {cost} |")
PY
sleep 8
echo; echo "status command, last line:"; tail -c 400 "$WORK/status.txt" | tr '\r' '\n' | grep . | tail -1
