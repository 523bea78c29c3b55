#include "fraud/ip_set.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace adpulse {

std::optional<Ip128> ParseIp(std::string_view text) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buf)) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = 0;
  Ip128 ip;
  if (text.find(':') == std::string_view::npos) {
    in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) != 1) return std::nullopt;
    ip.hi = 0;
    ip.lo = (uint64_t{0xffff} << 32) | ntohl(a4.s_addr);
    return ip;
  }
  in6_addr a6;
  if (inet_pton(AF_INET6, buf, &a6) != 1) return std::nullopt;
  for (int i = 0; i < 8; ++i) ip.hi = (ip.hi << 8) | a6.s6_addr[i];
  for (int i = 8; i < 16; ++i) ip.lo = (ip.lo << 8) | a6.s6_addr[i];
  return ip;
}

namespace {

// The last address of the range of `prefix` bits starting at `ip` (host bits set), with the
// first address (host bits cleared) in `first`.
void RangeOf(const Ip128& ip, int prefix, Ip128* first, Ip128* last) {
  auto mask_hi = prefix >= 64 ? ~uint64_t{0} : prefix == 0 ? 0 : ~uint64_t{0} << (64 - prefix);
  auto mask_lo = prefix <= 64 ? 0 : prefix >= 128 ? ~uint64_t{0} : ~uint64_t{0} << (128 - prefix);
  first->hi = ip.hi & mask_hi;
  first->lo = ip.lo & mask_lo;
  last->hi = first->hi | ~mask_hi;
  last->lo = first->lo | ~mask_lo;
}

bool Next(const Ip128& a, Ip128* out) {  // a + 1; false on overflow
  *out = a;
  if (++out->lo == 0 && ++out->hi == 0) return false;
  return true;
}

}  // namespace

absl::StatusOr<IpSet> IpSet::Parse(std::string_view text, std::string_view source) {
  IpSet set;
  int line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    while (!line.empty() && absl::ascii_isspace(static_cast<unsigned char>(line.back())))
      line.remove_suffix(1);
    while (!line.empty() && absl::ascii_isspace(static_cast<unsigned char>(line.front())))
      line.remove_prefix(1);
    if (line.empty()) continue;
    auto bad = [&]() {
      return absl::InvalidArgumentError(fmt::format(
          "{}:{}: '{}' is not an IP address or CIDR range", source, line_no, std::string(line)));
    };
    std::string_view addr = line;
    int prefix = -1;
    if (size_t slash = line.find('/'); slash != std::string_view::npos) {
      addr = line.substr(0, slash);
      int p;
      if (!absl::SimpleAtoi(std::string(line.substr(slash + 1)), &p)) return bad();
      prefix = p;
    }
    std::optional<Ip128> ip = ParseIp(addr);
    if (!ip) return bad();
    bool v4 = addr.find(':') == std::string_view::npos;
    if (prefix < 0) prefix = v4 ? 32 : 128;
    if (prefix > (v4 ? 32 : 128)) return bad();
    Range r;
    RangeOf(*ip, v4 ? prefix + 96 : prefix, &r.first, &r.last);
    set.ranges_.push_back(r);
  }
  std::sort(set.ranges_.begin(), set.ranges_.end(),
            [](const Range& a, const Range& b) { return a.first < b.first; });
  std::vector<Range> merged;
  for (const Range& r : set.ranges_) {
    Ip128 after;
    if (!merged.empty() &&
        (!Next(merged.back().last, &after) || !(after < r.first))) {  // overlaps or touches
      if (merged.back().last < r.last) merged.back().last = r.last;
      continue;
    }
    merged.push_back(r);
  }
  set.ranges_ = std::move(merged);
  return set;
}

bool IpSet::Contains(const Ip128& ip) const {
  // The last range starting at or before ip.
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), ip,
                             [](const Ip128& v, const Range& r) { return v < r.first; });
  if (it == ranges_.begin()) return false;
  --it;
  return !(it->last < ip);
}

bool IpSet::Contains(std::string_view ip_text) const {
  if (ranges_.empty()) return false;
  std::optional<Ip128> ip = ParseIp(ip_text);
  return ip && Contains(*ip);
}

}  // namespace adpulse
