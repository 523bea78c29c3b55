// An append-only byte arena whose strings never move: it grows by whole chunks, so a view into it
// stays valid until the arena is cleared or destroyed (a std::string arena would reallocate).
// For values made after a request was decoded (enrichment), which live as long as its batch.
#pragma once
#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace adpulse {

class StableArena {
 public:
  explicit StableArena(size_t chunk_bytes = 16 << 10) : chunk_bytes_(chunk_bytes) {}

  std::string_view Copy(std::string_view s) {
    if (s.empty()) return {};
    if (s.size() > left_) {
      size_t n = std::max(chunk_bytes_, s.size());
      chunks_.push_back(std::make_unique<char[]>(n));
      at_ = chunks_.back().get();
      left_ = n;
    }
    char* p = at_;
    std::memcpy(p, s.data(), s.size());
    at_ += s.size();
    left_ -= s.size();
    return {p, s.size()};
  }
  void Clear() {
    chunks_.clear();
    at_ = nullptr;
    left_ = 0;
  }

 private:
  size_t chunk_bytes_;
  std::vector<std::unique_ptr<char[]>> chunks_;
  char* at_ = nullptr;
  size_t left_ = 0;
};

}  // namespace adpulse
