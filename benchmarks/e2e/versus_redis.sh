#!/usr/bin/env bash
# The seed's real-time design beside adpulse, on the same machine, in the same run, on the same
# generated events: first a real redis-server (Debian's, started here, no persistence, as a cache)
# fed per event with pipelined HINCRBY / HINCRBYFLOAT / PFADD for adpulse's eight default cubes at
# minute, hour and day (the seed's RealtimeMetricsCache); then adpulse (fsync durability, dedup
# on) fed the same events as NDJSON. Prints both lines and the ratio.
#
#   benchmarks/e2e/versus_redis.sh [events] [campaigns]     (after the README's build command)
set -euo pipefail
cd "$(dirname "$0")/../.."
events=${1:-500000}
campaigns=${2:-10000}
loadgen=build/benchmarks/adpulse-loadgen
command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)"; exit 2; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis=$("$loadgen" --target redis --port "$rport" --events "$events" --campaigns "$campaigns" \
        --connections 4 --batch 1000 --json "$work/redis.json")
echo "redis (seed design): $redis"
redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true

aport=$(free_port)
build/adpulse --listen "127.0.0.1:$aport" --data-dir "$work/data" --log-level warn &
apid=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$aport/readyz" >/dev/null && break; sleep 0.1; done
adpulse=$("$loadgen" --port "$aport" --events "$events" --campaigns "$campaigns" --connections 4 \
          --batch 1000 --pid "$apid" --json "$work/adpulse.json")
echo "adpulse:             $adpulse"
kill "$apid"; wait "$apid" || true
python3 - "$work/redis.json" "$work/adpulse.json" <<'PY'
import json, sys
r, a = (json.load(open(p)) for p in sys.argv[1:3])
print(f"ratio adpulse / redis = {a['events_per_s'] / r['events_per_s']:.2f}x "
      f"({a['events_per_s']:.0f} vs {r['events_per_s']:.0f} events/s)")
PY
