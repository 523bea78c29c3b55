#include "state/dedup_filter.h"

namespace adpulse {
namespace {
constexpr uint64_t kBlockBits = 512;  // one cache line
constexpr uint64_t kWordsPerBlock = kBlockBits / 64;

// The block of a fingerprint (a multiply-shift instead of a modulo) and its probes' bit positions
// within the block: 9 bits of the high half each.
uint64_t BlockOf(absl::uint128 fp, uint64_t blocks) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(absl::Uint128Low64(fp)) * blocks) >>
                               64);
}
uint64_t ProbeBit(absl::uint128 fp, int i) { return (absl::Uint128High64(fp) >> (9 * i)) & 511; }
}  // namespace

DedupFilter::DedupFilter(uint64_t bytes, int64_t generation_ms)
    : blocks_per_generation_(std::max<uint64_t>(1 << 16, bytes * 8 / kGenerations) / kBlockBits),
      generation_ms_(generation_ms) {}

void DedupFilter::Rotate(int64_t now_ms) {
  if (!generations_.empty() && now_ms - generations_.back().started_ms < generation_ms_) return;
  if (generations_.size() == kGenerations) generations_.pop_front();
  Generation& g = generations_.emplace_back();
  g.started_ms = now_ms;
  // One block per cache line: the words start at a 64-byte boundary.
  g.words.assign(blocks_per_generation_ * kWordsPerBlock + kWordsPerBlock - 1, 0);
  g.first = (64 - reinterpret_cast<uintptr_t>(g.words.data()) % 64) % 64 / 8;
}

void DedupFilter::Add(absl::uint128 fp, int64_t now_ms) {
  Rotate(now_ms);
  Generation& g = generations_.back();
  uint64_t* block = g.words.data() + g.first + BlockOf(fp, blocks_per_generation_) * kWordsPerBlock;
  for (int i = 0; i < kProbes; ++i) {
    uint64_t bit = ProbeBit(fp, i);
    block[bit / 64] |= uint64_t{1} << (bit % 64);
  }
}

void DedupFilter::Prefetch(absl::uint128 fp) const {
  uint64_t offset = BlockOf(fp, blocks_per_generation_) * kWordsPerBlock;
  for (const Generation& g : generations_) __builtin_prefetch(g.words.data() + g.first + offset);
}

bool DedupFilter::MayContain(absl::uint128 fp) const {
  uint64_t offset = BlockOf(fp, blocks_per_generation_) * kWordsPerBlock;
  for (const Generation& g : generations_) {
    const uint64_t* block = g.words.data() + g.first + offset;
    bool all = true;
    for (int i = 0; i < kProbes && all; ++i) {
      uint64_t bit = ProbeBit(fp, i);
      all = (block[bit / 64] >> (bit % 64)) & 1;
    }
    if (all) return true;
  }
  return false;
}

}  // namespace adpulse
