#include "window/aggregate_codec.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "base/byte_io.h"

namespace adpulse {
namespace {
// Format 1: u8 1, eight counters as u64/i64 little-endian, users (kFixed32). Read, no longer
// written. Format 2: u8 2, u8 mask of the nonzero counters, each of those as a varint (money
// zigzag, up to 128 bits: a sum below 2^63 is the same bytes as before), users (kDeltaVarint).
// Format 3: as 2 with nine counters (the ninth, unattributed conversions) and a u16 mask, little
// endian; written only when the ninth is nonzero, so that other aggregates keep format 2's bytes.
// docs/formats/state.md.
constexpr uint8_t kFormat1 = 1;
constexpr uint8_t kFormat2 = 2;
constexpr uint8_t kFormat3 = 3;
constexpr int kCounterCount = 9;
constexpr int kFormat2Counters = 8;
// Counters 3 and 7 are money (signed, 128-bit sums).
constexpr bool IsMoney(int i) { return i == 3 || i == 7; }

void PutBE64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}
uint64_t GetBE(std::string_view s, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}

// The counters as one array of 128-bit values: counts are below 2^64, money may be anything a
// MoneySum holds.
void ToArray(const Counters& c, MoneySum out[kCounterCount]) {
  out[0] = c.impressions;
  out[1] = c.clicks;
  out[2] = c.conversions;
  out[3] = c.spend_micros;
  out[4] = c.fraud_impressions;
  out[5] = c.fraud_clicks;
  out[6] = c.fraud_conversions;
  out[7] = c.fraud_spend_micros;
  out[8] = c.unattributed_conversions;
}
void FromArray(const MoneySum in[kCounterCount], Counters& c) {
  c.impressions = static_cast<uint64_t>(in[0]);
  c.clicks = static_cast<uint64_t>(in[1]);
  c.conversions = static_cast<uint64_t>(in[2]);
  c.spend_micros = in[3];
  c.fraud_impressions = static_cast<uint64_t>(in[4]);
  c.fraud_clicks = static_cast<uint64_t>(in[5]);
  c.fraud_conversions = static_cast<uint64_t>(in[6]);
  c.fraud_spend_micros = in[7];
  c.unattributed_conversions = static_cast<uint64_t>(in[8]);
}

void PutCounters(std::string& out, const MoneySum v[kCounterCount]) {
  int count = v[8] != 0 ? kCounterCount : kFormat2Counters;
  uint16_t mask = 0;
  for (int i = 0; i < count; ++i) {
    if (v[i] != 0) mask |= static_cast<uint16_t>(1u << i);
  }
  if (count == kFormat2Counters) {
    out.push_back(static_cast<char>(kFormat2));
    out.push_back(static_cast<char>(mask));
  } else {
    out.push_back(static_cast<char>(kFormat3));
    out.push_back(static_cast<char>(mask & 0xff));
    out.push_back(static_cast<char>(mask >> 8));
  }
  for (int i = 0; i < count; ++i) {
    if (v[i] == 0) continue;
    if (IsMoney(i)) {
      PutVarint128(out, ZigZag128(v[i]));
    } else {
      PutVarint(out, static_cast<uint64_t>(v[i]));
    }
  }
}

// Reads the version and counters of either format from the front of `in`, advancing past them;
// `encoding` is how the users that follow are encoded.
bool GetCounters(std::string_view& in, MoneySum v[kCounterCount], HyperLogLog::Encoding* encoding) {
  ByteReader r(in);
  uint8_t format = r.Get<uint8_t>();
  v[8] = 0;
  if (format == kFormat1) {
    for (int i = 0; i < kFormat2Counters; ++i) {
      v[i] = IsMoney(i) ? MoneySum{r.Get<int64_t>()} : MoneySum{r.Get<uint64_t>()};
    }
    *encoding = HyperLogLog::Encoding::kFixed32;
  } else if (format == kFormat2 || format == kFormat3) {
    uint32_t mask = r.Get<uint8_t>();
    int count = kFormat2Counters;
    if (format == kFormat3) {
      mask |= static_cast<uint32_t>(r.Get<uint8_t>()) << 8;
      count = kCounterCount;
    }
    for (int i = 0; i < count; ++i) {
      if ((mask & (1u << i)) == 0) {
        v[i] = 0;
        continue;
      }
      v[i] = IsMoney(i) ? UnZigZag128(r.GetVarint128()) : MoneySum{r.GetVarint()};
    }
    *encoding = HyperLogLog::Encoding::kDeltaVarint;
  } else {
    return false;
  }
  in = r.rest();
  return r.ok();
}
}  // namespace

void EncodeAggregate(const Aggregate& a, std::string& out) {
  MoneySum v[kCounterCount];
  ToArray(a.counters, v);
  PutCounters(out, v);
  a.users.AppendTo(out);
}

bool DecodeAggregate(std::string_view in, Aggregate& a, bool with_users) {
  MoneySum v[kCounterCount];
  HyperLogLog::Encoding encoding;
  if (!GetCounters(in, v, &encoding)) return false;
  FromArray(v, a.counters);
  if (!with_users) return !in.empty();
  return a.users.ReadFrom(in, encoding) && in.empty();
}

bool MergeEncodedAggregates(const std::vector<std::string_view>& values, std::string& out) {
  MoneySum sums[kCounterCount] = {0};
  std::vector<uint32_t> sparse;
  std::unique_ptr<uint8_t[]> dense;
  for (std::string_view v : values) {
    MoneySum counters[kCounterCount];
    HyperLogLog::Encoding encoding;
    if (!GetCounters(v, counters, &encoding)) return false;
    // Counts are below 2^64 and money sums far below 2^127 (base/money.h): no sum wraps.
    for (int i = 0; i < kCounterCount; ++i) sums[i] += counters[i];
    if (!HyperLogLog::MergeEncoded(v, encoding, sparse, dense) || !v.empty()) return false;
  }
  PutCounters(out, sums);
  std::sort(sparse.begin(), sparse.end());
  sparse.erase(std::unique(sparse.begin(), sparse.end()), sparse.end());
  if (!dense && sparse.size() > HyperLogLog::kSparseLimit) {
    dense = std::make_unique<uint8_t[]>(HyperLogLog::kRegisters);
    std::memset(dense.get(), 0, HyperLogLog::kRegisters);
  }
  if (dense) {
    for (uint32_t p : sparse) {
      uint32_t index;
      uint8_t rank;
      HyperLogLog::RegisterFromPrefix(p, &index, &rank);
      dense[index] = std::max(dense[index], rank);
    }
    out.push_back(2);
    out.append(reinterpret_cast<const char*>(dense.get()), HyperLogLog::kRegisters);
  } else if (sparse.empty()) {
    out.push_back(0);
  } else {
    HyperLogLog::AppendSparse(sparse.data(), sparse.size(), out);
  }
  return true;
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
