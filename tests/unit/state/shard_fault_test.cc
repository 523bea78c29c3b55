// A shard's write path under injected faults (FaultInjectionFileSystem under its log and archive,
// a real RocksDB state store): failed writes and fdatasyncs, a log that cannot be cut back,
// damage found at startup, reconciliation in the middle of a group, and a seeded simulation of
// random fault schedules with crashes and power cuts against a client's ledger.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "base/time_parse.h"
#include "state/reconciler.h"
#include "state/shard_writer.h"
#include "storage/fault_injection_fs.h"

namespace adpulse {
namespace {

using Op = FaultInjectionFileSystem::Op;

// Recent, so that dedup ids in the store are within the horizon.
const int64_t kT0 = FloorTo(NowMs(), kHourMs) - 2 * kHourMs;

CubeCatalog Catalog() {
  return *CubeCatalog::Create(
      {{"campaign", {Dim::kCampaignId}}, {"campaign_country", {Dim::kCampaignId, Dim::kCountry}}});
}

std::string TempDir() {
  std::string dir = (std::filesystem::temp_directory_path() /
                     ("adpulse-shard-fault-" + std::to_string(::getpid()) + "-" +
                      std::to_string(std::random_device{}())))
                        .string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// The client's events: fixed content per id, so a resend is the same event.
struct Events {
  std::vector<std::string> ids;
  std::vector<Event> events;
  Events(int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    ids.reserve(n);
    for (int i = 0; i < n; ++i) ids.push_back(fmt::format("ev-{}-{}", seed, i));
    static const char* kCampaigns[] = {"c1", "c2", "c3", "c4", "c5"};
    static const char* kCountries[] = {"US", "DE", "JP"};
    for (int i = 0; i < n; ++i) {
      Event e;
      e.event_id = ids[i];
      e.dim(Dim::kCampaignId) = kCampaigns[rng() % 5];
      e.dim(Dim::kCountry) = kCountries[rng() % 3];
      e.timestamp_ms = kT0 + static_cast<int64_t>(rng() % (2 * kHourMs));
      e.bid_micros = static_cast<int64_t>(rng() % 3'000'000);
      e.type = static_cast<EventType>(rng() % 3);
      events.push_back(e);
    }
  }
};

struct Totals {
  uint64_t events = 0;
  MoneySum spend = 0;
  bool operator==(const Totals&) const = default;
};

Totals Expected(const Events& ev, const std::vector<int>& which) {
  Totals t;
  for (int i : which) {
    ++t.events;
    t.spend += ev.events[i].bid_micros;
  }
  return t;
}

// One shard with its log, archive and store, started and crashed at will.
struct Rig {
  std::string dir;
  CubeCatalog catalog = Catalog();
  FaultInjectionFileSystem fs;
  WalRecoveryMode recovery = WalRecoveryMode::kTornTail;
  uint64_t segment_bytes = 4096;
  std::unique_ptr<StateStore> store;
  std::unique_ptr<Archiver> archiver;
  std::unique_ptr<ShardState> state;
  std::unique_ptr<ShardWriter> writer;

  Rig() : dir(TempDir()) {}
  ~Rig() {
    Crash();
    std::filesystem::remove_all(dir);
  }

  absl::Status Start() {
    auto s = StateStore::Open({dir + "/state"});
    if (!s.ok()) return s.status();
    store = std::move(*s);
    Archiver::Options ao;
    ao.archive_dir = dir + "/archive";
    ao.store = store.get();
    ao.fs = &fs;
    archiver = std::make_unique<Archiver>(ao);
    archiver->Start();
    state = std::make_unique<ShardState>(catalog, 0, store.get(), kDayMs);
    ShardWriterOptions o;
    o.use_wal = true;
    o.wal.dir = dir + "/wal/shard-000";
    o.wal.segment_bytes = segment_bytes;
    o.wal.fs = &fs;
    o.store = store.get();
    o.archiver = archiver.get();
    o.flush_interval_ms = 50;
    o.recovery = recovery;
    o.repair_interval_ms = 0;
    writer = std::make_unique<ShardWriter>(state.get(), o);
    RecoveryStats stats;
    return writer->Recover(&stats);
  }
  // Everything goes away without a flush, as in kill -9 (RocksDB keeps what it was given).
  void Crash() {
    writer.reset();
    state.reset();
    if (archiver) archiver->Stop();
    archiver.reset();
    store.reset();
  }
  void PowerCut() {
    Crash();
    fs.DropUnsyncedData();
  }

  // Stages events[i] for each i of `which` and commits them as one group.
  std::vector<EventOutcome> Send(const Events& ev, const std::vector<int>& which) {
    std::vector<EventOutcome> out(which.size());
    std::string failure;
    for (size_t k = 0; k < which.size(); ++k) writer->Stage(ev.events[which[k]], &out[k], &failure);
    writer->CommitGroup();
    return out;
  }

  Totals Query() const {
    QuerySpec spec;
    spec.cube = 0;
    spec.start_ms = kT0 - kDayMs;
    spec.end_ms = kT0 + kDayMs;
    spec.need_users = false;
    ResultTable table;
    REQUIRE(state->RunQuery(spec, table).ok());
    Totals t;
    for (const ResultRow* r : table.SortedRows()) {
      const Counters& c = r->agg.counters;
      t.events += c.impressions + c.clicks + c.conversions;
      t.spend += c.spend_micros;
    }
    return t;
  }

  ReconcileReport Reconcile(bool rebuild = false) {
    ReconcileReport report;
    absl::Status s = writer->Reconcile(catalog, FloorTo(kT0, kDayMs) - kDayMs,
                                       FloorTo(kT0, kDayMs) + 2 * kDayMs, rebuild, report);
    REQUIRE(s.ok());
    return report;
  }
};

std::vector<int> Range(int from, int to) {
  std::vector<int> v;
  for (int i = from; i < to; ++i) v.push_back(i);
  return v;
}

size_t Count(const std::vector<EventOutcome>& v, EventOutcome o) {
  return static_cast<size_t>(std::count(v.begin(), v.end(), o));
}

std::string FirstSegment(const std::string& dir) {
  auto segments = ListWalSegments(dir + "/wal/shard-000");
  REQUIRE(segments.ok());
  REQUIRE(!segments->empty());
  return segments->back().path;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

}  // namespace

TEST_CASE("a failed fdatasync: no checkpoint passes its group, through a power cut",
          "[shardfault]") {
  Events ev(300, 1);
  Rig rig;
  rig.segment_bytes = 1 << 20;
  REQUIRE(rig.Start().ok());
  CHECK(Count(rig.Send(ev, Range(0, 100)), EventOutcome::kAccepted) == 100);
  rig.fs.set_drop_unsynced_on_failed_sync(GENERATE(false, true));
  rig.fs.FailNext(Op::kSync, EIO, 1, "/wal/");
  auto failed = rig.Send(ev, Range(100, 200));
  CHECK(Count(failed, EventOutcome::kFailed) == 100);
  CHECK(rig.writer->severity() == ShardSeverity::kRetryable);
  // A flush now writes every slice's checkpoint: it must not name the failed group's bytes.
  rig.writer->MaybeFlush(NowMs(), true);
  CHECK(Count(rig.Send(ev, Range(200, 250)), EventOutcome::kAccepted) == 50);
  CHECK(rig.writer->severity() == ShardSeverity::kOk);
  rig.PowerCut();
  REQUIRE(rig.Start().ok());
  std::vector<int> acked = Range(0, 100);
  for (int i = 200; i < 250; ++i) acked.push_back(i);
  CHECK(rig.Query() == Expected(ev, acked));
  // The failed group was not acknowledged: its resend is new, and counted once.
  CHECK(Count(rig.Send(ev, Range(100, 200)), EventOutcome::kAccepted) == 100);
  CHECK(Count(rig.Send(ev, Range(0, 250)), EventOutcome::kDuplicate) == 250);
  CHECK(rig.Reconcile().difference_count == 0);
  CHECK(rig.Query() == Expected(ev, Range(0, 250)));
}

TEST_CASE("a log that cannot be cut back makes the shard unavailable until the fault clears",
          "[shardfault]") {
  Events ev(200, 2);
  Rig rig;
  REQUIRE(rig.Start().ok());
  CHECK(Count(rig.Send(ev, Range(0, 50)), EventOutcome::kAccepted) == 50);
  rig.writer->MaybeFlush(NowMs(), true);
  WalPosition checkpoint = rig.state->OldestCheckpoint();
  rig.fs.FailNext(Op::kSync, EIO, 1, "/wal/");
  rig.fs.FailAlways(Op::kTruncate, EIO);
  CHECK(Count(rig.Send(ev, Range(50, 100)), EventOutcome::kFailed) == 50);
  CHECK(rig.writer->severity() == ShardSeverity::kUnavailable);
  CHECK(rig.writer->error_reason().find("could not be cut back") != std::string::npos);
  // Refused at once, with the reason; nothing is flushed or checkpointed meanwhile.
  std::vector<EventOutcome> out(1);
  std::string failure;
  rig.writer->Stage(ev.events[100], &out[0], &failure);
  rig.writer->CommitGroup();
  CHECK(out[0] == EventOutcome::kFailed);
  CHECK(failure.find("shard 0 is unavailable") != std::string::npos);
  rig.writer->MaybeFlush(NowMs(), true);
  CHECK(rig.state->OldestCheckpoint() == checkpoint);
  // The disk works again: the next event repairs the log and goes in.
  rig.fs.ClearFaults();
  CHECK(Count(rig.Send(ev, Range(50, 150)), EventOutcome::kAccepted) == 100);
  CHECK(rig.writer->severity() == ShardSeverity::kOk);
  rig.PowerCut();
  REQUIRE(rig.Start().ok());
  CHECK(rig.Query() == Expected(ev, Range(0, 150)));
  CHECK(rig.Reconcile().difference_count == 0);
}

TEST_CASE("startup refuses damage in the middle of the newest segment unless told to cut it",
          "[shardfault]") {
  Events ev(40, 3);
  Rig rig;
  rig.segment_bytes = 1 << 20;
  REQUIRE(rig.Start().ok());
  for (int i = 0; i < 40; i += 4) {
    CHECK(Count(rig.Send(ev, Range(i, i + 4)), EventOutcome::kAccepted) == 4);
  }
  rig.Crash();
  std::string path = FirstSegment(rig.dir);
  std::string data = Slurp(path);
  std::string damaged = data;
  damaged[data.size() / 2] ^= 0x5a;  // in the middle: whole, valid records follow it
  Spit(path, damaged);
  absl::Status s = rig.Start();
  REQUIRE(!s.ok());
  CHECK(std::string(s.message()).find("damage, not a torn tail") != std::string::npos);
  CHECK(Slurp(path) == damaged);  // nothing was cut
  rig.Crash();
  rig.recovery = WalRecoveryMode::kStrict;
  CHECK(!rig.Start().ok());
  rig.Crash();
  rig.recovery = WalRecoveryMode::kCutDamage;
  REQUIRE(rig.Start().ok());
  Totals t = rig.Query();
  CHECK(t.events > 0);
  CHECK(t.events < 40);
}

TEST_CASE("startup cuts a torn tail, but strict refuses it", "[shardfault]") {
  Events ev(40, 4);
  Rig rig;
  rig.segment_bytes = 1 << 20;
  REQUIRE(rig.Start().ok());
  CHECK(Count(rig.Send(ev, Range(0, 40)), EventOutcome::kAccepted) == 40);
  rig.Crash();
  std::string path = FirstSegment(rig.dir);
  std::string data = Slurp(path);
  Spit(path, data + std::string(37, '\0'));  // a group whose pages never reached the disk
  rig.recovery = WalRecoveryMode::kStrict;
  absl::Status s = rig.Start();
  CHECK(std::string(s.message()).find("strict") != std::string::npos);
  rig.Crash();
  rig.recovery = WalRecoveryMode::kTornTail;
  REQUIRE(rig.Start().ok());
  CHECK(rig.Query() == Expected(ev, Range(0, 40)));
}

TEST_CASE("startup refuses a read error and a damaged header instead of cutting the log",
          "[shardfault]") {
  Events ev(40, 5);
  Rig rig;
  rig.segment_bytes = 1 << 20;
  REQUIRE(rig.Start().ok());
  CHECK(Count(rig.Send(ev, Range(0, 40)), EventOutcome::kAccepted) == 40);
  rig.Crash();
  std::string path = FirstSegment(rig.dir);
  std::string data = Slurp(path);
  rig.fs.FailNext(Op::kRead, EIO, 1, ".wal");
  absl::Status s = rig.Start();
  REQUIRE(!s.ok());
  CHECK(std::string(s.message()).find("Input/output error") != std::string::npos);
  CHECK(Slurp(path) == data);
  rig.Crash();
  std::string bad = data;
  bad[2] = '?';  // a whole header, wrong
  Spit(path, bad);
  s = rig.Start();
  REQUIRE(!s.ok());
  CHECK(std::string(s.message()).find("damaged header") != std::string::npos);
  CHECK(std::filesystem::exists(path));
  rig.Crash();
  Spit(path, data);
  REQUIRE(rig.Start().ok());
  CHECK(rig.Query() == Expected(ev, Range(0, 40)));
}

TEST_CASE("a segment cut inside its header is removed, and the removal is synced", "[shardfault]") {
  Events ev(10, 6);
  Rig rig;
  REQUIRE(rig.Start().ok());
  CHECK(Count(rig.Send(ev, Range(0, 10)), EventOutcome::kAccepted) == 10);
  rig.Crash();
  std::string stub = rig.dir + "/wal/shard-000/00000000000000000099.wal";
  Spit(stub, "ADPW");
  rig.fs.FailNext(Op::kSyncDir, EIO, 1, "/wal/shard-000");
  CHECK(!rig.Start().ok());  // the unlink could not be made durable
  rig.Crash();
  Spit(stub, "ADPW");
  REQUIRE(rig.Start().ok());
  CHECK(!std::filesystem::exists(stub));
  CHECK(rig.Query() == Expected(ev, Range(0, 10)));
}

TEST_CASE("a rebuild in the middle of a group flushes no id of an uncommitted event",
          "[shardfault]") {
  Events ev(60, 7);
  Rig rig;
  REQUIRE(rig.Start().ok());
  CHECK(Count(rig.Send(ev, Range(0, 30)), EventOutcome::kAccepted) == 30);
  // Events staged, then reconciliation runs (as a task of the same group), then the group's
  // fdatasync fails.
  std::vector<EventOutcome> out(30);
  std::string failure;
  for (int i = 0; i < 30; ++i) rig.writer->Stage(ev.events[30 + i], &out[i], &failure);
  rig.fs.FailNext(Op::kSync, EIO, 1, "/wal/");
  ReconcileReport report = rig.Reconcile(true);
  rig.writer->CommitGroup();
  CHECK(Count(out, EventOutcome::kFailed) == 30);
  // The client resends: the events are new, not "duplicate" (which would lose them).
  CHECK(Count(rig.Send(ev, Range(30, 60)), EventOutcome::kAccepted) == 30);
  rig.Crash();
  REQUIRE(rig.Start().ok());
  CHECK(rig.Query() == Expected(ev, Range(0, 60)));
}

TEST_CASE("a rebuild of a range older than the raw events kept is refused", "[shardfault]") {
  Events ev(200, 8);
  Rig rig;
  REQUIRE(rig.Start().ok());
  for (int i = 0; i < 200; i += 20) {
    CHECK(Count(rig.Send(ev, Range(i, i + 20)), EventOutcome::kAccepted) == 20);
  }
  ReconcileReport report;
  // The archive keeps 90 days (the default): a rebuild from 100 days ago cannot be recomputed.
  int64_t old = FloorTo(NowMs(), kDayMs) - 100 * kDayMs;
  absl::Status s = rig.writer->Reconcile(rig.catalog, old, NowMs() + kDayMs, true, report);
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(s.message()).find("rebuild from there") != std::string::npos);
  // Without rebuild it compares (and changes nothing).
  REQUIRE(rig.writer->Reconcile(rig.catalog, old, NowMs() + kDayMs, false, report).ok());
  CHECK(report.difference_count == 0);
  // Log segments removed by hand: the first one kept is not number 1.
  rig.Crash();
  std::string first = rig.dir + "/wal/shard-000/00000000000000000001.wal";
  REQUIRE(std::filesystem::exists(first));
  auto segments = ListWalSegments(rig.dir + "/wal/shard-000");
  REQUIRE(segments->size() >= 2);
  std::filesystem::remove(first);
  REQUIRE(rig.Start().ok());
  int64_t from = RawEventsCompleteFromMs({rig.dir + "/wal/shard-000", nullptr, 60'000}, 0, NowMs());
  CHECK(from > NowMs() - 60'000);
  s = rig.writer->Reconcile(rig.catalog, FloorTo(kT0, kDayMs), NowMs() + kDayMs, true, report);
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
}

// The seeded simulation: random faults, flushes, rebuilds, crashes and power cuts, with a client
// that resends whatever was not acknowledged. After every restart each acknowledged event must
// still be there (its resend answered duplicate), and at the end every event is counted exactly
// once and reconciliation finds no slice that disagrees with the log.
namespace {

void Simulate(uint64_t seed) {
  INFO("simulation seed " << seed << " (rerun: ADPULSE_SIM_SEED=" << seed
                          << " adpulse_unit_tests '[simulation]')");
  std::mt19937_64 rng(seed);
  const int n = 240;
  Events ev(n, seed);
  Rig rig;
  rig.segment_bytes = 1024 + rng() % 8192;
  REQUIRE(rig.Start().ok());
  std::set<int> acked;
  std::vector<int> unacked = Range(0, n);
  std::shuffle(unacked.begin(), unacked.end(), rng);
  auto check_acked_survive = [&] {
    std::vector<int> which(acked.begin(), acked.end());
    for (size_t at = 0; at < which.size(); at += 50) {
      std::vector<int> part(which.begin() + at, which.begin() + std::min(which.size(), at + 50));
      auto out = rig.Send(ev, part);
      for (size_t k = 0; k < part.size(); ++k) {
        INFO("acknowledged event " << part[k] << " after a restart");
        CHECK(out[k] != EventOutcome::kAccepted);  // accepted again would mean it was lost
      }
    }
  };
  int steps = 40 + static_cast<int>(rng() % 40);
  for (int step = 0; step < steps; ++step) {
    int r = static_cast<int>(rng() % 100);
    if (r < 25) {
      // A fault on the next call of some kind.
      static const std::pair<Op, int> kFaults[] = {
          {Op::kWrite, ENOSPC}, {Op::kWrite, EIO},    {Op::kSync, EIO},    {Op::kSync, ENOSPC},
          {Op::kSyncDir, EIO},  {Op::kTruncate, EIO}, {Op::kOpen, EMFILE}, {Op::kMakeDir, EIO},
          {Op::kRename, EIO},   {Op::kUnlink, EIO}};
      auto [op, err] = kFaults[rng() % (sizeof(kFaults) / sizeof(kFaults[0]))];
      rig.fs.set_drop_unsynced_on_failed_sync(rng() % 2 == 0);
      rig.fs.FailNext(op, err, 1 + static_cast<int>(rng() % 2), "", static_cast<int>(rng() % 3));
    } else if (r < 30) {
      rig.writer->MaybeFlush(NowMs(), rng() % 3 == 0);
    } else if (r < 33) {
      // Reconciliation with rebuild in the middle of a group.
      std::vector<EventOutcome> out(std::min<size_t>(5, unacked.size()));
      std::string failure;
      for (size_t k = 0; k < out.size(); ++k)
        rig.writer->Stage(ev.events[unacked[k]], &out[k], &failure);
      ReconcileReport report;
      // It may fail under the injected faults; what matters is what it leaves behind.
      absl::Status ignored = rig.writer->Reconcile(rig.catalog, FloorTo(kT0, kDayMs) - kDayMs,
                                                   NowMs() + kDayMs, true, report);
      (void)ignored;
      rig.writer->CommitGroup();
      for (size_t k = 0; k < out.size(); ++k) {
        if (out[k] == EventOutcome::kAccepted) acked.insert(unacked[k]);
      }
    } else if (r < 40) {
      bool power = rng() % 2 == 0;
      if (power) {
        rig.PowerCut();
      } else {
        rig.Crash();
      }
      rig.fs.ClearFaults();
      absl::Status s = rig.Start();
      INFO("restart after " << (power ? "a power cut" : "a crash") << " at step " << step);
      REQUIRE(s.ok());
      check_acked_survive();
    } else if (!unacked.empty()) {
      // The client sends a batch: some new events, some resends of acknowledged ones.
      std::vector<int> batch;
      size_t take = 1 + rng() % 12;
      for (size_t k = 0; k < take && k < unacked.size(); ++k) batch.push_back(unacked[k]);
      if (!acked.empty() && rng() % 3 == 0) batch.push_back(*acked.begin());
      auto out = rig.Send(ev, batch);
      for (size_t k = 0; k < batch.size(); ++k) {
        // A duplicate of an event never acknowledged is an earlier failed group whose bytes
        // survived: it is counted, so it is acknowledged now.
        if (out[k] == EventOutcome::kAccepted || out[k] == EventOutcome::kDuplicate) {
          acked.insert(batch[k]);
        }
      }
    }
    unacked.erase(
        std::remove_if(unacked.begin(), unacked.end(), [&](int i) { return acked.count(i) > 0; }),
        unacked.end());
  }
  // The disk is healthy again; the client resends until everything is acknowledged.
  rig.fs.ClearFaults();
  if (rig.writer->severity() == ShardSeverity::kFatal) {
    rig.Crash();
    REQUIRE(rig.Start().ok());
    check_acked_survive();
  }
  for (int round = 0; round < 5 && !unacked.empty(); ++round) {
    auto out = rig.Send(ev, unacked);
    for (size_t k = 0; k < unacked.size(); ++k) {
      if (out[k] != EventOutcome::kFailed) acked.insert(unacked[k]);
    }
    unacked.erase(
        std::remove_if(unacked.begin(), unacked.end(), [&](int i) { return acked.count(i) > 0; }),
        unacked.end());
  }
  REQUIRE(unacked.empty());
  CHECK(rig.Query() == Expected(ev, Range(0, n)));
  CHECK(rig.Reconcile().difference_count == 0);
  // Once more from the disk alone: every slice recovers to the same totals.
  rig.PowerCut();
  REQUIRE(rig.Start().ok());
  CHECK(rig.Query() == Expected(ev, Range(0, n)));
  ReconcileReport final_report = rig.Reconcile();
  CHECK(final_report.difference_count == 0);
  CHECK(final_report.events == static_cast<uint64_t>(n));
}

void SimulateMany(int schedules) {
  if (const char* one = std::getenv("ADPULSE_SIM_SEED")) {
    Simulate(std::strtoull(one, nullptr, 10));
    return;
  }
  uint64_t base = std::random_device{}();
  for (int i = 0; i < schedules; ++i) Simulate(base + static_cast<uint64_t>(i));
}

}  // namespace

TEST_CASE("seeded fault simulation: 50 schedules", "[shardfault][simulation]") { SimulateMany(50); }

TEST_CASE("seeded fault simulation: 1000 schedules", "[.long][simulation]") { SimulateMany(1000); }

}  // namespace adpulse
