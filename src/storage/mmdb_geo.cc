#include "storage/mmdb_geo.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>

#include "absl/container/flat_hash_map.h"
#include "base/large_block.h"

namespace adpulse {

// An IPv4 database read once into a sorted table of ranges, with an index by the address's top
// 20 bits: a lookup reads the index, then a few ranges side by side (a /20 holds about three
// ranges on average, one or two cache lines), then the place. The database's own 32-level search
// tree walks node by node through a 63 MB mapping, a cache miss a level.
struct Ipv4Table {
  static constexpr int kIndexBits = 20;
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Range {
    uint32_t start;  // first address; ranges are ascending and cover 2^32
    uint32_t info;   // index into infos, or kNone
  };
  // Huge pages: lookups land all over 30 MB, and in a virtual machine every TLB miss is a
  // two-level page walk.
  std::vector<Range, HugePageAllocator<Range>> ranges;
  std::vector<GeoInfo> infos;
  // index[a >> (32 - kIndexBits)]: the last range starting at or before the block's first
  // address; one more entry at the end.
  std::vector<uint32_t, HugePageAllocator<uint32_t>> index;

  // The place holding `a`, or null.
  const GeoInfo* Find(uint32_t a) const {
    uint32_t block = a >> (32 - kIndexBits);
    size_t i = index[block];
    const size_t last = index[block + 1];  // the range holding the next block's first address
    while (i < last && ranges[i + 1].start <= a) ++i;
    return ranges[i].info == kNone ? nullptr : &infos[ranges[i].info];
  }
  bool Lookup(uint32_t a, GeoInfo& out) const {
    const GeoInfo* g = Find(a);
    if (g) out = *g;
    return g != nullptr;
  }
};

namespace {
std::unique_ptr<Ipv4Table> BuildIpv4Table(const MMDB_s& mmdb);
}  // namespace

struct MmdbGeo::Db {
  MMDB_s mmdb{};
  bool ipv6 = false;  // the database's ip_version
  std::unique_ptr<Ipv4Table> v4;
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
    if (!db->ipv6) {
      db->v4 = BuildIpv4Table(db->mmdb);
      if (!db->v4) {
        return absl::InvalidArgumentError(
            fmt::format("geo database {} cannot be read: its search tree is damaged", path));
      }
    }
    char built[32] = "?";
    std::time_t t = static_cast<std::time_t>(db->mmdb.metadata.build_epoch);
    struct tm tm;
    if (gmtime_r(&t, &tm)) std::strftime(built, sizeof built, "%Y-%m-%d", &tm);
    geo->descriptions_.push_back(fmt::format(
        "{} ({}, built {}{})", path,
        db->mmdb.metadata.database_type ? db->mmdb.metadata.database_type : "?", built,
        db->v4 ? fmt::format("; {} IPv4 ranges read into memory", db->v4->ranges.size()) : ""));
    geo->dbs_.push_back(std::move(db));
  }
  if (geo->dbs_.empty()) return absl::NotFoundError("no geo database file exists");
  return geo;
}

MmdbGeo::~MmdbGeo() = default;

size_t MmdbGeo::ipv4_ranges() const {
  size_t n = 0;
  for (const auto& db : dbs_) n += db->v4 ? db->v4->ranges.size() : 0;
  return n;
}

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

// Reads an entry's fields into `out`; true when it places the address.
bool ReadEntry(MMDB_entry_s* entry, GeoInfo& out) {
  out.country = StringAt(entry, "country_code");
  out.city = StringAt(entry, "city");
  double lat, lon;
  if (NumberAt(entry, "latitude", &lat) && NumberAt(entry, "longitude", &lon) &&
      std::abs(lat) <= 90 && std::abs(lon) <= 180) {
    out.lat_e4 = static_cast<int32_t>(std::lround(lat * 1e4));
    out.lon_e4 = static_cast<int32_t>(std::lround(lon * 1e4));
  }
  return !out.country.empty() || out.lat_e4 != kNoCoordinate;
}

// Walks an IPv4 database's search tree once, depth first, so ranges come out in address order,
// into a table; adjacent ranges of one place merge. Null if the tree is not a sound IPv4 tree.
class Ipv4TableBuilder {
 public:
  explicit Ipv4TableBuilder(const MMDB_s& mmdb) : mmdb_(mmdb), t_(std::make_unique<Ipv4Table>()) {}

