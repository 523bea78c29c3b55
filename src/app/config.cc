#include "app/config.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

#include "base/status_macros.h"
#include "default_config.h"

namespace adpulse {

absl::Status ParseListen(std::string_view text, std::string* host, uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return absl::InvalidArgumentError(
        fmt::format("listen '{}' must be HOST:PORT, e.g. 127.0.0.1:8080", text));
  }
  std::string_view h = text.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  std::string_view p = text.substr(colon + 1);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || ptr != p.data() + p.size() || value > 65535) {
    return absl::InvalidArgumentError(
        fmt::format("listen '{}': port '{}' is not a number from 0 to 65535", text, p));
  }
  *host = std::string(h);
  *port = static_cast<uint16_t>(value);
  return absl::OkStatus();
}

namespace {

std::string Where(std::string_view source, const toml::node& node) {
  const auto& src = node.source();
  return fmt::format("{}:{}", source, src.begin.line);
}

// Reads table[key] into `out` if present, with type and range checks.
absl::Status ReadInt(const toml::table& table, std::string_view section, std::string_view key,
                     std::string_view source, int64_t min, int64_t max, int64_t& out) {
  const toml::node* node = table.get(key);
  if (!node) return absl::OkStatus();
  auto v = node->value<int64_t>();
  if (!node->is_integer() || !v) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {}.{} must be an integer", Where(source, *node), section, key));
  }
  if (*v < min || *v > max) {
    return absl::InvalidArgumentError(fmt::format("{}: {}.{} = {} is out of range [{}, {}]",
                                                  Where(source, *node), section, key, *v, min,
                                                  max));
  }
  out = *v;
  return absl::OkStatus();
}

absl::Status ReadString(const toml::table& table, std::string_view section, std::string_view key,
                        std::string_view source, std::string& out) {
  const toml::node* node = table.get(key);
  if (!node) return absl::OkStatus();
  if (!node->is_string()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {}.{} must be a string", Where(source, *node), section, key));
  }
  out = *node->value<std::string>();
  return absl::OkStatus();
}

absl::Status ReadBool(const toml::table& table, std::string_view section, std::string_view key,
                      std::string_view source, bool& out) {
  const toml::node* node = table.get(key);
  if (!node) return absl::OkStatus();
  if (!node->is_boolean()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {}.{} must be true or false", Where(source, *node), section, key));
  }
  out = *node->value<bool>();
  return absl::OkStatus();
}

// A number (integer or float) into a double, within [min, max].
absl::Status ReadDouble(const toml::table& table, std::string_view section, std::string_view key,
                        std::string_view source, double min, double max, double& out) {
  const toml::node* node = table.get(key);
  if (!node) return absl::OkStatus();
  std::optional<double> v = node->value<double>();
  if (!(node->is_floating_point() || node->is_integer()) || !v) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {}.{} must be a number", Where(source, *node), section, key));
  }
  if (!(*v >= min && *v <= max)) {
    return absl::InvalidArgumentError(fmt::format("{}: {}.{} = {} is out of range [{}, {}]",
                                                  Where(source, *node), section, key, *v, min,
                                                  max));
  }
  out = *v;
  return absl::OkStatus();
}

absl::Status ReadStrings(const toml::table& table, std::string_view section, std::string_view key,
                         std::string_view source, std::vector<std::string>& out) {
  const toml::node* node = table.get(key);
  if (!node) return absl::OkStatus();
  const toml::array* a = node->as_array();
  std::vector<std::string> values;
  if (a) {
    for (const toml::node& x : *a) {
      if (!x.is_string()) {
        a = nullptr;
        break;
      }
      values.push_back(*x.value<std::string>());
    }
  }
  if (!a) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {}.{} must be an array of strings", Where(source, *node), section, key));
  }
  out = std::move(values);
  return absl::OkStatus();
}

absl::Status CheckKeys(const toml::table& table, std::string_view section, std::string_view source,
                       std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, node] : table) {
    bool known = false;
    for (std::string_view a : allowed) known |= (a == key.str());
    if (!known) {
      return absl::InvalidArgumentError(fmt::format("{}: unknown key '{}{}{}'", Where(source, node),
                                                    section, section.empty() ? "" : ".",
                                                    key.str()));
    }
  }
  return absl::OkStatus();
}

const toml::table* Section(const toml::table& root, std::string_view name) {
  const toml::node* node = root.get(name);
  return node ? node->as_table() : nullptr;
}

}  // namespace

