#include "window/time_bucket.h"

#include <catch2/catch.hpp>
#include <random>

namespace adpulse {

TEST_CASE("FloorDiv rounds toward minus infinity", "[time]") {
  CHECK(FloorDiv(7, 2) == 3);
  CHECK(FloorDiv(-7, 2) == -4);
  CHECK(FloorDiv(-8, 2) == -4);
  CHECK(FloorTo(-1, kMinuteMs) == -kMinuteMs);
  CHECK(CeilTo(1, kMinuteMs) == kMinuteMs);
  CHECK(CeilTo(kMinuteMs, kMinuteMs) == kMinuteMs);
}

TEST_CASE("DecomposeRange covers a range exactly with the coarsest buckets", "[time]") {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 2000; ++trial) {
    int64_t base = 1'764'000'000'000 / kMinuteMs;
    int64_t a = (base + static_cast<int64_t>(rng() % 20'000)) * kMinuteMs;
    int64_t b = a + static_cast<int64_t>(rng() % 10'000) * kMinuteMs;
    int64_t covered = 0;
    int64_t cursor = a;
    int runs = 0;
    bool contiguous = true;
    DecomposeRange(a, b, [&](Level level, int64_t first, int64_t end) {
      int64_t unit = kLevelMs[static_cast<int>(level)];
      contiguous &= (first * unit == cursor);
      cursor = end * unit;
      covered += (end - first) * unit;
      ++runs;
    });
    CAPTURE(a, b);
    CHECK(contiguous);
    CHECK(covered == b - a);
    CHECK(runs <= 5);
  }
}

TEST_CASE("DecomposeRange uses hours and days only where they are rolled up", "[time]") {
  std::mt19937_64 rng(7);
  int64_t base = 1'764'000'000'000 / kMinuteMs;
  int hours_used = 0, days_used = 0;
  for (int trial = 0; trial < 5000; ++trial) {
    int64_t a = (base + static_cast<int64_t>(rng() % 20'000)) * kMinuteMs;
    int64_t b = a + static_cast<int64_t>(rng() % 10'000) * kMinuteMs;
    RolledUp rolled;
    rolled.hours_through = FloorDiv(a, kHourMs) + static_cast<int64_t>(rng() % 200) - 20;
    rolled.days_through = std::min(FloorDiv(rolled.hours_through * kHourMs, kDayMs) - 1,
                                   FloorDiv(a, kDayMs) + static_cast<int64_t>(rng() % 8) - 2);
    if (trial % 10 == 0) rolled = RolledUp{};  // everything rolled up: the plain decomposition
    int64_t cursor = a, covered = 0;
    bool contiguous = true, whole = true;
    DecomposeRange(a, b, rolled, [&](Level level, int64_t first, int64_t end) {
      int64_t unit = kLevelMs[static_cast<int>(level)];
      contiguous &= (first * unit == cursor) && first < end;
      cursor = end * unit;
      covered += (end - first) * unit;
      if (level == Level::kHour) {
        whole &= end - 1 <= rolled.hours_through;
        ++hours_used;
      }
      if (level == Level::kDay) {
        whole &= end - 1 <= rolled.days_through;
        ++days_used;
      }
    });
    CAPTURE(a, b, rolled.hours_through, rolled.days_through);
    CHECK(contiguous);
    CHECK(whole);
    CHECK(covered == b - a);
  }
  CHECK(hours_used > 100);
  CHECK(days_used > 100);
}

TEST_CASE("a whole day is one day bucket", "[time]") {
  int runs = 0;
  DecomposeRange(19'000 * kDayMs, 19'001 * kDayMs, [&](Level level, int64_t first, int64_t end) {
    CHECK(level == Level::kDay);
    CHECK(first == 19'000);
    CHECK(end == 19'001);
    ++runs;
  });
  CHECK(runs == 1);
}

TEST_CASE("buckets align to UTC or to the given zone", "[time]") {
  const int64_t t = 1'764'340'812'345;  // 2025-11-28T14:40:12.345Z
  absl::TimeZone utc = absl::UTCTimeZone();
  CHECK(BucketStart(Granularity::kMinute, utc, t) == 1'764'340'800'000);
  CHECK(BucketStart(Granularity::kFiveMinute, utc, t) == 1'764'340'800'000);
  CHECK(BucketStart(Granularity::kHour, utc, t) == 1'764'338'400'000);
  CHECK(BucketStart(Granularity::kDay, utc, t) == 1'764'288'000'000);

  absl::TimeZone kolkata;
  REQUIRE(absl::LoadTimeZone("Asia/Kolkata", &kolkata));  // UTC+05:30
  // 20:10 local on the 28th: the local day began at 18:30Z on the 27th.
  CHECK(BucketStart(Granularity::kDay, kolkata, t) ==
        1'764'288'000'000 - 5 * kHourMs - 30 * kMinuteMs);
  CHECK(BucketStart(Granularity::kHour, kolkata, t) == 1'764'340'800'000 - 10 * kMinuteMs);
  CHECK(NextBucketStart(Granularity::kHour, kolkata, 1'764'340'200'000) == 1'764'343'800'000);
}

TEST_CASE("a DST day in a zone is 23 hours long", "[time]") {
  absl::TimeZone paris;
  REQUIRE(absl::LoadTimeZone("Europe/Paris", &paris));
  // 2025-03-30 is the spring-forward day in Paris: local midnight is 2025-03-29T23:00Z.
  int64_t day_start = 1'743'289'200'000;
  CHECK(BucketStart(Granularity::kDay, paris, day_start + kHourMs) == day_start);
  CHECK(NextBucketStart(Granularity::kDay, paris, day_start) - day_start == 23 * kHourMs);
}

TEST_CASE("granularity names round-trip", "[time]") {
  for (auto g : {Granularity::kMinute, Granularity::kFiveMinute, Granularity::kHour,
                 Granularity::kDay, Granularity::kAll}) {
    CHECK(ParseGranularity(GranularityName(g)) == g);
  }
  CHECK_FALSE(ParseGranularity("fortnight"));
}

}  // namespace adpulse
