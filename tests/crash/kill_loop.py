#!/usr/bin/env python3
"""Crash test: kill -9 the real adpulse binary at random moments during ingestion.

A client sends NDJSON batches of unique events and keeps a ledger, as Jepsen does: a batch that got
200 is "ok" (each of its events must be counted exactly once, forever), one that got a 4xx is
"failed" (never counted), and one whose answer was lost (connection reset, 5xx) is
"indeterminate" (counted 0 or 1 times; after resending the same event_ids, exactly once). A killer
thread sends SIGKILL at a uniformly random moment of each round; the daemon is restarted on the
same data dir, the indeterminate batches are resent (with some acknowledged ones, which must come
back as duplicates), and ingestion goes on. At the end every campaign's counters and spend must
equal the ground truth exactly.

Short form (CI): python3 tests/crash/kill_loop.py --binary build/adpulse
Long form:       python3 tests/crash/kill_loop.py --binary build/adpulse --rounds 50 --events 200000
--small-segments runs the daemon with 64 KiB log segments and a 64 ms flush interval: segments
seal and are archived all the time, and each archiving writes RocksDB's memtable out first, so a
kill finds slices durably checkpointed at many different log positions (and slice writes in
flight on the background writers), which recovery must sort out.
--rollups spreads the events over the last 20 hours and holds roll-ups off
(storage.rollup_delay_s = 86400) for the first round, then turns them on at once (0 s, with a 64 ms
flush interval): the closed hours that hold the first round's events are rolled up from their
minutes while late events for them keep arriving. The first process with roll-ups on is killed a
few milliseconds after it comes up, while they run, and every kill loses RocksDB's memtable, so
each restart redoes roll-ups from where the durable state left them and then ingests late events
into the hours it rolled up. Reconciliation at the end compares every minute, hour and day.
Ends with a line "N passed, M failed"; exit code 0 only when nothing failed.
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Daemon, Tally, compare, encode, get, make_events, post, query_by_campaign, truth_by_campaign  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("ADPULSE_BINARY", "build/adpulse"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--keep", action="store_true", help="keep the data dir and the daemon log")
    ap.add_argument("--small-segments", action="store_true",
                    help="64 KiB log segments and a 64 ms flush interval (see above)")
    ap.add_argument("--rollups", action="store_true",
                    help="roll-ups held off, then turned on and killed while they run (see above)")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    print(f"seed {args.seed} (rerun with --seed {args.seed}); {args.rounds} rounds, {args.events} events", flush=True)
    rng = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="adpulse-crash-")
    data_dir = os.path.join(root, "data")
    log_path = os.path.join(root, "daemon.log")
    now_ms = int(time.time() * 1000)
    # With roll-ups, over most of the day: many hours hold events when they are rolled up.
    hours = 20 if args.rollups else 1
    events = make_events(args.events, args.seed, now_ms, hours=hours)
    batches = [events[i:i + args.batch] for i in range(0, len(events), args.batch)]
    bodies = [encode(b) for b in batches]
    state = ["unsent"] * len(batches)  # unsent | ok | indeterminate
    tally = Tally()
    check = tally.check

    def config(name, rollup_delay_s=None):
        storage = ["[storage]"]
        if args.small_segments:
            storage += ["wal_segment_bytes = 65536", "flush_interval_ms = 64"]
        if rollup_delay_s is not None:
            storage.append(f"rollup_delay_s = {rollup_delay_s}")
            if not args.small_segments:
                storage.append("flush_interval_ms = 64")
        if len(storage) == 1:
            return []
        path = os.path.join(root, name)
        with open(path, "w") as f:
            f.write("\n".join(storage) + "\n")
        return ["--config", path]

    daemon = Daemon(binary, data_dir, log_path,
                    config("hold.toml", 86400) if args.rollups else config("default.toml"))
    daemon.start()
    next_batch = 0
    per_round = max(1, len(batches) // max(1, args.rounds))
    kills = 0
    in_doubt = 0
    acked_then_resent = 0
    try:
        for rnd in range(args.rounds):
            # Resend what is in doubt, and a few acknowledged batches (they must be all duplicates).
            for i, st in enumerate(state):
                if st == "indeterminate":
                    res, info = post(daemon.port, bodies[i])
                    if res == "ok":
                        state[i] = "ok"
                        check(info["accepted"] + info["duplicates"] == len(batches[i]),
                              f"round {rnd}: resent batch {i} fully answered")
            acked = [i for i, st in enumerate(state) if st == "ok"]
            for i in rng.sample(acked, min(3, len(acked))):
                res, info = post(daemon.port, bodies[i])
                if res == "ok":
                    acked_then_resent += 1
                    check(info["duplicates"] == len(batches[i]) and info["accepted"] == 0,
                          f"round {rnd}: acknowledged batch {i} resent gives only duplicates (got {info})")
            # Ingest this round's share; the killer fires a few milliseconds into a randomly
            # chosen batch, so it lands anywhere in the write path: decoding, the log write, the
            # fsync, or the reply.
            end = min(len(batches), next_batch + per_round) if rnd < args.rounds - 1 else len(batches)
            fire_at = next_batch + rng.randrange(max(1, end - next_batch))
            killer = threading.Timer(0, lambda: None)
            while next_batch < end:
                if next_batch == fire_at:
                    killer = threading.Timer(rng.uniform(0.0, 0.02), daemon.kill9)
                    killer.start()
                res, info = post(daemon.port, bodies[next_batch])
                if res == "ok":
                    state[next_batch] = "ok"
                    check(info["accepted"] == len(batches[next_batch]),
                          f"batch {next_batch}: all new events accepted (got {info})")
                elif res == "indeterminate":
                    state[next_batch] = "indeterminate"
                    in_doubt += 1
                else:
                    check(False, f"batch {next_batch}: unexpected {info}")
                next_batch += 1
                if daemon.proc.poll() is not None:
                    break
            killer.join()
            daemon.kill9()
            kills += 1
            if args.rollups and rnd == 0:
                # Roll-ups on: the closed hours are rolled up right after startup; kill while they
                # run (startup redoes the interrupted one).
                daemon.extra_args = config("roll.toml", 0)
                daemon.start()
                time.sleep(rng.uniform(0.0, 0.03))
                daemon.kill9()
                kills += 1
            daemon.start()
            if args.rollups and rnd == 0:
                # Until every closed hour is rolled up (the gauge reaches the current hour).
                hour_start = int(time.time()) // 3600 * 3600
                deadline = time.monotonic() + 20
                until = 0.0
                while time.monotonic() < deadline and until < hour_start:
                    _, data = get(daemon.port, "/metrics")
                    for line in data.decode().splitlines():
                        if line.startswith("adpulse_state_rolled_up_until_seconds "):
                            until = float(line.split()[1])
                    time.sleep(0.05)
                check(until >= hour_start, f"every closed hour rolled up (until {until}, hour {hour_start})")
        # Final: everything unsent or in doubt is sent until acknowledged.
        for i, st in enumerate(state):
            attempts = 0
            while state[i] != "ok" and attempts < 5:
                res, info = post(daemon.port, bodies[i])
                attempts += 1
                if res == "ok":
                    state[i] = "ok"
            check(state[i] == "ok", f"batch {i} acknowledged in the end")
        # Ground truth: every event exactly once.
        truth = truth_by_campaign(events)
        got = query_by_campaign(daemon.port, now_ms, hours)
        mismatches = compare(truth, got)
        for m in mismatches[:20]:
            print("  " + m)
        check(not mismatches, f"aggregates equal the ground truth exactly ({len(mismatches)} mismatches)")
        tally.check_reconciled(daemon.port, now_ms, len(events))
        if args.rollups:
            status, data = get(daemon.port, "/metrics")
            rolled = [line for line in data.decode().splitlines() if line.startswith("adpulse_state_rollups_total ")]
            check(status == 200 and rolled and float(rolled[0].split()[1]) > 0,
                  f"hours were rolled up after the last restart ({rolled})")
        total = sum(t["impressions"] + t["clicks"] + t["conversions"] for t in truth.values())
        counted = sum(g.get("impressions", 0) + g.get("clicks", 0) + g.get("conversions", 0) for g in got.values())
        print(f"info {kills} kill -9 rounds, {len(events)} events in {len(batches)} batches, "
              f"{in_doubt} batches in doubt at a kill, {acked_then_resent} acknowledged batches resent, "
              f"counted {counted} of {total}", flush=True)
        code = daemon.stop()
        check(code == 0, f"SIGTERM at the end exits 0 (got {code})")
    except Exception as e:  # report, do not just crash
        import traceback
        traceback.print_exc()
        check(False, f"test ran to the end: {type(e).__name__}: {e}")
        daemon.kill9()
    if tally.failed or args.keep:
        print(f"info data and log kept in {root}")
        if tally.failed:
            with open(log_path, "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            print("---- daemon log (tail) ----\n" + tail)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
