#include "state/click_attribution.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <random>
#include <vector>

#include "storage/click_store.h"
#include "window/aggregate.h"

namespace adpulse {
namespace {

constexpr int64_t kHour = 3'600'000;

struct TempStore {
  std::string dir = (std::filesystem::temp_directory_path() /
                     ("adpulse-attribution-test-" + std::to_string(std::random_device{}())))
                        .string();
  std::unique_ptr<ClickStore> store;
  TempStore() { Open(); }
  void Open() {
    ClickStoreOptions o;
    o.path = dir;
    auto s = ClickStore::Open(o);
    REQUIRE(s.ok());
    store = std::move(*s);
  }
  ~TempStore() {
    store.reset();
    std::filesystem::remove_all(dir);
  }
};

Event Click(std::string_view id, int64_t ts, std::string_view campaign, std::string_view country) {
  Event e;
  e.type = EventType::kClick;
  e.event_id = id;
  e.timestamp_ms = ts;
  e.dim(Dim::kCampaignId) = campaign;
  e.dim(Dim::kAdId) = "ad-1";
  e.dim(Dim::kPublisherId) = "pub-1";
  e.dim(Dim::kCountry) = country;
  e.dim(Dim::kCurrency) = "EUR";
  return e;
}

Event Conversion(std::string_view id, int64_t ts, std::string_view click_id) {
  Event e;
  e.type = EventType::kConversion;
  e.event_id = id;
  e.timestamp_ms = ts;
  e.click_id = click_id;
  e.dim(Dim::kCampaignId) = "conv-campaign";
  e.dim(Dim::kCountry) = "BR";
  return e;
}

}  // namespace

TEST_CASE("a stored click round-trips; a damaged one is refused", "[attribution]") {
  Event c = Click("k1", 1'764'000'000'000, "camp", "US");
  c.fraud_flags = kFraudInvalid;
  std::string v = ClickAttribution::EncodeClick(c);
  ClickAttribution::StoredClick got;
  REQUIRE(ClickAttribution::DecodeClick(v, &got));
  CHECK(got.timestamp_ms == c.timestamp_ms);
  CHECK(got.invalid);
  CHECK(got.dims == c.dims);
  CHECK_FALSE(ClickAttribution::DecodeClick(v.substr(0, v.size() - 1), &got));
  CHECK_FALSE(ClickAttribution::DecodeClick(v + "x", &got));
  CHECK_FALSE(ClickAttribution::DecodeClick("short", &got));
  std::string other_version = v;
  other_version[0] = 2;
  CHECK_FALSE(ClickAttribution::DecodeClick(other_version, &got));
}

TEST_CASE("conversions take their click's dimensions within the window", "[attribution]") {
  TempStore t;
  AttributionOptions o;
  o.window_ms = 24 * kHour;
  auto owned = std::make_unique<ClickAttribution>(*t.store, o);
  ClickAttribution& a = *owned;
  const int64_t t0 = 1'764'000'000'000;
  StableArena arena;
  std::vector<Event> clicks = {Click("c1", t0, "camp-a", "US"), Click("c2", t0, "camp-b", "DE")};
  REQUIRE(a.Process(clicks.data(), clicks.size(), arena).ok());
  CHECK(a.clicks_indexed() == 2);

  std::vector<Event> convs = {
      Conversion("v1", t0 + kHour, "c1"),           // attributed
      Conversion("v2", t0 + 24 * kHour, "c2"),      // at the window's edge: attributed
      Conversion("v3", t0 + 24 * kHour + 1, "c2"),  // past it
      Conversion("v4", t0 - 1, "c1"),               // before its click
      Conversion("v5", t0 + kHour, "nope"),         // unknown
      Conversion("v6", t0 + kHour, ""),             // none named
  };
  convs[0].dim(Dim::kCurrency) = "USD";  // its own currency stays (the validator fills USD)
  StableArena arena2;
  REQUIRE(a.Process(convs.data(), convs.size(), arena2).ok());
  CHECK(convs[0].attribution == Attribution::kAttributed);
  CHECK(convs[0].dim(Dim::kCampaignId) == "camp-a");
  CHECK(convs[0].dim(Dim::kCountry) == "US");
  CHECK(convs[0].dim(Dim::kAdId) == "ad-1");
  CHECK(convs[0].dim(Dim::kCurrency) == "USD");
  CHECK(convs[1].attribution == Attribution::kAttributed);
  CHECK(convs[1].dim(Dim::kCampaignId) == "camp-b");
  CHECK(convs[1].dim(Dim::kCurrency).empty());  // never its click's: money keeps its currency
  for (int i : {2, 3}) {
    CHECK(convs[i].attribution == Attribution::kOutsideWindow);
    CHECK(convs[i].dim(Dim::kCampaignId) == "conv-campaign");
  }
  CHECK(convs[4].attribution == Attribution::kUnknownClick);
  CHECK(convs[5].attribution == Attribution::kNoClickId);
  CHECK(a.outcomes(Attribution::kAttributed) == 2);
  CHECK(a.outcomes(Attribution::kOutsideWindow) == 2);

  // A reused click id keeps its first click, in the store and within a request alike.
  std::vector<Event> reused = {Click("c1", t0, "camp-other", "JP"),
                               Conversion("v9", t0 + kHour, "c1")};
  StableArena arena5;
  REQUIRE(a.Process(reused.data(), reused.size(), arena5).ok());
  std::vector<Event> after_reuse = {Conversion("v10", t0 + kHour, "c1")};
  REQUIRE(a.Process(after_reuse.data(), after_reuse.size(), arena5).ok());
  CHECK(after_reuse[0].dim(Dim::kCampaignId) == "camp-a");
  std::vector<Event> twice = {Click("c4", t0, "first", "US"), Click("c4", t0, "second", "US"),
                              Conversion("v11", t0 + 5, "c4")};
  REQUIRE(a.Process(twice.data(), twice.size(), arena5).ok());
  CHECK(twice[2].dim(Dim::kCampaignId) == "first");
  std::vector<Event> later_c4 = {Conversion("v12", t0 + 6, "c4")};
  REQUIRE(a.Process(later_c4.data(), later_c4.size(), arena5).ok());
  CHECK(later_c4[0].dim(Dim::kCampaignId) == "first");

  // No conversion is credited to an invalid click.
  std::vector<Event> bad = {Click("c5", t0, "camp-bot", "US")};
  bad[0].fraud_flags = kFraudInvalid;
  REQUIRE(a.Process(bad.data(), bad.size(), arena5).ok());
  std::vector<Event> after_bad = {Conversion("v13", t0 + kHour, "c5")};
  REQUIRE(a.Process(after_bad.data(), after_bad.size(), arena5).ok());
  CHECK(after_bad[0].attribution == Attribution::kInvalidClick);
  CHECK(after_bad[0].dim(Dim::kCampaignId) == "conv-campaign");

  // A click and its conversion in one request; and the index survives reopening the store.
  std::vector<Event> both = {Conversion("v7", t0 + 5, "c3"), Click("c3", t0, "camp-c", "FR")};
  StableArena arena3;
  REQUIRE(a.Process(both.data(), both.size(), arena3).ok());
  CHECK(both[0].attribution == Attribution::kAttributed);
  CHECK(both[0].dim(Dim::kCampaignId) == "camp-c");
  owned.reset();  // before its store
  t.store.reset();
  t.Open();
  ClickAttribution reopened(*t.store, o);
  std::vector<Event> later = {Conversion("v8", t0 + 2 * kHour, "c3")};
  StableArena arena4;
  REQUIRE(reopened.Process(later.data(), later.size(), arena4).ok());
  CHECK(later[0].attribution == Attribution::kAttributed);
  CHECK(later[0].dim(Dim::kCountry) == "FR");
}

TEST_CASE("with attribution off, conversions keep their fields and no outcome", "[attribution]") {
  TempStore t;
  AttributionOptions o;
  o.enabled = false;
  ClickAttribution a(*t.store, o);
  std::vector<Event> events = {Click("c1", 1000, "camp-a", "US"), Conversion("v1", 2000, "c1")};
  StableArena arena;
  REQUIRE(a.Process(events.data(), events.size(), arena).ok());
  CHECK(events[1].attribution == Attribution::kNone);
  CHECK(events[1].dim(Dim::kCampaignId) == "conv-campaign");
}

TEST_CASE("unattributed conversions are counted apart, valid ones only", "[attribution]") {
  Aggregate agg;
  Event c = Conversion("v", 1, "");
  c.attribution = Attribution::kNoClickId;
  agg.Add(c, std::nullopt);
  c.attribution = Attribution::kAttributed;
  agg.Add(c, std::nullopt);
  c.attribution = Attribution::kUnknownClick;
  c.fraud_flags = kFraudInvalid;  // invalid: fraud_conversions only
  agg.Add(c, std::nullopt);
  CHECK(agg.counters.conversions == 2);
  CHECK(agg.counters.unattributed_conversions == 1);
  CHECK(agg.counters.fraud_conversions == 1);
}

}  // namespace adpulse
