#include "window/aggregate_codec.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <vector>

#include "base/byte_io.h"

namespace adpulse {
namespace {

struct Sample {
  Aggregate aggregate;
  std::vector<uint64_t> user_hashes;
};

Sample Make(std::mt19937_64& rng, int users) {
  Sample s;
  Counters& c = s.aggregate.counters;
  c.impressions = rng() % 3 == 0 ? 0 : rng() % 100'000;
  c.clicks = rng() % 100;
  c.conversions = rng() % 2;
  c.unattributed_conversions = rng() % 3 == 0 ? rng() % 5 : 0;
  c.spend_micros = static_cast<int64_t>(rng() % 5'000'000'000ull) - 1'000'000;
  // Up to 2^56 (9-byte varints), small enough that a few of them add up without overflow.
  c.fraud_impressions = rng() % 4 == 0 ? rng() >> 8 : 0;
  c.fraud_spend_micros = rng() % 4 == 0 ? -static_cast<int64_t>(rng() >> 8) : 0;
  for (int i = 0; i < users; ++i) {
    uint64_t h = rng();
    s.user_hashes.push_back(h);
    s.aggregate.users.AddHash(h);
  }
  return s;
}

// Format 1 as adpulse wrote it before format 2, built by hand from the same inputs.
std::string EncodeFormat1(const Sample& s) {
  std::string out;
  out.push_back(1);
  const Counters& c = s.aggregate.counters;
  PutLE(out, c.impressions);
  PutLE(out, c.clicks);
  PutLE(out, c.conversions);
  PutLE(out, static_cast<int64_t>(c.spend_micros));
  PutLE(out, c.fraud_impressions);
  PutLE(out, c.fraud_clicks);
  PutLE(out, c.fraud_conversions);
  PutLE(out, static_cast<int64_t>(c.fraud_spend_micros));
  std::vector<uint32_t> prefixes;
  for (uint64_t h : s.user_hashes) {
    uint32_t p = static_cast<uint32_t>(h >> 32);
    prefixes.push_back(p == 0 ? 1 : p);
  }
  std::sort(prefixes.begin(), prefixes.end());
  prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
  REQUIRE(prefixes.size() <= HyperLogLog::kSparseLimit);
  if (prefixes.empty()) {
    out.push_back(0);
  } else {
    out.push_back(1);
    PutLE(out, static_cast<uint32_t>(prefixes.size()));
    for (uint32_t p : prefixes) PutLE(out, p);
  }
  return out;
}

void CheckSame(const Aggregate& got, const Aggregate& want) {
  CHECK(got.counters == want.counters);
  CHECK(got.users.Estimate() == want.users.Estimate());
  // A sparse set too large to be stored sparse comes back dense, with the same estimate.
  CHECK(got.users.is_dense() == want.users.StoredDense());
}

}  // namespace

TEST_CASE("aggregates round-trip through the encoding", "[codec]") {
  std::mt19937_64 rng(5);
  const int sizes[] = {0, 1, 3, 40, 1024, 1025, 5000};
  for (int round = 0; round < 100; ++round) {
    Sample s = Make(rng, sizes[round % 7]);
    std::string encoded;
    EncodeAggregate(s.aggregate, encoded);
    Aggregate got;
    REQUIRE(DecodeAggregate(encoded, got));
    CheckSame(got, s.aggregate);
    Aggregate counters_only;
    REQUIRE(DecodeAggregate(encoded, counters_only, false));
    CHECK(counters_only.counters == s.aggregate.counters);
    CHECK(counters_only.users.empty());
    // Re-encoding what was read gives the same bytes.
    std::string again;
    EncodeAggregate(got, again);
    CHECK(again == encoded);
  }
}

TEST_CASE("a small aggregate encodes in a few bytes", "[codec]") {
  Aggregate a;
  a.counters.impressions = 1;
  a.counters.spend_micros = 250'000;
  a.users.AddHash(0x0123456789abcdefull);
  std::string encoded;
  EncodeAggregate(a, encoded);
  // version, mask, 1, 250000 (3 bytes zigzag), kind, count, one prefix (5 bytes at most)
  CHECK(encoded.size() <= 13);
  Aggregate empty;
  std::string e;
  EncodeAggregate(empty, e);
  CHECK(e.size() == 3);  // version, mask 0, users kind 0
}

TEST_CASE("money sums past 64 bits encode, decode and merge exactly", "[codec]") {
  // A sum below 2^63 keeps the bytes of a 64-bit zigzag varint: 250000 is 3 bytes.
  Aggregate small;
  small.counters.spend_micros = 250'000;
  std::string s;
  EncodeAggregate(small, s);
  CHECK(s == std::string("\x02\x08\xa0\xc2\x1e\x00", 6));

  const MoneySum max64 = INT64_MAX;
  Aggregate a, b;
  a.counters.clicks = 1;
  a.counters.spend_micros = max64;
  a.counters.fraud_spend_micros = max64 * 3;
  b.counters.clicks = 1;
  b.counters.spend_micros = 1;
  b.counters.fraud_spend_micros = max64 * max64;  // about 2^126
  std::string ea, eb;
  EncodeAggregate(a, ea);
  EncodeAggregate(b, eb);
  Aggregate back;
  REQUIRE(DecodeAggregate(ea, back));
  CHECK(back.counters == a.counters);
  REQUIRE(DecodeAggregate(eb, back));
  CHECK(back.counters == b.counters);

  std::string merged;
  REQUIRE(MergeEncodedAggregates({ea, eb}, merged));
  Aggregate sum;
  REQUIRE(DecodeAggregate(merged, sum));
  CHECK(sum.counters.clicks == 2);
  // Parenthesized: Catch would bind a reference to the 8-aligned 128-bit member (base/money.h).
  CHECK((sum.counters.spend_micros == max64 + 1));  // an int64 sum would be INT64_MIN here
  CHECK((sum.counters.spend_micros > 0));
  CHECK((sum.counters.fraud_spend_micros == max64 * 3 + max64 * max64));
  Aggregate direct = a;
  direct.Merge(b, true);
  CHECK(direct.counters == sum.counters);

  // A varint longer than 128 bits is refused, not wrapped.
  std::string too_long("\x02\x08", 2);
  too_long.append(18, '\xff');
  too_long.push_back('\x7f');
  too_long.push_back('\x00');
  CHECK(!DecodeAggregate(too_long, back));
}

TEST_CASE("format 1 values still decode and merge with format 2 ones", "[codec]") {
  std::mt19937_64 rng(17);
  const int sizes[] = {0, 1, 7, 300, 1000};
  for (int round = 0; round < 100; ++round) {
    int n = 1 + static_cast<int>(rng() % 4);
    std::vector<std::string> values(n);
    Aggregate expected;
    for (int i = 0; i < n; ++i) {
      Sample s = Make(rng, sizes[rng() % 5]);
      if (rng() % 2) {
        s.aggregate.counters.unattributed_conversions = 0;  // not in format 1
        values[i] = EncodeFormat1(s);
        Aggregate got;
        REQUIRE(DecodeAggregate(values[i], got));
        CheckSame(got, s.aggregate);
      } else {
        EncodeAggregate(s.aggregate, values[i]);
      }
      expected.Merge(s.aggregate, true);
    }
    std::vector<std::string_view> views(values.begin(), values.end());
    std::string merged;
    REQUIRE(MergeEncodedAggregates(views, merged));
    std::string want;
    EncodeAggregate(expected, want);
    CHECK(merged == want);
  }
}

TEST_CASE("unattributed conversions take format 3, and only when there are some", "[codec]") {
  Aggregate a;
  a.counters.conversions = 5;
  a.counters.spend_micros = 1'000'000;
  std::string two;
  EncodeAggregate(a, two);
  CHECK(two[0] == 2);
  a.counters.unattributed_conversions = 2;
  std::string three;
  EncodeAggregate(a, three);
  CHECK(three[0] == 3);
  CHECK(three.size() == two.size() + 2);  // the mask's second byte and the counter
  Aggregate got;
  REQUIRE(DecodeAggregate(three, got));
  CHECK(got.counters == a.counters);
  // A merge of format 2 and format 3 values keeps the ninth counter.
  std::vector<std::string_view> views = {two, three, two};
  std::string merged;
  REQUIRE(MergeEncodedAggregates(views, merged));
  Aggregate sum;
  REQUIRE(DecodeAggregate(merged, sum));
  CHECK(sum.counters.conversions == 15);
  CHECK(sum.counters.unattributed_conversions == 2);
  CHECK(sum.counters.spend_micros == 3'000'000);
}

TEST_CASE("malformed values are refused", "[codec]") {
  std::mt19937_64 rng(23);
  Sample s = Make(rng, 5);
  std::string good;
  EncodeAggregate(s.aggregate, good);
  std::string v1 = EncodeFormat1(s);
  std::vector<std::string> bad = {
      "",
      std::string("\x04\x00\x00", 3),              // unknown format
      std::string("\x03\x00\x01\x00", 4),          // format 3 with a counter missing
      std::string("\x02\x01\x80", 3),              // a varint that never ends
      std::string("\x02\x00\x01\x01\x00", 5),      // one user whose prefix is 0
      std::string("\x02\x00\x01\x02\x05\x00", 6),  // two users, the second a 0 step
      std::string("\x02\x00\x01\x02\x05", 5),      // two users, one written
      std::string("\x02\x00\x09", 3),              // unknown users kind
      std::string("\x02\x00\x02\x00", 4),          // dense registers cut short
      std::string("\x02\x00\x00\x00", 4),          // bytes after the end
      good.substr(0, good.size() - 1),             // cut
      v1.substr(0, 40),                            // format 1 cut
  };
  // Format 1 with unsorted users.
  std::string unsorted = v1.substr(0, 65);
  unsorted.push_back(1);
  PutLE(unsorted, uint32_t{2});
  PutLE(unsorted, uint32_t{9});
  PutLE(unsorted, uint32_t{3});
  bad.push_back(unsorted);
  for (const std::string& b : bad) {
    INFO("value of " << b.size() << " bytes");
    Aggregate a;
    CHECK_FALSE(DecodeAggregate(b, a));
    std::vector<std::string_view> views = {good, b};
    std::string out;
    CHECK_FALSE(MergeEncodedAggregates(views, out));
  }
}

}  // namespace adpulse
