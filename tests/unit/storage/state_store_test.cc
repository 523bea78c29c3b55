#include "storage/state_store.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <random>

#include "base/time_parse.h"
#include "state/dedup_index.h"
#include "window/aggregate_codec.h"

namespace adpulse {
namespace {

std::string TempDir() {
  return (std::filesystem::temp_directory_path() /
          ("adpulse-store-test-" + std::to_string(std::random_device{}())))
      .string();
}

std::string Value(uint64_t impressions, int64_t spend, std::initializer_list<uint64_t> users) {
  Aggregate a;
  a.counters.impressions = impressions;
  a.counters.spend_micros = spend;
  for (uint64_t u : users) a.users.AddHash(u * 0x9E3779B97F4A7C15ull);
  std::string out;
  EncodeAggregate(a, out);
  return out;
}

Aggregate Read(StateStore& store, const std::string& key) {
  Aggregate got;
  int found = 0;
  REQUIRE(store
              .Scan(key, key + '\xff',
                    [&](std::string_view k, std::string_view v) {
                      if (k == key) {
                        REQUIRE(DecodeAggregate(v, got));
                        ++found;
                      }
                      return true;
                    })
              .ok());
  REQUIRE(found == 1);
  return got;
}

}  // namespace

TEST_CASE("the merge operator adds counters and unions users", "[store]") {
  std::string dir = TempDir();
  auto store = StateStore::Open({dir});
  REQUIRE(store.ok());
  std::string key;
  AppendAggregateKeyPrefix(key, 1, 2, Level::kHour, FloorDiv(NowMs(), kHourMs));
  AppendAggregateKeyDim(key, "camp-1");
  for (int round = 0; round < 3; ++round) {
    StateStore::Batch b;
    b.MergeAggregate(key, Value(10, 1'500'000, {1, 2, 3}));
    b.MergeAggregate(key, Value(5, 250, {3, 4}));
    REQUIRE((*store)->Write(b).ok());
  }
  Aggregate a = Read(**store, key);
  CHECK(a.counters.impressions == 45);
  CHECK((a.counters.spend_micros == 3 * 1'500'250));
  CHECK(a.users.Estimate() == 4);
  // The same after compaction has folded the operands.
  REQUIRE((*store)->CompactAll().ok());
  Aggregate b = Read(**store, key);
  CHECK(b.counters.impressions == 45);
  CHECK(b.users.Estimate() == 4);
  store->reset();
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoints and meta round-trip", "[store]") {
  std::string dir = TempDir();
  {
    auto store = StateStore::Open({dir});
    REQUIRE(store.ok());
    CHECK_FALSE(*(*store)->ReadCheckpoint(3));
    StateStore::Batch b;
    b.PutCheckpoint(3, {7, 1234});
    REQUIRE((*store)->Write(b).ok());
    REQUIRE((*store)->PutMeta("shards", "4").ok());
    REQUIRE((*store)->Sync().ok());
  }
  auto store = StateStore::Open({dir});
  REQUIRE(store.ok());
  auto cp = (*store)->ReadCheckpoint(3);
  REQUIRE(cp.ok());
  REQUIRE(*cp);
  CHECK((*cp)->sequence == 7);
  CHECK((*cp)->offset == 1234);
  CHECK(**(*store)->GetMeta("shards") == "4");
  CHECK_FALSE(*(*store)->ReadCheckpoint(2));
  store->reset();
  std::filesystem::remove_all(dir);
}

TEST_CASE("compaction expires old dedup ids and old buckets, keeps recent ones", "[store]") {
  std::string dir = TempDir();
  StateStoreOptions o{dir};
  o.dedup_horizon_ms = kDayMs;
  o.minute_retention_ms = 2 * kDayMs;
  auto store = StateStore::Open(o);
  REQUIRE(store.ok());
  int32_t now_hour = static_cast<int32_t>(FloorDiv(NowMs(), kHourMs));
  absl::uint128 old_id = DedupIndex::Fingerprint("old"), new_id = DedupIndex::Fingerprint("new");
  std::string old_key, new_key;
  AppendAggregateKeyPrefix(old_key, 0, 0, Level::kMinute,
                           FloorDiv(NowMs() - 3 * kDayMs, kMinuteMs));
  AppendAggregateKeyDim(old_key, "c");
  AppendAggregateKeyPrefix(new_key, 0, 0, Level::kMinute, FloorDiv(NowMs(), kMinuteMs));
  AppendAggregateKeyDim(new_key, "c");
  StateStore::Batch b;
  b.PutDedup(0, old_id, now_hour - 30);
  b.PutDedup(0, new_id, now_hour - 2);
  b.PutAggregate(old_key, Value(1, 1, {}));
  b.PutAggregate(new_key, Value(1, 1, {}));
  REQUIRE((*store)->Write(b).ok());
  CHECK(*(*store)->DedupContains(0, old_id, INT32_MIN));  // before compaction: still there
  REQUIRE((*store)->Sync().ok());
  REQUIRE((*store)->CompactAll().ok());
  CHECK_FALSE(*(*store)->DedupContains(0, old_id, INT32_MIN));
  CHECK(*(*store)->DedupContains(0, new_id, INT32_MIN));
  int keys = 0;
  REQUIRE((*store)
              ->Scan("A", "B",
                     [&](std::string_view, std::string_view) {
                       ++keys;
                       return true;
                     })
              .ok());
  CHECK(keys == 1);
  CHECK(Read(**store, new_key).counters.impressions == 1);
  store->reset();
  std::filesystem::remove_all(dir);
}

TEST_CASE("dedup runs: ids, the newest checkpoint, ids from before runs, expiry",
          "[store][dedup]") {
  std::string dir = TempDir();
  StateStoreOptions o{dir};
  o.dedup_horizon_ms = kDayMs;
  auto store = StateStore::Open(o);
  REQUIRE(store.ok());
  StateStore& st = **store;
  int32_t now_hour = static_cast<int32_t>(FloorDiv(NowMs(), kHourMs));
  CHECK_FALSE(st.ReadDedupCheckpoint(0)->has_value());
  std::vector<DedupId> run;
  for (int i = 0; i < 1000; ++i) {
    run.push_back({DedupIndex::Fingerprint("run-" + std::to_string(i)), now_hour - (i % 3)});
  }
  run.push_back({DedupIndex::Fingerprint("old"), now_hour - 30});
  run.push_back(run[5]);  // a repeat is written once
  std::sort(run.begin(), run.end(),
            [](const DedupId& a, const DedupId& b) { return a.fingerprint < b.fingerprint; });
  REQUIRE(st.WriteDedupRun(0, run, WalPosition{3, 700}).ok());
  REQUIRE(
      st.WriteDedupRun(1, {{DedupIndex::Fingerprint("other-shard"), now_hour}}, WalPosition{9, 9})
          .ok());
  // A second run of shard 0 with no ids moves its checkpoint on.
  REQUIRE(st.WriteDedupRun(0, {}, WalPosition{4, 10}).ok());
  // An id written the way stores did before dedup runs (with a flush's batch).
  StateStore::Batch b;
  b.PutDedup(0, DedupIndex::Fingerprint("legacy"), now_hour);
  REQUIRE(st.Write(b).ok());

  CHECK(**st.ReadDedupCheckpoint(0) == WalPosition{4, 10});
  CHECK(**st.ReadDedupCheckpoint(1) == WalPosition{9, 9});
  for (int i = 0; i < 1000; i += 37) {
    CHECK(*st.DedupContains(0, DedupIndex::Fingerprint("run-" + std::to_string(i)), INT32_MIN));
    CHECK_FALSE(
        *st.DedupContains(1, DedupIndex::Fingerprint("run-" + std::to_string(i)), INT32_MIN));
  }
  CHECK(*st.DedupContains(0, DedupIndex::Fingerprint("legacy"), INT32_MIN));
  CHECK_FALSE(*st.DedupContains(0, DedupIndex::Fingerprint("never"), INT32_MIN));
  // An id older than the horizon's first hour does not count, even before compaction drops it.
  CHECK(*st.DedupContains(0, DedupIndex::Fingerprint("old"), now_hour - 40));
  CHECK_FALSE(*st.DedupContains(0, DedupIndex::Fingerprint("old"), now_hour - 20));
  size_t seen = 0;
  REQUIRE(st.ForEachDedup(0, [&](absl::uint128, int32_t) { ++seen; }).ok());
  CHECK(seen == 1000 + 1 + 1);  // the run's distinct ids, "old" and "legacy"

  REQUIRE(st.Sync().ok());
  REQUIRE(st.CompactAll().ok());
  CHECK_FALSE(*st.DedupContains(0, DedupIndex::Fingerprint("old"), INT32_MIN));
  CHECK(*st.DedupContains(0, DedupIndex::Fingerprint("run-999"), INT32_MIN));
  CHECK(**st.ReadDedupCheckpoint(0) == WalPosition{4, 10});  // never expired
  REQUIRE(st.WriteDedupRun(0, {{DedupIndex::Fingerprint("after"), now_hour}}, {5, 0}).ok());
  store->reset();

  store = StateStore::Open(o);
  REQUIRE(store.ok());
  CHECK(**(*store)->ReadDedupCheckpoint(0) == WalPosition{5, 0});
  CHECK(*(*store)->DedupContains(0, DedupIndex::Fingerprint("run-1"), INT32_MIN));
  CHECK(*(*store)->DedupContains(0, DedupIndex::Fingerprint("after"), INT32_MIN));
  store->reset();
  std::filesystem::remove_all(dir);
}

TEST_CASE("merging encoded aggregates equals decoding, merging and encoding", "[store]") {
  std::mt19937_64 rng(11);
  // Empty, small sparse, sparse near the limit, and dense HyperLogLogs, in random mixes.
  auto make = [&](int users) {
    Aggregate a;
    a.counters.impressions = rng() % 1000;
    a.counters.clicks = rng() % 100;
    a.counters.spend_micros = static_cast<int64_t>(rng() % 1'000'000'000);
    a.counters.fraud_clicks = rng() % 3;
    uint64_t base = rng() % 4000;  // overlapping user ranges
    for (int i = 0; i < users; ++i) a.users.AddHash((base + i) * 0x9E3779B97F4A7C15ull);
    return a;
  };
  const int sizes[] = {0, 1, 5, 300, 700, 1024, 3000};
  for (int round = 0; round < 200; ++round) {
    int n = 1 + static_cast<int>(rng() % 4);
    std::vector<std::string> encoded(n);
    Aggregate expected;
    for (int i = 0; i < n; ++i) {
      Aggregate a = make(sizes[rng() % 7]);
      EncodeAggregate(a, encoded[i]);
      expected.Merge(a, true);
    }
    std::vector<std::string_view> views(encoded.begin(), encoded.end());
    std::string merged;
    REQUIRE(MergeEncodedAggregates(views, merged));
    std::string want;
    EncodeAggregate(expected, want);
    CHECK(merged == want);  // byte for byte: same counters, same sparse list or registers
  }
  std::vector<std::string_view> bad = {"\x01short"};
  std::string out;
  CHECK_FALSE(MergeEncodedAggregates(bad, out));
}

}  // namespace adpulse
