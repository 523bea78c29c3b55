// The invalid-traffic signals, their names (in the config, /metrics, /v1/fraud and the audit), and
// how fired signals combine into a score. The bit positions are part of the log record
// (docs/formats/wal.md): append new signals, never renumber.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace adpulse {

enum class Signal : uint8_t {
  kBotUserAgent = 0,      // a known crawler or bot user agent (general invalid traffic)
  kMissingUserAgent = 1,  // no user agent at all (general invalid traffic)
  kClickFlood = 2,        // too many clicks from one IP over a sliding minute
  kClickFarm = 3,         // one IP, many distinct users, clicking far more than people do
  kBlocklistedIp = 4,     // the IP is in fraud.blocklist_file
  kImpossibleTiming = 5,  // a click too soon after the same user's impression of that ad
  kOrphanClick = 6,       // a click with no impression of that ad by that user
  kRepeatedClick = 7,     // the same user clicking the same ad again and again
  kGeoAnomaly = 8,        // the same user in two places no plane could link in the time
  kDeviceMismatch = 9,    // device_type, os or browser contradicting the user agent
  kClickInjection = 10,   // a conversion implausibly soon after its click
};
inline constexpr int kSignalCount = 11;

std::string_view SignalName(Signal s);
std::optional<Signal> ParseSignal(std::string_view name);

inline constexpr uint32_t SignalBit(Signal s) { return 1u << static_cast<int>(s); }

// The weight of each signal in [0, 1], indexed by Signal.
using SignalWeights = std::array<double, kSignalCount>;

// Fired signals combine as independent evidence ("noisy or"): score = 1 - prod(1 - weight). One
// signal of weight 1 makes an event invalid on its own; two weaker ones add up. In [0, 1].
double CombineSignals(uint32_t signals, const SignalWeights& weights);

}  // namespace adpulse
