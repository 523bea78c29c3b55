#include "state/shard_writer.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>

namespace adpulse {
namespace {

constexpr int64_t kT0 = 20'000 * kDayMs + 5 * kHourMs;

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
  spec.start_ms = FloorTo(kT0, kDayMs);
  spec.end_ms = spec.start_ms + kDayMs;
  spec.need_users = false;
  ResultTable table;
  state.RunQuery(spec, table);
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
    ShardState state(catalog, kDayMs);
    ShardWriter writer(&state, {dir, true, 16 << 10}, true);
    RecoveryStats stats;
    REQUIRE(writer.Recover(&stats).ok());
    auto outcomes = Write(writer, batch.events);
    CHECK(std::count(outcomes.begin(), outcomes.end(), EventOutcome::kAccepted) == 1000);
    before = Total(state);
    CHECK(before.impressions + before.clicks == 1000);
  }
  for (int restart = 0; restart < 2; ++restart) {  // replaying twice changes nothing
    ShardState state(catalog, kDayMs);
    ShardWriter writer(&state, {dir, true, 16 << 10}, true);
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

TEST_CASE("a torn tail is cut off and everything before it survives", "[recovery]") {
  CubeCatalog catalog = Catalog();
  std::string dir = TempDir();
  Events batch(100);
  {
    ShardState state(catalog, kDayMs);
    ShardWriter writer(&state, {dir, true, 1 << 20}, true);
    RecoveryStats stats;
    REQUIRE(writer.Recover(&stats).ok());
    Write(writer, batch.events);
  }
  auto segments = *ListWalSegments(dir + "");
  REQUIRE(segments.size() == 1);
  auto size = std::filesystem::file_size(segments[0].path);
  std::filesystem::resize_file(segments[0].path, size - 5);  // tear the last record
  ShardState state(catalog, kDayMs);
  ShardWriter writer(&state, {dir, true, 1 << 20}, true);
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
    ShardState state(catalog, kDayMs);
    ShardWriter writer(&state, {dir, true, 4096}, true);
    RecoveryStats stats;
    REQUIRE(writer.Recover(&stats).ok());
    Events batch(300);
    Write(writer, batch.events);
  }
  auto segments = *ListWalSegments(dir);
  REQUIRE(segments.size() > 2);
  {
    std::fstream f(segments[0].path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  ShardState state(catalog, kDayMs);
  ShardWriter writer(&state, {dir, true, 4096}, true);
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

}  // namespace adpulse
