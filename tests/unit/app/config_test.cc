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
