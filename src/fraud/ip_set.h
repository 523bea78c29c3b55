// A set of IP addresses and CIDR ranges (IPv4 and IPv6), for fraud.blocklist_file: parsed from
// the file's text (one address or range per line, '#' comments), looked up without allocation.
// Immutable once built; a reload (SIGHUP) builds a new one and swaps it in whole.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace adpulse {

// An address as 128 bits; IPv4 addresses are IPv4-mapped (::ffff:a.b.c.d).
struct Ip128 {
  uint64_t hi = 0, lo = 0;
  friend bool operator<(const Ip128& a, const Ip128& b) {
    return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
  }
  friend bool operator==(const Ip128& a, const Ip128& b) { return a.hi == b.hi && a.lo == b.lo; }
};

// "203.0.113.9", "2001:db8::1" (no brackets, no port); nullopt when not an address.
std::optional<Ip128> ParseIp(std::string_view text);

class IpSet {
 public:
  // `source` names the file in errors: "blocklist.txt:3: '10.0.0.0/33' is not an address or
  // CIDR range".
  static absl::StatusOr<IpSet> Parse(std::string_view text, std::string_view source);

  bool Contains(const Ip128& ip) const;
  bool Contains(std::string_view ip_text) const;
  size_t ranges() const { return ranges_.size(); }
  bool empty() const { return ranges_.empty(); }

 private:
  struct Range {
    Ip128 first, last;
  };
  std::vector<Range> ranges_;  // sorted, disjoint, merged
};

}  // namespace adpulse
