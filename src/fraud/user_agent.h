// User-agent parsing for the fraud/enrichment stage: browser, OS and device family from uap-core's
// regexes.yaml (the same rules and first-match semantics as the ua-parser libraries), a coarse
// device class (desktop, mobile, tablet, bot), and bot detection from uap-core's "Spider" device
// family plus the crawler-user-agents pattern list. Every regex list is compiled with RE2 (linear
// time, no backtracking on hostile input); each list also goes into RE2::Sets of 128 regexes, so a
// parse runs a few automata per list instead of hundreds of regexes (user_agent.cc says how).
//
// No I/O here: the caller reads the files and hands their text to UserAgentParser::Create.
// UserAgentCache puts a bounded per-thread cache in front of the parser: real traffic repeats a
// small set of user agents, and a hit allocates nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace adpulse {

enum class DeviceClass : uint8_t { kUnknown = 0, kDesktop = 1, kMobile = 2, kTablet = 3, kBot = 4 };

// "unknown", "desktop", "mobile", "tablet", "bot".
std::string_view DeviceClassName(DeviceClass c);

struct UserAgentInfo {
  std::string browser_family;   // uap-core family, e.g. "Chrome"; "Other" when nothing matched
  std::string browser_version;  // major[.minor[.patch]], e.g. "120.0.6099"; empty when none
  std::string os_family;        // e.g. "Windows", "iOS", "Mac OS X"; "Other" when nothing matched
  std::string os_version;       // major[.minor[.patch[.patch_minor]]]; empty when none
  std::string device_family;    // uap-core device family ("iPhone", "Spider"); "Other" when none
  DeviceClass device_class = DeviceClass::kUnknown;  // kBot whenever `bot` is set
  bool bot = false;  // uap-core "Spider" device family, or a crawler-user-agents pattern matched
};

// The class of a device from uap-core's device family and OS family, with hints from the raw user
// agent ("Tablet", "Mobile", Android without "Mobile"): "Spider" -> bot; iPad, Kindle and other
// tablets -> tablet; phones and handsets -> mobile; the "Other" device (or "Mac") on a desktop OS
// (Windows, Mac OS X, Linux distributions, Chrome OS, the BSDs, ...) -> desktop. TVs, set-top
// boxes, game consoles and cars, and an "Other" device on an unknown OS, are kUnknown.
DeviceClass ClassifyDevice(std::string_view device_family, std::string_view os_family,
                           std::string_view ua);

class UserAgentParser {
 public:
  // regexes_yaml: the text of uap-core's regexes.yaml; crawler_json: the text of
  // crawler-user-agents.json (empty: no crawler list). A malformed file is InvalidArgument with
  // one line naming the file, the entry and what is wrong, e.g.
  // "regexes.yaml: os_parsers[12]: no 'regex' string". A regex RE2 cannot compile (lookarounds,
  // backreferences) is skipped and counted; only when more than a few in one list fail (more
  // than 3, and more than 5 % of the list) is that an error, naming the first failure.
  static absl::StatusOr<std::unique_ptr<UserAgentParser>> Create(std::string_view regexes_yaml,
                                                                 std::string_view crawler_json);
  ~UserAgentParser();
  UserAgentParser(const UserAgentParser&) = delete;
  UserAgentParser& operator=(const UserAgentParser&) = delete;

  // Thread-safe and uncached. Any bytes are accepted: invalid UTF-8, NULs, and the empty string
  // (which comes back as Other everywhere; the scorer treats a missing user agent itself).
  UserAgentInfo Parse(std::string_view ua) const;
  // The same into `out`, reusing its strings' buffers.
  void ParseInto(std::string_view ua, UserAgentInfo& out) const;

  // uap-core regexes RE2 could not compile (skipped: they never match), over the three lists.
  size_t skipped_regexes() const;
  // crawler-user-agents patterns RE2 could not compile (skipped).
  size_t skipped_crawler_patterns() const;
  // One line per skipped regex or pattern: where it is and RE2's reason.
  const std::vector<std::string>& skipped_details() const;
  // Parses where an RE2::Set gave up (its automaton out of memory) and the list was scanned one
  // regex at a time instead: same answer, slower. Expected to stay 0.
  uint64_t set_fallbacks() const;
  // Regexes compiled, over the three uap-core lists, and crawler patterns compiled.
  size_t regex_count() const;
  size_t crawler_pattern_count() const;

 private:
  struct Impl;
  explicit UserAgentParser(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A bounded cache in front of a parser, one per thread (not thread-safe). Least recently used
// entries are evicted once `capacity` user agents are held. A hit hashes the string, compares it
// and relinks one entry: no allocation. User agents longer than kMaxCachedBytes are parsed every
// time (counted as misses), so a flood of long unique strings cannot blow up the memory.
class UserAgentCache {
 public:
  static constexpr size_t kMaxCachedBytes = 1024;

  // `parser` must outlive the cache. capacity 0: nothing is cached.
  explicit UserAgentCache(const UserAgentParser& parser, size_t capacity = 65536);
  ~UserAgentCache();
  UserAgentCache(const UserAgentCache&) = delete;
  UserAgentCache& operator=(const UserAgentCache&) = delete;

  // The reference is valid until the next Lookup.
  const UserAgentInfo& Lookup(std::string_view ua);

  uint64_t hits() const;
  uint64_t misses() const;
  size_t size() const;  // user agents held, at most capacity
  // The cache's own memory: entries, their strings' heap buffers and the hash index.
  size_t memory_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace adpulse
