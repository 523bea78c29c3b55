#!/usr/bin/env python3
"""End-to-end test of adpulse: the real binary, over HTTP, against the public contract (API.md).

It starts `adpulse serve` on a free loopback port with a fresh data dir, ingests 20,000 seeded events in
mixed encodings (NDJSON, JSON arrays, single objects, gzip) with duplicates and invalid events mixed in,
probes whole-body and HTTP framing errors, then checks every query endpoint against a ground truth that the
test computes itself (spend exactly, in integer micro-units). It ends with a clean SIGTERM (exit code 0) and
a restart on the same data dir that must recover every acknowledged event.

    python3 tests/integration/e2e_test.py --binary build/adpulse [--seed N] [--keep-data] [-v]

The binary may also be given as the environment variable ADPULSE_BINARY. Standard library only.
The last line printed is `N passed, M failed`; the exit code is 0 only if M == 0.
"""

import argparse
import datetime
import gzip
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from decimal import Decimal

# ---------------------------------------------------------------------------------------------------------
# Constants of the scenario.

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

N_EVENTS = 20_000
N_CAMPAIGNS = 40  # camp-01 .. camp-40
N_ADVERTISERS = 8  # adv-1 .. adv-8, campaign i belongs to adv-((i-1) % 8 + 1)
N_USERS = 5_000
SMALL_CAMPAIGNS = (39, 40)  # few events, very high CTR: must be cut by min_impressions=100
COUNTRIES = ["US", "GB", "DE", "FR", "CA", "JP", "BR", "IN"]
DEVICES = ["desktop", "mobile", "tablet"]
PUBLISHERS = [f"pub-{i:02d}" for i in range(1, 11)]
USER_AGENTS = {
    "desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/120.0.0.0 Safari/537.36",
    "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.1 Mobile/15E148 Safari/604.1",
    "tablet": "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/16.6 Mobile/15E148 Safari/604.1",
}
BAD_CAMPAIGN = "camp-bad"  # every invalid or refused event carries it (where it has a campaign at all)
BODY_LIMIT = 16 * 1024 * 1024
DEFAULT_SEED = 20240607
WATCHDOG_S = 150  # hard stop, far above the 60 s the test is designed to take

SUM_METRICS = ("impressions", "clicks", "conversions", "spend")
CAMPAIGN_METRICS = ("impressions", "clicks", "conversions", "spend", "ctr", "unique_users")

# The invalid events of item 4: (name, how to break a valid event).
INVALID_KINDS = [
    "missing event_id",
    "event_id of 129 bytes",
    "missing event_type",
    "event_type 'view'",
    "missing timestamp",
    "timestamp as a string",
    "timestamp 3 days old",
    "timestamp 10 minutes in the future",
    "missing campaign_id",
    "campaign_id as a number",
    "negative bid_price",
    "bid_price as a string",
]


class Abort(Exception):
    """Stops the test early (daemon died, watchdog); teardown and the summary still run."""


# ---------------------------------------------------------------------------------------------------------
# Check bookkeeping.

class Results:
    def __init__(self, verbose):
        self.passed = 0
        self.failed = 0
        self.verbose = verbose

    def check(self, ok, name, expected=None, got=None):
        if ok:
            self.passed += 1
            if self.verbose:
                print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}: expected {short(expected)}; got {short(got)}", flush=True)
        return ok

    def info(self, text):
        print(f"info {text}", flush=True)


def short(value, limit=600):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


# ---------------------------------------------------------------------------------------------------------
# Ground truth.

def micro_literal(micro, style):
    """An exact JSON decimal literal for micro-units: style 'full' gives 6 decimals, 'min' the shortest."""
    whole, frac = divmod(micro, 1_000_000)
    if style == "full":
        return f"{whole}.{frac:06d}"
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:06d}".rstrip("0")


def micro_to_decimal(micro):
    return Decimal(micro).scaleb(-6)


def campaign_name(i):
    return f"camp-{i:02d}"


def advertiser_of(i):
    return f"adv-{(i - 1) % N_ADVERTISERS + 1}"


def encode_object(pairs, rng):
    """pairs: (key, JSON text of the value). Field order is shuffled: the server must not rely on it."""
    pairs = list(pairs)
    rng.shuffle(pairs)
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


class Event:
    __slots__ = ("idx", "event_id", "event_type", "ts", "camp", "campaign_id", "advertiser_id", "country",
                 "device_type", "publisher_id", "user_id", "micro", "text")


def generate_events(rng, now_ms):
    lo = now_ms - 20 * HOUR_MS
    hi = now_ms - 2 * MINUTE_MS  # never within the last 2 minutes (60 s future bound, clock skew)
    big = [i for i in range(1, N_CAMPAIGNS + 1) if i not in SMALL_CAMPAIGNS]
    weights = {i: rng.uniform(0.6, 1.4) for i in big}
    small_weight = sum(weights.values()) * 0.0025  # about 50 events each
    for i in SMALL_CAMPAIGNS:
        weights[i] = small_weight
    p_click = {i: rng.uniform(0.06, 0.18) for i in big}
    p_conv = {i: rng.uniform(0.02, 0.04) for i in big}
    for i in SMALL_CAMPAIGNS:
        p_click[i], p_conv[i] = 0.30, 0.03
    camps = list(range(1, N_CAMPAIGNS + 1))
    camp_weights = [weights[i] for i in camps]

    events = []
    for n in range(N_EVENTS):
        ev = Event()
        ev.idx = n
        ev.event_id = f"ev-{n}"
        ev.camp = rng.choices(camps, camp_weights)[0]
        ev.campaign_id = campaign_name(ev.camp)
        ev.advertiser_id = advertiser_of(ev.camp)
        r = rng.random()
        if r < p_conv[ev.camp]:
            ev.event_type = "conversion"
        elif r < p_conv[ev.camp] + p_click[ev.camp]:
            ev.event_type = "click"
        else:
            ev.event_type = "impression"
        ev.ts = rng.randint(lo, hi)
        ev.country = rng.choice(COUNTRIES)
        ev.device_type = rng.choice(DEVICES)
        ev.publisher_id = rng.choice(PUBLISHERS)
        ev.user_id = f"user-{rng.randint(1, N_USERS)}"
        if ev.event_type == "impression":
            ev.micro = 0 if rng.random() < 0.05 else rng.randint(1, 20_000)  # up to 0.02, down to 0.000001
        elif ev.event_type == "click":
            ev.micro = rng.choice([rng.randint(50_000, 3_000_000), rng.randint(1, 30) * 100_000,
                                   rng.randint(1, 3) * 1_000_000])
        else:
            ev.micro = rng.choice([0, 12_000_000, rng.randint(1, 50) * 1_000_000,
                                   rng.randint(1_000_000, 50_000_000)])

        pairs = [
            ("event_id", json.dumps(ev.event_id)),
            ("event_type", json.dumps(ev.event_type)),
            ("timestamp", str(ev.ts)),
            ("campaign_id", json.dumps(ev.campaign_id)),
            ("advertiser_id", json.dumps(ev.advertiser_id)),
            ("ad_id", json.dumps(f"ad-{ev.camp:02d}-{rng.randint(1, 3)}")),
            ("publisher_id", json.dumps(ev.publisher_id)),
            ("country", json.dumps(ev.country)),
            ("device_type", json.dumps(ev.device_type)),
            ("user_id", json.dumps(ev.user_id)),
            ("user_agent", json.dumps(USER_AGENTS[ev.device_type])),
        ]
        # bid_price: exact decimal literal; about 2 % omit it (default 0).
        if ev.micro == 0 and rng.random() < 0.4:
            pass
        else:
            pairs.append(("bid_price", micro_literal(ev.micro, rng.choice(["full", "min"]))))
        # currency: USD, about 5 % rely on the default.
        if rng.random() >= 0.05:
            pairs.append(("currency", '"USD"'))
        # unknown fields are ignored.
        if rng.random() < 0.02:
            pairs.append(("x_extra", '{"nested":[1,2,{"a":null}],"s":"\\u00e9\\"}"}'))
        ev.text = encode_object(pairs, rng)
        events.append(ev)
    return events


class Acc:
    __slots__ = ("impressions", "clicks", "conversions", "micro", "users")

    def __init__(self):
        self.impressions = self.clicks = self.conversions = self.micro = 0
        self.users = set()

    def add(self, ev):
        if ev.event_type == "impression":
            self.impressions += 1
        elif ev.event_type == "click":
            self.clicks += 1
        else:
            self.conversions += 1
        self.micro += ev.micro
        self.users.add(ev.user_id)


def aggregate(events, key_fn):
    out = {}
    for ev in events:
        key = key_fn(ev)
        acc = out.get(key)
        if acc is None:
            acc = out[key] = Acc()
        acc.add(ev)
    return out


def totals(events):
    acc = Acc()
    for ev in events:
        acc.add(ev)
    return acc


# ---------------------------------------------------------------------------------------------------------
# Invalid events.

