// Event-time bucket arithmetic. Stored levels are UTC minute, hour and day buckets; query
// granularities (minute, 5 minutes, hour, day, all; optionally in an IANA time zone) are answered
// by covering each output bucket with whole stored buckets. Pure functions, no I/O.
#pragma once
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/time/time.h"

namespace adpulse {

inline constexpr int64_t kMinuteMs = 60'000;
inline constexpr int64_t kHourMs = 3'600'000;
inline constexpr int64_t kDayMs = 86'400'000;

enum class Granularity : uint8_t { kMinute, kFiveMinute, kHour, kDay, kAll };
std::optional<Granularity> ParseGranularity(std::string_view name);
std::string_view GranularityName(Granularity g);

// The stored levels; index into per-level arrays.
enum class Level : uint8_t { kMinute = 0, kHour = 1, kDay = 2 };
inline constexpr int kLevelCount = 3;
inline constexpr int64_t kLevelMs[kLevelCount] = {kMinuteMs, kHourMs, kDayMs};

inline int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
inline int64_t FloorTo(int64_t t, int64_t unit) { return FloorDiv(t, unit) * unit; }
inline int64_t CeilTo(int64_t t, int64_t unit) { return -FloorDiv(-t, unit) * unit; }

// Start of the output bucket of granularity `g` (not kAll) that contains `t_ms`, in zone `tz`.
int64_t BucketStart(Granularity g, const absl::TimeZone& tz, int64_t t_ms);
// Start of the output bucket after the one that starts at `start_ms`.
int64_t NextBucketStart(Granularity g, const absl::TimeZone& tz, int64_t start_ms);

// Covers the minute-aligned range [a_ms, b_ms) with the fewest whole stored buckets: calls
// fn(level, first_index, end_index) for each run of consecutive buckets of one level, where a
// bucket's index is its start divided by the level's length.
template <typename Fn>
void DecomposeRange(int64_t a_ms, int64_t b_ms, Fn&& fn) {
  auto emit = [&](Level level, int64_t from_ms, int64_t to_ms) {
    if (from_ms < to_ms) {
      int64_t unit = kLevelMs[static_cast<int>(level)];
      fn(level, from_ms / unit, to_ms / unit);
    }
  };
  if (a_ms >= b_ms) return;
  int64_t t = a_ms;
  int64_t next_hour = CeilTo(t, kHourMs);
  if (next_hour >= b_ms) {
    emit(Level::kMinute, t, b_ms);
    return;
  }
  emit(Level::kMinute, t, next_hour);
  t = next_hour;
  int64_t next_day = CeilTo(t, kDayMs);
  if (next_day > b_ms) {
    int64_t last_hour = FloorTo(b_ms, kHourMs);
    emit(Level::kHour, t, last_hour);
    emit(Level::kMinute, last_hour, b_ms);
    return;
  }
  emit(Level::kHour, t, next_day);
  t = next_day;
  int64_t last_day = FloorTo(b_ms, kDayMs);
  emit(Level::kDay, t, last_day);
  t = last_day;
  int64_t last_hour = FloorTo(b_ms, kHourMs);
  emit(Level::kHour, t, last_hour);
  emit(Level::kMinute, last_hour, b_ms);
}

// Where the stored hour and day buckets are whole: hours up to index `hours_through` and days up
// to `days_through` (the state store rolls a period up from its minutes once it has closed;
// every hour of a rolled-up day is rolled up too). INT64_MAX: every bucket.
struct RolledUp {
  int64_t hours_through = INT64_MAX;
  int64_t days_through = INT64_MAX;
  // The end of the last whole hour, day (ms); INT64_MAX when there is none after.
  int64_t HoursEndMs() const {
    return hours_through >= INT64_MAX / kHourMs - 1 ? INT64_MAX : (hours_through + 1) * kHourMs;
  }
  int64_t DaysEndMs() const {
    return days_through >= INT64_MAX / kDayMs - 1 ? INT64_MAX : (days_through + 1) * kDayMs;
  }
};

// DecomposeRange using only whole stored buckets: hour and day buckets where `rolled` says they
// are whole, minutes after.
template <typename Fn>
void DecomposeRange(int64_t a_ms, int64_t b_ms, const RolledUp& rolled, Fn&& fn) {
  int64_t hours_end = rolled.HoursEndMs();
  int64_t days_end =
      std::min(rolled.DaysEndMs(), hours_end == INT64_MAX ? INT64_MAX : FloorTo(hours_end, kDayMs));
  // Whole days and what is around them.
  DecomposeRange(a_ms, std::min(b_ms, days_end), fn);
  // Whole hours, minutes at the edges.
  int64_t a = std::max(a_ms, days_end), b = std::min(b_ms, hours_end);
  if (a < b) {
    int64_t first_hour = std::min(CeilTo(a, kHourMs), b),
            last_hour = std::max(FloorTo(b, kHourMs), first_hour);
    if (a < first_hour) fn(Level::kMinute, a / kMinuteMs, first_hour / kMinuteMs);
    if (first_hour < last_hour) fn(Level::kHour, first_hour / kHourMs, last_hour / kHourMs);
    if (last_hour < b) fn(Level::kMinute, last_hour / kMinuteMs, b / kMinuteMs);
  }
  // Minutes only.
  a = std::max(a_ms, hours_end);
  if (a < b_ms) fn(Level::kMinute, a / kMinuteMs, b_ms / kMinuteMs);
}

}  // namespace adpulse
