#!/usr/bin/env python3
"""Access control against the real binary: tokens, scopes, and advertiser isolation on every endpoint.

Two advertisers' traffic goes in (adv-alpha and adv-bravo, with campaigns, ads, users, IPs and a
publisher of their own, plus a publisher and countries they share, valid and invalid events). Then,
with a token scoped to adv-alpha, the test calls every route the daemon serves, as listed by
GET /v1/admin/routes (the router's own table), with the requests a curious client would try, and checks
that no answer holds a row, a name or a count of adv-bravo: none of adv-bravo's own strings appears
(unless the request itself named it), and the totals an answer gives are adv-alpha's exactly. A route
this test has no case for fails it, so a new endpoint cannot ship without its check.

Then: an ingest token cannot read, a read token sees both, an admin token runs admin actions only,
no token and a wrong token get 401, repeated wrong tokens from one address get 429, the failures are
counted in /metrics; a listen address off loopback without tokens is refused at startup, and a
malformed token entry fails startup with one line.

    python3 tests/integration/auth_test.py --binary build/adpulse

Standard library only. The last line printed is `N passed, M failed`; the exit code is 0 only if M == 0.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "crash"))
from common import Daemon, Tally, encode  # noqa: E402

MINUTE = 60_000
AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/120.0.0.0 Safari/537.36")
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
ALPHA, BRAVO = "adv-alpha", "adv-bravo"


def make_token(binary, name, *scopes):
    args = [binary, "token", "--name", name]
    for s in scopes:
        args += ["--scope", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    token = out.splitlines()[0].strip()
    toml = out[out.index("[[auth.tokens]]"):]
    return token, toml


def request(port, method, path, token=None, body=None, content_type="application/json", source="127.0.0.1"):
    # Another loopback source address is another client to the daemon's per-address limits.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = content_type
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data.decode(errors="replace"), dict(r.getheaders())


def events_of(advertiser, tag, n, now, rng):
    """n events of one advertiser; every string of its own carries `tag` (alpha or bravo)."""
    out = []
    for i in range(n):
        kind = rng.choices(["impression", "click", "conversion"], [80, 15, 5])[0]
        bot = i % 10 == 0
        own_ip = f"198.51.100.{rng.randint(1, 200)}" if tag == "alpha" else f"203.0.113.{rng.randint(1, 200)}"
        out.append({
            "event_id": f"ev-{tag}-{i}",
            "event_type": kind,
            "timestamp": now - rng.randint(2 * MINUTE, 40 * MINUTE),
            "campaign_id": f"camp-{tag}-{rng.randint(1, 3)}",
            "ad_id": f"ad-{tag}-{rng.randint(1, 4)}",
            "advertiser_id": advertiser,
            "user_id": f"user-{tag}-{rng.randint(1, 50)}",
            "session_id": f"sess-{tag}-{i}",
            "ip_address": own_ip,
            "user_agent": BOT if bot else AGENT,
            "publisher_id": "pub-shared" if i % 2 else f"pub-{tag}-only",
            "placement_id": f"place-{tag}",
            "page_url": f"https://{tag}.example/page",
            "country": rng.choice(["US", "DE"]),
            "bid_price": Decimal(rng.randint(1, 3_000_000)) / Decimal(1_000_000),
        })
    return out


def bravo_markers(events):
    """Every string only adv-bravo's events hold (IP addresses included)."""
    marks = {"bravo"}
    for e in events:
        for k in ("event_id", "campaign_id", "ad_id", "user_id", "ip_address", "session_id"):
            marks.add(e[k])
    return marks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    args = ap.parse_args()
    res = Tally()
    tmp = tempfile.mkdtemp(prefix="adpulse-auth-")
    daemon = None
    try:
        tokens = {}
        tomls = []
        for name, scopes in (("collector", ["ingest"]), ("analyst", ["read"]), ("ops", ["admin"]),
                             ("alpha-portal", [f"advertiser:{ALPHA}"])):
            tokens[name], toml = make_token(args.binary, name, *scopes)
            tomls.append(toml)
        res.check(all(t.startswith("adp_") and len(t) > 40 for t in tokens.values()),
                  f"adpulse token prints long random tokens: {list(tokens.values())[0][:8]}...")
        res.check(len(set(tokens.values())) == len(tokens), "each token is new")
        config = os.path.join(tmp, "adpulse.toml")
        with open(config, "w") as f:
            # Only bots are invalid here, so that the test knows each verdict.
            f.write("[fraud.weights]\n" + "".join(f"{w} = 0.0\n" for w in (
                "click_flood", "click_farm", "impossible_timing", "orphan_click", "repeated_click",
                "geo_anomaly", "device_mismatch", "click_injection")))
            f.write("\n[auth]\nmax_failures_per_minute = 5\n\n" + "\n".join(tomls))
        with open(config) as f:
            text = f.read()
        res.check(not any(t in text for t in tokens.values()), "the config holds no token in clear")

        daemon = Daemon(args.binary, os.path.join(tmp, "data"), os.path.join(tmp, "daemon.log"),
                        ["--config", config, "--workers", "2"])
        daemon.start()
        port = daemon.port
        log = daemon.log_text()
        res.check("4 API tokens" in log and not any(t in log for t in tokens.values()),
                  "startup names the tokens, never their text")

        now = int(time.time() * 1000)
        rng = random.Random(7)
        alpha = events_of(ALPHA, "alpha", 400, now, rng)
        bravo = events_of(BRAVO, "bravo", 600, now, rng)
        mixed = alpha + bravo
        rng.shuffle(mixed)
        body = encode(mixed)
        status, _, hdrs = request(port, "POST", "/v1/events", None, body, "application/x-ndjson")
        res.check(status == 401 and "Bearer" in hdrs.get("WWW-Authenticate", ""),
                  f"POST /v1/events without a token: 401 with WWW-Authenticate ({status})")
        status, text, _ = request(port, "POST", "/v1/events", tokens["alpha-portal"], body,
                                  "application/x-ndjson")
        res.check(status == 403 and "ingest" in text, f"an advertiser token cannot ingest: {status} {text}")
        status, text, _ = request(port, "POST", "/v1/events", tokens["collector"], body,
                                  "application/x-ndjson")
        accepted = json.loads(text).get("accepted") if status == 200 else None
        res.check(accepted == len(mixed), f"the ingest token ingests: {status} {text[:200]}")

        # What adv-alpha's token must see: its valid and invalid counts.
        def totals(evs):
            t = {"impressions": 0, "clicks": 0, "conversions": 0, "spend": Decimal(0),
                 "fraud_impressions": 0, "fraud_clicks": 0, "fraud_spend": Decimal(0)}
            for e in evs:
                bot = e["user_agent"] == BOT
                key = ("fraud_" if bot else "") + e["event_type"] + "s"
                if key in t:
                    t[key] += 1
                t["fraud_spend" if bot else "spend"] += e["bid_price"]
            return t
        truth_alpha = totals(alpha)
        truth_all = totals(mixed)
        marks = bravo_markers(bravo)
        start, end = now - 3_600_000, now + MINUTE
        rng_q = f"start={start}&end={end}"
        iso = lambda ms: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ms / 1000))  # noqa: E731
        g_range = {"from": iso(start), "to": iso(end), "raw": {"from": "now-1h", "to": "now"}}

        def g_query(*targets, **extra):
            body = {"range": g_range, "intervalMs": 60_000, "maxDataPoints": 100,
                    "targets": [{"refId": chr(65 + i), "target": m, "payload": p}
                                for i, (m, p) in enumerate(targets)]}
            body.update(extra)
            return body

        def same_totals(answer, truth, keys=("impressions", "clicks", "conversions", "spend")):
            return all(Decimal(str(answer.get(k, 0))) == truth[k] for k in keys)

        def rows_sum(rows, key):
            return sum(Decimal(str(r.get(key, 0))) for r in rows)

        # Each route: (method, target, body, statuses allowed, check of the parsed answer or None).
        q = urllib.parse.quote
        CASES = {
            ("POST", "/v1/events"): [("POST", "/v1/events", encode(alpha[:3]), {403}, None)],
            ("GET", "/healthz"): [("GET", "/healthz", None, {200}, None)],
            ("GET", "/readyz"): [("GET", "/readyz", None, {200}, None)],
            ("GET", "/metrics"): [("GET", "/metrics", None, {403}, None)],
            ("GET", "/v1/metrics/realtime"): [
                ("GET", "/v1/metrics/realtime?campaign_id=camp-alpha-1&window=3600", None, {200},
                 lambda a: a["impressions"] == sum(1 for e in alpha if e["campaign_id"] == "camp-alpha-1"
                                                   and e["event_type"] == "impression"
                                                   and e["user_agent"] != BOT)),
                ("GET", "/v1/metrics/realtime?campaign_id=camp-bravo-1&window=3600", None, {200},
                 lambda a: a["impressions"] == 0 and a["clicks"] == 0 and a["fraud_impressions"] == 0),
            ],
            ("GET", "/v1/metrics"): [
                ("GET", f"/v1/metrics?{rng_q}&metrics=impressions,clicks,conversions,spend,fraud_impressions,"
                        f"fraud_clicks,fraud_spend", None, {200},
                 lambda a: len(a["rows"]) == 1 and same_totals(a["rows"][0], truth_alpha, tuple(truth_alpha))),
                ("GET", f"/v1/metrics?{rng_q}&dimensions=campaign_id&granularity=minute", None, {200},
                 lambda a: rows_sum(a["rows"], "impressions") == truth_alpha["impressions"]),
                ("GET", f"/v1/metrics?{rng_q}&dimensions=advertiser_id", None, {200},
                 lambda a: [r["advertiser_id"] for r in a["rows"]] == [ALPHA]),
                ("GET", f"/v1/metrics?{rng_q}&dimensions=publisher_id", None, {400}, None),
                ("GET", f"/v1/metrics?{rng_q}&dimensions=country", None, {400}, None),
                ("GET", f"/v1/metrics?{rng_q}&filter=advertiser_id:{BRAVO}", None, {403}, None),
                ("GET", f"/v1/metrics?{rng_q}&filter=campaign_id:camp-bravo-1&dimensions=campaign_id", None,
                 {200}, lambda a: a["rows"] == []),
                ("GET", f"/v1/metrics?{rng_q}&dimensions=campaign_id&format=csv", None, {200}, None),
            ],
            ("POST", "/v1/query"): [
                ("POST", "/v1/query", {"dimensions": ["advertiser_id", "campaign_id"], "metrics": ["impressions"],
                                       "start": start, "end": end,
                                       "filters": {"advertiser_id": [ALPHA, BRAVO]}}, {200},
                 lambda a: rows_sum(a["rows"], "impressions") == truth_alpha["impressions"]),
                ("POST", "/v1/query", {"dimensions": ["campaign_id"], "start": start, "end": end,
                                       "filters": {"advertiser_id": BRAVO}}, {403}, None),
            ],
            ("GET", "/v1/top"): [
                ("GET", f"/v1/top?metric=impressions&dimension=campaign_id&limit=100&{rng_q}", None, {200},
                 lambda a: rows_sum(a["rows"], "impressions") == truth_alpha["impressions"]),
                ("GET", f"/v1/top?metric=spend&dimension=advertiser_id&{rng_q}", None, {200},
                 lambda a: [r["advertiser_id"] for r in a["rows"]] == [ALPHA]),
                ("GET", f"/v1/top?metric=clicks&dimension=publisher_id&{rng_q}", None, {400}, None),
                ("GET", f"/v1/top?metric=impressions&dimension=campaign_id&{rng_q}&format=csv", None, {200}, None),
            ],
            ("GET", "/v1/funnel"): [
                ("GET", f"/v1/funnel?campaign_id=camp-alpha-2&{rng_q}", None, {200},
                 lambda a: a["impressions"] == sum(1 for e in alpha if e["campaign_id"] == "camp-alpha-2"
                                                   and e["event_type"] == "impression"
                                                   and e["user_agent"] != BOT)),
                ("GET", f"/v1/funnel?campaign_id=camp-bravo-2&{rng_q}", None, {200},
                 lambda a: a["impressions"] == 0 and a["clicks"] == 0),
                # No default cube has advertiser_id and ad_id: a 400 that says so.
                ("GET", f"/v1/funnel?campaign_id=camp-bravo-2&by=ad&{rng_q}", None, {400}, None),
            ],
            ("GET", "/v1/billing"): [
                ("GET", f"/v1/billing?advertiser_id={ALPHA}&{rng_q}&granularity=all", None, {200},
                 lambda a: Decimal(a["totals"][0]["spend"]) == truth_alpha["spend"]
                 and Decimal(a["totals"][0]["fraud_spend"]) == truth_alpha["fraud_spend"]),
                ("GET", f"/v1/billing?advertiser_id={BRAVO}&{rng_q}", None, {403}, None),
                ("GET", f"/v1/billing?advertiser_id={BRAVO}&{rng_q}&format=csv", None, {403}, None),
            ],
            ("GET", "/v1/fraud"): [
                ("GET", f"/v1/fraud?{rng_q}&limit=1000", None, {200},
                 lambda a: a["events"] == len(alpha)
                 and a["invalid_events"] == sum(1 for e in alpha if e["user_agent"] == BOT)),
            ],
            ("GET", "/v1/fraud/events"): [
                ("GET", f"/v1/fraud/events?campaign_id=camp-alpha-1&include_valid=true&limit=10000&{rng_q}", None,
                 {200}, lambda a: a["count"] == sum(1 for e in alpha if e["campaign_id"] == "camp-alpha-1")),
                ("GET", f"/v1/fraud/events?campaign_id=camp-bravo-1&include_valid=true&{rng_q}", None, {200},
                 lambda a: a["count"] == 0),
                ("GET", f"/v1/fraud/events?campaign_id=camp-bravo-1&event_id=ev-bravo-0&include_valid=true&{rng_q}",
                 None, {200}, lambda a: a["count"] == 0),
            ],
            ("POST", "/v1/admin/reconcile"): [("POST", f"/v1/admin/reconcile?{rng_q}", None, {403}, None)],
            ("GET", "/v1/admin/routes"): [("GET", "/v1/admin/routes", None, {403}, None)],
            ("GET, POST", "/grafana"): [("GET", "/grafana", None, {200}, None),
                                        ("POST", "/grafana", {}, {200}, None)],
            ("GET, POST", "/grafana/metrics"): [("POST", "/grafana/metrics", {}, {200}, None)],
            ("GET, POST", "/grafana/metric-payload-options"): [
                ("POST", "/grafana/metric-payload-options", {"metric": "clicks", "payload": {}, "name": "campaign_id",
                                                             "range": g_range}, {200},
                 lambda a: sorted(o["value"] for o in a) == sorted({e["campaign_id"] for e in alpha})),
                ("POST", "/grafana/metric-payload-options", {"metric": "clicks", "payload": {},
                                                             "name": "advertiser_id", "range": g_range}, {200},
                 lambda a: [o["value"] for o in a] == [ALPHA]),
            ],
            ("GET, POST", "/grafana/tag-keys"): [("POST", "/grafana/tag-keys", {}, {200}, None)],
            ("GET, POST", "/grafana/tag-values"): [
                ("POST", "/grafana/tag-values", {"key": "campaign_id", "range": g_range}, {200},
                 lambda a: sorted(o["text"] for o in a) == sorted({e["campaign_id"] for e in alpha})),
                ("POST", "/grafana/tag-values", {"key": "advertiser_id", "range": g_range}, {200},
                 lambda a: [o["text"] for o in a] == [ALPHA]),
                ("POST", "/grafana/tag-values", {"key": "publisher_id", "range": g_range}, {400}, None),
            ],
            ("GET, POST", "/grafana/variable"): [
                ("POST", "/grafana/variable", {"payload": {"target": "campaign_id"}, "range": g_range}, {200},
                 lambda a: sorted(o["__value"] for o in a) == sorted({e["campaign_id"] for e in alpha})),
                ("POST", "/grafana/variable", {"payload": {"target": "campaign_id", "advertiser_id": BRAVO},
                                               "range": g_range}, {403}, None),
            ],
            ("GET, POST", "/grafana/search"): [
                ("POST", "/grafana/search", {"target": "campaign_id", "range": g_range}, {200},
                 lambda a: sorted(a) == sorted({e["campaign_id"] for e in alpha})),
            ],
            ("GET, POST", "/grafana/query"): [
                ("POST", "/grafana/query", g_query(("impressions", {"group_by": ["campaign_id"]})), {200},
                 lambda a: sum(v for s in a for v, _ in s["datapoints"] if v) == truth_alpha["impressions"]),
                ("POST", "/grafana/query", g_query(("spend", {"group_by": ["advertiser_id"], "format": "table"})),
                 {200}, None),
                ("POST", "/grafana/query", g_query(("impressions", {})), {200},
                 lambda a: sum(v for s in a for v, _ in s["datapoints"] if v) == truth_alpha["impressions"]),
                ("POST", "/grafana/query", g_query(("impressions", {"advertiser_id": BRAVO})), {403}, None),
                ("POST", "/grafana/query", g_query(("impressions", {}), adhocFilters=[
                    {"key": "campaign_id", "operator": "=", "value": "camp-bravo-1"}]), {200},
                 lambda a: sum(v for s in a for v, _ in s["datapoints"] if v) == 0),
            ],
            ("GET, POST", "/grafana/annotations"): [
                ("POST", "/grafana/annotations", {"range": g_range, "annotation": {
                    "name": "fraud", "datasource": "adpulse", "enable": True, "query": ""}}, {200}, None),
            ],
        }
        status, text, _ = request(port, "GET", "/v1/admin/routes", tokens["ops"])
        routes = json.loads(text)["routes"] if status == 200 else []
        res.check(len(routes) >= 20, f"GET /v1/admin/routes lists the router's table: {status}, {len(routes)} routes")
        for r in routes:
            key = (r["method"], r["path"])
            if r["scope"] == "none" and r["path"] not in ("/healthz", "/readyz") and key not in CASES:
                # The dashboard's files: static, the same for everyone.
                CASES[key] = [("GET", r["path"], None, {200}, None)]
            if not res.check(key in CASES, f"route {key} has an isolation case in this test"):
                continue
            for method, target, body, allowed, check in CASES[key]:
                sent = target + (body.decode() if isinstance(body, bytes) else json.dumps(body) if body else "")
                content = "application/x-ndjson" if isinstance(body, bytes) else "application/json"
                status, text, _ = request(port, method, target, tokens["alpha-portal"], body, content)
                what = f"adv-alpha's token: {method} {target[:90]}"
                res.check(status in allowed, f"{what}: status {status} in {sorted(allowed)} ({text[:200]})")
                leaked = [m for m in marks if m in text and m not in sent]
                res.check(not leaked, f"{what}: no string of adv-bravo in the answer (found {leaked[:5]})")
                if check and status == 200:
                    try:
                        ok = check(json.loads(text))
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        ok = False
                        text += f" ({type(e).__name__}: {e})"
                    res.check(ok, f"{what}: adv-alpha's own figures exactly ({text[:300]})")
            # No token at all: 401 on every route but the open ones.
            if r["scope"] != "none":
                method, target, body, _, _ = CASES[key][0]
                content = "application/x-ndjson" if isinstance(body, bytes) else "application/json"
                status, text, _ = request(port, method, target, None, body, content)
                res.check(status == 401 and "Bearer" in text, f"no token: {method} {target[:60]} -> 401 ({status})")
        res.check(len(routes) == 0 or {(r["method"], r["path"]) for r in routes} >= set(CASES),
                  "every case of this test is a route the daemon lists")

        # The other scopes.
        status, text, _ = request(port, "GET", f"/v1/metrics?{rng_q}&metrics=impressions,spend", tokens["collector"])
        res.check(status == 403 and "read" in text, f"an ingest token cannot read: {status} {text}")
        status, text, _ = request(port, "GET", f"/v1/metrics?{rng_q}&metrics=impressions,spend", tokens["analyst"])
        res.check(status == 200 and same_totals(json.loads(text)["rows"][0], truth_all, ("impressions", "spend")),
                  f"a read token sees every advertiser: {status} {text[:200]}")
        status, text, _ = request(port, "GET", f"/v1/billing?advertiser_id={BRAVO}&{rng_q}", tokens["analyst"])
        res.check(status == 200 and BRAVO in text, f"a read token reads adv-bravo's billing: {status}")
        status, text, _ = request(port, "POST", f"/v1/admin/reconcile?{rng_q}", tokens["analyst"])
        res.check(status == 403 and "admin" in text, f"a read token cannot reconcile: {status} {text}")
        status, text, _ = request(port, "POST", f"/v1/admin/reconcile?{rng_q}", tokens["ops"])
        res.check(status == 200 and json.loads(text).get("difference_count") == 0,
                  f"an admin token reconciles: {status} {text[:200]}")
        status, text, _ = request(port, "GET", f"/v1/metrics?{rng_q}", tokens["ops"])
        res.check(status == 403, f"an admin token does not read queries: {status}")
        for name in ("analyst", "ops"):
            status, text, _ = request(port, "GET", "/metrics", tokens[name])
            res.check(status == 200 and "adpulse_events_accepted_total" in text, f"/metrics with {name}'s token: {status}")
        env = dict(os.environ, ADPULSE_TOKEN=tokens["ops"])
        rec = subprocess.run([args.binary, "reconcile", "--listen", f"127.0.0.1:{port}", "--from", str(start),
                              "--to", str(end)], capture_output=True, text=True, env=env)
        res.check(rec.returncode == 0, f"adpulse reconcile sends ADPULSE_TOKEN: exit {rec.returncode} {rec.stdout[:200]}")

        # Wrong tokens: 401, then 429 for that address once the minute's limit (5 here) is used.
        statuses = [request(port, "GET", f"/v1/metrics?{rng_q}", "adp_wrong" + str(i))[0] for i in range(7)]
        res.check(statuses[:5] == [401] * 5 and statuses[5:] == [429, 429],
                  f"wrong tokens: 401 five times, then 429: {statuses}")
        status, text, hdrs = request(port, "GET", f"/v1/metrics?{rng_q}", tokens["analyst"])
        res.check(status == 429 and "Retry-After" in hdrs,
                  f"while limited, the address is refused even with a good token: {status} {hdrs.get('Retry-After')}")
        status, _, _ = request(port, "GET", "/healthz")
        res.check(status == 200, f"/healthz needs no token: {status}")
        # The limit is per address: another client (another loopback source address) is served.
        status, text, _ = request(port, "GET", "/metrics", tokens["ops"], source="127.0.0.2")

        def counter(name, labels):
            for line in text.splitlines():
                if line.startswith(name + "{") and labels in line:
                    return float(line.rsplit(" ", 1)[1])
            return None
        res.check(status == 200, f"another address is not limited: {status}")
        res.check((counter("adpulse_auth_failures_total", 'reason="unknown_token"') or 0) >= 5
                  and (counter("adpulse_auth_failures_total", 'reason="rate_limited"') or 0) >= 3
                  and (counter("adpulse_auth_failures_total", 'reason="missing_token"') or 0) >= 20
                  and (counter("adpulse_auth_failures_total", 'reason="missing_scope"') or 0) >= 5,
                  "failed authentications are counted by reason in /metrics")
        res.check((counter("adpulse_requests_by_token_total", 'token="alpha-portal"') or 0) >= 30,
                  "requests are counted by token name")
        res.check(not any(t in text for t in tokens.values()), "/metrics holds no token")
        daemon.stop()
        daemon = None

        # Startup: off loopback without tokens, and a malformed token entry.
        out = subprocess.run([args.binary, "--listen", "0.0.0.0:1", "--data-dir", os.path.join(tmp, "d2")],
                             capture_output=True, text=True, timeout=30)
        lines = out.stderr.strip().splitlines()
        res.check(out.returncode != 0 and len(lines) == 1 and "--insecure" in lines[0],
                  f"a non-loopback address without tokens is refused in one line: {out.returncode} {lines}")
        bad = os.path.join(tmp, "bad.toml")
        with open(bad, "w") as f:
            f.write('[[auth.tokens]]\nname = "x"\nsha256 = "abc"\nscopes = ["read"]\n')
        out = subprocess.run([args.binary, "--config", bad, "--data-dir", os.path.join(tmp, "d3")],
                             capture_output=True, text=True, timeout=30)
        lines = out.stderr.strip().splitlines()
        res.check(out.returncode != 0 and len(lines) == 1 and "bad.toml:1" in lines[0] and "sha256" in lines[0],
                  f"a malformed sha256 fails startup in one line naming the file: {lines}")
        with open(bad, "w") as f:
            f.write('[[auth.tokens]]\nname = "x"\nsha256 = "' + "ab" * 32 + '"\nscopes = ["read", "advertiser:a"]\n')
        out = subprocess.run([args.binary, "--config", bad, "--data-dir", os.path.join(tmp, "d3")],
                             capture_output=True, text=True, timeout=30)
        res.check(out.returncode != 0 and "contradictory" in out.stderr, f"read with advertiser: {out.stderr.strip()}")
    finally:
        if daemon:
            daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
