#include "app/config.h"

#include <catch2/catch.hpp>

namespace adpulse {

TEST_CASE("the embedded defaults load and match the contract", "[config]") {
  auto config = LoadConfig(std::nullopt);
  REQUIRE(config.ok());
  CHECK(config->server.host == "127.0.0.1");
  CHECK(config->server.port == 8080);
  CHECK(config->data_dir == "./data");
  CHECK(config->server.max_body_bytes == 16u << 20);
  CHECK(config->max_future_s == 60);
  CHECK(config->max_age_s == 86400);
  CHECK(config->dedup_horizon_s == 86400);
  CHECK(config->max_bid_price == 1'000'000);
  CHECK(config->wal_recovery == WalRecoveryMode::kTornTail);
  REQUIRE_FALSE(config->cubes.empty());
  CHECK(config->cubes[0].dims == std::vector<Dim>{Dim::kCampaignId});
  CHECK(CubeCatalog::Create(config->cubes).ok());
}

TEST_CASE("a config file overrides only what it sets", "[config]") {
  auto config = LoadConfig(std::nullopt);
  REQUIRE(config.ok());
  REQUIRE(
      ApplyToml("[server]\nlisten = \"0.0.0.0:9000\"\n[ingest]\nworkers = 3\n", "t.toml", *config)
          .ok());
  CHECK(config->server.host == "0.0.0.0");
  CHECK(config->server.port == 9000);
  CHECK(config->workers == 3);
  CHECK(config->max_age_s == 86400);

  REQUIRE(ApplyToml("[[cubes]]\nname = \"c\"\ndimensions = [\"campaign_id\"]\n"
                    "[[cubes]]\nname = \"b\"\ndimensions = [\"currency\"]\nunique_users = false\n",
                    "t.toml", *config)
              .ok());
  REQUIRE(config->cubes.size() == 2);
  CHECK(config->cubes[0].unique_users);
  CHECK_FALSE(config->cubes[1].unique_users);
}

TEST_CASE("config errors say what and where", "[config]") {
  Config config;
  auto unknown = ApplyToml("[server]\nlisen = \"x\"\n", "my.toml", config);
  REQUIRE_FALSE(unknown.ok());
  CHECK(std::string(unknown.message()) == "my.toml:2: unknown key 'server.lisen'");

  auto wrong_type = ApplyToml("[ingest]\nworkers = \"four\"\n", "my.toml", config);
  REQUIRE_FALSE(wrong_type.ok());
  CHECK(std::string(wrong_type.message()).find("ingest.workers must be an integer") !=
        std::string::npos);

  auto bad_dim =
      ApplyToml("[[cubes]]\nname = \"x\"\ndimensions = [\"colour\"]\n", "my.toml", config);
  REQUIRE_FALSE(bad_dim.ok());
  CHECK(std::string(bad_dim.message()).find("'colour' is not a dimension") != std::string::npos);

  Config fresh;
  auto expiring = ApplyToml("[retention]\nminute_days = 1\n[storage]\nrollup_delay_s = 86000\n",
                            "my.toml", fresh);
  REQUIRE_FALSE(expiring.ok());
  CHECK(std::string(expiring.message()) ==
        "my.toml: storage.rollup_delay_s (86000) must be under 82800 s: retention.minute_days (1) "
        "drops an hour's minutes before it would be rolled up");
  Config fine;
  CHECK(ApplyToml("[retention]\nminute_days = 1\n", "my.toml", fine).ok());

  Config limits;
  REQUIRE(ApplyToml("[ingest]\nmax_bid_price = 9223372036854\n[storage]\nwal_recovery = "
                    "\"cut_damage\"\n",
                    "my.toml", limits)
              .ok());
  CHECK(limits.max_bid_price == 9'223'372'036'854);
  CHECK(limits.wal_recovery == WalRecoveryMode::kCutDamage);
  auto too_high = ApplyToml("[ingest]\nmax_bid_price = 9223372036855\n", "my.toml", limits);
  REQUIRE_FALSE(too_high.ok());
  CHECK(std::string(too_high.message()).find("ingest.max_bid_price") != std::string::npos);
  auto bad_mode = ApplyToml("[storage]\nwal_recovery = \"skip\"\n", "my.toml", limits);
  REQUIRE_FALSE(bad_mode.ok());
  CHECK(std::string(bad_mode.message()) ==
        "my.toml:2: storage.wal_recovery = \"skip\" must be \"torn_tail\", \"strict\" or "
        "\"cut_damage\"");

  auto syntax = ApplyToml("[server\n", "my.toml", config);
  REQUIRE_FALSE(syntax.ok());
  CHECK(std::string(syntax.message()).rfind("my.toml:1:", 0) == 0);
}

TEST_CASE("the [enrichment] and [fraud] sections", "[config]") {
  auto config = LoadConfig(std::nullopt);
  REQUIRE(config.ok());
  // The shipped defaults are ScorerOptions' defaults.
  ScorerOptions built_in;
  CHECK(config->scorer.weights == built_in.weights);
  CHECK(config->scorer.threshold == built_in.threshold);
  CHECK(config->scorer.click_flood_per_minute == 100);
  CHECK(config->scorer.attribution_window_ms == 3'600'000);
  CHECK(config->enrichment_enabled);
  CHECK(config->fraud_enabled);
  CHECK(config->geo_databases.size() == 2);
  CHECK(ExpandDataPath(config->geo_databases[0]).rfind(ADPULSE_DEPS_DIR, 0) == 0);
  CHECK(ExpandDataPath("/abs/x.mmdb") == "/abs/x.mmdb");
  CHECK(EffectiveScorerOptions(*config).memory_bytes == (1ull << 30) / 4);

  Config c = *config;
  REQUIRE(ApplyToml("[fraud]\nthreshold = 0.5\nmemory_mb = 64\nclick_flood_per_minute = 7\n"
                    "attribution_window_s = 600\n[fraud.weights]\norphan_click = 0.25\n"
                    "[enrichment]\nenabled = false\ngeo_databases = []\n",
                    "f.toml", c)
              .ok());
  CHECK(c.scorer.threshold == 0.5);
  CHECK(EffectiveScorerOptions(c).memory_bytes == 64ull << 20);
  CHECK(c.scorer.click_flood_per_minute == 7);
  CHECK(c.scorer.attribution_window_ms == 600'000);
  CHECK(c.scorer.weights[static_cast<int>(Signal::kOrphanClick)] == 0.25);
  CHECK_FALSE(c.enrichment_enabled);
  CHECK(c.geo_databases.empty());

  auto bad_signal = ApplyToml("[fraud.weights]\nclick_spam = 0.5\n", "f.toml", c);
  REQUIRE_FALSE(bad_signal.ok());
  CHECK(std::string(bad_signal.message()) ==
        "f.toml:2: fraud.weights: 'click_spam' is not a signal");
  auto bad_weight = ApplyToml("[fraud.weights]\norphan_click = 2\n", "f.toml", c);
  REQUIRE_FALSE(bad_weight.ok());
  CHECK(std::string(bad_weight.message()).find("out of range [0, 1]") != std::string::npos);
  auto bad_list = ApplyToml("[enrichment]\ngeo_databases = \"x.mmdb\"\n", "f.toml", c);
  REQUIRE_FALSE(bad_list.ok());
  CHECK(std::string(bad_list.message()) ==
        "f.toml:2: enrichment.geo_databases must be an array of strings");
  CHECK_FALSE(ApplyToml("[fraud]\nsensitivity = 3\n", "f.toml", c).ok());
}

TEST_CASE("ParseListen accepts HOST:PORT and rejects the rest", "[config]") {
  std::string host;
  uint16_t port = 0;
  REQUIRE(ParseListen("127.0.0.1:8080", &host, &port).ok());
  CHECK(host == "127.0.0.1");
  CHECK(port == 8080);
  REQUIRE(ParseListen("[::1]:9", &host, &port).ok());
  CHECK(host == "::1");
  CHECK(port == 9);
  CHECK_FALSE(ParseListen("8080", &host, &port).ok());
  CHECK_FALSE(ParseListen("localhost:http", &host, &port).ok());
  CHECK_FALSE(ParseListen("h:70000", &host, &port).ok());
}

}  // namespace adpulse
