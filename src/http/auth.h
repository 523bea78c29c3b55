// Who may call what (API.md, "Access"): API tokens kept as their SHA-256, each with scopes, sent
// as `Authorization: Bearer <token>`. Authenticate() finds the caller in constant time over every
// configured token; failed attempts are counted and, past a limit per client address and minute,
// refused without being checked. Free of HTTP types: the Api asks, the answer says what to send.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace adpulse {

// What a route needs; a caller holds a set of them (bits).
enum class Scope : uint8_t {
  kNone = 0,  // open: /healthz, /readyz, the dashboard's page
  kIngest = 1,
  kRead = 2,  // every query, every advertiser
  kAdmin = 4,
  kAdvertiser = 8,  // every query, answered for the token's advertisers only
};
std::string_view ScopeName(Scope s);

struct TokenSpec {
  std::string name;                      // shown in logs and metrics instead of the token
  std::array<uint8_t, 32> sha256{};      // of the token's text
  uint8_t scopes = 0;                    // Scope bits
  std::vector<std::string> advertisers;  // advertiser:<id> scopes
};

// Reads "ingest", "read", "admin" or "advertiser:<id>" into `spec`.
absl::Status AddScope(std::string_view text, TokenSpec& spec);
// 64 hex digits into 32 bytes.
absl::StatusOr<std::array<uint8_t, 32>> ParseSha256Hex(std::string_view hex);
std::array<uint8_t, 32> Sha256(std::string_view text);
std::string HexOf(const uint8_t* bytes, size_t n);
// A new random token ("adp_" and 43 characters of base64url: 256 bits from the OS's generator).
std::string NewToken();

// The one who sent a request, once authenticated (or anyone, when no tokens are configured).
struct Caller {
  std::string name;  // the token's name; empty when the daemon is open
  uint8_t scopes = 0;
  std::vector<std::string> advertisers;  // when only kAdvertiser grants reading

  bool Has(Scope s) const { return (scopes & static_cast<uint8_t>(s)) != 0; }
  // Reads every advertiser's data (read scope, or an open daemon).
  bool ReadsAll() const { return Has(Scope::kRead); }
  // May read at all: every advertiser, or some.
  bool Reads() const { return Has(Scope::kRead) || Has(Scope::kAdvertiser); }
  bool Allows(std::string_view advertiser) const;
  static Caller Open();  // every scope: no tokens are configured
};

class Authenticator {
 public:
  struct Options {
    std::vector<TokenSpec> tokens;
    int max_failures_per_minute = 10;  // per client address; then 429 until the minute ends
  };
  enum class Outcome { kOk, kMissing, kUnknown, kRateLimited };
  struct Result {
    Outcome outcome = Outcome::kOk;
    const TokenSpec* token = nullptr;  // kOk with tokens configured
    int retry_after_s = 0;             // kRateLimited
  };

  explicit Authenticator(Options options);
  bool open() const { return options_.tokens.empty(); }
  const std::vector<TokenSpec>& tokens() const { return options_.tokens; }
  // `authorization` is the header's value ("Bearer adp_..."), `client` the peer's address.
  Result Authenticate(std::string_view authorization, std::string_view client);

 private:
  struct Failures {
    int64_t minute = 0;
    int count = 0;
  };
  Options options_;
  std::mutex mu_;
  absl::flat_hash_map<std::string, Failures> failures_;  // by client address, this minute's
};

}  // namespace adpulse
