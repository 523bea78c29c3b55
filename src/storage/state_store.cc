#include "storage/state_store.h"

#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "window/aggregate_codec.h"

namespace adpulse {
namespace {

constexpr char kDedupTag = 'D';
constexpr char kCheckpointTag = 'C';

absl::Status ToStatus(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string message = fmt::format("state store {}: {}", what, s.ToString());
  if (s.IsNoSpace()) return absl::UnavailableError(message);
  return absl::DataLossError(message);
}

std::string DedupKey(int shard, absl::uint128 fp) {
  std::string k;
  k.push_back(kDedupTag);
  k.push_back(static_cast<char>((shard >> 8) & 0xff));
  k.push_back(static_cast<char>(shard & 0xff));
  uint64_t hi = absl::Uint128High64(fp), lo = absl::Uint128Low64(fp);
  k.append(reinterpret_cast<const char*>(&hi), 8);
  k.append(reinterpret_cast<const char*>(&lo), 8);
  return k;
}

// The dedup column family: shard (2 bytes) and fingerprint (high then low half), big-endian, so
// that byte order is numeric order; the value is the event-time hour (i32). Each id run also
// holds the shard's dedup checkpoint under the shard, 16 0xff bytes and 'C': after every id.
constexpr size_t kRunIdKeyBytes = 18;

void AppendBigEndian(std::string& k, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) k.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Writes the key of `fp` into out[0, kRunIdKeyBytes).
void PutRunIdKey(char* out, int shard, absl::uint128 fp) {
  uint16_t s = __builtin_bswap16(static_cast<uint16_t>(shard));
  uint64_t hi = __builtin_bswap64(absl::Uint128High64(fp));
  uint64_t lo = __builtin_bswap64(absl::Uint128Low64(fp));
  std::memcpy(out, &s, 2);
  std::memcpy(out + 2, &hi, 8);
  std::memcpy(out + 10, &lo, 8);
}

std::string RunIdKey(int shard, absl::uint128 fp) {
  std::string k(kRunIdKeyBytes, '\0');
  PutRunIdKey(k.data(), shard, fp);
  return k;
}

std::string RunCheckpointKey(int shard) {
  std::string k;
  AppendBigEndian(k, static_cast<uint64_t>(shard), 2);
  k.append(16, '\xff');
  k.push_back('C');
  return k;
}

uint64_t ReadBigEndian(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string CheckpointKey(int shard) {
  std::string k;
  k.push_back(kCheckpointTag);
  k.push_back(static_cast<char>((shard >> 8) & 0xff));
  k.push_back(static_cast<char>(shard & 0xff));
  return k;
}

std::string CheckpointKey(int shard, int slice) {
  std::string k = CheckpointKey(shard);
  k.push_back(static_cast<char>((slice >> 8) & 0xff));
  k.push_back(static_cast<char>(slice & 0xff));
  return k;
}

std::string EncodePosition(const WalPosition& p) {
  char value[16];
  std::memcpy(value, &p.sequence, 8);
  std::memcpy(value + 8, &p.offset, 8);
  return std::string(value, 16);
}

absl::StatusOr<WalPosition> DecodePosition(std::string_view value) {
  if (value.size() != 16) return absl::DataLossError("state store: a checkpoint is malformed");
  WalPosition p;
  std::memcpy(&p.sequence, value.data(), 8);
  std::memcpy(&p.offset, value.data() + 8, 8);
  return p;
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The memtable insert-hint prefix: (tag, shard, cube, level) for aggregates, (tag, shard) for the
// rest. A flush writes each prefix's keys in order, so each insert starts from the previous one's
// place in the memtable instead of from the top.
// Never write a DeleteRange with hints on: RocksDB 7.8 keeps one hint per prefix for the point
// and the range-deletion memtables alike, and corrupts the second (an assertion in debug builds).
class InsertHintPrefix : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "adpulse.InsertHintPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    size_t n =
        (key.size() >= 5 && key[0] == kAggregateKeyTag) ? 5 : std::min<size_t>(3, key.size());
    return rocksdb::Slice(key.data(), n);
  }
  bool InDomain(const rocksdb::Slice& key) const override { return !key.empty(); }
};

// Adds aggregates: counters summed, HyperLogLogs unioned.
// All the operands of a key at once, on the encoded values (MergeEncodedAggregates): no
// HyperLogLog is built, so a compaction merging many operands costs a sort of their user lists.
class AggregateMerge : public rocksdb::MergeOperator {
 public:
  bool FullMergeV2(const MergeOperationInput& in, MergeOperationOutput* out) const override {
    // One value alone (a roll-up's sums over the hour's deletion, the commonest case a read meets
    // before compaction) is its own merge: RocksDB uses it as it is, without a copy.
    if (in.operand_list.size() + (in.existing_value ? 1 : 0) == 1) {
      out->existing_operand = in.existing_value ? *in.existing_value : in.operand_list.front();
      return true;
    }
    std::vector<std::string_view> values;
    values.reserve(in.operand_list.size() + 1);
    if (in.existing_value)
      values.emplace_back(in.existing_value->data(), in.existing_value->size());
    for (const rocksdb::Slice& s : in.operand_list) values.emplace_back(s.data(), s.size());
    out->new_value.clear();
    return MergeEncodedAggregates(values, out->new_value);  // false: corruption, reported
  }
  bool PartialMergeMulti(const rocksdb::Slice&, const std::deque<rocksdb::Slice>& operands,
                         std::string* new_value, rocksdb::Logger*) const override {
    std::vector<std::string_view> values;
    values.reserve(operands.size());
    for (const rocksdb::Slice& s : operands) values.emplace_back(s.data(), s.size());
    new_value->clear();
    return MergeEncodedAggregates(values, *new_value);
  }
  const char* Name() const override { return "adpulse.AggregateMerge.v1"; }
};

// Drops aggregates past their level's retention and dedup ids past the horizon.
class RetentionFilter : public rocksdb::CompactionFilter {
 public:
  explicit RetentionFilter(const StateStoreOptions& o) : options_(o) {}
  bool Filter(int, const rocksdb::Slice& key, const rocksdb::Slice& value, std::string*,
              bool*) const override {
    int64_t now = WallMs();
    if (key.size() > 0 && key[0] == kAggregateKeyTag) {
      AggregateKey k;
      if (!DecodeAggregateKey({key.data(), key.size()}, k)) return false;
      int64_t unit = kLevelMs[static_cast<int>(k.level)];
      int64_t keep_ms = k.level == Level::kMinute ? options_.minute_retention_ms
                        : k.level == Level::kHour ? options_.hour_retention_ms
                                                  : options_.day_retention_ms;
      return (k.bucket + 1) * unit < now - keep_ms;
    }
    if (key.size() > 0 && key[0] == kDedupTag && value.size() == 4) {
      int32_t hour;
      std::memcpy(&hour, value.data(), 4);
      return (static_cast<int64_t>(hour) + 2) * kHourMs < now - options_.dedup_horizon_ms;
    }
    return false;
  }
  const char* Name() const override { return "adpulse.RetentionFilter.v1"; }

