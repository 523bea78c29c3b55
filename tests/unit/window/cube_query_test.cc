#include <catch2/catch.hpp>
#include <deque>
#include <map>
#include <random>

#include "state/shard_state.h"
#include "window/cube_catalog.h"
#include "window/query.h"

namespace adpulse {
namespace {
constexpr int64_t kDay0 = 20'000 * kDayMs;

CubeCatalog Catalog() {
  auto c = CubeCatalog::Create({{"campaign", {Dim::kCampaignId}},
                                {"campaign_country", {Dim::kCampaignId, Dim::kCountry}},
                                {"advertiser", {Dim::kAdvertiserId}}});
  REQUIRE(c.ok());
  return *c;
}
}  // namespace

TEST_CASE("cube selection picks the smallest covering cube or names the one to add", "[cube]") {
  CubeCatalog catalog = Catalog();
  CHECK(*catalog.Select({Dim::kCampaignId}) == 0);
  CHECK(*catalog.Select({}) == 0);
  CHECK(*catalog.Select({Dim::kCountry}) == 1);
  CHECK(*catalog.Select({Dim::kCountry, Dim::kCampaignId}) == 1);
  auto none = catalog.Select({Dim::kOs, Dim::kCity});
  REQUIRE_FALSE(none.ok());
  CHECK(std::string(none.status().message()).find("dimensions = [\"city\", \"os\"]") !=
        std::string::npos);
}

TEST_CASE("unique users come only from cubes that keep them", "[cube]") {
  CubeSpec country{"campaign_country", {Dim::kCampaignId, Dim::kCountry}};
  country.unique_users = false;
  CubeSpec wide{"campaign_country_device", {Dim::kCampaignId, Dim::kCountry, Dim::kDeviceType}};
  auto catalog = CubeCatalog::Create({{"campaign", {Dim::kCampaignId}}, country, wide});
  REQUIRE(catalog.ok());
  CHECK(*catalog->Select({Dim::kCountry}, false) == 1);  // the smallest, users or not
  CHECK(*catalog->Select({Dim::kCountry}, true) == 2);   // the smallest that keeps users
  country.dims.push_back(Dim::kOs);
  auto only = CubeCatalog::Create({country});
  REQUIRE(only.ok());
  auto refused = only->Select({Dim::kOs}, true);
  REQUIRE_FALSE(refused.ok());
  CHECK(std::string(refused.status().message()).find("unique_users = false") != std::string::npos);

  // A cube without users counts the same and leaves its HyperLogLogs empty.
  ShardState state(*only, 0, nullptr, kDayMs);
  Event e;
  e.event_id = "u1";
  e.dim(Dim::kCampaignId) = "c1";
  e.dim(Dim::kCountry) = "US";
  e.user_id = "user-1";
  e.timestamp_ms = kDay0;
  REQUIRE(state.Apply(e));
  QuerySpec spec;
  spec.cube = 0;
  spec.start_ms = kDay0;
  spec.end_ms = kDay0 + kHourMs;
  spec.need_users = true;
  ResultTable table;
  REQUIRE(state.RunQuery(spec, table).ok());
  REQUIRE(table.size() == 1);
  CHECK(table.SortedRows()[0]->agg.counters.impressions == 1);
  CHECK(table.SortedRows()[0]->agg.users.empty());
}

TEST_CASE("the catalog refuses bad cubes", "[cube]") {
  CHECK_FALSE(CubeCatalog::Create({{"a", {}}}).ok());
  CHECK_FALSE(CubeCatalog::Create({{"a", {Dim::kOs, Dim::kOs}}}).ok());
  CHECK_FALSE(CubeCatalog::Create({{"a", {Dim::kOs}}, {"a", {Dim::kCity}}}).ok());
}

TEST_CASE("minute, 5-minute, hour, day and all totals agree with the events", "[cube]") {
  CubeCatalog catalog = Catalog();
  ShardState state(catalog, 0, nullptr, kDayMs);
  std::mt19937_64 rng(7);
  std::string arena;
  arena.reserve(1 << 20);
  const char* countries[] = {"US", "DE", "FR"};
  std::map<std::string, Counters> truth;  // by campaign, over [kDay0 + 3h, kDay0 + 2d)
  int64_t from = kDay0 + 3 * kHourMs, to = kDay0 + 2 * kDayMs;
  for (int i = 0; i < 20'000; ++i) {
    Event e;
    size_t at = arena.size();
    arena += "id" + std::to_string(i);
    e.event_id = std::string_view(arena.data() + at, arena.size() - at);
    at = arena.size();
    arena += "c" + std::to_string(rng() % 5);
    e.dim(Dim::kCampaignId) = std::string_view(arena.data() + at, arena.size() - at);
    e.dim(Dim::kCountry) = countries[rng() % 3];
    e.type = static_cast<EventType>(rng() % 3);
    e.timestamp_ms = kDay0 + static_cast<int64_t>(rng() % (3 * kDayMs));
    e.bid_micros = static_cast<int64_t>(rng() % 5'000'000);
    REQUIRE(state.Apply(e));
    if (e.timestamp_ms >= from && e.timestamp_ms < to) {
      truth[std::string(e.dim(Dim::kCampaignId))].Add(e.type, e.bid_micros, false);
    }
  }
  for (Granularity g : {Granularity::kMinute, Granularity::kFiveMinute, Granularity::kHour,
                        Granularity::kDay, Granularity::kAll}) {
    QuerySpec spec;
    spec.cube = 0;
    spec.group_by = {Dim::kCampaignId};
    spec.start_ms = from;
    spec.end_ms = to;
    spec.granularity = g;
    spec.need_users = false;
    ResultTable table;
    REQUIRE(state.RunQuery(spec, table).ok());
    std::map<std::string, Counters> got;
    for (const ResultRow* row : table.SortedRows()) {
      CHECK(row->time >= BucketStart(g, spec.tz, from));
      got[row->dims[0]].Merge(row->agg.counters);
    }
    CAPTURE(GranularityName(g));
    CHECK(got == truth);
  }
}

TEST_CASE("filters select groups, and an unseen value matches nothing", "[cube]") {
  CubeCatalog catalog = Catalog();
  ShardState state(catalog, 0, nullptr, kDayMs);
  auto add = [&](const char* id, const char* campaign, const char* country) {
    Event e;
    e.event_id = id;
    e.dim(Dim::kCampaignId) = campaign;
    e.dim(Dim::kCountry) = country;
    e.timestamp_ms = kDay0 + 1000;
    state.Apply(e);
  };
  add("1", "c1", "US");
  add("2", "c1", "DE");
  add("3", "c2", "US");
  add("4", "c2", "US");
  QuerySpec spec;
  spec.cube = 1;
  spec.group_by = {Dim::kCountry};
  spec.filters = {{Dim::kCampaignId, {"c2", "c1"}}, {Dim::kCountry, {"US"}}};
  spec.start_ms = kDay0;
  spec.end_ms = kDay0 + kDayMs;
  ResultTable table;
  REQUIRE(state.RunQuery(spec, table).ok());
  REQUIRE(table.size() == 1);
  CHECK(table.SortedRows()[0]->agg.counters.impressions == 3);

  spec.filters = {{Dim::kCampaignId, {"nope"}}};
  ResultTable empty;
  REQUIRE(state.RunQuery(spec, empty).ok());
  CHECK(empty.size() == 0);
}

}  // namespace adpulse