absl::Status ApplyToml(std::string_view toml_text, std::string_view source, Config& config) {
  toml::table root;
  try {
    root = toml::parse(toml_text, std::string(source));
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        fmt::format("{}:{}: {}", source, e.source().begin.line, e.description()));
  }
  RETURN_IF_ERROR(CheckKeys(root, "", source,
                            {"server", "storage", "log", "ingest", "dedup", "query", "retention",
                             "cubes", "enrichment", "fraud", "attribution", "auth"}));
  for (std::string_view name : {"server", "storage", "log", "ingest", "dedup", "query", "retention",
                                "enrichment", "fraud", "attribution", "auth"}) {
    const toml::node* node = root.get(name);
    if (node && !node->is_table()) {
      return absl::InvalidArgumentError(
          fmt::format("{}: {} must be a table ([{}])", Where(source, *node), name, name));
    }
  }
  if (const toml::table* t = Section(root, "server")) {
    RETURN_IF_ERROR(CheckKeys(
        *t, "server", source,
        {"listen", "http_threads", "max_body_bytes", "max_decoded_body_bytes", "idle_timeout_s",
         "request_timeout_s", "drain_timeout_s", "max_header_bytes", "max_header_fields",
         "max_connections", "max_connections_per_client", "tls_cert_file", "tls_key_file"}));
    std::string listen;
    RETURN_IF_ERROR(ReadString(*t, "server", "listen", source, listen));
    if (!listen.empty()) {
      RETURN_IF_ERROR(ParseListen(listen, &config.server.host, &config.server.port));
    }
    int64_t v = config.server.threads;
    RETURN_IF_ERROR(ReadInt(*t, "server", "http_threads", source, 1, 64, v));
    config.server.threads = static_cast<int>(v);
    v = static_cast<int64_t>(config.server.max_body_bytes);
    RETURN_IF_ERROR(ReadInt(*t, "server", "max_body_bytes", source, 1024, int64_t{1} << 32, v));
    config.server.max_body_bytes = static_cast<size_t>(v);
    RETURN_IF_ERROR(ReadInt(*t, "server", "max_decoded_body_bytes", source, 1024, int64_t{1} << 34,
                            config.max_decoded_body_bytes));
    v = config.server.idle_timeout_s;
    RETURN_IF_ERROR(ReadInt(*t, "server", "idle_timeout_s", source, 1, 86400, v));
    config.server.idle_timeout_s = static_cast<int>(v);
    v = config.server.request_timeout_s;
    RETURN_IF_ERROR(ReadInt(*t, "server", "request_timeout_s", source, 1, 86400, v));
    config.server.request_timeout_s = static_cast<int>(v);
    v = config.server.drain_timeout_s;
    RETURN_IF_ERROR(ReadInt(*t, "server", "drain_timeout_s", source, 0, 3600, v));
    config.server.drain_timeout_s = static_cast<int>(v);
    v = static_cast<int64_t>(config.server.max_header_bytes);
    RETURN_IF_ERROR(ReadInt(*t, "server", "max_header_bytes", source, 1024, 1 << 24, v));
    config.server.max_header_bytes = static_cast<size_t>(v);
    v = static_cast<int64_t>(config.server.max_header_fields);
    RETURN_IF_ERROR(ReadInt(*t, "server", "max_header_fields", source, 8, 10'000, v));
    config.server.max_header_fields = static_cast<size_t>(v);
    v = static_cast<int64_t>(config.server.max_connections);
    RETURN_IF_ERROR(ReadInt(*t, "server", "max_connections", source, 1, 1'000'000, v));
    config.server.max_connections = static_cast<size_t>(v);
    v = static_cast<int64_t>(config.server.max_connections_per_client);
    RETURN_IF_ERROR(ReadInt(*t, "server", "max_connections_per_client", source, 1, 1'000'000, v));
    config.server.max_connections_per_client = static_cast<size_t>(v);
    RETURN_IF_ERROR(ReadString(*t, "server", "tls_cert_file", source, config.server.tls_cert_file));
    RETURN_IF_ERROR(ReadString(*t, "server", "tls_key_file", source, config.server.tls_key_file));
    if (config.server.tls_cert_file.empty() != config.server.tls_key_file.empty()) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: server.tls_cert_file and server.tls_key_file go together (both, or neither)",
          source));
    }
  }
  if (const toml::table* t = Section(root, "storage")) {
    RETURN_IF_ERROR(
        CheckKeys(*t, "storage", source,
                  {"data_dir", "durability", "wal_segment_bytes", "flush_interval_ms",
                   "rollup_delay_s", "memory_budget_bytes", "recent_hours", "wal_recovery"}));
    RETURN_IF_ERROR(
        ReadInt(*t, "storage", "rollup_delay_s", source, 0, 86'400, config.rollup_delay_s));
    RETURN_IF_ERROR(ReadInt(*t, "storage", "flush_interval_ms", source, 10, 3'600'000,
                            config.flush_interval_ms));
    RETURN_IF_ERROR(ReadInt(*t, "storage", "memory_budget_bytes", source, 64ll << 20,
                            int64_t{1} << 42, config.memory_budget_bytes));
    RETURN_IF_ERROR(
        ReadInt(*t, "storage", "recent_hours", source, 0, 24 * 31, config.recent_hours));
    RETURN_IF_ERROR(ReadString(*t, "storage", "data_dir", source, config.data_dir));
    std::string durability;
    RETURN_IF_ERROR(ReadString(*t, "storage", "durability", source, durability));
    if (durability == "fsync") {
      config.fsync = true;
    } else if (durability == "os") {
      config.fsync = false;
    } else if (!durability.empty()) {
      return absl::InvalidArgumentError(
          fmt::format("{}: storage.durability = \"{}\" must be \"fsync\" or \"os\"",
                      Where(source, *t->get("durability")), durability));
    }
    std::string recovery;
    RETURN_IF_ERROR(ReadString(*t, "storage", "wal_recovery", source, recovery));
    if (recovery == "torn_tail") {
      config.wal_recovery = WalRecoveryMode::kTornTail;
    } else if (recovery == "strict") {
      config.wal_recovery = WalRecoveryMode::kStrict;
    } else if (recovery == "cut_damage") {
      config.wal_recovery = WalRecoveryMode::kCutDamage;
    } else if (!recovery.empty()) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: storage.wal_recovery = \"{}\" must be \"torn_tail\", \"strict\" or \"cut_damage\"",
          Where(source, *t->get("wal_recovery")), recovery));
    }
    RETURN_IF_ERROR(ReadInt(*t, "storage", "wal_segment_bytes", source, 1 << 16, int64_t{1} << 32,
                            config.wal_segment_bytes));
  }
  if (const toml::table* t = Section(root, "log")) {
    RETURN_IF_ERROR(CheckKeys(*t, "log", source, {"level"}));
    RETURN_IF_ERROR(ReadString(*t, "log", "level", source, config.log_level));
  }
  if (const toml::table* t = Section(root, "ingest")) {
    RETURN_IF_ERROR(
        CheckKeys(*t, "ingest", source,
                  {"workers", "pin_workers", "ring_capacity_tasks", "max_inflight_requests",
                   "max_future_s", "max_age_s", "max_bid_price"}));
    int64_t v = config.workers;
    RETURN_IF_ERROR(ReadInt(*t, "ingest", "workers", source, 0, 256, v));
    config.workers = static_cast<int>(v);
    RETURN_IF_ERROR(ReadBool(*t, "ingest", "pin_workers", source, config.pin_workers));
    RETURN_IF_ERROR(ReadInt(*t, "ingest", "ring_capacity_tasks", source, 16, 1 << 24,
                            config.ring_capacity_tasks));
    RETURN_IF_ERROR(ReadInt(*t, "ingest", "max_inflight_requests", source, 1, 1 << 20,
                            config.max_inflight_requests));
    RETURN_IF_ERROR(
        ReadInt(*t, "ingest", "max_future_s", source, 0, 86400 * 7, config.max_future_s));
    RETURN_IF_ERROR(ReadInt(*t, "ingest", "max_age_s", source, 60, 86400 * 366, config.max_age_s));
    // Whole currency units; the top of the range is the largest whole amount an int64 of
    // micro-units holds.
    RETURN_IF_ERROR(ReadInt(*t, "ingest", "max_bid_price", source, 1, INT64_MAX / 1'000'000,
                            config.max_bid_price));
  }
  if (const toml::table* t = Section(root, "dedup")) {
    RETURN_IF_ERROR(CheckKeys(*t, "dedup", source, {"horizon_s"}));
    RETURN_IF_ERROR(
        ReadInt(*t, "dedup", "horizon_s", source, 60, 86400 * 366, config.dedup_horizon_s));
  }
  if (const toml::table* t = Section(root, "retention")) {
    RETURN_IF_ERROR(CheckKeys(*t, "retention", source,
                              {"minute_days", "hour_days", "day_days", "archive_days"}));
    RETURN_IF_ERROR(
        ReadInt(*t, "retention", "archive_days", source, 1, 36500, config.archive_retention_days));
    RETURN_IF_ERROR(
        ReadInt(*t, "retention", "minute_days", source, 1, 36500, config.minute_retention_days));
    RETURN_IF_ERROR(
        ReadInt(*t, "retention", "hour_days", source, 1, 36500, config.hour_retention_days));
    RETURN_IF_ERROR(
        ReadInt(*t, "retention", "day_days", source, 1, 36500, config.day_retention_days));
  }
  if (const toml::table* t = Section(root, "query")) {
    RETURN_IF_ERROR(CheckKeys(*t, "query", source, {"max_buckets"}));
    RETURN_IF_ERROR(
        ReadInt(*t, "query", "max_buckets", source, 1, 100'000'000, config.max_query_buckets));
  }
  if (const toml::table* t = Section(root, "enrichment")) {
    RETURN_IF_ERROR(CheckKeys(*t, "enrichment", source,
                              {"enabled", "user_agent_regexes", "crawler_patterns", "geo_databases",
                               "user_agent_cache_entries", "geo_cache_entries"}));
    RETURN_IF_ERROR(ReadBool(*t, "enrichment", "enabled", source, config.enrichment_enabled));
    RETURN_IF_ERROR(
        ReadString(*t, "enrichment", "user_agent_regexes", source, config.user_agent_regexes));
    RETURN_IF_ERROR(
        ReadString(*t, "enrichment", "crawler_patterns", source, config.crawler_patterns));
    RETURN_IF_ERROR(ReadStrings(*t, "enrichment", "geo_databases", source, config.geo_databases));
    RETURN_IF_ERROR(ReadInt(*t, "enrichment", "user_agent_cache_entries", source, 16, 1 << 24,
                            config.user_agent_cache_entries));
    RETURN_IF_ERROR(ReadInt(*t, "enrichment", "geo_cache_entries", source, 16, 1 << 26,
                            config.geo_cache_entries));
  }
  if (const toml::table* t = Section(root, "auth")) {
    RETURN_IF_ERROR(CheckKeys(*t, "auth", source, {"tokens", "max_failures_per_minute"}));
    RETURN_IF_ERROR(ReadInt(*t, "auth", "max_failures_per_minute", source, 1, 1'000'000,
                            config.auth_max_failures_per_minute));
    if (const toml::node* tokens_node = t->get("tokens")) {
      const toml::array* tokens = tokens_node->as_array();
      if (!tokens) {
        return absl::InvalidArgumentError(
            fmt::format("{}: auth.tokens must be an array of tables ([[auth.tokens]])",
                        Where(source, *tokens_node)));
      }
      std::vector<TokenSpec> specs;
      for (const toml::node& entry : *tokens) {
        const toml::table* e = entry.as_table();
        if (!e) {
          return absl::InvalidArgumentError(
              fmt::format("{}: each [[auth.tokens]] entry must be a table", Where(source, entry)));
        }
        RETURN_IF_ERROR(CheckKeys(*e, "auth.tokens", source, {"name", "sha256", "scopes"}));
        TokenSpec spec;
        std::string hex;
        RETURN_IF_ERROR(ReadString(*e, "auth.tokens", "name", source, spec.name));
        RETURN_IF_ERROR(ReadString(*e, "auth.tokens", "sha256", source, hex));
        std::string where = Where(source, entry);
        bool name_ok = !spec.name.empty() && spec.name.size() <= 64;
        for (char c : spec.name) {
          name_ok &=
              std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
        }
        if (!name_ok) {
          return absl::InvalidArgumentError(fmt::format(
              "{}: auth.tokens name '{}' must be 1 to 64 letters, digits, '-', '_' or '.'", where,
              spec.name));
        }
        auto digest = ParseSha256Hex(hex);
        if (!digest.ok()) {
          return absl::InvalidArgumentError(
              fmt::format("{}: token '{}': {} (adpulse token prints it)", where, spec.name,
                          Message(digest.status())));
        }
        spec.sha256 = *digest;
        const toml::array* scopes = e->get_as<toml::array>("scopes");
        if (!scopes || scopes->empty()) {
          return absl::InvalidArgumentError(fmt::format(
              "{}: token '{}' needs scopes = [...] (ingest, read, admin, advertiser:<id>)", where,
              spec.name));
        }
        for (const toml::node& sc : *scopes) {
          auto text = sc.value<std::string>();
          absl::Status st =
              text ? AddScope(*text, spec) : absl::InvalidArgumentError("scopes must be strings");
          if (!st.ok()) {
            return absl::InvalidArgumentError(
                fmt::format("{}: token '{}': {}", Where(source, sc), spec.name, Message(st)));
          }
        }
        for (const TokenSpec& other : specs) {
          if (other.name == spec.name) {
            return absl::InvalidArgumentError(
                fmt::format("{}: two tokens are named '{}'", where, spec.name));
          }
          if (other.sha256 == spec.sha256) {
            return absl::InvalidArgumentError(fmt::format(
                "{}: tokens '{}' and '{}' have the same sha256", where, other.name, spec.name));
          }
        }
        specs.push_back(std::move(spec));
      }
      config.tokens = std::move(specs);
    }
  }
  if (const toml::table* t = Section(root, "attribution")) {
    RETURN_IF_ERROR(CheckKeys(*t, "attribution", source, {"enabled", "window_s"}));
    RETURN_IF_ERROR(ReadBool(*t, "attribution", "enabled", source, config.attribution_enabled));
    RETURN_IF_ERROR(ReadInt(*t, "attribution", "window_s", source, 1, 86400 * 366,
                            config.attribution_window_s));
  }
  if (const toml::table* t = Section(root, "fraud")) {
    RETURN_IF_ERROR(CheckKeys(
        *t, "fraud", source,
        {"enabled", "threshold", "blocklist_file", "rebuild_window_s", "memory_mb",
         "click_flood_per_minute", "farm_distinct_users", "farm_min_ctr", "farm_min_clicks",
         "farm_window_s", "impossible_click_ms", "attribution_window_s", "repeated_click_window_s",
         "repeated_click_max", "max_travel_kmh", "geo_tolerance_km", "injection_ms", "weights"}));
    ScorerOptions& o = config.scorer;
    RETURN_IF_ERROR(ReadBool(*t, "fraud", "enabled", source, config.fraud_enabled));
    RETURN_IF_ERROR(ReadDouble(*t, "fraud", "threshold", source, 0.001, 1, o.threshold));
    RETURN_IF_ERROR(ReadString(*t, "fraud", "blocklist_file", source, config.blocklist_file));
    RETURN_IF_ERROR(
        ReadInt(*t, "fraud", "rebuild_window_s", source, 0, 86'400, config.fraud_rebuild_window_s));
    RETURN_IF_ERROR(ReadInt(*t, "fraud", "memory_mb", source, 0, 1 << 20, config.fraud_memory_mb));
    auto read_int = [&](std::string_view key, int64_t min, int64_t max, int64_t scale,
                        auto& field) -> absl::Status {
      int64_t x = static_cast<int64_t>(field) / scale;
      RETURN_IF_ERROR(ReadInt(*t, "fraud", key, source, min, max, x));
      field = static_cast<std::remove_reference_t<decltype(field)>>(x * scale);
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(read_int("click_flood_per_minute", 1, 1'000'000, 1, o.click_flood_per_minute));
    RETURN_IF_ERROR(read_int("farm_distinct_users", 2, 1'000, 1, o.farm_distinct_users));
    RETURN_IF_ERROR(ReadDouble(*t, "fraud", "farm_min_ctr", source, 0, 1000, o.farm_min_ctr));
    RETURN_IF_ERROR(read_int("farm_min_clicks", 1, 1'000'000, 1, o.farm_min_clicks));
    RETURN_IF_ERROR(read_int("farm_window_s", 60, 86'400, 1000, o.farm_window_ms));
    RETURN_IF_ERROR(read_int("impossible_click_ms", 0, 60'000, 1, o.impossible_click_ms));
    RETURN_IF_ERROR(
        read_int("attribution_window_s", 1, 30 * 86'400, 1000, o.attribution_window_ms));
    RETURN_IF_ERROR(
        read_int("repeated_click_window_s", 1, 86'400, 1000, o.repeated_click_window_ms));
    RETURN_IF_ERROR(read_int("repeated_click_max", 1, 1'000'000, 1, o.repeated_click_max));
    RETURN_IF_ERROR(ReadDouble(*t, "fraud", "max_travel_kmh", source, 1, 1e6, o.max_travel_kmh));
    RETURN_IF_ERROR(
        ReadDouble(*t, "fraud", "geo_tolerance_km", source, 0, 20'000, o.geo_tolerance_km));
    RETURN_IF_ERROR(read_int("injection_ms", 0, 3'600'000, 1, o.injection_ms));
    if (const toml::node* wn = t->get("weights")) {
      const toml::table* w = wn->as_table();
      if (!w) {
        return absl::InvalidArgumentError(
            fmt::format("{}: fraud.weights must be a table", Where(source, *wn)));
      }
      for (const auto& [key, node] : *w) {
        std::optional<Signal> sig = ParseSignal(key.str());
        if (!sig) {
          return absl::InvalidArgumentError(fmt::format("{}: fraud.weights: '{}' is not a signal",
                                                        Where(source, node),
                                                        std::string(key.str())));
        }
        RETURN_IF_ERROR(ReadDouble(*w, "fraud.weights", key.str(), source, 0, 1,
                                   o.weights[static_cast<int>(*sig)]));
      }
    }
  }
  if (const toml::node* cubes_node = root.get("cubes")) {
    const toml::array* cubes = cubes_node->as_array();
    if (!cubes) {
      return absl::InvalidArgumentError(fmt::format(
          "{}: cubes must be an array of tables ([[cubes]])", Where(source, *cubes_node)));
    }
    std::vector<CubeSpec> specs;
    for (const toml::node& entry : *cubes) {
      const toml::table* t = entry.as_table();
      if (!t) {
        return absl::InvalidArgumentError(
            fmt::format("{}: each [[cubes]] entry must be a table", Where(source, entry)));
      }
      RETURN_IF_ERROR(CheckKeys(*t, "cubes", source, {"name", "dimensions", "unique_users"}));
      CubeSpec spec;
      RETURN_IF_ERROR(ReadString(*t, "cubes", "name", source, spec.name));
      RETURN_IF_ERROR(ReadBool(*t, "cubes", "unique_users", source, spec.unique_users));
      const toml::array* dims = t->get_as<toml::array>("dimensions");
      if (!dims) {
        return absl::InvalidArgumentError(
            fmt::format("{}: cube '{}' needs dimensions = [\"campaign_id\", ...]",
                        Where(source, entry), spec.name));
      }
      for (const toml::node& d : *dims) {
        auto name = d.value<std::string>();
        std::optional<Dim> dim = name ? ParseDim(*name) : std::nullopt;
        if (!dim) {
          return absl::InvalidArgumentError(fmt::format("{}: cube '{}': '{}' is not a dimension",
                                                        Where(source, d), spec.name,
                                                        name ? *name : "(not a string)"));
        }
        spec.dims.push_back(*dim);
      }
      specs.push_back(std::move(spec));
    }
    config.cubes = std::move(specs);
  }
  // An hour is rolled up from its minutes: they must still be there.
  int64_t minutes_kept_s = config.minute_retention_days * 86'400;
  if (config.rollup_delay_s + 3'600 >= minutes_kept_s) {
    return absl::InvalidArgumentError(fmt::format(
        "{}: storage.rollup_delay_s ({}) must be under {} s: retention.minute_days ({}) drops an "
        "hour's minutes before it would be rolled up",
        source, config.rollup_delay_s, minutes_kept_s - 3'600, config.minute_retention_days));
  }
  return absl::OkStatus();
}

ScorerOptions EffectiveScorerOptions(const Config& config) {
  ScorerOptions o = config.scorer;
  o.memory_bytes = config.fraud_memory_mb > 0
                       ? static_cast<uint64_t>(config.fraud_memory_mb) << 20
                       : static_cast<uint64_t>(config.memory_budget_bytes) / 4;
  return o;
}

std::string ExpandDataPath(std::string_view path) {
  constexpr std::string_view kDeps = "{deps}";
  if (path.substr(0, kDeps.size()) == kDeps) {
    return std::string(ADPULSE_DEPS_DIR) + std::string(path.substr(kDeps.size()));
  }
  return std::string(path);
}

absl::StatusOr<Config> LoadConfig(const std::optional<std::string>& path) {
  Config config;
  RETURN_IF_ERROR(ApplyToml(kDefaultConfigToml, "(embedded defaults)", config));
  if (path) {
    std::ifstream in(*path);
    if (!in) {
      return absl::NotFoundError(
          fmt::format("config file {} cannot be read: {}", *path, std::strerror(errno)));
    }
    std::stringstream text;
    text << in.rdbuf();
    RETURN_IF_ERROR(ApplyToml(text.str(), *path, config));
  }
  return config;
}

}  // namespace adpulse
