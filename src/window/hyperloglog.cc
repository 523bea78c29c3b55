#include "window/hyperloglog.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "base/byte_io.h"

namespace adpulse {
namespace {
constexpr int kQ = 64 - HyperLogLog::kPrecision;  // bits left for the rank

// sigma and tau from Ertl, "New cardinality estimation algorithms for HyperLogLog sketches".
double Sigma(double x) {
  if (x == 1.0) return INFINITY;
  double y = 1.0, z = x, z_prev;
  do {
    x *= x;
    z_prev = z;
    z += x * y;
    y += y;
  } while (z != z_prev);
  return z;
}

double Tau(double x) {
  if (x == 0.0 || x == 1.0) return 0.0;
  double y = 1.0, z = 1.0 - x, z_prev;
  do {
    x = std::sqrt(x);
    z_prev = z;
    y *= 0.5;
    z -= (1.0 - x) * (1.0 - x) * y;
  } while (z != z_prev);
  return z / 3.0;
}

}  // namespace

HyperLogLog::HyperLogLog(const HyperLogLog& other)
    : sparse_(other.sparse_), sorted_(other.sorted_) {
  if (other.dense_) {
    dense_ = std::make_unique<uint8_t[]>(kRegisters);
    std::memcpy(dense_.get(), other.dense_.get(), kRegisters);
  }
}

HyperLogLog& HyperLogLog::operator=(const HyperLogLog& other) {
  if (this != &other) {
    HyperLogLog copy(other);
    *this = std::move(copy);
  }
  return *this;
}

void HyperLogLog::RegisterFromPrefix(uint32_t prefix, uint32_t* index, uint8_t* rank) {
  *index = prefix >> (32 - kPrecision);
  uint32_t rest = prefix << kPrecision;  // the 18 bits after the index, left-aligned
  int r = rest == 0 ? (32 - kPrecision + 1) : std::countl_zero(rest) + 1;
  *rank = static_cast<uint8_t>(r);
}

size_t HyperLogLog::AddHash(uint64_t hash) {
  if (dense_) {
    uint32_t index = static_cast<uint32_t>(hash >> kQ);
    uint64_t rest = hash << kPrecision;
    int r = rest == 0 ? kQ + 1 : std::countl_zero(rest) + 1;
    SetRegister(index, static_cast<uint8_t>(r));
    return 0;
  }
  if (sparse_.size() < sparse_.capacity()) {
    sparse_.push_back(SparsePrefix(hash));
    return 0;
  }
  size_t before = HeapBytes();
  AddSparse(SparsePrefix(hash));
  return HeapBytes() - before;
}

namespace {
// [first, last) sorted into `out`. Hash prefixes are uniform, so from 128 entries on one pass
// buckets them by their top 8 bits and each bucket (a handful of entries) is sorted by insertion:
// no comparison that mispredicts half the time, as std::sort's do on random keys.
void SortEntries(const uint32_t* first, const uint32_t* last, std::vector<uint32_t>& out) {
  size_t n = static_cast<size_t>(last - first);
  out.resize(n);
  if (n < 128) {
    std::copy(first, last, out.begin());
    std::sort(out.begin(), out.end());
    return;
  }
  uint32_t starts[257] = {0};
  for (const uint32_t* p = first; p != last; ++p) ++starts[(*p >> 24) + 1];
  for (int b = 1; b <= 256; ++b) starts[b] += starts[b - 1];
  uint32_t next[256];
  std::copy(starts, starts + 256, next);
  for (const uint32_t* p = first; p != last; ++p) out[next[*p >> 24]++] = *p;
  for (int b = 0; b < 256; ++b) {
    for (uint32_t i = starts[b] + 1; i < starts[b + 1]; ++i) {
      uint32_t v = out[i];
      uint32_t j = i;
      for (; j > starts[b] && out[j - 1] > v; --j) out[j] = out[j - 1];
      out[j] = v;
    }
  }
}

// Merges sorted, distinct [a, a_end) and sorted [b, b_end) into `out` without repeats; returns
// the end. Entries are nonzero.
uint32_t* MergeDistinct(const uint32_t* a, const uint32_t* a_end, const uint32_t* b,
                        const uint32_t* b_end, uint32_t* out) {
  uint32_t last = 0;
  while (a != a_end && b != b_end) {
    uint32_t v = *a < *b ? *a : *b;
    a += *a == v;
    b += *b == v;
    if (v != last) *out++ = last = v;
  }
  for (; a != a_end; ++a) *out++ = *a;  // distinct, and all above `last`
  for (; b != b_end; ++b) {
    if (*b != last) *out++ = last = *b;
  }
  return out;
}
}  // namespace

void HyperLogLog::AddSparse(uint32_t prefix) {
  if (sparse_.size() == sparse_.capacity()) {
    size_t capacity = sparse_.capacity();
    // A small set just grows: most of its entries are distinct in practice, and the flush that
    // encodes it sorts it anyway (AppendTo), so sorting it here would mostly be work done twice.
    // Repeats are dropped once it is kCompactFrom entries or more.
    if (capacity < kCompactFrom) {
      sparse_.reserve(std::max<size_t>(8, capacity * 2));
    } else {
      // Sorted and merged into scratch memory, then copied once: into the set's own memory, or
      // into a set twice the size if it stays over three quarters full.
      thread_local std::vector<uint32_t> merged;
      SortedSparse(merged);
      size_t n = merged.size();
      if (n * 4 > capacity * 3 && capacity >= kMaxSparseEntries) {
        ToDense();  // from the entries it holds: repeats set a register twice, harmlessly
        uint32_t index;
        uint8_t rank;
        RegisterFromPrefix(prefix, &index, &rank);
        SetRegister(index, rank);
        return;
      }
      if (n * 4 > capacity * 3) {
        std::vector<uint32_t> grown;
        grown.reserve(capacity * 2);
        grown.assign(merged.begin(), merged.begin() + static_cast<ptrdiff_t>(n));
        sparse_.swap(grown);
      } else {
        sparse_.assign(merged.begin(), merged.begin() + static_cast<ptrdiff_t>(n));
      }
      sorted_ = static_cast<uint32_t>(n);
    }
  }
  sparse_.push_back(prefix);
}

void HyperLogLog::SortedSparse(std::vector<uint32_t>& out) const {
  if (sorted_ == sparse_.size()) {
    out.assign(sparse_.begin(), sparse_.end());
    return;
  }
  thread_local std::vector<uint32_t> tail;
  SortEntries(sparse_.data() + sorted_, sparse_.data() + sparse_.size(), tail);
  out.resize(sparse_.size());
  out.resize(static_cast<size_t>(MergeDistinct(sparse_.data(), sparse_.data() + sorted_,
                                               tail.data(), tail.data() + tail.size(), out.data()) -
                                 out.data()));
}

void HyperLogLog::ToDense() {
  dense_ = std::make_unique<uint8_t[]>(kRegisters);
  std::memset(dense_.get(), 0, kRegisters);
  for (uint32_t p : sparse_) {  // repeats set the same register twice: harmless
    uint32_t index;
    uint8_t rank;
    RegisterFromPrefix(p, &index, &rank);
    SetRegister(index, rank);
  }
  std::vector<uint32_t>().swap(sparse_);
  sorted_ = 0;
}

void HyperLogLog::Merge(const HyperLogLog& other) {
  if (&other == this) return;  // a set's union with itself
  if (other.dense_) {
    if (!dense_) ToDense();
    for (uint32_t i = 0; i < kRegisters; ++i) SetRegister(i, other.dense_[i]);
    return;
  }
  for (uint32_t p : other.sparse_) {
    if (dense_) {
      uint32_t index;
      uint8_t rank;
      RegisterFromPrefix(p, &index, &rank);
      SetRegister(index, rank);
    } else {
      AddSparse(p);
    }
  }
}

double HyperLogLog::Estimate() const {
  if (dense_) return EstimateRegisters(dense_.get());
  if (sorted_ == sparse_.size() && sparse_.size() <= kSparseLimit) {
    return static_cast<double>(sparse_.size());
  }
  std::vector<uint32_t> distinct;
  SortedSparse(distinct);
  if (distinct.size() <= kSparseLimit) return static_cast<double>(distinct.size());
  // Estimated as the dense registers it is stored as (AppendTo), so that a query gives the same
  // figure before and after a flush.
  auto registers = std::make_unique<uint8_t[]>(kRegisters);
  std::memset(registers.get(), 0, kRegisters);
  for (uint32_t p : distinct) {
    uint32_t index;
    uint8_t rank;
    RegisterFromPrefix(p, &index, &rank);
    registers[index] = std::max(registers[index], rank);
  }
  return EstimateRegisters(registers.get());
}

bool HyperLogLog::StoredDense() const {
  if (dense_) return true;
  if (sparse_.size() <= kSparseLimit) return false;
  std::vector<uint32_t> distinct;
  SortedSparse(distinct);
  return distinct.size() > kSparseLimit;
}

double HyperLogLog::EstimateRegisters(const uint8_t* registers) {
  uint32_t histogram[kQ + 2] = {0};
  for (uint32_t i = 0; i < kRegisters; ++i) ++histogram[registers[i]];
  const double m = kRegisters;
  double z = m * Tau(1.0 - histogram[kQ + 1] / m);
  for (int k = kQ; k >= 1; --k) z = 0.5 * (z + histogram[k]);
  z += m * Sigma(histogram[0] / m);
  constexpr double kAlphaInf = 0.721347520444481703680;  // 1 / (2 ln 2)
  return kAlphaInf * m * m / z;
}

void HyperLogLog::AppendSparse(const uint32_t* sorted, size_t n, std::string& out) {
  out.push_back(1);
  PutVarint(out, n);
  uint32_t previous = 0;
  for (size_t i = 0; i < n; ++i) {
    PutVarint(out, sorted[i] - previous);
    previous = sorted[i];
  }
}

void HyperLogLog::AppendTo(std::string& out) const {
  if (dense_) {
    out.push_back(2);
    out.append(reinterpret_cast<const char*>(dense_.get()), kRegisters);
    return;
  }
  if (sparse_.empty()) {
    out.push_back(0);
    return;
  }
  // Sorted: the deltas are short, and merges of encoded values (MergeEncodedAggregates) sort
  // little. Entries compacted before are sorted already.
  const uint32_t* sorted = sparse_.data();
  size_t n = sparse_.size();
  thread_local std::vector<uint32_t> scratch;
  if (sorted_ != n) {
    SortedSparse(scratch);
    sorted = scratch.data();
    n = scratch.size();
  }
  if (n <= kSparseLimit) {
    AppendSparse(sorted, n, out);
    return;
  }
  // More than a stored sparse set may hold: stored dense, as it would have been in memory once.
  out.push_back(2);
  size_t at = out.size();
  out.append(kRegisters, '\0');
  auto* registers = reinterpret_cast<uint8_t*>(out.data() + at);
  for (size_t i = 0; i < n; ++i) {
    uint32_t index;
    uint8_t rank;
    RegisterFromPrefix(sorted[i], &index, &rank);
    if (registers[index] < rank) registers[index] = rank;
  }
}

namespace {
// Reads the sparse entries of an encoding (after its kind byte): `count(n)` once, then
// `entry(p)` for each, in increasing order; false unless they are sorted, distinct and nonzero.
template <typename Count, typename Entry>
bool ReadSparse(std::string_view& in, HyperLogLog::Encoding encoding, Count count, Entry entry) {
  if (encoding == HyperLogLog::Encoding::kFixed32) {
    if (in.size() < 4) return false;
    uint32_t n;
    std::memcpy(&n, in.data(), 4);
    in.remove_prefix(4);
    if (n == 0 || n > HyperLogLog::kSparseLimit || in.size() < size_t{n} * 4) return false;
    count(n);
    uint32_t previous = 0;
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t p;
      std::memcpy(&p, in.data() + size_t{i} * 4, 4);
      if (p <= previous) return false;  // format 1 was written sorted; checked all the same
      entry(p);
      previous = p;
    }
    in.remove_prefix(size_t{n} * 4);
    return true;
  }
  ByteReader r(in);
  uint64_t n = r.GetVarint();
  if (!r.ok() || n == 0 || n > HyperLogLog::kSparseLimit) return false;
  count(static_cast<uint32_t>(n));
  uint64_t value = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t delta = r.GetVarint();
    value += delta;
    if (!r.ok() || delta == 0 || value > UINT32_MAX) return false;
    entry(static_cast<uint32_t>(value));
  }
  in = r.rest();
  return true;
}
}  // namespace

