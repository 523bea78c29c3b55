#include "window/aggregate.h"

namespace adpulse {
namespace {
constexpr std::string_view kMetricNames[kMetricCount] = {"impressions",  "clicks",
                                                         "conversions",  "spend",
                                                         "ctr",          "cvr",
                                                         "cpc",          "cpm",
                                                         "unique_users", "fraud_impressions",
                                                         "fraud_clicks", "fraud_conversions",
                                                         "fraud_spend",  "unattributed_conversions",
                                                         "cpa"};

double Ratio(double num, double den) { return den == 0 ? 0.0 : num / den; }
}  // namespace

std::optional<Metric> ParseMetric(std::string_view name) {
  for (int i = 0; i < kMetricCount; ++i) {
    if (kMetricNames[i] == name) return static_cast<Metric>(i);
  }
  return std::nullopt;
}

std::string_view MetricName(Metric m) { return kMetricNames[static_cast<int>(m)]; }

bool MetricIsMoney(Metric m) {
  return m == Metric::kSpend || m == Metric::kFraudSpend || m == Metric::kCpc ||
         m == Metric::kCpm || m == Metric::kCpa;
}

double MetricValue(Metric m, const Aggregate& a) {
  const Counters& c = a.counters;
  double spend = static_cast<double>(c.spend_micros) / 1e6;
  switch (m) {
    case Metric::kImpressions:
      return static_cast<double>(c.impressions);
    case Metric::kClicks:
      return static_cast<double>(c.clicks);
    case Metric::kConversions:
      return static_cast<double>(c.conversions);
    case Metric::kSpend:
      return spend;
    case Metric::kCtr:
      return Ratio(c.clicks, c.impressions);
    case Metric::kCvr:
      return Ratio(c.conversions, c.clicks);
    case Metric::kCpc:
      return Ratio(spend, c.clicks);
    case Metric::kCpm:
      return Ratio(1000.0 * spend, c.impressions);
    case Metric::kUniqueUsers:
      return a.users.Estimate();
    case Metric::kFraudImpressions:
      return static_cast<double>(c.fraud_impressions);
    case Metric::kFraudClicks:
      return static_cast<double>(c.fraud_clicks);
    case Metric::kFraudConversions:
      return static_cast<double>(c.fraud_conversions);
    case Metric::kFraudSpend:
      return static_cast<double>(c.fraud_spend_micros) / 1e6;
    case Metric::kUnattributedConversions:
      return static_cast<double>(c.unattributed_conversions);
    case Metric::kCpa:
      return Ratio(spend, c.conversions);
  }
  return 0;
}

}  // namespace adpulse
