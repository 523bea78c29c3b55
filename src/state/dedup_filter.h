// A Bloom filter over the dedup ids a shard has accepted (in memory or in the state store), so
// that the store is asked only about ids that may be there: a "no" is certain and skips the
// lookup. Ids go in as they are accepted (ShardState::Admit, and replay), into the newest of four
// generations; when the newest is older than half the dedup horizon a new one starts and the
// oldest is dropped, so every id stays covered for at least one and a half horizons after it came
// and memory stays fixed. Sized from the memory budget; past its capacity it only answers "maybe"
// more often (more lookups), never wrongly "no". Blocked: an id's probes all fall in one 512-bit
// block (one cache line), so a check or an insert costs one cache miss per generation, not seven.
// One per shard, owned by its worker.
#pragma once
#include <cstdint>
#include <deque>
#include <vector>

#include "absl/numeric/int128.h"

namespace adpulse {

class DedupFilter {
 public:
  // `bytes` in all (split over the generations); `generation_ms` is half the dedup horizon.
  DedupFilter(uint64_t bytes, int64_t generation_ms);

  void Add(absl::uint128 fingerprint, int64_t now_ms);
  bool MayContain(absl::uint128 fingerprint) const;
  // Starts loading the blocks MayContain and Add will read.
  void Prefetch(absl::uint128 fingerprint) const;
  uint64_t bytes() const { return blocks_per_generation_ * 64 * kGenerations; }

  static constexpr int kGenerations = 4;
  static constexpr int kProbes = 7;

 private:
  struct Generation {
    int64_t started_ms = 0;
    std::vector<uint64_t> words;
    size_t first = 0;  // the word where block 0 starts (64-byte aligned)
  };
  void Rotate(int64_t now_ms);

  uint64_t blocks_per_generation_;
  int64_t generation_ms_;
  std::deque<Generation> generations_;  // newest at the back
};

}  // namespace adpulse
