// Parsing of user-supplied times and time zones for queries: epoch milliseconds or RFC 3339.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace adpulse {

// "1764340800000" -> ms; "2025-11-28T14:00:00Z" / "...+01:00" -> ms. Errors name `param`.
absl::StatusOr<int64_t> ParseTimeMs(std::string_view param, std::string_view text);

// IANA zone name ("Europe/Paris"); empty or "UTC" -> UTC.
absl::StatusOr<absl::TimeZone> ParseTimeZone(std::string_view name);

int64_t NowMs();

// ms -> "2025-11-28T14:00:00Z" (UTC, whole seconds): for messages.
std::string FormatRfc3339(int64_t ms);

}  // namespace adpulse
