// Decodes a POST /v1/events body (one JSON object, a JSON array, or NDJSON) with simdjson
// on-demand and validates each event. Valid events go into the batch; each invalid one is rejected
// with its index and a reason. Runs on the HTTP thread that received the body; one decoder per
// thread (the simdjson parser is reused across requests).
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "ingest/ingest_batch.h"

namespace adpulse {

enum class BodyFormat { kJson, kNdjson };

struct ValidationRules {
  int64_t max_future_ms = 60'000;
  int64_t max_age_ms = 86'400'000;
  int64_t max_bid_micros = kMaxBidMicros;  // ingest.max_bid_price
};

inline constexpr size_t kMaxEventIdBytes = 128;
inline constexpr size_t kMaxFieldBytes = 256;
inline constexpr size_t kMaxLongFieldBytes = 4096;  // user_agent, page_url

// Parses "12.5", "0.000001", "1e-3" into integer micro-units (rounded half up at the 7th decimal).
// False for anything that is not a plain JSON number or is out of range.
bool ParseDecimalMicros(std::string_view text, int64_t* micros);
// True when `text` is a number as JSON (RFC 8259) writes one:
// -?(0|[1-9][0-9]*)(.[0-9]+)?(e[+-]?[0-9]+)?
// ("01", "00.5", "1e", "0x10", ".5" are not).
bool IsJsonNumber(std::string_view text);

class EventDecoder {
 public:
  EventDecoder();
  ~EventDecoder();

  // `body` must be followed by at least simdjson's padding (64 bytes) of readable memory.
  // Returns InvalidArgument when the body is not JSON / NDJSON at all (the request gets a 400).
  absl::Status Decode(BodyFormat format, std::string_view body, const ValidationRules& rules,
                      int64_t now_ms, IngestBatch& batch);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace adpulse
