#!/usr/bin/env python3
"""Conformance test of /grafana, acting as Grafana's JSON datasource plugin (simpod-json-datasource 0.6.x,
and the legacy SimpleJSON calls), against the real binary over HTTP.

It ingests seeded events over the last two hours (with a burst of invalid traffic in one minute), then
sends every call the plugin makes, with the bodies it really sends (../shared/grafana/README.md: ISO
range strings, builder payloads as strings or lists, ad hoc filters as `filters` and as `adhocFilters`,
hidden targets left out, `targets: []`, tag-keys with no body), and checks the shapes the plugin accepts
and that every number equals /v1/metrics for the same range.

    python3 tests/integration/grafana_test.py --binary build/adpulse [-v]

Standard library only. The last line printed is `N passed, M failed`; the exit code is 0 only if M == 0.
"""

import argparse
import datetime
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.parse
from decimal import Decimal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crash"))
from common import Daemon, Tally  # noqa: E402

MINUTE_MS = 60_000
CAMPAIGNS = [f"gc-{i}" for i in range(1, 6)]
COUNTRIES = ["US", "GB", "DE", "FR"]
DEVICES = ["desktop", "mobile"]
AGENTS = {
    "desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/120.0.0.0 Safari/537.36",
    "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.1 Mobile/15E148 Safari/604.1",
}
N_EVENTS = 6000
BURST = 300  # events with no user agent (invalid on their own) in one minute of gc-1


