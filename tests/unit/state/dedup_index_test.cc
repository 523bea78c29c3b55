#include "state/dedup_index.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "state/dedup_filter.h"
#include "state/shard_state.h"
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

namespace adpulse {

TEST_CASE("the dedup filter never forgets an id within its generations and rarely says maybe",
          "[dedup]") {
  // 1 MiB over 4 generations: 2 Mbit each, 10 bits per id for the 200,000 added below.
  DedupFilter filter(1 << 20, 1000);
  const int n = 200'000;
  int64_t now = 1'000'000;
  for (int i = 0; i < n; ++i) filter.Add(DedupIndex::Fingerprint("in-" + std::to_string(i)), now);
  int missing = 0, maybe = 0;
  for (int i = 0; i < n; ++i) {
    missing += !filter.MayContain(DedupIndex::Fingerprint("in-" + std::to_string(i)));
    maybe += filter.MayContain(DedupIndex::Fingerprint("out-" + std::to_string(i)));
  }
  CHECK(missing == 0);
  CHECK(maybe > 0);            // a real Bloom filter at 10 bits per id
  CHECK(maybe < n * 3 / 100);  // about 1 % (blocked); 3 % would mean the probes are broken
  // Three more generations keep the first; the fourth drops it.
  for (int g = 1; g <= 3; ++g)
    filter.Add(DedupIndex::Fingerprint("g" + std::to_string(g)), now + g * 1000);
  CHECK(filter.MayContain(DedupIndex::Fingerprint("in-7")));
  filter.Add(DedupIndex::Fingerprint("g4"), now + 4000);
  int kept = 0;
  for (int i = 0; i < 1000; ++i)
    kept += filter.MayContain(DedupIndex::Fingerprint("in-" + std::to_string(i)));
  CHECK(kept < 50);
}

}  // namespace adpulse

namespace adpulse {
TEST_CASE("ids sorted a part at a time are sorted as a whole", "[dedup]") {
  DedupIndex index;
  for (int i = 0; i < 20'000; ++i) REQUIRE(index.Insert("ev-" + std::to_string(i), 0));
  std::vector<absl::uint128> ids;
  size_t begin = 0;
  int parts = 0;
  index.ForEachByPart([&](absl::uint128 fp, int32_t) { ids.push_back(fp); },
                      [&] {
                        std::sort(ids.begin() + static_cast<ptrdiff_t>(begin), ids.end());
                        begin = ids.size();
                        ++parts;
                      });
  CHECK(parts == DedupIndex::kParts);
  REQUIRE(ids.size() == 20'000);
  CHECK(std::is_sorted(ids.begin(), ids.end()));
}
TEST_CASE("a dedup run's part is sorted by fingerprint, small or bucketed", "[dedup]") {
  std::vector<DedupId> scratch;
  for (size_t n : {size_t{0}, size_t{1}, size_t{1000}, size_t{5000}, size_t{200000}}) {
    // The ids of one part: the same top 6 bits (part 37), the rest from fingerprints.
    std::vector<DedupId> ids;
    for (size_t i = 0; i < n; ++i) {
      absl::uint128 fp = DedupIndex::Fingerprint("id-" + std::to_string(i));
      uint64_t high = (absl::Uint128High64(fp) & (~uint64_t{0} >> 6)) | (uint64_t{37} << 58);
      if (i % 100 == 7) high &= ~(uint64_t{1023} << 48);  // crowd the first bucket
      ids.push_back({absl::MakeUint128(high, absl::Uint128Low64(fp)), static_cast<int32_t>(i)});
    }
    std::vector<DedupId> expected = ids;
    std::sort(expected.begin(), expected.end(),
              [](const DedupId& a, const DedupId& b) { return a.fingerprint < b.fingerprint; });
    SortDedupPart(ids.data(), ids.data() + ids.size(), scratch);
    CAPTURE(n);
    REQUIRE(ids.size() == expected.size());
    bool same = true;
    for (size_t i = 0; i < n; ++i) {
      same =
          same && ids[i].fingerprint == expected[i].fingerprint && ids[i].hour == expected[i].hour;
    }
    CHECK(same);
  }
}

}  // namespace adpulse