 private:
  StateStoreOptions options_;
};

// The dedup column family's: drops ids past the horizon (never a run's checkpoint).
class DedupRetentionFilter : public rocksdb::CompactionFilter {
 public:
  explicit DedupRetentionFilter(int64_t horizon_ms) : horizon_ms_(horizon_ms) {}
  bool Filter(int, const rocksdb::Slice& key, const rocksdb::Slice& value, std::string*,
              bool*) const override {
    if (key.size() != kRunIdKeyBytes || value.size() != 4) return false;
    int32_t hour;
    std::memcpy(&hour, value.data(), 4);
    return (static_cast<int64_t>(hour) + 2) * kHourMs < WallMs() - horizon_ms_;
  }
  const char* Name() const override { return "adpulse.DedupRetentionFilter.v1"; }

 private:
  int64_t horizon_ms_;
};

}  // namespace

struct StateStore::Impl {
  StateStoreOptions options;
  std::unique_ptr<rocksdb::DB> db;
  std::shared_ptr<rocksdb::Cache> cache;
  std::unique_ptr<RetentionFilter> filter;
  std::unique_ptr<DedupRetentionFilter> dedup_filter;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // [0] default, [1] dedup
  rocksdb::ColumnFamilyHandle* dedup = nullptr;
  rocksdb::Options dedup_options;
};

struct StateStore::Batch::Impl {
  rocksdb::WriteBatch batch;
};

StateStore::Batch::Batch() : impl_(std::make_unique<Impl>()) {}
StateStore::Batch::~Batch() = default;

void StateStore::Batch::MergeAggregate(std::string_view key, std::string_view value) {
  impl_->batch.Merge(rocksdb::Slice(key.data(), key.size()),
                     rocksdb::Slice(value.data(), value.size()));
}

void StateStore::Batch::PutAggregate(std::string_view key, std::string_view value) {
  impl_->batch.Put(rocksdb::Slice(key.data(), key.size()),
                   rocksdb::Slice(value.data(), value.size()));
}

void StateStore::Batch::DeleteAggregate(std::string_view key) {
  impl_->batch.Delete(rocksdb::Slice(key.data(), key.size()));
}

void StateStore::Batch::PutMeta(std::string_view name, std::string_view value) {
  impl_->batch.Put("M" + std::string(name), rocksdb::Slice(value.data(), value.size()));
}

void StateStore::Batch::PutDedup(int shard, absl::uint128 fingerprint, int32_t hour) {
  impl_->batch.Put(DedupKey(shard, fingerprint),
                   rocksdb::Slice(reinterpret_cast<const char*>(&hour), 4));
}

void StateStore::Batch::PutCheckpoint(int shard, const WalPosition& p) {
  impl_->batch.Put(CheckpointKey(shard), EncodePosition(p));
}

void StateStore::Batch::PutCheckpoint(int shard, int slice, const WalPosition& p) {
  impl_->batch.Put(CheckpointKey(shard, slice), EncodePosition(p));
}

size_t StateStore::Batch::Count() const { return impl_->batch.Count(); }

StateStore::StateStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StateStore::~StateStore() {
  if (impl_ && impl_->db) {
    for (rocksdb::ColumnFamilyHandle* h : impl_->handles) impl_->db->DestroyColumnFamilyHandle(h);
    impl_->db->Close();
  }
}

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const StateStoreOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        fmt::format("cannot create the state store directory {}: {}", options.path, ec.message()));
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  impl->filter = std::make_unique<RetentionFilter>(options);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = impl->cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  rocksdb::Options o;
  o.create_if_missing = true;
  o.merge_operator = std::make_shared<AggregateMerge>();
  o.compaction_filter = impl->filter.get();
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  o.write_buffer_size = options.write_buffer_bytes;
  o.max_write_buffer_number = 3;
  // Levels 0 and 1 are rewritten soon and often: compressing them cost more CPU than their size
  // saves (docs/benchmarks.md); LZ4 below, ZSTD's extra ratio cost 5 % of the throughput.
  o.compression_per_level = {rocksdb::kNoCompression, rocksdb::kNoCompression,
                             rocksdb::kLZ4Compression};
  o.bottommost_compression = rocksdb::kLZ4Compression;
  o.max_background_jobs = 2;
  // Compactions and memtable flushes yield the CPU to ingestion and queries
  // (base/thread_priority.h): kIdle is SCHED_IDLE.
  for (auto pool : {rocksdb::Env::Priority::LOW, rocksdb::Env::Priority::HIGH}) {
    (void)rocksdb::Env::Default()->LowerThreadPoolCPUPriority(pool, rocksdb::CpuPriority::kIdle);
  }
  o.memtable_insert_with_hint_prefix_extractor = std::make_shared<InsertHintPrefix>();
  // RocksDB ignores the hints for concurrent memtable writes (the default); the shards' batches
  // are few and large, so writing them one at a time costs nothing.
  o.allow_concurrent_memtable_write = false;
  o.keep_log_file_num = 5;
  o.create_missing_column_families = true;
  // The dedup ids: one random key per event, never written through the memtable (skiplist
  // inserts of random keys were the largest single cost of a flush) but as sorted runs that
  // WriteDedupRun builds and ingests. Random bytes do not compress.
  impl->dedup_filter = std::make_unique<DedupRetentionFilter>(options.dedup_horizon_ms);
  rocksdb::BlockBasedTableOptions dedup_table = table;
  // Partitioned filters: a lookup reads the one 4 KiB filter partition its key falls in, not the
  // table's whole filter (about 1.25 bytes per id, so megabytes per run) that the block cache,
  // busy with aggregates, had let go: re-reading and checksumming whole filters took a third of a
  // worker's time once the store held a minute of ids.
  dedup_table.index_type = rocksdb::BlockBasedTableOptions::IndexType::kTwoLevelIndexSearch;
  dedup_table.partition_filters = true;
  dedup_table.metadata_block_size = 4096;
  dedup_table.pin_top_level_index_and_filter = true;
  dedup_table.cache_index_and_filter_blocks_with_high_priority = true;
  rocksdb::ColumnFamilyOptions dedup_cf;
  dedup_cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(dedup_table));
  dedup_cf.compaction_filter = impl->dedup_filter.get();
  dedup_cf.compression = rocksdb::kNoCompression;
  dedup_cf.bottommost_compression = rocksdb::kNoCompression;
  dedup_cf.write_buffer_size = 4 << 20;  // only a run's checkpoint would ever pass through
  // Every run spans the whole key range, so each level-0 compaction rewrites all of level 1; at
  // full ingest speed, with compactions at SCHED_IDLE, runs pile up in level 0 for a while. A
  // lookup (only for ids the dedup filter cannot rule out) probes one filter partition a file, so
  // more level-0 files cost little: writes slow down at 40 and stop at 60 instead of 20 and 36.
  // That absorbs a burst of a minute or so; flat out for longer, the compactions still fall
  // behind and writes stall until they catch up (docs/benchmarks.md, "Longer than a minute").
  dedup_cf.level0_slowdown_writes_trigger = 40;
  dedup_cf.level0_stop_writes_trigger = 60;
  impl->dedup_options = rocksdb::Options(o, dedup_cf);
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions(o)}, {"dedup", dedup_cf}};
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, options.path, families, &impl->handles, &db);
  if (!s.ok()) {
    return absl::FailedPreconditionError(
        fmt::format("cannot open the state store {}: {}", options.path, s.ToString()));
  }
  impl->db.reset(db);
  impl->dedup = impl->handles[1];
  return std::unique_ptr<StateStore>(new StateStore(std::move(impl)));
}

