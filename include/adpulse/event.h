// The validated ad event as it travels from the decoder through the shard router to a worker.
// String fields are views into the arena of the request that carried the event (IngestBatch), so an
// Event lives exactly as long as its batch. Money is integer micro-units.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace adpulse {

enum class EventType : uint8_t { kImpression = 0, kClick = 1, kConversion = 2 };

std::string_view EventTypeName(EventType type);
std::optional<EventType> ParseEventType(std::string_view name);

// The dimensions queries can group and filter by (API.md "Dimensions"), in a fixed order.
enum class Dim : uint8_t {
  kCampaignId = 0,
  kAdId,
  kAdvertiserId,
  kPublisherId,
  kPlacementId,
  kCountry,
  kCity,
  kDeviceType,
  kOs,
  kBrowser,
  kCurrency,
};
inline constexpr int kDimCount = 11;

std::string_view DimName(Dim dim);
std::optional<Dim> ParseDim(std::string_view name);

// The largest bid_price one event may carry, in micro-units (1,000,000.000000 of its currency): far
// above any real price, and low enough that sums of 2^64 events still fit the 128-bit money sums.
inline constexpr int64_t kMaxBidMicros = 1'000'000'000'000;

// The verdict's valid/invalid bit: nonzero means the event is invalid traffic and is counted in
// fraud_* only. Which signals fired is in Event::fraud_signals (fraud/signals.h names the bits).
using FraudFlags = uint8_t;
inline constexpr FraudFlags kFraudInvalid = 1;

// How a conversion was attributed to a click (state/click_attribution.h); fixed before the event
// is logged, like the verdict. Impressions, clicks, and conversions logged before attribution
// existed are kNone.
enum class Attribution : uint8_t {
  kNone = 0,
  kAttributed = 1,     // its dimensions are its click's
  kNoClickId = 2,      // it names no click
  kUnknownClick = 3,   // it names a click adpulse has not seen (or no longer keeps)
  kOutsideWindow = 4,  // its click is older than the attribution window, or after it
  kInvalidClick = 5,   // its click was invalid traffic: no conversion is credited to one
};
inline constexpr int kAttributionCount = 6;
inline bool Unattributed(Attribution a) {
  return a == Attribution::kNoClickId || a == Attribution::kUnknownClick ||
         a == Attribution::kOutsideWindow || a == Attribution::kInvalidClick;
}

// No coordinates (Event::lat_e4 / lon_e4): the event's IP is not in the geo database.
inline constexpr int32_t kNoCoordinate = INT32_MIN;

struct Event {
  std::string_view event_id;
  EventType type = EventType::kImpression;
  int64_t timestamp_ms = 0;
  int64_t bid_micros = 0;
  std::array<std::string_view, kDimCount> dims{};
  std::string_view user_id;
  std::string_view session_id;
  std::string_view ip_address;
  std::string_view user_agent;
  std::string_view page_url;
  std::string_view click_id;
  // Enrichment (fraud/enricher.h): versions parsed from user_agent, and coordinates from
  // ip_address in 1e-4 degrees (about 11 m). Parsed families fill the browser, os, device_type,
  // country and city dimensions the event left empty.
  std::string_view browser_version;
  std::string_view os_version;
  int32_t lat_e4 = kNoCoordinate;
  int32_t lon_e4 = kNoCoordinate;
  // The verdict (fraud/scorer.h): fixed before the event is logged, never recomputed on replay.
  FraudFlags fraud_flags = 0;
  uint16_t fraud_score_milli = 0;  // score in [0, 1] times 1000
  uint32_t fraud_signals = 0;      // bit i: fraud::Signal i fired
  Attribution attribution = Attribution::kNone;

  bool invalid() const { return fraud_flags != 0; }

  std::string_view dim(Dim d) const { return dims[static_cast<int>(d)]; }
  std::string_view& dim(Dim d) { return dims[static_cast<int>(d)]; }
};

}  // namespace adpulse