def invalid_event(kind, tag, now_ms, rng):
    """Returns (json text, event_id the server can echo or None)."""
    eid = f"bad-{tag}"
    f = {
        "event_id": json.dumps(eid),
        "event_type": '"click"',
        "timestamp": str(now_ms - 30 * MINUTE_MS),
        "campaign_id": json.dumps(BAD_CAMPAIGN),
        "advertiser_id": '"adv-bad"',
        "user_id": '"user-bad"',
        "bid_price": "0.5",
        "currency": '"USD"',
    }
    if kind == "missing event_id":
        del f["event_id"]
        eid = None
    elif kind == "event_id of 129 bytes":
        eid = "bad-" + "x" * 125
        f["event_id"] = json.dumps(eid)
        eid = None  # the server may shorten it in the echo
    elif kind == "missing event_type":
        del f["event_type"]
    elif kind == "event_type 'view'":
        f["event_type"] = '"view"'
    elif kind == "missing timestamp":
        del f["timestamp"]
    elif kind == "timestamp as a string":
        f["timestamp"] = json.dumps(str(now_ms - 30 * MINUTE_MS))
    elif kind == "timestamp 3 days old":
        f["timestamp"] = str(now_ms - 3 * DAY_MS)
    elif kind == "timestamp 10 minutes in the future":
        f["timestamp"] = str(now_ms + 10 * MINUTE_MS)
    elif kind == "missing campaign_id":
        del f["campaign_id"]
    elif kind == "campaign_id as a number":
        f["campaign_id"] = "7"
    elif kind == "negative bid_price":
        f["bid_price"] = "-0.5"
    elif kind == "bid_price as a string":
        f["bid_price"] = '"1.5"'
    else:
        raise ValueError(kind)
    return encode_object(f.items(), rng), eid


# ---------------------------------------------------------------------------------------------------------
# Requests of the ingestion phase.

class EventRequest:
    def __init__(self, label, fmt, use_gzip, items):
        self.label = label
        self.fmt = fmt  # 'ndjson', 'ndjson-crlf', 'array', 'array-pretty', 'single'
        self.use_gzip = use_gzip
        self.items = items  # ('valid', Event) or ('invalid', kind, text, echo_id)
        self.is_resend = False
        self.body = None
        self.headers = None

    def build(self):
        texts = [it[1].text if it[0] == "valid" else it[2] for it in self.items]
        if self.fmt == "single":
            assert len(texts) == 1
            raw, ctype = texts[0], "application/json"
        elif self.fmt == "array":
            raw, ctype = "[" + ",".join(texts) + "]", "application/json"
        elif self.fmt == "array-pretty":
            raw, ctype = "[\n  " + ",\n  ".join(texts) + "\n]\n", "application/json"
        elif self.fmt == "ndjson":
            raw, ctype = "\n".join(texts) + "\n", "application/x-ndjson"
        elif self.fmt == "ndjson-noeol":
            raw, ctype = "\n".join(texts), "application/x-ndjson"
        elif self.fmt == "ndjson-crlf":
            raw, ctype = "\r\n".join(texts) + "\r\n", "application/x-ndjson"
        else:
            raise ValueError(self.fmt)
        body = raw.encode()
        headers = {"Content-Type": ctype}
        if self.use_gzip:
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        self.body, self.headers = body, headers

    def describe(self):
        n_invalid = sum(1 for it in self.items if it[0] == "invalid")
        parts = [self.fmt + ("+gzip" if self.use_gzip else ""), f"{len(self.items)} items"]
        if n_invalid:
            parts.append(f"{n_invalid} invalid")
        if self.is_resend:
            parts.append("exact resend")
        return f"{self.label} ({', '.join(parts)})"


def plan_ingestion(events, rng, now_ms):
    """The ordered list of requests of the ingestion phase, and notes on which ones are special."""
    order = list(range(len(events)))
    rng.shuffle(order)

    sizes = [1000, 1, 1, 1, 2, 7, 1000]
    remaining = len(events) - sum(sizes)
    while remaining > 0:
        s = rng.choice([rng.randint(1, 20), rng.randint(20, 300), rng.randint(300, 1000), rng.randint(300, 1000)])
        s = min(s, remaining)
        sizes.append(s)
        remaining -= s
    rng.shuffle(sizes)

    batches = []
    pos = 0
    for s in sizes:
        batches.append([events[i] for i in order[pos:pos + s]])
        pos += s

    fmts = []
    for b in batches:
        if len(b) == 1:
            fmts.append(rng.choice(["single", "single", "single", "ndjson", "array"]))
        else:
            fmts.append(rng.choice(["ndjson", "ndjson", "array", "array", "array-pretty", "ndjson-noeol"]))
    ones = [i for i, b in enumerate(batches) if len(b) == 1]
    fmts[ones[0]] = "single"  # sizes always holds some 1s
    gz = [rng.random() < 0.15 for _ in batches]
    multi = [i for i, b in enumerate(batches) if len(b) > 1]
    # At least one gzip NDJSON, one gzip array, one gzip single object, one CRLF NDJSON.
    ndj = [i for i in multi if fmts[i] == "ndjson"]
    arr = [i for i in multi if fmts[i] == "array"]
    gz[ndj[0]] = True
    gz[arr[0]] = True
    singles = [i for i, f in enumerate(fmts) if f == "single"]
    if singles:
        gz[singles[-1]] = True
    fmts[ndj[-1]] = "ndjson-crlf"

    # Invalid events go into one JSON array and one NDJSON batch (not the first requests), at random places.
    invalid_in = {}
    cand_arr = [i for i in arr[1:] if 20 <= len(batches[i]) <= 1000 - 12 - 5 and i > 2]
    cand_ndj = [i for i in ndj[1:-1] if 20 <= len(batches[i]) <= 1000 - 12 - 5 and i > 2]
    if not cand_arr:
        cand_arr = [i for i in multi if i > 2 and len(batches[i]) <= 980]
    invalid_in[rng.choice(cand_arr)] = "r0"
    rest = [i for i in (cand_ndj or multi) if i not in invalid_in and i > 2 and len(batches[i]) <= 980]
    invalid_in[rng.choice(rest)] = "r1"

    # One batch carries one of its own events twice (the second copy is a duplicate).
    cand_self = [i for i in multi if 10 <= len(batches[i]) <= 980 and i not in invalid_in and i > 0]
    self_dup_batch = rng.choice(cand_self)

    requests = []
    pending = []  # (due position, request) exact resends
    sent_before = []  # events of batches already planned, in order
    n_resend_exact = max(1, round(0.10 * len(batches)))
    resend_set = set(rng.sample(range(len(batches)), n_resend_exact))
    for bi, batch in enumerate(batches):
        items = [("valid", ev) for ev in batch]
        # Individual events sent again inside other batches.
        if bi >= 3 and fmts[bi] != "single" and rng.random() < 0.3 and len(items) <= 990 and sent_before:
            for ev in rng.sample(sent_before, rng.randint(1, 5)):
                items.insert(rng.randint(0, len(items)), ("valid", ev))
        if bi == self_dup_batch:
            k = rng.randrange(len(batch) // 2)
            items.insert(rng.randint(k + 1, len(items)), ("valid", batch[k]))
        if bi in invalid_in:
            tag = invalid_in[bi]
            for j, kind in enumerate(INVALID_KINDS):
                text, echo_id = invalid_event(kind, f"{tag}-{j}", now_ms, rng)
                items.insert(rng.randint(0, len(items)), ("invalid", kind, text, echo_id))
        fmt = fmts[bi]
        if fmt == "single" and len(items) != 1:
            fmt = "array"
        req = EventRequest(f"batch {bi}", fmt, gz[bi], items)
        req.build()
        requests.append(req)
        sent_before.extend(batch)
        if bi in resend_set:
            again = EventRequest(f"batch {bi}", fmt, gz[bi], items)
            again.body, again.headers, again.is_resend = req.body, req.headers, True
            pending.append((len(requests) + rng.randint(0, 3), again))
        still = []
        for due, r in pending:
            if due <= len(requests) and r is not req:
                requests.append(r)
            else:
                still.append((due, r))
        pending = still
    requests.extend(r for _, r in pending)
    return requests, self_dup_batch


# ---------------------------------------------------------------------------------------------------------
# HTTP.

class Client:
    """One keep-alive connection; counts the times the server dropped it without saying so."""

    def __init__(self, port, timeout=20):
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.unexpected_drops = []
        self.closing_responses = 0

    def _connect(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None, retry=True):
        """Returns (status, headers dict with lower-case names, body bytes)."""
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            reused = self.conn.sock is not None
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.closing_responses += 1
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.BadStatusLine) as e:
                self.close()
                if attempt == 0 and reused and retry:
                    self.unexpected_drops.append(f"{method} {path[:60]}: {type(e).__name__}")
                    continue
                raise
            except (socket.timeout, TimeoutError):
                self.close()
                raise
        raise AssertionError("unreachable")


def one_shot(port, method, path, body=None, headers=None, timeout=20):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def parse_json(data):
    try:
        return json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None


def qs(params):
    """Query string that keeps ',' and ':' readable (as curl users type them)."""
    return "&".join(f"{urllib.parse.quote(str(k))}={urllib.parse.quote(str(v), safe=',:-_.')}"
                    for k, v in params)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_until_close(sock, timeout):
    """Reads until EOF/reset or timeout. Returns (data, closed, how)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False, "still open after %.1f s" % timeout
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return data, False, "still open after %.1f s" % timeout
        except ConnectionResetError:
            return data, True, "reset"
        except OSError as e:
            return data, True, f"error {e}"
        if not chunk:
            return data, True, "closed"
        data += chunk


def read_headers(sock, have, timeout):
    """Reads until a complete header block is there (or EOF, reset, timeout); returns the new bytes."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in have + data:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


