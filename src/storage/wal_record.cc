#include "storage/wal_record.h"

#include "base/byte_io.h"

namespace adpulse {

void EncodeEventRecord(const Event& e, std::string& out) {
  PutLE<uint8_t>(out, kWalEventRecordV1);
  PutLE<uint8_t>(out, static_cast<uint8_t>(e.type));
  PutLE<uint8_t>(out, e.fraud_flags);
  PutLE<int64_t>(out, e.timestamp_ms);
  PutLE<int64_t>(out, e.bid_micros);
  PutString16(out, e.event_id);
  for (std::string_view d : e.dims) PutString16(out, d);
  PutString16(out, e.user_id);
  PutString16(out, e.session_id);
  PutString16(out, e.ip_address);
  PutString16(out, e.user_agent);
  PutString16(out, e.page_url);
  PutString16(out, e.click_id);
}

bool DecodeEventRecord(std::string_view payload, Event& e) {
  ByteReader r(payload);
  if (r.Get<uint8_t>() != kWalEventRecordV1) return false;
  uint8_t type = r.Get<uint8_t>();
  if (type > static_cast<uint8_t>(EventType::kConversion)) return false;
  e.type = static_cast<EventType>(type);
  e.fraud_flags = r.Get<uint8_t>();
  e.timestamp_ms = r.Get<int64_t>();
  e.bid_micros = r.Get<int64_t>();
  e.event_id = r.GetString16();
  for (std::string_view& d : e.dims) d = r.GetString16();
  e.user_id = r.GetString16();
  e.session_id = r.GetString16();
  e.ip_address = r.GetString16();
  e.user_agent = r.GetString16();
  e.page_url = r.GetString16();
  e.click_id = r.GetString16();
  return r.ok() && r.rest().empty();
}

}  // namespace adpulse
