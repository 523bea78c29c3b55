// Conversions attributed to their clicks. A conversion that names a click_id takes the dimensions
// of that click (campaign, ad, advertiser, publisher, placement, country, city, device, OS,
// browser; not its currency: money stays in the currency it was sent in), when the click came at
// most the attribution window before it and was valid traffic; otherwise it keeps its own and
// counts as unattributed. This runs on the decoder thread, after enrichment and scoring and before
// the events are routed: a conversion goes to the shard of its click's campaign, and the log record
// holds the attributed dimensions and the outcome, so replay and reconciliation reproduce both
// without looking anything up again.
//
// Every click is indexed by its event_id in the click store (storage/click_store.h), written while
// the shards log its request and durable (with storage.durability = "fsync", synced) before the
// request is acknowledged. So a conversion sent after its click's request was acknowledged always
// finds it, whichever decoder thread or shard handles either, across kill -9 and power cuts. The
// first click written under an id is the one kept (a reused id is a duplicate the shards drop).
// A click indexed whose request then failed stays indexed: its resend has the same event_id.
#pragma once
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
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
  ~ClickAttribution();  // writes what is queued first

  // Attributes the conversions among events[0..n) (to clicks in the store or in the same
  // request). Attributed dimensions are copied into `arena`. An error (the store failed) leaves
  // the request to be refused and resent; a stored click that cannot be read counts as unknown
  // (unreadable()), so that a resend is not refused again. Thread-safe.
  absl::Status Attribute(Event* events, size_t n, StableArena& arena);
  // The clicks among events[0..n) as the store keeps them (owning their bytes), and their
  // write. The ingest path writes them while the shards log the request, and acknowledges it
  // only when both are done. A write that fails (a full disk) is counted and logged, and does not
  // refuse the request: its events are counted, only those clicks are not indexed.
  using Clicks = std::vector<std::pair<std::string, std::string>>;
  Clicks PrepareClicks(const Event* events, size_t n) const;
  absl::Status WriteClicks(const Clicks& clicks);
  // The same on the index's own thread, which writes (and syncs) every request queued meanwhile
  // as one batch, so that no decoder waits on the store's fsync; `done` runs on that thread.
  void WriteClicksAsync(Clicks clicks, std::function<void(absl::Status)> done);
  // Attribute, then write the clicks.
  absl::Status Process(Event* events, size_t n, StableArena& arena);

  const AttributionOptions& options() const { return options_; }

  // Outcomes of the conversions seen (by Attribution value), and clicks indexed. Counted as the
  // requests are decoded: a request resent after a failure is counted again.
  uint64_t outcomes(Attribution a) const {
    return outcomes_[static_cast<int>(a)].load(std::memory_order_relaxed);
  }
  uint64_t clicks_indexed() const { return clicks_indexed_.load(std::memory_order_relaxed); }
  // Index writes that failed (those clicks are not indexed), and stored clicks unreadable.
  uint64_t write_failures() const { return write_failures_.load(std::memory_order_relaxed); }
  uint64_t unreadable() const { return unreadable_.load(std::memory_order_relaxed); }

  // The stored form of a click: a version, its verdict, its timestamp and dimensions
  // (docs/formats/clicks.md; exposed for tests).
  struct StoredClick {
    int64_t timestamp_ms = 0;
    bool invalid = false;
    std::array<std::string_view, kDimCount> dims{};
  };
  static std::string EncodeClick(const Event& click);
  static bool DecodeClick(std::string_view value, StoredClick* out);

 private:
  void WriterLoop();

  ClickStore& store_;
  AttributionOptions options_;
  struct Pending {
    Clicks clicks;
    std::function<void(absl::Status)> done;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stop_ = false;
  std::thread writer_;
  std::atomic<uint64_t> outcomes_[kAttributionCount] = {};
  std::atomic<uint64_t> clicks_indexed_{0}, write_failures_{0}, unreadable_{0};
};

}  // namespace adpulse
