#include "ingest/validator.h"

#include <fmt/format.h>

#include "base/json_writer.h"
#include "ingest/event_decoder.h"

namespace adpulse {

std::string HumanDuration(int64_t ms) {
  int64_t s = ms / 1000;
  if (s >= 2 * 86400) return fmt::format("{} days", s / 86400);
  if (s >= 2 * 3600) return fmt::format("{} h", s / 3600);
  if (s >= 2 * 60) return fmt::format("{} min", s / 60);
  return fmt::format("{} s", s);
}

namespace {
// `ms` for a message that compares it with `limit_ms`: as HumanDuration, unless that would read
// the same as the limit ("60 s in the future (limit 60 s)"); then exact, in seconds.
std::string Beyond(int64_t ms, int64_t limit_ms) {
  std::string human = HumanDuration(ms);
  if (human != HumanDuration(limit_ms)) return human;
  std::string exact = fmt::format("{}.{:03d}", ms / 1000, ms % 1000);
  while (exact.back() == '0') exact.pop_back();
  if (exact.back() == '.') exact.pop_back();
  return exact + " s";
}
}  // namespace

std::string ValidateEvent(Event& event, const EventFields& seen, const ValidationRules& rules,
                          int64_t now_ms) {
  if (!seen.has_event_id || event.event_id.empty()) {
    return "event_id is missing (a string of 1 to 128 bytes)";
  }
  if (!seen.has_event_type) return "event_type is missing (impression, click or conversion)";
  if (!seen.has_timestamp) return "timestamp is missing (Unix epoch milliseconds)";
  if (event.dim(Dim::kCampaignId).empty()) return "campaign_id is missing";
  // Before the differences below, so that none of them can overflow.
  if (event.timestamp_ms < 0) {
    return fmt::format("timestamp {} is before 1970; send Unix epoch milliseconds",
                       event.timestamp_ms);
  }
  if (event.timestamp_ms > now_ms + rules.max_future_ms) {
    return fmt::format("timestamp is {} in the future (limit {})",
                       Beyond(event.timestamp_ms - now_ms, rules.max_future_ms),
                       HumanDuration(rules.max_future_ms));
  }
  if (event.timestamp_ms < now_ms - rules.max_age_ms) {
    if (event.timestamp_ms > 0 && event.timestamp_ms < 100'000'000'000) {
      return "timestamp looks like seconds; send Unix epoch milliseconds";
    }
    return fmt::format("timestamp is {} old (limit {})",
                       Beyond(now_ms - event.timestamp_ms, rules.max_age_ms),
                       HumanDuration(rules.max_age_ms));
  }
  if (event.bid_micros < 0) return "bid_price must be >= 0";
  if (event.bid_micros > rules.max_bid_micros) {
    return fmt::format("bid_price {} is over the limit of {} per event (ingest.max_bid_price)",
                       MicrosToDecimal(event.bid_micros), MicrosToDecimal(rules.max_bid_micros));
  }
  std::string_view& currency = event.dim(Dim::kCurrency);
  if (currency.empty()) {
    currency = "USD";
  } else if (currency.size() != 3 || !std::all_of(currency.begin(), currency.end(),
                                                  [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return fmt::format("currency '{}' is not an ISO 4217 code such as USD", currency);
  }
  return {};
}

}  // namespace adpulse
