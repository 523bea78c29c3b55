// The invalid-traffic scorer: finds the signals that need memory of earlier events (click rates
// and distinct users per IP, a user's impressions, clicks and last position, clicks awaiting
// their conversions), combines them with the ones the enricher found, and gives each event its
// score and verdict before it is logged.
//
// Its state must see every campaign's traffic, whichever decoder thread or shard handles it, so
// it is one structure shared by the decoder threads, split into stripes by key hash. A call
// scores a whole request: for each kind of key it sorts the request's events by stripe and takes
// each stripe's lock once, so a lock is taken per stripe per request, never per event, and two
// decoders contend only when they touch the same stripe at the same instant. Every window is in
// event time, so the verdict depends on the events, not on when they arrive. State is bounded:
// each table is a fixed set-associative array sized from memory_bytes at the start (committed
// as it is touched); a new key takes the least recently used entry of its bucket. No I/O.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "adpulse/event.h"
#include "fraud/ip_set.h"
#include "fraud/signals.h"

namespace adpulse {

struct ScorerOptions {
  // Events whose score reaches the threshold are invalid.
  double threshold = 0.7;
  SignalWeights weights = {
      1.0,   // bot_user_agent
      1.0,   // missing_user_agent
      0.9,   // click_flood
      0.85,  // click_farm
      1.0,   // blocklisted_ip
      0.9,   // impossible_timing
      0.75,  // orphan_click
      0.8,   // repeated_click
      0.75,  // geo_anomaly
      0.7,   // device_mismatch
      0.9,   // click_injection
  };
  // click_flood: more than this many clicks from one IP within a sliding minute.
  int click_flood_per_minute = 100;
  // click_farm: an IP with at least this many distinct users over farm_window_ms whose clicks
  // are at least farm_min_ctr of its impressions (a carrier NAT has the users, not the clicks).
  int farm_distinct_users = 30;
  double farm_min_ctr = 0.3;
  int farm_min_clicks = 10;
  int64_t farm_window_ms = 3'600'000;
  // impossible_timing: a click less than this after the user's impression of the ad.
  int64_t impossible_click_ms = 100;
  // orphan_click: no impression of the ad by the user within this window of the click.
  int64_t attribution_window_ms = 3'600'000;
  // repeated_click: more than repeated_click_max clicks of one ad by one user in the window.
  int64_t repeated_click_window_ms = 600'000;
  int repeated_click_max = 2;
  // geo_anomaly: farther apart than max_travel_kmh allows, beyond the database's imprecision.
  double max_travel_kmh = 1000;
  double geo_tolerance_km = 300;
  // click_injection: a conversion less than this after its click.
  int64_t injection_ms = 2'000;
  // All state together: the tables are sized from it at the start.
  uint64_t memory_bytes = 256ull << 20;
};

class FraudScorer {
 public:
  explicit FraudScorer(const ScorerOptions& options);
  ~FraudScorer();

  // Scores `events[0..n)` in order: ORs the signals found into fraud_signals (keeping those the
  // enricher set), then sets fraud_score_milli and fraud_flags. Thread-safe.
  void Score(Event* events, size_t n);
  // The same state updates, leaving the events' verdicts alone: rebuilds the state of the last
  // minutes from the log at startup.
  void Observe(const Event* events, size_t n);
  // The scorer has seen every event with a timestamp from `ms` on (after a rebuild: the start of
  // what it read). Orphan clicks are judged only where the whole attribution window is covered.
  void SetHistoryFrom(int64_t ms) { history_from_ms_.store(ms, std::memory_order_relaxed); }
  // fraud.blocklist_file, swapped in whole (SIGHUP). Null: none. Any thread.
  void SetBlocklist(std::shared_ptr<const IpSet> blocklist);

  const ScorerOptions& options() const { return options_; }

  struct Stats {
    uint64_t scored = 0, invalid = 0;
    uint64_t fired[kSignalCount] = {};
    uint64_t ips = 0, users = 0, clicks = 0, campaigns = 0;  // entries held now
    uint64_t memory_bytes = 0;                               // the entries held, with their tags
    uint64_t reserved_bytes = 0;  // the tables' fixed size: what the state can grow to
    uint64_t evictions = 0;       // entries replaced by newer keys
  };
  // With `tables` false, only the counters (no stripe is locked).
  Stats stats(bool tables = true) const;

 private:
  struct Scratch;
  struct Tables;
  void Run(Event* events, size_t n, bool judge);

  ScorerOptions options_;
  std::unique_ptr<Tables> tables_;
  std::atomic<int64_t> history_from_ms_{INT64_MIN};
  std::shared_ptr<const IpSet> blocklist_;  // std::atomic_load / atomic_store
  std::atomic<uint64_t> scored_{0}, invalid_{0};
  std::atomic<uint64_t> fired_[kSignalCount] = {};
};

}  // namespace adpulse
