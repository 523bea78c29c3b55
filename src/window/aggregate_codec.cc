#include "window/aggregate_codec.h"

#include <algorithm>
#include <cstring>
#include <memory>

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

bool DecodeAggregate(std::string_view in, Aggregate& a, bool with_users) {
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
  if (!r.ok()) return false;
  if (!with_users) return !rest.empty();
  return a.users.ReadFrom(rest) && rest.empty();
}

bool MergeEncodedAggregates(const std::vector<std::string_view>& values, std::string& out) {
  int64_t sums[8] = {0};
  std::vector<uint32_t> sparse;
  std::unique_ptr<uint8_t[]> dense;
  for (std::string_view v : values) {
    ByteReader r(v);
    if (r.Get<uint8_t>() != kAggregateV1) return false;
    for (int64_t& s : sums) s += r.Get<int64_t>();
    std::string_view rest = r.rest();
    if (!r.ok() || rest.empty()) return false;
    char kind = rest[0];
    rest.remove_prefix(1);
    if (kind == 0) {
      if (!rest.empty()) return false;
    } else if (kind == 1) {
      uint32_t n;
      if (rest.size() < 4) return false;
      std::memcpy(&n, rest.data(), 4);
      rest.remove_prefix(4);
      if (n > HyperLogLog::kSparseLimit || rest.size() != size_t{n} * 4) return false;
      size_t at = sparse.size();
      sparse.resize(at + n);
      std::memcpy(sparse.data() + at, rest.data(), size_t{n} * 4);
    } else if (kind == 2) {
      if (rest.size() != HyperLogLog::kRegisters) return false;
      if (!dense) {
        dense = std::make_unique<uint8_t[]>(HyperLogLog::kRegisters);
        std::memcpy(dense.get(), rest.data(), HyperLogLog::kRegisters);
      } else {
        const auto* in = reinterpret_cast<const uint8_t*>(rest.data());
        for (uint32_t i = 0; i < HyperLogLog::kRegisters; ++i) {
          dense[i] = std::max(dense[i], in[i]);
        }
      }
    } else {
      return false;
    }
  }
  out.push_back(static_cast<char>(kAggregateV1));
  for (int64_t s : sums) PutLE(out, s);
  std::sort(sparse.begin(), sparse.end());
  sparse.erase(std::unique(sparse.begin(), sparse.end()), sparse.end());
  if (!dense && sparse.size() > HyperLogLog::kSparseLimit) {
    dense = std::make_unique<uint8_t[]>(HyperLogLog::kRegisters);
    std::memset(dense.get(), 0, HyperLogLog::kRegisters);
  }
  if (dense) {
    for (uint32_t p : sparse) {
      if (p == 0) return false;
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
    if (sparse.front() == 0) return false;
    out.push_back(1);
    uint32_t n = static_cast<uint32_t>(sparse.size());
    out.append(reinterpret_cast<const char*>(&n), 4);
    out.append(reinterpret_cast<const char*>(sparse.data()), sparse.size() * 4);
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
