#include "fraud/signals.h"

namespace adpulse {

namespace {
constexpr std::array<std::string_view, kSignalCount> kNames = {
    "bot_user_agent", "missing_user_agent", "click_flood",    "click_farm",
    "blocklisted_ip", "impossible_timing",  "orphan_click",   "repeated_click",
    "geo_anomaly",    "device_mismatch",    "click_injection"};
}  // namespace

std::string_view SignalName(Signal s) { return kNames[static_cast<int>(s)]; }

std::optional<Signal> ParseSignal(std::string_view name) {
  for (int i = 0; i < kSignalCount; ++i) {
    if (kNames[i] == name) return static_cast<Signal>(i);
  }
  return std::nullopt;
}

double CombineSignals(uint32_t signals, const SignalWeights& weights) {
  double valid = 1.0;
  for (int i = 0; i < kSignalCount; ++i) {
    if (signals & (1u << i)) valid *= 1.0 - weights[i];
  }
  double score = 1.0 - valid;
  return score < 0 ? 0 : score > 1 ? 1 : score;
}

}  // namespace adpulse
