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
    : sparse_(other.sparse_), sparse_count_(other.sparse_count_) {
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

void HyperLogLog::AddHash(uint64_t hash) {
  if (dense_) {
    uint32_t index = static_cast<uint32_t>(hash >> kQ);
    uint64_t rest = hash << kPrecision;
    int r = rest == 0 ? kQ + 1 : std::countl_zero(rest) + 1;
    SetRegister(index, static_cast<uint8_t>(r));
    return;
  }
  AddSparse(SparsePrefix(hash));
}

void HyperLogLog::AddSparse(uint32_t prefix) {
  if (sparse_.empty()) sparse_.assign(8, 0);
  size_t mask = sparse_.size() - 1;
  size_t slot = (prefix * 0x9E3779B1u) & mask;
  while (sparse_[slot] != 0) {
    if (sparse_[slot] == prefix) return;
    slot = (slot + 1) & mask;
  }
  sparse_[slot] = prefix;
  ++sparse_count_;
  if (sparse_count_ > kSparseLimit) {
    ToDense();
    return;
  }
  if (sparse_count_ * 4 >= sparse_.size() * 3) {  // grow at 75 % load
    std::vector<uint32_t> old;
    old.swap(sparse_);
    sparse_.assign(old.size() * 2, 0);
    sparse_count_ = 0;
    for (uint32_t p : old) {
      if (p != 0) AddSparse(p);
    }
  }
}

void HyperLogLog::ToDense() {
  dense_ = std::make_unique<uint8_t[]>(kRegisters);
  std::memset(dense_.get(), 0, kRegisters);
  for (uint32_t p : sparse_) {
    if (p == 0) continue;
    uint32_t index;
    uint8_t rank;
    RegisterFromPrefix(p, &index, &rank);
    SetRegister(index, rank);
  }
  std::vector<uint32_t>().swap(sparse_);
  sparse_count_ = 0;
}

void HyperLogLog::Merge(const HyperLogLog& other) {
  if (other.dense_) {
    if (!dense_) ToDense();
    for (uint32_t i = 0; i < kRegisters; ++i) SetRegister(i, other.dense_[i]);
    return;
  }
  for (uint32_t p : other.sparse_) {
    if (p == 0) continue;
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
  if (!dense_) return static_cast<double>(sparse_count_);
  uint32_t histogram[kQ + 2] = {0};
  for (uint32_t i = 0; i < kRegisters; ++i) ++histogram[dense_[i]];
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
  if (sparse_count_ == 0) {
    out.push_back(0);
    return;
  }
  // Sorted: the deltas are short, and merges of encoded values (MergeEncodedAggregates) sort
  // little.
  uint32_t sorted[kSparseLimit];
  uint32_t k = 0;
  for (uint32_t p : sparse_) {
    if (p != 0) sorted[k++] = p;
  }
  std::sort(sorted, sorted + k);
  AppendSparse(sorted, k, out);
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
      in, encoding,
      [&](uint32_t n) {
        // Sized for all n at under 75 % load, so the inserts never regrow the table.
        size_t slots = 8;
        while (slots * 3 <= size_t{n} * 4) slots *= 2;
        sparse_.assign(slots, 0);
      },
      [&](uint32_t p) { AddSparse(p); });
}

size_t HyperLogLog::MemoryBytes() const {
  return sizeof(*this) + sparse_.capacity() * sizeof(uint32_t) + (dense_ ? kRegisters : 0);
}

}  // namespace adpulse
