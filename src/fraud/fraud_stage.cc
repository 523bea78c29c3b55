#include "fraud/fraud_stage.h"

#include "base/status_macros.h"

namespace adpulse {

FraudStage::FraudStage(std::unique_ptr<UserAgentParser> user_agents, std::unique_ptr<GeoSource> geo,
                       const ScorerOptions& scorer, const EnricherOptions& enricher,
                       int max_producers, bool score)
    : user_agents_(std::move(user_agents)),
      geo_(std::move(geo)),
      enricher_options_(enricher),
      scorer_(scorer),
      score_(score),
      slots_(static_cast<size_t>(max_producers)) {}

void FraudStage::Process(int producer, Event* events, size_t n, StableArena& arena) {
  ADPULSE_CHECK(producer >= 0 && static_cast<size_t>(producer) < slots_.size());
  Slot& slot = slots_[static_cast<size_t>(producer)];
  if (!slot.enricher) {
    slot.enricher = std::make_unique<Enricher>(user_agents_.get(), geo_.get(), enricher_options_);
  }
  Enricher& en = *slot.enricher;
  for (size_t i = 0; i < n; ++i) en.Enrich(events[i], arena);
  if (score_) {
    scorer_.Score(events, n);
  } else {
    for (size_t i = 0; i < n; ++i) events[i].fraud_signals = 0;
  }
  slot.ua_hits.store(en.ua_cache_hits(), std::memory_order_relaxed);
  slot.ua_misses.store(en.ua_cache_misses(), std::memory_order_relaxed);
  slot.geo_hits.store(en.geo_cache_hits(), std::memory_order_relaxed);
  slot.geo_misses.store(en.geo_cache_misses(), std::memory_order_relaxed);
  slot.geo_direct.store(en.geo_direct(), std::memory_order_relaxed);
}

FraudStage::CacheStats FraudStage::cache_stats() const {
  CacheStats s;
  for (const Slot& slot : slots_) {
    s.ua_hits += slot.ua_hits.load(std::memory_order_relaxed);
    s.ua_misses += slot.ua_misses.load(std::memory_order_relaxed);
    s.geo_hits += slot.geo_hits.load(std::memory_order_relaxed);
    s.geo_misses += slot.geo_misses.load(std::memory_order_relaxed);
    s.geo_direct += slot.geo_direct.load(std::memory_order_relaxed);
  }
  return s;
}

}  // namespace adpulse
