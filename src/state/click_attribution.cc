#include "state/click_attribution.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "state/dedup_index.h"
#include "storage/click_store.h"

namespace adpulse {
namespace {

// How often the index's RocksDB log is synced.
constexpr auto kSyncEvery = std::chrono::seconds(1);

// The store's key of a click: the 128-bit hash of its event_id that dedup uses too, big-endian.
// Fixed and short, so the memtable compares keys in one step.
std::string ClickKey(std::string_view click_id) {
  absl::uint128 h = DedupIndex::Fingerprint(click_id);
  std::string k(16, '\0');
  uint64_t parts[2] = {absl::Uint128High64(h), absl::Uint128Low64(h)};
  for (int p = 0; p < 2; ++p) {
    for (int i = 0; i < 8; ++i) k[p * 8 + i] = static_cast<char>(parts[p] >> (56 - 8 * i));
  }
  return k;
}

}  // namespace

ClickAttribution::ClickAttribution(ClickStore& store, const AttributionOptions& options)
    : store_(store), options_(options) {
  if (options_.enabled) syncer_ = std::thread([this] { SyncLoop(); });
}

ClickAttribution::~ClickAttribution() {
  if (!syncer_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  syncer_.join();
}

void ClickAttribution::SyncLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    bool stopping = cv_.wait_for(lock, kSyncEvery, [this] { return stop_; });
    if (dirty_.exchange(false)) {
      lock.unlock();
      absl::Status s = store_.Sync();
      // Not fatal: the clicks are in RocksDB's log (a kill -9 loses none) and the startup
      // re-indexes the last minutes from our own, synced log.
      if (!s.ok()) LOG_WARN("attribution: syncing the click index: {}", Message(s));
      lock.lock();
    }
    if (stopping) return;
  }
}

std::string ClickAttribution::EncodeClick(const Event& click) {
  // i64 LE timestamp, then each dimension as u16 LE length and bytes.
  size_t size = 8 + 2 * kDimCount;
  for (std::string_view d : click.dims) size += d.size();
  std::string out;
  out.reserve(size);
  out.append(reinterpret_cast<const char*>(&click.timestamp_ms), 8);
  for (std::string_view d : click.dims) {
    uint16_t n = static_cast<uint16_t>(d.size());
    out.append(reinterpret_cast<const char*>(&n), 2);
    out.append(d);
  }
  return out;
}

bool ClickAttribution::DecodeClick(std::string_view value, int64_t* timestamp_ms,
                                   std::array<std::string_view, kDimCount>* dims) {
  if (value.size() < 8) return false;
  std::memcpy(timestamp_ms, value.data(), 8);
  value.remove_prefix(8);
  for (std::string_view& d : *dims) {
    if (value.size() < 2) return false;
    uint16_t n;
    std::memcpy(&n, value.data(), 2);
    value.remove_prefix(2);
    if (value.size() < n) return false;
    d = value.substr(0, n);
    value.remove_prefix(n);
  }
  return value.empty();
}

ClickAttribution::Clicks ClickAttribution::PrepareClicks(const Event* events, size_t n) const {
  Clicks clicks;
  if (!options_.enabled) return clicks;
  for (size_t i = 0; i < n; ++i) {
    const Event& e = events[i];
    if (e.type != EventType::kClick || e.event_id.empty()) continue;
    clicks.emplace_back(ClickKey(e.event_id), EncodeClick(e));
  }
  return clicks;
}

absl::Status ClickAttribution::WriteClicks(const Clicks& clicks) {
  if (clicks.empty()) return absl::OkStatus();
  absl::Status s = store_.Put(clicks);
  if (!s.ok()) return s;
  dirty_.store(true, std::memory_order_relaxed);
  clicks_indexed_.fetch_add(clicks.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status ClickAttribution::Observe(const Event* events, size_t n) {
  return WriteClicks(PrepareClicks(events, n));
}

absl::Status ClickAttribution::Process(Event* events, size_t n, StableArena& arena) {
  absl::Status s = Attribute(events, n, arena);
  if (!s.ok()) return s;
  return WriteClicks(PrepareClicks(events, n));
}

absl::Status ClickAttribution::Attribute(Event* events, size_t n, StableArena& arena) {
  if (!options_.enabled) return absl::OkStatus();
  // A conversion may name a click of the same request (taken from the request: it is not in the
  // store yet); the timestamps, not the order, decide the window.
  absl::flat_hash_map<std::string_view, size_t> clicks_here;
  bool conversions = false;
  for (size_t i = 0; i < n; ++i) {
    if (events[i].type == EventType::kConversion) conversions = true;
  }
  if (!conversions) return absl::OkStatus();
  for (size_t i = 0; i < n; ++i) {
    if (events[i].type == EventType::kClick) clicks_here.emplace(events[i].event_id, i);
  }
  for (size_t i = 0; i < n; ++i) {
    Event& e = events[i];
    if (e.type != EventType::kConversion) continue;
    if (e.click_id.empty()) {
      e.attribution = Attribution::kNoClickId;
      outcomes_[static_cast<int>(e.attribution)].fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    int64_t click_ms = 0;
    std::array<std::string_view, kDimCount> dims{};
    bool found = false;
    auto here = clicks_here.find(e.click_id);
    std::optional<std::string> stored;
    if (here != clicks_here.end()) {
      click_ms = events[here->second].timestamp_ms;
      dims = events[here->second].dims;
      found = true;
    } else {
      auto got = store_.Get(ClickKey(e.click_id));
      if (!got.ok()) return got.status();
      if (got->has_value()) {
        stored = std::move(**got);
        if (!DecodeClick(*stored, &click_ms, &dims)) {
          return absl::DataLossError(
              fmt::format("the stored click {} cannot be read", std::string(e.click_id)));
        }
        found = true;
      }
    }
    if (!found) {
      e.attribution = Attribution::kUnknownClick;
    } else if (e.timestamp_ms < click_ms || e.timestamp_ms - click_ms > options_.window_ms) {
      e.attribution = Attribution::kOutsideWindow;
    } else {
      e.attribution = Attribution::kAttributed;
      for (int d = 0; d < kDimCount; ++d) {
        // Money stays in the currency it was sent in; one without takes its click's.
        if (d == static_cast<int>(Dim::kCurrency) && !e.dims[d].empty()) continue;
        e.dims[d] = stored ? arena.Copy(dims[d]) : dims[d];
      }
    }
    outcomes_[static_cast<int>(e.attribution)].fetch_add(1, std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

}  // namespace adpulse
