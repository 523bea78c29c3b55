#!/usr/bin/env python3
"""CSV reports, read with Python's csv module as a spreadsheet would: `format=csv` on /v1/metrics,
POST /v1/query, /v1/top, /v1/funnel and /v1/billing must give the same rows and the same numbers as the
JSON answer to the same query (money as exact decimals), against the real binary over HTTP. A campaign
whose id holds a comma, a quote and a line break must come back whole.

    python3 tests/integration/csv_test.py --binary build/adpulse

Standard library only. The last line printed is `N passed, M failed`; the exit code is 0 only if M == 0.
"""

import argparse
import csv
import datetime
import io
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "crash"))
sys.path.insert(0, HERE)
from common import Daemon, Tally  # noqa: E402
from grafana_test import encode, make_events, request  # noqa: E402

ODD_CAMPAIGN = 'odd, "quoted"\ncampaign'


def fetch(port, path, params, method="GET", body=None):
    if method == "GET":
        status, data = request(port, "GET", path + "?" + urllib.parse.urlencode(params, doseq=True))
    else:
        status, data = request(port, "POST", path, body=body)
    return status, data


def as_csv(data):
    text = data.decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def same_number(csv_text, json_value):
    return Decimal(csv_text) == Decimal(str(json_value))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("ADPULSE_BINARY", "build/adpulse"))
    ap.add_argument("--seed", type=int, default=977)
    args = ap.parse_args()
    res = Tally()
    root = tempfile.mkdtemp(prefix="adpulse-csv-")
    daemon = Daemon(os.path.abspath(args.binary), os.path.join(root, "data"), os.path.join(root, "daemon.log"))
    try:
        daemon.start()
        port = daemon.port
        now = int(time.time() * 1000)
        events, _ = make_events(now, args.seed)
        for e in events[:400]:
            e["campaign_id"] = ODD_CAMPAIGN
        for i in range(0, len(events), 1000):
            status, data = request(port, "POST", "/v1/events", raw=encode(events[i:i + 1000]),
                                   headers={"Content-Type": "application/x-ndjson"})
            res.check(status == 200, f"ingest: {status} {data[:200]}")
        start, end = now - 3 * 3_600_000, now + 60_000

        # ---- /v1/metrics: rows per hour, campaign and country ----
        params = {"dimensions": "campaign_id,country", "granularity": "hour", "start": start, "end": end,
                  "metrics": "impressions,clicks,conversions,spend,ctr,cpm,unique_users,fraud_impressions,"
                             "fraud_spend"}
        status, data = fetch(port, "/v1/metrics", params)
        as_json = json.loads(data, parse_float=Decimal)["rows"]
        status_c, data_c = fetch(port, "/v1/metrics", dict(params, format="csv"))
        res.check(status == 200 and status_c == 200, f"/v1/metrics answers JSON and CSV ({status}, {status_c})")
        c = http_header(port, "/v1/metrics?" + urllib.parse.urlencode(dict(params, format="csv")))
        res.check(c.startswith("text/csv"), f"CSV is served as text/csv: {c}")
        res.check(b"\r\n" in data_c and data_c.endswith(b"\r\n"), "CSV lines end in CRLF (RFC 4180)")
        rows = as_csv(data_c)
        metrics = params["metrics"].split(",")
        res.check(list(rows[0].keys()) == ["time", "time_rfc3339", "campaign_id", "country"] + metrics,
                  f"the header row: {list(rows[0].keys())}")
        res.check(len(rows) == len(as_json) and len(rows) > 20, f"{len(rows)} CSV rows, {len(as_json)} JSON rows")
        mismatches = []
        for r, j in zip(rows, as_json):
            if int(r["time"]) != j["time"] or r["campaign_id"] != j["campaign_id"] or r["country"] != j["country"]:
                mismatches.append((r, j))
                continue
            stamp = datetime.datetime.fromisoformat(r["time_rfc3339"].replace("Z", "+00:00"))
            if int(stamp.timestamp() * 1000) != j["time"]:
                mismatches.append(("time_rfc3339", r["time_rfc3339"], j["time"]))
            for m in metrics:
                if not same_number(r[m], j[m]):
                    mismatches.append((m, r[m], j[m]))
        res.check(not mismatches, f"every CSV row equals its JSON row: {mismatches[:3]}")
        spend_text = [r["spend"] for r in rows]
        res.check(all(len(s.split(".")[1]) == 6 for s in spend_text),
                  f"money has six exact decimals: {spend_text[:3]}")
        odd = [r for r in rows if r["campaign_id"] == ODD_CAMPAIGN]
        res.check(len(odd) > 0 and sum(int(r["impressions"]) for r in odd) ==
                  sum(j["impressions"] for j in as_json if j["campaign_id"] == ODD_CAMPAIGN),
                  f"a campaign id with a comma, quotes and a line break comes back whole ({len(odd)} rows)")

        # ---- POST /v1/query with format csv, granularity all, in a time zone ----
        body = {"dimensions": ["device_type"], "metrics": ["impressions", "spend"], "start": start, "end": end,
                "granularity": "hour", "tz": "Asia/Kolkata", "format": "csv"}
        status, data = fetch(port, "/v1/query", None, method="POST", body=body)
        rows = as_csv(data) if status == 200 else []
        body["format"] = "json"
        _, jdata = fetch(port, "/v1/query", None, method="POST", body=body)
        jrows = json.loads(jdata, parse_float=Decimal)["rows"]
        res.check(status == 200 and len(rows) == len(jrows) and all(
            int(r["time"]) == j["time"] and r["device_type"] == j["device_type"] and
            int(r["impressions"]) == j["impressions"] and same_number(r["spend"], j["spend"])
            for r, j in zip(rows, jrows)), f"POST /v1/query format csv equals its JSON ({len(rows)} rows)")
        res.check(all(r["time_rfc3339"].endswith("+05:30") for r in rows),
                  f"times are written in the query's zone: {[r['time_rfc3339'] for r in rows[:2]]}")

        # ---- /v1/top ----
        params = {"metric": "spend", "dimension": "campaign_id", "limit": 10, "start": start, "end": end}
        _, jdata = fetch(port, "/v1/top", params)
        jrows = json.loads(jdata, parse_float=Decimal)["rows"]
        status, data = fetch(port, "/v1/top", dict(params, format="csv"))
        rows = as_csv(data) if status == 200 else []
        res.check(status == 200 and len(rows) == len(jrows) and all(
            int(r["rank"]) == i + 1 and r["campaign_id"] == j["campaign_id"] and same_number(r["value"], j["value"])
            and same_number(r["spend"], j["spend"])
            and int(r["impressions"]) == j["impressions"] and int(r["clicks"]) == j["clicks"]
            for i, (r, j) in enumerate(zip(rows, jrows))), f"/v1/top CSV equals its JSON: {rows[:2]} vs {jrows[:2]}")

        header = data.decode().split("\r\n", 1)[0].split(",") if status == 200 else []
        res.check(len(header) == len(set(header)) and header[:3] == ["rank", "campaign_id", "value"],
                  f"/v1/top CSV names each column once, the ranked one `value`: {header}")

        # ---- /v1/funnel ----
        params = {"campaign_id": "gc-3", "start": start, "end": end}
        _, jdata = fetch(port, "/v1/funnel", params)
        j = json.loads(jdata, parse_float=Decimal)
        status, data = fetch(port, "/v1/funnel", dict(params, format="csv"))
        rows = as_csv(data) if status == 200 else []
        res.check(len(rows) == 1 and all(same_number(rows[0][k], j[k]) for k in
                                         ("impressions", "clicks", "conversions", "unattributed_conversions",
                                          "ctr", "cvr", "spend", "cpa")),
                  f"/v1/funnel CSV equals its JSON: {rows} vs {j}")
        _, jdata = fetch(port, "/v1/funnel", dict(params, by="ad"))
        ads = json.loads(jdata, parse_float=Decimal)["ads"]
        status, data = fetch(port, "/v1/funnel", dict(params, by="ad", format="csv"))
        rows = as_csv(data) if status == 200 else []
        res.check(len(rows) == len(ads) > 1 and all(
            r["campaign_id"] == "gc-3" and r["ad_id"] == a["ad_id"] and
            all(same_number(r[k], a[k]) for k in ("impressions", "clicks", "conversions", "spend", "cpa"))
            for r, a in zip(rows, ads)), f"/v1/funnel by=ad CSV: a row per ad, equal to its JSON: {rows[:2]} vs {ads[:2]}")

        # ---- /v1/billing: rows per campaign, currency and day; their sums are the JSON totals ----
        params = {"advertiser_id": "adv-1", "start": start, "end": end}
        _, jdata = fetch(port, "/v1/billing", params)
        j = json.loads(jdata)
        status, data = fetch(port, "/v1/billing", dict(params, format="csv"))
        rows = as_csv(data) if status == 200 else []
        fields = ("impressions", "clicks", "conversions", "spend", "fraud_impressions", "fraud_clicks",
                  "fraud_conversions", "fraud_spend")
        res.check(status == 200 and len(rows) == len(j["rows"]) and all(
            r["advertiser_id"] == "adv-1" and int(r["time"]) == jr["time"] and r["campaign_id"] == jr["campaign_id"]
            and r["currency"] == jr["currency"] and all(r[f] == str(jr[f]) for f in fields)
            for r, jr in zip(rows, j["rows"])), f"/v1/billing CSV rows equal the JSON rows ({len(rows)})")
        sums = {}
        for r in rows:
            s = sums.setdefault(r["currency"], {f: Decimal(0) for f in fields})
            for f in fields:
                s[f] += Decimal(r[f])
        res.check(all(sums.get(t["currency"], {}).get(f) == Decimal(str(t[f])) for t in j["totals"] for f in fields),
                  f"the CSV rows sum to the JSON totals: {sums} vs {j['totals']}")

        # ---- a bad format ----
        status, data = fetch(port, "/v1/metrics", {"start": start, "end": end, "format": "xml"})
        res.check(status == 400 and b"format" in data, f"format=xml answers 400 naming format: {status} {data}")
        res.check(daemon.stop() == 0, "clean shutdown")
    except Exception as e:  # noqa: BLE001
        res.check(False, f"test aborted: {type(e).__name__}: {e}")
        daemon.kill9()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res.finish()


def http_header(port, path):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    return r.getheader("Content-Type") or ""


if __name__ == "__main__":
    sys.exit(main())
