#include "window/time_bucket.h"

namespace adpulse {

std::optional<Granularity> ParseGranularity(std::string_view name) {
  if (name == "minute") return Granularity::kMinute;
  if (name == "5minute" || name == "5minutes") return Granularity::kFiveMinute;
  if (name == "hour") return Granularity::kHour;
  if (name == "day") return Granularity::kDay;
  if (name == "all") return Granularity::kAll;
  return std::nullopt;
}

std::string_view GranularityName(Granularity g) {
  switch (g) {
    case Granularity::kMinute:
      return "minute";
    case Granularity::kFiveMinute:
      return "5minute";
    case Granularity::kHour:
      return "hour";
    case Granularity::kDay:
      return "day";
    case Granularity::kAll:
      return "all";
  }
  return "all";
}

namespace {
bool IsUtc(const absl::TimeZone& tz) { return tz == absl::UTCTimeZone(); }
}  // namespace

int64_t BucketStart(Granularity g, const absl::TimeZone& tz, int64_t t_ms) {
  switch (g) {
    case Granularity::kMinute:
      return FloorTo(t_ms, kMinuteMs);
    case Granularity::kFiveMinute:
      // Every zone offset in use is a multiple of 15 minutes, so UTC alignment is local alignment.
      return FloorTo(t_ms, 5 * kMinuteMs);
    case Granularity::kHour:
      if (IsUtc(tz)) return FloorTo(t_ms, kHourMs);
      return absl::ToUnixMillis(
          absl::FromCivil(absl::CivilHour(absl::ToCivilHour(absl::FromUnixMillis(t_ms), tz)), tz));
    case Granularity::kDay:
      if (IsUtc(tz)) return FloorTo(t_ms, kDayMs);
      return absl::ToUnixMillis(
          absl::FromCivil(absl::ToCivilDay(absl::FromUnixMillis(t_ms), tz), tz));
    case Granularity::kAll:
      return t_ms;
  }
  return t_ms;
}

int64_t NextBucketStart(Granularity g, const absl::TimeZone& tz, int64_t start_ms) {
  switch (g) {
    case Granularity::kMinute:
      return start_ms + kMinuteMs;
    case Granularity::kFiveMinute:
      return start_ms + 5 * kMinuteMs;
    case Granularity::kHour:
      if (IsUtc(tz)) return start_ms + kHourMs;
      return absl::ToUnixMillis(
          absl::FromCivil(absl::ToCivilHour(absl::FromUnixMillis(start_ms), tz) + 1, tz));
    case Granularity::kDay:
      if (IsUtc(tz)) return start_ms + kDayMs;
      return absl::ToUnixMillis(
          absl::FromCivil(absl::ToCivilDay(absl::FromUnixMillis(start_ms), tz) + 1, tz));
    case Granularity::kAll:
      return INT64_MAX;
  }
  return INT64_MAX;
}

}  // namespace adpulse
