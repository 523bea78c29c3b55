// Maps dimension values to dense 32-bit ids and back, so aggregates are keyed by small integers
// instead of strings, and keeps each value's XXH3 (stable across restarts, unlike the ids). Id 0
// is the empty string (a missing value). One per shard, owned by its worker; Lookup of an id it
// handed out before is also safe from another thread (the shard's background writer) that
// synchronized with the worker since, until the next Clear: values never move.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace adpulse {

// A value with its XXH3 computed before: looked up (or prefetched) without hashing it again.
struct HashedValue {
  std::string_view value;
  uint64_t hash;
};
// Transparent XXH3 hash so std::string keys can be looked up by std::string_view (Debian's abseil
// has its own string_view; DEPENDENCIES.md trap 6) or by a HashedValue.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return XXH3_64bits(s.data(), s.size()); }
  size_t operator()(const HashedValue& v) const { return v.hash; }
};
struct StringEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  bool operator()(std::string_view a, const HashedValue& b) const { return a == b.value; }
  bool operator()(const HashedValue& a, std::string_view b) const { return a.value == b; }
};

class Interner {
 public:
  Interner() { Clear(); }

  // The id of a value, given with its hash (v.hash == HashOf(v.value)): the caller hashes each
  // value once, for this lookup, its Prefetch and its own use.
  uint32_t Intern(const HashedValue& v) {
    if (v.value.empty()) return 0;
    auto it = ids_.find(v);
    if (it != ids_.end()) return it->second;
    uint32_t id = static_cast<uint32_t>(hashes_.size());
    const std::string& stored = Store(id, v.value);
    hashes_.push_back(v.hash);
    bytes_ += v.value.size() + kEntryOverhead;
    ids_.emplace(stored, id);
    return id;
  }
  // The hash Intern and Hash(id) give for `s`: XXH3, or 0 for the empty string.
  static uint64_t HashOf(std::string_view s) {
    return s.empty() ? 0 : XXH3_64bits(s.data(), s.size());
  }
  // Starts loading the map's memory Intern(v) reads first, so that a caller can overlap the cache
  // misses of several values.
  void Prefetch(const HashedValue& v) const {
    if (!v.value.empty()) ids_.prefetch(v);
  }
  // The id of `s`, or -1 if this shard has never seen it.
  int64_t Find(std::string_view s) const {
    if (s.empty()) return 0;
    auto it = ids_.find(s);
    return it == ids_.end() ? -1 : static_cast<int64_t>(it->second);
  }
  const std::string& Lookup(uint32_t id) const {
    return chunks_[id / kChunkValues][id % kChunkValues];
  }
  // XXH3 of the value (0 for the empty string).
  uint64_t Hash(uint32_t id) const { return hashes_[id]; }
  size_t size() const { return hashes_.size(); }
  // Approximate memory held.
  size_t bytes() const { return bytes_; }
  void Clear() {
    ids_.clear();
    for (size_t c = 0; c < kMaxChunks && chunks_[c]; ++c) chunks_[c].reset();
    hashes_.clear();
    Store(0, std::string_view());
    hashes_.push_back(0);
    bytes_ = 0;
  }

 private:
  // Map slot, string object, hash, and the vector's share, per value (beyond its characters).
  static constexpr size_t kEntryOverhead = 100;
  // Values live in fixed chunks that never move; the chunk table is allocated whole, up front.
  static constexpr size_t kChunkValues = 65536;
  static constexpr size_t kMaxChunks = (size_t{1} << 32) / kChunkValues;
  const std::string& Store(uint32_t id, std::string_view s) {
    auto& chunk = chunks_[id / kChunkValues];
    if (!chunk) chunk = std::make_unique<std::string[]>(kChunkValues);
    std::string& slot = chunk[id % kChunkValues];
    slot.assign(s.data(), s.size());
    return slot;
  }
  absl::flat_hash_map<std::string, uint32_t, StringHash, StringEq> ids_;
  std::unique_ptr<std::unique_ptr<std::string[]>[]> chunks_ =
      std::make_unique<std::unique_ptr<std::string[]>[]>(kMaxChunks);
  std::vector<uint64_t> hashes_;
  size_t bytes_ = 0;
};

}  // namespace adpulse
