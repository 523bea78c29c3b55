#!/usr/bin/env python3
"""Requests as unusual clients send them, over raw sockets to the real binary: RFC 9112's rules on
Host and absolute-form targets, bare-LF line ends, numbers that are not JSON numbers, and messages that
give the exact figure. (The start of issue 19's hostile-request suite; the framing and body-limit cases
are in e2e_test.py.)

    python3 tests/integration/hostile_http_test.py --binary build/adpulse

Standard library only. The last line printed is `N passed, M failed`; the exit code is 0 only if M == 0.
"""

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("ADPULSE_BINARY", "build/adpulse"))
    args = ap.parse_args()
    res = Tally()
    root = tempfile.mkdtemp(prefix="adpulse-hostile-")
    daemon = Daemon(os.path.abspath(args.binary), os.path.join(root, "data"), os.path.join(root, "daemon.log"))
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
        res.check(daemon.stop() == 0, "clean shutdown")
    except Exception as e:  # noqa: BLE001
        res.check(False, f"test aborted: {type(e).__name__}: {e}")
        daemon.kill9()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