class StateStore::Snapshot {
 public:
  explicit Snapshot(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~Snapshot() { db_->ReleaseSnapshot(snapshot_); }
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

std::shared_ptr<const StateStore::Snapshot> StateStore::GetSnapshot() {
  return std::make_shared<const Snapshot>(impl_->db.get());
}

absl::Status StateStore::Write(Batch& batch) {
  rocksdb::WriteOptions w;
  // Our write-ahead log is the durable record, so RocksDB keeps none of its own: a crash loses
  // its memtable, and with it the checkpoint, together, and the log is replayed from the older
  // checkpoint. Sync() writes the memtable out before any log segment it covers is archived.
  w.disableWAL = true;
  return ToStatus(impl_->db->Write(w, &batch.impl_->batch), "write");
}

absl::StatusOr<std::optional<WalPosition>> StateStore::ReadCheckpoint(int shard) {
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), CheckpointKey(shard), &value);
  if (s.IsNotFound()) return std::optional<WalPosition>();
  if (!s.ok()) return ToStatus(s, "read checkpoint");
  auto p = DecodePosition(value);
  if (!p.ok()) return p.status();
  return std::optional<WalPosition>(*p);
}

absl::StatusOr<std::vector<WalPosition>> StateStore::ReadSliceCheckpoints(int shard, int slices) {
  auto whole = ReadCheckpoint(shard);
  if (!whole.ok()) return whole.status();
  std::vector<WalPosition> out(static_cast<size_t>(slices), whole->value_or(WalPosition{}));
  std::string from = CheckpointKey(shard, 0);
  std::string to = CheckpointKey(shard, slices);
  absl::Status bad = absl::OkStatus();
  absl::Status s = Scan(from, to, [&](std::string_view k, std::string_view v) {
    int slice = (static_cast<uint8_t>(k[3]) << 8) | static_cast<uint8_t>(k[4]);
    auto p = DecodePosition(v);
    if (!p.ok()) {
      bad = p.status();
      return false;
    }
    out[static_cast<size_t>(slice)] = *p;
    return true;
  });
  if (!s.ok()) return s;
  if (!bad.ok()) return bad;
  return out;
}

