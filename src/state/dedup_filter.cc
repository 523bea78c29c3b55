#include "state/dedup_filter.h"

namespace adpulse {

DedupFilter::DedupFilter(uint64_t bytes, int64_t generation_ms)
    : bits_per_generation_(std::max<uint64_t>(1 << 16, bytes * 8 / kGenerations) & ~uint64_t{63}),
      generation_ms_(generation_ms) {}

void DedupFilter::Rotate(int64_t now_ms) {
  if (!generations_.empty() && now_ms - generations_.back().started_ms < generation_ms_) return;
  if (generations_.size() == kGenerations) generations_.pop_front();
  generations_.push_back({now_ms, std::vector<uint64_t>(bits_per_generation_ / 64, 0)});
}

void DedupFilter::Add(absl::uint128 fp, int64_t now_ms) {
  Rotate(now_ms);
  std::vector<uint64_t>& words = generations_.back().words;
  uint64_t h1 = absl::Uint128Low64(fp), h2 = absl::Uint128High64(fp) | 1;
  for (int i = 0; i < kProbes; ++i) {
    uint64_t bit = (h1 + i * h2) % bits_per_generation_;
    words[bit / 64] |= uint64_t{1} << (bit % 64);
  }
}

bool DedupFilter::MayContain(absl::uint128 fp) const {
  uint64_t h1 = absl::Uint128Low64(fp), h2 = absl::Uint128High64(fp) | 1;
  for (const Generation& g : generations_) {
    bool all = true;
    for (int i = 0; i < kProbes && all; ++i) {
      uint64_t bit = (h1 + i * h2) % bits_per_generation_;
      all = (g.words[bit / 64] >> (bit % 64)) & 1;
    }
    if (all) return true;
  }
  return false;
}

}  // namespace adpulse
