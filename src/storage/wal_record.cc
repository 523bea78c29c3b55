#include "storage/wal_record.h"

#include <cstring>
#include <iterator>

#include "base/byte_io.h"

namespace adpulse {

void EncodeEventRecord(const Event& e, std::string& out) {
  // Sized first and written with plain copies: appending field by field checked and grew the
  // string 35 times an event.
  const std::string_view strings[] = {e.event_id,   e.user_id,         e.session_id,
                                      e.ip_address, e.user_agent,      e.page_url,
                                      e.click_id,   e.browser_version, e.os_version};
  size_t size = 4 + 2 + 4 + 8 + 8 + 4 + 4 + 2 * (std::size(strings) + e.dims.size());
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
  uint8_t head[4] = {kWalEventRecordV3, static_cast<uint8_t>(e.type), e.fraud_flags,
                     static_cast<uint8_t>(e.attribution)};
  put(head, 4);
  put(&e.fraud_score_milli, 2);
  put(&e.fraud_signals, 4);
  put(&e.timestamp_ms, 8);
  put(&e.bid_micros, 8);
  put(&e.lat_e4, 4);
  put(&e.lon_e4, 4);
  put_string(e.event_id);
  for (std::string_view d : e.dims) put_string(d);
  put_string(e.user_id);
  put_string(e.session_id);
  put_string(e.ip_address);
  put_string(e.user_agent);
  put_string(e.page_url);
  put_string(e.click_id);
  put_string(e.browser_version);
  put_string(e.os_version);
}

bool DecodeEventRecord(std::string_view payload, Event& e) {
  ByteReader r(payload);
  uint8_t version = r.Get<uint8_t>();
  if (version < kWalEventRecordV1 || version > kWalEventRecordV3) return false;
  bool v2 = version >= kWalEventRecordV2;
  uint8_t type = r.Get<uint8_t>();
  if (type > static_cast<uint8_t>(EventType::kConversion)) return false;
  e.type = static_cast<EventType>(type);
  e.fraud_flags = r.Get<uint8_t>();
  e.attribution = Attribution::kNone;
  if (version >= kWalEventRecordV3) {
    uint8_t a = r.Get<uint8_t>();
    if (a >= kAttributionCount) return false;
    e.attribution = static_cast<Attribution>(a);
  }
  e.fraud_score_milli = v2 ? r.Get<uint16_t>() : 0;
  e.fraud_signals = v2 ? r.Get<uint32_t>() : 0;
  e.timestamp_ms = r.Get<int64_t>();
  e.bid_micros = r.Get<int64_t>();
  e.lat_e4 = v2 ? r.Get<int32_t>() : kNoCoordinate;
  e.lon_e4 = v2 ? r.Get<int32_t>() : kNoCoordinate;
  e.event_id = r.GetString16();
  for (std::string_view& d : e.dims) d = r.GetString16();
  e.user_id = r.GetString16();
  e.session_id = r.GetString16();
  e.ip_address = r.GetString16();
  e.user_agent = r.GetString16();
  e.page_url = r.GetString16();
  e.click_id = r.GetString16();
  e.browser_version = v2 ? r.GetString16() : std::string_view();
  e.os_version = v2 ? r.GetString16() : std::string_view();
  return r.ok() && r.rest().empty();
}

}  // namespace adpulse
