#include "storage/click_store.h"

#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <cstring>
#include <filesystem>

#include "base/time_parse.h"

namespace adpulse {
namespace {

absl::Status ToStatus(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string message = fmt::format("click store: {}: {}", what, s.ToString());
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  return absl::UnavailableError(message);
}

// A stored value starts with the wall-clock ms it was written at (i64 LE); drops what was written
// more than the retention ago.
class RetentionFilter : public rocksdb::CompactionFilter {
 public:
  explicit RetentionFilter(int64_t retention_ms) : retention_ms_(retention_ms) {}
  bool Filter(int, const rocksdb::Slice&, const rocksdb::Slice& value, std::string*,
              bool*) const override {
    if (value.size() < 8) return false;
    int64_t written;
    std::memcpy(&written, value.data(), 8);
    return written < NowMs() - retention_ms_;
  }
  // A click not yet merged into a value (written once, as an operand) expires the same way.
  bool FilterMergeOperand(int level, const rocksdb::Slice& key,
                          const rocksdb::Slice& operand) const override {
    return Filter(level, key, operand, nullptr, nullptr);
  }
  const char* Name() const override { return "adpulse.ClickRetentionFilter.v1"; }

 private:
  int64_t retention_ms_;
};

// Keeps the first value written under a key: the existing one, else the oldest operand.
class KeepFirst : public rocksdb::MergeOperator {
 public:
  bool FullMergeV2(const MergeOperationInput& in, MergeOperationOutput* out) const override {
    rocksdb::Slice first = in.existing_value ? *in.existing_value : in.operand_list.front();
    out->new_value.assign(first.data(), first.size());
    return true;
  }
  bool PartialMerge(const rocksdb::Slice&, const rocksdb::Slice& left, const rocksdb::Slice&,
                    std::string* new_value, rocksdb::Logger*) const override {
    new_value->assign(left.data(), left.size());
    return true;
  }
  const char* Name() const override { return "adpulse.KeepFirst.v1"; }
};

}  // namespace

struct ClickStore::Impl {
  std::unique_ptr<RetentionFilter> filter;
  std::unique_ptr<rocksdb::DB> db;
  bool sync = true;
};

ClickStore::ClickStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ClickStore::~ClickStore() {
  if (impl_ && impl_->db) impl_->db->Close();
}

absl::StatusOr<std::unique_ptr<ClickStore>> ClickStore::Open(const ClickStoreOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        fmt::format("cannot create the click store directory {}: {}", options.path, ec.message()));
  }
  auto impl = std::make_unique<Impl>();
  impl->filter = std::make_unique<RetentionFilter>(options.retention_ms);
  // Point lookups by a fixed 16-byte key: Bloom filters answer an unknown click without reading
  // a block, while their filters are in the block cache (a week of clicks at full rate has more
  // filters than 16 MiB holds; then a lookup may read one from disk).
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  rocksdb::Options o;
  o.create_if_missing = true;
  o.compaction_filter = impl->filter.get();
  o.merge_operator = std::make_shared<KeepFirst>();
  // The filter drops expired clicks only when a table is compacted: every table is, daily.
  o.periodic_compaction_seconds = 86'400;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  o.write_buffer_size = options.write_buffer_bytes;
  o.max_write_buffer_number = 2;
  // Keys are hashes, inserted in random order: a skiplist over all of them cost a cache miss per
  // level per click (the largest part of what attribution cost ingestion). A hash of small
  // skiplists, bucketed by the key's first 8 bytes, costs about one. Lookups are by whole key;
  // nothing iterates the memtable except its flush, which sorts it once.
  o.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(8));
  o.memtable_factory.reset(rocksdb::NewHashSkipListRepFactory(1 << 18));
  o.allow_concurrent_memtable_write = false;
  o.compression_per_level = {rocksdb::kNoCompression, rocksdb::kNoCompression,
                             rocksdb::kLZ4Compression};
  o.bottommost_compression = rocksdb::kLZ4Compression;
  o.max_background_jobs = 1;
  o.keep_log_file_num = 3;
  // RocksDB preallocates each WAL file at 1.1 write buffers (17.6 MiB) with fallocate: on a nearly
  // full disk that reservation alone made the shards' own log writes fail (the disk-full test,
  // now and then, at its first batch). The click store's WAL is small synced appends.
  o.allow_fallocate = false;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, options.path, &db);
  if (!s.ok()) {
    return absl::FailedPreconditionError(
        fmt::format("cannot open the click store {}: {}", options.path, s.ToString()));
  }
  impl->db.reset(db);
  impl->sync = options.sync;
  return std::unique_ptr<ClickStore>(new ClickStore(std::move(impl)));
}

absl::Status ClickStore::Put(const std::vector<std::pair<std::string, std::string>>& clicks) {
  if (clicks.empty()) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  int64_t now = NowMs();
  std::string value;
  for (const auto& [key, v] : clicks) {
    value.assign(reinterpret_cast<const char*>(&now), 8);
    value.append(v);
    rocksdb::Status s = batch.Merge(key, value);
    if (!s.ok()) return ToStatus(s, "write clicks");
  }
  rocksdb::WriteOptions w;
  // Synced as the shards' log is, and at the same time (the ingest path writes both at once).
  w.sync = impl_->sync;
  rocksdb::Status s = impl_->db->Write(w, &batch);
  if (!s.ok()) {
    // After a failed write (a full disk) RocksDB refuses writes until it recovers: by itself
    // (Resume answers Busy meanwhile) or when resumed. The clicks of a failed write were refused
    // with their requests, to be resent, so nothing acknowledged is lost by resuming. Once there
    // is room again, the first write after it works.
    rocksdb::Status r = impl_->db->Resume();
    if (r.ok()) s = impl_->db->Write(w, &batch);
  }
  return ToStatus(s, "write clicks");
}

absl::StatusOr<std::optional<std::string>> ClickStore::Get(std::string_view key) {
  std::string value;
  rocksdb::Status s =
      impl_->db->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return ToStatus(s, "look up a click");
  if (value.size() < 8)
    return absl::DataLossError("click store: a click is shorter than its header");
  return std::optional<std::string>(value.substr(8));
}

ClickStore::Sizes ClickStore::GetSizes() const {
  Sizes s;
  uint64_t v = 0;
  if (impl_->db->GetIntProperty("rocksdb.total-sst-files-size", &v)) s.bytes += v;
  if (impl_->db->GetIntProperty("rocksdb.cur-size-all-mem-tables", &v)) s.bytes += v;
  if (impl_->db->GetIntProperty("rocksdb.estimate-num-keys", &v)) s.clicks = v;
  return s;
}

}  // namespace adpulse
