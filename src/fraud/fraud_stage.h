// The fraud stage as the ingest path sees it: enrichment and scoring of one decoded request, on
// the decoder (HTTP) thread that received it, before the events go to their shards' logs. Each
// producer thread has its own Enricher (unsynchronized caches); the scorer's state is shared
// (fraud/scorer.h says how without a lock per event). Built by the Application from the files
// the config names; no I/O here.
#pragma once
#include <atomic>
#include <memory>
#include <vector>

#include "adpulse/event.h"
#include "base/stable_arena.h"
#include "fraud/enricher.h"
#include "fraud/geo.h"
#include "fraud/scorer.h"
#include "fraud/user_agent.h"

namespace adpulse {

class FraudStage {
 public:
  // `user_agents` and `geo` may be null (not configured or not there). With `score` false the
  // events are enriched but never flagged.
  FraudStage(std::unique_ptr<UserAgentParser> user_agents, std::unique_ptr<GeoSource> geo,
             const ScorerOptions& scorer, const EnricherOptions& enricher, int max_producers,
             bool score = true);

  // Enriches and scores events[0..n) of one request. `producer` is the calling thread's
  // producer id (Pipeline::RegisterProducer): each id is used by one thread at a time.
  void Process(int producer, Event* events, size_t n, StableArena& arena);

  FraudScorer& scorer() { return scorer_; }
  const FraudScorer& scorer() const { return scorer_; }
  bool parses_user_agents() const { return user_agents_ != nullptr; }
  bool has_geo() const { return geo_ != nullptr; }
  const UserAgentParser* user_agents() const { return user_agents_.get(); }

  // Cache counters over every producer's enricher; any thread.
  struct CacheStats {
    uint64_t ua_hits = 0, ua_misses = 0, geo_hits = 0, geo_misses = 0, geo_direct = 0;
  };
  CacheStats cache_stats() const;

 private:
  struct alignas(64) Slot {
    std::unique_ptr<Enricher> enricher;  // made by the producer's own thread on first use
    std::atomic<uint64_t> ua_hits{0}, ua_misses{0}, geo_hits{0}, geo_misses{0}, geo_direct{0};
  };
  std::unique_ptr<UserAgentParser> user_agents_;
  std::unique_ptr<GeoSource> geo_;
  EnricherOptions enricher_options_;
  FraudScorer scorer_;
  bool score_;
  std::vector<Slot> slots_;
};

}  // namespace adpulse