absl::Status StateStore::WriteDedupRun(int shard, const std::vector<DedupId>& sorted_ids,
                                       const WalPosition& checkpoint) {
  // Ingestion hard-links the file into the store: a name left over (a crash before ingestion
  // unlinked it) may be a table of the store, so it is unlinked, never opened for writing.
  std::string path = fmt::format("{}/dedup-run-{}.sst.tmp", impl_->options.path, shard);
  std::remove(path.c_str());
  rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), impl_->dedup_options, impl_->dedup);
  rocksdb::Status s = writer.Open(path);
  char key[kRunIdKeyBytes];
  for (size_t i = 0; s.ok() && i < sorted_ids.size(); ++i) {
    const DedupId& id = sorted_ids[i];
    if (i > 0 && sorted_ids[i - 1].fingerprint == id.fingerprint) continue;
    PutRunIdKey(key, shard, id.fingerprint);
    s = writer.Put(rocksdb::Slice(key, kRunIdKeyBytes),
                   rocksdb::Slice(reinterpret_cast<const char*>(&id.hour), 4));
  }
  if (s.ok()) s = writer.Put(RunCheckpointKey(shard), EncodePosition(checkpoint));
  if (s.ok()) s = writer.Finish();
  if (s.ok()) {
    rocksdb::IngestExternalFileOptions ingest;
    ingest.move_files = true;
    s = impl_->db->IngestExternalFile(impl_->dedup, {path}, ingest);
  }
  if (!s.ok()) std::remove(path.c_str());
  return ToStatus(s, "dedup run");
}