def iso(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def request(port, method, path, body=None, raw=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, out


def post_json(port, path, body=None, raw=None):
    status, data = request(port, "POST", path, body=body, raw=raw)
    try:
        parsed = json.loads(data, parse_float=Decimal)
    except ValueError:
        parsed = None
    return status, parsed


def v1_metrics(port, params):
    status, data = request(port, "GET", "/v1/metrics?" + urllib.parse.urlencode(params, doseq=True))
    if status != 200:
        raise RuntimeError(f"/v1/metrics {params}: {status} {data[:300]}")
    return json.loads(data, parse_float=Decimal)


def make_events(now_ms, seed):
    rng = random.Random(seed)
    events = []
    start = now_ms - 2 * 3_600_000
    for i in range(N_EVENTS):
        device = rng.choice(DEVICES)
        events.append({
            "event_id": f"g{seed}-{i}",
            "event_type": rng.choices(["impression", "click", "conversion"], [85, 12, 3])[0],
            "timestamp": rng.randint(start, now_ms - MINUTE_MS),
            "campaign_id": rng.choice(CAMPAIGNS),
            "ad_id": f"ad-{rng.randint(1, 4)}",
            "advertiser_id": "adv-1" if rng.random() < 0.5 else "adv-2",
            "publisher_id": f"pub-{rng.randint(1, 3)}",
            "user_id": f"u{rng.randint(1, 3000)}",
            "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "country": rng.choice(COUNTRIES),
            "device_type": device,
            "user_agent": AGENTS[device],
            "bid_price": f"{rng.randint(0, 3_000_000) / 1_000_000:.6f}",
        })
    burst_minute = (now_ms - 30 * MINUTE_MS) // MINUTE_MS * MINUTE_MS
    for i in range(BURST):
        events.append({
            "event_id": f"gb{seed}-{i}", "event_type": "impression",
            "timestamp": burst_minute + rng.randint(0, MINUTE_MS - 1), "campaign_id": "gc-1",
            "user_id": f"bot{i}", "ip": "10.9.9.9", "country": "US", "device_type": "desktop",
            "bid_price": "0.100000",
        })
    return events, burst_minute


def encode(events):
    lines = []
    for e in events:
        fields = [f'"{k}": {json.dumps(v)}' for k, v in e.items() if k != "bid_price"]
        fields.append(f'"bid_price": {e["bid_price"]}')
        lines.append("{" + ", ".join(fields) + "}")
    return ("\n".join(lines) + "\n").encode()


def plugin_query(frm, to, targets, interval_ms=120_000, filters=None, adhoc=None):
    """A /query body as the plugin sends it, with the fields it carries that adpulse does not read."""
    body = {
        "app": "dashboard", "requestId": "Q117", "timezone": "browser", "panelId": 2,
        "dashboardUID": "adpulse-overview", "publicDashboardAccessToken": "",
        "range": {"from": iso(frm), "to": iso(to), "raw": {"from": "now-3h", "to": "now"}},
        "timeInfo": "", "interval": f"{interval_ms // 1000}s", "intervalMs": interval_ms,
        "maxDataPoints": 1200, "targets": targets, "scopedVars": {
            "__interval": {"text": f"{interval_ms // 1000}s", "value": f"{interval_ms // 1000}s"},
            "__interval_ms": {"text": str(interval_ms), "value": interval_ms}},
        "startTime": int(time.time() * 1000), "rangeRaw": {"from": "now-3h", "to": "now"},
    }
    if filters is not None:
        body["filters"] = filters
    if adhoc is not None:
        body["adhocFilters"] = adhoc
    return body


def target(metric, ref="A", payload=None, **extra):
    t = {"refId": ref, "datasource": {"type": "simpod-json-datasource", "uid": "P2B1C6A7F"},
         "editorMode": "builder", "target": metric, "payload": payload or {}}
    t.update(extra)
    return t


def series_totals(answer, metric_is_money=False):
    """{target name: sum of its datapoints}."""
    out = {}
    for s in answer:
        vals = [Decimal(str(v)) if v is not None else Decimal(0) for v, _ in s["datapoints"]]
        out[s["target"]] = sum(vals, Decimal(0))
    return out


def check_series_shape(res, answer, frm, to, step, what):
    ok = isinstance(answer, list) and all("target" in s and "datapoints" in s for s in answer)
    res.check(ok, f"{what}: a list of time series")
    if not ok:
        return
    for s in answer:
        times = [p[1] for p in s["datapoints"]]
        res.check(all(len(p) == 2 for p in s["datapoints"]), f"{what} {s['target']}: [value, ms] pairs")
        res.check(times == sorted(times) and len(set(times)) == len(times),
                  f"{what} {s['target']}: datapoints in time order")
        res.check(all(frm <= t <= to for t in times), f"{what} {s['target']}: every datapoint inside the range "
                  f"[{frm}, {to}] (got {times[:1]} .. {times[-1:]})")
        res.check(all(b - a == step for a, b in zip(times, times[1:])),
                  f"{what} {s['target']}: spaced by intervalMs {step}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("ADPULSE_BINARY", "build/adpulse"))
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--keep-data", action="store_true")
    args = ap.parse_args()
    res = Tally()
    root = tempfile.mkdtemp(prefix="adpulse-grafana-")
    daemon = Daemon(os.path.abspath(args.binary), os.path.join(root, "data"), os.path.join(root, "daemon.log"))
    try:
        daemon.start()
        port = daemon.port
        now = int(time.time() * 1000)
        events, burst_minute = make_events(now, args.seed)
        random.Random(args.seed).shuffle(events)
        for i in range(0, len(events), 1000):
            status, data = request(port, "POST", "/v1/events", raw=encode(events[i:i + 1000]),
                                   headers={"Content-Type": "application/x-ndjson"})
            body = json.loads(data)
            res.check(status == 200 and body["accepted"] == len(events[i:i + 1000]),
                      f"ingest batch {i // 1000}: {status} {data[:200]}")

        frm, to = now - 3 * 3_600_000 + 12_345, now + 1_000
        # ---- health check: exactly 200, with and without the trailing slash ----
        for path in ("/grafana", "/grafana/"):
            status, _ = request(port, "GET", path)
            res.check(status == 200, f"GET {path} (the plugin's health check) answers 200, got {status}")

        # ---- metric list and builder options ----
        for body in (None, {}, {"metric": "clicks", "payload": {"group_by": "campaign_id"}}):
            status, metrics = post_json(port, "/grafana/metrics", body=body)
            ok = status == 200 and isinstance(metrics, list) and all(
                "value" in m and isinstance(m.get("payloads"), list) for m in metrics)
            res.check(ok, f"/grafana/metrics with body {body!r}: a list of {{value, payloads}} ({status})")
        values = {m["value"] for m in metrics}
        res.check({"impressions", "clicks", "conversions", "spend", "ctr", "unique_users",
                   "fraud_impressions"} <= values, f"/grafana/metrics lists the metrics: {sorted(values)}")
        payload_names = {p["name"] for p in metrics[0]["payloads"]}
        res.check({"group_by", "format", "campaign_id", "country"} <= payload_names,
                  f"payloads offered: {sorted(payload_names)}")
        status, opts = post_json(port, "/grafana/metric-payload-options",
                                 {"metric": "clicks", "payload": {}, "name": "campaign_id"})
        res.check(status == 200 and sorted(o["value"] for o in opts) == CAMPAIGNS,
                  f"payload options of campaign_id are the campaigns: {status} {opts}")
        status, opts = post_json(port, "/grafana/metric-payload-options",
                                 {"metric": "clicks", "payload": {}, "name": "group_by"})
        res.check(status == 200 and "country" in [o["value"] for o in opts], f"group_by options: {opts}")

        # ---- no targets, hidden targets, unknown metric ----
        status, ans = post_json(port, "/grafana/query", plugin_query(frm, to, []))
        res.check(status == 200 and ans == [], f"targets [] answers [] ({status} {ans})")
        status, ans = post_json(port, "/grafana/query", plugin_query(frm, to, [target("clicks", hide=True)]))
        res.check(status == 200 and ans == [], f"a hidden target is not answered ({status} {ans})")
        status, ans = post_json(port, "/grafana/query", plugin_query(frm, to, [target("klicks")]))
        res.check(400 <= status < 500 and isinstance(ans, dict) and "klicks" in ans.get("message", ""),
                  f"an unknown metric answers a 4xx with a message: {status} {ans}")
        status, ans = post_json(port, "/grafana/query", raw=b'{"targets": [')
        res.check(status == 400 and "message" in (ans or {}), f"malformed JSON answers 400 with a message ({status})")

        # ---- time series: one per campaign, bucketed to intervalMs, numbers equal /v1/metrics ----
        step = 120_000
        for payload in ({"group_by": "campaign_id"}, {"group_by": ["campaign_id"]}):
            body = plugin_query(frm, to, [target("clicks", payload=payload),
                                          target("spend", ref="B", payload=payload)], interval_ms=step)
            status, ans = post_json(port, "/grafana/query", body)
            res.check(status == 200, f"/query clicks and spend by campaign ({payload}): {status} {ans}")
            if status != 200:
                continue
            check_series_shape(res, ans, frm, to, step, "clicks/spend by campaign")
            first = min(s["datapoints"][0][1] for s in ans)
            res.check(first >= frm and first - frm < step, f"series start at the range's first whole bucket "
                      f"({first} vs from {frm})")
            end = max(s["datapoints"][-1][1] for s in ans) + step
            truth = v1_metrics(port, {"dimensions": "campaign_id", "metrics": "clicks,spend",
                                      "start": first, "end": end, "granularity": "all"})
            expected = {}
            for row in truth["rows"]:
                expected[f"clicks campaign_id={row['campaign_id']}"] = Decimal(row["clicks"])
                expected[f"spend campaign_id={row['campaign_id']}"] = Decimal(str(row["spend"]))
            got = series_totals(ans)
            res.check(got == expected, f"series sums equal /v1/metrics over the same range, spend exact "
                      f"({got} vs {expected})")
            # Bucket by bucket too, at minute resolution through /v1/metrics' own granularity.
            minutes = v1_metrics(port, {"dimensions": "campaign_id", "metrics": "clicks", "start": first,
                                        "end": end, "granularity": "minute"})
            per_bucket = {}
            for row in minutes["rows"]:
                b = first + (row["time"] - first) // step * step
                key = (f"clicks campaign_id={row['campaign_id']}", b)
                per_bucket[key] = per_bucket.get(key, 0) + row["clicks"]
            per_bucket = {k: v for k, v in per_bucket.items() if v}
            got_buckets = {(s["target"], t): v for s in ans if s["target"].startswith("clicks")
                           for v, t in s["datapoints"] if v}
            diff = sorted(set(got_buckets.items()) ^ set(per_bucket.items()))
            res.check(got_buckets == per_bucket and len(per_bucket) > 50,
                      f"each datapoint equals the sum of /v1/metrics' minutes in it ({len(per_bucket)} buckets; "
                      f"differences {diff[:4]})")

        # Sanity against the ground truth: everything sent is counted, valid or invalid.
        total = v1_metrics(port, {"metrics": "impressions,clicks,conversions,fraud_impressions,fraud_clicks,"
                                  "fraud_conversions", "start": frm, "end": to})["rows"][0]
        counted = sum(total[k] for k in total)
        res.check(counted == len(events), f"/v1/metrics counts every event sent ({counted} of {len(events)})")

        # ---- ad hoc filters, in both fields, and the operators ----
        def impressions_total(**kw):
            status, ans = post_json(port, "/grafana/query", plugin_query(frm, to, [target("impressions")], **kw))
            if status != 200:
                return ("error", status, ans)
            return sum(series_totals(ans).values(), Decimal(0)), ans

        def impressions_total_payload(payload):
            status, ans = post_json(port, "/grafana/query", plugin_query(frm, to, [target("impressions",
                                                                                        payload=payload)]))
            if status != 200:
                return ("error", status, ans)
            return sum(series_totals(ans).values(), Decimal(0))

        def v1_total(filters):
            params = {"metrics": "impressions", "start": first, "end": end}
            if filters:
                params["filter"] = filters
            rows = v1_metrics(port, params)["rows"]
            return Decimal(rows[0]["impressions"]) if rows else Decimal(0)

        all_imps = v1_total([])
        us = v1_total(["country:US"])
        us_gb = v1_total(["country:US", "country:GB"])
        for field in ("filters", "adhocFilters"):
            got = impressions_total(**{"filters" if field == "filters" else "adhoc":
                                  [{"key": "country", "operator": "=", "value": "US"}]})
            res.check(got[0] == us, f"ad hoc country = US in `{field}`: {got[0]} vs /v1/metrics {us}")
        got = impressions_total(filters=[{"key": "country", "operator": "!=", "value": "US"}])
        res.check(got[0] == all_imps - us, f"country != US: {got[0]} vs {all_imps - us}")
        got = impressions_total(filters=[{"key": "country", "operator": "=|", "value": "US", "values": ["US", "GB"]}])
        res.check(got[0] == us_gb, f"country =| [US, GB]: {got[0]} vs {us_gb}")
        got = impressions_total(filters=[{"key": "country", "operator": "!=|", "value": "US", "values": ["US", "GB"]}])
        res.check(got[0] == all_imps - us_gb, f"country !=| [US, GB]: {got[0]} vs {all_imps - us_gb}")
        got = impressions_total(filters=[{"key": "country", "operator": "=~", "value": "U.|G."}])
        res.check(got[0] == us_gb, f"country =~ U.|G.: {got[0]} vs {us_gb}")
        got = impressions_total(filters=[{"key": "country", "operator": "=", "value": "US"},
                                    {"key": "country", "operator": "=", "value": "GB"}])
        res.check(got[0] == 0, f"country = US and country = GB matches nothing: {got[0]}")
        got = impressions_total(filters=[{"key": "country", "operator": "<", "value": "US"}])
        res.check(got[0] == "error" and got[1] == 400 and "operator" in got[2].get("message", ""),
                  f"an unsupported operator answers 400 with a message: {got}")
        # A payload filter and an ad hoc filter together.
        status, ans = post_json(port, "/grafana/query", plugin_query(
            frm, to, [target("impressions", payload={"campaign_id": "gc-2", "group_by": "country"})],
            filters=[{"key": "device_type", "operator": "=", "value": "mobile"}]))
        truth = v1_metrics(port, {"dimensions": "country", "metrics": "impressions", "start": first, "end": end,
                                  "filter": ["campaign_id:gc-2", "device_type:mobile"]})
        expected = {f"impressions country={r['country']}": Decimal(r["impressions"]) for r in truth["rows"]}
        res.check(status == 200 and series_totals(ans) == expected,
                  f"payload campaign_id + ad hoc device_type, by country: {series_totals(ans) if ans else ans} "
                  f"vs {expected}")

        # ---- tables: the whole range, equal to /v1/metrics with the same from and to ----
        status, ans = post_json(port, "/grafana/query", plugin_query(
            frm, to, [target("ctr", payload={"group_by": "campaign_id,country", "format": "table"}),
                      target("unique_users", ref="B", payload={"format": "table"})]))
        ok = status == 200 and len(ans) == 2 and all(
            t.get("type") == "table" and all(len(r) == len(t["columns"]) for r in t["rows"]) for t in ans)
        res.check(ok, f"two tables, each row as long as its columns: {status} {str(ans)[:300]}")
        if ok:
            truth = v1_metrics(port, {"dimensions": "campaign_id,country", "metrics": "ctr,unique_users",
                                      "start": frm, "end": to})
            expected = sorted([r["campaign_id"], r["country"], Decimal(str(r["ctr"]))] for r in truth["rows"])
            got = sorted([r[0], r[1], Decimal(str(r[2]))] for r in ans[0]["rows"])
            res.check([c["text"] for c in ans[0]["columns"]] == ["campaign_id", "country", "ctr"],
                      f"table columns: {ans[0]['columns']}")
            res.check(got == expected, f"table ctr by campaign and country equals /v1/metrics ({len(got)} rows)")
            total_users = v1_metrics(port, {"metrics": "unique_users", "start": frm, "end": to})["rows"][0]
            res.check(ans[1]["rows"] == [[total_users["unique_users"]]],
                      f"unique_users table {ans[1]['rows']} vs {total_users}")

        # ---- variables, tag keys and values, legacy search ----
        status, ans = post_json(port, "/grafana/variable", {"payload": {"target": "campaign_id"},
                                                           "range": {"from": iso(frm), "to": iso(to)}})
        res.check(status == 200 and sorted(v["__value"] for v in ans) == CAMPAIGNS and
                  all(v["__text"] == v["__value"] for v in ans), f"/variable campaign_id: {status} {ans}")
        status, ans = post_json(port, "/grafana/variable", {"payload": {"target": "country", "campaign_id": "gc-1",
                                                                        "device_type": "desktop"}})
        res.check(status == 200 and {v["__value"] for v in ans} == set(COUNTRIES),
                  f"/variable country for a chained campaign filter: {ans}")
        for raw in (None, b"{}"):
            status, ans = post_json(port, "/grafana/tag-keys", raw=raw)
            keys = {k["text"] for k in ans} if status == 200 else set()
            res.check(status == 200 and {"campaign_id", "country", "device_type"} <= keys and
                      all(k.get("type") == "string" for k in ans), f"/tag-keys with body {raw!r}: {status} {ans}")
        status, ans = post_json(port, "/grafana/tag-values", {"key": "country"})
        res.check(status == 200 and sorted(v["text"] for v in ans) == sorted(COUNTRIES),
                  f"/tag-values country: {status} {ans}")
        status, ans = post_json(port, "/grafana/tag-values", {"key": "colour"})
        res.check(status == 400 and "colour" in ans.get("message", ""), f"/tag-values of an unknown key: {ans}")
        status, ans = post_json(port, "/grafana/search", {"target": ""})
        res.check(status == 200 and "clicks" in ans and all(isinstance(x, str) for x in ans),
                  f"legacy /search lists metric names: {ans}")
        status, ans = post_json(port, "/grafana/search", {"target": "campaign_id"})
        res.check(status == 200 and sorted(ans) == CAMPAIGNS, f"legacy /search campaign_id: {ans}")

        # ---- annotations: the burst of invalid traffic, and nothing else ----
        status, ans = post_json(port, "/grafana/query", plugin_query(
            frm, to, [target("fraud_impressions", ref="Anno", payload={"campaign_id": "gc-1"})], interval_ms=60_000))
        ok = status == 200 and len(ans) == 1 and "fields" in ans[0]
        res.check(ok, f"an annotation query answers one data frame: {status} {str(ans)[:300]}")
        if ok:
            fields = {f["name"]: f["values"] for f in ans[0]["fields"]}
            res.check("time" in fields and "text" in fields, f"the frame has time and text: {list(fields)}")
            res.check(fields.get("time") == [burst_minute] and fields.get("timeEnd") == [burst_minute + MINUTE_MS],
                      f"one annotation at the burst's minute {burst_minute}: {fields}")
            res.check("invalid traffic" in (fields.get("text") or [""])[0], f"its text: {fields.get('text')}")
        status, ans = post_json(port, "/grafana/annotations", {
            "range": {"from": iso(frm), "to": iso(to)}, "rangeRaw": {"from": "now-3h", "to": "now"},
            "annotation": {"name": "fraud", "datasource": "adpulse", "enable": True, "query": "campaign_id:gc-1"}})
        res.check(status == 200 and isinstance(ans, list) and len(ans) == 1 and ans[0]["time"] == burst_minute
                  and "text" in ans[0] and isinstance(ans[0].get("tags"), list),
                  f"legacy /annotations: {status} {ans}")

        # ---- limits count series, not stored rows: a day at one minute, 20 series ----
        day_from = now - 86_400_000
        status, ans = post_json(port, "/grafana/query", plugin_query(
            day_from, now, [target("clicks", payload={"group_by": "campaign_id,country"})], interval_ms=60_000))
        res.check(status == 200 and len(ans) == len(CAMPAIGNS) * len(COUNTRIES) and
                  all(len(s["datapoints"]) in (1439, 1440) for s in ans),
                  f"24 h at 1 min by campaign and country: 20 series of 1440 points "
                  f"({status} {len(ans) if isinstance(ans, list) else ans})")
        # ... and all targets together: 21 series of 99,000 minutes pass 2,000,000 values.
        long_from = now - 99_000 * 60_000
        status, ans = post_json(port, "/grafana/query", plugin_query(
            long_from, now, [target("clicks", ref=f"R{i}") for i in range(21)], interval_ms=60_000))
        res.check(status == 400 and "2000000" in ans.get("message", ""),
                  f"21 series of 99,000 datapoints pass the answer's limit: {status} {str(ans)[:200]}")
        status, ans = post_json(port, "/grafana/query", plugin_query(
            long_from, now, [target("clicks", ref=f"R{i}") for i in range(20)], interval_ms=60_000))
        res.check(status == 200 and len(ans) == 20, f"20 such series stay inside it: {status} "
                  f"{str(ans)[:200] if status != 200 else len(ans)}")

        # ---- a range holding no whole interval: no datapoint outside it ----
        minute = now // MINUTE_MS * MINUTE_MS
        hour = (now - 2 * 3_600_000) // 3_600_000 * 3_600_000
        for a, b, step_ms in ((minute - 50_000, minute - 20_000, 60_000),
                              (hour + 60_000, hour + 50 * 60_000, 3_600_000)):
            status, ans = post_json(port, "/grafana/query", plugin_query(a, b, [target("clicks")],
                                                                        interval_ms=step_ms))
            res.check(status == 200 and len(ans) == 1 and ans[0]["datapoints"] == [],
                      f"range [{a}, {b}) at interval {step_ms}: a series without datapoints, got {str(ans)[:200]}")
        status, ans = post_json(port, "/grafana/annotations", {
            "range": {"from": iso(minute - 50_000), "to": iso(minute - 20_000)}, "annotation": {"query": ""}})
        res.check(status == 200 and ans == [], f"legacy /annotations over less than a minute: {status} {ans}")
        status, ans = post_json(port, "/grafana/query", dict(plugin_query(frm, to, [target("clicks")]),
                                                             intervalMs=1e18))
        res.check(status == 200 and len(ans) == 1, f"a huge intervalMs is clamped, not overflowed: {status} {ans}")

        # ---- multi-value variables as the plugin formats them: (a|b), regex-escaped ----
        two = v1_total(["campaign_id:gc-1", "campaign_id:gc-2"])
        for value in ("(gc-1|gc\\-2)", ["(gc-1|gc-2)"], "{gc-1,gc-2}", "gc-1,gc-2"):
            got = impressions_total_payload({"campaign_id": value})
            res.check(got == two, f"payload campaign_id {value!r}: {got} vs /v1/metrics {two}")
        got = impressions_total_payload({"campaign_id": "gc\\-1"})
        res.check(got == v1_total(["campaign_id:gc-1"]), f"an escaped single value is unescaped: {got}")
        for value in ("*", ".*", "$__all"):
            got = impressions_total_payload({"campaign_id": value})
            res.check(got == all_imps, f"payload campaign_id {value!r} is no filter: {got} vs {all_imps}")

        # ---- the shipped dashboard's own queries, as the plugin sends them ----
        board = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                                            "grafana", "adpulse-overview.json")))
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            q = var["query"]
            res.check(isinstance(q, dict) and q.get("format") in ("string", "json") and "query" in q,
                      f"dashboard variable {var['name']}: the plugin's {{query, format}} shape: {q}")
            payload = {"target": q["query"]} if q.get("format") == "string" else json.loads(q["query"])
            status, ans = post_json(port, "/grafana/variable", {"payload": payload,
                                                               "range": {"from": iso(frm), "to": iso(to)}})
            res.check(status == 200 and sorted(v["__value"] for v in ans) == CAMPAIGNS,
                      f"dashboard variable {var['name']} lists the campaigns: {status} {ans}")
        panel_targets = [t for p in board["panels"] for t in p.get("targets", [])]
        for selected in ("*", "(gc-1|gc-3)"):
            for t in panel_targets:
                t2 = json.loads(json.dumps(t).replace("$campaign", selected.replace("\\", "\\\\")))
                status, ans = post_json(port, "/grafana/query", plugin_query(frm, to, [t2]))
                res.check(status == 200 and isinstance(ans, list) and len(ans) >= 1,
                          f"dashboard target {t['target']} {t['payload']} with $campaign={selected}: {status} "
                          f"{str(ans)[:160]}")

        # ---- a datasource URL with a trailing slash; legacy search of typed text ----
        status, ans = post_json(port, "/grafana//metrics", {})
        res.check(status == 200 and isinstance(ans, list) and len(ans) > 5,
                  f"/grafana//metrics (URL ending in /) answers the metrics: {status}")
        status, ans = post_json(port, "/grafana/search", {"target": "cl"})
        res.check(status == 200 and "clicks" in ans and all(x.startswith("cl") for x in ans),
                  f"legacy /search of 'cl' lists the metrics it begins: {status} {ans}")
        status, ans = post_json(port, "/grafana/variable", {"payload": {"target": "colour"}})
        res.check(status == 400 and "colour" in ans.get("message", ""), f"/variable of an unknown target: {ans}")

        # ---- unknown endpoint ----
        status, ans = post_json(port, "/grafana/nothing", {})
        res.check(status == 404 and "message" in ans, f"an unknown /grafana endpoint answers 404: {status} {ans}")
        res.check(daemon.stop() == 0, "clean shutdown")
    except Exception as e:  # noqa: BLE001
        res.check(False, f"test aborted: {type(e).__name__}: {e}")
        daemon.kill9()
    finally:
        if args.keep_data:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