# Anywhere, not only at a line start: a second (smuggled) response follows the first body directly.
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def status_lines(data):
    return [int(m.group(1)) for m in STATUS_LINE.finditer(data)]


# ---------------------------------------------------------------------------------------------------------
# The daemon.

class Daemon:
    def __init__(self, binary, data_dir, log_dir, name, config=None):
        self.binary = binary
        self.data_dir = data_dir
        self.config = config
        self.port = free_port()
        self.stderr_path = os.path.join(log_dir, f"{name}.stderr")
        self.stdout_path = os.path.join(log_dir, f"{name}.stdout")
        self.proc = None

    def start(self):
        args = [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
                "--log-level", "warn"]
        if self.config:
            args += ["--config", self.config]
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         cwd=os.path.dirname(self.data_dir), start_new_session=True)
        return args

    def stderr_tail(self, lines=40):
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no stderr file)"
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(stderr is empty)"

    def wait_ready(self, timeout_s=20.0):
        """Returns (ready, seconds, last status or error)."""
        t0 = time.monotonic()
        last = "no answer"
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                return False, time.monotonic() - t0, f"daemon exited with code {self.proc.returncode}"
            try:
                status, _, _ = one_shot(self.port, "GET", "/readyz", timeout=2)
                last = f"status {status}"
                if status == 200:
                    return True, time.monotonic() - t0, last
            except OSError as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.05)
        return False, time.monotonic() - t0, last

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s=10.0):
        """SIGTERM, wait; SIGKILL if it does not exit. Returns (exit code or None, seconds)."""
        if self.proc is None:
            return None, 0.0
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
            return code, time.monotonic() - t0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None, time.monotonic() - t0


# ---------------------------------------------------------------------------------------------------------
# The test.

