#include "storage/mmdb_geo.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <ctime>

namespace adpulse {

struct MmdbGeo::Db {
  MMDB_s mmdb{};
  bool ipv6 = false;  // the database's ip_version
  ~Db() { MMDB_close(&mmdb); }
};

absl::StatusOr<std::unique_ptr<MmdbGeo>> MmdbGeo::Open(const std::vector<std::string>& paths) {
  std::unique_ptr<MmdbGeo> geo(new MmdbGeo());
  for (const std::string& path : paths) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) continue;  // not there: that family has no geo
    auto db = std::make_unique<Db>();
    int rc = MMDB_open(path.c_str(), MMDB_MODE_MMAP, &db->mmdb);
    if (rc != MMDB_SUCCESS) {
      return absl::InvalidArgumentError(
          fmt::format("geo database {} cannot be opened: {}", path, MMDB_strerror(rc)));
    }
    db->ipv6 = db->mmdb.metadata.ip_version == 6;
    char built[32] = "?";
    std::time_t t = static_cast<std::time_t>(db->mmdb.metadata.build_epoch);
    struct tm tm;
    if (gmtime_r(&t, &tm)) std::strftime(built, sizeof built, "%Y-%m-%d", &tm);
    geo->descriptions_.push_back(fmt::format(
        "{} ({}, built {})", path,
        db->mmdb.metadata.database_type ? db->mmdb.metadata.database_type : "?", built));
    geo->dbs_.push_back(std::move(db));
  }
  if (geo->dbs_.empty()) return absl::NotFoundError("no geo database file exists");
  return geo;
}

MmdbGeo::~MmdbGeo() = default;

namespace {

std::string StringAt(MMDB_entry_s* entry, const char* key) {
  MMDB_entry_data_s data;
  if (MMDB_get_value(entry, &data, key, nullptr) != MMDB_SUCCESS || !data.has_data ||
      data.type != MMDB_DATA_TYPE_UTF8_STRING) {
    return {};
  }
  return std::string(data.utf8_string, data.data_size);
}

bool NumberAt(MMDB_entry_s* entry, const char* key, double* out) {
  MMDB_entry_data_s data;
  if (MMDB_get_value(entry, &data, key, nullptr) != MMDB_SUCCESS || !data.has_data) return false;
  if (data.type == MMDB_DATA_TYPE_FLOAT) {
    *out = data.float_value;
  } else if (data.type == MMDB_DATA_TYPE_DOUBLE) {
    *out = data.double_value;
  } else {
    return false;
  }
  return std::isfinite(*out);
}

}  // namespace

bool MmdbGeo::Lookup(std::string_view ip, GeoInfo& out) const {
  std::optional<Ip128> parsed = ParseIp(ip);
  return parsed && LookupIp(*parsed, out);
}

bool MmdbGeo::LookupIp(const Ip128& ip, GeoInfo& out) const {
  bool v4 = ip.hi == 0 && (ip.lo >> 32) == 0xffff;
  sockaddr_in a4{};
  sockaddr_in6 a6{};
  a4.sin_family = AF_INET;
  a4.sin_addr.s_addr = htonl(static_cast<uint32_t>(ip.lo));
  a6.sin6_family = AF_INET6;
  for (int i = 0; i < 8; ++i) {
    a6.sin6_addr.s6_addr[i] = static_cast<uint8_t>(ip.hi >> (56 - 8 * i));
    a6.sin6_addr.s6_addr[8 + i] = static_cast<uint8_t>(ip.lo >> (56 - 8 * i));
  }
  for (const auto& db : dbs_) {
    // An IPv4 database cannot answer an IPv6 address; DB-IP ships IPv4 separately, so for IPv4
    // the IPv4 file (listed first) answers.
    if (!v4 && !db->ipv6) continue;
    int mmdb_error = 0;
    const sockaddr* sa = v4 && !db->ipv6 ? reinterpret_cast<const sockaddr*>(&a4)
                                         : reinterpret_cast<const sockaddr*>(&a6);
    MMDB_lookup_result_s r = MMDB_lookup_sockaddr(const_cast<MMDB_s*>(&db->mmdb), sa, &mmdb_error);
    if (mmdb_error != MMDB_SUCCESS) return false;
    if (!r.found_entry) continue;
    out.country = StringAt(&r.entry, "country_code");
    out.city = StringAt(&r.entry, "city");
    double lat, lon;
    if (NumberAt(&r.entry, "latitude", &lat) && NumberAt(&r.entry, "longitude", &lon) &&
        std::abs(lat) <= 90 && std::abs(lon) <= 180) {
      out.lat_e4 = static_cast<int32_t>(std::lround(lat * 1e4));
      out.lon_e4 = static_cast<int32_t>(std::lround(lon * 1e4));
    }
    return !out.country.empty() || out.lat_e4 != kNoCoordinate;
  }
  return false;
}

}  // namespace adpulse
