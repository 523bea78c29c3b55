// The clicks conversions are attributed to (state/click_attribution.h), in a RocksDB database of
// their own under <data-dir>/clicks/. Its own, so that a decoder writing a request's clicks never
// queues behind a shard's flush of aggregates in the state store's write path (sharing it cost a
// quarter of the ingest rate: docs/benchmarks.md). Written through RocksDB's own log, synced with
// each write when `sync` (storage.durability = "fsync"), so a click acknowledged survives kill -9
// and power cuts. The first value written under a key is kept (a merge operator drops later ones,
// with no read before the write). Each click is kept for `retention_ms` after it was written, then
// dropped by a compaction filter; every table is compacted at least daily so that it is.
// Thread-safe.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adpulse {

struct ClickStoreOptions {
  std::string path;
  int64_t retention_ms = 8ll * 86'400'000;
  size_t block_cache_bytes = 16ull << 20;
  size_t write_buffer_bytes = 16ull << 20;
  bool sync = true;
};

class ClickStore {
 public:
  static absl::StatusOr<std::unique_ptr<ClickStore>> Open(const ClickStoreOptions& options);
  ~ClickStore();

  // key -> value pairs: a key the caller derives from the click's id, and what it keeps of it. A
  // key already there keeps its first value. After a failed write (a full disk) RocksDB refuses
  // writes until it recovers; a write that fails resumes it and tries once more.
  absl::Status Put(const std::vector<std::pair<std::string, std::string>>& clicks);
  absl::StatusOr<std::optional<std::string>> Get(std::string_view key);

  struct Sizes {
    uint64_t bytes = 0;   // table files and memtables
    uint64_t clicks = 0;  // RocksDB's estimate of its keys
  };
  Sizes GetSizes() const;

 private:
  struct Impl;
  explicit ClickStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace adpulse
