#!/usr/bin/env python3
"""Fraud detection end to end, against the real binary over HTTP.

adpulse-fraudgen writes labelled traffic (human-like users mixed with every attack pattern) as
NDJSON; this test posts it to a daemon with the traffic's blocklist configured, then checks:

- the per-event audit (GET /v1/fraud/events) returns a verdict for every event sent, and the
  verdicts reach precision >= 0.95 and recall >= 0.90 on the labelled invalid clicks;
- billable impressions, clicks, conversions and spend exclude exactly the invalid events, and the
  fraud_* metrics count exactly them, per campaign at minute, hour and day granularity and in
  /v1/billing (exact decimal spend), computed from the audited verdicts as ground truth;
- /v1/fraud names the flooding address at the top, and every publisher's invalid share adds up;
- /metrics counts each signal exactly as often as the audit shows it fired;
- after kill -9 and a restart, every one of those answers is the same;
- enriched dimensions (browser, os, device_type, country, city) are queryable through a cube
  that names them, and agree with the audit;
- SIGHUP reloads the blocklist (a malformed one keeps the old);
- startup: with no geo database it runs and says geo is off; a malformed geo database or regex
  file stops it with one clear line.

Usage: fraud_e2e_test.py --binary build/adpulse [--fraudgen build/benchmarks/adpulse-fraudgen]
"""
import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import defaultdict
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_test import Daemon, one_shot, parse_json  # noqa: E402

MINUTE_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000
SIGNALS = ["bot_user_agent", "missing_user_agent", "click_flood", "click_farm", "blocklisted_ip",
           "impossible_timing", "orphan_click", "repeated_click", "geo_anomaly", "device_mismatch",
           "click_injection"]


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, expected="", got=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}: expected {expected}; got {str(got)[:600]}", flush=True)

    def info(self, text):
        print(f"info {text}", flush=True)


def get(port, path, params):
    url = path + "?" + urllib.parse.urlencode(params)
    status, _, data = one_shot(port, "GET", url, timeout=120)
    return status, parse_json(data), data


def micros(text):
    return int(Decimal(text) * 1_000_000)


