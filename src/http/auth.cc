#include "http/auth.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace adpulse {

namespace {

// Client addresses remembered for their failures at most; past it, older minutes go first.
constexpr size_t kMaxTrackedClients = 100'000;

int64_t MinuteNow() {
  return std::chrono::duration_cast<std::chrono::minutes>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string_view ScopeName(Scope s) {
  switch (s) {
    case Scope::kNone:
      return "none";
    case Scope::kIngest:
      return "ingest";
    case Scope::kRead:
      return "read";
    case Scope::kAdmin:
      return "admin";
    case Scope::kAdvertiser:
      return "advertiser";
  }
  return "?";
}

absl::Status AddScope(std::string_view text, TokenSpec& spec) {
  constexpr std::string_view kAdvertiserPrefix = "advertiser:";
  if (text == "ingest") {
    spec.scopes |= static_cast<uint8_t>(Scope::kIngest);
  } else if (text == "read") {
    spec.scopes |= static_cast<uint8_t>(Scope::kRead);
  } else if (text == "admin") {
    spec.scopes |= static_cast<uint8_t>(Scope::kAdmin);
  } else if (text.substr(0, kAdvertiserPrefix.size()) == kAdvertiserPrefix &&
             text.size() > kAdvertiserPrefix.size()) {
    spec.scopes |= static_cast<uint8_t>(Scope::kAdvertiser);
    std::string id(text.substr(kAdvertiserPrefix.size()));
    if (std::find(spec.advertisers.begin(), spec.advertisers.end(), id) == spec.advertisers.end()) {
      spec.advertisers.push_back(std::move(id));
    }
  } else {
    return absl::InvalidArgumentError(fmt::format(
        "scope '{}' is not one of ingest, read, admin, advertiser:<advertiser_id>", text));
  }
  if ((spec.scopes & static_cast<uint8_t>(Scope::kRead)) &&
      (spec.scopes & static_cast<uint8_t>(Scope::kAdvertiser))) {
    return absl::InvalidArgumentError(
        "scopes read and advertiser:<id> together are contradictory: read sees every advertiser");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::array<uint8_t, 32>> ParseSha256Hex(std::string_view hex) {
  std::array<uint8_t, 32> out{};
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() != 64) {
    return absl::InvalidArgumentError(
        fmt::format("sha256 must be 64 hex digits (it has {} characters)", hex.size()));
  }
  for (size_t i = 0; i < 32; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("sha256 must be 64 hex digits");
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

std::array<uint8_t, 32> Sha256(std::string_view text) {
  std::array<uint8_t, 32> out{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), out.data());
  return out;
}

std::string HexOf(const uint8_t* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 15]);
  }
  return out;
}

std::string NewToken() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    // OpenSSL's generator is seeded from the OS (getrandom); failing is not recoverable here.
    fmt::print(stderr, "adpulse: the random number generator failed\n");
    std::abort();
  }
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out = "adp_";
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : raw) {
    acc = acc << 8 | b;
    bits += 8;
    while (bits >= 6) {
      out.push_back(kAlphabet[(acc >> (bits - 6)) & 63]);
      bits -= 6;
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  OPENSSL_cleanse(raw, sizeof raw);
  return out;
}

bool Caller::Allows(std::string_view advertiser) const {
  if (ReadsAll()) return true;
  return std::find(advertisers.begin(), advertisers.end(), advertiser) != advertisers.end();
}

Caller Caller::Open() {
  Caller c;
  c.scopes = static_cast<uint8_t>(Scope::kIngest) | static_cast<uint8_t>(Scope::kRead) |
             static_cast<uint8_t>(Scope::kAdmin);
  return c;
}

Authenticator::Authenticator(Options options) : options_(std::move(options)) {}

Authenticator::Result Authenticator::Authenticate(std::string_view authorization,
                                                  std::string_view client) {
  Result r;
  int64_t minute = MinuteNow();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = failures_.find(absl::string_view(client.data(), client.size()));
    if (it != failures_.end() && it->second.minute == minute &&
        it->second.count >= options_.max_failures_per_minute) {
      r.outcome = Outcome::kRateLimited;
      auto now = std::chrono::steady_clock::now().time_since_epoch();
      auto into_minute = now - std::chrono::duration_cast<std::chrono::minutes>(now);
      r.retry_after_s = static_cast<int>(
          60 - std::chrono::duration_cast<std::chrono::seconds>(into_minute).count());
      return r;
    }
  }
  std::string_view value = authorization;
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  constexpr std::string_view kBearer = "bearer ";
  bool bearer = value.size() > kBearer.size() &&
                absl::EqualsIgnoreCase(absl::string_view(value.data(), kBearer.size()),
                                       absl::string_view(kBearer.data(), kBearer.size()));
  if (!bearer) {
    r.outcome = Outcome::kMissing;
  } else {
    std::string_view token = value.substr(kBearer.size());
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    // Hashing first makes the comparison independent of the token's length and content; every
    // configured hash is compared, whatever matched, with OpenSSL's constant-time comparison.
    std::array<uint8_t, 32> digest = Sha256(token);
    const TokenSpec* found = nullptr;
    for (const TokenSpec& t : options_.tokens) {
      bool equal = CRYPTO_memcmp(digest.data(), t.sha256.data(), digest.size()) == 0;
      if (equal && !found) found = &t;
    }
    r.token = found;
    r.outcome = found ? Outcome::kOk : Outcome::kUnknown;
  }
  // A request without a token guesses nothing: only wrong tokens count towards the limit.
  if (r.outcome == Outcome::kUnknown) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failures_.size() >= kMaxTrackedClients) {
      absl::erase_if(failures_, [minute](const auto& kv) { return kv.second.minute != minute; });
      if (failures_.size() >= kMaxTrackedClients) failures_.clear();
    }
    Failures& f = failures_[std::string(client)];
    if (f.minute != minute) f = Failures{minute, 0};
    ++f.count;
  }
  return r;
}

}  // namespace adpulse
