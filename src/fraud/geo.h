// Geo enrichment: what an IP address tells of where the user is. GeoSource is the database
// (storage/mmdb_geo.h opens DB-IP's MMDB files with libmaxminddb; tests use a table); GeoCache is a
// bounded per-thread cache in front of it, since lookups cost about a microsecond and real traffic
// repeats its addresses.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "adpulse/event.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace adpulse {

// Transparent XXH3 hash for std::string keys looked up by std::string_view (Debian's abseil has
// its own string_view: DEPENDENCIES.md trap 6).
struct TextHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return XXH3_64bits(s.data(), s.size()); }
};

struct GeoInfo {
  std::string country;  // ISO 3166-1 alpha-2, "US"
  std::string city;
  int32_t lat_e4 = kNoCoordinate;  // 1e-4 degrees
  int32_t lon_e4 = kNoCoordinate;
  bool found = false;
};

class GeoSource {
 public:
  virtual ~GeoSource() = default;
  // Fills `out` and returns true when the database knows the address. Thread-safe.
  virtual bool Lookup(std::string_view ip, GeoInfo& out) const = 0;
};

class GeoCache {
 public:
  GeoCache(const GeoSource& source, size_t capacity) : source_(source), capacity_(capacity) {}
  // The reference is valid until the next Lookup.
  const GeoInfo& Lookup(std::string_view ip);
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }
  size_t size() const { return current_.size() + previous_.size(); }

 private:
  using Map = absl::flat_hash_map<std::string, GeoInfo, TextHash, std::equal_to<>>;
  const GeoSource& source_;
  size_t capacity_;
  // Two generations: when the current one holds half the capacity, the previous is dropped. An
  // entry found in the previous one moves to the current: recently used addresses stay.
  Map current_, previous_;
  uint64_t hits_ = 0, misses_ = 0;
};

// Great-circle distance in km between two points in 1e-4 degrees.
double DistanceKm(int32_t lat1_e4, int32_t lon1_e4, int32_t lat2_e4, int32_t lon2_e4);

}  // namespace adpulse
