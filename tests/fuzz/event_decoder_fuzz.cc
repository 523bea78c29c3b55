// libFuzzer target: any bytes as a POST /v1/events body, JSON and NDJSON. The decoder must never
// crash, read out of bounds or accept an event that breaks the validation rules.
#include <cstdint>
#include <string>

#include "base/status_macros.h"
#include "ingest/event_decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static adpulse::EventDecoder decoder;
  std::string body(reinterpret_cast<const char*>(data), size);
  body.reserve(size + 64);
  for (auto format : {adpulse::BodyFormat::kJson, adpulse::BodyFormat::kNdjson}) {
    adpulse::IngestBatch batch;
    (void)decoder.Decode(format, body, adpulse::ValidationRules{}, 1'764'340'800'000, batch);
    ADPULSE_CHECK(batch.events.size() == batch.positions.size());
    ADPULSE_CHECK(batch.errors.size() <= adpulse::kMaxReportedErrors);
    for (const adpulse::Event& e : batch.events) {
      ADPULSE_CHECK(!e.event_id.empty() && e.event_id.size() <= adpulse::kMaxEventIdBytes);
      ADPULSE_CHECK(!e.dim(adpulse::Dim::kCampaignId).empty());
      ADPULSE_CHECK(e.bid_micros >= 0);
    }
  }
  return 0;
}
