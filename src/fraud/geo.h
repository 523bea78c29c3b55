// Geo enrichment: what an IP address tells of where the user is. GeoSource is the database
// (storage/mmdb_geo.h opens DB-IP's MMDB files with libmaxminddb; tests use a table); GeoCache is a
// bounded per-thread cache in front of it, since lookups cost about a microsecond and real traffic
// repeats its addresses.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "adpulse/event.h"
#include "fraud/ip_set.h"

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

// A place as views: into a GeoCache's table of places, or into a GeoSource's own tables.
struct GeoView {
  std::string_view country, city;
  int32_t lat_e4 = kNoCoordinate, lon_e4 = kNoCoordinate;
  bool found = false;
};

class GeoSource {
 public:
  virtual ~GeoSource() = default;
  // Fills `out` and returns true when the database knows the address. Thread-safe.
  virtual bool Lookup(std::string_view ip, GeoInfo& out) const = 0;
  // The same for an address already parsed (IPv4 as IPv4-mapped); by default through its text.
  virtual bool LookupIp(const Ip128& ip, GeoInfo& out) const;
  // Answers from the source's own tables without copying, when it can do so faster than a cache
  // (true: `out` is the place, its views living as long as the source); false: ask LookupIp,
  // through a cache.
  virtual bool LookupView(const Ip128& ip, GeoView& out) const;
};

// Per thread. Addresses the source answers directly (LookupView: IPv4 from MmdbGeo's range table)
// skip the cache; the others (IPv6, which libmaxminddb finds by walking its search tree) are
// cached. Entries are keyed by the parsed address and hold an index into a table of the (country,
// city) pairs seen, so an entry is 24 bytes and a million of them fit in about 50 MB.
class GeoCache {
 public:
  GeoCache(const GeoSource& source, size_t capacity);
  GeoView Lookup(std::string_view ip);
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }
  // Answered by the source's LookupView, not cached (IPv4 with the range table).
  uint64_t direct() const { return direct_; }
  size_t size() const { return current_.size() + previous_.size(); }
  size_t places() const { return places_.size(); }

 private:
  struct Entry {
    uint32_t place = 0;  // index into places_ + 1; 0: not found
    int32_t lat_e4 = kNoCoordinate, lon_e4 = kNoCoordinate;
  };
  struct IpHash {
    size_t operator()(const Ip128& ip) const {
      return static_cast<size_t>((ip.hi * 0x9e3779b97f4a7c15ull) ^ (ip.lo * 0xc2b2ae3d27d4eb4full));
    }
  };
  using Map = absl::flat_hash_map<Ip128, Entry, IpHash>;
  GeoView ViewOf(const Entry& e) const;

  const GeoSource& source_;
  size_t capacity_;
  // Two generations: when the current one holds half the capacity, the previous is dropped. An
  // entry found in the previous one moves to the current: recently used addresses stay.
  Map current_, previous_;
  // Places never leave (there are as many as the database has cities).
  std::vector<std::pair<std::string, std::string>> places_;
  absl::flat_hash_map<std::string, uint32_t, TextHash, std::equal_to<>> place_ids_;
  uint64_t hits_ = 0, misses_ = 0, direct_ = 0;
};

// Great-circle distance in km between two points in 1e-4 degrees.
double DistanceKm(int32_t lat1_e4, int32_t lon1_e4, int32_t lat2_e4, int32_t lon2_e4);

}  // namespace adpulse