  std::unique_ptr<Ipv4Table> Build() {
    if (!Walk(0, 0, 0) || t_->ranges.empty() || t_->ranges[0].start != 0) return nullptr;
    constexpr uint64_t kBlocks = uint64_t{1} << Ipv4Table::kIndexBits;
    t_->index.resize(kBlocks + 1);
    size_t r = 0;
    for (uint64_t b = 0; b < kBlocks; ++b) {
      uint64_t first = b << (32 - Ipv4Table::kIndexBits);
      while (r + 1 < t_->ranges.size() && t_->ranges[r + 1].start <= first) ++r;
      t_->index[b] = static_cast<uint32_t>(r);
    }
    t_->index[kBlocks] = static_cast<uint32_t>(t_->ranges.size() - 1);
    t_->ranges.shrink_to_fit();
    return std::move(t_);
  }

 private:
  bool Walk(uint32_t node_number, int depth, uint64_t prefix) {
    MMDB_search_node_s node;
    if (depth >= 32 || node_number >= mmdb_.metadata.node_count ||
        MMDB_read_node(&mmdb_, node_number, &node) != MMDB_SUCCESS) {
      return false;
    }
    for (int side = 0; side <= 1; ++side) {
      uint8_t type = side ? node.right_record_type : node.left_record_type;
      uint64_t start = prefix | (static_cast<uint64_t>(side) << (31 - depth));
      if (type == MMDB_RECORD_TYPE_SEARCH_NODE) {
        uint64_t record = side ? node.right_record : node.left_record;
        if (!Walk(static_cast<uint32_t>(record), depth + 1, start)) return false;
      } else if (type == MMDB_RECORD_TYPE_DATA) {
        MMDB_entry_s entry = side ? node.right_record_entry : node.left_record_entry;
        Add(start, InfoOf(entry));
      } else if (type == MMDB_RECORD_TYPE_EMPTY) {
        Add(start, Ipv4Table::kNone);
      } else {
        return false;
      }
    }
    return true;
  }

  uint32_t InfoOf(MMDB_entry_s entry) {
    auto [it, added] = by_offset_.emplace(entry.offset, 0);
    if (!added) return it->second;
    GeoInfo g;
    if (!ReadEntry(&entry, g)) {
      it->second = Ipv4Table::kNone;
    } else {
      g.found = true;
      it->second = static_cast<uint32_t>(t_->infos.size());
      t_->infos.push_back(std::move(g));
    }
    return it->second;
  }

  void Add(uint64_t start, uint32_t info) {
    if (!t_->ranges.empty() && t_->ranges.back().info == info) return;  // the same place goes on
    t_->ranges.push_back({static_cast<uint32_t>(start), info});
  }

  const MMDB_s& mmdb_;
  std::unique_ptr<Ipv4Table> t_;
  absl::flat_hash_map<uint32_t, uint32_t> by_offset_;  // data offset -> infos index
};

std::unique_ptr<Ipv4Table> BuildIpv4Table(const MMDB_s& mmdb) {
  return Ipv4TableBuilder(mmdb).Build();
}

}  // namespace

bool MmdbGeo::Lookup(std::string_view ip, GeoInfo& out) const {
  std::optional<Ip128> parsed = ParseIp(ip);
  return parsed && LookupIp(*parsed, out);
}

bool MmdbGeo::LookupIp(const Ip128& ip, GeoInfo& out) const { return Find(ip, out, true); }

bool MmdbGeo::LookupView(const Ip128& ip, GeoView& out) const {
  if (ip.hi != 0 || (ip.lo >> 32) != 0xffff) return false;
  for (const auto& db : dbs_) {
    if (db->ipv6) continue;
    if (!db->v4) return false;
    const GeoInfo* g = db->v4->Find(static_cast<uint32_t>(ip.lo));
    if (!g) return false;  // as LookupIp: the next database may know it
    out.country = g->country;
    out.city = g->city;
    out.lat_e4 = g->lat_e4;
    out.lon_e4 = g->lon_e4;
    out.found = true;
    return true;
  }
  return false;
}

bool MmdbGeo::LookupIpInTree(const Ip128& ip, GeoInfo& out) const { return Find(ip, out, false); }

bool MmdbGeo::Find(const Ip128& ip, GeoInfo& out, bool use_table) const {
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
    if (v4 && db->v4 && use_table) {
      if (db->v4->Lookup(static_cast<uint32_t>(ip.lo), out)) return true;
      continue;
    }
    int mmdb_error = 0;
    const sockaddr* sa = v4 && !db->ipv6 ? reinterpret_cast<const sockaddr*>(&a4)
                                         : reinterpret_cast<const sockaddr*>(&a6);
    MMDB_lookup_result_s r = MMDB_lookup_sockaddr(const_cast<MMDB_s*>(&db->mmdb), sa, &mmdb_error);
    if (mmdb_error != MMDB_SUCCESS) return false;
    if (!r.found_entry) continue;
    return ReadEntry(&r.entry, out);
  }
  return false;
}

}  // namespace adpulse
