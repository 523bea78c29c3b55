#include "state/reconciler.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <random>

#include "base/time_parse.h"
#include "state/shard_writer.h"
#include "window/aggregate_codec.h"

namespace adpulse {
namespace {

CubeCatalog Catalog() {
  return *CubeCatalog::Create(
      {{"campaign", {Dim::kCampaignId}}, {"campaign_country", {Dim::kCampaignId, Dim::kCountry}}});
}

// Ingests `n` events through a real log, store and archive, then reconciles, alters one stored
// aggregate, reconciles again, rebuilds, and reconciles a third time.
void Run(int n) {
  std::string dir = (std::filesystem::temp_directory_path() /
                     ("adpulse-reconcile-" + std::to_string(std::random_device{}())))
                        .string();
  CubeCatalog catalog = Catalog();
  auto store = StateStore::Open({dir + "/state"});
  REQUIRE(store.ok());
  Archiver archiver({dir + "/archive", 90ll * kDayMs, store->get()});
  archiver.Start();
  ShardState state(catalog, 0, store->get(), kDayMs);
  ShardWriterOptions o;
  o.use_wal = true;
  o.wal = {dir + "/wal", false, 1 << 20};  // small segments: many get archived
  o.archiver = &archiver;
  o.store = store->get();
  o.rollup_delay_ms = 0;  // every closed hour is rolled up as soon as the writer gets to it
  o.recent_hours = 26;    // as the daemon: the recent hours are held in memory too
  ShardWriter writer(&state, o);
  RecoveryStats stats;
  REQUIRE(writer.Recover(&stats).ok());

  const int64_t now = NowMs();
  std::mt19937_64 rng(3);
  std::vector<std::string> ids(n);
  std::vector<Event> events(n);
  const char* countries[] = {"US", "DE", "FR", "JP"};
  std::vector<std::string> campaigns;
  for (int c = 0; c < 100; ++c) campaigns.push_back("camp-" + std::to_string(c));
  for (int i = 0; i < n; ++i) {
    ids[i] = "r" + std::to_string(i);
    Event& e = events[i];
    e.event_id = ids[i];
    e.dim(Dim::kCampaignId) = campaigns[rng() % campaigns.size()];
    e.dim(Dim::kCountry) = countries[rng() % 4];
    e.type = static_cast<EventType>(rng() % 3);
    e.timestamp_ms = now - static_cast<int64_t>(rng() % (6 * kHourMs));
    e.bid_micros = static_cast<int64_t>(rng() % 1'000'000);
  }
  std::vector<EventOutcome> outcomes(n);
  std::string failure;
  for (int i = 0; i < n; ++i) {
    writer.Stage(events[i], &outcomes[i], &failure);
    if (i % 1000 == 999) {
      writer.CommitGroup();
      if (i % 20000 == 19999) writer.MaybeFlush(NowMs(), true);  // some in the store, some not
    }
  }
  writer.CommitGroup();
  REQUIRE(failure.empty());

  const int64_t start = FloorTo(now, kDayMs) - kDayMs;
  const int64_t end = FloorTo(now, kDayMs) + kDayMs;
  ReconcileReport clean;
  REQUIRE(writer.Reconcile(catalog, start, end, false, clean).ok());
  CHECK(clean.events == static_cast<uint64_t>(n));
  CHECK(clean.difference_count == 0);
  CHECK(clean.groups_compared > 100);

  // Roll every closed hour up (a new data dir starts a day back), so the hour altered below is
  // read from its stored aggregate.
  for (int i = 0; i < 100 && state.rolled_up().hours_through < FloorDiv(now, kHourMs) - 1; ++i) {
    writer.MaybeFlush(NowMs(), false);
    REQUIRE(state.FinishRollUp().ok());
  }
  REQUIRE(state.rolled_up().hours_through >= FloorDiv(now, kHourMs) - 1);

  // Alter one stored aggregate: one more click for camp-7 in one hour bucket.
  Event extra;
  extra.type = EventType::kClick;
  extra.bid_micros = 5;
  Aggregate delta;
  delta.Add(extra, std::nullopt);
  std::string key, value;
  int64_t hour = FloorDiv(now, kHourMs) - 1;
  AppendAggregateKeyPrefix(key, 0, /*cube=*/0, Level::kHour, hour);
  AppendAggregateKeyDim(key, "camp-7");
  EncodeAggregate(delta, value);
  StateStore::Batch batch;
  batch.MergeAggregate(key, value);
  REQUIRE((*store)->Write(batch).ok());
  // The recent hours held in memory did not see that write: the check reads the store itself.
  REQUIRE(state.recent_hours() != nullptr);
  CHECK(state.recent_hours()->groups() > 0);

  ReconcileReport altered;
  REQUIRE(writer.Reconcile(catalog, start, end, false, altered).ok());
  // The hour differs; so does its day when the day is not rolled up yet (it is read as its hours).
  bool day_from_hours = FloorDiv(hour * kHourMs, kDayMs) > state.rolled_up().days_through;
  REQUIRE(altered.difference_count == (day_from_hours ? 2u : 1u));
  if (day_from_hours) {
    CHECK(altered.differences[1].level == Level::kDay);
    CHECK(altered.differences[1].stored.clicks == altered.differences[1].recomputed.clicks + 1);
  }
  const ReconcileDifference& d = altered.differences[0];
  CHECK(d.cube == "campaign");
  CHECK(d.level == Level::kHour);
  CHECK(d.time_ms == hour * kHourMs);
  CHECK(d.dims == std::vector<std::pair<Dim, std::string>>{{Dim::kCampaignId, "camp-7"}});
  CHECK(d.stored.clicks == d.recomputed.clicks + 1);
  CHECK((d.stored.spend_micros == d.recomputed.spend_micros + 5));
  CHECK(d.stored.impressions == d.recomputed.impressions);

  // As a restart would, fill them from the altered store: the rebuild must correct them too.
  REQUIRE(state.ReloadRecentHours(NowMs()).ok());
  ReconcileReport rebuilt;
  REQUIRE(writer.Reconcile(catalog, start, end, true, rebuilt).ok());
  CHECK(rebuilt.difference_count == altered.difference_count);
  CHECK(rebuilt.rebuilt);
  ReconcileReport after;
  REQUIRE(writer.Reconcile(catalog, start, end, false, after).ok());
  CHECK(after.difference_count == 0);
  // The rebuild wrote the store directly; the recent hours were filled again from it: a query
  // served from them gives what the store gives.
  auto hourly = [&](bool recent) {
    QuerySpec spec;
    spec.cube = 0;
    spec.group_by = {Dim::kCampaignId};
    spec.granularity = Granularity::kHour;
    spec.start_ms = start;
    spec.end_ms = end;
    spec.need_users = false;
    spec.recent_hours = recent;
    ResultTable table;
    REQUIRE(state.RunQuery(spec, table).ok());
    std::map<std::string, uint64_t> clicks;
    for (const ResultRow* r : table.SortedRows()) {
      clicks[std::to_string(r->time) + "|" + r->dims[0]] = r->agg.counters.clicks;
    }
    return clicks;
  };
  auto from_store = hourly(false);
  CHECK(from_store.size() > 100);
  CHECK(hourly(true) == from_store);
  CHECK(archiver.archived_segments() > 0);

  archiver.Stop();
  store->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace

TEST_CASE("reconciliation finds no difference, then exactly the altered aggregate", "[reconcile]") {
  Run(100'000);
}

TEST_CASE("reconciliation over a million events (long)", "[.long][reconcile]") { Run(1'000'000); }

}  // namespace adpulse
