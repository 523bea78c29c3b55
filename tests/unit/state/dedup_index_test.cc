#include "state/dedup_index.h"

#include <catch2/catch.hpp>
#include <string>

#include "window/time_bucket.h"

namespace adpulse {

TEST_CASE("an id is new once and a duplicate afterwards", "[dedup]") {
  DedupIndex index(kDayMs);
  CHECK(index.Insert("a", 1000));
  CHECK_FALSE(index.Insert("a", 1000));
  CHECK_FALSE(index.Insert("a", 5 * kHourMs));  // same id, other time: still a duplicate
  CHECK(index.Insert("b", 1000));
  CHECK(index.size() == 2);
}

TEST_CASE("ids expire once their hour is beyond the horizon", "[dedup]") {
  const int64_t t0 = 20'000 * kDayMs;
  DedupIndex index(kDayMs);
  for (int i = 0; i < 1000; ++i) REQUIRE(index.Insert("old" + std::to_string(i), t0));
  for (int i = 0; i < 1000; ++i) REQUIRE(index.Insert("new" + std::to_string(i), t0 + kDayMs));
  CHECK(index.Expire(t0 + kDayMs) == 0);  // within the horizon: kept
  CHECK(index.Expire(t0 + kDayMs + 3 * kHourMs) == 1000);
  CHECK(index.size() == 1000);
  CHECK_FALSE(index.Insert("new5", t0 + kDayMs));
  CHECK(index.Insert("old5", t0 + kDayMs));
}

}  // namespace adpulse
