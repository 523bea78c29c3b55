// One POST /v1/events request on its way through the pipeline: the decoded events (views into the
// batch's own arena), the per-event outcome the workers fill in, and the rejection reasons.
// Created by the HTTP session, shared with the workers of the shards it touches, and destroyed by
// the completion callback that the last worker to finish triggers.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "adpulse/event.h"
#include "base/stable_arena.h"

namespace adpulse {

struct EventError {
  uint32_t index = 0;    // 0-based position in the request
  std::string event_id;  // empty when the event had none
  std::string message;
};

enum class EventOutcome : uint8_t { kPending = 0, kAccepted = 1, kDuplicate = 2, kFailed = 3 };

inline constexpr size_t kMaxReportedErrors = 100;

// Why an event was rejected, for adpulse_events_rejected_total{reason}: the field its message
// names first (the validator's and decoder's messages start with it), "malformed" for an event
// that is not a JSON object, "field" for any other field's type or size.
inline constexpr std::array<std::string_view, 8> kRejectReasons = {
    "malformed",   "event_id",  "event_type", "timestamp",
    "campaign_id", "bid_price", "currency",   "field"};
inline size_t RejectReasonOf(std::string_view message) {
  for (size_t i = 1; i + 1 < kRejectReasons.size(); ++i) {
    std::string_view r = kRejectReasons[i];
    if (message.substr(0, r.size()) == r &&
        (message.size() == r.size() || message[r.size()] == ' ')) {
      return i;
    }
  }
  for (std::string_view m : {"line is not", "event is not", "NDJSON line", "invalid JSON"}) {
    if (message.substr(0, m.size()) == m) return 0;
  }
  return kRejectReasons.size() - 1;
}

struct IngestBatch {
  std::string arena;                // bytes of the string views in `events` decoded from the body
  StableArena enriched{4096};       // bytes of the views enrichment added (parsed families, geo)
  std::vector<Event> events;        // valid events only
  std::vector<uint32_t> positions;  // request index of each valid event
  std::vector<EventOutcome> outcomes;
  std::vector<EventError> errors;  // the first kMaxReportedErrors rejections
  uint32_t rejected = 0;
  std::array<uint32_t, kRejectReasons.size()> rejected_by_reason{};
  uint32_t total = 0;  // events in the request, valid or not

  void Reject(uint32_t index, std::string_view event_id, std::string message) {
    ++rejected;
    ++rejected_by_reason[RejectReasonOf(message)];
    if (errors.size() < kMaxReportedErrors) {
      errors.push_back({index, std::string(event_id), std::move(message)});
    }
  }
};

}  // namespace adpulse
