// Exact deduplication of event ids over a time horizon, in memory. Ids are kept as 128-bit XXH3
// fingerprints (a false duplicate needs a 2^-128 collision) with the hour of their event time, and
// expire once that hour is older than the horizon. One per shard, owned by its worker.
// The durability issue replaces this with a bounded, persistent store behind the same interface.
#pragma once
#include <cstdint>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/numeric/int128.h"

namespace adpulse {

class DedupIndex {
 public:
  explicit DedupIndex(int64_t horizon_ms) : horizon_ms_(horizon_ms) {}

  // True if `event_id` was not seen within the horizon (and records it); false for a duplicate.
  bool Insert(std::string_view event_id, int64_t timestamp_ms);
  // Forgets `event_id` (its event was not made durable after all).
  void Erase(std::string_view event_id);
  // Drops ids whose event-time hour ended more than the horizon before `now_ms`.
  size_t Expire(int64_t now_ms);
  size_t size() const { return ids_.size(); }

 private:
  int64_t horizon_ms_;
  absl::flat_hash_map<absl::uint128, int32_t> ids_;  // fingerprint -> event-time hour
};

}  // namespace adpulse
