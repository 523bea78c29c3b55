// One cube's aggregates in one shard: for each stored level (minute, hour, day) an ordered map of
// buckets, each a hash table from the group's interned dimension ids to its Aggregate. Every event
// updates its minute, hour and day bucket, so coarse queries never sum minutes. Owned by one
// worker.
#pragma once
#include <array>
#include <cstdint>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "window/aggregate.h"
#include "window/cube_catalog.h"
#include "window/time_bucket.h"

namespace adpulse {

// Interned ids of a group's dimension values, in the cube's dimension order; unused slots are 0.
using DimKey = std::array<uint32_t, kMaxCubeDims>;
using GroupTable = absl::flat_hash_map<DimKey, Aggregate>;

class CubeStore {
 public:
  explicit CubeStore(const CubeSpec& spec) : spec_(&spec) {}
  CubeStore(CubeStore&&) = default;

  const CubeSpec& spec() const { return *spec_; }

  void Add(const DimKey& key, const Event& e, std::optional<uint64_t> user_hash);

  // Calls fn(bucket_index, const GroupTable&) for each stored bucket of `level` with index in
  // [first, end), in order.
  template <typename Fn>
  void ForEachBucket(Level level, int64_t first, int64_t end, Fn&& fn) const {
    const auto& buckets = levels_[static_cast<int>(level)].buckets;
    for (auto it = buckets.lower_bound(first); it != buckets.end() && it->first < end; ++it) {
      fn(it->first, it->second);
    }
  }

  size_t GroupCount() const;

  // Calls fn(level, bucket_index, key, aggregate) for everything held.
  template <typename Fn>
  void ForEachAggregate(Fn&& fn) const {
    for (int level = 0; level < kLevelCount; ++level) {
      for (const auto& [index, table] : levels_[level].buckets) {
        for (const auto& [key, agg] : table) fn(static_cast<Level>(level), index, key, agg);
      }
    }
  }
  void Clear();

 private:
  struct LevelData {
    std::map<int64_t, GroupTable> buckets;  // node-based: cached pointers stay valid
    int64_t cached_index = INT64_MIN;
    GroupTable* cached = nullptr;
  };
  const CubeSpec* spec_;
  std::array<LevelData, kLevelCount> levels_;
};

}  // namespace adpulse
