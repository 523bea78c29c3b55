#include "window/aggregate_codec.h"

#include <cstring>

#include "base/byte_io.h"

namespace adpulse {
namespace {
constexpr uint8_t kAggregateV1 = 1;

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
  ByteReader r(in);
  if (r.Get<uint8_t>() != kAggregateV1) return false;
  Counters& c = a.counters;
  c.impressions = r.Get<uint64_t>();
  c.clicks = r.Get<uint64_t>();
  c.conversions = r.Get<uint64_t>();
  c.spend_micros = r.Get<int64_t>();
  c.fraud_impressions = r.Get<uint64_t>();
  c.fraud_clicks = r.Get<uint64_t>();
  c.fraud_conversions = r.Get<uint64_t>();
  c.fraud_spend_micros = r.Get<int64_t>();
  std::string_view rest = r.rest();
  return r.ok() && a.users.ReadFrom(rest) && rest.empty();
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
