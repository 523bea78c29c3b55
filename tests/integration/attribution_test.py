#!/usr/bin/env python3
"""Conversions attributed to their clicks, against the real binary over HTTP, checked exactly against a
ground truth this test keeps itself.

A conversion that names a known click_id within the attribution window is counted under its click's
campaign, ad, publisher, country and device, whatever it carries itself (here always another campaign,
so with two shards most conversions are routed to another shard than the one their campaign names).
Conversions with no click_id, an unknown click_id, or a click outside the window keep their own fields
and count as unattributed. Clicks are sent, then the daemon is killed with SIGKILL (and later stopped
cleanly) before the conversions that name them: the click index must survive both. /v1/metrics,
/v1/funnel (per campaign and per ad), the Prometheus counters and a reconciliation must all agree.

    python3 tests/integration/attribution_test.py --binary build/adpulse

Standard library only. The last line printed is `N passed, M failed`; the exit code is 0 only if M == 0.
"""

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "crash"))
from common import Daemon, Tally, encode, get, post, reconcile  # noqa: E402

MINUTE = 60_000
HOUR = 3_600_000
WINDOW_S = 3 * 3600  # the test's attribution window
CAMPAIGNS = [f"ac-{i}" for i in range(1, 13)]
COUNTRIES = ["US", "GB", "DE", "FR", "JP"]
DEVICES = ["desktop", "mobile", "tablet"]
AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/120.0.0.0 Safari/537.36")

CONFIG = f"""
[fraud]
# Attribution is what is measured here; the verdicts have their own tests.
enabled = false

[attribution]
window_s = {WINDOW_S}
"""


class Truth:
    """What adpulse must report: per (campaign, ad, country, device)."""

    def __init__(self):
        self.rows = {}
        self.unattributed = {"no_click_id": 0, "unknown_click": 0, "outside_window": 0}
        self.attributed = 0

    def add(self, e, dims, unattributed=None):
        key = (dims["campaign_id"], dims["ad_id"], dims["country"], dims["device_type"])
        r = self.rows.setdefault(key, {"impressions": 0, "clicks": 0, "conversions": 0,
                                       "unattributed_conversions": 0, "spend": Decimal(0)})
        r[e["event_type"] + "s"] += 1
        r["spend"] += Decimal(e["bid_price"])
        if e["event_type"] == "conversion":
            if unattributed:
                r["unattributed_conversions"] += 1
                self.unattributed[unattributed] += 1
            else:
                self.attributed += 1

    def by(self, *dims):
        names = ["campaign_id", "ad_id", "country", "device_type"]
        out = {}
        for key, r in self.rows.items():
            k = tuple(key[names.index(d)] for d in dims)
            o = out.setdefault(k, {m: 0 for m in r})
            for m, v in r.items():
                o[m] += v
        return out


