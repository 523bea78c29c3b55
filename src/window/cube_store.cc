#include "window/cube_store.h"

namespace adpulse {

void CubeStore::Add(const DimKey& key, const Event& e, std::optional<uint64_t> user_hash) {
  for (int level = 0; level < kLevelCount; ++level) {
    LevelData& data = levels_[level];
    int64_t index = FloorDiv(e.timestamp_ms, kLevelMs[level]);
    if (index != data.cached_index) {
      data.cached = &data.buckets[index];
      data.cached_index = index;
    }
    (*data.cached)[key].Add(e, user_hash);
  }
}

void CubeStore::Clear() {
  for (LevelData& data : levels_) {
    data.buckets.clear();
    data.cached = nullptr;
    data.cached_index = INT64_MIN;
  }
}

size_t CubeStore::GroupCount() const {
  size_t n = 0;
  for (const LevelData& data : levels_) {
    for (const auto& [index, table] : data.buckets) n += table.size();
  }
  return n;
}

}  // namespace adpulse