namespace adpulse {
namespace {
// Every row of cube `cube` by minute, grouped by `dims`: its counters and user estimate.
std::map<std::string, std::pair<Counters, double>> MinuteRows(const ShardState& state, int cube,
                                                              std::vector<Dim> dims) {
  QuerySpec spec;
  spec.cube = cube;
  spec.group_by = std::move(dims);
  spec.start_ms = kDay0;
  spec.end_ms = kDay0 + kHourMs;
  spec.granularity = Granularity::kMinute;
  spec.need_users = true;
  ResultTable table;
  REQUIRE(state.RunQuery(spec, table).ok());
  std::map<std::string, std::pair<Counters, double>> rows;
  for (const ResultRow* row : table.SortedRows()) {
    std::string key = std::to_string(row->time);
    for (const std::string& d : row->dims) key += "|" + d;
    rows[key] = {row->agg.counters, row->agg.users.Estimate()};
  }
  return rows;
}
}  // namespace

TEST_CASE("a batch added at once counts exactly as its events added one by one", "[cube]") {
  CubeCatalog catalog = Catalog();
  ShardState one_by_one(catalog, 0, nullptr, kDayMs);
  ShardState batched(catalog, 0, nullptr, kDayMs);
  std::mt19937_64 rng(11);
  std::deque<std::string> arena;  // stable storage for the events' strings
  auto view = [&](std::string s) -> std::string_view { return arena.emplace_back(std::move(s)); };
  const char* countries[] = {"US", "DE", "FR", "GB"};
  std::vector<Event> events(30'000);
  for (size_t i = 0; i < events.size(); ++i) {
    Event& e = events[i];
    e.event_id = view("b" + std::to_string(i));
    // Many campaigns, so that groups are created all through the batch and the tables grow
    // while updates found before the growth are still pending in the pipeline.
    e.dim(Dim::kCampaignId) = view("c" + std::to_string(rng() % 5000));
    e.dim(Dim::kCountry) = countries[rng() % 4];
    e.dim(Dim::kAdvertiserId) = view("a" + std::to_string(rng() % 50));
    if (rng() % 10 != 0) e.user_id = view("u" + std::to_string(rng() % 2000));
    e.type = static_cast<EventType>(rng() % 3);
    e.fraud_flags = rng() % 20 == 0 ? 1 : 0;
    e.timestamp_ms = kDay0 + static_cast<int64_t>(rng() % (5 * kMinuteMs));
    e.bid_micros = static_cast<int64_t>(rng() % 5'000'000);
  }
  std::string error;
  std::vector<const Event*> admitted;
  for (const Event& e : events) {
    REQUIRE(one_by_one.Apply(e));
    REQUIRE(batched.Admit(e, &error) == Admission::kNew);
    admitted.push_back(&e);
  }
  // In uneven pieces: shorter and longer than the pipeline.
  size_t at = 0;
  for (size_t n : {size_t{1}, size_t{3}, size_t{9}, size_t{17}, admitted.size()}) {
    n = std::min(n, admitted.size() - at);
    batched.AddBatchToCubes(admitted.data() + at, n);
    at += n;
  }
  REQUIRE(at == admitted.size());
  CHECK(batched.groups_in_memory() == one_by_one.groups_in_memory());
  CHECK(batched.CounterSnapshot().events_applied == events.size());
  auto expected = MinuteRows(one_by_one, 1, {Dim::kCampaignId, Dim::kCountry});
  CHECK(expected.size() > 10'000);
  CHECK(MinuteRows(batched, 1, {Dim::kCampaignId, Dim::kCountry}) == expected);
  CHECK(MinuteRows(batched, 2, {Dim::kAdvertiserId}) ==
        MinuteRows(one_by_one, 2, {Dim::kAdvertiserId}));
}

}  // namespace adpulse
