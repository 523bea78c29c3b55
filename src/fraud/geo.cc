#include "fraud/geo.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace adpulse {

bool GeoSource::LookupIp(const Ip128& ip, GeoInfo& out) const {
  char text[64];
  if (ip.hi == 0 && (ip.lo >> 32) == 0xffff) {
    uint32_t v4 = static_cast<uint32_t>(ip.lo);
    std::snprintf(text, sizeof text, "%u.%u.%u.%u", v4 >> 24, (v4 >> 16) & 255, (v4 >> 8) & 255,
                  v4 & 255);
  } else {
    std::snprintf(
        text, sizeof text, "%x:%x:%x:%x:%x:%x:%x:%x", static_cast<unsigned>(ip.hi >> 48),
        static_cast<unsigned>((ip.hi >> 32) & 0xffff),
        static_cast<unsigned>((ip.hi >> 16) & 0xffff), static_cast<unsigned>(ip.hi & 0xffff),
        static_cast<unsigned>(ip.lo >> 48), static_cast<unsigned>((ip.lo >> 32) & 0xffff),
        static_cast<unsigned>((ip.lo >> 16) & 0xffff), static_cast<unsigned>(ip.lo & 0xffff));
  }
  return Lookup(text, out);
}

bool GeoSource::LookupView(const Ip128&, GeoView&) const { return false; }

GeoCache::GeoCache(const GeoSource& source, size_t capacity)
    : source_(source), capacity_(std::max<size_t>(2, capacity)) {}

GeoView GeoCache::ViewOf(const Entry& e) const {
  GeoView v;
  if (e.place == 0) return v;
  const auto& place = places_[e.place - 1];
  v.country = place.first;
  v.city = place.second;
  v.lat_e4 = e.lat_e4;
  v.lon_e4 = e.lon_e4;
  v.found = true;
  return v;
}

GeoView GeoCache::Lookup(std::string_view ip_text) {
  std::optional<Ip128> ip = ParseIp(ip_text);
  if (!ip) return {};
  if (GeoView direct; source_.LookupView(*ip, direct)) {
    ++direct_;
    return direct;
  }
  if (auto it = current_.find(*ip); it != current_.end()) {
    ++hits_;
    return ViewOf(it->second);
  }
  if (current_.size() >= capacity_ / 2) {
    previous_ = std::move(current_);
    current_ = Map();
  }
  Entry entry;
  if (auto it = previous_.find(*ip); it != previous_.end()) {
    ++hits_;
    entry = it->second;
    previous_.erase(it);
  } else {
    ++misses_;
    GeoInfo info;
    if (source_.LookupIp(*ip, info)) {
      std::string key = info.country;
      key.push_back('\0');
      key += info.city;
      auto [pos, added] =
          place_ids_.emplace(std::move(key), static_cast<uint32_t>(places_.size() + 1));
      if (added) places_.emplace_back(std::move(info.country), std::move(info.city));
      entry.place = pos->second;
      entry.lat_e4 = info.lat_e4;
      entry.lon_e4 = info.lon_e4;
    }
  }
  current_.emplace(*ip, entry);
  return ViewOf(entry);
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
