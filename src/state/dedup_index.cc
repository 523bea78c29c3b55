#include "state/dedup_index.h"

#include "state/interner.h"
#include "window/time_bucket.h"

namespace adpulse {

absl::uint128 DedupIndex::Fingerprint(std::string_view event_id) {
  XXH128_hash_t h = XXH3_128bits(event_id.data(), event_id.size());
  return absl::MakeUint128(h.high64, h.low64);
}

bool DedupIndex::Insert(absl::uint128 fingerprint, int32_t hour) {
  static_assert(kParts == 64, "PartOf takes the top 6 bits");
  if (parts_.empty()) parts_.resize(kParts);
  auto [it, inserted] = parts_[PartOf(fingerprint)].try_emplace(fingerprint, hour);
  if (!inserted && it->second < hour) it->second = hour;
  size_ += inserted;
  return inserted;
}

bool DedupIndex::Insert(std::string_view event_id, int64_t timestamp_ms) {
  return Insert(Fingerprint(event_id), static_cast<int32_t>(FloorDiv(timestamp_ms, kHourMs)));
}

bool DedupIndex::Erase(absl::uint128 fingerprint) {
  if (parts_.empty() || parts_[PartOf(fingerprint)].erase(fingerprint) == 0) return false;
  --size_;
  return true;
}

}  // namespace adpulse
