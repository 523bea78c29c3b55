// One-line structured logs to stderr: "2026-11-28T20:10:00.123Z info  message key=value".
// Thread-safe; the level is set once at startup.
#pragma once
#include <fmt/format.h>

#include <string_view>

#include "absl/status/statusor.h"

namespace adpulse {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (!LogEnabled(level)) return;
  LogLine(level, fmt::format(format, std::forward<Args>(args)...));
}

#define LOG_DEBUG(...) ::adpulse::Log(::adpulse::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) ::adpulse::Log(::adpulse::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) ::adpulse::Log(::adpulse::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) ::adpulse::Log(::adpulse::LogLevel::kError, __VA_ARGS__)

}  // namespace adpulse
