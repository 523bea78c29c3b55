// The dedup ids a shard accepted since its last dedup run, as 128-bit XXH3 fingerprints (a false
// duplicate needs a 2^-128 collision) with the hour of their event time. Older ids live in the
// state store (StateStore::DedupContains); each run empties this index, so its memory is bounded
// by the run size, not by traffic. Split into kParts hash maps by fingerprint, so that growing
// one rehashes a 64th of the ids: one map of half a million ids stopped its worker for
// milliseconds each time it doubled. One per shard, owned by its worker.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

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
  // Starts loading what Insert(fingerprint, ...) will read.
  void Prefetch(absl::uint128 fingerprint) const {
    if (!parts_.empty()) Part(fingerprint).prefetch(fingerprint);
  }
  bool Contains(absl::uint128 fingerprint) const {
    return !parts_.empty() && Part(fingerprint).contains(fingerprint);
  }
  void Clear() {
    parts_.clear();
    size_ = 0;
  }
  size_t size() const { return size_; }
  bool empty_hint() const { return size_ == 0; }

  template <typename Fn>
  void ForEach(Fn&& fn) const {
    ForEachByPart(fn, [] {});
  }
  // ForEach, a part at a time, `part_done()` after each: every fingerprint of a part is smaller
  // than every one of the parts after it (parts split by the top bits), so sorting each part's
  // ids on their own sorts them all.
  template <typename Fn, typename Done>
  void ForEachByPart(Fn&& fn, Done&& part_done) const {
    for (const auto& part : parts_) {
      for (const auto& [fp, hour] : part) fn(fp, hour);
      part_done();
    }
  }

  static constexpr int kParts = 64;

 private:
  using Map = absl::flat_hash_map<absl::uint128, int32_t>;  // fingerprint -> event-time hour
  static size_t PartOf(absl::uint128 fp) { return absl::Uint128High64(fp) >> 58; }
  const Map& Part(absl::uint128 fp) const { return parts_[PartOf(fp)]; }

  std::vector<Map> parts_;  // kParts once the first id comes
  size_t size_ = 0;
};

}  // namespace adpulse