bool HyperLogLog::MergeEncoded(std::string_view& in, Encoding encoding, std::vector<uint32_t>& out,
                               std::unique_ptr<uint8_t[]>& dense) {
  if (in.empty()) return false;
  char kind = in[0];
  in.remove_prefix(1);
  if (kind == 0) return true;
  if (kind == 1) {
    return ReadSparse(
        in, encoding, [&](uint32_t n) { out.reserve(out.size() + n); },
        [&](uint32_t p) { out.push_back(p); });
  }
  if (kind != 2 || in.size() < kRegisters) return false;
  const auto* registers = reinterpret_cast<const uint8_t*>(in.data());
  if (!dense) {
    dense = std::make_unique<uint8_t[]>(kRegisters);
    std::memcpy(dense.get(), registers, kRegisters);
  } else {
    for (uint32_t i = 0; i < kRegisters; ++i) dense[i] = std::max(dense[i], registers[i]);
  }
  in.remove_prefix(kRegisters);
  return true;
}

bool HyperLogLog::ReadFrom(std::string_view& in, Encoding encoding) {
  *this = HyperLogLog();
  if (in.empty()) return false;
  char kind = in[0];
  if (kind == 2) {
    if (in.size() < 1 + kRegisters) return false;
    dense_ = std::make_unique<uint8_t[]>(kRegisters);
    std::memcpy(dense_.get(), in.data() + 1, kRegisters);
    in.remove_prefix(1 + kRegisters);
    return true;
  }
  if (kind == 0) {
    in.remove_prefix(1);
    return true;
  }
  if (kind != 1) return false;
  in.remove_prefix(1);
  return ReadSparse(
      in, encoding, [&](uint32_t n) { sparse_.reserve(n); },
      [&](uint32_t p) {
        sparse_.push_back(p);  // sorted and distinct (ReadSparse checks)
        sorted_ = static_cast<uint32_t>(sparse_.size());
      });
}

size_t HyperLogLog::MemoryBytes() const {
  return sizeof(*this) + sparse_.capacity() * sizeof(uint32_t) + (dense_ ? kRegisters : 0);
}

}  // namespace adpulse
