// Roll-ups: flushes write minutes (and only rolled-up hours and days); the store rolls hours up
// from minutes and days from hours once closed. Every query must give what memory alone gives.
#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <map>
#include <random>

#include "base/money.h"
#include "base/time_parse.h"
#include "state/shard_state.h"
#include "window/aggregate_codec.h"

namespace adpulse {
namespace {

// Two days ago at midnight UTC: the events' first hour.
const int64_t kBase = FloorTo(NowMs(), kDayMs) - 2 * kDayMs;
const int64_t kFirstHour = FloorDiv(kBase, kHourMs);

CubeCatalog Catalog() {
  return *CubeCatalog::Create(
      {{"campaign", {Dim::kCampaignId}}, {"campaign_country", {Dim::kCampaignId, Dim::kCountry}}});
}

std::string TempDir() {
  return (std::filesystem::temp_directory_path() /
          ("adpulse-rollup-test-" + std::to_string(std::random_device{}())))
      .string();
}

// Events over [from_ms, from_ms + span_ms), with ids from `first_id`.
struct Events {
  std::vector<std::string> ids, users, campaigns;  // the events' views point into these
  std::vector<Event> events;
  Events(int n, int first_id, int64_t from_ms, int64_t span_ms) {
    static const char* kCountries[] = {"US", "DE", "FR", "JP"};
    std::mt19937_64 rng(static_cast<uint64_t>(first_id) + 1);
    for (int i = 0; i < n; ++i) {
      ids.push_back("ru-" + std::to_string(first_id + i));
      users.push_back("user-" + std::to_string(rng() % 500));
      campaigns.push_back("c" + std::to_string(rng() % 20));
    }
    for (int i = 0; i < n; ++i) {
      Event e;
      e.event_id = ids[i];
      e.user_id = users[i];
      e.dim(Dim::kCampaignId) = campaigns[i];
      e.dim(Dim::kCountry) = kCountries[rng() % 4];
      e.timestamp_ms = from_ms + static_cast<int64_t>(rng() % static_cast<uint64_t>(span_ms));
      e.bid_micros = static_cast<int64_t>(rng() % 100'000);
      e.type = static_cast<EventType>(rng() % 3);
      events.push_back(e);
    }
  }
};

// Every row of every cube at every granularity over the three days, as
// "cube|granularity|time|dims" -> "counters users" (unique users only with `need_users`; without,
// also the rows of cube 1 with country US or JP by campaign, as "f|...").
std::map<std::string, std::string> AllRows(const ShardState& state, const CubeCatalog& catalog,
                                           bool need_users = true) {
  std::map<std::string, std::string> rows;
  auto add = [&](const std::string& prefix, const QuerySpec& spec) {
    ResultTable table;
    REQUIRE(state.RunQuery(spec, table).ok());
    for (const ResultRow* r : table.SortedRows()) {
      std::string key = prefix + "|" + std::string(GranularityName(spec.granularity)) + "|" +
                        std::to_string(r->time);
      for (const std::string& d : r->dims) key += "|" + d;
      const Counters& k = r->agg.counters;
      rows[key] = std::to_string(k.impressions) + " " + std::to_string(k.clicks) + " " +
                  std::to_string(k.conversions) + " " + MicrosToDecimal(k.spend_micros) + " " +
                  (need_users ? std::to_string(r->agg.users.Estimate()) : "-");
    }
  };
  for (Granularity g :
       {Granularity::kMinute, Granularity::kHour, Granularity::kDay, Granularity::kAll}) {
    QuerySpec spec;
    spec.granularity = g;
    spec.start_ms = kBase - kDayMs;
    spec.end_ms = kBase + 3 * kDayMs;
    spec.need_users = need_users;
    for (int c = 0; c < static_cast<int>(catalog.cubes().size()); ++c) {
      spec.cube = c;
      spec.group_by = catalog.cube(c).dims;
      add(std::to_string(c), spec);
    }
    if (need_users) continue;
    spec.cube = 1;
    spec.group_by = {Dim::kCampaignId};
    spec.filters = {{Dim::kCountry, {"US", "JP"}}};
    spec.start_ms = kBase + 7 * kMinuteMs;  // not on an hour
    add("f", spec);
  }
  return rows;
}

// Stored aggregate keys of `level`.
size_t StoredKeys(StateStore& store, Level level) {
  size_t n = 0;
  std::string from(1, kAggregateKeyTag), to(1, kAggregateKeyTag + 1);
  REQUIRE(store
              .Scan(from, to,
                    [&](std::string_view k, std::string_view) {
                      AggregateKey key;
                      if (DecodeAggregateKey(k, key) && key.level == level) ++n;
                      return true;
                    })
              .ok());
  return n;
}

void ApplyAll(ShardState& state, ShardState& truth, const Events& events) {
  for (const Event& e : events.events) {
    REQUIRE(state.Apply(e));
    REQUIRE(truth.Apply(e));
  }
}

// ApplyAll, then a whole flush at the next log position.
void ApplyAndFlush(ShardState& state, ShardState& truth, const Events& events,
                   WalPosition& position) {
  ApplyAll(state, truth, events);
  ++position.offset;
  REQUIRE(state.Flush(position).ok());
}

// Rolls up the 30 hours of events from kBase (and the first day), one at a time, as of `now`.
// While the fourth is being rolled up, late events for its hour arrive and are flushed, then
// `check` runs. Returns how many roll-ups that took.
int RollUpThirtyHours(ShardState& state, ShardState& truth, WalPosition& position, int64_t now,
                      const std::function<void()>& check) {
  int rounds = 0;
  while (state.rolled_up().hours_through < kFirstHour + 29) {
    REQUIRE(state.MaybeRollUp(now).ok());
    if (++rounds == 4) {
      int64_t hour = state.rolled_up().hours_through + 1;  // the one being rolled up
      ApplyAndFlush(state, truth, Events(300, 10'000, hour * kHourMs, kHourMs), position);
      check();
    }
    REQUIRE(state.FinishRollUp().ok());
    REQUIRE(rounds < 100);
  }
  return rounds;
}

}  // namespace

TEST_CASE("hours and days are rolled up from the stored minutes; queries agree throughout",
          "[rollup]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  auto store = StateStore::Open({dir + "/state"});
  REQUIRE(store.ok());
  ShardState truth(catalog, 0, nullptr, 3 * kDayMs);
  WalPosition position{1, 0};
  const int64_t now = kBase + 2 * kDayMs;
  {
    ShardState state(catalog, 0, store->get(), 3 * kDayMs);
    // As if started at kBase: everything before it is rolled up, nothing after.
    REQUIRE(state.EnableRollups(0, kBase, kBase).ok());
    CHECK(state.rolled_up().hours_through == kFirstHour - 1);
    ApplyAll(state, truth, Events(4000, 0, kBase, 30 * kHourMs));  // into the second day
    ++position.offset;
    REQUIRE(state.Flush(position).ok());
    // The flush wrote minutes only.
    CHECK(StoredKeys(**store, Level::kMinute) > 0);
    CHECK(StoredKeys(**store, Level::kHour) == 0);
    CHECK(StoredKeys(**store, Level::kDay) == 0);
    auto want = AllRows(truth, catalog);
    CHECK(AllRows(state, catalog) == want);

    // Roll up the 30 hours (and the first day), with late events for the fourth meanwhile.
    int rounds = RollUpThirtyHours(state, truth, position, now, [&] {
      CHECK(AllRows(state, catalog) == AllRows(truth, catalog));
    });
    CHECK(state.rolled_up().days_through == FloorDiv(kBase, kDayMs));
    CHECK(state.CounterSnapshot().rollups == static_cast<uint64_t>(rounds));
    CHECK(StoredKeys(**store, Level::kHour) > 0);
    CHECK(StoredKeys(**store, Level::kDay) > 0);
    CHECK(AllRows(state, catalog) == AllRows(truth, catalog));

    // Late events for rolled-up hours and days: their flush writes every level.
    ApplyAndFlush(state, truth, Events(500, 20'000, kBase, 30 * kHourMs), position);
    CHECK(AllRows(state, catalog) == AllRows(truth, catalog));
  }
  // A restart reads the marks back.
  ShardState state(catalog, 0, store->get(), 3 * kDayMs);
  REQUIRE(state.EnableRollups(0, now, now).ok());
  CHECK(state.rolled_up().hours_through == kFirstHour + 29);
  CHECK(AllRows(state, catalog) == AllRows(truth, catalog));
  store->reset();
  std::filesystem::remove_all(dir);
}

TEST_CASE("a roll-up a crash interrupted is redone whole at startup", "[rollup]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  auto store = StateStore::Open({dir + "/state"});
  REQUIRE(store.ok());
  ShardState truth(catalog, 0, nullptr, 3 * kDayMs);
  {
    ShardState state(catalog, 0, store->get(), 3 * kDayMs);
    REQUIRE(state.EnableRollups(0, kBase, kBase).ok());
    ApplyAll(state, truth, Events(1000, 0, kBase, kHourMs));
    REQUIRE(state.Flush(WalPosition{1, 1}).ok());
  }
  // What a crash in the middle of rolling up the first hour leaves: the marks say it is being
  // rolled up (docs/formats/state.md), and its hour aggregates hold part of a sum.
  Aggregate partial;
  partial.counters.clicks = 1000;
  std::string key, value;
  AppendAggregateKeyPrefix(key, 0, 0, Level::kHour, kFirstHour);
  AppendAggregateKeyDim(key, "c1");
  EncodeAggregate(partial, value);
  int64_t marks[4] = {kFirstHour, kFirstHour - 1, FloorDiv(kBase, kDayMs) - 1,
                      FloorDiv(kBase, kDayMs) - 1};
  StateStore::Batch batch;
  batch.MergeAggregate(key, value);
  batch.PutMeta("rollup/0", std::string_view(reinterpret_cast<const char*>(marks), 32));
  REQUIRE((*store)->Write(batch).ok());

  ShardState state(catalog, 0, store->get(), 3 * kDayMs);
  REQUIRE(state.EnableRollups(0, kBase, kBase).ok());
  CHECK(state.rolled_up().hours_through == kFirstHour);  // the hour is read from its aggregates
  CHECK(AllRows(state, catalog) == AllRows(truth, catalog));
  CHECK(StoredKeys(**store, Level::kHour) > 0);

  // Malformed marks refuse to start.
  StateStore::Batch bad;
  bad.PutMeta("rollup/0", "short");
  REQUIRE((*store)->Write(bad).ok());
  ShardState refused(catalog, 0, store->get(), 3 * kDayMs);
  CHECK(refused.EnableRollups(0, kBase, kBase).code() == absl::StatusCode::kDataLoss);
  store->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace adpulse

namespace adpulse {

TEST_CASE("a shard without roll-up marks starts from what its store can hold", "[rollup]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  auto store = StateStore::Open({dir + "/state"});
  REQUIRE(store.ok());
  const int64_t oldest = kBase - 5 * kHourMs;
  // Never flushed (a new data dir): every hour from the oldest accepted event time on is rolled
  // up from its minutes.
  ShardState fresh(catalog, 0, store->get(), kDayMs);
  REQUIRE(fresh.EnableRollups(0, kBase, oldest).ok());
  CHECK(fresh.rolled_up().hours_through == FloorDiv(oldest, kHourMs) - 1);
  CHECK(fresh.rolled_up().days_through == FloorDiv(oldest, kDayMs) - 1);
  // Flushed before roll-ups existed (every level written): whole up to the current hour.
  {
    ShardState old(catalog, 1, store->get(), kDayMs);
    Events events(10, 0, kBase, kHourMs);
    for (const Event& e : events.events) REQUIRE(old.Apply(e));
    REQUIRE(old.Flush(WalPosition{1, 1}).ok());
  }
  ShardState upgraded(catalog, 1, store->get(), kDayMs);
  REQUIRE(upgraded.EnableRollups(0, kBase, oldest).ok());
  CHECK(upgraded.rolled_up().hours_through == kFirstHour - 1);
  store->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace adpulse

namespace adpulse {

TEST_CASE("recent hours held in memory give what the store gives", "[rollup][recent]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  auto store = StateStore::Open({dir + "/state"});
  REQUIRE(store.ok());
  ShardState truth(catalog, 0, nullptr, 3 * kDayMs);
  WalPosition position{1, 0};
  // 40 hours up to today's first: hours 9 to 29 of the events' 30 are held, 0 to 8 are not.
  const int64_t now = kBase + 2 * kDayMs;
  const int64_t first_held = kFirstHour + 48 - 40 + 1;
  auto same = [&](const ShardState& state) {
    CHECK(AllRows(state, catalog, false) == AllRows(truth, catalog, false));
  };
  {
    ShardState state(catalog, 0, store->get(), 3 * kDayMs);
    REQUIRE(state.EnableRollups(0, kBase, kBase).ok());
    REQUIRE(state.EnableRecentHours(40, 64 << 20, now).ok());
    REQUIRE(state.recent_hours() != nullptr);
    CHECK(state.recent_hours()->first_hour() == first_held);
    state.EnableBackgroundWrites();
    ApplyAll(state, truth, Events(4000, 0, kBase, 30 * kHourMs));
    // Slices written in the background: queries agree while some are in flight and after.
    ++position.offset;
    for (int s = 0; s < ShardState::kSlices; ++s) {
      REQUIRE(state.StartSliceFlush(s, position).ok());
      if (s == 20) same(state);
    }
    REQUIRE(state.CollectSliceFlush(true).ok());
    size_t held = state.recent_hours()->groups();
    CHECK(held > 0);
    same(state);

    // Roll up the 30 hours, with late events for the fourth meanwhile.
    RollUpThirtyHours(state, truth, position, now, [&] { same(state); });
    same(state);
    // Late events for held hours and for older ones.
    ApplyAndFlush(state, truth, Events(500, 20'000, kBase, 30 * kHourMs), position);
    CHECK(state.recent_hours()->groups() > held);
    same(state);
    CHECK(AllRows(state, catalog) == AllRows(truth, catalog));  // with users: the store's
  }
  SECTION("a restart fills them from the store") {
    ShardState state(catalog, 0, store->get(), 3 * kDayMs);
    REQUIRE(state.EnableRollups(0, now, now).ok());
    REQUIRE(state.EnableRecentHours(40, 64 << 20, now).ok());
    CHECK(state.recent_hours()->groups() > 0);
    CHECK(state.recent_hours()->Holds(0));
    CHECK(state.recent_hours()->Holds(1));
    same(state);
    // Hours let go as time passes are read from the store again.
    REQUIRE(state.MaybeRollUp(now + 10 * kHourMs).ok());
    CHECK(state.recent_hours()->first_hour() == first_held + 10);
    same(state);
  }
  SECTION("cubes over the budget are left to the store, the one with more dimensions first") {
    ShardState state(catalog, 0, store->get(), 3 * kDayMs);
    REQUIRE(state.EnableRollups(0, now, now).ok());
    // Room for the campaign cube (20 campaigns an hour), not for campaign x country.
    REQUIRE(state.EnableRecentHours(40, 100'000, now).ok());
    CHECK(state.recent_hours()->Holds(0));
    CHECK_FALSE(state.recent_hours()->Holds(1));
    same(state);
  }
  store->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace adpulse