class E2E:
    def __init__(self, args, res):
        self.args = args
        self.res = res
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.now_ms = int(time.time() * 1000)
        self.daemon = None
        self.client = None

    # --- helpers -------------------------------------------------------------------------------------

    def ensure_alive(self):
        if self.daemon is not None and not self.daemon.alive():
            code = self.daemon.proc.returncode
            self.res.check(False, "daemon stays up during the test", "running", f"exited with code {code}")
            self.print_stderr(self.daemon)
            raise Abort("daemon died")

    def get_json(self, path, params):
        url = path + ("?" + qs(params) if params else "")
        try:
            status, headers, data = self.client.request("GET", url)
        except (OSError, http.client.HTTPException) as e:
            self.ensure_alive()
            return None, None, f"{type(e).__name__}: {e}", url
        return status, parse_json(data), data, url

    def post_json(self, path, obj):
        body = json.dumps(obj).encode()
        try:
            status, headers, data = self.client.request("POST", path, body=body,
                                                        headers={"Content-Type": "application/json"})
        except (OSError, http.client.HTTPException) as e:
            self.ensure_alive()
            return None, None, f"{type(e).__name__}: {e}", path
        return status, parse_json(data), data, path

    def query_rows(self, name, params):
        """GET /v1/metrics; on failure records a failed check and returns None."""
        status, obj, raw, url = self.get_json("/v1/metrics", params)
        ok = status == 200 and isinstance(obj, dict) and isinstance(obj.get("rows"), list)
        if not self.res.check(ok, f"{name}: GET {url} returns 200 with rows",
                              "200 and a JSON object with a 'rows' list", f"status {status}, body {short(raw, 300)}"):
            return None
        if obj.get("truncated"):
            self.res.info(f"{name}: response says truncated={obj.get('truncated')}")
        return obj["rows"]

    def compare_rows(self, name, rows, expected, key_dims, metrics, with_time=False):
        """expected: key tuple -> Acc. Rows keyed by ([time,] dims...). One check per metric, one for keys."""
        got = {}
        dup_keys = []
        bad_rows = []
        for row in rows:
            if not isinstance(row, dict):
                bad_rows.append(row)
                continue
            key = tuple(row.get(d) for d in key_dims)
            if with_time:
                key = (row.get("time"),) + key
            if key in got:
                dup_keys.append(key)
            got[key] = row
        self.res.check(not bad_rows and not dup_keys, f"{name}: rows are objects, one per group",
                       "no repeated group", f"repeated {dup_keys[:5]} non-objects {bad_rows[:3]}")

        def all_zero(row):
            vals = [row.get(m) for m in metrics if m in SUM_METRICS]
            return vals and all(isinstance(v, (int, Decimal)) and v == 0 for v in vals)

        missing = sorted((k for k in expected if k not in got), key=str)
        extra = sorted((k for k in got if k not in expected and not all_zero(got[k])), key=str)
        self.res.check(not missing and not extra, f"{name}: set of groups",
                       f"{len(expected)} groups", f"missing {missing[:6]} ({len(missing)}), "
                       f"unexpected {[(k, got[k]) for k in extra[:4]]} ({len(extra)})")
        for m in metrics:
            mism = []
            for key, acc in sorted(expected.items(), key=lambda kv: str(kv[0])):
                row = got.get(key)
                if row is None:
                    continue
                ok, exp, val = metric_ok(m, acc, row.get(m))
                if not ok:
                    mism.append(f"{key}: expected {exp} got {val!r}")
            self.res.check(not mism, f"{name}: {m}", "all groups equal",
                           f"{len(mism)} of {len(expected)} differ: " + "; ".join(mism[:5]))
        return got

    # --- phases ---------------------------------------------------------------------------------------

    def run(self):
        print(f"seed: {self.seed} (rerun with --seed {self.seed})", flush=True)
        t0 = time.monotonic()
        self.events = generate_events(self.rng, self.now_ms)
        self.requests, self.self_dup_batch = plan_ingestion(self.events, self.rng, self.now_ms)
        mix = {}
        for r in self.requests:
            k = r.fmt + ("+gzip" if r.use_gzip else "")
            mix[k] = mix.get(k, 0) + 1
        self.res.info(f"generated {len(self.events)} events and {len(self.requests)} requests "
                      f"in {time.monotonic() - t0:.1f} s: {dict(sorted(mix.items()))}, "
                      f"{sum(r.is_resend for r in self.requests)} exact resends")

        self.root = tempfile.mkdtemp(prefix="adpulse-e2e-")
        self.data_dir = os.path.join(self.root, "data")
        os.mkdir(self.data_dir)
        # This test's traffic is random by design (clicks without an impression behind them, sent
        # out of order, duplicated and resent): it checks the engine's exactness against its own
        # ground truth, every event valid. Fraud scoring would rightly flag those clicks as
        # orphans; tests/integration/fraud_e2e_test.py checks scoring, billing and fraud_* exactly.
        self.config = os.path.join(self.root, "adpulse.toml")
        with open(self.config, "w") as f:
            f.write("[fraud]\nenabled = false\n")
        try:
            self.daemon = Daemon(self.args.binary, self.data_dir, self.root, "daemon1", config=self.config)
            if not self.start_daemon(self.daemon, "start"):
                return
            self.client = Client(self.daemon.port)
            phases = [
                ("ingest", self.phase_ingest),
                ("body errors", self.phase_body_errors),
                ("framing", self.phase_framing),
                ("queries", self.phase_queries),
                ("gzip members and limits", self.phase_gzip_and_limits),
                ("resend all", self.phase_resend_all),
                ("shutdown and restart", self.phase_restart),
                ("money past 64 bits", self.phase_money_limits),
            ]
            for name, fn in phases:
                self.client.close()  # a server may close idle keep-alive connections between phases
                t = time.monotonic()
                fn()
                self.res.info(f"phase '{name}' took {time.monotonic() - t:.1f} s")
        finally:
            try:
                if self.client is not None:
                    self.client.close()
                if self.daemon is not None and self.daemon.alive():
                    code, secs = self.daemon.stop()
                    self.res.check(code == 0, "daemon exits with code 0 on SIGTERM (teardown)", "0 within 10 s",
                                   f"code {code} after {secs:.1f} s")
                if self.res.failed and self.daemon is not None:
                    self.print_stderr(self.daemon)
            finally:
                if self.args.keep_data:
                    self.res.info(f"kept data and logs in {self.root}")
                else:
                    shutil.rmtree(self.root, ignore_errors=True)

    def print_stderr(self, daemon):
        if getattr(daemon, "stderr_printed", False):
            return
        daemon.stderr_printed = True
        print(f"---- {daemon.stderr_path} (tail) ----\n" + daemon.stderr_tail() + "\n----", flush=True)

    def start_daemon(self, daemon, what):
        if not os.path.isfile(daemon.binary) or not os.access(daemon.binary, os.X_OK):
            self.res.check(False, f"{what}: binary exists", f"an executable at {daemon.binary}", "none")
            return False
        args = daemon.start()
        ready, secs, last = daemon.wait_ready(20.0)
        ok = self.res.check(ready, f"{what}: GET /readyz answers 200 within 20 s",
                            "200", f"{last} after {secs:.1f} s (command: {' '.join(args)})")
        if not ok:
            self.print_stderr(daemon)
            daemon.stop()
            return False
        self.res.info(f"{what}: ready after {secs:.2f} s on port {daemon.port}")
        return True

    def send_events(self, req):
        """POST one request, retrying on 429/503 (nothing counted then). Returns (status, obj, raw)."""
        for attempt in range(8):
            try:
                status, headers, data = self.client.request("POST", "/v1/events", body=req.body,
                                                            headers=req.headers, retry=False)
            except (OSError, http.client.HTTPException) as e:
                self.ensure_alive()
                return None, None, f"{type(e).__name__}: {e}"
            if status in (429, 503):
                retry_after = headers.get("retry-after")
                self.res.check(retry_after is not None, f"{req.describe()}: {status} carries Retry-After",
                               "a Retry-After header", headers)
                self.res.info(f"{req.describe()}: {status}, retrying")
                time.sleep(min(float(retry_after or 1) if (retry_after or "1").isdigit() else 1.0, 2.0))
                continue
            return status, parse_json(data), data
        return status, parse_json(data), data

    def phase_ingest(self):
        seen = set()
        sums = {"accepted": 0, "duplicates": 0, "rejected": 0}
        expected_sums = {"accepted": 0, "duplicates": 0, "rejected": 0}
        for req in self.requests:
            # What the server must answer, from the client's ledger.
            exp = {"accepted": 0, "duplicates": 0, "rejected": 0}
            invalid_at = {}
            in_batch = set()
            for i, it in enumerate(req.items):
                if it[0] == "invalid":
                    exp["rejected"] += 1
                    invalid_at[i] = it
                elif it[1].event_id in seen or it[1].event_id in in_batch:
                    exp["duplicates"] += 1
                else:
                    exp["accepted"] += 1
                    in_batch.add(it[1].event_id)
            status, obj, raw = self.send_events(req)
            seen |= in_batch
            for k in expected_sums:
                expected_sums[k] += exp[k]
            name = req.describe()
            if not self.res.check(status == 200 and isinstance(obj, dict), f"{name}: status 200 with a JSON body",
                                  "200", f"status {status}, body {short(raw, 300)}"):
                continue
            got = {k: obj.get(k) for k in exp}
            for k in sums:
                if isinstance(got[k], int):
                    sums[k] += got[k]
            self.res.check(got == exp, f"{name}: accepted/duplicates/rejected", exp, got)
            if req.label == f"batch {self.self_dup_batch}" and not req.is_resend:
                self.res.check(got == exp, f"{name}: an event_id repeated inside one batch counts once",
                               exp, got)
            errors = obj.get("errors")
            if invalid_at:
                by_index = {}
                if isinstance(errors, list):
                    for e in errors:
                        if isinstance(e, dict) and isinstance(e.get("index"), int):
                            by_index[e["index"]] = e
                for i, it in sorted(invalid_at.items()):
                    e = by_index.get(i)
                    ok = e is not None and isinstance(e.get("error"), str) and e["error"].strip() != ""
                    self.res.check(ok, f"{name}: invalid event '{it[1]}' at index {i} reported",
                                   f"an errors entry with index {i} and a non-empty error", e)
                    if ok and it[3] is not None and "event_id" in e:
                        self.res.check(e["event_id"] == it[3], f"{name}: errors[index={i}].event_id",
                                       it[3], e["event_id"])
                stray = sorted(set(by_index) - set(invalid_at))
                self.res.check(not stray, f"{name}: no errors entry for a valid event",
                               "entries only at " + str(sorted(invalid_at)), f"also at {stray[:10]}")
            elif errors not in (None, []):
                self.res.check(False, f"{name}: no errors for an all-valid batch", "[] or absent", errors)
        n_resent = expected_sums["duplicates"]
        self.res.info(f"ingestion: expected {expected_sums}, got {sums}")
        self.res.check(sums["accepted"] == N_EVENTS, "ingestion: sum of accepted over all responses",
                       N_EVENTS, sums["accepted"])
        self.res.check(sums["duplicates"] == n_resent,
                       "ingestion: sum of duplicates == number of events sent again", n_resent, sums["duplicates"])
        self.res.check(sums["rejected"] == expected_sums["rejected"], "ingestion: sum of rejected",
                       expected_sums["rejected"], sums["rejected"])
        self.res.check(len(seen) == N_EVENTS, "ingestion plan covers every event once at least", N_EVENTS, len(seen))
        self.check_keepalive("ingestion")

    def check_keepalive(self, phase):
        c = self.client
        self.res.check(not c.unexpected_drops and c.closing_responses == 0,
                       f"{phase}: keep-alive connection reused for every request",
                       "no drops, no Connection: close",
                       f"{len(c.unexpected_drops)} silent drops {c.unexpected_drops[:3]}, "
                       f"{c.closing_responses} responses closing the connection")
        c.unexpected_drops = []
        c.closing_responses = 0

    def bad_event_body(self, tag):
        text, _ = invalid_event("event_type 'view'", tag, self.now_ms, self.rng)
        # A *valid* event of the bad campaign: it must not be counted because the request is refused.
        return text.replace('"view"', '"impression"')

    def phase_body_errors(self):
        port = self.daemon.port
        # Not JSON at all.
        status, headers, data = one_shot(port, "POST", "/v1/events", body=b"this is not json at all {{{ ]",
                                         headers={"Content-Type": "application/json"})
        obj = parse_json(data)
        self.res.check(status == 400, "body not JSON: status", 400, f"{status} {short(data, 200)}")
        self.res.check(isinstance(obj, dict) and isinstance(obj.get("error"), str) and obj["error"] != "",
                       "body not JSON: JSON {\"error\": ...}", "a JSON object with a non-empty error", short(data, 200))
        # Content-Type text/plain.
        body = self.bad_event_body("text-plain").encode()
        status, headers, data = one_shot(port, "POST", "/v1/events", body=body,
                                         headers={"Content-Type": "text/plain"})
        self.res.check(status == 415, "Content-Type text/plain: status", 415, f"{status} {short(data, 200)}")

        # Over 16 MiB, with Content-Length and then chunked. Valid events of campaign camp-big: none may count.
        line = ('{"event_id":"big-%d","event_type":"impression","timestamp":' + str(self.now_ms - HOUR_MS) +
                ',"campaign_id":"camp-big","user_id":"user-big","bid_price":0.000001,"currency":"USD"}')
        lines = []
        size = 0
        n = 0
        while size < BODY_LIMIT + 256 * 1024:
            s = line % n
            lines.append(s)
            size += len(s) + 1
            n += 1
        big_ndjson = ("\n".join(lines) + "\n").encode()
        head = (f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-ndjson\r\n"
                f"Content-Length: {len(big_ndjson)}\r\n\r\n").encode()
        data, sent, err = self.oversize(port, head, big_ndjson)
        codes = status_lines(data)
        self.res.check(codes[:1] == [413], f"body of {len(big_ndjson)} bytes with Content-Length: status",
                       413, f"status lines {codes}, sent {sent} of {len(big_ndjson)} bytes, "
                       f"send error {err}, got {short(data, 200)!r}")
        self.healthz_after("oversized body (Content-Length)")

        big_array = ("[" + ",".join(l.replace("big-", "bigc-") for l in lines) + "]").encode()
        chunks = []
        step = 64 * 1024
        for i in range(0, len(big_array), step):
            part = big_array[i:i + step]
            chunks.append(b"%x\r\n" % len(part) + part + b"\r\n")
        chunks.append(b"0\r\n\r\n")
        payload = b"".join(chunks)
        head = (f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Transfer-Encoding: chunked\r\n\r\n").encode()
        data, sent, err = self.oversize(port, head, payload)
        codes = status_lines(data)
        self.res.check(codes[:1] == [413], f"chunked body of {len(big_array)} bytes: status",
                       413, f"status lines {codes}, sent {sent} of {len(payload)} bytes, "
                       f"send error {err}, got {short(data, 200)!r}")
        self.healthz_after("oversized body (chunked)")
        self.ensure_alive()

    def oversize(self, port, head, payload, timeout=20.0):
        """Sends head + payload, reading whatever the server answers while sending. -> (data, sent, error)."""
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        data = b""
        err = None
        sent = 0
        try:
            s.sendall(head)
            s.setblocking(False)
            view = memoryview(payload)
            deadline = time.monotonic() + timeout
            while sent < len(payload) and time.monotonic() < deadline:
                r, w, _ = select.select([s], [s], [], 1.0)
                if r:
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        chunk = None
                    except OSError as e:
                        err = f"recv: {type(e).__name__}"
                        break
                    if chunk == b"":
                        err = "server closed while we were sending"
                        break
                    if chunk:
                        data += chunk
                        break  # the server has answered before the whole body: stop sending
                if w:
                    try:
                        sent += s.send(view[sent:sent + 256 * 1024])
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        err = f"send: {type(e).__name__}"
                        break
            s.setblocking(True)
            data += read_headers(s, data, 10.0)
        finally:
            s.close()
        return data, sent, err

    def healthz_after(self, what):
        try:
            status, _, data = one_shot(self.daemon.port, "GET", "/healthz", timeout=5)
        except OSError as e:
            status, data = None, f"{type(e).__name__}: {e}"
        self.res.check(status == 200, f"after {what}: GET /healthz on a new connection", 200, f"{status} {data!r}")

    def phase_framing(self):
        port = self.daemon.port
        host = f"Host: 127.0.0.1:{port}\r\n"
        # 1. Transfer-Encoding: chunked together with Content-Length.
        ev = self.bad_event_body("smuggle-te-cl").encode()
        chunked = b"%x\r\n" % len(ev) + ev + b"\r\n0\r\n\r\n"
        req = (b"POST /v1/events HTTP/1.1\r\n" + host.encode() + b"Content-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % len(chunked) + chunked)
        self.raw_framing_case("Transfer-Encoding: chunked with Content-Length", req)
        # 2. Transfer-Encoding: gzip (not chunked); the body is a request that must not be answered.
        smuggled = ("GET /healthz HTTP/1.1\r\n" + host + "\r\n").encode()
        req = (b"POST /v1/events HTTP/1.1\r\n" + host.encode() + b"Content-Type: application/json\r\n"
               b"Transfer-Encoding: gzip\r\n\r\n" + smuggled)
        self.raw_framing_case("Transfer-Encoding: gzip without chunked", req)
        # 3. Pipelining: four requests in one write are answered in order on the same connection;
        # one body is larger than the server reads at a time (64 KiB), so the next request's bytes
        # arrive with the end of it.
        ev = invalid_event("event_type 'view'", "pipelined", self.now_ms, self.rng)[0].encode()
        big = b"[" + b",".join(invalid_event("event_type 'view'", f"pipelined-big-{i}", self.now_ms,
                                             self.rng)[0].encode() for i in range(700)) + b"]"
        post = lambda body: (b"POST /v1/events HTTP/1.1\r\n" + host.encode() +
                             b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) +
                             body)
        req = (("GET /healthz HTTP/1.1\r\n" + host + "\r\n").encode() + post(ev) + post(big) +
               ("GET /readyz HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n").encode())
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(req)
            data, closed, how = read_until_close(s, 3.0)
        except OSError as e:
            data, closed, how = b"", True, type(e).__name__
        finally:
            s.close()
        codes = status_lines(data)
        self.res.check(len(big) > 65536 and codes == [200, 200, 200, 200] and
                       data.find(b'"status":"ok"') < data.find(b'"rejected":1,') <
                       data.find(b'"rejected":700,') < data.find(b'"ready"') and
                       data.find(b'"status":"ok"') >= 0,
                       f"pipelined requests (one body of {len(big)} bytes) are answered in order",
                       "[200, 200, 200, 200] in order", f"{codes}: {short(data, 600)!r}")
        self.ensure_alive()

    def raw_framing_case(self, name, request_bytes):
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=5)
        try:
            s.sendall(request_bytes)
            data, closed, how = read_until_close(s, 3.0)
        except OSError as e:
            data, closed, how = b"", True, f"{type(e).__name__}"
        finally:
            s.close()
        codes = status_lines(data)
        self.res.check(len(codes) >= 1 and codes[0] in (400, 501), f"{name}: status line",
                       "400 or 501", f"status lines {codes}: {short(data, 300)!r}")
        self.res.check(len(codes) <= 1, f"{name}: exactly one response (nothing smuggled)",
                       "one response", f"{len(codes)} responses {codes}")
        self.res.check(closed, f"{name}: server closes the connection", "closed", how)
        self.healthz_after(name)

    # --- queries ----------------------------------------------------------------------------------------

    def settle(self, params):
        """Waits (at most 5 s) until the campaign totals match the ground truth; reports the lag."""
        want = totals(self.events).impressions
        t0 = time.monotonic()
        while True:
            status, obj, raw, url = self.get_json("/v1/metrics", params)
            got = None
            if status == 200 and isinstance(obj, dict) and isinstance(obj.get("rows"), list):
                got = sum(r.get("impressions", 0) for r in obj["rows"] if isinstance(r, dict)
                          and isinstance(r.get("impressions"), (int, Decimal)))
                if got == want:
                    lag = time.monotonic() - t0
                    if lag > 0.05:
                        self.res.info(f"metrics caught up with acknowledged events after {lag:.2f} s")
                    return
            if time.monotonic() - t0 > 5.0:
                self.res.info(f"metrics did not reach {want} impressions within 5 s (last: {got})")
                return
            time.sleep(0.1)

    def phase_queries(self):
        ev = self.events
        S = (min(e.ts for e in ev) // DAY_MS) * DAY_MS
        E = (self.now_ms // HOUR_MS) * HOUR_MS + 2 * HOUR_MS
        assert S <= min(e.ts for e in ev) and max(e.ts for e in ev) < E
        self.S, self.E = S, E
        by_camp = aggregate(ev, lambda e: (e.campaign_id,))
        self.by_camp = by_camp

        base = [("start", S), ("end", E), ("granularity", "all")]
        camp_params = [("dimensions", "campaign_id"), ("metrics", ",".join(CAMPAIGN_METRICS))] + base
        self.settle(camp_params)

        # Per campaign.
        rows = self.query_rows("by campaign_id", camp_params)
        if rows is not None:
            self.compare_rows("by campaign_id", rows, by_camp, ("campaign_id",), CAMPAIGN_METRICS)
            self.res.check(all("time" not in r for r in rows if isinstance(r, dict)),
                           "by campaign_id, granularity=all: rows carry no time", "no 'time' key",
                           [r for r in rows if isinstance(r, dict) and "time" in r][:2])

        # Nothing refused or invalid was counted, over a range wide enough to see even the 3-day-old one.
        wide = [("dimensions", "campaign_id"), ("metrics", "impressions,clicks,conversions,spend"),
                ("start", self.now_ms - 4 * DAY_MS), ("end", self.now_ms + DAY_MS), ("granularity", "all")]
        rows = self.query_rows("no invalid or refused event counted (4 days back, 1 day ahead)", wide)
        if rows is not None:
            self.compare_rows("no invalid or refused event counted", rows, by_camp, ("campaign_id",), SUM_METRICS)

        # Benign traffic: no fraud flags (otherwise the counts above legitimately differ: this says why).
        fraud = [("dimensions", "campaign_id"), ("metrics", "fraud_impressions,fraud_clicks,fraud_spend")] + base
        rows = self.query_rows("fraud metrics", fraud)
        if rows is not None:
            flagged = [r for r in rows if isinstance(r, dict) and any(
                r.get(m) not in (0, None) for m in ("fraud_impressions", "fraud_clicks", "fraud_spend"))]
            missing = [r for r in rows if isinstance(r, dict) and "fraud_clicks" not in r]
            self.res.check(not flagged and not missing, "fraud metrics: the generated traffic is not flagged",
                           "fraud_* present and 0 for every campaign",
                           f"flagged {flagged[:3]} ({len(flagged)}), rows without fraud_clicks {len(missing)}")

        # Same in RFC 3339.
        rfc = [("dimensions", "campaign_id"), ("metrics", "impressions,spend"), ("start", rfc3339(S)),
               ("end", rfc3339(E)), ("granularity", "all")]
        rows = self.query_rows("by campaign_id, start/end in RFC 3339", rfc)
        if rows is not None:
            self.compare_rows("by campaign_id, RFC 3339 times", rows, by_camp, ("campaign_id",),
                              ("impressions", "spend"))

        # Per advertiser.
        adv_params = [("dimensions", "advertiser_id"), ("metrics", ",".join(CAMPAIGN_METRICS))] + base
        rows = self.query_rows("by advertiser_id", adv_params)
        if rows is not None:
            self.compare_rows("by advertiser_id", rows, aggregate(ev, lambda e: (e.advertiser_id,)),
                              ("advertiser_id",), CAMPAIGN_METRICS)

        # campaign_id,country filtered to camp-03; then also country:US (repeated filter params, AND).
        c03 = [e for e in ev if e.campaign_id == "camp-03"]
        params = [("dimensions", "campaign_id,country"), ("metrics", ",".join(CAMPAIGN_METRICS))] + base + \
                 [("filter", "campaign_id:camp-03")]
        rows = self.query_rows("by campaign_id,country filter campaign_id:camp-03", params)
        if rows is not None:
            self.compare_rows("by campaign_id,country filter campaign_id:camp-03", rows,
                              aggregate(c03, lambda e: (e.campaign_id, e.country)), ("campaign_id", "country"),
                              CAMPAIGN_METRICS)
        params = params + [("filter", "country:US")]
        rows = self.query_rows("filter campaign_id:camp-03 and country:US", params)
        if rows is not None:
            self.compare_rows("filter campaign_id:camp-03&filter=country:US", rows,
                              aggregate([e for e in c03 if e.country == "US"], lambda e: (e.campaign_id, e.country)),
                              ("campaign_id", "country"), CAMPAIGN_METRICS)

        self.check_granularities()
        self.check_post_query()
        self.check_realtime()
        self.check_top()
        self.check_funnel()
        self.check_prometheus()
        self.check_keepalive("queries")
        self.check_query_errors()  # a server may close the connection after a 4xx: not counted

    def check_granularities(self):
        ev = self.events
        gt = totals(ev)
        sizes = {"minute": MINUTE_MS, "5minute": 5 * MINUTE_MS, "hour": HOUR_MS, "day": DAY_MS}
        seen_totals = {}
        for gran in ("minute", "5minute", "hour", "day", "all"):
            params = [("dimensions", "advertiser_id"), ("metrics", ",".join(SUM_METRICS)),
                      ("start", self.S), ("end", self.E), ("granularity", gran)]
            rows = self.query_rows(f"granularity={gran}", params)
            if rows is None:
                continue
            rows = [r for r in rows if isinstance(r, dict)]
            tot = {m: sum((Decimal(r[m]) for r in rows if isinstance(r.get(m), (int, Decimal))), Decimal(0))
                   for m in SUM_METRICS}
            seen_totals[gran] = tot
            exp = {"impressions": gt.impressions, "clicks": gt.clicks, "conversions": gt.conversions,
                   "spend": micro_to_decimal(gt.micro)}
            self.res.check(all(tot[m] == exp[m] for m in SUM_METRICS), f"granularity={gran}: totals over all rows",
                           {m: str(v) for m, v in exp.items()}, {m: str(v) for m, v in tot.items()})
            if gran == "all":
                continue
            size = sizes[gran]
            misaligned = [r.get("time") for r in rows if not isinstance(r.get("time"), int) or r["time"] % size]
            self.res.check(not misaligned, f"granularity={gran}: every row has a bucket-aligned integer time",
                           f"time % {size} == 0", f"{len(misaligned)} rows, e.g. {misaligned[:3]}")
            self.compare_rows(f"granularity={gran} by advertiser_id", rows,
                              aggregate(ev, lambda e, sz=size: (e.ts // sz * sz, e.advertiser_id)),
                              ("advertiser_id",), SUM_METRICS, with_time=True)
        if len(seen_totals) > 1:
            first = next(iter(seen_totals.values()))
            self.res.check(all(t == first for t in seen_totals.values()),
                           "totals are equal across minute/5minute/hour/day/all", "equal",
                           {g: {m: str(v) for m, v in t.items()} for g, t in seen_totals.items()})
        # Hour buckets per campaign.
        params = [("dimensions", "campaign_id"), ("metrics", ",".join(SUM_METRICS)),
                  ("start", self.S), ("end", self.E), ("granularity", "hour")]
        rows = self.query_rows("granularity=hour by campaign_id", params)
        if rows is not None:
            self.compare_rows("granularity=hour by campaign_id", rows,
                              aggregate(ev, lambda e: (e.ts // HOUR_MS * HOUR_MS, e.campaign_id)),
                              ("campaign_id",), SUM_METRICS, with_time=True)

    def check_post_query(self):
        ev = self.events
        body = {"dimensions": ["campaign_id"], "metrics": ["impressions", "clicks"], "start": self.S,
                "end": self.E, "granularity": "all", "filters": {"campaign_id": ["camp-01", "camp-02"]}}
        status, obj, raw, _ = self.post_json("/v1/query", body)
        if self.res.check(status == 200 and isinstance(obj, dict) and isinstance(obj.get("rows"), list),
                          "POST /v1/query filters campaign_id in [camp-01, camp-02]: 200 with rows", 200,
                          f"{status} {short(raw, 300)}"):
            exp = aggregate([e for e in ev if e.campaign_id in ("camp-01", "camp-02")], lambda e: (e.campaign_id,))
            self.compare_rows("POST /v1/query camp-01,camp-02", obj["rows"], exp, ("campaign_id",),
                              ("impressions", "clicks"))
        body = dict(body, filters={"campaign_id": "camp-04"}, metrics=["impressions", "clicks", "spend"])
        status, obj, raw, _ = self.post_json("/v1/query", body)
        if self.res.check(status == 200 and isinstance(obj, dict) and isinstance(obj.get("rows"), list),
                          "POST /v1/query filters campaign_id = \"camp-04\" (string form): 200 with rows", 200,
                          f"{status} {short(raw, 300)}"):
            exp = aggregate([e for e in ev if e.campaign_id == "camp-04"], lambda e: (e.campaign_id,))
            self.compare_rows("POST /v1/query camp-04", obj["rows"], exp, ("campaign_id",),
                              ("impressions", "clicks", "spend"))

    def check_prometheus(self):
        try:
            status, headers, data = self.client.request("GET", "/metrics")
        except (OSError, http.client.HTTPException) as e:
            self.ensure_alive()
            self.res.check(False, "GET /metrics", 200, f"{type(e).__name__}: {e}")
            return
        if not self.res.check(status == 200, "GET /metrics: 200", 200, status):
            return
        values = {}
        for line in data.decode("utf-8", "replace").splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    pass
        accepted = values.get("adpulse_events_accepted_total")
        self.res.check(accepted is not None and accepted >= len(self.events),
                       "/metrics: adpulse_events_accepted_total counts the accepted events",
                       f">= {len(self.events)}", accepted)
        # Slices are flushed every flush_interval_ms / 64 by the shards' background writers.
        for name in ("adpulse_state_flushes_total", "adpulse_state_write_seconds_total"):
            self.res.check(values.get(name, 0) > 0, f"/metrics: {name} > 0 after ingestion", "> 0",
                           values.get(name))
        # The flushed slices' groups are added to the recent hours held in memory (the events span
        # the last 20 hours), which the ranking and sum queries here read.
        self.res.check(values.get("adpulse_state_recent_counters_bytes", 0) > 0,
                       "/metrics: adpulse_state_recent_counters_bytes > 0 after flushes", "> 0",
                       values.get("adpulse_state_recent_counters_bytes"))
        for name in ("adpulse_state_flush_seconds_total", "adpulse_wal_group_commits_total",
                     "adpulse_state_memory_groups"):
            self.res.check(name in values, f"/metrics: {name} is exported", name, sorted(values)[:5])

    def check_realtime(self):
        status, obj, raw, url = self.get_json("/v1/metrics/realtime", [("campaign_id", "camp-05"), ("window", 86400)])
        if not self.res.check(status == 200 and isinstance(obj, dict), f"GET {url}: 200", 200,
                              f"{status} {short(raw, 300)}"):
            return
        frm, to = obj.get("from"), obj.get("to")
        if not self.res.check(isinstance(frm, int) and isinstance(to, int) and frm < to,
                              "realtime: integer from < to", "from and to in epoch ms", {"from": frm, "to": to}):
            return
        now = int(time.time() * 1000)
        slack = 5 * MINUTE_MS  # room for bucket alignment
        self.res.check(abs(to - now) <= slack and abs((to - frm) - 86_400_000) <= slack,
                       "realtime: [from, to) is the last 86400 s (+-5 min)", f"to near {now}, to - from near 86400000",
                       {"from": frm, "to": to, "to-from": to - frm})
        self.res.check(obj.get("campaign_id") in ("camp-05", None) and obj.get("window_s") in (86400, None),
                       "realtime: echoes campaign_id and window_s", {"campaign_id": "camp-05", "window_s": 86400},
                       {"campaign_id": obj.get("campaign_id"), "window_s": obj.get("window_s")})
        acc = totals([e for e in self.events if e.campaign_id == "camp-05" and frm <= e.ts < to])
        for m in ("impressions", "clicks", "conversions", "spend", "ctr"):
            ok, exp, val = metric_ok(m, acc, obj.get(m))
            self.res.check(ok, f"realtime camp-05 window 86400: {m} over [from, to)", exp, val)

    def check_top(self):
        params = [("metric", "ctr"), ("dimension", "campaign_id"), ("limit", 5), ("start", self.S),
                  ("end", self.E), ("min_impressions", 100)]
        status, obj, raw, url = self.get_json("/v1/top", params)
        if not self.res.check(status == 200 and isinstance(obj, dict) and isinstance(obj.get("rows"), list),
                              f"GET {url}: 200 with rows", 200, f"{status} {short(raw, 300)}"):
            return
        rows = [r for r in obj["rows"] if isinstance(r, dict)]
        by_camp = {k[0]: v for k, v in self.by_camp.items()}
        cands = sorted(((ratio(a.clicks, a.impressions), c) for c, a in by_camp.items() if a.impressions >= 100),
                       reverse=True)
        want = min(5, len(cands))
        self.res.check(len(rows) == want, "top ctr: number of rows", want, len(rows))
        values = [r.get("value") for r in rows]
        self.res.check(all(isinstance(v, (int, Decimal)) for v in values) and
                       all(values[i] >= values[i + 1] for i in range(len(values) - 1)),
                       "top ctr: rows sorted by value descending", "non-increasing numbers", values)
        for r in rows:
            c = r.get("campaign_id")
            acc = by_camp.get(c)
            if not self.res.check(acc is not None, "top ctr: row names a known campaign", "camp-NN", r):
                continue
            self.res.check(acc.impressions >= 100, f"top ctr: {c} has impressions >= 100", ">= 100", acc.impressions)
            ok, exp, val = metric_ok("ctr", acc, r.get("value"))
            self.res.check(ok, f"top ctr: {c} value", exp, val)
            for m in ("clicks", "impressions"):
                if m in r:
                    ok, exp, val = metric_ok(m, acc, r.get(m))
                    self.res.check(ok, f"top ctr: {c} {m}", exp, val)
        # The set: every campaign strictly above the 5th value must be there; ties at the 5th compare by value.
        if cands:
            eps = Decimal("1e-6")
            fifth = cands[want - 1][0]
            must = {c for v, c in cands if v > fifth + eps}
            may = {c for v, c in cands if v >= fifth - eps}
            got = {r.get("campaign_id") for r in rows}
            self.res.check(must <= got <= may, "top ctr: the set is the true top 5 (min_impressions applied)",
                           [(c, f"{v:.6f}") for v, c in cands[:want]], sorted(got))
            exp_vals = [v for v, _ in cands[:want]]
            self.res.check(len(values) == want and all(isinstance(g, (int, Decimal)) and abs(Decimal(g) - e) <= eps
                                                       for g, e in zip(values, exp_vals)),
                           "top ctr: values equal the true top 5 values", [f"{v:.6f}" for v in exp_vals], values)

    def check_funnel(self):
        params = [("campaign_id", "camp-02"), ("start", self.S), ("end", self.E)]
        status, obj, raw, url = self.get_json("/v1/funnel", params)
        if not self.res.check(status == 200 and isinstance(obj, dict), f"GET {url}: 200", 200,
                              f"{status} {short(raw, 300)}"):
            return
        acc = totals([e for e in self.events if e.campaign_id == "camp-02"])
        for m in ("impressions", "clicks", "conversions", "ctr", "cvr"):
            ok, exp, val = metric_ok(m, acc, obj.get(m))
            self.res.check(ok, f"funnel camp-02: {m}", exp, val)

    def check_query_errors(self):
        base = [("start", self.S), ("end", self.E)]
        cases = [
            ("granularity=fortnight", [("dimensions", "campaign_id"), ("metrics", "impressions")] + base +
             [("granularity", "fortnight")], "granularity"),
            ("dimensions=city,os (no cube)", [("dimensions", "city,os"), ("metrics", "impressions")] + base +
             [("granularity", "all")], "cube"),
            ("missing start", [("dimensions", "campaign_id"), ("metrics", "impressions"), ("end", self.E),
                               ("granularity", "all")], "start"),
        ]
        for name, params, word in cases:
            status, obj, raw, url = self.get_json("/v1/metrics", params)
            self.res.check(status == 400, f"/v1/metrics {name}: status", 400, f"{status} {short(raw, 200)}")
            err = obj.get("error") if isinstance(obj, dict) else None
            self.res.check(isinstance(err, str) and word in err.lower(),
                           f"/v1/metrics {name}: JSON error mentions '{word}'", f"{{\"error\": \"...{word}...\"}}",
                           short(raw, 300))

        # Repeated dimensions and metrics are taken once (8 repeats once overran a 6-slot key).
        status, obj, raw, _ = self.post_json("/v1/query", {
            "dimensions": ["campaign_id"] * 8, "metrics": ["impressions", "impressions"],
            "start": self.S, "end": self.E, "granularity": "all", "filters": {"campaign_id": "camp-01"}})
        rows = obj.get("rows") if isinstance(obj, dict) else None
        exp = sum(1 for e in self.events if e.campaign_id == "camp-01" and e.event_type == "impression")
        self.res.check(status == 200 and rows is not None and len(rows) == 1 and
                       rows[0].get("impressions") == exp and raw.count(b'"campaign_id"') == 1,
                       "POST /v1/query with a repeated dimension groups once", f"one row, {exp} impressions",
                       short(raw, 300))
        status, obj, raw, url = self.get_json("/v1/funnel", [("campaign_id", "camp-02"), ("granularity", "minute")]
                                              + base)
        err = obj.get("error") if isinstance(obj, dict) else None
        self.res.check(status == 400 and isinstance(err, str) and "granularity" in err,
                       "/v1/funnel with a granularity: 400 naming it", 400, short(raw, 200))

    # --- end ------------------------------------------------------------------------------------------

    def phase_gzip_and_limits(self):
        """Bodies of several gzip members, trailing garbage, a bid over the limit, the lowest timestamp."""
        ev = self.events
        # Two members (what `cat a.gz b.gz` makes) of events already ingested: every event of both members
        # is read, so all of them are duplicates; a decoder that stops at the first member sees half.
        first = "\n".join(e.text for e in ev[100:300]).encode() + b"\n"
        second = "\n".join(e.text for e in ev[300:500]).encode() + b"\n"
        body = gzip.compress(first) + gzip.compress(second)
        status, headers, data = self.client.request(
            "POST", "/v1/events", body=body,
            headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        obj = parse_json(data)
        exp = {"accepted": 0, "duplicates": 400, "rejected": 0}
        got = {k: obj.get(k) for k in exp} if isinstance(obj, dict) else f"status {status} {short(data, 200)}"
        self.res.check(status == 200 and got == exp, "gzip body of two members: every event of both is read",
                       exp, got)
        # Trailing bytes that are not gzip: a 400, and none of the (valid, new) events counts.
        fresh = "\n".join(self.bad_event_body(f"gz-trail-{i}") for i in range(5)).encode()
        body = gzip.compress(fresh) + b"this is not gzip"
        status, headers, data = self.client.request(
            "POST", "/v1/events", body=body,
            headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        obj = parse_json(data)
        err = obj.get("error", "") if isinstance(obj, dict) else ""
        self.res.check(status == 400 and "trailing data" in err, "gzip body with trailing garbage: 400 naming it",
                       "400 with an error about trailing data", f"{status} {short(data, 200)}")
        # Per-event limits: a bid over ingest.max_bid_price (default 1000000) and a timestamp of -2^63.
        lines = [
            '{"event_id":"limit-bid","event_type":"click","timestamp":%d,"campaign_id":"%s",'
            '"advertiser_id":"adv-bad","bid_price":9223372036854.775807}' % (self.now_ms - MINUTE_MS * 30, BAD_CAMPAIGN),
            '{"event_id":"limit-ts","event_type":"click","timestamp":-9223372036854775808,"campaign_id":"%s"}'
            % BAD_CAMPAIGN,
        ]
        status, headers, data = self.client.request("POST", "/v1/events", body="\n".join(lines).encode(),
                                                    headers={"Content-Type": "application/x-ndjson"})
        obj = parse_json(data)
        errors = obj.get("errors", []) if isinstance(obj, dict) else []
        msgs = [e.get("error", e.get("message", "")) for e in errors if isinstance(e, dict)]
        self.res.check(status == 200 and isinstance(obj, dict) and obj.get("rejected") == 2 and obj.get("accepted") == 0,
                       "bid over the limit and timestamp -2^63: both rejected", "rejected 2, accepted 0",
                       f"{status} {short(data, 300)}")
        self.res.check(any("over the limit of 1000000" in m for m in msgs),
                       "bid over the limit: the reason names the limit", "'over the limit of 1000000'", msgs)
        self.res.check(any("before 1970" in m for m in msgs) and not any("s old" in m for m in msgs),
                       "timestamp -2^63: the reason says before 1970 (no overflowed age)", "'before 1970'", msgs)
        # A rebuild of a range older than the archive keeps (90 days) would delete what it cannot
        # recompute: refused with a 400, and nothing changes.
        old = (self.now_ms // DAY_MS - 120) * DAY_MS
        status, headers, data = self.client.request(
            "POST", f"/v1/admin/reconcile?start={old}&end={self.now_ms + HOUR_MS}&rebuild=true", body=b"")
        obj = parse_json(data)
        err = obj.get("error", "") if isinstance(obj, dict) else ""
        self.res.check(status == 400 and "rebuild needs every raw event" in err,
                       "reconcile rebuild older than the archive: 400 naming why", "400",
                       f"{status} {short(data, 300)}")

    def phase_money_limits(self):
        """A daemon with ingest.max_bid_price at its top: spend sums past 2^63 micro-units stay exact."""
        root = os.path.join(self.root, "limits")
        os.mkdir(root)
        data_dir = os.path.join(root, "data")
        os.mkdir(data_dir)
        config = os.path.join(root, "adpulse.toml")
        with open(config, "w") as f:
            f.write("[ingest]\nmax_bid_price = 9223372036854\n[fraud]\nenabled = false\n")
        daemon = Daemon(self.args.binary, data_dir, root, "limits", config=config)
        if not self.start_daemon(daemon, "money limits daemon"):
            return
        self.daemon = daemon  # so that ensure_alive and teardown see it
        self.client = Client(daemon.port)
        ts = self.now_ms - 10 * MINUTE_MS
        bids = ["9000000000000", "9000000000000", "9223372036854", "0.000001", "9223372036854.000000",
                "123.456789"]
        micros = [int(Decimal(b) * 1_000_000) for b in bids]
        lines = ['{"event_id":"m-%d","event_type":"%s","timestamp":%d,"campaign_id":"camp-limit",'
                 '"advertiser_id":"adv-limit","currency":"USD","user_id":"u-%d","bid_price":%s,'
                 '"user_agent":%s}'
                 % (i, "click" if i % 2 else "impression", ts, i, b, json.dumps(USER_AGENTS["desktop"]))
                 for i, b in enumerate(bids)]
        lines.append('{"event_id":"m-over","event_type":"click","timestamp":%d,"campaign_id":"camp-limit",'
                     '"advertiser_id":"adv-limit","bid_price":9223372036854.000001}' % ts)
        status, _, data = self.client.request("POST", "/v1/events", body="\n".join(lines).encode(),
                                              headers={"Content-Type": "application/x-ndjson"})
        obj = parse_json(data)
        got = {k: obj.get(k) for k in ("accepted", "rejected")} if isinstance(obj, dict) else f"{status} {data!r}"
        self.res.check(status == 200 and got == {"accepted": len(bids), "rejected": 1},
                       "money limits: bids up to max_bid_price accepted, one over it rejected",
                       {"accepted": len(bids), "rejected": 1}, got)
        total = sum(micros)
        want = micro_literal(total, "full")
        self.res.check(total > 2 ** 63, "money limits: the bids add up past 2^63 micro-units", "> 2^63", total)
        start, end = (ts // DAY_MS) * DAY_MS, (ts // DAY_MS + 1) * DAY_MS

        def check_all(when):
            status, obj, raw, url = self.get_json("/v1/billing", [("advertiser_id", "adv-limit"), ("start", start),
                                                                  ("end", end)])
            totals = obj.get("totals") if isinstance(obj, dict) else None
            spend = totals[0].get("spend") if totals else None
            self.res.check(status == 200 and spend == want, f"money limits ({when}): /v1/billing spend exact",
                           want, f"{status} {short(raw, 300)}")
            status, obj, raw, url = self.get_json("/v1/metrics/realtime", [("campaign_id", "camp-limit"),
                                                                           ("window", 3600)])
            spend = obj.get("spend") if isinstance(obj, dict) else None
            self.res.check(status == 200 and spend is not None and Decimal(spend) == micro_to_decimal(total),
                           f"money limits ({when}): realtime spend exact", micro_literal(total, "min"),
                           f"{status} {short(raw, 300)}")
            rows = self.query_rows(f"money limits ({when})", [("dimensions", "campaign_id"), ("metrics", "spend,clicks"),
                                                              ("start", start), ("end", end)])
            spend = rows[0].get("spend") if rows else None
            self.res.check(spend is not None and Decimal(spend) == micro_to_decimal(total),
                           f"money limits ({when}): /v1/metrics spend exact", micro_literal(total, "min"), rows)

        self.settle_on(daemon, "camp-limit", len(bids))
        check_all("in memory")
        status, obj, raw = None, None, None
        try:
            status, _, raw = self.client.request("POST", f"/v1/admin/reconcile?start={start}&end={end}", body=b"")
            obj = parse_json(raw)
        except (OSError, http.client.HTTPException) as e:
            raw = f"{type(e).__name__}: {e}"
        self.res.check(status == 200 and isinstance(obj, dict) and obj.get("difference_count") == 0
                       and obj.get("events") == len(bids),
                       "money limits: reconcile finds every event and no difference", "200, 0 differences",
                       f"{status} {short(raw, 300)}")
        self.client.close()
        code, secs = daemon.stop(10.0)
        self.res.check(code == 0, "money limits: SIGTERM exit code 0", 0, f"code {code}")
        daemon = Daemon(self.args.binary, data_dir, root, "limits2", config=config)
        if not self.start_daemon(daemon, "money limits daemon, restarted"):
            return
        self.daemon = daemon
        self.client = Client(daemon.port)
        check_all("after restart")

    def settle_on(self, daemon, campaign, want):
        """Waits until the campaign's events of the last hour are visible (ingestion is acknowledged first)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status, obj, raw, url = self.get_json("/v1/metrics/realtime", [("campaign_id", campaign), ("window", 3600)])
            if isinstance(obj, dict) and obj.get("impressions", 0) + obj.get("clicks", 0) >= want:
                return
            time.sleep(0.1)

    def phase_resend_all(self):
        ev = self.events
        self.client.unexpected_drops = []  # what the error queries left (a close after a 4xx is fine)
        self.client.closing_responses = 0
        for i in range(0, len(ev), 1000):
            req = EventRequest(f"final resend {i // 1000}", "ndjson", False, [("valid", e) for e in ev[i:i + 1000]])
            req.build()
            status, obj, raw = self.send_events(req)
            exp = {"accepted": 0, "duplicates": len(req.items), "rejected": 0}
            got = {k: obj.get(k) for k in exp} if isinstance(obj, dict) else f"status {status} {short(raw, 200)}"
            self.res.check(status == 200 and got == exp, f"{req.describe()}: only duplicates", exp, got)
        self.check_keepalive("final resend")
        params = [("dimensions", "campaign_id"), ("metrics", ",".join(CAMPAIGN_METRICS)), ("start", self.S),
                  ("end", self.E), ("granularity", "all")]
        rows = self.query_rows("after resending everything", params)
        if rows is not None:
            self.compare_rows("after resending everything: by campaign_id", rows, self.by_camp, ("campaign_id",),
                              CAMPAIGN_METRICS)

    def phase_restart(self):
        self.client.close()
        code, secs = self.daemon.stop(10.0)
        self.res.check(code == 0, "SIGTERM: daemon exits with code 0 within 10 s", 0,
                       f"code {code} after {secs:.1f} s" if code is not None else "did not exit (killed)")
        if code is None:
            self.print_stderr(self.daemon)
        if self.args.no_restart:
            print("info restart checks skipped (--no-restart)")
            return
        # Restart on the same data dir: every acknowledged event is still there, and still deduplicated.
        self.daemon = Daemon(self.args.binary, self.data_dir, self.root, "daemon2", config=self.config)
        if not self.start_daemon(self.daemon, "restart on the same data dir"):
            return
        self.client = Client(self.daemon.port)
        params = [("dimensions", "campaign_id"), ("metrics", ",".join(SUM_METRICS)), ("start", self.S),
                  ("end", self.E), ("granularity", "all")]
        rows = self.query_rows("after restart", params)
        if rows is not None:
            self.compare_rows("after restart: by campaign_id", rows, self.by_camp, ("campaign_id",), SUM_METRICS)
        req = EventRequest("after restart: resend", "array", True, [("valid", e) for e in self.events[5000:6000]])
        req.build()
        status, obj, raw = self.send_events(req)
        exp = {"accepted": 0, "duplicates": 1000, "rejected": 0}
        got = {k: obj.get(k) for k in exp} if isinstance(obj, dict) else f"status {status} {short(raw, 200)}"
        self.res.check(status == 200 and got == exp, "after restart: resent events are still duplicates", exp, got)
        self.client.close()
        code, secs = self.daemon.stop(10.0)
        self.res.check(code == 0, "SIGTERM after restart: exit code 0 within 10 s", 0,
                       f"code {code} after {secs:.1f} s" if code is not None else "did not exit (killed)")


def rfc3339(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ratio(num, den):
    return Decimal(num) / Decimal(den) if den else Decimal(0)


def metric_ok(m, acc, value):
    """(ok, expected, got) for one metric of one group."""
    if m in ("impressions", "clicks", "conversions"):
        exp = getattr(acc, m)
        ok = isinstance(value, (int, Decimal)) and not isinstance(value, bool) and Decimal(value) == exp
        return ok, exp, value
    if m == "spend":
        exp = micro_to_decimal(acc.micro)
        ok = isinstance(value, (int, Decimal)) and not isinstance(value, bool) and Decimal(value) == exp
        return ok, f"{exp} (exact)", value
    if m in ("ctr", "cvr"):
        exp = ratio(acc.clicks, acc.impressions) if m == "ctr" else ratio(acc.conversions, acc.clicks)
        ok = isinstance(value, (int, Decimal)) and not isinstance(value, bool) and \
            abs(Decimal(value) - exp) <= Decimal("1e-6")
        return ok, f"{exp:.6f} (+-1e-6)", value
    if m == "unique_users":
        exp = len(acc.users)
        tol = max(0.02 * exp, 1.0)
        ok = isinstance(value, (int, Decimal)) and not isinstance(value, bool) and abs(float(value) - exp) <= tol
        return ok, f"{exp} (+-{tol:.1f})", value
    raise ValueError(m)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("ADPULSE_BINARY", "build/adpulse"),
                    help="path to the adpulse binary (default: $ADPULSE_BINARY or build/adpulse)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    ap.add_argument("--keep-data", action="store_true", help="keep the data dir and daemon logs")
    ap.add_argument("--no-restart", action="store_true",
                    help="skip the restart on the same data dir (which checks that nothing was lost)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print passing checks too")
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)

    res = Results(args.verbose)
    t0 = time.monotonic()

    def watchdog(signum, frame):
        raise Abort(f"watchdog: the test ran over {WATCHDOG_S} s")

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG_S)
    test = E2E(args, res)
    try:
        test.run()
    except Abort as e:
        res.check(False, "test runs to the end", "no abort", str(e))
    except Exception as e:  # a bug here or an unexpected answer: report it as a failure, not a traceback only
        import traceback
        traceback.print_exc()
        res.check(False, "test runs to the end", "no exception", f"{type(e).__name__}: {e}")
    finally:
        signal.alarm(0)
    elapsed = time.monotonic() - t0
    print(f"info wall time {elapsed:.1f} s" + ("  (over the 60 s budget)" if elapsed > 60 else ""))
    print(f"{res.passed} passed, {res.failed} failed", flush=True)
    return 0 if res.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
