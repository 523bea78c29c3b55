#include "state/click_attribution.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "storage/state_store.h"

namespace adpulse {
namespace {

// How often the index's RocksDB log is synced (on the thread that writes when it is due).
constexpr int64_t kSyncEveryMs = 1000;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ClickAttribution::ClickAttribution(StateStore& store, const AttributionOptions& options)
    : store_(store), options_(options) {}

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

absl::Status ClickAttribution::Index(const Event* events, size_t n) {
  std::vector<std::pair<std::string_view, std::string>> clicks;
  for (size_t i = 0; i < n; ++i) {
    const Event& e = events[i];
    if (e.type != EventType::kClick || e.event_id.empty()) continue;
    clicks.emplace_back(e.event_id, EncodeClick(e));
  }
  if (clicks.empty()) return absl::OkStatus();
  absl::Status s = store_.PutClicks(clicks);
  if (!s.ok()) return s;
  clicks_indexed_.fetch_add(clicks.size(), std::memory_order_relaxed);
  return MaybeSync();
}

absl::Status ClickAttribution::MaybeSync() {
  int64_t now = SteadyMs();
  int64_t last = last_sync_ms_.load(std::memory_order_relaxed);
  if (now - last < kSyncEveryMs) return absl::OkStatus();
  // One thread syncs; the others go on.
  if (!last_sync_ms_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    return absl::OkStatus();
  }
  return store_.SyncClicks();
}

absl::Status ClickAttribution::Observe(const Event* events, size_t n) {
  if (!options_.enabled) return absl::OkStatus();
  return Index(events, n);
}

absl::Status ClickAttribution::Process(Event* events, size_t n, StableArena& arena) {
  if (!options_.enabled) return absl::OkStatus();
  // Clicks first, so that a conversion finds a click of the same request too (taken from the
  // request, not read back); the timestamps, not the order, decide the window.
  absl::flat_hash_map<std::string_view, size_t> clicks_here;
  bool conversions = false;
  for (size_t i = 0; i < n; ++i) {
    if (events[i].type == EventType::kClick) {
      clicks_here.emplace(events[i].event_id, i);
    } else if (events[i].type == EventType::kConversion) {
      conversions = true;
    }
  }
  if (!clicks_here.empty()) {
    absl::Status s = Index(events, n);
    if (!s.ok()) return s;
  }
  if (!conversions) return absl::OkStatus();
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
      auto got = store_.GetClick(e.click_id);
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
