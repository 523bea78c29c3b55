#!/usr/bin/env python3
"""Requests as unusual and hostile clients send them, over raw sockets to the real binary.

- RFC 9112's rules on Host and absolute-form targets, bare-LF line ends;
- header size and field-count limits, chunk extensions, gzip bombs (alone and five at once);
- JSON: numbers that are not JSON numbers, duplicate keys, deep nesting, NaN and Infinity, invalid
  UTF-8, huge strings, out-of-range numbers, a second request hidden in a body; each a clear error;
- 500 slow connections (slowloris headers and slow bodies, from four client addresses) held open
  while four normal clients ingest: their throughput stays within 20 % of the unloaded figure, the
  slow ones are closed at their timeouts, and the totals are exact afterwards;
- connections per client address and in total: past either limit a new connection gets 503.

(The framing cases of Transfer-Encoding and Content-Length are in e2e_test.py.)

    python3 tests/integration/hostile_http_test.py --binary build/adpulse

Standard library only. The last line printed is `N passed, M failed`; the exit code is 0 only if M == 0.
"""

import argparse
import gzip
import http.client
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "crash"))
from common import Daemon, Tally  # noqa: E402


def exchange(port, data, timeout=3.0):
    """Sends `data` and reads until the server closes or goes quiet: (status, body text)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep:
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    except socket.timeout:
        pass
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else None
    return status, body.decode(errors="replace")


def post(port, body, target="/v1/events", host=True, version="1.1"):
    head = f"POST {target} HTTP/{version}\r\n"
    if host:
        head += f"Host: 127.0.0.1:{port}\r\n"
    head += f"Content-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return exchange(port, head.encode() + body)


CONFIG = """
[server]
idle_timeout_s = 8
request_timeout_s = 8
max_connections = 1000
max_connections_per_client = 256
"""


def connect_from(port, source, timeout=5.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def closed_by_server(s, wait):
    """True when the server closes `s` (or resets it) within `wait` seconds."""
    s.settimeout(wait)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


class Ingest:
    """Normal clients: keep-alive connections posting pre-encoded NDJSON batches."""

    def __init__(self, port, now, clients=4, batch=500):
        self.port, self.now, self.clients, self.batch = port, now, clients, batch
        self.next_id = 0
        self.accepted = 0
        self.errors = []
        self.lock = threading.Lock()

    def body(self):
        with self.lock:
            start = self.next_id
            self.next_id += self.batch
        lines = [json.dumps({"event_id": f"n{i}", "event_type": "impression", "timestamp": self.now - 5000,
                             "campaign_id": f"nc-{i % 7}", "user_id": f"u{i % 997}",
                             "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
                                           "Gecko) Chrome/120.0.0.0 Safari/537.36", "bid_price": 0.25})
                 for i in range(start, start + self.batch)]
        return ("\n".join(lines) + "\n").encode()

    def run(self, seconds):
        """Events accepted per second over `seconds`, all clients together."""
        bodies = [[self.body() for _ in range(400)] for _ in range(self.clients)]
        got = [0] * self.clients
        stop = time.monotonic() + seconds

        def client(k):
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            for b in bodies[k]:
                if time.monotonic() >= stop:
                    break
                try:
                    c.request("POST", "/v1/events", body=b, headers={"Content-Type": "application/x-ndjson"})
                    r = c.getresponse()
                    data = r.read()
                except (OSError, http.client.HTTPException) as e:
                    self.errors.append(repr(e))
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    continue
                if r.status != 200:
                    self.errors.append(f"{r.status} {data[:200]}")
                    continue
                got[k] += json.loads(data)["accepted"]
            c.close()

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        self.accepted += sum(got)
        return sum(got) / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("ADPULSE_BINARY", "build/adpulse"))
    args = ap.parse_args()
    res = Tally()
    root = tempfile.mkdtemp(prefix="adpulse-hostile-")
    config = os.path.join(root, "adpulse.toml")
    with open(config, "w") as f:
        f.write(CONFIG)
    daemon = Daemon(os.path.abspath(args.binary), os.path.join(root, "data"), os.path.join(root, "daemon.log"),
                    ["--config", config])
    try:
        daemon.start()
        port = daemon.port
        now = int(time.time() * 1000)

        def event(i, **extra):
            e = {"event_id": f"h{i}", "event_type": "impression", "timestamp": now - 1000, "campaign_id": "h1"}
            e.update(extra)
            return json.dumps(e)

        status, body = exchange(port, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        res.check(status == 400 and "Host header" in body, f"HTTP/1.1 without Host is a 400 (RFC 9112): {status} {body}")
        status, body = exchange(port, b"GET /healthz HTTP/1.0\r\n\r\n")
        res.check(status == 200, f"HTTP/1.0 without Host is fine: {status} {body}")
        status, body = post(port, (event(1) + "\n").encode(), target=f"http://127.0.0.1:{port}/v1/events")
        res.check(status == 200 and json.loads(body)["accepted"] == 1,
                  f"an absolute-form target (POST http://host/v1/events) is accepted: {status} {body}")
        status, body = exchange(port, f"GET HTTP://127.0.0.1:{port}/healthz HTTP/1.1\r\nHost: x\r\n"
                                      "Connection: close\r\n\r\n".encode())
        res.check(status == 200 and "ok" in body, f"the scheme of an absolute form is case-insensitive: {status}")
        status, body = exchange(port, b"GET /healthz HTTP/1.1\nHost: x\n\n")
        res.check(status == 400 and "CRLF" in body, f"bare LF line ends are named: {status} {body}")

        for i, raw in enumerate(["00.5", "01", "1e", "0x10", "-01"]):
            line = event(20 + i).rstrip("}") + f', "bid_price": {raw}}}'
            status, body = post(port, (line + "\n").encode())
            answer = json.loads(body) if status == 200 else {}
            errors = answer.get("errors", [])
            res.check(status == 200 and answer.get("rejected") == 1 and errors and
                      errors[0]["error"] == f"bid_price {raw} is not a JSON number (write it like 0.5 or 12)",
                      f"bid_price {raw} is refused as not a JSON number: {status} {body}")
        line = event(30).rstrip("}") + ', "bid_price": 1e30}'
        status, body = post(port, (line + "\n").encode())
        res.check(status == 200 and "out of range" in body, f"bid_price 1e30 is out of range: {body}")
        status, body = post(port, (event(31, timestamp=int(time.time() * 1000) + 61_000) + "\n").encode())
        err = json.loads(body)["errors"][0]["error"] if status == 200 else body
        res.check(err.startswith("timestamp is 6") and " s in the future (limit 60 s)" in err and
                  err != "timestamp is 60 s in the future (limit 60 s)",
                  f"a timestamp 61 s ahead gives the exact figure: {err}")

        # ---- JSON that is hostile or careless: each a clear error for its event or body ----
        def line_error(line):
            status, body = post(port, (event(900) + "\n" + line + "\n").encode())
            answer = json.loads(body) if status == 200 else {}
            errors = answer.get("errors") or [{}]
            return status, errors[0].get("error", body)
        cases = [
            (event(40).rstrip("}") + ', "campaign_id": "h2"}', "field 'campaign_id' appears twice in the event"),
            (event(41).rstrip("}") + ', "ext": ' + "[" * 5000 + "]" * 5000 + "}",
             "field 'ext' is nested deeper than 32 levels"),
            (event(42).rstrip("}") + ', "bid_price": NaN}', "NaN and Infinity are not JSON numbers"),
            (event(43).rstrip("}") + ', "bid_price": Infinity}', "NaN and Infinity are not JSON numbers"),
            (event(44).rstrip("}") + ', "city": "\\ud800"}', "invalid escape"),
            (event(45).rstrip("}") + ', "user_agent": "' + "x" * 2_000_000 + '"}', "user_agent is 2000000 bytes"),
            (event(46).rstrip("}") + ', "bid_price": 1e400}', "out of range"),
            (event(47, timestamp=99999999999999999999), "timestamp must be an integer"),
            (event(48) + "POST /v1/events HTTP/1.1", "data after the JSON object: 'POST /v1/events HTTP/1.1'"),
        ]
        for line, expected in cases:
            status, err = line_error(line)
            res.check(status == 200 and expected in err, f"{line[:60]!r}...: {expected!r} ({status} {err[:150]})")
        raw = (event(49).rstrip("}") + ', "city": "a').encode() + b"\xff\xfe" + b'"}'
        status, body = post(port, (event(901) + "\n").encode() + raw + b"\n")
        res.check(status == 200 and "a string is not valid UTF-8" in body, f"invalid UTF-8 is named: {body[:200]}")
        status, body = exchange(port, f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                      f"Content-Length: {len(event(50)) + 4}\r\nConnection: close\r\n\r\n"
                                      f"{event(50)}\r\n{{}}".encode())
        res.check(status == 400 and "data after the JSON value" in body, f"a second value after a JSON body: {body}")

        # ---- header limits and chunk extensions ----
        many = "".join(f"X-F{i}: v\r\n" for i in range(101))
        status, body = exchange(port, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
        res.check(status == 431 and "102 header fields (limit 100)" in body, f"101 extra header fields: {status} {body}")
        status, body = exchange(port, f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 70000}\r\n\r\n".encode())
        res.check(status == 431, f"a 70 KB header: {status} {body}")
        status, body = exchange(port, f"GET /healthz HTTP/1.1\r\nHost: x\r\n{'X-F: v' + chr(13) + chr(10)}\r\n".encode())
        res.check(status == 200, f"a repeated field name under the limit is fine: {status}")
        chunk = event(60).encode()
        for ext, expect in ((b";a=b", 200), (b";" + b"x" * 100_000, 400)):
            req = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                   b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
                   f"{len(chunk):x}".encode() + ext + b"\r\n" + chunk + b"\r\n0\r\n\r\n")
            status, body = exchange(port, req)
            res.check(status == expect, f"a chunk extension of {len(ext)} bytes: {status} (want {expect}) {body[:120]}")

        # ---- gzip bombs: refused after a little work, alone or five at once ----
        bomb = gzip.compress(b"\0" * (200 << 20), 9)
        def bomb_request():
            return exchange(port, b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                                  b"Content-Encoding: gzip\r\nConnection: close\r\n" +
                                  f"Content-Length: {len(bomb)}\r\n\r\n".encode() + bomb, timeout=30)
        t0 = time.monotonic()
        status, body = bomb_request()
        one = time.monotonic() - t0
        res.check(status == 413 and "decompression bomb" in body,
                  f"a {len(bomb)} byte gzip of 200 MiB is a 413: {status} {body[:200]}")
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(bomb_request())) for _ in range(5)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(0.05)
        status, body = post(port, (event(70) + "\n").encode())
        normal = time.monotonic() - t0
        for t in threads:
            t.join()
        res.check(status == 200 and [a[0] for a in answers] == [413] * 5,
                  f"five bombs at once: all 413 ({[a[0] for a in answers]}), a normal request beside them 200")
        res.check(normal < 2.0, f"the normal request beside five bombs took {normal:.2f} s (one bomb {one:.2f} s)")

        # ---- 500 slow connections while four normal clients ingest ----
        ingest = Ingest(port, int(time.time() * 1000))
        ingest.run(1.5)  # warm up: connections, caches
        unloaded = ingest.run(5)
        slow = []
        sources = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"]
        for i in range(500):
            s = connect_from(port, sources[i % 4])
            if i % 2:
                s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")  # slowloris: a header at a time
            else:
                s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                          b"Content-Length: 100000\r\n\r\n{")  # a slow body
            slow.append(s)
        opened = time.monotonic()
        stop_dribble = threading.Event()

        def dribble():
            n = 0
            while not stop_dribble.wait(1.0):
                for i, s in enumerate(slow):
                    try:
                        s.sendall(f"X-Slow-{n}: 1\r\n".encode() if i % 2 else b" ")
                    except OSError:
                        pass
                n += 1
        dribbler = threading.Thread(target=dribble)
        dribbler.start()
        loaded = ingest.run(5)
        if loaded < 0.8 * unloaded:  # one more pair, in case the machine was busy elsewhere
            unloaded = max(unloaded, ingest.run(3))
        print(f"normal clients: {unloaded:,.0f} events/s unloaded, {loaded:,.0f} beside 500 slow connections",
              flush=True)
        res.check(loaded >= 0.8 * unloaded,
                  f"normal clients beside 500 slow connections: {loaded:,.0f} events/s, unloaded {unloaded:,.0f} "
                  f"({100 * loaded / max(unloaded, 1):.0f} %, at least 80 %)")
        status, body = exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10)
        held = [line for line in body.splitlines() if line.startswith("adpulse_http_open_connections ")]
        held = float(held[0].split()[1]) if held else 0
        res.check(held >= 500, f"the 500 slow connections were held open meanwhile ({held:.0f} open)")
        stop_dribble.set()
        dribbler.join()
        wait = max(0.5, opened + 8 + 3 - time.monotonic())
        closed = sum(closed_by_server(s, wait if i == 0 else 0.5) for i, s in enumerate(slow))
        res.check(closed == 500, f"every slow connection was closed at its 8 s timeout: {closed} of 500")
        for s in slow:
            s.close()
        res.check(not ingest.errors, f"normal clients saw no errors: {ingest.errors[:3]}")

        # ---- connections per client address, and in total ----
        mine = [connect_from(port, "127.0.0.20") for _ in range(256)]
        extra = connect_from(port, "127.0.0.20")
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = extra.recv(4096).decode(errors="replace")
        res.check(data.startswith("HTTP/1.1 503") and "limit per client address" in data,
                  f"the 257th connection from one address: {data[:60]!r}...")
        other = connect_from(port, "127.0.0.21")
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        res.check(other.recv(4096).startswith(b"HTTP/1.1 200"), "another address is still served")
        for s in mine + [extra, other]:
            s.close()
        time.sleep(0.3)
        crowd = [connect_from(port, f"127.0.1.{1 + i // 250}") for i in range(1000)]
        time.sleep(0.3)
        late = connect_from(port, "127.0.2.1")
        late.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = late.recv(4096).decode(errors="replace")
        res.check(data.startswith("HTTP/1.1 503") and "server.max_connections" in data,
                  f"past server.max_connections: {data[:60]!r}...")
        for s in crowd + [late]:
            s.close()
        time.sleep(0.5)
        status, body = exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10)
        res.check('adpulse_http_connections_refused_total{reason="max_connections_per_client"} 1' in body
                  and 'adpulse_http_connections_refused_total{reason="max_connections"} 1' in body,
                  "refused connections are counted by reason")

        # ---- the totals are exact afterwards ----
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", f"/v1/metrics?metrics=impressions&start={now - 3_600_000}&end={now + 120_000}"
                         "&dimensions=campaign_id")
        rows = json.loads(c.getresponse().read())["rows"]
        c.close()
        counted = sum(r["impressions"] for r in rows if r["campaign_id"].startswith("nc-"))
        res.check(counted == ingest.accepted, f"every accepted event of the normal clients counted once: "
                                              f"{counted} of {ingest.accepted}")
        res.check(daemon.stop() == 0, "clean shutdown")
    except Exception as e:  # noqa: BLE001
        res.check(False, f"test aborted: {type(e).__name__}: {e}")
        daemon.kill9()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
