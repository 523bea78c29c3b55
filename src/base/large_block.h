// A large block of zeroed memory for a fixed-size table: mapped anonymously, so pages are
// committed only when first touched (the resident size grows with use, up to the block's size),
// and advised to be backed by transparent huge pages, so that lookups spread over hundreds of
// megabytes do not miss the TLB on every access (with 4 KiB pages the TLB covers a few MiB).
#pragma once
#include <sys/mman.h>

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace adpulse {

// An anonymous, zeroed mapping of `bytes`, advised to be backed by transparent huge pages (advice
// only: without THP, normal pages). Throws std::bad_alloc when it cannot be mapped.
inline void* MapHugePageAdvised(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  ::madvise(p, bytes, MADV_HUGEPAGE);
  return p;
}

class LargeBlock {
 public:
  LargeBlock() = default;
  explicit LargeBlock(size_t bytes) : size_(bytes) {
    if (bytes != 0) data_ = MapHugePageAdvised(bytes);
  }
  LargeBlock(const LargeBlock&) = delete;
  LargeBlock& operator=(const LargeBlock&) = delete;
  LargeBlock(LargeBlock&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  LargeBlock& operator=(LargeBlock&& o) noexcept {
    if (this != &o) {
      Release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~LargeBlock() { Release(); }

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void Release() {
    if (data_) ::munmap(data_, size_);
    data_ = nullptr;
  }
  void* data_ = nullptr;
  size_t size_ = 0;
};

// A std::allocator that gives allocations of 2 MiB and more their own huge-page-advised mapping
// (as LargeBlock), for big read-mostly arrays that are looked up at random (std::vector<T,
// HugePageAllocator<T>>); smaller ones come from the heap.
template <typename T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr size_t kThreshold = size_t{2} << 20;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: converting, as allocators are
  T* allocate(size_t n) {
    size_t bytes = n * sizeof(T);
    if (bytes < kThreshold) return std::allocator<T>().allocate(n);
    return static_cast<T*>(MapHugePageAdvised(bytes));
  }
  void deallocate(T* p, size_t n) {
    size_t bytes = n * sizeof(T);
    if (bytes < kThreshold) {
      std::allocator<T>().deallocate(p, n);
    } else {
      ::munmap(p, bytes);
    }
  }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const {
    return false;
  }
};

}  // namespace adpulse
