#include "state/recent_hours.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "window/time_bucket.h"

namespace adpulse {
namespace {

CubeCatalog TwoCubes() {
  return *CubeCatalog::Create(
      {{"campaign", {Dim::kCampaignId}}, {"campaign_country", {Dim::kCampaignId, Dim::kCountry}}});
}

// campaign -> impressions over the hours [first, end) of cube 0.
std::map<std::string, uint64_t> Impressions(const RecentHours& r, int64_t first, int64_t end) {
  std::map<std::string, uint64_t> out;
  r.ForEach(0, first, end,
            [&](const DimKey& key, const Counters& c) { out[r.Lookup(key[0])] += c.impressions; });
  return out;
}

}  // namespace

TEST_CASE("recent hours sum per hour, let old hours go and rebuild their interner", "[recent]") {
  CubeCatalog catalog = TwoCubes();
  const int64_t hour0 = 500'000;  // an hour index
  RecentHours r(catalog, 3, 64 << 20, hour0 * kHourMs + 5 * kMinuteMs);
  CHECK(r.first_hour() == hour0 - 2);
  Counters one;
  one.impressions = 1;
  // Hour 0 and 1: 2000 campaigns each, a different 2000.
  for (int64_t h = 0; h < 2; ++h) {
    for (int i = 0; i < 2000; ++i) {
      DimKey key{};
      key[0] = r.Intern("c" + std::to_string(h * 2000 + i));
      r.Add(0, hour0 + h, key, one);
      r.Add(0, hour0 + h, key, one);
    }
  }
  DimKey old{};
  old[0] = r.Intern("too-old");
  r.Add(0, hour0 - 3, old, one);  // before the first hour held: ignored
  CHECK(r.groups() == 4000);
  auto both = Impressions(r, hour0 - 10, hour0 + 10);
  CHECK(both.size() == 4000);
  CHECK(both["c0"] == 2);
  CHECK(both["c3999"] == 2);
  CHECK(both.count("too-old") == 0);
  CHECK(Impressions(r, hour0 + 1, hour0 + 2).size() == 2000);

  // Two hours on, hour 0 falls out of the three held: its 2000 values are no longer in a key,
  // more than half of the interner, which is rebuilt with new ids.
  uint64_t generation = r.generation();
  r.Advance((hour0 + 3) * kHourMs);
  CHECK(r.first_hour() == hour0 + 1);
  CHECK(r.generation() == generation + 1);
  CHECK(r.Find("c0") == -1);
  auto left = Impressions(r, hour0 - 10, hour0 + 10);
  CHECK(left.size() == 2000);
  CHECK(left.begin()->first == "c2000");
  CHECK(left["c3999"] == 2);
  // Ids handed out after the rebuild point at the right values.
  DimKey again{};
  again[0] = r.Intern("c2000");
  r.Add(0, hour0 + 2, again, one);
  CHECK(Impressions(r, hour0 + 2, hour0 + 3)["c2000"] == 1);
}

TEST_CASE("recent hours over budget drop the cube with more dimensions first", "[recent]") {
  CubeCatalog catalog = TwoCubes();
  RecentHours r(catalog, 2, 200'000, 10 * kHourMs);
  Counters one;
  one.clicks = 1;
  for (int i = 0; i < 600; ++i) {
    DimKey campaign{}, pair{};
    campaign[0] = pair[0] = r.Intern("c" + std::to_string(i % 50));
    pair[1] = r.Intern(i % 2 ? "US" : "DE");
    r.Add(0, 10, campaign, one);  // 50 groups
    r.Add(1, 10, pair, one);      // 100 groups: fewer than the campaign cube's bytes would be
  }
  r.EnforceBudget();
  CHECK(r.Holds(0));
  CHECK(r.Holds(1));  // both fit
  // 600 campaigns: each cube's table is about 115 KB and the interned values about 60 KB.
  auto fill = [&](RecentHours& h) {
    for (int i = 0; i < 600; ++i) {
      DimKey campaign{}, pair{};
      campaign[0] = pair[0] = h.Intern("c" + std::to_string(i));
      pair[1] = h.Intern("US");
      h.Add(0, 10, campaign, one);
      h.Add(1, 10, pair, one);
    }
    h.EnforceBudget();
  };
  RecentHours tight(catalog, 2, 200'000, 10 * kHourMs);
  fill(tight);
  CHECK(tight.Holds(0));
  CHECK_FALSE(tight.Holds(1));
  CHECK(tight.groups() == 600);
  CHECK(tight.Find("US") == -1);  // a value only the dropped cube used is let go
  CHECK(tight.Find("c599") >= 0);
  CHECK(tight.bytes() <= 200'000);
  RecentHours tiny(catalog, 2, 8'000, 10 * kHourMs);
  fill(tiny);
  CHECK_FALSE(tiny.Holds(0));
  CHECK_FALSE(tiny.Holds(1));
  CHECK(tiny.groups() == 0);
  tiny.Add(0, 10, DimKey{}, one);  // a dropped cube takes nothing
  CHECK(tiny.groups() == 0);
}

TEST_CASE("a cube with too many groups an hour is not held, whatever the budget", "[recent]") {
  CubeCatalog catalog = TwoCubes();
  RecentHours r(catalog, 2, size_t{1} << 32, 10 * kHourMs);
  Counters one;
  one.impressions = 1;
  uint32_t us = r.Intern("US");
  for (uint32_t i = 0; i <= RecentHours::kMaxGroupsPerHour; ++i) {
    DimKey pair{};
    pair[0] = r.Intern("c" + std::to_string(i));
    pair[1] = us;
    r.Add(1, 10, pair, one);
    if (i < 100) r.Add(0, 10, DimKey{pair[0]}, one);
  }
  r.EnforceBudget();
  CHECK(r.Holds(0));
  CHECK_FALSE(r.Holds(1));
  CHECK(r.groups() == 100);
  CHECK(r.Find("c100") == -1);  // only the dropped cube used it
}

}  // namespace adpulse
