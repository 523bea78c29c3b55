#!/usr/bin/env python3
"""GET /metrics as Prometheus reads it: on a daemon that has ingested (valid, invalid, duplicate and bot
events) and answered queries (/v1 and /grafana), the live exposition must pass `promtool check metrics`
(Debian's prometheus package, installed by scripts/setup.sh), and carry the families operators
graph, with values that agree with what the test sent: events received, accepted, duplicate and
rejected by reason; ingest, query and WAL fsync latency histograms; ring occupancy and aggregation lag
per shard; the state and dedup store sizes and pending compaction; late events; invalid traffic by
signal; responses by path with the Grafana and admin paths named.

    python3 tests/integration/metrics_test.py --binary build/adpulse

Standard library only (and promtool). Last line `N passed, M failed`; exit code 0 only if M == 0.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "crash"))
sys.path.insert(0, HERE)
from common import Daemon, Tally  # noqa: E402
from grafana_test import encode, make_events, plugin_query, post_json, request, target  # noqa: E402

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')


def parse(text):
    """{name: {labels text: value}}, {family: type}, {family: help}."""
    samples, types, helps = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line.startswith("# HELP "):
            _, _, name, help_text = line.split(" ", 3)
            helps[name] = help_text
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            if m:
                samples.setdefault(m.group(1), {})[m.group(3) or ""] = float(m.group(4))
    return samples, types, helps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("ADPULSE_BINARY", "build/adpulse"))
    ap.add_argument("--promtool", default=shutil.which("promtool") or "/usr/bin/promtool")
    args = ap.parse_args()
    res = Tally()
    if not os.path.exists(args.promtool):
        res.check(False, f"promtool not found at {args.promtool}: run scripts/setup.sh (Debian package prometheus)")
        return res.finish()
    root = tempfile.mkdtemp(prefix="adpulse-metrics-")
    daemon = Daemon(os.path.abspath(args.binary), os.path.join(root, "data"), os.path.join(root, "daemon.log"))
    try:
        daemon.start()
        port = daemon.port
        now = int(time.time() * 1000)
        events, _ = make_events(now, 31)
        events = events[:2000] + events[-300:]  # valid traffic, then the burst without a user agent
        body = encode(events)
        bad = (b'{"event_id": "x1", "event_type": "view", "timestamp": %d, "campaign_id": "gc-1"}\n'
               b'{"event_id": "x2", "event_type": "click", "timestamp": 1, "campaign_id": "gc-1"}\n'
               b'{"event_id": "x3", "event_type": "click", "timestamp": %d, "campaign_id": "gc-1", "bid_price": -1}\n'
               b'[1, 2]\n' % (now, now))
        status, data = request(port, "POST", "/v1/events", raw=body + bad,
                               headers={"Content-Type": "application/x-ndjson"})
        answer = json.loads(data)
        res.check(status == 200 and answer["accepted"] == len(events) and answer["rejected"] == 4,
                  f"ingest: {status} {str(answer)[:300]}")
        status, data = request(port, "POST", "/v1/events", raw=encode(events[:100]),
                               headers={"Content-Type": "application/x-ndjson"})
        res.check(status == 200 and json.loads(data)["duplicates"] == 100, "100 duplicates resent")
        for q in ("/v1/metrics?start=%d&end=%d&dimensions=campaign_id" % (now - 7_200_000, now),
                  "/v1/metrics/realtime?campaign_id=gc-1",
                  "/v1/top?metric=clicks&dimension=campaign_id&start=%d&end=%d" % (now - 7_200_000, now)):
            status, _ = request(port, "GET", q)
            res.check(status == 200, f"GET {q}: {status}")
        status, _ = post_json(port, "/grafana/query",
                              plugin_query(now - 7_200_000, now, [target("clicks", payload={"group_by": "country"})]))
        res.check(status == 200, f"a Grafana query: {status}")
        status, _ = request(port, "POST", "/v1/admin/reconcile?start=%d&end=%d" % (now - 86_400_000, now + 60_000))
        res.check(status == 200, f"a reconciliation: {status}")

        status, data = request(port, "GET", "/metrics")
        text = data.decode()
        res.check(status == 200, f"GET /metrics: {status}")
        lint = subprocess.run([args.promtool, "check", "metrics"], input=data, capture_output=True)
        res.check(lint.returncode == 0, "promtool check metrics passes on the live output: "
                  f"{(lint.stdout + lint.stderr).decode()[:1500]}")

        samples, types, helps = parse(text)
        res.check(all(name in helps for name in types) and all(name in types for name in helps),
                  "every family has HELP and TYPE")
        expect = {
            "adpulse_events_received_total": "counter", "adpulse_events_accepted_total": "counter",
            "adpulse_events_duplicate_total": "counter", "adpulse_events_rejected_total": "counter",
            "adpulse_ingest_request_duration_seconds": "histogram", "adpulse_query_duration_seconds": "histogram",
            "adpulse_wal_fsync_duration_seconds": "histogram", "adpulse_ring_queued_tasks": "gauge",
            "adpulse_aggregation_lag_seconds": "gauge", "adpulse_dedup_store_bytes": "gauge",
            "adpulse_dedup_store_ids": "gauge", "adpulse_state_store_aggregate_bytes": "gauge",
            "adpulse_state_store_pending_compaction_bytes": "gauge", "adpulse_late_events_total": "counter",
            "adpulse_fraud_signals_total": "counter", "adpulse_fraud_events_invalid_total": "counter",
            "adpulse_http_responses_total": "counter",
        }
        for name, kind in expect.items():
            res.check(types.get(name) == kind, f"{name} is a {kind} (got {types.get(name)})")
        total = lambda name: sum(samples.get(name, {}).values())  # noqa: E731
        sent = len(events) + 4 + 100
        res.check(total("adpulse_events_received_total") == sent,
                  f"events received {total('adpulse_events_received_total')} == {sent}")
        res.check(total("adpulse_events_accepted_total") == len(events), "events accepted")
        res.check(total("adpulse_events_duplicate_total") == 100, "duplicates")
        rejected = samples.get("adpulse_events_rejected_total", {})
        res.check(rejected.get('reason="event_type"') == 1 and rejected.get('reason="timestamp"') == 1 and
                  rejected.get('reason="bid_price"') == 1 and rejected.get('reason="malformed"') == 1,
                  f"rejections by reason: {rejected}")
        for h in ("adpulse_ingest_request_duration_seconds", "adpulse_query_duration_seconds",
                  "adpulse_wal_fsync_duration_seconds"):
            count = total(h + "_count")
            inf = [v for k, v in samples.get(h + "_bucket", {}).items() if 'le="+Inf"' in k]
            res.check(count > 0 and inf == [count] and total(h + "_sum") > 0,
                      f"{h}: {count} observations, +Inf bucket {inf}")
        res.check(total("adpulse_ingest_request_duration_seconds_count") == 2, "one ingest observation a request")
        res.check(total("adpulse_query_duration_seconds_count") >= 4, "query latency counts /v1 and Grafana queries")
        shards = samples.get("adpulse_workers", {}).get("", 0)
        res.check(len(samples.get("adpulse_ring_queued_tasks", {})) == shards > 0, "ring occupancy per shard")
        lags = samples.get("adpulse_aggregation_lag_seconds", {})
        res.check(len(lags) == shards and max(lags.values()) > 0 and min(lags.values()) < 7300,
                  f"aggregation lag per shard: {lags}")
        res.check(samples.get("adpulse_fraud_signals_total", {}).get('signal="missing_user_agent"', 0) >= 300,
                  f"invalid traffic by signal: {samples.get('adpulse_fraud_signals_total')}")
        paths = samples.get("adpulse_http_responses_total", {})
        res.check(any('path="/grafana/query"' in k for k in paths) and
                  any('path="/v1/admin/reconcile"' in k for k in paths) and
                  not any('path="other"' in k for k in paths), f"responses by path: {sorted(paths)}")
        res.check(daemon.stop() == 0, "clean shutdown")
    except Exception as e:  # noqa: BLE001
        res.check(False, f"test aborted: {type(e).__name__}: {e}")
        daemon.kill9()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
