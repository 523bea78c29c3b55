// HyperLogLog distinct counter (precision 14: standard error 0.81 %), mergeable across buckets and
// shards. Small sets are kept sparse (exact 32-bit hash prefixes) and become dense registers when
// they outgrow kMaxSparseEntries; stored, a set of more than kSparseLimit is dense. Estimation
// uses Ertl's improved estimator (arXiv:1702.01284), which needs no bias tables. Owned by one
// shard's aggregate; not thread-safe.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace adpulse {

class HyperLogLog {
 public:
  static constexpr int kPrecision = 14;
  static constexpr uint32_t kRegisters = 1u << kPrecision;
  // Most entries a stored sparse set has (docs/formats/state.md); a larger one is stored dense.
  static constexpr uint32_t kSparseLimit = 1024;
  // Most entries a sparse set holds in memory (8 KiB, half a dense one) before it becomes dense.
  static constexpr uint32_t kMaxSparseEntries = 2048;
  // A sparse set holding fewer entries than this grows when full instead of dropping repeats
  // first, so it holds at most this many entries (256 bytes) more than its distinct ones.
  static constexpr uint32_t kCompactFrom = 64;

  HyperLogLog() = default;
  HyperLogLog(const HyperLogLog& other);
  HyperLogLog& operator=(const HyperLogLog& other);
  HyperLogLog(HyperLogLog&&) noexcept = default;
  HyperLogLog& operator=(HyperLogLog&&) noexcept = default;

  // `hash` is a well-mixed 64-bit hash of the item (XXH3). Returns how many bytes HeapBytes grew
  // by (0 unless the set had to grow).
  size_t AddHash(uint64_t hash);
  // Starts loading the memory AddHash(hash) will touch.
  void Prefetch(uint64_t hash) const {
    if (dense_) {
      __builtin_prefetch(&dense_[hash >> (64 - kPrecision)], 1);
    } else if (sparse_.size() < sparse_.capacity()) {
      __builtin_prefetch(sparse_.data() + sparse_.size(), 1);  // where the entry will go
    }
  }
  void Merge(const HyperLogLog& other);
  double Estimate() const;
  bool empty() const { return !dense_ && sparse_.empty(); }
  bool is_dense() const { return dense_ != nullptr; }
  // True if AppendTo writes the dense encoding: dense, or more than kSparseLimit distinct entries.
  bool StoredDense() const;
  size_t MemoryBytes() const;
  // The heap memory held, with malloc's 16 bytes of overhead an allocation.
  size_t HeapBytes() const {
    size_t sparse = sparse_.capacity() * sizeof(uint32_t);
    return (sparse ? sparse + 16 : 0) + (dense_ ? kRegisters + 16 : 0);
  }

  // Encodings of the users of a stored aggregate (docs/formats/state.md). Each starts with a u8
  // kind (0 empty, 1 sparse, 2 dense); dense is the kRegisters rank bytes. Sparse entries are
  // sorted hash prefixes: kFixed32 (aggregate format 1) a u32 count and u32 each; kDeltaVarint
  // (format 2) a varint count, then the first entry and each one's distance to the one before
  // as varints.
  enum class Encoding : uint8_t { kFixed32, kDeltaVarint };
  // Always kDeltaVarint: format 1 is only read.
  void AppendTo(std::string& out) const;
  // Reads an encoding from the front of `in` and advances past it; false if malformed.
  bool ReadFrom(std::string_view& in, Encoding encoding);
  // The sorted sparse entries of an encoding from the front of `in`, appended to `out`, or the
  // dense registers max-merged into `dense` (allocated on first use); advances past it.
  static bool MergeEncoded(std::string_view& in, Encoding encoding, std::vector<uint32_t>& out,
                           std::unique_ptr<uint8_t[]>& dense);
  // Appends the kDeltaVarint encoding of sorted, distinct, nonzero sparse entries.
  static void AppendSparse(const uint32_t* sorted, size_t n, std::string& out);

  // The dense register and rank of a sparse entry (a 32-bit hash prefix).
  static void RegisterFromPrefix(uint32_t prefix, uint32_t* index, uint8_t* rank);

 private:
  static uint32_t SparsePrefix(uint64_t hash) {
    uint32_t prefix = static_cast<uint32_t>(hash >> 32);
    return prefix == 0 ? 1 : prefix;  // 0 was the empty-slot marker of format 1; kept nonzero
  }
  void AddSparse(uint32_t prefix);
  static double EstimateRegisters(const uint8_t* registers);
  // The distinct sparse entries, sorted, in `out`.
  void SortedSparse(std::vector<uint32_t>& out) const;
  void ToDense();
  void SetRegister(uint32_t index, uint8_t rank) {
    if (dense_[index] < rank) dense_[index] = rank;
  }

  // Sparse: nonzero 32-bit hash prefixes, appended as they come (an append is one cache line the
  // prefetch knows, where a hash set's slot is anywhere); sorted, with repeats dropped, whenever
  // the vector is full, and grown only if that leaves it over three quarters full. The first
  // `sorted_` entries are sorted and distinct.
  std::vector<uint32_t> sparse_;
  uint32_t sorted_ = 0;
  std::unique_ptr<uint8_t[]> dense_;  // kRegisters ranks, or null while sparse
};

}  // namespace adpulse
