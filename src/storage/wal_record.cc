#include "storage/wal_record.h"

#include <cstring>
#include <iterator>

#include "base/byte_io.h"

namespace adpulse {

void EncodeEventRecord(const Event& e, std::string& out) {
  // Sized first and written with plain copies: appending field by field checked and grew the
  // string 35 times an event.
  const std::string_view strings[] = {e.event_id,   e.user_id,  e.session_id, e.ip_address,
                                      e.user_agent, e.page_url, e.click_id};
  size_t size = 3 + 8 + 8 + 2 * (std::size(strings) + e.dims.size());
  for (std::string_view s : strings) size += s.size();
  for (std::string_view d : e.dims) size += d.size();
  size_t at = out.size();
  out.resize(at + size);
  char* p = out.data() + at;
  auto put = [&p](const void* data, size_t n) {
    if (n == 0) return;  // an empty view's data() may be null, which memcpy must not get
    std::memcpy(p, data, n);
    p += n;
  };
  auto put_string = [&](std::string_view s) {
    uint16_t n = static_cast<uint16_t>(s.size());  // limits are far below 65,535 (validator)
    put(&n, 2);
    put(s.data(), s.size());
  };
  uint8_t head[3] = {kWalEventRecordV1, static_cast<uint8_t>(e.type), e.fraud_flags};
  put(head, 3);
  put(&e.timestamp_ms, 8);
  put(&e.bid_micros, 8);
  put_string(e.event_id);
  for (std::string_view d : e.dims) put_string(d);
  put_string(e.user_id);
  put_string(e.session_id);
  put_string(e.ip_address);
  put_string(e.user_agent);
  put_string(e.page_url);
  put_string(e.click_id);
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