absl::StatusOr<std::optional<WalPosition>> StateStore::ReadDedupCheckpoint(int shard) {
  std::string value;
  rocksdb::Status s =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->dedup, RunCheckpointKey(shard), &value);
  if (s.IsNotFound()) return std::optional<WalPosition>();
  if (!s.ok()) return ToStatus(s, "read dedup checkpoint");
  auto p = DecodePosition(value);
  if (!p.ok()) return p.status();
  return std::optional<WalPosition>(*p);
}

absl::Status StateStore::ForEachDedup(int shard,
                                      const std::function<void(absl::uint128, int32_t)>& fn) {
  {
    std::string from, to;
    AppendBigEndian(from, static_cast<uint64_t>(shard), 2);
    AppendBigEndian(to, static_cast<uint64_t>(shard) + 1, 2);
    rocksdb::ReadOptions r;
    rocksdb::Slice upper(to);
    r.iterate_upper_bound = &upper;
    r.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(r, impl_->dedup));
    for (it->Seek(from); it->Valid(); it->Next()) {
      rocksdb::Slice k = it->key(), v = it->value();
      if (k.size() != kRunIdKeyBytes || v.size() != 4) continue;
      int32_t hour;
      std::memcpy(&hour, v.data(), 4);
      fn(absl::MakeUint128(ReadBigEndian(k.data() + 2), ReadBigEndian(k.data() + 10)), hour);
    }
    if (!it->status().ok()) return ToStatus(it->status(), "scan dedup ids");
  }
  // Ids written before the dedup column family, until the horizon drops them.
  std::string from = DedupKey(shard, 0).substr(0, 3);
  std::string to = DedupKey(shard + 1, 0).substr(0, 3);
  return Scan(from, to, [&](std::string_view k, std::string_view v) {
    if (k.size() != 19 || v.size() != 4) return true;
    uint64_t hi, lo;
    int32_t hour;
    std::memcpy(&hi, k.data() + 3, 8);
    std::memcpy(&lo, k.data() + 11, 8);
    std::memcpy(&hour, v.data(), 4);
    fn(absl::MakeUint128(hi, lo), hour);
    return true;
  });
}

