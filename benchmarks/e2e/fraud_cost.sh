#!/usr/bin/env bash
# What enrichment and fraud scoring cost end to end: durable ingest at the default settings with
# them on (the default) and off (enrichment.enabled = false), alternating on the same machine,
# fresh data dir each run, realistic events (adpulse-loadgen's default: 20 real browsers'
# agents, a public address per user, every field, about 500 bytes), 4 connections, the
# generator on the same two cores. Totals are verified after every run. With `attribution` as
# the fourth argument, the same with attribution on and off (attribution.enabled = false).
#   benchmarks/e2e/fraud_cost.sh [build dir] [events] [rounds] [enrichment|attribution]
set -euo pipefail
build=${1:-build}
events=${2:-4000000}
rounds=${3:-2}
what=${4:-enrichment}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '[%s]\nenabled = false\n' "$what" > "$work/off.toml"
run() {
  local name=$1 config=$2 port=$((20000 + RANDOM % 20000))
  rm -rf "$work/data"
  # The previous run's dirty pages are written back first, so that neither run pays for the other.
  sync
  sleep 2
  local args=(--listen 127.0.0.1:$port --data-dir "$work/data" --log-level warn)
  [ -n "$config" ] && args+=(--config "$config")
  "$build/adpulse" "${args[@]}" 2> "$work/$name.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  local line
  line=$("$build/benchmarks/adpulse-loadgen" --port $port --events "$events" --campaigns 10000 \
    --connections 4 --batch 1000 --query-interval-ms 0 --pid $pid)
  echo "$name: $line"
  kill -TERM $pid
  wait $pid || true
}
for r in $(seq "$rounds"); do
  run "$what on (defaults)" ""
  run "$what off" "$work/off.toml"
done
