#include "ingest/pipeline.h"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <random>

#include "state/shard_state.h"

namespace adpulse {
namespace {

constexpr int64_t kT0 = 1'764'340'800'000;

CubeCatalog Catalog() {
  auto c = CubeCatalog::Create({{"campaign", {Dim::kCampaignId}}});
  REQUIRE(c.ok());
  return *c;
}

// Submits `ids` (event ids; campaign = id % 37) and waits for the outcome counts.
std::pair<uint32_t, uint32_t> Ingest(Pipeline& p, int producer, const std::vector<int>& ids) {
  IngestRequest request;
  IngestBatch& b = request.batch;
  b.arena.reserve(ids.size() * 32);
  for (int id : ids) {
    Event e;
    size_t at = b.arena.size();
    b.arena += "e" + std::to_string(id);
    e.event_id = std::string_view(b.arena.data() + at, b.arena.size() - at);
    at = b.arena.size();
    b.arena += "c" + std::to_string(id % 37);
    e.dim(Dim::kCampaignId) = std::string_view(b.arena.data() + at, b.arena.size() - at);
    e.type = id % 10 == 0 ? EventType::kClick : EventType::kImpression;
    e.timestamp_ms = kT0 + id * 1000;
    e.bid_micros = id;
    b.positions.push_back(static_cast<uint32_t>(b.events.size()));
    b.events.push_back(e);
  }
  std::promise<void> done;
  request.on_done = [&] { done.set_value(); };
  p.SubmitIngest(producer, &request);
  done.get_future().wait();
  return {request.CountOutcome(EventOutcome::kAccepted),
          request.CountOutcome(EventOutcome::kDuplicate)};
}

// producer < 0: on the query queues (QueryEveryShard), else on that producer's rings.
Counters QueryTotal(Pipeline& p, const CubeCatalog& catalog, int producer) {
  QuerySpec spec;
  spec.cube = 0;
  spec.start_ms = FloorTo(kT0, kDayMs);
  spec.end_ms = spec.start_ms + 2 * kDayMs;
  spec.need_users = false;
  std::vector<ResultTable> partials(p.shard_count());
  std::promise<void> done;
  ShardFanOut fan_out(
      [&](ShardContext& ctx) { (void)ctx.state->RunQuery(spec, partials[ctx.shard]); },
      [&] { done.set_value(); });
  if (producer < 0) {
    p.QueryEveryShard(&fan_out);
  } else {
    p.RunOnEveryShard(producer, &fan_out);
  }
  done.get_future().wait();
  ResultTable merged;
  for (auto& t : partials) merged.MergeFrom(std::move(t), false);
  Counters total;
  for (const ResultRow* row : merged.SortedRows()) total.Merge(row->agg.counters);
  return total;
}

}  // namespace

TEST_CASE("events from two producers reach their shards once each", "[pipeline]") {
  CubeCatalog catalog = Catalog();
  PipelineOptions options;
  options.workers = 3;
  options.max_producers = 2;
  options.ring_capacity_tasks = 8;
  options.pin_workers = false;
  Pipeline pipeline(catalog, options);
  pipeline.Start();
  int p0 = pipeline.RegisterProducer();
  int p1 = pipeline.RegisterProducer();

  std::vector<int> first, second;
  for (int i = 0; i < 3000; ++i) first.push_back(i);
  for (int i = 2000; i < 5000; ++i) second.push_back(i);  // 1000 overlap: duplicates

  auto f1 = std::async(std::launch::async, [&] { return Ingest(pipeline, p0, first); });
  auto f2 = std::async(std::launch::async, [&] { return Ingest(pipeline, p1, second); });
  auto [a1, d1] = f1.get();
  auto [a2, d2] = f2.get();
  CHECK(a1 + a2 == 5000);
  CHECK(d1 + d2 == 1000);

  Counters total = QueryTotal(pipeline, catalog, p0);
  uint64_t clicks = 0;
  int64_t spend = 0;
  for (int i = 0; i < 5000; ++i) {
    clicks += (i % 10 == 0);
    spend += i;
  }
  CHECK(total.clicks == clicks);
  CHECK(total.impressions == 5000 - clicks);
  CHECK((total.spend_micros == spend));

  // Resending everything changes nothing.
  auto [a3, d3] = Ingest(pipeline, p0, first);
  CHECK(a3 == 0);
  CHECK(d3 == 3000);
  CHECK(QueryTotal(pipeline, catalog, p1) == total);
  CHECK(QueryTotal(pipeline, catalog, -1) == total);
  pipeline.Stop();
}

TEST_CASE("queries run ahead of queued ingestion and see what was acknowledged", "[pipeline]") {
  CubeCatalog catalog = Catalog();
  PipelineOptions options;
  options.workers = 1;
  options.pin_workers = false;
  Pipeline pipeline(catalog, options);
  pipeline.Start();
  int producer = pipeline.RegisterProducer();
  std::vector<int> ids;
  for (int i = 0; i < 500; ++i) ids.push_back(i);
  REQUIRE(Ingest(pipeline, producer, ids).first == 500);
  CHECK(QueryTotal(pipeline, catalog, -1).impressions + QueryTotal(pipeline, catalog, -1).clicks ==
        500);

  // The worker is held inside task A while B (on the ring) and then Q (a query) are submitted.
  std::mutex mu;
  std::vector<char> order;
  std::promise<void> started, release, all_done;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> finished{0};
  auto record = [&](char c) {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(c);
  };
  auto on_done = [&] {
    if (finished.fetch_add(1) == 2) all_done.set_value();
  };
  ShardFanOut a(
      [&](ShardContext&) {
        started.set_value();
        released.wait();
        record('A');
      },
      on_done);
  ShardFanOut b([&](ShardContext&) { record('B'); }, on_done);
  ShardFanOut q([&](ShardContext&) { record('Q'); }, on_done);
  pipeline.RunOnEveryShard(producer, &a);
  started.get_future().wait();
  pipeline.RunOnEveryShard(producer, &b);
  pipeline.QueryEveryShard(&q);
  release.set_value();
  all_done.get_future().wait();
  CHECK(order == std::vector<char>{'A', 'Q', 'B'});
  pipeline.Stop();
}

TEST_CASE("a query is answered while a group's fdatasync runs, without that group", "[pipeline]") {
  std::string dir = (std::filesystem::temp_directory_path() /
                     ("adpulse-pipeline-test-" + std::to_string(::getpid()) + "-" +
                      std::to_string(std::random_device{}())))
                        .string();
  CubeCatalog catalog = Catalog();
  // The log's fdatasync, held up on demand until the test lets it go.
  std::atomic<bool> hold{false};
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  PipelineOptions options;
  options.workers = 1;
  options.pin_workers = false;
  options.wal_dir = dir;
  options.sync_file = [&](int fd) {
    if (hold.exchange(false)) {
      entered.set_value();
      released.wait();
    }
    return FileSyncer::Fdatasync(fd);
  };
  Pipeline pipeline(catalog, options);
  pipeline.Start();
  REQUIRE(pipeline.WaitRecovered().ok());
  int producer = pipeline.RegisterProducer();
  std::vector<int> first, second;
  for (int i = 0; i < 100; ++i) first.push_back(i);
  for (int i = 100; i < 150; ++i) second.push_back(i);
  REQUIRE(Ingest(pipeline, producer, first).first == 100);

  hold = true;
  auto ingested =
      std::async(std::launch::async, [&] { return Ingest(pipeline, producer, second); });
  entered.get_future().wait();  // the second group is written, its fdatasync in flight
  auto query = std::async(std::launch::async, [&] { return QueryTotal(pipeline, catalog, -1); });
  bool answered = query.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  release.set_value();
  CHECK(answered);
  Counters during = query.get();
  CHECK(during.impressions + during.clicks == 100);  // nothing that is not durable yet
  CHECK(ingested.get().first == 50);
  Counters after = QueryTotal(pipeline, catalog, -1);
  CHECK(after.impressions + after.clicks == 150);
  pipeline.Stop();
  std::filesystem::remove_all(dir);
}

TEST_CASE("admission control bounds requests in flight", "[pipeline]") {
  CubeCatalog catalog = Catalog();
  PipelineOptions options;
  options.workers = 1;
  options.max_inflight_requests = 2;
  options.pin_workers = false;
  Pipeline pipeline(catalog, options);
  CHECK(pipeline.TryAdmit());
  CHECK(pipeline.TryAdmit());
  CHECK_FALSE(pipeline.TryAdmit());
  pipeline.Release();
  CHECK(pipeline.TryAdmit());
}

TEST_CASE("ShardOf spreads campaigns and is stable", "[pipeline]") {
  CubeCatalog catalog = Catalog();
  PipelineOptions options;
  options.workers = 4;
  options.pin_workers = false;
  Pipeline pipeline(catalog, options);
  std::vector<int> per_shard(4);
  for (int i = 0; i < 4000; ++i) ++per_shard[pipeline.ShardOf("campaign-" + std::to_string(i))];
  for (int n : per_shard) CHECK((n > 800 && n < 1200));
  CHECK(pipeline.ShardOf("x") == pipeline.ShardOf("x"));
}

}  // namespace adpulse
