// Conversions attributed to their clicks. A conversion that names a click_id takes the dimensions
// of that click (campaign, ad, advertiser, publisher, placement, country, city, device, OS,
// browser; its currency only if it has none), when the click came at most the attribution window
// before it; otherwise it keeps its own and counts as unattributed. This runs on the decoder
// thread, after enrichment and scoring and before the events are routed: a conversion goes to
// the shard of its click's campaign, and the log record holds the attributed dimensions and the
// outcome, so replay and reconciliation reproduce both without looking anything up again.
//
// Every click is indexed by its event_id in the click store (storage/click_store.h) before its
// request is acknowledged (written while the shards log it), so a conversion sent after its click's
// request was acknowledged always finds it, whichever decoder thread or shard handles either. The
// index is written through RocksDB's own log, synced about once a second by a thread of its own; at
// startup the clicks of the log's last minutes are indexed again (Observe), which covers what a
// power cut could take from the unsynced tail. A click that was indexed but whose request then
// failed stays indexed: its resend has the same event_id.
#pragma once
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "adpulse/event.h"
#include "base/stable_arena.h"

namespace adpulse {

class ClickStore;

struct AttributionOptions {
  bool enabled = true;
  // A conversion is attributed to a click at most this long before it (event time).
  int64_t window_ms = 7ll * 86'400'000;
};

class ClickAttribution {
 public:
  ClickAttribution(ClickStore& store, const AttributionOptions& options);
  ~ClickAttribution();  // syncs the index a last time

  // Attributes the conversions among events[0..n) (to clicks in the store or in the same
  // request). Attributed dimensions are copied into `arena`. An error (the store failed) leaves
  // the request to be refused and resent. Thread-safe.
  absl::Status Attribute(Event* events, size_t n, StableArena& arena);
  // The clicks among events[0..n) as the store keeps them (owning their bytes), and their
  // write. The ingest path writes them while the shards log the request, and acknowledges it
  // only when both are done; an error refuses the request (resent, its clicks are duplicates,
  // and are indexed again).
  using Clicks = std::vector<std::pair<std::string, std::string>>;
  Clicks PrepareClicks(const Event* events, size_t n) const;
  absl::Status WriteClicks(const Clicks& clicks);
  // Attribute, then write the clicks.
  absl::Status Process(Event* events, size_t n, StableArena& arena);
  // Indexes clicks again, attributing nothing (startup: the last minutes of the log).
  absl::Status Observe(const Event* events, size_t n);

  const AttributionOptions& options() const { return options_; }

  // Outcomes of the conversions seen (by Attribution value), and clicks indexed. Counted as the
  // requests are decoded: a request resent after a failure is counted again.
  uint64_t outcomes(Attribution a) const {
    return outcomes_[static_cast<int>(a)].load(std::memory_order_relaxed);
  }
  uint64_t clicks_indexed() const { return clicks_indexed_.load(std::memory_order_relaxed); }

  // The stored form of a click: its timestamp and dimensions (exposed for tests).
  static std::string EncodeClick(const Event& click);
  static bool DecodeClick(std::string_view value, int64_t* timestamp_ms,
                          std::array<std::string_view, kDimCount>* dims);

 private:
  void SyncLoop();

  ClickStore& store_;
  AttributionOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> dirty_{false};  // clicks written since the last sync
  std::thread syncer_;
  std::atomic<uint64_t> outcomes_[kAttributionCount] = {};
  std::atomic<uint64_t> clicks_indexed_{0};
};

}  // namespace adpulse
