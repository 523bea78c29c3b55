// Little-endian fixed-width values and length-prefixed strings in byte buffers: the encoding of
// the write-ahead log records and of the stored aggregates (docs/formats/). Little-endian hosts
// only (x86-64, aarch64).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace adpulse {

template <typename T>
void PutLE(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// u16 length, then the bytes (strings over 65,535 bytes are the caller's bug).
inline void PutString16(std::string& out, std::string_view s) {
  PutLE<uint16_t>(out, static_cast<uint16_t>(s.size()));
  out.append(s);
}

// LEB128: 7 bits per byte, low bits first; 1 byte below 128, at most 10.
inline void PutVarint(std::string& out, uint64_t v) {
  char buf[10];
  int n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out.append(buf, static_cast<size_t>(n));
}
// Signed values as varints, small magnitudes short either side of zero.
inline uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t UnZigZag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

// The same LEB128 for 128-bit values (money sums): at most 19 bytes, and a value below 2^64 is
// encoded exactly as PutVarint encodes it.
__extension__ inline void PutVarint128(std::string& out, unsigned __int128 v) {
  if ((v >> 64) == 0) {  // nearly every sum: the 64-bit loop
    PutVarint(out, static_cast<uint64_t>(v));
    return;
  }
  char buf[19];
  int n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>(static_cast<uint8_t>(v) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out.append(buf, static_cast<size_t>(n));
}
__extension__ inline unsigned __int128 ZigZag128(__int128 v) {
  return (static_cast<unsigned __int128>(v) << 1) ^ static_cast<unsigned __int128>(v >> 127);
}
__extension__ inline __int128 UnZigZag128(unsigned __int128 v) {
  return static_cast<__int128>(v >> 1) ^ -static_cast<__int128>(v & 1);
}

// Reads from the front of `in`; once a read runs short, ok() stays false and values are zero.
class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}

  template <typename T>
  T Get() {
    T v{};
    if (!ok_ || in_.size() < sizeof(T)) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return v;
  }
  std::string_view GetString16() {
    uint16_t n = Get<uint16_t>();
    if (!ok_ || in_.size() < n) {
      ok_ = false;
      return {};
    }
    std::string_view s = in_.substr(0, n);
    in_.remove_prefix(n);
    return s;
  }
  uint64_t GetVarint() {
    uint64_t v = 0;
    for (int shift = 0; ok_ && shift < 64; shift += 7) {
      if (in_.empty()) break;
      uint8_t b = static_cast<uint8_t>(in_[0]);
      in_.remove_prefix(1);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    ok_ = false;  // short, or longer than 10 bytes
    return 0;
  }
  __extension__ unsigned __int128 GetVarint128() {
    // Nearly every value fits 9 bytes (63 bits): read those with 64-bit shifts.
    uint64_t low = 0;
    int shift = 0;
    for (; ok_ && shift < 63; shift += 7) {
      if (in_.empty()) {
        ok_ = false;
        return 0;
      }
      uint8_t b = static_cast<uint8_t>(in_[0]);
      in_.remove_prefix(1);
      low |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (b < 0x80) return low;
    }
    __extension__ unsigned __int128 v = low;
    for (; ok_ && shift < 128; shift += 7) {
      if (in_.empty()) break;
      uint8_t b = static_cast<uint8_t>(in_[0]);
      in_.remove_prefix(1);
      __extension__ unsigned __int128 bits = b & 0x7f;
      // The 19th byte holds only the top two bits; more would not fit.
      if (shift == 126 && bits > 3) break;
      v |= bits << shift;
      if (b < 0x80) return v;
    }
    ok_ = false;  // short, or longer than 128 bits
    return 0;
  }
  bool ok() const { return ok_; }
  std::string_view rest() const { return in_; }

 private:
  std::string_view in_;
  bool ok_ = true;
};

}  // namespace adpulse