def startup_checks(binary, root, res):
    """No geo database: runs, says geo is off. Malformed geo database or regexes: one clear line."""
    bad_mmdb = os.path.join(root, "bad.mmdb")
    with open(bad_mmdb, "w") as f:
        f.write("this is not a MaxMind database\n")
    bad_yaml = os.path.join(root, "bad-regexes.yaml")
    with open(bad_yaml, "w") as f:
        f.write("user_agent_parsers:\n  - regex: 'Chrome/(\\d+)'\n  - family_replacement: x\n")
    cases = [
        ("a malformed geo database", f'[enrichment]\ngeo_databases = ["{bad_mmdb}"]\n', bad_mmdb),
        ("a malformed regex file", f'[enrichment]\nuser_agent_regexes = "{bad_yaml}"\n', bad_yaml),
    ]
    for what, text, path in cases:
        config = os.path.join(root, "startup.toml")
        with open(config, "w") as f:
            f.write(text)
        d = os.path.join(root, "startup-data")
        p = subprocess.run([binary, "--listen", "127.0.0.1:0", "--data-dir", d, "--config", config],
                           capture_output=True, text=True, timeout=60)
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith("adpulse: ")]
        res.check(p.returncode != 0 and len(lines) == 1 and path in lines[0],
                  f"startup with {what}: fails with one line naming the file", "exit != 0, one 'adpulse:' line",
                  f"exit {p.returncode}: {p.stderr[-400:]}")
        shutil.rmtree(d, ignore_errors=True)
    config = os.path.join(root, "nogeo.toml")
    with open(config, "w") as f:
        f.write('[enrichment]\ngeo_databases = ["/nonexistent/dbip-city-ipv4.mmdb"]\n')
    d = Daemon(binary, os.path.join(root, "nogeo-data"), root, "nogeo", config=config)
    os.mkdir(d.data_dir)
    d.start()
    ok, _, last = d.wait_ready(60)
    status, _, data = one_shot(d.port, "POST", "/v1/events", headers={"Content-Type": "application/json"},
                               body=json.dumps({"event_id": "ng-1", "event_type": "impression",
                                                "timestamp": int(time.time() * 1000) - 1000, "campaign_id": "c",
                                                "ip_address": "8.8.8.8", "user_agent": "Mozilla/5.0 (Windows NT "
                                                "10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                                                "Chrome/120.0 Safari/537.36"}).encode()) if ok else (None, None, b"")
    d.stop()
    log = d.stderr_tail(200)
    res.check(ok and status == 200 and "geo is off" in log,
              "startup with no geo database: runs, accepts events, says geo is off", "200 and 'geo is off'",
              f"{last} {status} {log[-300:]}")


def check_enriched_cube(port, verdicts, sent, start_ms, stop_ms, res):
    """A cube naming the enriched dimensions answers with what enrichment filled in."""
    want = defaultdict(int)
    for eid, v in verdicts.items():
        if not v["invalid"] and v["event_type"] == "impression":
            want[(v["browser"], v["os"], v["device_type"], v["country"], v["city"])] += 1
    status, obj, raw = get(port, "/v1/metrics", [("dimensions", "browser,os,device_type,country,city"),
                                                  ("metrics", "impressions"), ("start", start_ms), ("end", stop_ms)])
    got = defaultdict(int)
    if status == 200 and isinstance(obj, dict):
        for row in obj.get("rows", []):
            got[(row["browser"], row["os"], row["device_type"], row["country"], row["city"])] += row["impressions"]
    got = {k: v for k, v in got.items() if v}
    res.check(status == 200 and dict(want) == got and any(k[0] == "Mobile Safari" and k[1] == "iOS" for k in got),
              "enriched dimensions: a cube of browser, os, device_type, country, city agrees with the audit",
              f"{len(want)} groups", f"{status} {len(got)} groups; {raw[:200]}")


def check_sighup(daemon, blocklist, now, res):
    """SIGHUP reloads fraud.blocklist_file; a malformed file keeps the previous one."""
    ua = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")

    def post_one(eid, ip):
        body = json.dumps({"event_id": eid, "event_type": "impression", "timestamp": now - 5000,
                           "campaign_id": "camp-hup", "user_id": eid, "ip_address": ip, "user_agent": ua})
        one_shot(daemon.port, "POST", "/v1/events", body=body.encode(), headers={"Content-Type": "application/json"})
        status, obj, raw = get(daemon.port, "/v1/fraud/events", [("campaign_id", "camp-hup"), ("event_id", eid),
                                                                 ("include_valid", "true"), ("start", now - HOUR_MS),
                                                                 ("end", now + HOUR_MS)])
        return obj["events"][0]["signals"] if status == 200 and obj.get("events") else None

    res.check(post_one("hup-1", "203.0.113.77") == [], "before SIGHUP: 203.0.113.77 is not blocklisted", [], None)
    with open(blocklist, "a") as f:
        f.write("203.0.113.0/24\n")
    daemon.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    res.check(post_one("hup-2", "203.0.113.78") == ["blocklisted_ip"],
              "after SIGHUP: the reloaded blocklist flags 203.0.113.0/24", ["blocklisted_ip"], None)
    with open(blocklist, "a") as f:
        f.write("not-an-address\n")
    daemon.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    res.check(post_one("hup-3", "203.0.113.79") == ["blocklisted_ip"] and daemon.alive(),
              "a malformed blocklist on SIGHUP keeps the previous one", ["blocklisted_ip"], None)
    res.check("blocklist not reloaded" in daemon.stderr_tail(400), "the log says the blocklist was not reloaded",
              "a warning", daemon.stderr_tail(5))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--fraudgen")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--humans", type=int, default=3000)
    ap.add_argument("--keep-data", action="store_true")
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)  # the daemon runs in its data dir's parent
    fraudgen = args.fraudgen or os.path.join(os.path.dirname(os.path.abspath(args.binary)), "benchmarks",
                                             "adpulse-fraudgen")
    res = Results()
    root = tempfile.mkdtemp(prefix="adpulse-fraud-e2e-")
    daemon = None
    try:
        now = int(time.time() * 1000)
        end_ms = now - 2 * MINUTE_MS
        span_s = 7200
        events_path = os.path.join(root, "events.ndjson")
        labels_path = os.path.join(root, "labels.csv")
        blocklist = os.path.join(root, "blocklist.txt")
        t0 = time.monotonic()
        subprocess.run([fraudgen, "--out", events_path, "--labels", labels_path, "--blocklist", blocklist,
                        "--seed", str(args.seed), "--humans", str(args.humans), "--span-s", str(span_s),
                        "--end-ms", str(end_ms)], check=True)
        with open(labels_path, newline="") as f:
            labels = {row["event_id"]: row for row in csv.DictReader(f)}
        with open(events_path, "rb") as f:
            lines = f.read().splitlines()
        sent = {}
        for line in lines:
            e = json.loads(line)
            sent[e["event_id"]] = e
        res.info(f"{len(lines)} labelled events generated in {time.monotonic() - t0:.1f} s")

        startup_checks(args.binary, root, res)
        data_dir = os.path.join(root, "data")
        os.mkdir(data_dir)
        config = os.path.join(root, "adpulse.toml")
        # The default cubes, plus one that names the enriched dimensions.
        defaults = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "config",
                                     "adpulse.toml")).read()
        cubes = defaults[defaults.index("[[cubes]]"):]
        with open(config, "w") as f:
            f.write(f'[fraud]\nblocklist_file = "{blocklist}"\n\n{cubes}\n'
                    '[[cubes]]\nname = "enriched"\n'
                    'dimensions = ["browser", "os", "device_type", "country", "city"]\nunique_users = false\n')

        def start(name):
            d = Daemon(args.binary, data_dir, root, name, config=config)
            d.start()
            ok, secs, last = d.wait_ready(60)
            res.check(ok, f"{name}: ready", "200 from /readyz", last)
            if not ok:
                print(d.stderr_tail(), flush=True)
            return d

        daemon = start("fraud1")
        t0 = time.monotonic()
        accepted = 0
        for i in range(0, len(lines), 1000):
            body = b"\n".join(lines[i:i + 1000])
            status, _, data = one_shot(daemon.port, "POST", "/v1/events", body=body,
                                       headers={"Content-Type": "application/x-ndjson"}, timeout=60)
            obj = parse_json(data)
            if status == 200 and isinstance(obj, dict):
                accepted += obj.get("accepted", 0)
            else:
                res.check(False, "POST /v1/events", "200", f"{status} {data[:300]}")
        res.check(accepted == len(lines), "every labelled event accepted", len(lines), accepted)
        res.info(f"posted in {time.monotonic() - t0:.1f} s")
        start_ms = (end_ms - span_s * 1000) // DAY_MS * DAY_MS
        stop_ms = (now // DAY_MS + 1) * DAY_MS
        campaigns = sorted({e["campaign_id"] for e in sent.values()})
        campaign_set = set(campaigns)
        advertisers = sorted({e["advertiser_id"] for e in sent.values()})

        def audit():
            verdicts = {}
            for c in campaigns:
                status, obj, raw = get(daemon.port, "/v1/fraud/events",
                                       [("campaign_id", c), ("include_valid", "true"), ("limit", 10000),
                                        ("start", end_ms - span_s * 1000 - HOUR_MS), ("end", now + MINUTE_MS)])
                if status != 200 or not isinstance(obj, dict):
                    res.check(False, f"/v1/fraud/events for {c}", "200", f"{status} {raw[:300]}")
                    continue
                res.check(not obj.get("truncated"), f"/v1/fraud/events for {c}: not truncated", False, obj.get("count"))
                for e in obj["events"]:
                    verdicts[e["event_id"]] = e
            return verdicts

        def expected_counters(verdicts, level_ms):
            want = defaultdict(lambda: defaultdict(int))
            for eid, e in sent.items():
                v = verdicts.get(eid)
                if v is None:
                    continue
                key = (e["campaign_id"], e["timestamp"] // level_ms * level_ms)
                t = e["event_type"] + "s"
                prefix = "fraud_" if v["invalid"] else ""
                want[key][prefix + t] += 1
                want[key][prefix + "spend"] += micros(str(e["bid_price"]))
            return want

        def check_metrics(verdicts, when):
            for gran, level_ms in (("minute", MINUTE_MS), ("hour", HOUR_MS), ("day", DAY_MS)):
                want = expected_counters(verdicts, level_ms)
                status, obj, raw = get(daemon.port, "/v1/metrics", [
                    ("dimensions", "campaign_id"), ("granularity", gran), ("start", start_ms), ("end", stop_ms),
                    ("metrics", "impressions,clicks,conversions,spend,fraud_impressions,fraud_clicks,"
                                "fraud_conversions,fraud_spend")])
                got = {}
                if status == 200 and isinstance(obj, dict):
                    for row in obj.get("rows", []):
                        if row["campaign_id"] in campaign_set:
                            got[(row["campaign_id"], row["time"])] = row
                bad = []
                for key in set(want) | set(got):
                    w, g = want.get(key, {}), got.get(key, {})
                    for m in ("impressions", "clicks", "conversions", "fraud_impressions", "fraud_clicks",
                              "fraud_conversions"):
                        if w.get(m, 0) != g.get(m, 0):
                            bad.append((key, m, w.get(m, 0), g.get(m, 0)))
                    for m in ("spend", "fraud_spend"):
                        if abs(w.get(m, 0) / 1e6 - float(g.get(m, 0))) > 1e-6 * max(1, w.get(m, 0) / 1e6):
                            bad.append((key, m, w.get(m, 0) / 1e6, g.get(m, 0)))
                res.check(status == 200 and not bad and len(got) > 0,
                          f"{when}: billable and fraud_* per campaign and {gran} match the verdicts exactly",
                          "no difference", f"{status}; {len(bad)} differences, first {bad[:3]}")
            # Billing: exact decimals per advertiser and day.
            want = defaultdict(lambda: [0, 0])
            for eid, e in sent.items():
                v = verdicts.get(eid)
                if v is not None:
                    want[(e["advertiser_id"], e["campaign_id"])][1 if v["invalid"] else 0] += micros(str(e["bid_price"]))
            got = defaultdict(lambda: [0, 0])
            for adv in advertisers:
                status, obj, raw = get(daemon.port, "/v1/billing", [("advertiser_id", adv), ("start", start_ms),
                                                                    ("end", stop_ms)])
                if status != 200 or not isinstance(obj, dict):
                    res.check(False, f"{when}: /v1/billing {adv}", "200", f"{status} {raw[:300]}")
                    continue
                for row in obj.get("rows", []):
                    got[(adv, row["campaign_id"])][0] += micros(row["spend"])
                    got[(adv, row["campaign_id"])][1] += micros(row["fraud_spend"])
            res.check(dict(want) == dict(got), f"{when}: /v1/billing spend and fraud_spend exact per campaign",
                      sorted(want.items())[:3], sorted(got.items())[:3])

        def check_signal_metrics(verdicts, when):
            status, _, data = one_shot(daemon.port, "GET", "/metrics")
            text = data.decode()
            fired = defaultdict(int)
            for v in verdicts.values():
                for s in v["signals"]:
                    fired[s] += 1
            for s in SIGNALS:
                line = f'adpulse_fraud_signals_total{{signal="{s}"}} '
                value = None
                for ln in text.splitlines():
                    if ln.startswith(line):
                        value = int(float(ln[len(line):]))
                res.check(value == fired[s], f"{when}: /metrics counts signal {s} as the audit does", fired[s], value)

        settle_deadline = time.monotonic() + 10
        verdicts = audit()
        while len(verdicts) < len(sent) and time.monotonic() < settle_deadline:
            time.sleep(0.2)
            verdicts = audit()
        res.check(len(verdicts) == len(sent) and set(verdicts) == set(sent),
                  "the audit returns a verdict for every event sent", len(sent), len(verdicts))

        # Detection quality through the daemon.
        tp = fp = fn = 0
        for eid, lab in labels.items():
            if lab["event_type"] != "click" or eid not in verdicts:
                continue
            truth, flagged = lab["invalid"] == "1", verdicts[eid]["invalid"]
            tp += truth and flagged
            fp += (not truth) and flagged
            fn += truth and not flagged
        precision = tp / (tp + fp) if tp + fp else 0
        recall = tp / (tp + fn) if tp + fn else 0
        res.info(f"through the daemon: precision {precision:.4f}, recall {recall:.4f} on {tp + fn} invalid clicks")
        res.check(precision >= 0.95, "precision on invalid clicks >= 0.95", ">= 0.95", round(precision, 4))
        res.check(recall >= 0.90, "recall on invalid clicks >= 0.90", ">= 0.90", round(recall, 4))
        flagged_example = next((v for v in verdicts.values() if v["invalid"]), None)
        res.check(flagged_example is not None and flagged_example["signals"] and flagged_example["score"] >= 0.7,
                  "a flagged event carries its score and signals", "score >= 0.7 and signals", flagged_example)
        enriched = [v for v in verdicts.values() if v["user_agent"].startswith("Mozilla/5.0 (iPhone")]
        res.check(enriched and all(v["os"] for v in enriched) and any(v["os_version"] for v in enriched),
                  "enrichment: iPhone events carry os and os version", "iOS with versions", enriched[:1])
        located = [v for v in verdicts.values() if "latitude" in v]
        res.check(len(located) > len(verdicts) // 2 and all(v["country"] for v in located),
                  "enrichment: most events located, with a country", "> half", len(located))
        check_metrics(verdicts, "live")
        check_signal_metrics(verdicts, "live")
        check_enriched_cube(daemon.port, verdicts, sent, start_ms, stop_ms, res)

        status, report, raw = get(daemon.port, "/v1/fraud", [("start", end_ms - span_s * 1000),
                                                             ("end", now + MINUTE_MS), ("limit", 5)])
        ok = status == 200 and isinstance(report, dict)
        res.check(ok, "/v1/fraud answers", 200, f"{status} {raw[:300]}")
        if ok:
            top = report["top_ips"][0] if report["top_ips"] else {}
            res.check(top.get("invalid_events", 0) >= 300 and "click_flood" in top.get("signals", {}),
                      "/v1/fraud: a flooding address tops the list", "click_flood, >= 300", top)
            res.check(report["events"] == len(sent) and
                      report["invalid_events"] == sum(1 for v in verdicts.values() if v["invalid"]),
                      "/v1/fraud: totals agree with the audit", len(sent), (report["events"], report["invalid_events"]))
            pubs = report["publishers"]
            res.check(sum(p["events"] for p in pubs) == len(sent) and
                      all(abs(float(p["invalid_share"]) - p["invalid_events"] / p["events"]) < 1e-6 for p in pubs) and
                      all(float(a["invalid_share"]) >= float(b["invalid_share"]) for a, b in zip(pubs, pubs[1:])),
                      "/v1/fraud: publishers' invalid shares add up, worst first", len(sent), pubs[:2])
        status, obj, raw = get(daemon.port, "/v1/fraud/events", [("campaign_id", campaigns[0]),
                                                                 ("signal", "no_such_signal")])
        res.check(status == 400 and "is not one of" in obj.get("error", ""),
                  "/v1/fraud/events: an unknown signal is a 400 naming the signals", 400, raw[:200])
        status, obj, raw = get(daemon.port, "/v1/fraud/events", [("campaign_id", campaigns[0]),
                                                                 ("start", 0), ("end", now)])
        res.check(status == 400 and "at most" in obj.get("error", ""),
                  "/v1/fraud/events: a range past the limit is a 400", 400, raw[:200])
        one = next(eid for eid, v in verdicts.items() if v["invalid"] and v["event_type"] == "click")
        status, obj, raw = get(daemon.port, "/v1/fraud/events", [("campaign_id", sent[one]["campaign_id"]),
                                                                 ("event_id", one), ("start", end_ms - span_s * 1000),
                                                                 ("end", now + MINUTE_MS)])
        res.check(status == 200 and obj.get("count") == 1 and obj["events"][0]["event_id"] == one,
                  "/v1/fraud/events?event_id=: why this click was not billed", one, raw[:300])

        # An attack in progress across the restart: 80 clicks from one address within seconds (under
        # the flood threshold of 100 a minute), then kill -9, then 40 more. The rebuilt signal
        # state remembers the first 80, so the 101st to the 120th are flagged.
        live_ts = int(time.time() * 1000) - 30_000
        ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"

        def live_clicks(first, n):
            lines = [json.dumps({"event_id": f"live-{i}", "event_type": "click", "timestamp": live_ts + i * 100,
                                 "campaign_id": "camp-live", "ad_id": "ad-live", "user_id": f"live-user-{i}",
                                 "ip_address": "198.18.0.7", "user_agent": ua}) for i in range(first, first + n)]
            status, _, data = one_shot(daemon.port, "POST", "/v1/events", body="\n".join(lines).encode(),
                                       headers={"Content-Type": "application/x-ndjson"})
            return status == 200 and parse_json(data).get("accepted") == n

        res.check(live_clicks(0, 80), "an attack in progress: 80 clicks accepted before kill -9", True, False)

        # kill -9, restart: the verdicts and every figure stay.
        daemon.proc.kill()
        daemon.proc.wait()
        daemon = start("fraud2")
        after = audit()
        same = all(after.get(eid, {}).get("invalid") == v["invalid"] and after[eid]["signals"] == v["signals"] and
                   after[eid]["score"] == v["score"] for eid, v in verdicts.items())
        res.check(len(after) == len(verdicts) and same, "after kill -9: every verdict the same", len(verdicts),
                  len(after))
        check_metrics(verdicts, "after kill -9")
        res.check(live_clicks(80, 40), "an attack in progress: 40 more clicks accepted after the restart", True,
                  False)
        status, obj, raw = get(daemon.port, "/v1/fraud/events", [("campaign_id", "camp-live"),
                                                                 ("signal", "click_flood"), ("limit", 1000),
                                                                 ("start", live_ts - MINUTE_MS),
                                                                 ("end", live_ts + MINUTE_MS)])
        flooded = sorted(int(e["event_id"].split("-")[1]) for e in obj.get("events", [])) if status == 200 else None
        res.check(flooded == list(range(100, 120)),
                  "an attack in progress survives kill -9: the rebuilt state flags clicks 101 to 120 as a flood",
                  "live-100 .. live-119", flooded)
        check_sighup(daemon, blocklist, now, res)
        daemon.stop()
        daemon = None
    finally:
        if daemon is not None and daemon.alive():
            daemon.stop()
        if res.failed and daemon is not None:
            print(daemon.stderr_tail(), flush=True)
        if args.keep_data:
            res.info(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{res.passed} passed, {res.failed} failed", flush=True)
    return 0 if res.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
