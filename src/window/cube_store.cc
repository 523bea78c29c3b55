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

size_t CubeStore::GroupCount() const {
  size_t n = 0;
  for (const auto& [index, table] : levels_[0].buckets) n += table.size();
  return n;
}

}  // namespace adpulse
