#!/usr/bin/env bash
# Outbound only (OutboundBench): a worker in a network namespace of its own (t15gpu, a veth pair 10.203.0.1 here /
# 10.203.0.2 there, no default route, nftables dropping every packet that enters it unless it answers a connection
# opened from inside) completes its share of a 2,000-task job beside a worker on this machine, reaching the broker only
# through 10.203.0.1:20431. It proves first that a connection from this machine into the namespace fails. The script
# creates the namespace and removes it (also when interrupted). Needs root, ip, nft (apt-get install -y nftables),
# python3, RabbitMQ on 127.0.0.1:5672, java, mvn. usage: bench/outbound.sh [tasks=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-2000}
command -v nft >/dev/null || { echo "nft is missing: apt-get install -y nftables" >&2; exit 1; }
cleanup() { ip netns del t15gpu 2>/dev/null || true; }   # the veth pair goes with it
trap cleanup EXIT
mkdir -p target/outbound && rm -f target/outbound/results.md
status=0
mvn -B -q verify -Dit.test=OutboundBench -Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false -Doutbound.tasks="$TASKS" \
  > target/outbound.log 2>&1 || status=$?
grep -E "Tests run:|FAIL" target/outbound.log | tail -2 || true
cat target/outbound/results.md 2>/dev/null || true
[ "$status" -eq 0 ] || echo "FAILED (exit $status): see target/outbound.log and target/failsafe-reports/" >&2
exit "$status"
