"""Shared helpers for the tests that start the real adpulse binary: a daemon handle, event
generation with exact decimal prices, an HTTP client that classifies answers, and the
"N passed, M failed" tally."""
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import time
from decimal import Decimal


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, binary, data_dir, log_path, extra_args=()):
        self.binary, self.data_dir, self.log_path = binary, data_dir, log_path
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None

    def start(self, timeout=30.0):
        self.port = free_port()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
             "--log-level", "info"] + self.extra_args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode} during startup; see {self.log_path}")
            try:
                status, _ = get(self.port, "/readyz", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"daemon not ready after {timeout} s; see {self.log_path}")

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode if self.proc else None

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


def make_events(n, seed, now_ms, campaigns=50, hours=1):
    """Events with times spread over the last `hours` hours (at least a minute old)."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        t = rng.choices(["impression", "click", "conversion"], [80, 15, 5])[0]
        events.append({
            "event_id": f"k{seed}-{i}",
            "event_type": t,
            "timestamp": now_ms - rng.randint(60_000, hours * 3_600_000),
            "campaign_id": f"camp-{rng.randint(1, campaigns):02d}",
            "user_id": f"u{rng.randint(1, 20000)}",
            # A browser's agent: these tests count valid traffic (no agent at all is invalid).
            "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                          "Chrome/120.0.0.0 Safari/537.36",
            "bid_price": Decimal(rng.randint(0, 5_000_000)) / Decimal(1_000_000),
        })
    return events


def encode(events):
    """NDJSON with each bid_price written as its exact decimal text."""
    lines = []
    for e in events:
        fields = [f'"{k}": {json.dumps(v)}' for k, v in e.items() if k != "bid_price"]
        fields.append(f'"bid_price": {e["bid_price"]}')
        lines.append("{" + ", ".join(fields) + "}")
    return ("\n".join(lines) + "\n").encode()


def get(port, path, timeout=30.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def post(port, body, timeout=10.0):
    """("ok", json) | ("failed", status) | ("indeterminate", reason or (status, body))."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", "/v1/events", body=body, headers={"Content-Type": "application/x-ndjson"})
        r = c.getresponse()
        data = r.read()
        c.close()
    except (OSError, http.client.HTTPException) as e:
        return "indeterminate", type(e).__name__
    if r.status == 200:
        return "ok", json.loads(data)
    if 400 <= r.status < 500:
        return "failed", r.status
    return "indeterminate", (r.status, data.decode(errors="replace"), r.getheader("Retry-After"))


def truth_by_campaign(events):
    truth = {}
    for e in events:
        t = truth.setdefault(e["campaign_id"], {"impressions": 0, "clicks": 0, "conversions": 0,
                                               "spend": Decimal(0)})
        t[e["event_type"] + "s"] += 1
        t["spend"] += e["bid_price"]
    return truth


def query_by_campaign(port, now_ms, hours=1):
    """Totals per campaign over the last `hours` hours (and one more) before now_ms."""
    status, data = get(port, "/v1/metrics?dimensions=campaign_id&metrics=impressions,clicks,conversions,spend"
                             f"&granularity=all&start={now_ms - (hours + 1) * 3_600_000}&end={now_ms + 120_000}")
    if status != 200:
        raise RuntimeError(f"query failed: {status} {data[:200]}")
    body = json.loads(data, parse_float=Decimal)
    return {row["campaign_id"]: row for row in body["rows"]}


def reconcile(port, now_ms):
    """Asks the daemon to recompute the last days from its archive and log; the report as JSON."""
    day = 86_400_000
    start, end = (now_ms // day - 1) * day, (now_ms // day + 2) * day
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", f"/v1/admin/reconcile?start={start}&end={end}", body=b"")
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"reconcile failed: {r.status} {data[:300]}")
    return json.loads(data)


def compare(truth, got):
    """A list of mismatch descriptions (empty when equal, spend exact to the micro-unit)."""
    out = []
    for camp in sorted(set(truth) | set(got)):
        t, g = truth.get(camp), got.get(camp)
        if t is None or g is None:
            out.append(f"{camp}: expected {t}, got {g}")
            continue
        for k in ("impressions", "clicks", "conversions"):
            if g.get(k) != t[k]:
                out.append(f"{camp} {k}: expected {t[k]}, got {g.get(k)}")
        if Decimal(str(g.get("spend"))) != t["spend"]:
            out.append(f"{camp} spend: expected {t['spend']}, got {g.get('spend')}")
    return out


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}", flush=True)
        return cond

    def check_reconciled(self, port, now_ms, events, label=""):
        """The daemon's aggregates equal a recomputation from its archive and log, over `events`."""
        report = reconcile(port, now_ms)
        return self.check(report["difference_count"] == 0 and report["events"] == events,
                          f"{label}aggregates equal a recomputation from the archive and log "
                          f"({report['difference_count']} differences, {report['events']} of {events} events)")

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1
