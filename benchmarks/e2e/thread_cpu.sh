#!/usr/bin/env bash
# CPU seconds per daemon thread for one load run: starts adpulse (fresh data dir, optional
# config), sends realistic events with adpulse-loadgen at 4 connections, then sums each thread's
# utime + stime from /proc/PID/task/*/stat by thread name. Shows which thread pays for what
# (docs/benchmarks.md, "What enrichment and fraud scoring cost").
#   benchmarks/e2e/thread_cpu.sh [config.toml] [events]
set -euo pipefail
config=${1:-}
events=${2:-2000000}
build=${BUILD:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
args=(--listen 127.0.0.1:$port --data-dir "$work/data" --log-level warn)
[ -n "$config" ] && args+=(--config "$config")
sync
"$build/adpulse" "${args[@]}" 2> "$work/log" &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
"$build/benchmarks/adpulse-loadgen" --port $port --events "$events" --campaigns 10000 \
  --connections 4 --batch 1000 --query-interval-ms 0 | head -1
for t in /proc/$pid/task/*; do
  name=$(cat "$t/comm")
  read -r -a f < <(sed 's/.*) //' "$t/stat")
  echo "$name $((f[11] + f[12]))"
done | awk '{cpu[$1] += $2} END {for (n in cpu) printf "%s=%.2fs ", n, cpu[n] / 100; print ""}'
kill -TERM $pid
wait $pid || true
