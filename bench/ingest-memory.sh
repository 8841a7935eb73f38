#!/usr/bin/env bash
# Streaming check: a 1,000,000-row CSV through the inbox of an ingest process limited to -Xmx256m.
# Passes when every row is on the queue and the process never ran out of memory. Prints time, rate and
# the peak resident memory of the process. Needs RabbitMQ on 127.0.0.1:5672, java, mvn, python3.
# usage: bench/ingest-memory.sh [rows=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
WORK=bench/target/memory
Q=bench_memory_tasks
mkdir -p "$WORK"
[ -f target/llm-batch.jar ] || mvn -B -q package -DskipTests
[ -f "$WORK/rows-$N.csv" ] || python3 bench/gen_tasks.py "$N" "$WORK/payload.json" "$WORK/rows-$N.csv" "$Q"
rm -f "$WORK/payload.json"
count() { rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$1" '$1==q {print $2}'; }
rabbitmqctl -q purge_queue $Q >/dev/null 2>&1 || true
rm -rf "$WORK/inbox"; mkdir -p "$WORK/inbox"

java -Xmx256m -XX:+ExitOnOutOfMemoryError -jar target/llm-batch.jar -Dllmbatch.rabbitmq.url=amqp://guest:guest@127.0.0.1:5672/ -Dllmbatch.roles=ingest \
  -Dllmbatch.queue.tasks=$Q -Dcamel.server.port=18481 -Dllmbatch.ingest.inbox="$WORK/inbox" \
  -Dcamel.main.routesReloadEnabled=false > "$WORK/app.log" 2>&1 &
APP=$!
trap 'kill $APP 2>/dev/null || true' EXIT
sleep 3
cp "$WORK/rows-$N.csv" "$WORK/inbox/.rows.tmp" && mv "$WORK/inbox/.rows.tmp" "$WORK/inbox/rows.csv"
start=$(date +%s.%N); peak=0
while [ ! -f "$WORK/inbox/.done/rows.csv" ]; do
  kill -0 $APP 2>/dev/null || { echo "the ingest process died (see $WORK/app.log)" >&2; exit 1; }
  rss=$(awk '/VmRSS/ {print $2}' /proc/$APP/status); [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 0.5
done
secs=$(echo "$(date +%s.%N) - $start" | bc)
grep -h "Inbox rows.csv:" "$WORK/app.log" | tail -1
got=$(count $Q)
printf 'rows=%d queued=%s time=%.1f s rate=%.0f rows/s heap=-Xmx256m peak RSS=%d MB\n' "$N" "$got" "$secs" \
  "$(echo "$N / $secs" | bc -l)" $((peak / 1024))
rabbitmqctl -q purge_queue $Q >/dev/null 2>&1 || true
[ "$got" = "$N" ] || { echo "expected $N messages on $Q" >&2; exit 1; }