absl::StatusOr<bool> StateStore::DedupContains(int shard, absl::uint128 fp, int32_t min_hour) {
  auto seen = [&](rocksdb::ColumnFamilyHandle* cf, const std::string& key) -> absl::StatusOr<bool> {
    std::string value;
    rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), cf, key, &value);
    if (s.IsNotFound()) return false;
    if (!s.ok()) return ToStatus(s, "dedup lookup");
    if (value.size() != 4) return true;
    int32_t hour;
    std::memcpy(&hour, value.data(), 4);
    return hour >= min_hour;
  };
  auto in_runs = seen(impl_->dedup, RunIdKey(shard, fp));
  if (!in_runs.ok() || *in_runs) return in_runs;
  return seen(impl_->db->DefaultColumnFamily(), DedupKey(shard, fp));
}

absl::Status StateStore::Scan(std::string_view from, std::string_view to,
                              const std::function<bool(std::string_view, std::string_view)>& fn) {
  rocksdb::ReadOptions r;
  rocksdb::Slice upper(to.data(), to.size());
  r.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(r));
  for (it->Seek(rocksdb::Slice(from.data(), from.size())); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key(), v = it->value();
    if (!fn({k.data(), k.size()}, {v.data(), v.size()})) break;
  }
  return ToStatus(it->status(), "scan");
}

absl::Status StateStore::ScanRanges(
    const std::vector<std::pair<std::string, std::string>>& ranges,
    const std::function<void(std::string_view, std::string_view)>& fn, const Snapshot* at) {
  if (ranges.empty()) return absl::OkStatus();
  rocksdb::ReadOptions r;
  if (at) r.snapshot = at->get();
  rocksdb::Slice upper(ranges.back().second);
  r.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(r));
  for (const auto& [from, to] : ranges) {
    rocksdb::Slice end(to);
    for (it->Seek(from); it->Valid() && it->key().compare(end) < 0; it->Next()) {
      rocksdb::Slice k = it->key(), v = it->value();
      fn({k.data(), k.size()}, {v.data(), v.size()});
    }
    if (!it->status().ok()) break;
  }
  return ToStatus(it->status(), "scan");
}

