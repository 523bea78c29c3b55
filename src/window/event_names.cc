#include "adpulse/event.h"

namespace adpulse {
namespace {
constexpr std::string_view kDimNames[kDimCount] = {
    "campaign_id", "ad_id", "advertiser_id", "publisher_id", "placement_id", "country", "city",
    "device_type", "os",    "browser",       "currency"};
}

std::string_view EventTypeName(EventType type) {
  switch (type) {
    case EventType::kImpression:
      return "impression";
    case EventType::kClick:
      return "click";
    case EventType::kConversion:
      return "conversion";
  }
  return "unknown";
}

std::optional<EventType> ParseEventType(std::string_view name) {
  if (name == "impression") return EventType::kImpression;
  if (name == "click") return EventType::kClick;
  if (name == "conversion") return EventType::kConversion;
  return std::nullopt;
}

std::string_view DimName(Dim dim) { return kDimNames[static_cast<int>(dim)]; }

std::optional<Dim> ParseDim(std::string_view name) {
  for (int i = 0; i < kDimCount; ++i) {
    if (kDimNames[i] == name) return static_cast<Dim>(i);
  }
  return std::nullopt;
}

}  // namespace adpulse
