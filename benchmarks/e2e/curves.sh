#!/usr/bin/env bash
# Throughput curves for docs/benchmarks.md: adpulse (fsync durability, dedup on, defaults unless
# the curve varies it) fed flat out by adpulse-loadgen on the same machine, one fresh data dir per
# point. Varies, one at a time from the base point (10,000 campaigns, 8 default cubes, batches of
# 1,000, 2 workers): the number of cubes, campaign cardinality (1 thousand to 1 million), batch
# size and worker count. Prints one markdown table row per point: events/s, ack p50/p99, peak RSS.
#
#   benchmarks/e2e/curves.sh [events per point] [curve ...]     (after the README's build command)
#   curves: cubes campaigns batch workers (default: all four)
set -euo pipefail
cd "$(dirname "$0")/../.."
events=${1:-2000000}
shift || true
curves=("$@")
[ ${#curves[@]} -eq 0 ] && curves=(cubes campaigns batch workers)
loadgen=build/benchmarks/adpulse-loadgen
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The first N of the default cubes (config/adpulse.toml), as a config file.
cube_config() {
  python3 - "$1" <<'PY'
import re, sys
n = int(sys.argv[1])
text = open("config/adpulse.toml").read()
cubes = re.findall(r"\[\[cubes\]\]\n(?:[^\[\n][^\n]*\n?)*", text)
print("".join(cubes[:n]))
PY
}

# point LABEL CUBES CAMPAIGNS BATCH WORKERS
point() {
  local label=$1 cubes=$2 campaigns=$3 batch=$4 workers=$5
  local dir="$work/$label" port
  mkdir -p "$dir"
  cube_config "$cubes" >"$dir/adpulse.toml"
  port=$(free_port)
  build/adpulse --config "$dir/adpulse.toml" --listen "127.0.0.1:$port" --data-dir "$dir/data" \
    --workers "$workers" --log-level warn &
  local pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  "$loadgen" --port "$port" --events "$events" --campaigns "$campaigns" --users 1000000 \
    --connections 4 --batch "$batch" --query-interval-ms 0 --pid "$pid" --json "$dir/out.json" >/dev/null
  kill "$pid"
  wait "$pid" || true
  python3 - "$dir/out.json" "$label" "$cubes" "$campaigns" "$batch" "$workers" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
label, cubes, campaigns, batch, workers = sys.argv[2:7]
print(f"| {label} | {cubes} | {int(campaigns):,} | {int(batch):,} | {workers} | "
      f"{r['events_per_s']:,.0f} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms | "
      f"{r['peak_rss_bytes'] / 2**20:.0f} MiB |")
PY
  rm -rf "$dir"
}

echo "| curve | cubes | campaigns | batch | workers | events/s | ack p50 / p99 | peak RSS |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for curve in "${curves[@]}"; do
  case $curve in
    cubes) for c in 1 2 4 8; do point "cubes-$c" "$c" 10000 1000 2; done ;;
    campaigns) for n in 1000 10000 100000 1000000; do point "campaigns-$n" 8 "$n" 1000 2; done ;;
    batch) for b in 100 1000 5000; do point "batch-$b" 8 10000 "$b" 2; done ;;
    workers) for w in 1 2; do point "workers-$w" 8 10000 1000 "$w"; done ;;
    *) echo "unknown curve $curve (cubes, campaigns, batch, workers)" >&2; exit 2 ;;
  esac
done
