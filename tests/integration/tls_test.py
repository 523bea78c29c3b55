#!/usr/bin/env python3
"""HTTPS against the real binary, with a self-signed certificate this test makes with openssl.

Events go in and queries come back over TLS, verified against the certificate; plain HTTP to the
HTTPS port gets no answer (and is counted); SIGHUP loads a new certificate for new connections while
a connection made before keeps working; a certificate file that is not one, or a key that is not the
certificate's, fails startup with one line.

    python3 tests/integration/tls_test.py --binary build/adpulse

Standard library only (and Debian's openssl command). The last line printed is `N passed, M failed`.
"""

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "crash"))
from common import Tally, free_port  # noqa: E402


def make_cert(directory, name):
    cert, key = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


def request(port, ctx, method, path, body=None):
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    c.request(method, path, body=body, headers={"Content-Type": "application/x-ndjson"} if body else {})
    r = c.getresponse()
    data = r.read().decode()
    fingerprint = hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()
    c.close()
    return r.status, data, fingerprint


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    args = ap.parse_args()
    res = Tally()
    tmp = tempfile.mkdtemp(prefix="adpulse-tls-")
    proc = None
    try:
        first = make_cert(tmp, "first")
        live_cert, live_key = os.path.join(tmp, "live.pem"), os.path.join(tmp, "live.key")
        shutil.copy(first[0], live_cert)
        shutil.copy(first[1], live_key)
        config = os.path.join(tmp, "adpulse.toml")
        with open(config, "w") as f:
            f.write(f'[server]\ntls_cert_file = "{live_cert}"\ntls_key_file = "{live_key}"\n')
        port = free_port()
        log_path = os.path.join(tmp, "daemon.log")
        log = open(log_path, "wb")
        proc = subprocess.Popen([args.binary, "--config", config, "--listen", f"127.0.0.1:{port}",
                                 "--data-dir", os.path.join(tmp, "data")], stdout=log, stderr=log)
        ctx1 = context(first[0])
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status, _, fp1 = request(port, ctx1, "GET", "/readyz")
            except (OSError, ssl.SSLError):
                time.sleep(0.05)
        res.check(status == 200, f"/readyz over HTTPS, verified against the test's certificate: {status}")
        now = int(time.time() * 1000)
        events = "".join(json.dumps({"event_id": f"t{i}", "event_type": "impression", "timestamp": now - 1000,
                                     "campaign_id": "tls-1", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) "
                                     "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                                     "bid_price": 0.5}) + "\n" for i in range(50))
        status, body, _ = request(port, ctx1, "POST", "/v1/events", events.encode())
        res.check(status == 200 and json.loads(body)["accepted"] == 50, f"50 events over HTTPS: {status} {body}")
        status, body, _ = request(port, ctx1, "GET", f"/v1/metrics?metrics=impressions,spend&filter=campaign_id:tls-1"
                                                     f"&start={now - 60000}&end={now + 60000}")
        rows = json.loads(body)["rows"] if status == 200 else []
        res.check(rows and rows[0]["impressions"] == 50 and rows[0]["spend"] == 25,
                  f"and counted: {status} {body}")

        # Plain HTTP to the HTTPS port: no HTTP answer, the handshake failure is counted.
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        s.close()
        res.check(not data.startswith(b"HTTP/"), f"plain HTTP to the HTTPS port gets no HTTP answer: {data[:40]!r}")
        old_protocol = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old_protocol.load_verify_locations(first[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old_protocol.minimum_version = old_protocol.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            request(port, old_protocol, "GET", "/healthz")
            refused = False
        except (ssl.SSLError, OSError):
            refused = True
        res.check(refused, "TLS 1.1 is refused")

        # A keep-alive connection made with the first certificate, then SIGHUP with a second one.
        kept = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx1)
        kept.request("GET", "/healthz")
        res.check(json.loads(kept.getresponse().read()) == {"status": "ok"}, "a keep-alive connection before the reload")
        second = make_cert(tmp, "second")
        shutil.copy(second[0], live_cert)
        shutil.copy(second[1], live_key)
        proc.send_signal(signal.SIGHUP)
        ctx2 = context(second[0])
        deadline = time.monotonic() + 10
        fp2 = None
        while time.monotonic() < deadline and fp2 is None:
            try:
                _, _, fp2 = request(port, ctx2, "GET", "/healthz")
            except (OSError, ssl.SSLError):
                time.sleep(0.05)
        res.check(fp2 is not None and fp2 != fp1, "after SIGHUP new connections get the second certificate")
        try:
            request(port, ctx1, "GET", "/healthz")
            stale = True
        except ssl.SSLError:
            stale = False
        res.check(not stale, "a client that trusts only the first certificate is now refused")
        kept.request("GET", "/healthz")
        res.check(json.loads(kept.getresponse().read()) == {"status": "ok"},
                  "the connection made before the reload still works")
        kept.close()

        # A broken certificate on SIGHUP: logged, the second one stays.
        with open(live_cert, "w") as f:
            f.write("not a certificate\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        status, _, fp = request(port, ctx2, "GET", "/healthz")
        res.check(status == 200 and fp == fp2, "a broken certificate on SIGHUP keeps the previous one")
        status, body, _ = request(port, ctx2, "GET", "/metrics")
        res.check("adpulse_tls_handshake_failures_total" in body and
                  any(line.startswith("adpulse_tls_handshake_failures_total ") and float(line.split()[1]) >= 2
                      for line in body.splitlines()), "handshake failures are counted in /metrics")
        proc.send_signal(signal.SIGTERM)
        res.check(proc.wait(30) == 0, "clean shutdown")
        proc = None
        log.close()
        with open(log_path) as f:
            text = f.read()
        res.check("listening on https://127.0.0.1" in text and "certificate" in text and "reloaded" in text
                  and "the previous certificate stays" in text, "the log says https, the reload and the failed one")

        # Startup with a file that is not a certificate, and with another certificate's key.
        for cert, key, words in ((live_cert, first[1], "server.tls_cert_file"),
                                 (first[0], second[1], "private key of")):
            with open(config, "w") as f:
                f.write(f'[server]\ntls_cert_file = "{cert}"\ntls_key_file = "{key}"\n')
            out = subprocess.run([args.binary, "--config", config, "--listen", f"127.0.0.1:{free_port()}",
                                  "--data-dir", os.path.join(tmp, "data2")], capture_output=True, text=True, timeout=30)
            lines = out.stderr.strip().splitlines()
            res.check(out.returncode != 0 and len(lines) == 1 and words in lines[0],
                      f"startup fails in one line naming the problem: {lines}")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return res.finish()


if __name__ == "__main__":
    sys.exit(main())
