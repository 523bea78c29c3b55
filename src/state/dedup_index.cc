#include "state/dedup_index.h"

#include "state/interner.h"
#include "window/time_bucket.h"

namespace adpulse {

bool DedupIndex::Insert(std::string_view event_id, int64_t timestamp_ms) {
  XXH128_hash_t h = XXH3_128bits(event_id.data(), event_id.size());
  absl::uint128 key = absl::MakeUint128(h.high64, h.low64);
  int32_t hour = static_cast<int32_t>(FloorDiv(timestamp_ms, kHourMs));
  auto [it, inserted] = ids_.try_emplace(key, hour);
  if (!inserted && it->second < hour) it->second = hour;
  return inserted;
}

void DedupIndex::Erase(std::string_view event_id) {
  XXH128_hash_t h = XXH3_128bits(event_id.data(), event_id.size());
  ids_.erase(absl::MakeUint128(h.high64, h.low64));
}

size_t DedupIndex::Expire(int64_t now_ms) {
  // An id may be dropped once no event with its timestamp can be accepted any more, i.e. its
  // hour ended more than the horizon ago.
  int64_t oldest_kept_hour = FloorDiv(now_ms - horizon_ms_, kHourMs) - 1;
  size_t before = ids_.size();
  absl::erase_if(ids_, [&](const auto& kv) { return kv.second < oldest_kept_hour; });
  return before - ids_.size();
}

}  // namespace adpulse
