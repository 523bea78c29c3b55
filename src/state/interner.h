// Maps dimension values to dense 32-bit ids and back, so aggregates are keyed by small integers
// instead of strings, and keeps each value's XXH3 (stable across restarts, unlike the ids). Id 0
// is the empty string (a missing value). One per shard, owned by its worker.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace adpulse {

// Transparent XXH3 hash so std::string keys can be looked up by std::string_view (Debian's abseil
// has its own string_view; DEPENDENCIES.md trap 6).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return XXH3_64bits(s.data(), s.size()); }
};
struct StringEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};

class Interner {
 public:
  Interner() { Clear(); }

  uint32_t Intern(std::string_view s) {
    if (s.empty()) return 0;
    auto it = ids_.find(s);
    if (it != ids_.end()) return it->second;
    uint32_t id = static_cast<uint32_t>(strings_.size());
    strings_.emplace_back(s);
    hashes_.push_back(XXH3_64bits(s.data(), s.size()));
    bytes_ += s.size() + kEntryOverhead;
    ids_.emplace(strings_.back(), id);
    return id;
  }
  // The id of `s`, or -1 if this shard has never seen it.
  int64_t Find(std::string_view s) const {
    if (s.empty()) return 0;
    auto it = ids_.find(s);
    return it == ids_.end() ? -1 : static_cast<int64_t>(it->second);
  }
  const std::string& Lookup(uint32_t id) const { return strings_[id]; }
  // XXH3 of the value (0 for the empty string).
  uint64_t Hash(uint32_t id) const { return hashes_[id]; }
  size_t size() const { return strings_.size(); }
  // Approximate memory held.
  size_t bytes() const { return bytes_; }
  void Clear() {
    ids_.clear();
    strings_.clear();
    hashes_.clear();
    strings_.emplace_back();
    hashes_.push_back(0);
    bytes_ = 0;
  }

 private:
  // Map slot, string object, hash, and the vector's share, per value (beyond its characters).
  static constexpr size_t kEntryOverhead = 100;
  absl::flat_hash_map<std::string, uint32_t, StringHash, StringEq> ids_;
  std::vector<std::string> strings_;
  std::vector<uint64_t> hashes_;
  size_t bytes_ = 0;
};

}  // namespace adpulse
