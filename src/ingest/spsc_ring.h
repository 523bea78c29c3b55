// Bounded lock-free single-producer single-consumer ring (after rigtorp/SPSCQueue): indices on
// their own cache lines, each side caching the other's index so the common case touches one line.
// Exactly one thread may push and one other thread may pop; only try_ operations, never blocking.
#pragma once
#include <atomic>
#include <bit>
#include <cstddef>
#include <memory>
#include <new>

namespace adpulse {

inline constexpr size_t kCacheLineBytes = 64;

template <typename T>
class SpscRing {
 public:
  explicit SpscRing(size_t capacity)
      : mask_(std::bit_ceil(capacity < 2 ? size_t{2} : capacity) - 1),
        slots_(std::make_unique<T[]>(mask_ + 1)) {}

  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  // Producer only.
  bool TryPush(const T& value) {
    size_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - cached_head_ > mask_) {
      cached_head_ = head_.load(std::memory_order_acquire);
      if (tail - cached_head_ > mask_) return false;
    }
    slots_[tail & mask_] = value;
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  // Consumer only.
  bool TryPop(T& out) {
    size_t head = head_.load(std::memory_order_relaxed);
    if (head == cached_tail_) {
      cached_tail_ = tail_.load(std::memory_order_acquire);
      if (head == cached_tail_) return false;
    }
    out = slots_[head & mask_];
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  // Either side; a snapshot that may be stale by the time it is read.
  size_t SizeApprox() const {
    return tail_.load(std::memory_order_acquire) - head_.load(std::memory_order_acquire);
  }
  size_t capacity() const { return mask_ + 1; }

 private:
  alignas(kCacheLineBytes) std::atomic<size_t> head_{0};  // written by the consumer
  alignas(kCacheLineBytes) size_t cached_tail_ = 0;       // consumer's copy of tail_
  alignas(kCacheLineBytes) std::atomic<size_t> tail_{0};  // written by the producer
  alignas(kCacheLineBytes) size_t cached_head_ = 0;       // producer's copy of head_
  alignas(kCacheLineBytes) const size_t mask_;
  std::unique_ptr<T[]> slots_;
};

}  // namespace adpulse
