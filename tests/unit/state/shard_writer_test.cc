#include "state/shard_writer.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "base/time_parse.h"

namespace adpulse {
namespace {

// Recent, so that dedup ids in the store are within the horizon.
const int64_t kT0 = FloorTo(NowMs(), kHourMs) - 2 * kHourMs;

CubeCatalog Catalog() { return *CubeCatalog::Create({{"campaign", {Dim::kCampaignId}}}); }

struct Events {
  std::vector<std::string> ids;
  std::vector<Event> events;
  explicit Events(int n, int offset = 0) {
    ids.reserve(n);
    for (int i = 0; i < n; ++i) ids.push_back("ev-" + std::to_string(i + offset));
    for (int i = 0; i < n; ++i) {
      Event e;
      e.event_id = ids[i];
      e.dim(Dim::kCampaignId) = (i % 2) ? "c1" : "c2";
      e.timestamp_ms = kT0 + i;
      e.bid_micros = 1000 + i;
      e.type = i % 5 == 0 ? EventType::kClick : EventType::kImpression;
      events.push_back(e);
    }
  }
};

Counters Total(const ShardState& state) {
  QuerySpec spec;
  spec.cube = 0;
  spec.start_ms = kT0 - kDayMs;
  spec.end_ms = kT0 + kDayMs;
  spec.need_users = false;
  ResultTable table;
  REQUIRE(state.RunQuery(spec, table).ok());
  Counters c;
  for (const ResultRow* r : table.SortedRows()) c.Merge(r->agg.counters);
  return c;
}

// Stages and commits `events` in groups of 7; returns the outcomes.
std::vector<EventOutcome> Write(ShardWriter& writer, const std::vector<Event>& events) {
  std::vector<EventOutcome> outcomes(events.size());
  std::string failure;
  for (size_t i = 0; i < events.size(); ++i) {
    writer.Stage(events[i], &outcomes[i], &failure);
    if (i % 7 == 6) writer.CommitGroup();
  }
  writer.CommitGroup();
  return outcomes;
}

ShardWriterOptions Options(const std::string& dir, uint64_t segment_bytes,
                           StateStore* store = nullptr) {
  ShardWriterOptions o;
  o.use_wal = true;
  o.wal = {dir + "/wal", true, segment_bytes};
  o.store = store;
  return o;
}

std::string TempDir() {
  std::string dir = (std::filesystem::temp_directory_path() /
                     ("adpulse-shard-test-" + std::to_string(std::random_device{}())))
                        .string();
  std::filesystem::remove_all(dir);
  return dir;
}

}  // namespace

TEST_CASE("a restarted shard has the same aggregates and dedup state", "[recovery]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  Events batch(1000);
  Counters before;
  {
    ShardState state(catalog, 0, nullptr, kDayMs);
    ShardWriter writer(&state, Options(dir, 16 << 10));
    RecoveryStats stats;
    REQUIRE(writer.Recover(&stats).ok());
    auto outcomes = Write(writer, batch.events);
    CHECK(std::count(outcomes.begin(), outcomes.end(), EventOutcome::kAccepted) == 1000);
    before = Total(state);
    CHECK(before.impressions + before.clicks == 1000);
  }
  for (int restart = 0; restart < 2; ++restart) {  // replaying twice changes nothing
    ShardState state(catalog, 0, nullptr, kDayMs);
    ShardWriter writer(&state, Options(dir, 16 << 10));
    RecoveryStats stats;
    REQUIRE(writer.Recover(&stats).ok());
    CHECK(stats.records == 1000);
    CHECK(Total(state) == before);
    auto outcomes = Write(writer, batch.events);
    CHECK(std::count(outcomes.begin(), outcomes.end(), EventOutcome::kDuplicate) == 1000);
    CHECK(Total(state) == before);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("staging many events at once dedups each exactly as one at a time", "[commit]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  Events batch(300);
  // Every third event repeats the id of the one 1 to 20 places before it (within and beyond the
  // prefetch distance), so that each is checked against ids staged just before it.
  std::mt19937_64 rng(3);
  for (size_t i = 20; i < batch.events.size(); i += 3) {
    batch.events[i].event_id = batch.events[i - 1 - rng() % 20].event_id;
  }
  ShardState state(catalog, 0, nullptr, kDayMs);
  ShardWriter writer(&state, Options(dir, 1 << 20));
  RecoveryStats stats;
  REQUIRE(writer.Recover(&stats).ok());
  std::vector<uint32_t> indices(batch.events.size());
  for (uint32_t i = 0; i < indices.size(); ++i) indices[i] = i;
  std::vector<EventOutcome> outcomes(batch.events.size());
  std::string failure;
  writer.StageAll(batch.events, {indices.begin(), indices.begin() + 5}, outcomes, &failure);
  writer.StageAll(batch.events, {indices.begin() + 5, indices.end()}, outcomes, &failure);
  writer.CommitGroup();
  std::set<std::string_view> seen;
  for (size_t i = 0; i < batch.events.size(); ++i) {
    bool first = seen.insert(batch.events[i].event_id).second;
    CAPTURE(i);
    CHECK(outcomes[i] == (first ? EventOutcome::kAccepted : EventOutcome::kDuplicate));
  }
  Counters total = Total(state);
  CHECK(total.impressions + total.clicks == seen.size());
  std::filesystem::remove_all(dir);
}

TEST_CASE("a torn tail is cut off and everything before it survives", "[recovery]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  Events batch(100);
  {
    ShardState state(catalog, 0, nullptr, kDayMs);
    ShardWriter writer(&state, Options(dir, 1 << 20));
    RecoveryStats stats;
    REQUIRE(writer.Recover(&stats).ok());
    Write(writer, batch.events);
  }
  auto segments = *ListWalSegments(dir + "/wal");
  REQUIRE(segments.size() == 1);
  auto size = std::filesystem::file_size(segments[0].path);
  std::filesystem::resize_file(segments[0].path, size - 5);  // tear the last record
  ShardState state(catalog, 0, nullptr, kDayMs);
  ShardWriter writer(&state, Options(dir, 1 << 20));
  RecoveryStats stats;
  REQUIRE(writer.Recover(&stats).ok());
  CHECK(stats.records == 99);
  CHECK(stats.truncated_bytes > 0);
  Counters c = Total(state);
  CHECK(c.impressions + c.clicks == 99);
  // The torn event was never acknowledged; its resend is new, the others are duplicates.
  auto outcomes = Write(writer, batch.events);
  CHECK(std::count(outcomes.begin(), outcomes.end(), EventOutcome::kAccepted) == 1);
  CHECK(outcomes.back() == EventOutcome::kAccepted);
  std::filesystem::remove_all(dir);
}

TEST_CASE("damage in an older segment refuses to start", "[recovery]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  {
    ShardState state(catalog, 0, nullptr, kDayMs);
    ShardWriter writer(&state, Options(dir, 4096));
    RecoveryStats stats;
    REQUIRE(writer.Recover(&stats).ok());
    Events batch(300);
    Write(writer, batch.events);
  }
  auto segments = *ListWalSegments(dir + "/wal");
  REQUIRE(segments.size() > 2);
  {
    std::fstream f(segments[0].path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  ShardState state(catalog, 0, nullptr, kDayMs);
  ShardWriter writer(&state, Options(dir, 4096));
  RecoveryStats stats;
  absl::Status s = writer.Recover(&stats);
  REQUIRE_FALSE(s.ok());
  CHECK(std::string(s.message()).find("refusing to start") != std::string::npos);
  // And ingestion through a writer that failed to recover is refused, not silently counted.
  Events more(3, 5000);
  auto outcomes = Write(writer, more.events);
  CHECK(std::count(outcomes.begin(), outcomes.end(), EventOutcome::kFailed) == 3);
  CHECK(Total(state).impressions + Total(state).clicks < 300);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a shard's group memory counts its users' sketches, and a flush gives it back",
          "[memory]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  auto store = StateStore::Open({dir + "/state"});
  REQUIRE(store.ok());
  Events events(2000);
  std::vector<std::string> users;
  users.reserve(events.events.size());
  for (size_t i = 0; i < events.events.size(); ++i) users.push_back("u" + std::to_string(i));
  for (size_t i = 0; i < events.events.size(); ++i) events.events[i].user_id = users[i];
  ShardState state(catalog, 0, store->get(), kDayMs);
  ShardWriter writer(&state, Options(dir, 4096, store->get()));
  RecoveryStats stats;
  REQUIRE(writer.Recover(&stats).ok());
  CHECK(state.group_bytes_in_memory() == 0);
  Write(writer, events.events);
  REQUIRE(state.groups_in_memory() == 2);  // c1 and c2, in one minute
  // Each holds 1,000 distinct users: at least 4,000 bytes of sparse entries, at most 8 KiB.
  size_t fixed = 2 * ShardState::kBytesPerGroup;
  CHECK(state.group_bytes_in_memory() >= fixed + 2 * 4000);
  CHECK(state.group_bytes_in_memory() <= fixed + 2 * (8192 + 16));
  writer.MaybeFlush(NowMs(), true);
  CHECK(state.groups_in_memory() == 0);
  CHECK(state.group_bytes_in_memory() == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a checkpoint in the store bounds replay, and queries read store plus memory",
          "[recovery]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  auto store = StateStore::Open({dir + "/state"});
  REQUIRE(store.ok());
  Events first(1000), second(500, 1000);
  Counters expected;
  {
    ShardState state(catalog, 0, store->get(), kDayMs);
    ShardWriter writer(&state, Options(dir, 4096, store->get()));
    RecoveryStats stats;
    REQUIRE(writer.Recover(&stats).ok());
    Write(writer, first.events);
    writer.MaybeFlush(NowMs(), true);  // into the store, checkpointed; memory emptied
    CHECK(state.groups_in_memory() == 0);
    Write(writer, second.events);  // only in the log and in memory
    CHECK(state.groups_in_memory() > 0);
    expected = Total(state);  // store + memory
    CHECK(expected.impressions + expected.clicks == 1500);
    // The flushed ids are duplicates through the store, the unflushed through memory.
    auto again = Write(writer, first.events);
    CHECK(std::count(again.begin(), again.end(), EventOutcome::kDuplicate) == 1000);
  }  // "crash": no final flush
  ShardState state(catalog, 0, store->get(), kDayMs);
  ShardWriter writer(&state, Options(dir, 4096, store->get()));
  RecoveryStats stats;
  REQUIRE(writer.Recover(&stats).ok());
  CHECK(stats.records == 500);  // only what came after the checkpoint is replayed
  CHECK(Total(state) == expected);
  auto again = Write(writer, second.events);
  CHECK(std::count(again.begin(), again.end(), EventOutcome::kDuplicate) == 500);
  store->reset();
  std::filesystem::remove_all(dir);
}

// Rows of one cube grouped by all its dimensions, as "time|dims" -> counters; `filters` as in
// QuerySpec.
std::map<std::string, Counters> Rows(
    const ShardState& state, const CubeCatalog& catalog, int cube, Granularity granularity,
    std::vector<std::pair<Dim, std::vector<std::string>>> filters = {}) {
  QuerySpec spec;
  spec.cube = cube;
  spec.group_by = catalog.cube(cube).dims;
  spec.filters = std::move(filters);
  spec.granularity = granularity;
  spec.start_ms = kT0 - kDayMs;
  spec.end_ms = kT0 + kDayMs;
  spec.need_users = false;
  ResultTable table;
  REQUIRE(state.RunQuery(spec, table).ok());
  std::map<std::string, Counters> rows;
  for (const ResultRow* r : table.SortedRows()) {
    std::string key = std::to_string(r->time);
    for (const std::string& d : r->dims) key += "|" + d;
    rows[key].Merge(r->agg.counters);
  }
  return rows;
}

TEST_CASE("slices flushed at different log positions recover exactly", "[recovery]") {
  CubeCatalog catalog = *CubeCatalog::Create(
      {{"campaign", {Dim::kCampaignId}}, {"campaign_country", {Dim::kCampaignId, Dim::kCountry}}});
  std::string dir = TempDir();
  auto store = StateStore::Open({dir + "/state"});
  REQUIRE(store.ok());
  const char* countries[] = {"US", "DE", "FR", "JP"};
  std::vector<std::string> ids, campaigns;
  for (int i = 0; i < 3000; ++i) {
    ids.push_back("slice-ev-" + std::to_string(i));
    campaigns.push_back("c" + std::to_string(i * 7919 % 200));
  }
  std::vector<Event> events(3000);
  for (int i = 0; i < 3000; ++i) {
    Event& e = events[i];
    e.event_id = ids[i];
    e.dim(Dim::kCampaignId) = campaigns[i];
    e.dim(Dim::kCountry) = countries[i % 4];
    e.timestamp_ms = kT0 + (i % 180) * 1000 + i;  // three minutes, two hours' worth of buckets
    e.bid_micros = 10 + i;
    e.type = i % 9 == 0 ? EventType::kClick : EventType::kImpression;
  }
  ShardState truth(catalog, 0, nullptr, kDayMs);
  for (const Event& e : events) REQUIRE(truth.Apply(e));

  ShardWriterOptions options = Options(dir, 32 << 10, store->get());
  options.flush_interval_ms = 6400;  // a slice every 100 ms of the clock given to MaybeFlush
  options.dedup_run_ids = 700;       // dedup runs at log positions of their own
  uint64_t flushes_before_crash = 0;
  {
    ShardState state(catalog, 0, store->get(), kDayMs);
    ShardWriter writer(&state, options);
    RecoveryStats stats;
    REQUIRE(writer.Recover(&stats).ok());
    int64_t clock = NowMs();
    for (int phase = 0; phase < 10; ++phase) {
      std::vector<Event> part(events.begin() + phase * 300, events.begin() + (phase + 1) * 300);
      auto outcomes = Write(writer, part);
      REQUIRE(std::count(outcomes.begin(), outcomes.end(), EventOutcome::kAccepted) == 300);
      clock += 1000;  // about ten slices each time: over one round of the 64
      for (int call = 0; call < 16; ++call) {
        writer.MaybeFlush(clock, false);  // starts no slice while the last is being written
        REQUIRE(state.CollectSliceFlush(true).ok());
      }
    }
    flushes_before_crash = state.CounterSnapshot().flushes;
    CHECK(state.groups_in_memory() > 0);  // some slices hold events their checkpoint lacks
    REQUIRE(state.CollectDedupRun(true).ok());
    // Some ids are in runs, the newest ones only in memory (and the log).
    CHECK((*store)->ReadDedupCheckpoint(0)->has_value());
    CHECK(state.dedup_ids_in_memory() > 0);
    CHECK(state.dedup_ids_in_memory() < 3000);
    for (int c = 0; c < 2; ++c)
      CHECK(Rows(state, catalog, c, Granularity::kAll) ==
            Rows(truth, catalog, c, Granularity::kAll));
  }  // "crash": no final flush
  CHECK(flushes_before_crash > 64);
  for (int restart = 0; restart < 2; ++restart) {
    ShardState state(catalog, 0, store->get(), kDayMs);
    ShardWriter writer(&state, options);
    RecoveryStats stats;
    REQUIRE(writer.Recover(&stats).ok());
    if (restart == 0) CHECK(stats.records > 0);
    for (int c = 0; c < 2; ++c) {
      for (Granularity g : {Granularity::kMinute, Granularity::kHour, Granularity::kAll}) {
        auto got = Rows(state, catalog, c, g);
        CHECK(got == Rows(truth, catalog, c, g));
        CHECK(!got.empty());
      }
    }
    // Filtered on the cube's first dimension: the store is read by seeking to each campaign.
    for (Granularity g : {Granularity::kMinute, Granularity::kHour, Granularity::kAll}) {
      QuerySpec spec;
      spec.cube = 1;
      spec.group_by = {Dim::kCountry};
      spec.filters = {{Dim::kCampaignId, {"c17", "c3", "c-none"}}};
      spec.granularity = g;
      spec.start_ms = kT0 - kDayMs;
      spec.end_ms = kT0 + kDayMs;
      spec.need_users = false;
      ResultTable got, want;
      REQUIRE(state.RunQuery(spec, got).ok());
      REQUIRE(truth.RunQuery(spec, want).ok());
      REQUIRE(got.size() == want.size());
      CHECK(got.size() > 0);
      auto a = got.SortedRows(), b = want.SortedRows();
      for (size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i]->time == b[i]->time);
        CHECK(a[i]->dims == b[i]->dims);
        CHECK(a[i]->agg.counters == b[i]->agg.counters);
      }
    }
    auto again = Write(writer, events);
    CHECK(std::count(again.begin(), again.end(), EventOutcome::kDuplicate) == 3000);
  }
  store->reset();
  std::filesystem::remove_all(dir);
}

TEST_CASE("while a slice is written in the background, queries and dedup count it once",
          "[recovery]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  auto store = StateStore::Open({dir + "/state"});
  REQUIRE(store.ok());
  ShardState state(catalog, 0, store->get(), kDayMs);
  REQUIRE(state.EnableDedupFilter(1 << 20).ok());
  state.EnableBackgroundWrites();
  ShardState truth(catalog, 0, nullptr, kDayMs);
  Events events(6400);
  // Campaigns of their own, so that every slice holds some groups.
  std::vector<std::string> campaigns;
  for (int i = 0; i < 6400; ++i) campaigns.push_back("bg-" + std::to_string(i % 640));
  for (int i = 0; i < 6400; ++i) events.events[i].dim(Dim::kCampaignId) = campaigns[i];
  uint64_t checks = 0;
  std::deque<std::string> late_strings;  // stable: events hold views
  for (int round = 0; round < 4; ++round) {
    for (int i = round * 1600; i < (round + 1) * 1600; ++i) {
      REQUIRE(state.Apply(events.events[i]));
      REQUIRE(truth.Apply(events.events[i]));
    }
    for (int slice = 0; slice < ShardState::kSlices; ++slice) {
      REQUIRE(state.StartSliceFlush(slice, WalPosition{1, static_cast<uint64_t>(round)}).ok());
      // An event for a campaign never seen before: its value is interned while the writer thread
      // looks values up.
      Event late;
      late.event_id = late_strings.emplace_back(fmt::format("late-{}-{}", round, slice));
      late.dim(Dim::kCampaignId) =
          late_strings.emplace_back(fmt::format("new-{}-{}", round, slice));
      late.timestamp_ms = kT0 + slice;
      late.bid_micros = 7;
      REQUIRE(state.Apply(late));
      REQUIRE(truth.Apply(late));
      // Every 16 slices the dedup ids move aside too, as a run written by a thread of its own.
      if (slice % 16 == 15) {
        REQUIRE(state.StartDedupRun(WalPosition{1, static_cast<uint64_t>(round)}).ok());
      }
      // Right away (mostly still writing), then after the writes are done but not collected.
      for (int look = 0; look < 2; ++look) {
        // Ids of this round and the one before: in memory, in a run in flight or in the store,
        // never new again.
        bool run_in_flight = state.DedupRunBusy();
        for (int i = std::max(0, round - 1) * 1600; i < (round + 1) * 1600; i += 7) {
          const Event& again = events.events[i];
          std::string error;
          CHECK(state.Admit(again, &error) == Admission::kDuplicate);
          checks += run_in_flight;
        }
        CHECK(Rows(state, catalog, 0, Granularity::kMinute) ==
              Rows(truth, catalog, 0, Granularity::kMinute));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
    REQUIRE(state.CollectSliceFlush(true).ok());
  }
  REQUIRE(state.CollectDedupRun(true).ok());
  CHECK(state.CounterSnapshot().flushes == 4 * ShardState::kSlices);
  CHECK(checks > 0);  // some checks ran while a run was being written
  CHECK(state.CounterSnapshot().store_dedup_lookups > 0);  // and some found ids in the store
  CHECK(state.dedup_ids_in_memory() == 0);
  CHECK(Total(state) == Total(truth));
  store->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace adpulse

namespace adpulse {

TEST_CASE("queries that fix every dimension probe the right slices", "[query]") {
  CubeCatalog catalog = *CubeCatalog::Create(
      {{"campaign", {Dim::kCampaignId}}, {"campaign_country", {Dim::kCampaignId, Dim::kCountry}}});
  ShardState state(catalog, 0, nullptr, kDayMs);
  const char* countries[] = {"US", "DE", "FR", "JP"};
  std::vector<std::string> ids, campaigns;
  for (int i = 0; i < 4000; ++i) {
    ids.push_back("probe-" + std::to_string(i));
    campaigns.push_back("c" + std::to_string(i % 300));
  }
  for (int i = 0; i < 4000; ++i) {
    Event e;
    e.event_id = ids[i];
    e.dim(Dim::kCampaignId) = campaigns[i];
    e.dim(Dim::kCountry) = countries[(i / 300) % 4];
    e.timestamp_ms = kT0 + (i % 240) * 1000;
    e.bid_micros = i;
    e.type = i % 7 == 0 ? EventType::kClick : EventType::kImpression;
    REQUIRE(state.Apply(e));
  }
  for (int cube = 0; cube < 2; ++cube) {
    for (Granularity g : {Granularity::kMinute, Granularity::kAll}) {
      // Expected: every group of the cube, kept when it matches the filters.
      std::map<std::string, Counters> want;
      for (const auto& [key, counters] : Rows(state, catalog, cube, g)) {
        std::vector<std::string> parts;  // time, campaign[, country]
        size_t at = 0;
        for (size_t bar; (bar = key.find('|', at)) != std::string::npos; at = bar + 1)
          parts.push_back(key.substr(at, bar - at));
        parts.push_back(key.substr(at));
        bool campaign_ok = parts[1] == "c17" || parts[1] == "c3";
        bool country_ok = cube == 0 || parts[2] == "US" || parts[2] == "JP";
        if (campaign_ok && country_ok) want[key] = counters;
      }
      REQUIRE(want.size() >= 2);
      std::vector<std::pair<Dim, std::vector<std::string>>> filters = {
          {Dim::kCampaignId, {"c17", "c3", "c-none"}}};
      if (cube == 1) filters.push_back({Dim::kCountry, {"US", "JP"}});
      CHECK(Rows(state, catalog, cube, g, filters) == want);
    }
  }
}

}  // namespace adpulse