absl::Status StateStore::MergeRanges(
    const std::vector<std::pair<std::string, std::string>>& ranges, size_t prefix_bytes,
    const std::function<absl::Status(std::string_view, const std::vector<std::string_view>&)>& fn,
    const Snapshot* at) {
  struct Cursor {
    std::string upper;
    rocksdb::Slice upper_slice;
    std::unique_ptr<rocksdb::Iterator> it;
    std::string_view suffix() const {
      rocksdb::Slice k = it->key();
      return std::string_view(k.data(), k.size()).substr(std::min(k.size(), prefix_bytes_));
    }
    size_t prefix_bytes_;
  };
  std::vector<std::unique_ptr<Cursor>> cursors;
  // A min-heap of cursors by suffix.
  auto later = [](const Cursor* a, const Cursor* b) { return a->suffix() > b->suffix(); };
  std::vector<Cursor*> heap;
  for (const auto& [from, to] : ranges) {
    auto c = std::make_unique<Cursor>();
    c->upper = to;
    c->upper_slice = rocksdb::Slice(c->upper);
    c->prefix_bytes_ = prefix_bytes;
    rocksdb::ReadOptions r;
    if (at) r.snapshot = at->get();
    r.iterate_upper_bound = &c->upper_slice;
    r.fill_cache = false;  // a one-off read of a closed period
    c->it.reset(impl_->db->NewIterator(r));
    c->it->Seek(from);
    if (!c->it->status().ok()) return ToStatus(c->it->status(), "roll-up scan");
    if (c->it->Valid()) heap.push_back(c.get());
    cursors.push_back(std::move(c));
  }
  std::make_heap(heap.begin(), heap.end(), later);
  std::vector<Cursor*> same;
  std::vector<std::string_view> values;
  while (!heap.empty()) {
    same.clear();
    values.clear();
    std::pop_heap(heap.begin(), heap.end(), later);
    same.push_back(heap.back());
    heap.pop_back();
    std::string_view suffix = same.front()->suffix();
    while (!heap.empty() && heap.front()->suffix() == suffix) {
      std::pop_heap(heap.begin(), heap.end(), later);
      same.push_back(heap.back());
      heap.pop_back();
    }
    for (Cursor* c : same) {
      rocksdb::Slice v = c->it->value();
      values.emplace_back(v.data(), v.size());
    }
    absl::Status s = fn(suffix, values);
    if (!s.ok()) return s;
    for (Cursor* c : same) {
      c->it->Next();
      if (!c->it->status().ok()) return ToStatus(c->it->status(), "roll-up scan");
      if (c->it->Valid()) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> StateStore::GetMeta(std::string_view name) {
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), "M" + std::string(name), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return ToStatus(s, "read meta");
  return std::optional<std::string>(std::move(value));
}

absl::Status StateStore::PutMeta(std::string_view name, std::string_view value) {
  rocksdb::WriteOptions w;
  w.sync = true;  // meta is rare and must survive: through RocksDB's own log
  return ToStatus(
      impl_->db->Put(w, "M" + std::string(name), rocksdb::Slice(value.data(), value.size())),
      "write meta");
}

absl::Status StateStore::Sync() {
  rocksdb::FlushOptions f;
  f.wait = true;
  return ToStatus(impl_->db->Flush(f, impl_->handles), "flush");
}

absl::Status StateStore::CompactAll() {
  for (rocksdb::ColumnFamilyHandle* h : impl_->handles) {
    rocksdb::Status s =
        impl_->db->CompactRange(rocksdb::CompactRangeOptions(), h, nullptr, nullptr);
    if (!s.ok()) return ToStatus(s, "compact");
  }
  return absl::OkStatus();
}

StateStore::Sizes StateStore::DiskSizes() const {
  Sizes s;
  auto prop = [this](rocksdb::ColumnFamilyHandle* cf, const char* name) {
    uint64_t v = 0;
    return impl_->db->GetIntProperty(cf, name, &v) ? v : 0;
  };
  rocksdb::ColumnFamilyHandle* aggregates = impl_->db->DefaultColumnFamily();
  s.aggregate_sst_bytes = prop(aggregates, "rocksdb.total-sst-files-size");
  s.pending_compaction_bytes = prop(aggregates, "rocksdb.estimate-pending-compaction-bytes");
  if (impl_->dedup) {
    s.dedup_sst_bytes = prop(impl_->dedup, "rocksdb.total-sst-files-size");
    s.dedup_ids = prop(impl_->dedup, "rocksdb.estimate-num-keys");
    s.pending_compaction_bytes += prop(impl_->dedup, "rocksdb.estimate-pending-compaction-bytes");
  }
  uint64_t running = 0;
  impl_->db->GetIntProperty("rocksdb.num-running-compactions", &running);
  s.running_compactions = running;
  return s;
}

uint64_t StateStore::MemoryBytes() const {
  uint64_t mem = 0;
  impl_->db->GetIntProperty("rocksdb.cur-size-all-mem-tables", &mem);
  return mem + impl_->cache->GetUsage();
}

}  // namespace adpulse
