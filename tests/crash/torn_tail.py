#!/usr/bin/env python3
"""Torn-tail test: cut the newest write-ahead-log segment at a random byte and restart.

The daemon is killed with SIGKILL (so nothing after its last checkpoint is in the state store;
the flush interval is set to an hour), the newest segment is cut, and the daemon restarted. It must
start, log the truncation, and still count every event whose record lies wholly before the cut;
the events after it (which a real crash would never have acknowledged) come back as new when
resent, every other one as a duplicate, and the totals then equal the ground truth. The WAL layout
is read per docs/formats/wal.md.

Run: python3 tests/crash/torn_tail.py --binary build/adpulse [--rounds 5]
"""
import argparse
import os
import random
import shutil
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Daemon, Tally, compare, encode, make_events, post, query_by_campaign, truth_by_campaign  # noqa: E402

HEADER = 16
RECORD_HEADER = 8
# version, type, fraud flags, then in version 3: attribution; in versions 2 and 3: score,
# signals; timestamp, bid micros, and in versions 2 and 3: latitude, longitude (docs/formats/wal.md)
PAYLOAD_ID_OFFSET = {1: 1 + 1 + 1 + 8 + 8, 2: 1 + 1 + 1 + 2 + 4 + 8 + 8 + 4 + 4,
                     3: 1 + 1 + 1 + 1 + 2 + 4 + 8 + 8 + 4 + 4}


def records(path):
    """(end offset, event_id) of each record in a segment."""
    data = open(path, "rb").read()
    out, at = [], HEADER
    while at + RECORD_HEADER <= len(data):
        length, _ = struct.unpack_from("<II", data, at)
        if at + RECORD_HEADER + length > len(data):
            break
        p = at + RECORD_HEADER + PAYLOAD_ID_OFFSET[data[at + RECORD_HEADER]]
        (id_len,) = struct.unpack_from("<H", data, p)
        out.append((at + RECORD_HEADER + length, data[p + 2:p + 2 + id_len].decode()))
        at += RECORD_HEADER + length
    return out


def newest_segment(data_dir):
    best = None
    wal = os.path.join(data_dir, "wal")
    for shard in sorted(os.listdir(wal)):
        for name in os.listdir(os.path.join(wal, shard)):
            path = os.path.join(wal, shard, name)
            if os.path.getsize(path) > HEADER and (best is None or os.path.getmtime(path) > os.path.getmtime(best)):
                best = path
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("ADPULSE_BINARY", "build/adpulse"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    args = ap.parse_args()
    print(f"seed {args.seed} (rerun with --seed {args.seed})", flush=True)
    rng = random.Random(args.seed)
    tally = Tally()
    binary = os.path.abspath(args.binary)
    for rnd in range(args.rounds):
        root = tempfile.mkdtemp(prefix="adpulse-torn-")
        data_dir = os.path.join(root, "data")
        config = os.path.join(root, "adpulse.toml")
        with open(config, "w") as f:
            f.write("[storage]\nflush_interval_ms = 3600000\n")
        daemon = Daemon(binary, data_dir, os.path.join(root, "daemon.log"), ["--config", config])
        now_ms = int(time.time() * 1000)
        events = make_events(4000, args.seed * 100 + rnd, now_ms)
        bodies = [encode(events[i:i + 200]) for i in range(0, len(events), 200)]
        try:
            daemon.start()
            for body in bodies:
                res, info = post(daemon.port, body)
                tally.check(res == "ok", f"round {rnd}: batch acknowledged ({res} {info})")
            daemon.kill9()
            segment = newest_segment(data_dir)
            recs = records(segment)
            cut = rng.randrange(HEADER, os.path.getsize(segment))
            with open(segment, "r+b") as f:
                f.truncate(cut)
            lost = {eid for end, eid in recs if end > cut}
            print(f"info round {rnd}: cut {os.path.basename(os.path.dirname(segment))}/"
                  f"{os.path.basename(segment)} at byte {cut}: {len(lost)} of {len(recs)} records after the cut",
                  flush=True)
            daemon.start()
            log = daemon.log_text()
            tally.check(("truncated" in log) == (cut not in {end for end, _ in recs}),
                        f"round {rnd}: the truncation is logged")
            # Resend everything: exactly the cut-off events are new.
            accepted = []
            for body in bodies:
                res, info = post(daemon.port, body)
                tally.check(res == "ok", f"round {rnd}: resend acknowledged")
                if res == "ok":
                    accepted.append(info["accepted"])
            tally.check(sum(accepted) == len(lost),
                        f"round {rnd}: resend accepted {sum(accepted)} events, expected the {len(lost)} cut off")
            mismatches = compare(truth_by_campaign(events), query_by_campaign(daemon.port, now_ms))
            tally.check(not mismatches, f"round {rnd}: totals equal the ground truth ({mismatches[:3]})")
            tally.check_reconciled(daemon.port, now_ms, len(events), f"round {rnd}: ")
            tally.check(daemon.stop() == 0, f"round {rnd}: second SIGTERM exits 0")
        except Exception as e:
            tally.check(False, f"round {rnd}: ran to the end: {type(e).__name__}: {e}")
            daemon.kill9()
        if tally.failed == 0:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"info kept {root}")
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
