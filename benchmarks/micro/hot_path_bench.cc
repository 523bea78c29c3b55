// The per-event hot path, stage by stage and together: decode + validate (simdjson), route (xxHash
// of campaign_id), aggregate (dedup + every default cube at minute, hour and day). Reports
// items/s; ns/event is 1e9 / items_per_second. Run:
//   build/benchmarks/hot_path_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include <chrono>
#include <random>
#include <string>

#include "app/config.h"
#include "ingest/event_decoder.h"
#include "ingest/pipeline.h"
#include "state/shard_state.h"
#include "storage/wal_record.h"

namespace adpulse {
namespace {

constexpr int kBatch = 1000;

// Realistic events: ~500 bytes, 20 fields, 10k campaigns, 100k users, event times within the
// last two minutes (as at a steady 100k+ events/s, where each campaign-minute gets many events).
std::string MakeNdjson(int64_t now_ms, int count, uint64_t seed, uint64_t campaigns = 10000) {
  std::mt19937_64 rng(seed);
  const char* types[] = {"impression", "impression", "impression", "impression", "impression",
                         "impression", "impression", "impression", "click",      "conversion"};
  const char* countries[] = {"US", "DE", "FR", "GB", "BR", "IN", "JP", "CA"};
  const char* devices[] = {"desktop", "mobile", "tablet"};
  std::string out;
  for (int i = 0; i < count; ++i) {
    uint64_t campaign = rng() % campaigns;
    out += "{\"event_id\":\"" + std::to_string(seed) + "-" + std::to_string(i) +
           "-4f1c2a9e-7b7d-4c1e-9b8e\",\"event_type\":\"" + types[rng() % 10] +
           "\",\"timestamp\":" + std::to_string(now_ms - static_cast<int64_t>(rng() % 120'000)) +
           ",\"campaign_id\":\"camp-" + std::to_string(campaign) + "\",\"ad_id\":\"ad-" +
           std::to_string(campaign * 4 + rng() % 4) + "\",\"advertiser_id\":\"adv-" +
           std::to_string(campaign % 500) + "\",\"user_id\":\"user-" +
           std::to_string(rng() % 100000) + "\",\"session_id\":\"s-" + std::to_string(rng()) +
           "\",\"ip_address\":\"203.0.113." + std::to_string(rng() % 256) +
           "\",\"user_agent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
           "(KHTML, like Gecko) Chrome/120.0 Safari/537.36\",\"publisher_id\":\"pub-" +
           std::to_string(rng() % 200) + "\",\"placement_id\":\"pl-" + std::to_string(rng() % 50) +
           "\",\"page_url\":\"https://news.example.com/article/" + std::to_string(rng() % 1000) +
           "\",\"device_type\":\"" + devices[rng() % 3] +
           "\",\"os\":\"Windows\",\"browser\":\"Chrome\"" + ",\"country\":\"" +
           countries[rng() % 8] + "\",\"city\":\"City\",\"bid_price\":0." +
           std::to_string(100 + rng() % 900) + ",\"currency\":\"USD\"}\n";
  }
  return out;
}

// The cubes of the embedded default config (config/adpulse.toml), as the daemon runs them.
CubeCatalog DefaultCatalog() {
  auto config = LoadConfig(std::nullopt);
  if (!config.ok()) std::abort();
  return *CubeCatalog::Create(config->cubes);
}

void BM_DecodeValidate(benchmark::State& state) {
  int64_t now = 1'764'340'800'000;
  std::string body = MakeNdjson(now, kBatch, 1);
  body.reserve(body.size() + 64);
  EventDecoder decoder;
  for (auto _ : state) {
    IngestBatch batch;
    auto s = decoder.Decode(BodyFormat::kNdjson, body, ValidationRules{}, now, batch);
    if (!s.ok() || batch.events.size() != kBatch) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(batch.events.data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}
BENCHMARK(BM_DecodeValidate);

void BM_Route(benchmark::State& state) {
  CubeCatalog catalog = DefaultCatalog();
  PipelineOptions options;
  options.workers = 2;
  Pipeline pipeline(catalog, options);
  std::vector<std::string> campaigns;
  for (int i = 0; i < kBatch; ++i) campaigns.push_back("camp-" + std::to_string(i * 7919 % 10000));
  for (auto _ : state) {
    int sum = 0;
    for (const auto& c : campaigns) sum += pipeline.ShardOf(c);
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_Route);

// The write-ahead log's record for each event of a batch (ShardWriter::Stage encodes each new
// event into the log's buffer).
void BM_EncodeWalRecord(benchmark::State& state) {
  int64_t now = 1'764'340'800'000;
  std::string body = MakeNdjson(now, kBatch, 1);
  body.reserve(body.size() + 64);
  EventDecoder decoder;
  IngestBatch batch;
  if (!decoder.Decode(BodyFormat::kNdjson, body, ValidationRules{}, now, batch).ok()) {
    state.SkipWithError("decode failed");
    return;
  }
  std::string out;
  for (auto _ : state) {
    out.clear();
    for (const Event& e : batch.events) EncodeEventRecord(e, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch.events.size()));
}
BENCHMARK(BM_EncodeWalRecord);

// kBatch fresh events (MakeNdjson) decoded into `batch`, for the parts after decoding.
void DecodeFresh(EventDecoder& decoder, int64_t now, uint64_t seed, uint64_t campaigns,
                 IngestBatch& batch) {
  std::string body = MakeNdjson(now, kBatch, seed, campaigns);
  body.reserve(body.size() + 64);
  (void)decoder.Decode(BodyFormat::kNdjson, body, ValidationRules{}, now, batch);
}

// Dedup + all eight default cubes, on fresh events (every event is new).
void BM_Aggregate(benchmark::State& state) {
  int64_t now = 1'764'340'800'000;
  CubeCatalog catalog = DefaultCatalog();
  ShardState shard(catalog, 0, nullptr, 86'400'000);
  EventDecoder decoder;
  uint64_t seed = 100;
  for (auto _ : state) {
    state.PauseTiming();
    IngestBatch batch;
    DecodeFresh(decoder, now, seed++, static_cast<uint64_t>(state.range(0)), batch);
    state.ResumeTiming();
    for (const Event& e : batch.events) benchmark::DoNotOptimize(shard.Apply(e));
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
// Argument: distinct campaigns. Cost grows with the groups per minute that stop fitting in cache.
BENCHMARK(BM_Aggregate)->Arg(100)->Arg(10000)->Iterations(2000);

// BM_Aggregate as the worker does it: each event admitted, then the batch added to the cubes at
// once (AddBatchToCubes, pipelined), as a group commit does.
void BM_AggregateBatch(benchmark::State& state) {
  int64_t now = 1'764'340'800'000;
  CubeCatalog catalog = DefaultCatalog();
  ShardState shard(catalog, 0, nullptr, 86'400'000);
  EventDecoder decoder;
  uint64_t seed = 100;
  std::vector<const Event*> admitted;
  std::string error;
  double admit_ns = 0, add_ns = 0;
  for (auto _ : state) {
    state.PauseTiming();
    IngestBatch batch;
    DecodeFresh(decoder, now, seed++, static_cast<uint64_t>(state.range(0)), batch);
    state.ResumeTiming();
    admitted.clear();
    auto t0 = std::chrono::steady_clock::now();
    for (const Event& e : batch.events) {
      if (shard.Admit(e, &error) == Admission::kNew) admitted.push_back(&e);
    }
    auto t1 = std::chrono::steady_clock::now();
    shard.AddBatchToCubes(admitted.data(), admitted.size());
    auto t2 = std::chrono::steady_clock::now();
    admit_ns += std::chrono::duration<double, std::nano>(t1 - t0).count();
    add_ns += std::chrono::duration<double, std::nano>(t2 - t1).count();
  }
  state.counters["admit_ns_per_event"] = admit_ns / (state.iterations() * kBatch);
  state.counters["cubes_ns_per_event"] = add_ns / (state.iterations() * kBatch);
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_AggregateBatch)->Arg(100)->Arg(10000)->Iterations(2000);

// The whole path for one request on one core: decode, validate, route, dedup, aggregate.
void BM_HotPath(benchmark::State& state) {
  int64_t now = 1'764'340'800'000;
  CubeCatalog catalog = DefaultCatalog();
  ShardState shard(catalog, 0, nullptr, 86'400'000);
  PipelineOptions options;
  options.workers = 2;
  Pipeline router(catalog, options);
  EventDecoder decoder;
  uint64_t seed = 1'000'000;
  for (auto _ : state) {
    state.PauseTiming();
    std::string body = MakeNdjson(now, kBatch, seed++, static_cast<uint64_t>(state.range(0)));
    body.reserve(body.size() + 64);
    state.ResumeTiming();
    IngestBatch batch;
    (void)decoder.Decode(BodyFormat::kNdjson, body, ValidationRules{}, now, batch);
    int routed = 0;
    for (const Event& e : batch.events) {
      routed += router.ShardOf(e.dim(Dim::kCampaignId));
      benchmark::DoNotOptimize(shard.Apply(e));
    }
    benchmark::DoNotOptimize(routed);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_HotPath)->Arg(100)->Arg(10000)->Iterations(2000);

}  // namespace
}  // namespace adpulse
