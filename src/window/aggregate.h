// The aggregate of one (cube, bucket, group): exact counters in integers (money in micro-units)
// plus a HyperLogLog of user ids. Valid and invalid (fraud-flagged) traffic are kept apart.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

#include "adpulse/event.h"
#include "base/money.h"
#include "window/hyperloglog.h"

namespace adpulse {

struct Counters {
  uint64_t impressions = 0;
  uint64_t clicks = 0;
  uint64_t conversions = 0;
  // Valid conversions not attributed to a click (Attribution: no click_id, unknown click,
  // outside the window); a part of `conversions`.
  uint64_t unattributed_conversions = 0;
  MoneySum spend_micros = 0;  // 128 bits: no sum of bids can wrap (base/money.h)
  uint64_t fraud_impressions = 0;
  uint64_t fraud_clicks = 0;
  uint64_t fraud_conversions = 0;
  MoneySum fraud_spend_micros = 0;

  void Add(EventType type, int64_t bid_micros, bool fraud) {
    if (fraud) {
      (type == EventType::kImpression ? fraud_impressions
       : type == EventType::kClick    ? fraud_clicks
                                      : fraud_conversions) += 1;
      fraud_spend_micros += bid_micros;
    } else {
      (type == EventType::kImpression ? impressions
       : type == EventType::kClick    ? clicks
                                      : conversions) += 1;
      spend_micros += bid_micros;
    }
  }
  void Merge(const Counters& o) {
    impressions += o.impressions;
    clicks += o.clicks;
    conversions += o.conversions;
    unattributed_conversions += o.unattributed_conversions;
    spend_micros += o.spend_micros;
    fraud_impressions += o.fraud_impressions;
    fraud_clicks += o.fraud_clicks;
    fraud_conversions += o.fraud_conversions;
    fraud_spend_micros += o.fraud_spend_micros;
  }
  bool operator==(const Counters&) const = default;
};

struct Aggregate {
  Counters counters;
  HyperLogLog users;  // distinct user_id of valid events

  // `user_hash` is XXH3 of user_id, or nullopt when the event has none. Returns how many bytes
  // the users' heap memory grew by (HyperLogLog::AddHash).
  size_t Add(const Event& e, std::optional<uint64_t> user_hash) {
    bool fraud = e.fraud_flags != 0;
    counters.Add(e.type, e.bid_micros, fraud);
    if (!fraud && e.type == EventType::kConversion && Unattributed(e.attribution)) {
      ++counters.unattributed_conversions;
    }
    return user_hash && !fraud ? users.AddHash(*user_hash) : 0;
  }
  void Merge(const Aggregate& o, bool with_users) {
    counters.Merge(o.counters);
    if (with_users) users.Merge(o.users);
  }
};

// The metric vocabulary of API.md.
enum class Metric : uint8_t {
  kImpressions,
  kClicks,
  kConversions,
  kSpend,
  kCtr,
  kCvr,
  kCpc,
  kCpm,
  kUniqueUsers,
  kFraudImpressions,
  kFraudClicks,
  kFraudConversions,
  kFraudSpend,
  kUnattributedConversions,  // valid conversions no click was found for (Attribution)
  kCpa,                      // cost per conversion: spend / conversions
};
inline constexpr int kMetricCount = 15;

std::optional<Metric> ParseMetric(std::string_view name);
std::string_view MetricName(Metric m);
bool MetricIsMoney(Metric m);
// The value as a double (for ranking and ratios); money metrics in currency units.
double MetricValue(Metric m, const Aggregate& a);

}  // namespace adpulse
