// One POST /v1/events request on its way through the pipeline: the decoded events (views into the
// batch's own arena), the per-event outcome the workers fill in, and the rejection reasons.
// Created by the HTTP session, shared with the workers of the shards it touches, and destroyed by
// the completion callback that the last worker to finish triggers.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
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

struct IngestBatch {
  std::string arena;                // bytes of the string views in `events` decoded from the body
  StableArena enriched{4096};       // bytes of the views enrichment added (parsed families, geo)
  std::vector<Event> events;        // valid events only
  std::vector<uint32_t> positions;  // request index of each valid event
  std::vector<EventOutcome> outcomes;
  std::vector<EventError> errors;  // the first kMaxReportedErrors rejections
  uint32_t rejected = 0;
  uint32_t total = 0;  // events in the request, valid or not

  void Reject(uint32_t index, std::string_view event_id, std::string message) {
    ++rejected;
    if (errors.size() < kMaxReportedErrors) {
      errors.push_back({index, std::string(event_id), std::move(message)});
    }
  }
};

}  // namespace adpulse
