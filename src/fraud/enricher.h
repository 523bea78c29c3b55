// Enrichment: fills the browser, os, device_type, country and city an event left empty from its
// user agent (uap-core, fraud/user_agent.h) and its IP (fraud/geo.h), adds the parsed versions and
// the coordinates, and sets the signals one event shows on its own: a bot or crawler user agent,
// no user agent, or fields contradicting the user agent. One Enricher per decoder thread (its
// caches are unsynchronized); the parser and the geo database behind them are shared and
// read-only. No I/O.
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "adpulse/event.h"
#include "base/stable_arena.h"
#include "fraud/geo.h"
#include "fraud/user_agent.h"

namespace adpulse {

struct EnricherOptions {
  size_t ua_cache_entries = 65'536;
  size_t geo_cache_entries = 1'048'576;
};

class Enricher {
 public:
  // Either source may be null: no user-agent parsing (only the missing-agent signal), or no geo.
  Enricher(const UserAgentParser* user_agents, const GeoSource* geo,
           const EnricherOptions& options = {});

  // Enriches `e`; strings it adds are copied into `arena`.
  void Enrich(Event& e, StableArena& arena);

  uint64_t ua_cache_hits() const { return ua_cache_ ? ua_cache_->hits() : 0; }
  uint64_t ua_cache_misses() const { return ua_cache_ ? ua_cache_->misses() : 0; }
  uint64_t geo_cache_hits() const { return geo_cache_ ? geo_cache_->hits() : 0; }
  uint64_t geo_cache_misses() const { return geo_cache_ ? geo_cache_->misses() : 0; }
  uint64_t geo_direct() const { return geo_cache_ ? geo_cache_->direct() : 0; }

 private:
  bool Mismatch(std::string_view browser, std::string_view os, std::string_view device,
                const UserAgentInfo& ua);

  std::unique_ptr<UserAgentCache> ua_cache_;
  std::unique_ptr<GeoCache> geo_cache_;
  // Contradiction verdicts by (carried fields, parsed families): real traffic repeats a few
  // combinations, and normalizing names costs more than the lookup. Cleared when full.
  absl::flat_hash_map<uint64_t, bool> mismatch_memo_;
};

// Whether a value the event carries contradicts the one parsed from its user agent, after
// normalizing names ("Mac OS X" is "macOS", "Chrome Mobile" is "Chrome"); unknown on either side
// ("", "Other") never contradicts.
bool ContradictsBrowser(std::string_view carried, std::string_view parsed);
bool ContradictsOs(std::string_view carried, std::string_view parsed);
bool ContradictsDevice(std::string_view carried, DeviceClass parsed);

}  // namespace adpulse
