// Memory per in-memory group: the resident bytes one shard's cubes take for N fresh events of one
// flush interval, divided by the groups they make. Events shaped like adpulse-loadgen's for one of
// two shards (5,000 campaigns, 4 ads each, 2,500 advertisers, 8 countries, 3 devices, 500
// publishers, 1 M users), spread over 10 s of one minute, the eight default cubes. Run:
//   build/benchmarks/group_memory 1000000
// ShardState::group_bytes_in_memory() is the estimate the flushes go by; this measures the real
// figure beside it.
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "app/config.h"
#include "state/shard_state.h"

namespace {
long ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * 4096;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace adpulse;
  long events = argc > 1 ? std::atol(argv[1]) : 1'000'000;
  auto config = LoadConfig(std::nullopt);
  if (!config.ok() || events <= 0) return 2;
  CubeCatalog catalog = *CubeCatalog::Create(config->cubes);
  ShardState shard(catalog, 0, nullptr, 86'400'000);
  std::mt19937_64 rng(1);
  const int64_t minute = 1'764'340'800'000;
  const char* countries[] = {"US", "DE", "FR", "GB", "BR", "IN", "JP", "CA"};
  const char* devices[] = {"desktop", "mobile", "tablet"};
  std::deque<std::string> strings;  // the events' values; a deque never moves them
  std::vector<Event> batch(static_cast<size_t>(events));
  for (long i = 0; i < events; ++i) {
    Event& e = batch[static_cast<size_t>(i)];
    uint64_t campaign = rng() % 5000;
    e.event_id = strings.emplace_back("gm-" + std::to_string(i));
    e.dim(Dim::kCampaignId) = strings.emplace_back("c" + std::to_string(campaign));
    e.dim(Dim::kAdId) = strings.emplace_back("a" + std::to_string(campaign * 4 + rng() % 4));
    e.dim(Dim::kAdvertiserId) = strings.emplace_back("adv" + std::to_string(campaign % 2500));
    e.dim(Dim::kPublisherId) = strings.emplace_back("p" + std::to_string(rng() % 500));
    e.dim(Dim::kCountry) = countries[rng() % 8];
    e.dim(Dim::kDeviceType) = devices[rng() % 3];
    e.dim(Dim::kCurrency) = "USD";
    e.user_id = strings.emplace_back("u" + std::to_string(rng() % 1'000'000));
    e.timestamp_ms = minute + i * 10'000 / events;
    e.bid_micros = 1000;
  }
  long before = ResidentBytes();
  for (const Event& e : batch) shard.AddToCubes(e);
  long grown = ResidentBytes() - before;
  size_t groups = shard.groups_in_memory();
  std::printf(
      "%ld events: %zu groups, %.1f MiB resident, %.0f bytes per group, %.1f per event; "
      "estimated %.1f MiB (%.0f bytes per group)\n",
      events, groups, grown / 1048576.0, static_cast<double>(grown) / groups,
      static_cast<double>(grown) / events, shard.group_bytes_in_memory() / 1048576.0,
      static_cast<double>(shard.group_bytes_in_memory()) / groups);
  return 0;
}
