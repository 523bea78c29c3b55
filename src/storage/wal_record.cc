#include "storage/wal_record.h"

#include <cstring>

namespace adpulse {
namespace {

template <typename T>
void Put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  out.append(buf, sizeof(T));
}

void PutString(std::string& out, std::string_view s) {
  Put<uint16_t>(out, static_cast<uint16_t>(s.size()));
  out.append(s);
}

struct Reader {
  std::string_view in;
  bool ok = true;
  template <typename T>
  T Get() {
    T v{};
    if (in.size() < sizeof(T)) {
      ok = false;
      return v;
    }
    std::memcpy(&v, in.data(), sizeof(T));
    in.remove_prefix(sizeof(T));
    return v;
  }
  std::string_view GetString() {
    uint16_t n = Get<uint16_t>();
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string_view s = in.substr(0, n);
    in.remove_prefix(n);
    return s;
  }
};

}  // namespace

void EncodeEventRecord(const Event& e, std::string& out) {
  Put<uint8_t>(out, kWalEventRecordV1);
  Put<uint8_t>(out, static_cast<uint8_t>(e.type));
  Put<uint8_t>(out, e.fraud_flags);
  Put<int64_t>(out, e.timestamp_ms);
  Put<int64_t>(out, e.bid_micros);
  PutString(out, e.event_id);
  for (std::string_view d : e.dims) PutString(out, d);
  PutString(out, e.user_id);
  PutString(out, e.session_id);
  PutString(out, e.ip_address);
  PutString(out, e.user_agent);
  PutString(out, e.page_url);
  PutString(out, e.click_id);
}

bool DecodeEventRecord(std::string_view payload, Event& e) {
  Reader r{payload};
  if (r.Get<uint8_t>() != kWalEventRecordV1) return false;
  uint8_t type = r.Get<uint8_t>();
  if (type > static_cast<uint8_t>(EventType::kConversion)) return false;
  e.type = static_cast<EventType>(type);
  e.fraud_flags = r.Get<uint8_t>();
  e.timestamp_ms = r.Get<int64_t>();
  e.bid_micros = r.Get<int64_t>();
  e.event_id = r.GetString();
  for (std::string_view& d : e.dims) d = r.GetString();
  e.user_id = r.GetString();
  e.session_id = r.GetString();
  e.ip_address = r.GetString();
  e.user_agent = r.GetString();
  e.page_url = r.GetString();
  e.click_id = r.GetString();
  return r.ok && r.in.empty();
}

}  // namespace adpulse
