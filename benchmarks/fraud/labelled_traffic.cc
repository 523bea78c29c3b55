#include "fraud/labelled_traffic.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>

#include "fraud/ip_set.h"

namespace adpulse {

std::string_view PatternName(Pattern p) {
  static constexpr std::array<std::string_view, kPatternCount> kNames = {
      "human",          "bot",         "no_user_agent",     "click_flood",
      "click_farm",     "blocklisted", "impossible_timing", "orphan_click",
      "repeated_click", "geo_anomaly", "device_mismatch",   "click_injection"};
  return kNames[static_cast<int>(p)];
}

namespace {

// A user agent with the fields an SDK would carry for it.
struct Agent {
  const char* ua;
  const char* device_type;
  const char* os;
  const char* browser;
};

constexpr Agent kHumanAgents[] = {
    {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.6099.130 Safari/537.36",
     "desktop", "Windows", "Chrome"},
    {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.97",
     "desktop", "Windows", "Edge"},
    {"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0", "desktop",
     "Windows", "Firefox"},
    {"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Safari/605.1.15",
     "desktop", "Mac OS X", "Safari"},
    {"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36",
     "desktop", "macOS", "Chrome"},
    {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
     "Safari/537.36",
     "desktop", "Linux", "Chrome"},
    {"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "desktop",
     "Ubuntu", "Firefox"},
    {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
     "mobile", "iOS", "Mobile Safari"},
    {"Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
     "mobile", "iOS", "Chrome"},
    {"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.6099.144 Mobile Safari/537.36",
     "mobile", "Android", "Chrome Mobile"},
    {"Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
     "mobile", "Android", "Samsung Internet"},
    {"Mozilla/5.0 (Linux; Android 12; moto g(60)) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.0.0 Mobile Safari/537.36",
     "mobile", "Android", "Chrome"},
    {"Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Mobile/15E148 Safari/604.1",
     "tablet", "iOS", "Mobile Safari"},
    {"Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36",
     "tablet", "Android", "Chrome"},
};
constexpr int kHumanAgentCount = sizeof(kHumanAgents) / sizeof(kHumanAgents[0]);

constexpr const char* kBotAgents[] = {
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "python-requests/2.31.0",
    "curl/8.4.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.0.0 "
    "Safari/537.36",
    "Scrapy/2.11.0 (+https://scrapy.org)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
};

constexpr int kCampaigns = 12;
constexpr int kAdsPerCampaign = 4;

class Builder {
 public:
  Builder(const TrafficOptions& o, const std::vector<LocatedIp>& ips)
      : o_(o), ips_(ips), rng_(o.seed) {}

  std::vector<LabelledEvent> Build() {
    Humans();
    if (o_.attacks) Attacks();
    std::stable_sort(out_.begin(), out_.end(), [](const LabelledEvent& a, const LabelledEvent& b) {
      return a.timestamp_ms < b.timestamp_ms;
    });
    return std::move(out_);
  }

 private:
  int64_t Start() const { return o_.end_ms - o_.span_ms; }
  double U() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  int Pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  int64_t TimeIn(int64_t from, int64_t to) {
    return std::uniform_int_distribution<int64_t>(from, std::max(from, to))(rng_);
  }
  const LocatedIp& AnyIp() {
    return ips_[static_cast<size_t>(Pick(static_cast<int>(ips_.size())))];
  }
  const Agent& HumanAgent() { return kHumanAgents[Pick(kHumanAgentCount)]; }

  LabelledEvent& Add(EventType type, int64_t ts, int campaign, int ad, const std::string& user,
                     const std::string& ip, const Agent& agent, Pattern pattern, bool invalid,
                     bool carry_fields) {
    // Past the end of the traffic: made (so the random sequence stays the same) but not kept.
    LabelledEvent& e = ts > o_.end_ms ? spare_ : out_.emplace_back();
    e = LabelledEvent();
    e.event_id = fmt::format("{}-{}", o_.id_prefix, next_id_++);
    e.type = type;
    e.timestamp_ms = ts;
    e.campaign = fmt::format("camp-{}", campaign);
    e.ad = fmt::format("ad-{}-{}", campaign, ad);
    e.advertiser = fmt::format("adv-{}", campaign % 4);
    e.publisher = fmt::format("pub-{}", (campaign * 7 + ad) % 9);
    e.placement = fmt::format("slot-{}", ad % 3);
    e.user = user;
    e.session = fmt::format("s-{}-{}", user, ts / 1'800'000);
    e.ip = ip;
    e.ua = agent.ua;
    e.page_url = fmt::format("https://news{}.example.com/articles/{}", campaign % 5, Pick(5000));
    if (carry_fields) {
      e.device_type = agent.device_type;
      e.os = agent.os;
      e.browser = agent.browser;
    }
    e.bid_micros = type == EventType::kImpression ? 1'000 + Pick(4'000)
                   : type == EventType::kClick    ? 200'000 + Pick(1'500'000)
                                                  : 2'000'000 + Pick(20'000'000);
    e.pattern = pattern;
    e.invalid = invalid;
    return e;
  }