def dims_of(e):
    return {k: e[k] for k in ("campaign_id", "ad_id", "country", "device_type")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("ADPULSE_BINARY", "build/adpulse"))
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--keep-data", action="store_true")
    args = ap.parse_args()
    res = Tally()
    rng = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="adpulse-attribution-")
    config = os.path.join(root, "adpulse.toml")
    with open(config, "w") as f:
        f.write(CONFIG)
    daemon = Daemon(os.path.abspath(args.binary), os.path.join(root, "data"), os.path.join(root, "daemon.log"),
                    extra_args=["--config", config, "--workers", "2"])
    truth = Truth()
    attributed = []  # (conversion, its click)
    now = int(time.time() * 1000)
    seq = [0]

    def event(kind, ts, **fields):
        seq[0] += 1
        e = {"event_id": f"at{args.seed}-{seq[0]}", "event_type": kind, "timestamp": ts,
             "campaign_id": rng.choice(CAMPAIGNS), "ad_id": f"ad-{rng.randint(1, 3)}",
             "publisher_id": f"pub-{rng.randint(1, 4)}", "country": rng.choice(COUNTRIES),
             "device_type": rng.choice(DEVICES), "user_id": f"u{rng.randint(1, 500)}",
             "ip_address": f"10.1.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "user_agent": AGENT,
             "bid_price": f"{rng.randint(0, 4_000_000) / 1_000_000:.6f}"}
        e.update(fields)
        return e

    def send(events, what):
        for i in range(0, len(events), 500):
            chunk = events[i:i + 500]
            outcome, body = post(daemon.port, encode_exact(chunk))
            ok = outcome == "ok" and body["accepted"] == len(chunk)
            res.check(ok, f"{what}: batch {i // 500} accepted ({outcome} {str(body)[:200]})")

    def conversion_for(click, ts, **extra):
        # Always another campaign, ad, country and device than its click's.
        other = {"campaign_id": rng.choice([c for c in CAMPAIGNS if c != click["campaign_id"]]),
                 "ad_id": "ad-9", "country": "BR", "device_type": "tv"}
        other.update(extra)
        return event("conversion", ts, click_id=click["event_id"], **other)

    try:
        daemon.start()
        # ---- clicks (with their impressions), each at some time in the last 5 hours ----
        clicks = []
        batch = []
        for _ in range(600):
            ts = now - rng.randint(10 * MINUTE, 5 * HOUR)
            imp = event("impression", ts - 5_000)
            click = event("click", ts, **{k: imp[k] for k in ("campaign_id", "ad_id", "country",
                                                               "device_type", "user_id")})
            for e in (imp, click):
                truth.add(e, dims_of(e))
            batch += [imp, click]
            clicks.append(click)
        send(batch, "impressions and clicks")

        # ---- kill -9 before any conversion names them ----
        daemon.kill9()
        daemon.start()
        res.check(True, "restarted after kill -9")

        # ---- conversions of every kind ----
        convs = []
        for click in clicks[:300]:
            # Within the window: after the click, by up to the window (or right at it).
            ts = min(click["timestamp"] + rng.choice([10_000, 30 * MINUTE, WINDOW_S * 1000]), now - MINUTE)
            if ts - click["timestamp"] > WINDOW_S * 1000:
                ts = click["timestamp"] + 10_000
            conv = conversion_for(click, ts)
            truth.add(conv, dims_of(click))
            convs.append(conv)
            attributed.append((conv, click))
        for click in clicks[300:360]:
            # Outside: more than the window after the click (only for clicks old enough), or before it.
            if now - click["timestamp"] > WINDOW_S * 1000 + 2 * MINUTE:
                ts = click["timestamp"] + WINDOW_S * 1000 + rng.randint(1_000, MINUTE)
            else:
                ts = click["timestamp"] - rng.randint(1_000, 5 * MINUTE)
            conv = conversion_for(click, ts)
            truth.add(conv, dims_of(conv), "outside_window")
            convs.append(conv)
        for _ in range(40):
            conv = event("conversion", now - rng.randint(MINUTE, HOUR), click_id=f"never-{rng.random()}")
            truth.add(conv, dims_of(conv), "unknown_click")
            convs.append(conv)
        for _ in range(30):
            conv = event("conversion", now - rng.randint(MINUTE, HOUR))
            truth.add(conv, dims_of(conv), "no_click_id")
            convs.append(conv)
        rng.shuffle(convs)
        send(convs, "conversions")

        # ---- a click and its conversion in one request, and clicks before a clean restart ----
        same = []
        for _ in range(20):
            click = event("click", now - 20 * MINUTE)
            conv = conversion_for(click, now - 10 * MINUTE)
            truth.add(click, dims_of(click))
            truth.add(conv, dims_of(click))
            same += [click, conv]
        send(same, "clicks with their conversions in the same request")
        later = [event("click", now - 30 * MINUTE) for _ in range(50)]
        for c in later:
            truth.add(c, dims_of(c))
        send(later, "clicks before a clean restart")
        res.check(daemon.stop() == 0, "clean shutdown")
        daemon.start()
        convs = []
        for click in later:
            conv = conversion_for(click, now - 5 * MINUTE)
            truth.add(conv, dims_of(click))
            convs.append(conv)
        send(convs, "conversions of clicks sent before the restart")

        # ---- what adpulse reports ----
        start, end = now - 8 * HOUR, now + MINUTE
        checks = [("campaign_id",), ("campaign_id", "ad_id"), ("campaign_id", "country"),
                  ("campaign_id", "device_type")]
        for dims in checks:
            want = truth.by(*dims)
            params = {"dimensions": ",".join(dims), "granularity": "all", "start": start, "end": end,
                      "metrics": "impressions,clicks,conversions,unattributed_conversions,spend"}
            status, data = get(daemon.port, "/v1/metrics?" + urllib.parse.urlencode(params))
            got = {}
            if status == 200:
                for row in json.loads(data, parse_float=Decimal)["rows"]:
                    got[tuple(row[d] for d in dims)] = {
                        m: (Decimal(str(row[m])) if m == "spend" else row[m]) for m in want[next(iter(want))]}
            diff = [(k, want.get(k), got.get(k)) for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
            res.check(status == 200 and not diff,
                      f"/v1/metrics by {','.join(dims)} equals the ground truth exactly "
                      f"({len(want)} groups; differences {diff[:3]})")

        # Funnel, per campaign and per ad.
        per_campaign = truth.by("campaign_id")
        per_ad = truth.by("campaign_id", "ad_id")
        for camp in CAMPAIGNS[:4]:
            t = per_campaign[(camp,)]
            q = urllib.parse.urlencode({"campaign_id": camp, "start": start, "end": end})
            status, data = get(daemon.port, f"/v1/funnel?{q}")
            f = json.loads(data, parse_float=Decimal) if status == 200 else {}
            cpa = (t["spend"] / t["conversions"]) if t["conversions"] else 0
            ok = (status == 200 and f.get("conversions") == t["conversions"]
                  and f.get("unattributed_conversions") == t["unattributed_conversions"]
                  and f.get("clicks") == t["clicks"] and Decimal(str(f.get("spend"))) == t["spend"]
                  and abs(Decimal(str(f.get("cpa", -1))) - Decimal(cpa)) < Decimal("0.000001"))
            res.check(ok, f"/v1/funnel {camp}: {f} vs {t} (cpa {cpa})")
            status, data = get(daemon.port, f"/v1/funnel?{q}&by=ad")
            f = json.loads(data, parse_float=Decimal) if status == 200 else {}
            got = {a["ad_id"]: (a["conversions"], a["unattributed_conversions"], a["clicks"])
                   for a in f.get("ads", [])}
            want = {k[1]: (v["conversions"], v["unattributed_conversions"], v["clicks"])
                    for k, v in per_ad.items() if k[0] == camp}
            res.check(status == 200 and got == want, f"/v1/funnel {camp} by=ad: {got} vs {want}")
        status, data = get(daemon.port, "/v1/funnel?campaign_id=x&start=1&end=2&by=creative")
        res.check(status == 400 and b"by" in data, f"/v1/funnel by=creative is a 400: {status} {data[:120]}")

        # Prometheus: the decisions since the last start, by reason (no request was resent).
        status, data = get(daemon.port, "/metrics")
        text = data.decode()
        res.check('adpulse_conversions_attributed_total 50' in text,
                  "adpulse_conversions_attributed_total counts the conversions since the restart")
        res.check('adpulse_conversions_unattributed_total{reason="unknown_click"} 0' in text,
                  "adpulse_conversions_unattributed_total has a series per reason")

        # Replay and reconciliation reproduce every attribution (nothing is looked up again).
        report = reconcile(daemon.port, now)
        res.check(report["difference_count"] == 0,
                  f"aggregates equal a recomputation from the log ({report['difference_count']} differences)")
        total_unattributed = sum(truth.unattributed.values())
        res.check(sum(r["unattributed_conversions"] for r in truth.rows.values()) == total_unattributed
                  and truth.attributed == 300 + 20 + 50,
                  f"the ground truth holds every kind ({truth.unattributed}, {truth.attributed} attributed)")
        daemon.kill9()
        daemon.start()
        status, data = get(daemon.port, "/v1/metrics?" + urllib.parse.urlencode({
            "dimensions": "campaign_id", "granularity": "all", "start": start, "end": end,
            "metrics": "conversions,unattributed_conversions"}))
        rows = {r["campaign_id"]: (r["conversions"], r["unattributed_conversions"])
                for r in json.loads(data)["rows"]} if status == 200 else {}
        want = {k[0]: (v["conversions"], v["unattributed_conversions"]) for k, v in per_campaign.items()}
        res.check(rows == want, "after another kill -9, the replayed log gives the same attributed conversions")
        res.check(daemon.stop() == 0, "clean shutdown")

        # Where each event was logged: an attributed conversion is on its click's shard, and for many
        # of them the campaign they named lives on the other shard.
        shard_of = logged_shards(os.path.join(root, "data"), [e["event_id"] for e in pairs_flat(attributed)])
        found = [(c, k) for c, k in attributed if c["event_id"] in shard_of and k["event_id"] in shard_of]
        camp_shard = {}
        for _, k in found:
            camp_shard[k["campaign_id"]] = shard_of[k["event_id"]]
        same = sum(shard_of[c["event_id"]] == shard_of[k["event_id"]] for c, k in found)
        crossed = sum(camp_shard.get(c["campaign_id"], shard_of[k["event_id"]]) != shard_of[k["event_id"]]
                      for c, k in found)
        res.check(len(found) >= 0.9 * len(attributed) and same == len(found) and crossed > len(found) // 4,
                  f"attributed conversions are logged on their click's shard ({same} of {len(found)} found in "
                  f"the log), {crossed} of them naming a campaign of the other shard")
    except Exception as e:  # noqa: BLE001
        res.check(False, f"test aborted: {type(e).__name__}: {e}")
        daemon.kill9()
    finally:
        if args.keep_data:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return res.finish()


def pairs_flat(pairs):
    return [e for pair in pairs for e in pair]


def logged_shards(data_dir, event_ids):
    """{event_id: shard} for the ids found in the shards' log segments, live and archived (zstd, read
    with Debian's zstd tool), as their records hold them: u16 length, bytes."""
    wanted = {struct.pack("<H", len(i)) + i.encode(): i for i in event_ids}
    blobs = {}
    for folder, _, files in os.walk(data_dir):
        shard = os.path.basename(folder)
        if not shard.startswith("shard-"):
            continue
        for f in files:
            path = os.path.join(folder, f)
            if f.endswith(".wal"):
                data = open(path, "rb").read()
            elif f.endswith(".wal.zst"):
                data = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
            else:
                continue
            blobs[shard] = blobs.get(shard, b"") + data
    out = {}
    for shard, blob in blobs.items():
        for needle, event_id in wanted.items():
            if needle in blob:
                out[event_id] = shard
    return out


def encode_exact(events):
    """NDJSON with bid_price as its decimal text (common.encode writes Decimals that way)."""
    return encode([dict(e, bid_price=Decimal(e["bid_price"])) for e in events])


if __name__ == "__main__":
    sys.exit(main())
