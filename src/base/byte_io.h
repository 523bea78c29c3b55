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
  bool ok() const { return ok_; }
  std::string_view rest() const { return in_; }

 private:
  std::string_view in_;
  bool ok_ = true;
};

}  // namespace adpulse
