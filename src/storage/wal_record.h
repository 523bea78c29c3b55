// The byte layout of one write-ahead-log record payload: a validated, enriched, fraud-scored
// Event, so that replay reproduces exactly the aggregates the live path produced.
// docs/formats/wal.md describes it byte by byte. Pure functions, no I/O.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "adpulse/event.h"

namespace adpulse {

inline constexpr uint8_t kWalEventRecordV1 = 1;

// Appends the payload for `e` to `out`.
void EncodeEventRecord(const Event& e, std::string& out);

// Decodes a payload; string views point into `payload`. False if malformed.
bool DecodeEventRecord(std::string_view payload, Event& e);

}  // namespace adpulse
