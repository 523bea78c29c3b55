// The byte layout of one write-ahead-log record payload: a validated, enriched, fraud-scored
// Event, so that replay reproduces exactly the aggregates the live path produced.
// docs/formats/wal.md describes it byte by byte. Pure functions, no I/O.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "adpulse/event.h"

namespace adpulse {

// Version 1: the event as received, with a one-byte verdict. Version 2 (written since the fraud
// stage) adds the score, the signals that fired, the parsed browser and OS versions and the
// coordinates. Version 3 (written since attribution) adds how a conversion was attributed. All
// decode; version 1 records decode with no score, signals or enrichment, versions 1 and 2 with
// Attribution::kNone.
inline constexpr uint8_t kWalEventRecordV1 = 1;
inline constexpr uint8_t kWalEventRecordV2 = 2;
inline constexpr uint8_t kWalEventRecordV3 = 3;

// Appends the payload for `e` to `out`.
void EncodeEventRecord(const Event& e, std::string& out);

// Decodes a payload; string views point into `payload`. False if malformed.
bool DecodeEventRecord(std::string_view payload, Event& e);

}  // namespace adpulse
