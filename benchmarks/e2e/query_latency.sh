#!/usr/bin/env bash
# Times issue #4's three queries against a running adpulse: each 7 times with curl, printing the
# min, median and max in ms. Load the data first (docs/benchmarks.md, "Query latency over a month").
#
#   benchmarks/e2e/query_latency.sh [port] [campaign]
set -euo pipefail
port=${1:-8080}
campaign=${2:-c123}
base="127.0.0.1:$port"
now=$(( $(date +%s) * 1000 ))
week_ago=$(( now - 7 * 86400000 ))
day_ago=$(( now - 86400000 ))
midnight=$(( now / 86400000 * 86400000 ))
time_it() {
  local name=$1 url=$2
  for _ in 1 2 3 4 5 6 7; do
    curl -sf -o /dev/null -w "%{time_total}\n" "$url" || { echo "$name: request failed: $url" >&2; exit 1; }
  done | sort -n | awk -v name="$name" '{ms[NR] = $1 * 1000}
    END {printf "%-44s min %6.1f  median %6.1f  max %6.1f ms\n", name, ms[1], ms[4], ms[7]}'
}
time_it "7-day country x device drilldown, $campaign" \
  "$base/v1/metrics?dimensions=country,device_type&filter=campaign_id:$campaign&granularity=all&start=$week_ago&end=$now"
time_it "top 100 campaigns by CTR, last 24 hours" \
  "$base/v1/top?metric=ctr&dimension=campaign_id&limit=100&start=$day_ago&end=$now"
time_it "top 100 campaigns by CTR, yesterday (UTC)" \
  "$base/v1/top?metric=ctr&dimension=campaign_id&limit=100&start=$(( midnight - 86400000 ))&end=$midnight"
time_it "last 5 minutes of $campaign (realtime)" \
  "$base/v1/metrics/realtime?campaign_id=$campaign&window=300"
