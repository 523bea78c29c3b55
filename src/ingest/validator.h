// The per-event rules of API.md (required fields, event_type, timestamp bounds, bid_price,
// currency), applied after decoding. Pure function of the event, the rules and the clock.
#pragma once
#include <cstdint>
#include <string>

#include "adpulse/event.h"

namespace adpulse {

struct ValidationRules;

// Which fields the body carried (the Event cannot tell "missing" from "empty" for all of them).
struct EventFields {
  bool has_event_id = false;
  bool has_event_type = false;
  bool has_timestamp = false;
  bool has_bid_price = false;
};

// Empty when the event is valid; otherwise the reason, in one line. Fills defaults (currency USD).
std::string ValidateEvent(Event& event, const EventFields& seen, const ValidationRules& rules,
                          int64_t now_ms);

// "3 days", "5 h", "90 s": for messages.
std::string HumanDuration(int64_t ms);

}  // namespace adpulse
