#!/usr/bin/env python3
"""Restart with a different worker count: the data dir keeps the shard count it was created
with, so nothing acknowledged is lost and every resent event is still a duplicate.

Run: python3 tests/crash/worker_count.py --binary build/adpulse
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Daemon, Tally, compare, encode, make_events, post, query_by_campaign, truth_by_campaign  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--binary", default=os.environ.get("ADPULSE_BINARY", "build/adpulse"))
    args = ap.parse_args()
    tally = Tally()
    root = tempfile.mkdtemp(prefix="adpulse-workers-")
    data_dir = os.path.join(root, "data")
    now_ms = int(time.time() * 1000)
    events = make_events(5000, 77, now_ms, campaigns=40)
    bodies = [encode(events[i:i + 500]) for i in range(0, len(events), 500)]
    binary = os.path.abspath(args.binary)
    first = Daemon(binary, data_dir, os.path.join(root, "d1.log"), ["--workers", "4"])
    try:
        first.start()
        for body in bodies:
            res, info = post(first.port, body)
            tally.check(res == "ok" and info["accepted"] == 500, f"4 workers: batch accepted ({res} {info})")
        tally.check(first.stop() == 0, "SIGTERM exits 0")
        for workers in ("1", "3"):
            d = Daemon(binary, data_dir, os.path.join(root, f"d{workers}.log"), ["--workers", workers])
            d.start()
            tally.check("was created with 4 shards" in d.log_text(),
                        f"--workers {workers}: the log says the data dir keeps its 4 shards")
            mismatches = compare(truth_by_campaign(events), query_by_campaign(d.port, now_ms))
            tally.check(not mismatches, f"--workers {workers}: every event still counted ({mismatches[:3]})")
            dups = 0
            for body in bodies:
                res, info = post(d.port, body)
                dups += info["duplicates"] if res == "ok" else 0
            tally.check(dups == len(events), f"--workers {workers}: resending gives only duplicates ({dups})")
            tally.check(d.stop() == 0, f"--workers {workers}: SIGTERM exits 0")
    except Exception as e:
        tally.check(False, f"ran to the end: {type(e).__name__}: {e}")
    if tally.failed:
        print(f"info kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
