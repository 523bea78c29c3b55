#include "ingest/pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "base/log.h"
#include "base/status_macros.h"
#include "state/interner.h"

namespace adpulse {

uint32_t IngestRequest::CountOutcome(EventOutcome outcome) const {
  uint32_t n = 0;
  for (EventOutcome o : batch.outcomes) n += (o == outcome);
  return n;
}

std::string IngestRequest::Failure() const {
  for (const ShardTask& t : tasks_) {
    if (!t.failure.empty()) return t.failure;
  }
  return {};
}

void IngestRequest::ShardTask::Run(ShardContext& shard) {
  IngestBatch& b = request->batch;
  shard.writer->StageAll(b.events, indices, b.outcomes, &failure);
}

void IngestRequest::ShardTask::Complete() {
  IngestRequest* r = request;  // `this` may be freed by on_done
  if (r->pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) r->Finish();
}

Pipeline::Pipeline(const CubeCatalog& catalog, const PipelineOptions& options) : options_(options) {
  ADPULSE_CHECK(options.workers >= 1 && options.max_producers >= 1);
  rings_.resize(options.max_producers);
  for (auto& row : rings_) {
    for (int s = 0; s < options.workers; ++s) {
      row.push_back(std::make_unique<SpscRing<Task*>>(options.ring_capacity_tasks));
    }
  }
  unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  for (int s = 0; s < options.workers; ++s) {
    std::vector<SpscRing<Task*>*> column;
    for (auto& row : rings_) column.push_back(row[s].get());
    int pin = options.pin_workers ? static_cast<int>(s % cpus) : -1;
    ShardWriterOptions writer;
    std::string shard_dir = fmt::format("shard-{:03}", s);
    writer.use_wal = !options.wal_dir.empty();
    writer.wal.fsync = options.fsync;
    writer.sync_file = options.sync_file;
    writer.fsync_seconds = options.fsync_seconds;
    writer.wal.segment_bytes = options.wal_segment_bytes;
    if (writer.use_wal)
      writer.wal.dir = (std::filesystem::path(options.wal_dir) / shard_dir).string();
    writer.archiver = options.archiver;
    writer.store = options.store;
    writer.flush_interval_ms = options.flush_interval_ms;
    writer.rollup_delay_ms = options.rollup_delay_ms;
    writer.max_event_age_ms = options.max_event_age_ms;
    writer.memory_bytes = options.shard_memory_bytes;
    writer.dedup_filter_bytes = options.dedup_filter_bytes;
    writer.recent_hours = options.recent_hours;
    writer.recent_hours_bytes = options.recent_hours_bytes;
    writer.recovery = options.wal_recovery;
    writer.max_future_ms = options.max_future_ms;
    writer.wal.fs = options.fs;
    workers_.push_back(std::make_unique<Worker>(
        s, std::make_unique<ShardState>(catalog, s, options.store, options.dedup_horizon_ms),
        std::move(writer), std::move(column), pin));
  }
}

Pipeline::~Pipeline() { Stop(); }

void Pipeline::Start() {
  for (auto& w : workers_) w->Start();
  started_ = true;
}

absl::Status Pipeline::WaitRecovered() {
  absl::Status first = absl::OkStatus();
  for (auto& w : workers_) {
    absl::Status s = w->WaitRecovered();
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

void Pipeline::Stop() {
  if (!started_) return;
  for (auto& w : workers_) w->StopAndJoin();
  started_ = false;
}

int Pipeline::RegisterProducer() {
  int id = next_producer_.fetch_add(1);
  ADPULSE_CHECK(id < options_.max_producers);
  return id;
}

int Pipeline::ShardOf(std::string_view campaign_id) const {
  return static_cast<int>(XXH3_64bits(campaign_id.data(), campaign_id.size()) % workers_.size());
}

bool Pipeline::TryAdmit() {
  size_t now = inflight_.fetch_add(1, std::memory_order_acq_rel);
  if (now >= options_.max_inflight_requests) {
    inflight_.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }
  return true;
}

void Pipeline::Release() { inflight_.fetch_sub(1, std::memory_order_acq_rel); }

void Pipeline::Push(int producer, int shard, Task* task) {
  SpscRing<Task*>& ring = *rings_[producer][shard];
  // Admission control keeps in-flight requests below the ring capacity, so this loop only spins
  // when a worker is momentarily behind; it never drops a task.
  while (!ring.TryPush(task)) {
    ring_full_waits_.fetch_add(1, std::memory_order_relaxed);
    workers_[shard]->Notify();
    std::this_thread::yield();
  }
  workers_[shard]->Notify();
}

void Pipeline::SubmitIngest(int producer, IngestRequest* request) {
  IngestBatch& batch = request->batch;
  batch.outcomes.assign(batch.events.size(), EventOutcome::kPending);
  if (batch.events.empty()) {
    request->Finish();
    return;
  }
  int shards = shard_count();
  std::vector<int> task_of_shard(shards, -1);
  request->tasks_.clear();
  request->tasks_.reserve(std::min<size_t>(shards, batch.events.size()));
  for (uint32_t i = 0; i < batch.events.size(); ++i) {
    int shard = ShardOf(batch.events[i].dim(Dim::kCampaignId));
    if (task_of_shard[shard] < 0) {
      task_of_shard[shard] = static_cast<int>(request->tasks_.size());
      request->tasks_.emplace_back();
      request->tasks_.back().request = request;
    }
    request->tasks_[task_of_shard[shard]].indices.push_back(i);
  }
  request->pending_.store(static_cast<int>(request->tasks_.size()), std::memory_order_release);
  // Pushing the last task may complete and free the request: read what we need first.
  std::vector<std::pair<int, Task*>> pushes;
  for (int s = 0; s < shards; ++s) {
    if (task_of_shard[s] >= 0) pushes.emplace_back(s, &request->tasks_[task_of_shard[s]]);
  }
  for (auto [shard, task] : pushes) Push(producer, shard, task);
}

void Pipeline::RunOnEveryShard(int producer, ShardFanOut* fan_out) {
  int shards = shard_count();
  fan_out->tasks_.assign(shards, {});
  for (auto& t : fan_out->tasks_) t.owner = fan_out;
  fan_out->pending_.store(shards, std::memory_order_release);
  std::vector<Task*> tasks;
  for (auto& t : fan_out->tasks_) tasks.push_back(&t);
  for (int s = 0; s < shards; ++s) Push(producer, s, tasks[s]);
}

void Pipeline::QueryEveryShard(ShardFanOut* fan_out) {
  QueryShards(fan_out, std::vector<bool>(workers_.size(), true));
}

void Pipeline::QueryShards(ShardFanOut* fan_out, const std::vector<bool>& wanted) {
  int shards = shard_count();
  fan_out->tasks_.assign(shards, {});
  for (auto& t : fan_out->tasks_) t.owner = fan_out;
  int count = static_cast<int>(std::count(wanted.begin(), wanted.end(), true));
  ADPULSE_CHECK(count > 0 && wanted.size() == static_cast<size_t>(shards));
  fan_out->pending_.store(count, std::memory_order_release);
  for (int s = 0; s < shards; ++s) {
    if (wanted[s]) workers_[s]->SubmitQuery(&fan_out->tasks_[s]);
  }
}

Pipeline::Totals Pipeline::CounterTotals() const {
  Totals t;
  for (const auto& w : workers_) {
    ShardStats s = w->CounterSnapshot();
    t.events_applied += s.events_applied;
    t.duplicates += s.duplicates;
    t.late_events += s.late_events;
    t.flushes += s.flushes;
    t.flush_micros += s.flush_micros;
    t.write_micros += s.write_micros;
    t.wait_micros += s.wait_micros;
    t.rollups += s.rollups;
    t.rollup_micros += s.rollup_micros;
    t.rolled_until_ms =
        t.rolled_until_ms == 0 ? s.rolled_until_ms : std::min(t.rolled_until_ms, s.rolled_until_ms);
    t.store_dedup_lookups += s.store_dedup_lookups;
    t.memory_groups += s.memory_groups;
    t.memory_dedup_ids += s.memory_dedup_ids;
    t.interned_bytes += s.interned_bytes;
    t.recent_hours_bytes += s.recent_hours_bytes;
    t.commits += w->commits();
    t.commit_failures += w->commit_failures();
    t.rotation_failures += w->rotation_failures();
    t.shards_unavailable += w->severity() >= ShardSeverity::kUnavailable ? 1 : 0;
  }
  return t;
}

size_t Pipeline::QueuedTasks(int shard) const {
  size_t n = 0;
  for (const auto& row : rings_) n += row[shard]->SizeApprox();
  return n;
}

ShardStats Pipeline::ShardCounters(int shard) const { return workers_[shard]->CounterSnapshot(); }

size_t Pipeline::QueuedTasks() const {
  size_t n = 0;
  for (const auto& row : rings_) {
    for (const auto& ring : row) n += ring->SizeApprox();
  }
  return n;
}

}  // namespace adpulse
