// The daemon's configuration: embedded defaults (config/adpulse.toml compiled in), overlaid by a
// TOML file, overlaid by command-line flags. Loaded once at startup; read-only afterwards.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "adpulse/event.h"
#include "fraud/scorer.h"
#include "http/auth.h"
#include "http/server.h"
#include "state/shard_writer.h"
#include "window/cube_catalog.h"

namespace adpulse {

struct Config {
  ServerOptions server;
  std::string data_dir = "./data";
  bool fsync = true;  // storage.durability: "fsync" (default) or "os"
  // storage.wal_recovery: "torn_tail" (default), "strict" or "cut_damage"
  WalRecoveryMode wal_recovery = WalRecoveryMode::kTornTail;
  int64_t wal_segment_bytes = 64ll << 20;
  int64_t flush_interval_ms = 10'000;
  int64_t rollup_delay_s = 300;
  int64_t memory_budget_bytes = 1ll << 30;
  int64_t recent_hours = 26;
  int64_t minute_retention_days = 90;
  int64_t hour_retention_days = 730;
  int64_t day_retention_days = 730;
  int64_t archive_retention_days = 90;
  std::string log_level = "info";
  int workers = 0;
  bool pin_workers = true;
  int64_t ring_capacity_tasks = 4096;
  int64_t max_inflight_requests = 1024;
  int64_t max_decoded_body_bytes = 64 << 20;
  int64_t max_future_s = 60;
  int64_t max_age_s = 86400;
  int64_t max_bid_price = kMaxBidMicros / 1'000'000;  // whole currency units
  int64_t dedup_horizon_s = 86400;
  int64_t max_query_buckets = 200000;
  std::vector<CubeSpec> cubes;

  // [enrichment]. A path may start with "{deps}/": the folder scripts/setup.sh fills with the
  // data it fetches from the npm registry (ExpandDataPath).
  bool enrichment_enabled = true;  // false: neither enrichment nor scoring runs
  std::string user_agent_regexes = "/usr/share/uap-core/regexes.yaml";
  std::string crawler_patterns;
  std::vector<std::string> geo_databases;
  int64_t user_agent_cache_entries = 65'536;
  int64_t geo_cache_entries = 1'048'576;
  // [fraud]
  bool fraud_enabled = true;
  ScorerOptions scorer;         // memory_bytes from fraud_memory_mb (EffectiveScorerOptions)
  int64_t fraud_memory_mb = 0;  // 0: a quarter of memory_budget_bytes
  std::string blocklist_file;
  int64_t fraud_rebuild_window_s = 600;
  // [attribution]
  bool attribution_enabled = true;
  int64_t attribution_window_s = 7 * 86400;
  // [auth]: API tokens ([[auth.tokens]]); none: the daemon is open (and loopback only unless
  // --insecure).
  std::vector<TokenSpec> tokens;
  int64_t auth_max_failures_per_minute = 10;
};

// The scorer's options with its memory: fraud.memory_mb, or a quarter of the memory budget.
ScorerOptions EffectiveScorerOptions(const Config& config);

// "{deps}/x" -> "<the build's deps folder>/x"; other paths unchanged.
std::string ExpandDataPath(std::string_view path);

// Parses "HOST:PORT" ("[::1]:8080" for IPv6).
absl::Status ParseListen(std::string_view text, std::string* host, uint16_t* port);

// Applies one TOML document to `config`. `source` names it in errors ("config/x.toml").
absl::Status ApplyToml(std::string_view toml_text, std::string_view source, Config& config);

// The embedded defaults, then the file at `path` when given.
absl::StatusOr<Config> LoadConfig(const std::optional<std::string>& path);

}  // namespace adpulse
