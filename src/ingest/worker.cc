#include "ingest/worker.h"

#include <fmt/format.h>
#include <pthread.h>
#include <sched.h>

#include <chrono>

#include "base/log.h"
#include "base/time_parse.h"

namespace adpulse {
namespace {
constexpr size_t kMaxTasksPerGroup = 256;
constexpr int kSpinsBeforePark = 200;
constexpr auto kParkTimeout = std::chrono::milliseconds(20);
}  // namespace

Worker::Worker(int shard, std::unique_ptr<ShardState> state, ShardWriterOptions writer_options,
               std::vector<SpscRing<Task*>*> rings, int pin_cpu)
    : shard_(shard),
      state_(std::move(state)),
      writer_(state_.get(), writer_options),
      rings_(std::move(rings)),
      pin_cpu_(pin_cpu) {
  if (writer_options.use_wal && writer_options.wal.fsync) {
    FileSystem* fs = writer_options.wal.fs;
    syncer_ = std::make_unique<FileSyncer>(
        fmt::format("adpulse-fs{}", shard), [this] { Notify(); },
        writer_options.sync_file ? writer_options.sync_file
                                 : FileSyncer::SyncFn([fs](int fd) { return fs->Fdatasync(fd); }));
  }
}

absl::Status Worker::WaitRecovered() {
  std::unique_lock<std::mutex> lock(recovery_mutex_);
  recovery_cv_.wait(lock, [this] { return recovered_; });
  return recovery_status_;
}

Worker::~Worker() {
  if (thread_.joinable()) StopAndJoin();
}

void Worker::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Worker::StopAndJoin() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lock(park_mutex_);
    park_cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void Worker::Notify() {
  // Pairs with the fence in Park(): either the worker sees what was published, or we see it asleep.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lock(park_mutex_);
    park_cv_.notify_one();
  }
}

void Worker::SubmitQuery(Task* task) {
  {
    std::lock_guard<std::mutex> lock(query_mutex_);
    queries_.push_back(task);
    has_queries_.store(true, std::memory_order_release);
  }
  Notify();
}

void Worker::RunQueries(ShardContext& ctx) {
  if (!has_queries_.load(std::memory_order_acquire)) return;
  {
    std::lock_guard<std::mutex> lock(query_mutex_);
    running_queries_.swap(queries_);
    has_queries_.store(false, std::memory_order_relaxed);
  }
  for (Task* task : running_queries_) {
    task->Run(ctx);
    task->Complete();
  }
  running_queries_.clear();
}

int Worker::SyncAnsweringQueries(int fd, ShardContext& ctx) {
  syncer_->Start(fd);
  while (!syncer_->done()) {
    RunQueries(ctx);
    Park([this] { return syncer_->done(); });  // the syncer's Notify() wakes it
  }
  return syncer_->sync_errno();
}

template <typename Ready>
void Worker::Park(Ready ready) {
  std::unique_lock<std::mutex> lock(park_mutex_);
  sleeping_.store(true, std::memory_order_relaxed);
  // Pairs with the fence in Notify(): either the waker sees the worker asleep, or the worker
  // sees what the waker published (a task, a query, a finished sync).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!ready() && !has_queries_.load(std::memory_order_relaxed)) {
    park_cv_.wait_for(lock, kParkTimeout);
  }
  sleeping_.store(false, std::memory_order_relaxed);
}

bool Worker::RingsEmpty() const {
  for (const auto* ring : rings_) {
    if (ring->SizeApprox() != 0) return false;
  }
  return true;
}

void Worker::Loop() {
  char name[16];
  snprintf(name, sizeof(name), "adpulse-w%d", shard_);
  pthread_setname_np(pthread_self(), name);
  if (pin_cpu_ >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(pin_cpu_, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
      LOG_WARN("worker {} could not be pinned to cpu {}", shard_, pin_cpu_);
    }
  }
  {
    RecoveryStats stats;
    auto started = std::chrono::steady_clock::now();
    absl::Status s = writer_.Recover(&stats);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (s.ok() && stats.segments > 0) {
      LOG_INFO(
          "shard {} replayed {} events after its checkpoint ({} already in the store) from {} "
          "log segments in {:.2f} s",
          shard_, stats.records, stats.skipped_records, stats.segments, secs);
    }
    std::lock_guard<std::mutex> lock(recovery_mutex_);
    recovery_status_ = s;
    recovered_ = true;
    recovery_cv_.notify_all();
  }
  ShardContext ctx{shard_, state_.get(), &writer_};
  auto run_queries = [this, &ctx] { RunQueries(ctx); };
  // While a group's log write becomes durable, the worker answers queries instead of blocking.
  std::function<int(int)> sync;
  if (syncer_) sync = [this, &ctx](int fd) { return SyncAnsweringQueries(fd, ctx); };
  std::vector<Task*> group;
  group.reserve(kMaxTasksPerGroup);
  int idle_spins = 0;
  while (true) {
    group.clear();
    for (auto* ring : rings_) {
      Task* task;
      while (group.size() < kMaxTasksPerGroup && ring->TryPop(task)) {
        RunQueries(ctx);
        task->Run(ctx);
        group.push_back(task);
      }
    }
    RunQueries(ctx);
    if (!group.empty()) {
      // Group commit: one log write and fdatasync covers every event of the group, and only then
      // are the events counted and their requests completed.
      writer_.CommitGroup(sync);
      for (Task* task : group) task->Complete();
      writer_.MaybeFlush(NowMs(), false, run_queries);
      idle_spins = 0;
      continue;
    }
    if (stop_.load() && RingsEmpty()) {
      RunQueries(ctx);
      writer_.MaybeFlush(NowMs(), true);  // SIGTERM: everything into the store, checkpointed
      break;
    }
    if (++idle_spins < kSpinsBeforePark) {
      std::this_thread::yield();
      continue;
    }
    idle_spins = 0;
    writer_.MaybeFlush(NowMs(), false, run_queries);
    Park([this] { return !RingsEmpty() || stop_.load(); });
  }
}

}  // namespace adpulse