  // A realistic delay from an impression to its click: mostly seconds, some minutes.
  int64_t ClickDelay() {
    double r = U();
    if (r < 0.6) return 800 + Pick(20'000);
    if (r < 0.9) return 20'000 + Pick(100'000);
    return 120'000 + Pick(600'000);  // minutes later
  }

  void Humans() {
    // Where each user is: most alone on an address; some behind six carrier NATs (250 users
    // each) and two offices (60 each).
    std::vector<const LocatedIp*> nat, office;
    for (int i = 0; i < 6; ++i) nat.push_back(&AnyIp());
    for (int i = 0; i < 2; ++i) office.push_back(&AnyIp());
    for (int u = 0; u < o_.humans; ++u) {
      std::string user = fmt::format("{}-user-{}", o_.id_prefix, u);
      const LocatedIp* home = u < 1500   ? nat[static_cast<size_t>(u / 250)]
                              : u < 1620 ? office[static_cast<size_t>((u - 1500) / 60)]
                                         : &AnyIp();
      const Agent& agent = HumanAgent();
      bool carry = U() < 0.4;  // an SDK that sends device fields
      // A traveller flies once: after the flight, events come from another city's address.
      bool travels = U() < 0.02;
      int64_t flight_at = TimeIn(Start(), o_.end_ms);
      const LocatedIp* away = &AnyIp();
      double km = DistanceKm(home->lat_e4, home->lon_e4, away->lat_e4, away->lon_e4);
      int64_t lands = flight_at + static_cast<int64_t>(km / 800.0 * 3.6e6) + 1'800'000;
      // Where the user is at `t`; null while in the air.
      auto where = [&](int64_t t) -> const LocatedIp* {
        if (!travels || t < flight_at) return home;
        return t >= lands ? away : nullptr;
      };
      int impressions = 2 + Pick(12);
      for (int k = 0; k < impressions; ++k) {
        int64_t ts = TimeIn(Start(), o_.end_ms - 60'000);
        const LocatedIp* at = where(ts);
        if (!at) continue;
        int campaign = Pick(kCampaigns), ad = Pick(kAdsPerCampaign);
        Add(EventType::kImpression, ts, campaign, ad, user, at->ip, agent, Pattern::kHuman, false,
            carry);
        if (U() >= 0.04) continue;  // CTR about 4 %
        int64_t click_ts = ts + ClickDelay();
        if (where(click_ts) != at) continue;  // boarded meanwhile
        const LabelledEvent& click = Add(EventType::kClick, click_ts, campaign, ad, user, at->ip,
                                         agent, Pattern::kHuman, false, carry);
        std::string click_id = click.event_id;
        if (U() < 0.08) {  // a person clicking twice
          Add(EventType::kClick, click_ts + 300 + Pick(3'000), campaign, ad, user, at->ip, agent,
              Pattern::kHuman, false, carry);
        }
        int64_t conv_ts = click_ts + 60'000 + Pick(1'800'000);
        if (U() < 0.1 && where(conv_ts) == at) {  // converts, a minute to half an hour later
          Add(EventType::kConversion, conv_ts, campaign, ad, user, at->ip, agent, Pattern::kHuman,
              false, carry)
              .click_id = click_id;
        }
      }
    }
  }

  std::string NewUser(const char* kind) {
    return fmt::format("{}-{}-{}", o_.id_prefix, kind, next_user_++);
  }

  void Attacks() {
    const int64_t from = Start() + 3'600'000;  // after an hour of ordinary traffic
    // Bots and crawlers: they render pages, so impressions, and follow some ad links.
    for (int b = 0; b < 40; ++b) {
      Agent bot{kBotAgents[b % 8], "", "", ""};
      std::string user = NewUser("bot");
      const LocatedIp& ip = AnyIp();
      for (int k = 0; k < 60; ++k) {
        int64_t ts = TimeIn(from, o_.end_ms - 60'000);
        int campaign = Pick(kCampaigns), ad = Pick(kAdsPerCampaign);
        Add(EventType::kImpression, ts, campaign, ad, user, ip.ip, bot, Pattern::kBot, true, false);
        if (k % 6 == 0) {
          Add(EventType::kClick, ts + 1'000 + Pick(4'000), campaign, ad, user, ip.ip, bot,
              Pattern::kBot, true, false);
        }
      }
    }
    // No user agent at all.
    Agent none{"", "", "", ""};
    for (int k = 0; k < 600; ++k) {
      std::string user = NewUser("noua");
      const LocatedIp& ip = AnyIp();
      int64_t ts = TimeIn(from, o_.end_ms - 60'000);
      int campaign = Pick(kCampaigns), ad = Pick(kAdsPerCampaign);
      Add(EventType::kImpression, ts, campaign, ad, user, ip.ip, none, Pattern::kNoUserAgent, true,
          false);
      if (k % 4 == 0) {
        Add(EventType::kClick, ts + 2'000 + Pick(8'000), campaign, ad, user, ip.ip, none,
            Pattern::kNoUserAgent, true, false);
      }
    }
    // Click floods: three addresses, each 400 clicks within a minute, no impressions.
    for (int f = 0; f < 3; ++f) {
      const LocatedIp& ip = AnyIp();
      const Agent& agent = HumanAgent();
      int64_t at = TimeIn(from, o_.end_ms - 120'000);
      int campaign = Pick(kCampaigns);
      for (int k = 0; k < 400; ++k) {
        Add(EventType::kClick, at + k * 150, campaign, Pick(kAdsPerCampaign), NewUser("flood"),
            ip.ip, agent, Pattern::kClickFlood, true, false);
      }
    }
    // A click farm: 60 workers on one address, each seeing ads and clicking them.
    {
      const LocatedIp& ip = AnyIp();
      std::vector<std::string> workers;
      for (int w = 0; w < 60; ++w) workers.push_back(NewUser("farm"));
      for (int k = 0; k < 360; ++k) {
        const std::string& user = workers[static_cast<size_t>(Pick(60))];
        int64_t ts = from + k * 8'000 + Pick(4'000);
        int campaign = Pick(kCampaigns), ad = Pick(kAdsPerCampaign);
        const Agent& agent = kHumanAgents[Pick(kHumanAgentCount)];
        Add(EventType::kImpression, ts, campaign, ad, user, ip.ip, agent, Pattern::kClickFarm, true,
            false);
        Add(EventType::kClick, ts + 3'000 + Pick(15'000), campaign, ad, user, ip.ip, agent,
            Pattern::kClickFarm, true, false);
      }
    }
    // Blocklisted addresses, otherwise human-looking.
    for (int k = 0; k < 200; ++k) {
      std::string user = NewUser("blocked");
      std::string ip = fmt::format("192.0.2.{}", 1 + Pick(250));
      const Agent& agent = HumanAgent();
      int64_t ts = TimeIn(from, o_.end_ms - 600'000);
      int campaign = Pick(kCampaigns), ad = Pick(kAdsPerCampaign);
      Add(EventType::kImpression, ts, campaign, ad, user, ip, agent, Pattern::kBlocklisted, true,
          false);
      Add(EventType::kClick, ts + ClickDelay(), campaign, ad, user, ip, agent,
          Pattern::kBlocklisted, true, false);
    }
    // Impossible timing: a script clicks 10 to 90 ms after the impression.
    for (int k = 0; k < 300; ++k) {
      std::string user = NewUser("fast");
      const LocatedIp& ip = AnyIp();
      const Agent& agent = HumanAgent();
      int64_t ts = TimeIn(from, o_.end_ms - 60'000);
      int campaign = Pick(kCampaigns), ad = Pick(kAdsPerCampaign);
      Add(EventType::kImpression, ts, campaign, ad, user, ip.ip, agent, Pattern::kImpossibleTiming,
          true, false);
      Add(EventType::kClick, ts + 10 + Pick(80), campaign, ad, user, ip.ip, agent,
          Pattern::kImpossibleTiming, true, false);
    }
    // Orphan clicks: click spam with no impression behind it, from many addresses.
    for (int k = 0; k < 500; ++k) {
      const LocatedIp& ip = AnyIp();
      Add(EventType::kClick, TimeIn(from, o_.end_ms - 60'000), Pick(kCampaigns),
          Pick(kAdsPerCampaign), NewUser("orphan"), ip.ip, HumanAgent(), Pattern::kOrphanClick,
          true, false);
    }
    // Repeated clicks: one impression, then ten clicks within five minutes; the first two stand.
    for (int r = 0; r < 50; ++r) {
      std::string user = NewUser("repeat");
      const LocatedIp& ip = AnyIp();
      const Agent& agent = HumanAgent();
      int64_t ts = TimeIn(from, o_.end_ms - 900'000);
      int campaign = Pick(kCampaigns), ad = Pick(kAdsPerCampaign);
      Add(EventType::kImpression, ts, campaign, ad, user, ip.ip, agent, Pattern::kHuman, false,
          false);
      for (int k = 0; k < 10; ++k) {
        bool extra = k >= 2;
        Add(EventType::kClick, ts + 5'000 + k * 30'000 + Pick(5'000), campaign, ad, user, ip.ip,
            agent, extra ? Pattern::kRepeatedClick : Pattern::kHuman, extra, false);
      }
    }
    // Geo anomaly: a user's id used from a far city minutes after it was seen at home (a stolen
    // cookie, a proxy): what happens there is invalid.
    for (int g = 0; g < 100; ++g) {
      std::string user = NewUser("geo");
      const LocatedIp* home = &AnyIp();
      const LocatedIp* far = &AnyIp();
      for (int tries = 0; tries < 50; ++tries) {
        if (DistanceKm(home->lat_e4, home->lon_e4, far->lat_e4, far->lon_e4) > 3'000) break;
        far = &AnyIp();
      }
      const Agent& agent = HumanAgent();
      int64_t ts = TimeIn(from, o_.end_ms - 900'000);
      int campaign = Pick(kCampaigns), ad = Pick(kAdsPerCampaign);
      Add(EventType::kImpression, ts, campaign, ad, user, home->ip, agent, Pattern::kHuman, false,
          false);
      int64_t there = ts + 300'000 + Pick(600'000);
      int ad2 = (ad + 1) % kAdsPerCampaign;
      Add(EventType::kImpression, there, campaign, ad2, user, far->ip, agent, Pattern::kGeoAnomaly,
          true, false);
      Add(EventType::kClick, there + 2'000 + Pick(10'000), campaign, ad2, user, far->ip, agent,
          Pattern::kGeoAnomaly, true, false);
      Add(EventType::kClick, there + 30'000 + Pick(10'000), campaign, ad2, user, far->ip, agent,
          Pattern::kGeoAnomaly, true, false);
    }
    // Device mismatch: an SDK that claims a Windows desktop Chrome, with an iPhone's agent.
    for (int k = 0; k < 300; ++k) {
      std::string user = NewUser("spoof");
      const LocatedIp& ip = AnyIp();
      Agent spoof{kHumanAgents[7].ua, "desktop", "Windows", "Chrome"};
      int64_t ts = TimeIn(from, o_.end_ms - 600'000);
      int campaign = Pick(kCampaigns), ad = Pick(kAdsPerCampaign);
      Add(EventType::kImpression, ts, campaign, ad, user, ip.ip, spoof, Pattern::kDeviceMismatch,
          true, true);
      Add(EventType::kClick, ts + ClickDelay(), campaign, ad, user, ip.ip, spoof,
          Pattern::kDeviceMismatch, true, true);
    }
    // Click injection: a click fired moments before an install completes, with no impression,
    // and the conversion credited to it within a second.
    for (int k = 0; k < 200; ++k) {
      std::string user = NewUser("inject");
      const LocatedIp& ip = AnyIp();
      const Agent& agent = kHumanAgents[9];
      int64_t ts = TimeIn(from, o_.end_ms - 60'000);
      int campaign = Pick(kCampaigns), ad = Pick(kAdsPerCampaign);
      const LabelledEvent& click = Add(EventType::kClick, ts, campaign, ad, user, ip.ip, agent,
                                       Pattern::kClickInjection, true, false);
      std::string id = click.event_id;
      Add(EventType::kConversion, ts + 100 + Pick(700), campaign, ad, user, ip.ip, agent,
          Pattern::kClickInjection, true, false)
          .click_id = id;
    }
  }

  const TrafficOptions& o_;
  const std::vector<LocatedIp>& ips_;
  std::mt19937_64 rng_;
  std::vector<LabelledEvent> out_;
  LabelledEvent spare_;
  uint64_t next_id_ = 0, next_user_ = 0;
};

}  // namespace

std::vector<LocatedIp> SampleLocatedIps(const GeoSource* geo, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<LocatedIp> out;
  auto blocked = IpSet::Parse(kTrafficBlocklist, "traffic");
  while (static_cast<int>(out.size()) < n) {
    uint32_t a = static_cast<uint32_t>(rng());
    int first = static_cast<int>(a >> 24);
    // Skip private, loopback, multicast and reserved space.
    if (first == 0 || first == 10 || first == 127 || first >= 224 || first == 100 ||
        (first == 192 && ((a >> 16) & 0xff) == 168) || (first == 172 && ((a >> 20) & 0xf) == 1) ||
        (first == 169 && ((a >> 16) & 0xff) == 254)) {
      continue;
    }
    std::string ip =
        fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
    if (blocked->Contains(ip)) continue;
    LocatedIp l;
    l.ip = ip;
    if (geo) {
      GeoInfo g;
      if (!geo->Lookup(ip, g) || g.lat_e4 == kNoCoordinate) continue;
      l.lat_e4 = g.lat_e4;
      l.lon_e4 = g.lon_e4;
    } else {
      l.lat_e4 = static_cast<int32_t>(rng() % 1'200'000) - 600'000;
      l.lon_e4 = static_cast<int32_t>(rng() % 3'600'000) - 1'800'000;
    }
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<LabelledEvent> GenerateTraffic(const TrafficOptions& options,
                                           const std::vector<LocatedIp>& ips) {
  return Builder(options, ips).Build();
}

Event ToEvent(const LabelledEvent& l) {
  Event e;
  e.event_id = l.event_id;
  e.type = l.type;
  e.timestamp_ms = l.timestamp_ms;
  e.bid_micros = l.bid_micros;
  e.dim(Dim::kCampaignId) = l.campaign;
  e.dim(Dim::kAdId) = l.ad;
  e.dim(Dim::kAdvertiserId) = l.advertiser;
  e.dim(Dim::kPublisherId) = l.publisher;
  e.dim(Dim::kPlacementId) = l.placement;
  e.dim(Dim::kDeviceType) = l.device_type;
  e.dim(Dim::kOs) = l.os;
  e.dim(Dim::kBrowser) = l.browser;
  e.dim(Dim::kCurrency) = "USD";
  e.user_id = l.user;
  e.session_id = l.session;
  e.ip_address = l.ip;
  e.user_agent = l.ua;
  e.page_url = l.page_url;
  e.click_id = l.click_id;
  return e;
}

std::string ToJson(const LabelledEvent& e) {
  std::string out = fmt::format(
      R"({{"event_id":"{}","event_type":"{}","timestamp":{},"campaign_id":"{}","ad_id":"{}",)"
      R"("advertiser_id":"{}","publisher_id":"{}","placement_id":"{}","user_id":"{}",)"
      R"("session_id":"{}","ip_address":"{}","user_agent":"{}","page_url":"{}",)"
      R"("bid_price":{}.{:06},"currency":"USD")",
      e.event_id, EventTypeName(e.type), e.timestamp_ms, e.campaign, e.ad, e.advertiser,
      e.publisher, e.placement, e.user, e.session, e.ip, e.ua, e.page_url, e.bid_micros / 1'000'000,
      e.bid_micros % 1'000'000);
  if (!e.click_id.empty()) out += fmt::format(R"(,"click_id":"{}")", e.click_id);
  if (!e.device_type.empty()) {
    out += fmt::format(R"(,"device_type":"{}","os":"{}","browser":"{}")", e.device_type, e.os,
                       e.browser);
  }
  out += "}\n";
  return out;
}

}  // namespace adpulse
