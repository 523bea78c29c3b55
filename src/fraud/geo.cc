#include "fraud/geo.h"

#include <algorithm>
#include <cmath>

namespace adpulse {

const GeoInfo& GeoCache::Lookup(std::string_view ip) {
  if (auto it = current_.find(ip); it != current_.end()) {
    ++hits_;
    return it->second;
  }
  if (current_.size() >= std::max<size_t>(1, capacity_ / 2)) {
    previous_ = std::move(current_);
    current_ = Map();
  }
  if (auto it = previous_.find(ip); it != previous_.end()) {
    ++hits_;
    auto node = previous_.extract(it);
    return current_.insert(std::move(node)).position->second;
  }
  ++misses_;
  GeoInfo info;
  info.found = source_.Lookup(ip, info);
  return current_.emplace(std::string(ip), std::move(info)).first->second;
}

double DistanceKm(int32_t lat1_e4, int32_t lon1_e4, int32_t lat2_e4, int32_t lon2_e4) {
  constexpr double kRad = M_PI / 180.0 / 1e4;
  constexpr double kEarthKm = 6371.0;
  double la1 = lat1_e4 * kRad, la2 = lat2_e4 * kRad;
  double dla = la2 - la1, dlo = (lon2_e4 - lon1_e4) * kRad;
  double a = std::sin(dla / 2) * std::sin(dla / 2) +
             std::cos(la1) * std::cos(la2) * std::sin(dlo / 2) * std::sin(dlo / 2);
  return 2 * kEarthKm * std::asin(std::sqrt(std::min(1.0, a)));
}

}  // namespace adpulse
