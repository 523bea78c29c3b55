#include "http/auth.h"

#include <catch2/catch.hpp>

#include "app/config.h"

namespace adpulse {

TEST_CASE("SHA-256 and hex agree with a known vector", "[auth]") {
  auto d = Sha256("abc");
  CHECK(HexOf(d.data(), d.size()) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto parsed = ParseSha256Hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
  REQUIRE(parsed.ok());
  CHECK(*parsed == d);
  CHECK_FALSE(ParseSha256Hex("abc").ok());
  CHECK_FALSE(ParseSha256Hex(std::string(64, 'g')).ok());
}

TEST_CASE("new tokens are random base64url with a prefix", "[auth]") {
  std::string a = NewToken(), b = NewToken();
  CHECK(a != b);
  CHECK(a.rfind("adp_", 0) == 0);
  CHECK(a.size() == 4 + 43);
  for (char c : a.substr(4))
    CHECK((std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'));
}

TEST_CASE("scopes parse, and contradictory ones are refused", "[auth]") {
  TokenSpec t;
  REQUIRE(AddScope("ingest", t).ok());
  REQUIRE(AddScope("advertiser:a-1", t).ok());
  REQUIRE(AddScope("advertiser:a-1", t).ok());
  CHECK(t.advertisers == std::vector<std::string>{"a-1"});
  CHECK_FALSE(AddScope("read", t).ok());
  TokenSpec u;
  CHECK_FALSE(AddScope("advertiser:", u).ok());
  CHECK_FALSE(AddScope("Read", u).ok());
}

TEST_CASE("callers: what each scope reads", "[auth]") {
  Caller open = Caller::Open();
  CHECK(open.ReadsAll());
  CHECK(open.Allows("anyone"));
  Caller adv;
  adv.scopes = static_cast<uint8_t>(Scope::kAdvertiser);
  adv.advertisers = {"a", "c"};
  CHECK(adv.Reads());
  CHECK_FALSE(adv.ReadsAll());
  CHECK(adv.Allows("a"));
  CHECK(adv.Allows("c"));
  CHECK_FALSE(adv.Allows("b"));
  CHECK_FALSE(adv.Allows(""));
  Caller ingest;
  ingest.scopes = static_cast<uint8_t>(Scope::kIngest);
  CHECK_FALSE(ingest.Reads());
}

TEST_CASE("authentication finds the token and limits failures per address", "[auth]") {
  Authenticator::Options o;
  for (const char* name : {"one", "two"}) {
    TokenSpec t;
    t.name = name;
    t.sha256 = Sha256(std::string("secret-") + name);
    REQUIRE(AddScope("read", t).ok());
    o.tokens.push_back(t);
  }
  o.max_failures_per_minute = 3;
  Authenticator auth(o);
  CHECK_FALSE(auth.open());
  auto r = auth.Authenticate("Bearer secret-two", "10.0.0.1");
  REQUIRE(r.outcome == Authenticator::Outcome::kOk);
  CHECK(r.token->name == "two");
  CHECK(auth.Authenticate("bearer  secret-one ", "10.0.0.1").token->name == "one");
  CHECK(auth.Authenticate("", "10.0.0.1").outcome == Authenticator::Outcome::kMissing);
  CHECK(auth.Authenticate("Basic dXNlcjpwYXNz", "10.0.0.1").outcome ==
        Authenticator::Outcome::kMissing);
  // Missing tokens guess nothing and are not limited; wrong ones are.
  for (int i = 0; i < 3; ++i) {
    CHECK(auth.Authenticate("Bearer secret-on", "10.0.0.1").outcome ==
          Authenticator::Outcome::kUnknown);
  }
  auto limited = auth.Authenticate("Bearer secret-one", "10.0.0.1");
  CHECK(limited.outcome == Authenticator::Outcome::kRateLimited);
  CHECK(limited.retry_after_s >= 1);
  CHECK(limited.retry_after_s <= 60);
  CHECK(auth.Authenticate("Bearer secret-one", "10.0.0.2").outcome == Authenticator::Outcome::kOk);
}

TEST_CASE("tokens in the config", "[auth][config]") {
  auto config = LoadConfig(std::nullopt);
  REQUIRE(config.ok());
  CHECK(config->tokens.empty());
  std::string hex = HexOf(Sha256("t").data(), 32);
  REQUIRE(
      ApplyToml("[auth]\nmax_failures_per_minute = 7\n[[auth.tokens]]\nname = \"a\"\nsha256 = \"" +
                    hex + "\"\nscopes = [\"ingest\", \"advertiser:x\"]\n",
                "t.toml", *config)
          .ok());
  REQUIRE(config->tokens.size() == 1);
  CHECK(config->tokens[0].name == "a");
  CHECK(config->tokens[0].sha256 == Sha256("t"));
  CHECK(config->tokens[0].advertisers == std::vector<std::string>{"x"});
  CHECK(config->auth_max_failures_per_minute == 7);
  auto bad = [&](const std::string& entry) {
    auto c = LoadConfig(std::nullopt);
    absl::Status s = ApplyToml("[[auth.tokens]]\n" + entry, "b.toml", *c);
    return s.ok() ? std::string() : std::string(s.message());
  };
  CHECK(bad("name = \"a\"\nsha256 = \"" + hex + "\"\n").find("needs scopes") != std::string::npos);
  CHECK(bad("name = \"a b\"\nsha256 = \"" + hex + "\"\nscopes = [\"read\"]\n").find("letters") !=
        std::string::npos);
  CHECK(bad("name = \"a\"\nsha256 = \"12\"\nscopes = [\"read\"]\n").find("64 hex digits") !=
        std::string::npos);
  CHECK(bad("name = \"a\"\nsha256 = \"" + hex + "\"\nscopes = [\"write\"]\n").find("'write'") !=
        std::string::npos);
  CHECK(bad("name = \"a\"\nsha256 = \"" + hex + "\"\nscopes = [\"read\"]\ntoken = \"x\"\n")
            .find("unknown key") != std::string::npos);
  CHECK(bad("name = \"a\"\nsha256 = \"" + hex +
            "\"\nscopes = [\"read\"]\n[[auth.tokens]]\nname = "
            "\"a\"\nsha256 = \"" +
            HexOf(Sha256("u").data(), 32) + "\"\nscopes = [\"read\"]\n")
            .find("two tokens are named 'a'") != std::string::npos);
}

}  // namespace adpulse
