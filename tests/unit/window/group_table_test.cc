#include "window/group_table.h"

#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <vector>

namespace adpulse {
namespace {

DimKey Key(uint32_t a, uint32_t b = 0) { return DimKey{a, b, 0, 0, 0, 0}; }

TEST_CASE("a group table finds what it holds and only that, across growth", "[group_table]") {
  GroupTable table;
  std::map<DimKey, Aggregate*> held;
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    DimKey key = Key(rng() % 5000, rng() % 3);
    bool created;
    Aggregate& agg = table.FindOrInsert(key, GroupTable::Hash(key), &created);
    CHECK(created == (held.count(key) == 0));
    if (created) held[key] = &agg;
    CHECK(held[key] == &agg);  // an entry never moves, however the table grew since
    agg.counters.impressions += 1;
  }
  CHECK(table.size() == held.size());
  uint64_t total = 0;
  size_t seen = 0;
  for (const auto& [key, agg] : table) {
    REQUIRE(held.count(key) == 1);
    CHECK(held[key] == &agg);
    total += agg.counters.impressions;
    ++seen;
  }
  CHECK(seen == held.size());
  CHECK(total == 20000);
  CHECK(table.Find(Key(5001)) == nullptr);
  for (const auto& [key, agg] : held) CHECK(table.Find(key) == agg);
}

TEST_CASE("keys whose hashes collide in the index stay apart", "[group_table]") {
  GroupTable table;
  bool created;
  // Same hash passed for different keys: the keys themselves decide.
  Aggregate& a = table.FindOrInsert(Key(1), 42, &created);
  Aggregate& b = table.FindOrInsert(Key(2), 42, &created);
  CHECK(created);
  CHECK(&a != &b);
  CHECK(&table.FindOrInsert(Key(1), 42, &created) == &a);
  CHECK_FALSE(created);
  CHECK(table.Find(Key(2), 42) == &b);
  CHECK(table.Find(Key(3), 42) == nullptr);
}

TEST_CASE("a moved group table keeps its groups and leaves an empty one", "[group_table]") {
  GroupTable table;
  for (uint32_t i = 0; i < 100; ++i) table[Key(i)].counters.clicks = i;
  table[Key(7)].users.AddHash(0x1234567890abcdefull);
  GroupTable moved(std::move(table));
  CHECK(table.size() == 0);
  CHECK(table.begin() == table.end());
  CHECK(table.Find(Key(7)) == nullptr);
  REQUIRE(moved.size() == 100);
  CHECK(moved.Find(Key(99))->counters.clicks == 99);
  CHECK(moved.Find(Key(7))->users.Estimate() == 1);
  table[Key(1)].counters.clicks = 5;  // the moved-from table is usable again
  CHECK(table.size() == 1);
  moved = std::move(table);
  CHECK(moved.size() == 1);
  CHECK(moved.Find(Key(1))->counters.clicks == 5);
}

}  // namespace
}  // namespace adpulse
