#include "app/application.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include "app/admin_client.h"
#include "app/config.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/status_macros.h"
#include "base/time_parse.h"
#include "fraud/fraud_stage.h"
#include "http/api.h"
#include "http/auth.h"
#include "http/server.h"
#include "ingest/pipeline.h"
#include "state/click_attribution.h"
#include "storage/click_store.h"
#include "storage/event_log_scan.h"
#include "storage/file_system.h"
#include "storage/mmdb_geo.h"

namespace adpulse {
namespace {

constexpr const char* kVersion = "0.1.0";

constexpr const char* kUsage = R"(adpulse: a single-binary stream engine for ad events

Usage:
  adpulse [serve] [--config FILE] [--listen HOST:PORT] [--data-dir DIR] [--log-level LEVEL]
                 [--insecure]
  adpulse reconcile --from TIME --to TIME [--rebuild] [--config FILE] [--listen HOST:PORT]
  adpulse token --name NAME --scope SCOPE [--scope SCOPE...]
  adpulse --help | --version

Takes impression, click and conversion events over HTTP (POST /v1/events) and answers
aggregate queries (GET /v1/metrics, /v1/metrics/realtime, /v1/top, /v1/funnel, /v1/billing).

Options:
  --config FILE        TOML configuration (see config/adpulse.toml); overrides the defaults
  --listen HOST:PORT   address to listen on (default 127.0.0.1:8080)
  --data-dir DIR       where data is kept (default ./data)
  --log-level LEVEL    debug, info, warn or error (default info)
  --workers N          worker threads (shards); 0 = one per core
  --insecure           allow a non-loopback --listen address with no [[auth.tokens]]
  -h, --help           show this help
  --version            print the version

reconcile asks the running daemon at --listen (or the config's address) to recompute the
aggregates of [--from, --to) from the raw-event archive and the live log and prints every
difference from the stored aggregates; --rebuild replaces the differing ones. TIME is epoch
milliseconds or RFC 3339. Exit code 0: no difference; 1: differences; 2: error. With tokens
configured it sends the admin token in the environment variable ADPULSE_TOKEN.

token prints a new random API token and the [[auth.tokens]] lines to paste into the config
(which keeps only its SHA-256). SCOPE: ingest (POST /v1/events), read (every query), admin
(/v1/admin/*, /metrics) or advertiser:ID (every query, answered for that advertiser only).

Flags override the config file; the config file overrides the embedded defaults.
SIGTERM or SIGINT stops accepting, drains in-flight requests and exits 0.
)";

struct Flags {
  std::optional<std::string> config;
  std::optional<std::string> listen;
  std::optional<std::string> data_dir;
  std::optional<std::string> log_level;
  std::optional<std::string> workers;
  std::optional<std::string> from;
  std::optional<std::string> to;
  bool reconcile = false;
  bool token = false;
  bool insecure = false;
  std::optional<std::string> name;
  std::vector<std::string> scopes;
  bool rebuild = false;
  bool help = false;
  bool version = false;
};

// Returns an error message for a bad command line.
std::string ParseFlags(int argc, char** argv, Flags& flags) {
  int i = 1;
  if (i < argc && std::strcmp(argv[i], "serve") == 0) ++i;
  if (i < argc && std::strcmp(argv[i], "reconcile") == 0) {
    flags.reconcile = true;
    ++i;
  } else if (i < argc && std::strcmp(argv[i], "token") == 0) {
    flags.token = true;
    ++i;
  }
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      flags.help = true;
      continue;
    }
    if (arg == "--version") {
      flags.version = true;
      continue;
    }
    if (arg == "--rebuild") {
      flags.rebuild = true;
      continue;
    }
    if (arg == "--insecure") {
      flags.insecure = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    std::optional<std::string>* target = nullptr;
    if (name == "--config") target = &flags.config;
    if (name == "--listen") target = &flags.listen;
    if (name == "--data-dir") target = &flags.data_dir;
    if (name == "--log-level") target = &flags.log_level;
    if (name == "--workers") target = &flags.workers;
    if (name == "--from") target = &flags.from;
    if (name == "--to") target = &flags.to;
    if (name == "--name") target = &flags.name;
    bool scope = name == "--scope";
    if (!target && !scope) return "unknown argument '" + arg + "' (see adpulse --help)";
    if (!value) {
      if (i + 1 >= argc) return name + " needs a value (see adpulse --help)";
      value = argv[++i];
    }
    if (scope) {
      flags.scopes.push_back(*value);
    } else {
      *target = *value;
    }
  }
  return {};
}

// Creates the data directory and takes an exclusive lock on it, so two daemons never share one.
absl::StatusOr<int> PrepareDataDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        fmt::format("data dir {} cannot be created: {}", dir, ec.message()));
  }
  std::string lock_path = (std::filesystem::path(dir) / "LOCK").string();
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        fmt::format("data dir {} is not writable: {}", dir, std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return absl::FailedPreconditionError(
        fmt::format("data dir {} is in use by another adpulse process", dir));
  }
  return fd;
}

bool FileExists(const std::string& path) {
  std::error_code ec;
  return !path.empty() && std::filesystem::is_regular_file(path, ec);
}

// The blocklist named by fraud.blocklist_file; null when none is configured.
absl::StatusOr<std::shared_ptr<const IpSet>> LoadBlocklist(const std::string& path) {
  if (path.empty()) return std::shared_ptr<const IpSet>();
  auto text = ReadWholeFile(FileSystem::Default(), path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("fraud.blocklist_file {} cannot be read: {}", path, Message(text.status())));
  }
  auto set = IpSet::Parse(*text, path);
  if (!set.ok()) return set.status();
  return std::make_shared<const IpSet>(std::move(*set));
}

// Enrichment and scoring from the files the config names. A missing regex or geo file turns that
// part off, said once; a malformed one is an error.
absl::StatusOr<std::unique_ptr<FraudStage>> BuildFraudStage(const Config& config,
                                                            int max_producers) {
  std::unique_ptr<UserAgentParser> parser;
  std::string regexes = ExpandDataPath(config.user_agent_regexes);
  if (FileExists(regexes)) {
    auto yaml = ReadWholeFile(FileSystem::Default(), regexes);
    if (!yaml.ok()) return yaml.status();
    std::string crawlers_path = ExpandDataPath(config.crawler_patterns);
    std::string crawlers;
    if (FileExists(crawlers_path)) {
      auto text = ReadWholeFile(FileSystem::Default(), crawlers_path);
      if (!text.ok()) return text.status();
      crawlers = std::move(*text);
    } else if (!config.crawler_patterns.empty()) {
      LOG_WARN(
          "enrichment: crawler patterns {} not found (run scripts/setup.sh); bots are "
          "recognized by uap-core's spider list only",
          crawlers_path);
    }
    auto created = UserAgentParser::Create(*yaml, crawlers);
    if (!created.ok()) {
      return absl::InvalidArgumentError(
          fmt::format("enrichment.user_agent_regexes {}: {}", regexes, Message(created.status())));
    }
    parser = std::move(*created);
    LOG_INFO("enrichment: user agents parsed with {}{}", regexes,
             crawlers.empty() ? "" : fmt::format(" and crawler patterns {}", crawlers_path));
  } else {
    LOG_WARN("enrichment: user-agent parsing is off: {} not found (install Debian's uap-core)",
             regexes.empty() ? "(none configured)" : regexes);
  }
  std::unique_ptr<GeoSource> geo;
  std::vector<std::string> geo_paths;
  for (const std::string& p : config.geo_databases) geo_paths.push_back(ExpandDataPath(p));
  auto opened = MmdbGeo::Open(geo_paths);
  if (opened.ok()) {
    for (const std::string& d : (*opened)->descriptions()) LOG_INFO("enrichment: geo from {}", d);
    geo = std::move(*opened);
  } else if (absl::IsNotFound(opened.status())) {
    LOG_WARN("enrichment: geo is off: no geo database found ({}; run scripts/setup.sh)",
             geo_paths.empty() ? std::string("none configured")
                               : fmt::format("{}", fmt::join(geo_paths, ", ")));
  } else {
    return opened.status();
  }
  EnricherOptions eo;
  eo.ua_cache_entries = static_cast<size_t>(config.user_agent_cache_entries);
  eo.geo_cache_entries = static_cast<size_t>(config.geo_cache_entries);
  auto stage = std::make_unique<FraudStage>(std::move(parser), std::move(geo),
                                            EffectiveScorerOptions(config), eo, max_producers,
                                            config.fraud_enabled);
  auto blocklist = LoadBlocklist(config.blocklist_file);
  if (!blocklist.ok()) return blocklist.status();
  if (*blocklist) {
    LOG_INFO("fraud: blocklist {} ({} ranges)", config.blocklist_file, (*blocklist)->ranges());
  }
  stage->scorer().SetBlocklist(std::move(*blocklist));
  if (!config.fraud_enabled) LOG_WARN("fraud: scoring is off (fraud.enabled = false)");
  return stage;
}

// Feeds the events of the last fraud.rebuild_window_s of every shard's log to the scorer, so the
// signal state of an attack in progress survives a restart.
absl::Status RebuildFraudState(const Config& config, const PipelineOptions& pipeline_options,
                               Archiver& archiver, FraudStage& stage) {
  auto started = std::chrono::steady_clock::now();
  int64_t from = NowMs() - config.fraud_rebuild_window_s * 1000;
  uint64_t events = 0;
  bool earlier = false;
  for (int shard = 0; shard < pipeline_options.workers; ++shard) {
    EventLogScanOptions o;
    o.shard_wal_dir =
        (std::filesystem::path(pipeline_options.wal_dir) / fmt::format("shard-{:03}", shard))
            .string();
    o.archiver = &archiver;
    o.shard = shard;
    o.from_ms = from;
    o.max_future_ms = pipeline_options.max_future_ms;
    o.saw_earlier = &earlier;
    absl::Status s = ScanLoggedEvents(o, [&](const Event& e) {
      stage.scorer().Observe(&e, 1);
      ++events;
      return true;
    });
    if (!s.ok()) {
      return absl::Status(
          s.code(), fmt::format("fraud: rebuilding the signal state from shard {}'s log: {}", shard,
                                Message(s)));
    }
  }
  // With nothing logged before the window, the scorer has seen the whole history.
  stage.scorer().SetHistoryFrom(earlier ? from : INT64_MIN);
  LOG_INFO("fraud: signal state rebuilt from {} logged events of the last {} s in {:.2f} s", events,
           config.fraud_rebuild_window_s,
           std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return absl::OkStatus();
}

void AddAttributionMetrics(MetricsRegistry& metrics, ClickAttribution& attribution,
                           ClickStore& clicks) {
  metrics.AddGauge("adpulse_click_index_bytes",
                   "Size of the attribution index of clicks (table files and memtables).",
                   [&clicks] { return static_cast<double>(clicks.GetSizes().bytes); });
  metrics.AddGauge("adpulse_click_index_clicks",
                   "Clicks in the attribution index (RocksDB's estimate).",
                   [&clicks] { return static_cast<double>(clicks.GetSizes().clicks); });
  metrics.AddCounterFn("adpulse_clicks_indexed_total",
                       "Clicks written to the attribution index (resent requests count again).",
                       [&attribution] { return attribution.clicks_indexed(); });
  metrics.AddCounterFn(
      "adpulse_conversions_attributed_total",
      "Conversions attributed to their click, as decoded (resent requests count again).",
      [&attribution] { return attribution.outcomes(Attribution::kAttributed); });
  metrics.AddCounterFn(
      "adpulse_click_index_write_failures_total",
      "Writes of a request's clicks to the attribution index that failed (those clicks are not "
      "indexed).",
      [&attribution] { return attribution.write_failures(); });
  metrics.AddCounterFn("adpulse_click_index_unreadable_total",
                       "Stored clicks that could not be read (their conversions counted unknown).",
                       [&attribution] { return attribution.unreadable(); });
  for (auto [reason, a] : {std::pair{"no_click_id", Attribution::kNoClickId},
                           std::pair{"unknown_click", Attribution::kUnknownClick},
                           std::pair{"outside_window", Attribution::kOutsideWindow},
                           std::pair{"invalid_click", Attribution::kInvalidClick}}) {
    metrics.AddCounterFn(
        "adpulse_conversions_unattributed_total",
        "Conversions not attributed to a click, by reason, as decoded (resent requests count "
        "again).",
        fmt::format("reason=\"{}\"", reason),
        [&attribution, a = a] { return attribution.outcomes(a); });
  }
}

void AddFraudMetrics(MetricsRegistry& metrics, FraudStage& stage) {
  const FraudScorer& scorer = stage.scorer();
  metrics.AddCounterFn("adpulse_fraud_events_scored_total", "Events scored for invalid traffic.",
                       [&scorer] { return scorer.stats(false).scored; });
  metrics.AddCounterFn("adpulse_fraud_events_invalid_total",
                       "Events scored as invalid traffic (counted in fraud_* only, not billed).",
                       [&scorer] { return scorer.stats(false).invalid; });
  for (int i = 0; i < kSignalCount; ++i) {
    metrics.AddCounterFn("adpulse_fraud_signals_total",
                         "Events on which each invalid-traffic signal fired (an event may fire "
                         "several).",
                         fmt::format("signal=\"{}\"", SignalName(static_cast<Signal>(i))),
                         [&scorer, i] { return scorer.stats(false).fired[i]; });
  }
  metrics.AddGauge("adpulse_fraud_state_bytes", "Memory the fraud signal state's entries hold.",
                   [&scorer] { return static_cast<double>(scorer.stats().memory_bytes); });
  metrics.AddGauge("adpulse_fraud_state_reserved_bytes",
                   "Fixed size of the fraud signal state's tables (fraud.memory_mb), committed as "
                   "they are touched.",
                   [&scorer] { return static_cast<double>(scorer.stats().reserved_bytes); });
  metrics.AddGauge("adpulse_fraud_state_entries",
                   "IPs, users, clicks and campaigns the fraud "
                   "signal state remembers.",
                   [&scorer] {
                     auto s = scorer.stats();
                     return static_cast<double>(s.ips + s.users + s.clicks + s.campaigns);
                   });
  metrics.AddCounterFn(
      "adpulse_fraud_state_evictions_total",
      "Fraud signal state entries replaced by newer keys to stay within fraud.memory_mb.",
      [&scorer] { return scorer.stats().evictions; });
  metrics.AddCounterFn("adpulse_enrichment_user_agent_cache_hits_total",
                       "User agents found in the parse cache.",
                       [&stage] { return stage.cache_stats().ua_hits; });
  metrics.AddCounterFn("adpulse_enrichment_user_agent_cache_misses_total",
                       "User agents parsed (not in the cache).",
                       [&stage] { return stage.cache_stats().ua_misses; });
  metrics.AddCounterFn("adpulse_enrichment_geo_cache_hits_total",
                       "IP addresses found in the geo cache.",
                       [&stage] { return stage.cache_stats().geo_hits; });
  metrics.AddCounterFn("adpulse_enrichment_geo_cache_misses_total",
                       "IP addresses looked up in the geo database.",
                       [&stage] { return stage.cache_stats().geo_misses; });
  metrics.AddCounterFn("adpulse_enrichment_geo_table_lookups_total",
                       "IPv4 addresses placed from the in-memory range table (not cached: a "
                       "lookup there costs less).",
                       [&stage] { return stage.cache_stats().geo_direct; });
}

}  // namespace

bool IsLoopback(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host, ec);
  return !ec && address.is_loopback();
}

// `adpulse token`: a new token, and the lines of config that accept it.
int PrintNewToken(const Flags& flags) {
  TokenSpec spec;
  if (!flags.name || flags.name->empty()) {
    fmt::print(stderr, "adpulse: token needs --name NAME (shown in logs and metrics)\n");
    return 2;
  }
  if (flags.scopes.empty()) {
    fmt::print(stderr, "adpulse: token needs --scope SCOPE (ingest, read, admin, advertiser:ID)\n");
    return 2;
  }
  for (const std::string& s : flags.scopes) {
    absl::Status added = AddScope(s, spec);
    if (!added.ok()) {
      fmt::print(stderr, "adpulse: {}\n", Message(added));
      return 2;
    }
  }
  // The name goes into a TOML string and a Prometheus label: the config's own rule.
  for (char c : *flags.name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      fmt::print(stderr, "adpulse: --name '{}' must be letters, digits, '-', '_' or '.'\n",
                 *flags.name);
      return 2;
    }
  }
  std::string token = NewToken();
  std::array<uint8_t, 32> digest = Sha256(token);
  std::string scopes;
  for (const std::string& s : flags.scopes) {
    scopes += fmt::format("{}\"{}\"", scopes.empty() ? "" : ", ", s);
  }
  fmt::print(
      "{}\n\n# The token above is shown once: give it to the client (Authorization: Bearer "
      "<token>).\n# adpulse keeps only its SHA-256; paste these lines into the config:\n"
      "[[auth.tokens]]\nname = \"{}\"\nsha256 = \"{}\"\nscopes = [{}]\n",
      token, *flags.name, HexOf(digest.data(), digest.size()), scopes);
  return 0;
}

int RunApplication(int argc, char** argv) {
  Flags flags;
  std::string error = ParseFlags(argc, argv, flags);
  if (!error.empty()) {
    fmt::print(stderr, "adpulse: {}\n", error);
    return 2;
  }
  if (flags.help) {
    fmt::print("{}", kUsage);
    return 0;
  }
  if (flags.version) {
    fmt::print("adpulse {}\n", kVersion);
    return 0;
  }
  auto fail = [](const absl::Status& s) {
    fmt::print(stderr, "adpulse: {}\n", Message(s));
    return 1;
  };
  if (flags.token) return PrintNewToken(flags);
  auto loaded = LoadConfig(flags.config);
  if (!loaded.ok()) return fail(loaded.status());
  Config config = std::move(*loaded);
  if (flags.listen) {
    absl::Status s = ParseListen(*flags.listen, &config.server.host, &config.server.port);
    if (!s.ok()) return fail(s);
  }
  if (flags.data_dir) config.data_dir = *flags.data_dir;
  if (flags.log_level) config.log_level = *flags.log_level;
  if (flags.workers) {
    char* end = nullptr;
    long v = std::strtol(flags.workers->c_str(), &end, 10);
    if (flags.workers->empty() || *end != '\0' || v < 0 || v > 256) {
      return fail(absl::InvalidArgumentError(
          fmt::format("--workers '{}' must be a number from 0 to 256", *flags.workers)));
    }
    config.workers = static_cast<int>(v);
  }
  if (flags.reconcile) {
    if (!flags.from || !flags.to) {
      fmt::print(stderr, "adpulse: reconcile needs --from and --to (see adpulse --help)\n");
      return 2;
    }
    auto from = ParseTimeMs("--from", *flags.from);
    auto to = ParseTimeMs("--to", *flags.to);
    if (!from.ok() || !to.ok()) {
      fail(from.ok() ? to.status() : from.status());
      return 2;
    }
    std::string host = config.server.host == "0.0.0.0" ? "127.0.0.1" : config.server.host;
    const char* token = std::getenv("ADPULSE_TOKEN");
    auto reply = HttpPost(host, config.server.port,
                          fmt::format("/v1/admin/reconcile?start={}&end={}{}", *from, *to,
                                      flags.rebuild ? "&rebuild=true" : ""),
                          token ? token : "");
    if (!reply.ok()) {
      fail(reply.status());
      return 2;
    }
    fmt::print("{}", reply->body);
    if (reply->status != 200) return 2;
    return reply->body.find("\"difference_count\":0,") != std::string::npos ? 0 : 1;
  }
  auto level = ParseLogLevel(config.log_level);
  if (!level.ok()) return fail(level.status());
  SetLogLevel(*level);

  if (config.tokens.empty() && !IsLoopback(config.server.host) && !flags.insecure) {
    return fail(absl::FailedPreconditionError(fmt::format(
        "listening on {}:{} with no API tokens would let anyone who reaches it read every "
        "advertiser's data and run admin actions; add [[auth.tokens]] (adpulse token makes "
        "one) or pass --insecure",
        config.server.host, config.server.port)));
  }
  // Before anything is opened: a bad certificate fails startup with its one line.
  if (absl::Status tls = CheckTlsFiles(config.server); !tls.ok()) return fail(tls);
  auto lock_fd = PrepareDataDir(config.data_dir);
  if (!lock_fd.ok()) return fail(lock_fd.status());

  auto catalog = CubeCatalog::Create(config.cubes);
  if (!catalog.ok()) return fail(catalog.status());

  PipelineOptions pipeline_options;
  pipeline_options.wal_dir = (std::filesystem::path(config.data_dir) / "wal").string();
  pipeline_options.fsync = config.fsync;
  pipeline_options.wal_recovery = config.wal_recovery;
  pipeline_options.max_future_ms = config.max_future_s * 1000;
  pipeline_options.wal_segment_bytes = static_cast<uint64_t>(config.wal_segment_bytes);
  pipeline_options.workers =
      config.workers > 0 ? config.workers
                         : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // An I/O thread and an event decoder per HTTP thread, and room for more sources.
  pipeline_options.max_producers = 2 * config.server.threads + 2;
  pipeline_options.ring_capacity_tasks = static_cast<size_t>(config.ring_capacity_tasks);
  pipeline_options.pin_workers = config.pin_workers;
  pipeline_options.dedup_horizon_ms = config.dedup_horizon_s * 1000;
  pipeline_options.max_inflight_requests = static_cast<size_t>(config.max_inflight_requests);
  if (pipeline_options.ring_capacity_tasks < pipeline_options.max_inflight_requests) {
    // One task per request per ring: a ring this size never fills under admission control.
    pipeline_options.ring_capacity_tasks = pipeline_options.max_inflight_requests;
  }

  StateStoreOptions store_options;
  store_options.path = (std::filesystem::path(config.data_dir) / "state").string();
  // The memory budget, split (config/adpulse.toml says how).
  const uint64_t budget = static_cast<uint64_t>(config.memory_budget_bytes);
  store_options.block_cache_bytes = budget / 8;
  store_options.write_buffer_bytes = budget / 16;
  store_options.dedup_horizon_ms = config.dedup_horizon_s * 1000;
  store_options.minute_retention_ms = config.minute_retention_days * 86'400'000;
  store_options.hour_retention_ms = config.hour_retention_days * 86'400'000;
  store_options.day_retention_ms = config.day_retention_days * 86'400'000;
  auto store = StateStore::Open(store_options);
  if (!store.ok()) return fail(store.status());
  pipeline_options.store = store->get();
  // Events are sharded by hash % shards and each shard has its own log and checkpoint, so the
  // shard count of a data dir is fixed when it is created (a different count would route
  // campaigns to shards that never saw them).
  auto stored_shards = (*store)->GetMeta("shards");
  if (!stored_shards.ok()) return fail(stored_shards.status());
  if (*stored_shards) {
    int shards = std::atoi((*stored_shards)->c_str());
    if (shards < 1) return fail(absl::DataLossError("the state store's shard count is malformed"));
    if (shards != pipeline_options.workers) {
      LOG_WARN(
          "data dir {} was created with {} shards: running {} workers (ingest.workers = {} "
          "applies to new data dirs only)",
          config.data_dir, shards, shards, pipeline_options.workers);
      pipeline_options.workers = shards;
    }
  } else {
    absl::Status s = (*store)->PutMeta("shards", std::to_string(pipeline_options.workers));
    if (!s.ok()) return fail(s);
  }
  Archiver archiver({(std::filesystem::path(config.data_dir) / "archive").string(),
                     config.archive_retention_days * 86'400'000, store->get()});
  archiver.Start();
  pipeline_options.archiver = &archiver;
  pipeline_options.flush_interval_ms = config.flush_interval_ms;
  pipeline_options.rollup_delay_ms = config.rollup_delay_s * 1000;
  // A new data dir rolls up every hour it can get events for, but not hours whose minutes expire
  // before their roll-up reads them: events older than that write their hours and days themselves.
  pipeline_options.max_event_age_ms =
      std::min(config.max_age_s * 1000, (config.minute_retention_days - 1) * 86'400'000);
  constexpr uint64_t kBytesPerGroup = ShardState::kBytesPerGroup;

  pipeline_options.dedup_filter_bytes =
      budget / 16 / static_cast<uint64_t>(pipeline_options.workers);
  pipeline_options.shard_memory_bytes = std::max<uint64_t>(
      10'000 * kBytesPerGroup, budget / 4 / static_cast<uint64_t>(pipeline_options.workers));
  pipeline_options.recent_hours = config.recent_hours;
  pipeline_options.recent_hours_bytes =
      budget / 16 / static_cast<uint64_t>(pipeline_options.workers);

  MetricsRegistry metrics;
  pipeline_options.fsync_seconds = &metrics.GetHistogram(
      "adpulse_wal_fsync_duration_seconds",
      "fdatasync of each group commit of the write-ahead log (every shard); an event is "
      "acknowledged only after its group's.");
  Pipeline pipeline(*catalog, pipeline_options);
  metrics.AddGauge("adpulse_ingest_inflight_requests", "POST /v1/events requests in flight.",
                   [&pipeline] { return static_cast<double>(pipeline.inflight()); });
  for (int shard = 0; shard < pipeline.shard_count(); ++shard) {
    std::string labels = fmt::format("shard=\"{}\"", shard);
    metrics.AddGauge(
        "adpulse_ring_queued_tasks",
        "Tasks (ingest batches, queries) waiting on the rings into each shard's "
        "worker.",
        labels, [&pipeline, shard] { return static_cast<double>(pipeline.QueuedTasks(shard)); });
    metrics.AddGauge(
        "adpulse_aggregation_lag_seconds",
        "Wall-clock time minus the newest event time each shard has aggregated (0 before its "
        "first event): how far behind real time its numbers are. Grows when its collectors fall "
        "behind or its ingestion stalls; queries see every acknowledged event at once.",
        labels, [&pipeline, shard] {
          int64_t newest = pipeline.ShardCounters(shard).newest_event_ms;
          return newest <= 0 ? 0.0 : std::max<double>(0, (NowMs() - newest) / 1e3);
        });
  }
  metrics.AddGauge("adpulse_workers", "Worker threads (shards).",
                   [&pipeline] { return static_cast<double>(pipeline.shard_count()); });
  metrics.AddCounterFn("adpulse_late_events_total",
                       "Events counted although their time was over 60 s behind the newest event "
                       "of their shard (counted in their own event-time bucket).",
                       [&pipeline] { return pipeline.CounterTotals().late_events; });
  metrics.AddGauge(
      "adpulse_state_memory_groups",
      "Minute aggregates held in shard memory, not yet flushed to the state store.",
      [&pipeline] { return static_cast<double>(pipeline.CounterTotals().memory_groups); });
  metrics.AddGauge(
      "adpulse_state_memory_dedup_ids",
      "Dedup ids held in shard memory, not yet flushed to the state store.",
      [&pipeline] { return static_cast<double>(pipeline.CounterTotals().memory_dedup_ids); });
  metrics.AddGauge(
      "adpulse_state_interned_bytes",
      "Approximate memory of the dimension values interned by the shards.",
      [&pipeline] { return static_cast<double>(pipeline.CounterTotals().interned_bytes); });
  metrics.AddGauge(
      "adpulse_state_recent_counters_bytes",
      "Memory of the recent hours' counters the shards hold beside the state store "
      "(storage.recent_hours).",
      [&pipeline] { return static_cast<double>(pipeline.CounterTotals().recent_hours_bytes); });
  metrics.AddCounterFn("adpulse_state_flushes_total",
                       "Flushes of shard memory slices into the state store, each with its "
                       "checkpoint.",
                       [&pipeline] { return pipeline.CounterTotals().flushes; });
  metrics.AddCounterFn(
      "adpulse_state_flush_seconds_total",
      "Time workers spent flushing memory into the state store (ingestion on the shard waits "
      "meanwhile: moving a slice aside for its background write, or a whole flush); divided by "
      "adpulse_state_flushes_total, the mean flush.",
      [&pipeline] { return pipeline.CounterTotals().flush_micros / 1e6; });
  metrics.AddCounterFn(
      "adpulse_state_write_seconds_total",
      "Time the shards' background writers spent encoding flushed slices and writing them into "
      "the state store (RocksDB memtable inserts); ingestion goes on meanwhile.",
      [&pipeline] { return pipeline.CounterTotals().write_micros / 1e6; });
  metrics.AddCounterFn(
      "adpulse_state_flush_wait_seconds_total",
      "Time workers waited for their background writer to finish a slice before starting the "
      "next (the state store falling behind: ingestion on the shard waits meanwhile).",
      [&pipeline] { return pipeline.CounterTotals().wait_micros / 1e6; });
  metrics.AddCounterFn("adpulse_state_rollups_total",
                       "Hours and days the state store rolled up from their minutes (hours) once "
                       "closed.",
                       [&pipeline] { return pipeline.CounterTotals().rollups; });
  metrics.AddGauge(
      "adpulse_state_rolled_up_until_seconds",
      "End of the last hour every shard has rolled up (Unix seconds); queries read the minutes of "
      "later hours. Falls behind the clock by the roll-up delay plus up to an hour.",
      [&pipeline] { return pipeline.CounterTotals().rolled_until_ms / 1e3; });
  metrics.AddCounterFn(
      "adpulse_state_rollup_seconds_total",
      "Time the shards' roll-up threads spent summing closed hours and days; ingestion goes on "
      "meanwhile.",
      [&pipeline] { return pipeline.CounterTotals().rollup_micros / 1e6; });
  metrics.AddCounterFn("adpulse_wal_group_commits_total",
                       "Write-ahead-log group commits (one write and one fdatasync each).",
                       [&pipeline] { return pipeline.CounterTotals().commits; });
  metrics.AddCounterFn("adpulse_wal_commit_failures_total",
                       "Group commits that failed (their requests were answered 503).",
                       [&pipeline] { return pipeline.CounterTotals().commit_failures; });
  metrics.AddGauge("adpulse_shards_unavailable",
                   "Shards refusing events (answered 503) because their log could not be cut back "
                   "after a failed write or fsync, or their state store failed; the log says why.",
                   [&pipeline] { return pipeline.CounterTotals().shards_unavailable; });
  metrics.AddCounterFn("adpulse_wal_rotation_failures_total",
                       "Log segment rotations that failed (the current segment goes on; each is "
                       "tried again after the next group).",
                       [&pipeline] { return pipeline.CounterTotals().rotation_failures; });
  metrics.AddCounterFn(
      "adpulse_dedup_store_lookups_total",
      "New event ids the dedup Bloom filter could not rule out, so the state store "
      "was read.",
      [&pipeline] { return pipeline.CounterTotals().store_dedup_lookups; });
  metrics.AddCounterFn(
      "adpulse_ring_full_waits_total",
      "Times a producer found a worker's ring full and waited (nothing is dropped).",
      [&pipeline] { return pipeline.ring_full_waits(); });
  metrics.AddCounterFn("adpulse_archived_segments_total",
                       "Log segments compressed into the raw-event archive.",
                       [&archiver] { return archiver.archived_segments(); });
  metrics.AddGauge("adpulse_state_store_aggregate_bytes",
                   "Size of the state store's table files of aggregates on disk.", [&store] {
                     return static_cast<double>((*store)->DiskSizes().aggregate_sst_bytes);
                   });
  metrics.AddGauge("adpulse_dedup_store_bytes",
                   "Size of the state store's table files of dedup ids on disk.",
                   [&store] { return static_cast<double>((*store)->DiskSizes().dedup_sst_bytes); });
  metrics.AddGauge("adpulse_dedup_store_ids",
                   "Dedup ids in the state store (RocksDB's estimate), within the dedup horizon "
                   "plus what compaction has not dropped yet.",
                   [&store] { return static_cast<double>((*store)->DiskSizes().dedup_ids); });
  metrics.AddGauge("adpulse_state_store_pending_compaction_bytes",
                   "Bytes RocksDB estimates its compactions still have to rewrite.", [&store] {
                     return static_cast<double>((*store)->DiskSizes().pending_compaction_bytes);
                   });
  metrics.AddGauge(
      "adpulse_state_store_running_compactions", "RocksDB compactions running now.",
      [&store] { return static_cast<double>((*store)->DiskSizes().running_compactions); });
  metrics.AddGauge("adpulse_state_store_memory_bytes",
                   "Memory held by the state store's memtables and block cache.",
                   [&store] { return static_cast<double>((*store)->MemoryBytes()); });
  metrics.AddGauge("process_resident_memory_bytes", "Resident memory of the process.", [] {
    long pages = 0, resident = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
      std::fclose(f);
    }
    return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  });

  auto fraud = BuildFraudStage(config, pipeline_options.max_producers);
  if (!fraud.ok()) return fail(fraud.status());
  FraudStage& stage = **fraud;
  AddFraudMetrics(metrics, stage);
  config.server.on_sighup = [&stage, path = config.blocklist_file] {
    if (path.empty()) return;
    auto blocklist = LoadBlocklist(path);
    if (!blocklist.ok()) {
      LOG_ERROR("fraud: blocklist not reloaded, the previous one stays: {}",
                Message(blocklist.status()));
      return;
    }
    LOG_INFO("fraud: blocklist {} reloaded ({} ranges)", path, (*blocklist)->ranges());
    stage.scorer().SetBlocklist(std::move(*blocklist));
  };

  ApiOptions api_options;
  // enrichment.enabled = false: events go to the log as they came, valid (for comparisons).
  api_options.fraud = config.enrichment_enabled ? &stage : nullptr;
  AttributionOptions attribution_options;
  attribution_options.enabled = config.attribution_enabled;
  attribution_options.window_ms = config.attribution_window_s * 1000;
  // Opened only when on: with it off, a damaged clicks/ cannot keep the daemon from starting.
  std::unique_ptr<ClickStore> clicks;
  std::unique_ptr<ClickAttribution> attribution;
  if (config.attribution_enabled) {
    ClickStoreOptions click_options;
    click_options.path = (std::filesystem::path(config.data_dir) / "clicks").string();
    // A conversion may arrive max_age_s after its own time, itself up to the window after its
    // click's, which may have been written max_future_s before that time; a day of margin.
    click_options.retention_ms =
        (config.attribution_window_s + config.max_age_s + config.max_future_s + 86'400) * 1000;
    click_options.sync = config.fsync;
    auto opened = ClickStore::Open(click_options);
    if (!opened.ok()) return fail(opened.status());
    clicks = std::move(*opened);
    attribution = std::make_unique<ClickAttribution>(*clicks, attribution_options);
    AddAttributionMetrics(metrics, *attribution, *clicks);
  } else {
    LOG_WARN("attribution is off (attribution.enabled = false): conversions keep their own fields");
  }
  api_options.attribution = attribution.get();
  if (!config.enrichment_enabled)
    LOG_WARN("enrichment and fraud scoring are off (enrichment.enabled = false)");
  api_options.wal_dir = pipeline_options.wal_dir;
  api_options.archiver = &archiver;
  api_options.max_body_bytes = config.server.max_body_bytes;
  api_options.max_decoded_body_bytes = static_cast<size_t>(config.max_decoded_body_bytes);
  api_options.validation.max_future_ms = config.max_future_s * 1000;
  api_options.validation.max_age_ms = config.max_age_s * 1000;
  api_options.validation.max_bid_micros = config.max_bid_price * 1'000'000;
  api_options.max_query_buckets = config.max_query_buckets;
  Authenticator::Options auth_options;
  auth_options.tokens = config.tokens;
  auth_options.max_failures_per_minute = static_cast<int>(config.auth_max_failures_per_minute);
  Authenticator auth(std::move(auth_options));
  api_options.auth = &auth;
  if (auth.open()) {
    LOG_WARN(
        "access: no API tokens configured: anyone who can reach {}:{} may ingest, read every "
        "advertiser's data and run admin actions{}",
        config.server.host, config.server.port,
        IsLoopback(config.server.host) ? " (loopback only)" : " (--insecure)");
  } else {
    std::string names;
    for (const TokenSpec& t : config.tokens)
      names += fmt::format("{}{}", names.empty() ? "" : ", ", t.name);
    LOG_INFO("access: {} API tokens ({}); requests without one get 401", config.tokens.size(),
             names);
  }
  Api api(api_options, *catalog, pipeline, metrics);

  // Each connection is a file descriptor: the soft limit (often 1024) goes up to the hard one.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0) {
    if (files.rlim_cur < files.rlim_max) {
      files.rlim_cur = files.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &files);
      ::getrlimit(RLIMIT_NOFILE, &files);
    }
    // Log segments, RocksDB's files and the archive need some too.
    if (files.rlim_cur != RLIM_INFINITY && files.rlim_cur < config.server.max_connections + 1024) {
      LOG_WARN(
          "the open-file limit is {}: fewer than server.max_connections ({}) and the files "
          "adpulse keeps open; raise it (ulimit -n, LimitNOFILE=) or lower max_connections",
          files.rlim_cur, config.server.max_connections);
    }
  }
  HttpServer server(config.server, api, pipeline, metrics);
  absl::Status listening = server.Listen();
  if (!listening.ok()) return fail(listening);

  // Serve /healthz and /readyz (503 until recovery ends) while the shards replay their logs.
  std::thread serving([&server] { server.Run(); });
  const char* scheme = config.server.tls_cert_file.empty() ? "http" : "https";
  LOG_INFO("adpulse {} listening on {}://{}:{} (data dir {}, {} workers, {} cubes, durability {})",
           kVersion, scheme, config.server.host, server.port(), config.data_dir,
           pipeline_options.workers, catalog->cubes().size(), config.fsync ? "fsync" : "os");
  if (!config.server.tls_cert_file.empty()) {
    LOG_INFO("tls: certificate {} (reloaded on SIGHUP)", config.server.tls_cert_file);
  }
  auto recovery_started = std::chrono::steady_clock::now();
  pipeline.Start();
  absl::Status recovered = pipeline.WaitRecovered();
  if (!recovered.ok()) {
    server.RequestStop();
    serving.join();
    pipeline.Stop();
    archiver.Stop();
    return fail(recovered);
  }
  if (config.fraud_enabled && config.enrichment_enabled) {
    absl::Status rebuilt = RebuildFraudState(config, pipeline_options, archiver, stage);
    if (!rebuilt.ok()) {
      server.RequestStop();
      serving.join();
      pipeline.Stop();
      archiver.Stop();
      return fail(rebuilt);
    }
  }
  api.SetReady(true);
  LOG_INFO(
      "ready: recovery took {:.2f} s; dashboard at {}://{}:{}/, Grafana datasource at "
      "{}://{}:{}/grafana",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - recovery_started).count(),
      scheme, config.server.host, server.port(), scheme, config.server.host, server.port());
  serving.join();
  pipeline.Stop();  // each shard flushes its memory into the store with a final checkpoint
  archiver.Stop();
  absl::Status synced = (*store)->Sync();
  if (!synced.ok()) LOG_WARN("the state store could not be written out: {}", Message(synced));
  attribution.reset();
  clicks.reset();  // closed while the data dir is still ours
  ::close(*lock_fd);
  LOG_INFO("stopped cleanly");
  return 0;
}

}  // namespace adpulse
