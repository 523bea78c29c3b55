// Labelled traffic for measuring the fraud stage: human-like users (with what real people do that
// naive rules trip on: many users behind one carrier NAT or office address, double clicks, clicks
// minutes after the impression, flights to other cities) mixed with every attack pattern of
// docs/fraud.md, each event labelled with the pattern that made it and whether it is invalid.
// Deterministic for a seed. Used by the detection test (tests/unit/fraud/detection_test.cc),
// by adpulse-fraudgen (NDJSON for the real daemon) and by the end-to-end test.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "adpulse/event.h"
#include "fraud/geo.h"

namespace adpulse {

enum class Pattern : uint8_t {
  kHuman = 0,
  kBot,
  kNoUserAgent,
  kClickFlood,
  kClickFarm,
  kBlocklisted,
  kImpossibleTiming,
  kOrphanClick,
  kRepeatedClick,
  kGeoAnomaly,
  kDeviceMismatch,
  kClickInjection,
};
inline constexpr int kPatternCount = 12;
std::string_view PatternName(Pattern p);

struct LabelledEvent {
  std::string event_id, campaign, ad, advertiser, publisher, placement, user, session, ip, ua,
      page_url, click_id, device_type, os, browser;
  EventType type = EventType::kImpression;
  int64_t timestamp_ms = 0;
  int64_t bid_micros = 0;
  Pattern pattern = Pattern::kHuman;
  bool invalid = false;  // the truth: not to be billed
};

// A public address the geo database places somewhere.
struct LocatedIp {
  std::string ip;
  int32_t lat_e4 = 0, lon_e4 = 0;
};

// `n` random public IPv4 addresses that `geo` knows with coordinates (about one lookup per
// address: most of the space is allocated). Without a database, addresses are made up with
// coordinates spread over the globe (the scorer then only sees what the enricher gives it).
std::vector<LocatedIp> SampleLocatedIps(const GeoSource* geo, int n, uint64_t seed);

struct TrafficOptions {
  uint64_t seed = 1;
  int64_t end_ms = 0;               // the newest event time
  int64_t span_ms = 3 * 3'600'000;  // events from end_ms - span_ms on
  int humans = 20'000;
  bool attacks = true;  // false: human-like traffic alone
  std::string id_prefix = "ft";
};

// The blocklist the kBlocklisted pattern's addresses are in (fraud.blocklist_file's format).
inline constexpr std::string_view kTrafficBlocklist =
    "# labelled traffic's blocklisted range\n"
    "192.0.2.0/24\n";

// Events sorted by time. `ips` must hold at least a few hundred addresses.
std::vector<LabelledEvent> GenerateTraffic(const TrafficOptions& options,
                                           const std::vector<LocatedIp>& ips);

// A view of `e` as the decoder would produce it (views into `e`).
Event ToEvent(const LabelledEvent& e);
// One NDJSON line (every field of the contract; with a newline).
std::string ToJson(const LabelledEvent& e);

}  // namespace adpulse
