#include "window/aggregate_codec.h"

#include <cstring>

namespace adpulse {
namespace {
constexpr uint8_t kAggregateV1 = 1;

template <typename T>
void PutLE(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <typename T>
bool GetLE(std::string_view& in, T& v) {
  if (in.size() < sizeof(T)) return false;
  std::memcpy(&v, in.data(), sizeof(T));
  in.remove_prefix(sizeof(T));
  return true;
}
void PutBE64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}
uint64_t GetBE(std::string_view s, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}
}  // namespace

void EncodeAggregate(const Aggregate& a, std::string& out) {
  const Counters& c = a.counters;
  out.push_back(static_cast<char>(kAggregateV1));
  PutLE(out, c.impressions);
  PutLE(out, c.clicks);
  PutLE(out, c.conversions);
  PutLE(out, c.spend_micros);
  PutLE(out, c.fraud_impressions);
  PutLE(out, c.fraud_clicks);
  PutLE(out, c.fraud_conversions);
  PutLE(out, c.fraud_spend_micros);
  a.users.AppendTo(out);
}

bool DecodeAggregate(std::string_view in, Aggregate& a) {
  if (in.empty() || static_cast<uint8_t>(in[0]) != kAggregateV1) return false;
  in.remove_prefix(1);
  Counters& c = a.counters;
  bool ok = GetLE(in, c.impressions) && GetLE(in, c.clicks) && GetLE(in, c.conversions) &&
            GetLE(in, c.spend_micros) && GetLE(in, c.fraud_impressions) &&
            GetLE(in, c.fraud_clicks) && GetLE(in, c.fraud_conversions) &&
            GetLE(in, c.fraud_spend_micros);
  return ok && a.users.ReadFrom(in) && in.empty();
}

void AppendAggregateKeyPrefix(std::string& out, int shard, int cube, Level level, int64_t bucket) {
  out.push_back(kAggregateKeyTag);
  out.push_back(static_cast<char>((shard >> 8) & 0xff));
  out.push_back(static_cast<char>(shard & 0xff));
  out.push_back(static_cast<char>(cube));
  out.push_back(static_cast<char>(level));
  PutBE64(out, static_cast<uint64_t>(bucket) ^ (1ull << 63));
}

void AppendAggregateKeyDim(std::string& out, std::string_view value) {
  out.push_back(static_cast<char>((value.size() >> 8) & 0xff));
  out.push_back(static_cast<char>(value.size() & 0xff));
  out.append(value);
}

bool DecodeAggregateKey(std::string_view key, AggregateKey& out) {
  constexpr size_t kPrefix = 1 + 2 + 1 + 1 + 8;
  if (key.size() < kPrefix || key[0] != kAggregateKeyTag) return false;
  out.shard = static_cast<int>(GetBE(key.substr(1), 2));
  out.cube = static_cast<uint8_t>(key[3]);
  uint8_t level = static_cast<uint8_t>(key[4]);
  if (level >= kLevelCount) return false;
  out.level = static_cast<Level>(level);
  out.bucket = static_cast<int64_t>(GetBE(key.substr(5), 8) ^ (1ull << 63));
  out.dims.clear();
  std::string_view rest = key.substr(kPrefix);
  while (!rest.empty()) {
    if (rest.size() < 2) return false;
    size_t n = GetBE(rest, 2);
    if (rest.size() < 2 + n) return false;
    out.dims.push_back(rest.substr(2, n));
    rest.remove_prefix(2 + n);
  }
  return true;
}

}  // namespace adpulse
