#include "base/time_parse.h"

#include <fmt/format.h>

#include <charconv>
#include <chrono>

namespace adpulse {

absl::StatusOr<int64_t> ParseTimeMs(std::string_view param, std::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError(fmt::format("{} is empty", param));
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc() && ptr == text.data() + text.size()) return value;
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, absl::string_view(text.data(), text.size()), &t, &err)) {
    return absl::ToUnixMillis(t);
  }
  return absl::InvalidArgumentError(
      fmt::format("{} '{}' is neither epoch milliseconds nor RFC 3339 (e.g. 2025-11-28T14:00:00Z)",
                  param, text));
}

absl::StatusOr<absl::TimeZone> ParseTimeZone(std::string_view name) {
  if (name.empty() || name == "UTC" || name == "Z") return absl::UTCTimeZone();
  absl::TimeZone tz;
  if (!absl::LoadTimeZone(absl::string_view(name.data(), name.size()), &tz)) {
    return absl::InvalidArgumentError(
        fmt::format("tz '{}' is not a known IANA time zone (e.g. Europe/Paris)", name));
  }
  return tz;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string FormatRfc3339(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

}  // namespace adpulse
