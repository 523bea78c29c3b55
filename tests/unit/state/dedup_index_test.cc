#include "state/dedup_index.h"

#include <catch2/catch.hpp>
#include <string>

#include "window/time_bucket.h"

namespace adpulse {

TEST_CASE("an id is new once and a duplicate afterwards", "[dedup]") {
  DedupIndex index;
  CHECK(index.Insert("a", 1000));
  CHECK_FALSE(index.Insert("a", 1000));
  CHECK_FALSE(index.Insert("a", 5 * kHourMs));  // same id, other time: still a duplicate
  CHECK(index.Insert("b", 1000));
  CHECK(index.size() == 2);
  index.Erase("a");
  CHECK(index.Insert("a", 1000));
}

TEST_CASE("fingerprints differ for different ids and keep the latest hour", "[dedup]") {
  CHECK(DedupIndex::Fingerprint("x") != DedupIndex::Fingerprint("y"));
  CHECK(DedupIndex::Fingerprint("x") == DedupIndex::Fingerprint("x"));
  DedupIndex index;
  index.Insert("x", 1 * kHourMs);
  index.Insert("x", 7 * kHourMs);
  int32_t hour = -1;
  index.ForEach([&](absl::uint128, int32_t h) { hour = h; });
  CHECK(hour == 7);
  index.Clear();
  CHECK(index.size() == 0);
}

}  // namespace adpulse
