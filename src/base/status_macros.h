// Early-return helpers for absl::Status / absl::StatusOr. Operating errors are returned, never
// thrown.
#pragma once
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ADPULSE_CONCAT_INNER(a, b) a##b
#define ADPULSE_CONCAT(a, b) ADPULSE_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status adpulse_status_ = (expr);           \
    if (!adpulse_status_.ok()) return adpulse_status_; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(ADPULSE_CONCAT(adpulse_statusor_, __LINE__), lhs, expr)

// Programmer errors: stays on in release builds. User input must never reach one.
#define ADPULSE_CHECK(cond)                                         \
  do {                                                              \
    if (!(cond)) ::adpulse::CheckFailed(#cond, __FILE__, __LINE__); \
  } while (0)

namespace adpulse {
// Debian's abseil has its own string_view (DEPENDENCIES.md trap 6): the message as
// std::string_view.
inline std::string_view Message(const absl::Status& s) {
  return {s.message().data(), s.message().size()};
}
[[noreturn]] void CheckFailed(const char* expr, const char* file, int line);
}  // namespace adpulse
