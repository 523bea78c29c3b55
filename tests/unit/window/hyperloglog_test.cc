#include "window/hyperloglog.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace adpulse {
namespace {
uint64_t H(uint64_t i) { return XXH3_64bits(&i, sizeof(i)); }
double RelErr(double est, double truth) { return std::abs(est - truth) / truth; }
// `h` encoded as a flush stores it (its encoding in `encoded`, if given) and read back.
HyperLogLog StoredAndRead(const HyperLogLog& h, std::string* encoded = nullptr) {
  std::string bytes;
  h.AppendTo(bytes);
  HyperLogLog back;
  std::string_view in(bytes);
  REQUIRE(back.ReadFrom(in, HyperLogLog::Encoding::kDeltaVarint));
  if (encoded) *encoded = bytes;
  return back;
}
}  // namespace

TEST_CASE("small sets are counted exactly while sparse", "[hll]") {
  HyperLogLog h;
  CHECK(h.empty());
  CHECK(h.Estimate() == 0);
  for (uint64_t i = 0; i < 1000; ++i) {
    h.AddHash(H(i));
    h.AddHash(H(i));  // repeats change nothing
  }
  CHECK_FALSE(h.is_dense());
  CHECK(h.Estimate() == 1000);
}

TEST_CASE("the estimate stays within 2 % across cardinalities", "[hll]") {
  for (uint64_t n : {2'000ull, 10'000ull, 50'000ull, 200'000ull, 1'000'000ull}) {
    for (uint64_t seed = 0; seed < 3; ++seed) {
      HyperLogLog h;
      for (uint64_t i = 0; i < n; ++i) h.AddHash(H(i + seed * 10'000'000'000ull));
      CAPTURE(n, seed, h.Estimate());
      CHECK(h.StoredDense());
      CHECK(RelErr(h.Estimate(), static_cast<double>(n)) < 0.02);
    }
  }
}

TEST_CASE("merge equals the union, sparse or dense", "[hll]") {
  HyperLogLog a, b, small;
  for (uint64_t i = 0; i < 30'000; ++i) a.AddHash(H(i));
  for (uint64_t i = 20'000; i < 60'000; ++i) b.AddHash(H(i));
  for (uint64_t i = 59'500; i < 60'500; ++i) small.AddHash(H(i));
  HyperLogLog u = a;
  u.Merge(b);
  u.Merge(small);
  CHECK(RelErr(u.Estimate(), 60'500) < 0.02);

  HyperLogLog direct;
  for (uint64_t i = 0; i < 60'500; ++i) direct.AddHash(H(i));
  CHECK(u.Estimate() == direct.Estimate());  // registers are identical

  HyperLogLog s1, s2;
  for (uint64_t i = 0; i < 600; ++i) s1.AddHash(H(i));
  for (uint64_t i = 300; i < 900; ++i) s2.AddHash(H(i));
  s1.Merge(s2);
  CHECK_FALSE(s1.is_dense());
  CHECK(s1.Estimate() == 900);
  s1.Merge(s1);
  CHECK(s1.Estimate() == 900);
}

TEST_CASE("copies are independent", "[hll]") {
  HyperLogLog a;
  for (uint64_t i = 0; i < 5000; ++i) a.AddHash(H(i));
  HyperLogLog b = a;
  for (uint64_t i = 5000; i < 10000; ++i) b.AddHash(H(i));
  CHECK(RelErr(a.Estimate(), 5000) < 0.02);
  CHECK(RelErr(b.Estimate(), 10000) < 0.02);
}

TEST_CASE("repeats never count twice nor hold memory, across compactions", "[hll]") {
  HyperLogLog h;
  for (int round = 0; round < 50; ++round) {
    for (uint64_t i = 0; i < 100; ++i) h.AddHash(H(i));
  }
  CHECK_FALSE(h.is_dense());
  CHECK(h.Estimate() == 100);
  CHECK(h.MemoryBytes() <= sizeof(HyperLogLog) + 256 * sizeof(uint32_t));  // not 5,000 entries
  CHECK(StoredAndRead(h).Estimate() == 100);
}

TEST_CASE("a small set of repeats grows only up to the compaction size", "[hll]") {
  HyperLogLog h;
  for (int round = 0; round < 1000; ++round) {
    for (uint64_t i = 0; i < 3; ++i) h.AddHash(H(i));
  }
  CHECK(h.Estimate() == 3);
  CHECK(h.MemoryBytes() <= sizeof(HyperLogLog) + 2 * HyperLogLog::kCompactFrom * sizeof(uint32_t));
  HyperLogLog back = StoredAndRead(h);
  CHECK(back.Estimate() == 3);
  HyperLogLog merged;
  merged.Merge(h);
  merged.Merge(back);
  CHECK(merged.Estimate() == 3);
}

TEST_CASE("a sparse set too large to store sparse is estimated as it is stored", "[hll]") {
  HyperLogLog h;
  for (uint64_t i = 0; i < 1500; ++i) h.AddHash(H(i));
  REQUIRE(h.StoredDense());
  std::string encoded;
  HyperLogLog back = StoredAndRead(h, &encoded);
  CHECK(encoded.size() == 1 + HyperLogLog::kRegisters);
  CHECK(back.is_dense());
  CHECK(back.Estimate() == h.Estimate());
  CHECK(RelErr(h.Estimate(), 1500) < 0.02);
  // Past kMaxSparseEntries it turns dense in memory too, with the same registers.
  for (uint64_t i = 1500; i < 3000; ++i) h.AddHash(H(i));
  CHECK(h.is_dense());
  CHECK(RelErr(h.Estimate(), 3000) < 0.02);
}

}  // namespace adpulse
