// A counter written by one thread and read by any (metrics scrapes): a relaxed atomic, bumped with
// a plain load and store instead of a locked read-modify-write, since there is a single writer.
#pragma once
#include <atomic>
#include <cstdint>

namespace adpulse {

class RelaxedCounter {
 public:
  void Add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }
  void Set(uint64_t n) { v_.store(n, std::memory_order_relaxed); }
  RelaxedCounter& operator++() {
    Add(1);
    return *this;
  }

 private:
  std::atomic<uint64_t> v_{0};
};

}  // namespace adpulse
