// The dedup ids a shard accepted since its last flush, as 128-bit XXH3 fingerprints (a false
// duplicate needs a 2^-128 collision) with the hour of their event time. Older ids live in the
// state store (StateStore::DedupContains); this index is emptied at every flush, so its memory is
// bounded by the flush interval, not by traffic. One per shard, owned by its worker.
#pragma once
#include <cstdint>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/numeric/int128.h"

namespace adpulse {

class DedupIndex {
 public:
  static absl::uint128 Fingerprint(std::string_view event_id);

  // True if `fingerprint` was not in the index (and records it); false for a duplicate.
  bool Insert(absl::uint128 fingerprint, int32_t hour);
  bool Insert(std::string_view event_id, int64_t timestamp_ms);
  bool Erase(absl::uint128 fingerprint);  // true if it was there
  bool Erase(std::string_view event_id) { return Erase(Fingerprint(event_id)); }
  bool Contains(absl::uint128 fingerprint) const { return ids_.contains(fingerprint); }
  void Clear() { ids_.clear(); }
  size_t size() const { return ids_.size(); }
  bool empty_hint() const { return ids_.empty(); }

  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const auto& [fp, hour] : ids_) fn(fp, hour);
  }

 private:
  absl::flat_hash_map<absl::uint128, int32_t> ids_;  // fingerprint -> event-time hour
};

}  // namespace adpulse
