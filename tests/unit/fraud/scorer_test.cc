// The scorer's signals one by one, each at the edge of its threshold, and what human traffic
// that naive rules trip on (a NAT, a double click, a slow click, a flight) does not fire.
#include "fraud/scorer.h"

#include <catch2/catch.hpp>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "fraud/enricher.h"
#include "fraud/ip_set.h"

namespace adpulse {
namespace {

constexpr int64_t kT0 = 1'764'340'800'000;  // 2025-11-28T14:40:00Z

// Events with owned strings (Event holds views).
struct Traffic {
  std::deque<std::string> strings;
  std::string_view S(std::string s) { return strings.emplace_back(std::move(s)); }

  Event Make(EventType type, int64_t ts, std::string user, std::string ip, std::string ad,
             std::string campaign = "c1") {
    Event e;
    e.type = type;
    e.timestamp_ms = ts;
    e.event_id = S("ev-" + std::to_string(next_id++));
    e.user_id = S(std::move(user));
    e.ip_address = S(std::move(ip));
    e.dim(Dim::kAdId) = S(std::move(ad));
    e.dim(Dim::kCampaignId) = S(std::move(campaign));
    e.user_agent = "Mozilla/5.0";
    return e;
  }
  int next_id = 0;
};

uint32_t ScoreOne(FraudScorer& s, Event e) {
  s.Score(&e, 1);
  return e.fraud_signals;
}

bool Has(uint32_t signals, Signal s) { return (signals & SignalBit(s)) != 0; }

}  // namespace

TEST_CASE("signals combine as independent evidence", "[fraud]") {
  SignalWeights w{};
  w[0] = 0.5;
  w[1] = 0.5;
  CHECK(CombineSignals(0, w) == 0);
  CHECK(CombineSignals(1, w) == Approx(0.5));
  CHECK(CombineSignals(3, w) == Approx(0.75));
  for (int i = 0; i < kSignalCount; ++i) {
    auto s = static_cast<Signal>(i);
    REQUIRE(ParseSignal(SignalName(s)) == s);
  }
  CHECK_FALSE(ParseSignal("nope"));
}

TEST_CASE("click flood: the clicks past the per-minute threshold of one IP", "[fraud]") {
  ScorerOptions o;
  o.click_flood_per_minute = 10;
  FraudScorer s(o);
  Traffic t;
  int flagged = 0;
  for (int i = 0; i < 15; ++i) {
    uint32_t sig = ScoreOne(
        s, t.Make(EventType::kClick, kT0 + i * 1000, "u" + std::to_string(i), "198.51.100.7", ""));
    flagged += Has(sig, Signal::kClickFlood);
  }
  CHECK(flagged == 5);  // the 11th to the 15th
  // A minute later the window has slid past them.
  CHECK_FALSE(Has(ScoreOne(s, t.Make(EventType::kClick, kT0 + 80'000, "u", "198.51.100.7", "")),
                  Signal::kClickFlood));
  // Another IP is unaffected.
  CHECK_FALSE(Has(ScoreOne(s, t.Make(EventType::kClick, kT0 + 14'000, "u", "198.51.100.8", "")),
                  Signal::kClickFlood));
}

TEST_CASE("click farm: many users clicking from one IP; a NAT of many users browsing is not",
          "[fraud]") {
  ScorerOptions o;
  FraudScorer s(o);
  Traffic t;
  // An office/carrier NAT: 200 users, each a few impressions and now and then a click.
  int nat_flagged = 0;
  for (int i = 0; i < 200; ++i) {
    std::string user = "nat-user-" + std::to_string(i);
    for (int k = 0; k < 5; ++k) {
      Event e =
          t.Make(EventType::kImpression, kT0 + i * 1000 + k * 100, user, "203.0.113.1", "ad-1");
      s.Score(&e, 1);
    }
    if (i % 20 == 0) {
      nat_flagged += Has(
          ScoreOne(s, t.Make(EventType::kClick, kT0 + i * 1000 + 600, user, "203.0.113.1", "ad-1")),
          Signal::kClickFarm);
    }
  }
  CHECK(nat_flagged == 0);
  // A farm: 60 users on one IP, each clicking.
  int farm_flagged = 0;
  for (int i = 0; i < 60; ++i) {
    std::string user = "farm-" + std::to_string(i);
    Event imp = t.Make(EventType::kImpression, kT0 + i * 2000, user, "192.0.2.50", "ad-2");
    s.Score(&imp, 1);
    farm_flagged += Has(
        ScoreOne(s, t.Make(EventType::kClick, kT0 + i * 2000 + 5000, user, "192.0.2.50", "ad-2")),
        Signal::kClickFarm);
  }
  CHECK(farm_flagged >= 25);  // once 30 distinct users are seen
  CHECK(farm_flagged <= 35);
}

TEST_CASE("blocklist: addresses and CIDR ranges, IPv4 and IPv6, swapped whole", "[fraud]") {
  auto set = IpSet::Parse("# bad actors\n192.0.2.0/24\n2001:db8::/32  # doc range\n198.51.100.9\n",
                          "blocklist.txt");
  REQUIRE(set.ok());
  CHECK(set->Contains("192.0.2.200"));
  CHECK_FALSE(set->Contains("192.0.3.1"));
  CHECK(set->Contains("2001:db8:1::5"));
  CHECK_FALSE(set->Contains("2001:db9::1"));
  CHECK(set->Contains("198.51.100.9"));
  CHECK_FALSE(set->Contains("198.51.100.10"));
  CHECK_FALSE(set->Contains("not an ip"));
  auto bad = IpSet::Parse("10.0.0.0/8\n10.0.0.0/33\n", "b.txt");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() == "b.txt:2: '10.0.0.0/33' is not an IP address or CIDR range");

  FraudScorer s(ScorerOptions{});
  Traffic t;
  s.SetBlocklist(std::make_shared<const IpSet>(*set));
  Event e = t.Make(EventType::kImpression, kT0, "u1", "192.0.2.1", "ad");
  s.Score(&e, 1);
  CHECK(Has(e.fraud_signals, Signal::kBlocklistedIp));
  CHECK(e.invalid());
  CHECK(e.fraud_score_milli == 1000);
  s.SetBlocklist(nullptr);
  Event f = t.Make(EventType::kImpression, kT0, "u1", "192.0.2.1", "ad");
  s.Score(&f, 1);
  CHECK_FALSE(f.invalid());
}

TEST_CASE("impossible timing and orphan clicks; a click minutes later stands", "[fraud]") {
  ScorerOptions o;
  FraudScorer s(o);
  Traffic t;
  Event imp = t.Make(EventType::kImpression, kT0, "u1", "203.0.113.5", "ad-1");
  s.Score(&imp, 1);
  uint32_t fast = ScoreOne(s, t.Make(EventType::kClick, kT0 + 40, "u1", "203.0.113.5", "ad-1"));
  CHECK(Has(fast, Signal::kImpossibleTiming));
  Event imp2 = t.Make(EventType::kImpression, kT0 + 1000, "u2", "203.0.113.6", "ad-1");
  s.Score(&imp2, 1);
  uint32_t slow =
      ScoreOne(s, t.Make(EventType::kClick, kT0 + 1000 + 240'000, "u2", "203.0.113.6", "ad-1"));
  CHECK(slow == 0);
  // u3 never saw ad-1; the campaign's impressions are being received: orphan.
  uint32_t orphan = ScoreOne(s, t.Make(EventType::kClick, kT0 + 5000, "u3", "203.0.113.7", "ad-1"));
  CHECK(Has(orphan, Signal::kOrphanClick));
  // A campaign with no impressions at all (its impressions are tracked elsewhere): not judged.
  uint32_t elsewhere =
      ScoreOne(s, t.Make(EventType::kClick, kT0 + 5000, "u3", "203.0.113.7", "ad-9", "c-no-imps"));
  CHECK_FALSE(Has(elsewhere, Signal::kOrphanClick));
  // After a restart whose rebuild covers less than the attribution window: not judged yet.
  s.SetHistoryFrom(kT0);
  uint32_t early = ScoreOne(s, t.Make(EventType::kClick, kT0 + 6000, "u4", "203.0.113.8", "ad-1"));
  CHECK_FALSE(Has(early, Signal::kOrphanClick));
}

TEST_CASE("repeated clicks: a double click stands, the third and later do not", "[fraud]") {
  FraudScorer s(ScorerOptions{});
  Traffic t;
  Event imp = t.Make(EventType::kImpression, kT0, "u1", "203.0.113.5", "ad-1");
  s.Score(&imp, 1);
  std::vector<bool> flagged;
  for (int i = 0; i < 5; ++i) {
    flagged.push_back(Has(
        ScoreOne(s, t.Make(EventType::kClick, kT0 + 2000 + i * 3000, "u1", "203.0.113.5", "ad-1")),
        Signal::kRepeatedClick));
  }
  CHECK(flagged == std::vector<bool>{false, false, true, true, true});
  // Outside the window it starts over.
  CHECK_FALSE(
      Has(ScoreOne(s, t.Make(EventType::kClick, kT0 + 2000 + 700'000, "u1", "203.0.113.5", "ad-1")),
          Signal::kRepeatedClick));
}

TEST_CASE("geo anomaly: faster than a plane; a real flight is not", "[fraud]") {
  FraudScorer s(ScorerOptions{});
  Traffic t;
  auto at = [&](int64_t ts, std::string user, int32_t lat, int32_t lon) {
    Event e = t.Make(EventType::kImpression, ts, std::move(user), "203.0.113.9", "ad-1");
    e.lat_e4 = lat;
    e.lon_e4 = lon;
    return ScoreOne(s, e);
  };
  // New York, then Tokyo 20 minutes later (10,800 km).
  CHECK(at(kT0, "u1", 407128, -740060) == 0);
  CHECK(Has(at(kT0 + 20 * 60'000, "u1", 356762, 1396503), Signal::kGeoAnomaly));
  // New York, then London 8 hours later (5,570 km: a flight).
  CHECK(at(kT0, "u2", 407128, -740060) == 0);
  CHECK(at(kT0 + 8 * 3'600'000, "u2", 515074, -1278) == 0);
  // Within the tolerance (Berlin to Potsdam, a minute apart): not an anomaly.
  CHECK(at(kT0, "u3", 525200, 134050) == 0);
  CHECK(at(kT0 + 60'000, "u3", 523906, 130645) == 0);
}

TEST_CASE("click injection: a conversion moments after its click", "[fraud]") {
  FraudScorer s(ScorerOptions{});
  Traffic t;
  Event imp = t.Make(EventType::kImpression, kT0, "u1", "203.0.113.5", "ad-1");
  s.Score(&imp, 1);
  Event click = t.Make(EventType::kClick, kT0 + 3000, "u1", "203.0.113.5", "ad-1");
  s.Score(&click, 1);
  Event fast = t.Make(EventType::kConversion, kT0 + 3500, "u1", "203.0.113.5", "ad-1");
  fast.click_id = click.event_id;
  s.Score(&fast, 1);
  CHECK(Has(fast.fraud_signals, Signal::kClickInjection));
  Event later = t.Make(EventType::kConversion, kT0 + 90'000, "u1", "203.0.113.5", "ad-1");
  later.click_id = click.event_id;
  s.Score(&later, 1);
  CHECK(later.fraud_signals == 0);
}

TEST_CASE("the verdict follows the score; a restart's rebuild restores the state", "[fraud]") {
  ScorerOptions o;
  o.click_flood_per_minute = 5;
  Traffic t;
  std::vector<Event> events;
  for (int i = 0; i < 8; ++i) {
    events.push_back(
        t.Make(EventType::kClick, kT0 + i * 100, "u" + std::to_string(i), "198.51.100.1", ""));
  }
  FraudScorer live(o);
  live.Score(events.data(), events.size());
  CHECK(events[5].invalid());
  CHECK(events[5].fraud_score_milli == 900);
  CHECK_FALSE(events[4].invalid());
  // A new scorer that observed the first 6 (the log) continues where the old one was.
  FraudScorer restarted(o);
  restarted.Observe(events.data(), 6);
  CHECK(restarted.stats().scored == 0);
  Event next = t.Make(EventType::kClick, kT0 + 900, "u9", "198.51.100.1", "");
  restarted.Score(&next, 1);
  CHECK(Has(next.fraud_signals, Signal::kClickFlood));
  auto st = live.stats();
  CHECK(st.scored == 8);
  CHECK(st.invalid == 3);
  CHECK(st.fired[static_cast<int>(Signal::kClickFlood)] == 3);
  CHECK(st.ips == 1);
}

TEST_CASE("state stays within its memory budget", "[fraud]") {
  ScorerOptions o;
  o.memory_bytes = 4 << 20;
  FraudScorer s(o);
  Traffic t;
  std::vector<Event> batch;
  for (int i = 0; i < 200'000; ++i) {
    Event e;
    e.type = EventType::kImpression;
    e.timestamp_ms = kT0 + i;
    std::string id = std::to_string(i);
    e.user_id = t.S("u" + id);
    e.ip_address =
        t.S("10." + std::to_string(i % 250) + "." + std::to_string(i / 250 % 250) + ".1");
    e.dim(Dim::kAdId) = "ad";
    e.dim(Dim::kCampaignId) = "c";
    batch.push_back(e);
    if (batch.size() == 1000) {
      s.Score(batch.data(), batch.size());
      batch.clear();
      t.strings.clear();
    }
  }
  auto st = s.stats();
  CHECK(st.reserved_bytes <= o.memory_bytes);
  CHECK(st.reserved_bytes > o.memory_bytes * 9 / 10);
  CHECK(st.memory_bytes <= st.reserved_bytes);
  CHECK(st.evictions > 0);
  CHECK(st.users < 200'000);
  CHECK(st.users > 10'000);  // the table fills before it evicts
}

TEST_CASE("concurrent scorers see each other's traffic", "[fraud]") {
  ScorerOptions o;
  o.click_flood_per_minute = 1000;
  FraudScorer s(o);
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&s, th] {
      Traffic t;
      for (int i = 0; i < 400; ++i) {
        std::vector<Event> b;
        b.push_back(t.Make(EventType::kClick, kT0 + i * 10, "u" + std::to_string(th),
                           "198.51.100.3", "", "camp-" + std::to_string(th)));
        s.Score(b.data(), b.size());
      }
    });
  }
  for (auto& t : threads) t.join();
  // 1,600 clicks in 4 s from one IP across four campaigns and threads: 600 past the threshold.
  CHECK(s.stats().fired[static_cast<int>(Signal::kClickFlood)] == 600);
}

TEST_CASE("device mismatch: carried fields that contradict the user agent", "[fraud]") {
  CHECK_FALSE(ContradictsBrowser("Chrome", "Chrome Mobile"));
  CHECK_FALSE(ContradictsBrowser("safari", "Mobile Safari"));
  CHECK_FALSE(ContradictsBrowser("Edge", "Edge"));
  CHECK_FALSE(ContradictsBrowser("Chrome", "Other"));
  CHECK(ContradictsBrowser("Firefox", "Chrome"));
  CHECK_FALSE(ContradictsOs("macOS", "Mac OS X"));
  CHECK_FALSE(ContradictsOs("Windows", "Windows"));
  CHECK_FALSE(ContradictsOs("iOS", "iOS"));
  CHECK_FALSE(ContradictsOs("linux", "Ubuntu"));
  CHECK(ContradictsOs("iOS", "Android"));
  CHECK(ContradictsOs("Windows", "Mac OS X"));
  CHECK(ContradictsDevice("desktop", DeviceClass::kMobile));
  CHECK_FALSE(ContradictsDevice("mobile", DeviceClass::kMobile));
  CHECK_FALSE(ContradictsDevice("tv", DeviceClass::kMobile));
  CHECK_FALSE(ContradictsDevice("desktop", DeviceClass::kUnknown));
}

}  // namespace adpulse
