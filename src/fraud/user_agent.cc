// User-agent parsing: uap-core's regexes.yaml and the crawler-user-agents list compiled with RE2,
// with RE2::Sets as the prefilter (user_agent.h).
//
// uap-core's semantics, as its specification and reference implementation have them: in each list
// (user_agent_parsers, os_parsers, device_parsers) the first regex in file order that matches
// anywhere in the string wins, case-sensitive unless the entry says regex_flag: 'i'. A field is
// its replacement template with $1..$9 put in (a group that did not take part is empty), trimmed,
// or without a template the capture group at the field's position; an empty result is absent. A
// list without a match, or a match without a family, gives "Other".
//
// Prefilter: each list is cut into blocks of kBlockSize regexes in file order, each block one
// RE2::Set, which answers in one pass of one automaton which of its regexes may match. The blocks
// are asked in order; in the first block with candidates, the candidates run as full RE2s, lowest
// index first, and the first that matches is the answer (with its capture groups). A block whose
// candidates all fail is passed; the blocks after the answer are not asked at all.
//
// The sets hold a relaxed form of each regex: a counted repetition with a large upper bound,
// {m,n} with n > 4 (uap-core has hundreds: .{0,200}, [^;]{1,100}), becomes {m,}. That only widens
// what a regex matches, so a set still names every regex that matches (plus a few that do not,
// which the full RE2 turns down); but an automaton has to count each bounded repetition in its
// states, and over a whole list of them a set's lazily built DFA made new states on nearly every
// byte of every user agent: about 300 us a parse for each of the browser and device lists, against
// about 3 and 5 us relaxed (measured over uap-core's corpora, warm). Blocks keep the automata small
// (faster to build on user agents never seen before) and stop at the first block with a match.
// The sets find no capture groups; the full RE2 that does runs about once per list and parse
// (0.7 to 1 times over the corpora), nearly always on the winner itself.
//
// If a set's automaton runs out of memory anyway (max_mem), that parse scans the block one regex
// at a time: slower, same answer.
//
// The regexes are compiled as Latin-1: every byte is one character, so a user agent with invalid
// UTF-8 still matches as uap-core's ASCII patterns mean (in UTF-8 mode RE2's '.' and [^ ] would not
// match a stray byte), and the automata are smaller. uap-core's patterns are ASCII; its few
// non-ASCII replacement strings are copied out byte for byte.
#include "fraud/user_agent.h"

#include <fmt/format.h>
#include <re2/re2.h>
#include <re2/set.h>
#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <deque>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"

namespace adpulse {
namespace {

constexpr int kMaxGroups = 9;  // $1..$9

// Memory budgets: a regex's compiled program and its lazily built automata share max_mem. They
// are ceilings, not allocations: the automata grow with the variety of user agents seen. Measured:
// 8 MB once built, 125 MB after uap-core's 18,000 test user agents (no more after a second pass;
// the same with a set budget of 16 MB: the sets stay below it).
constexpr int64_t kRegexMaxMem = 32 << 20;
constexpr int64_t kSetMaxMem = 64 << 20;
constexpr int64_t kCrawlerSetMaxMem = 256 << 20;  // 1,500 patterns in one set
constexpr size_t kBlockSize = 128;                // regexes per prefilter set
constexpr int kRelaxAbove = 4;                    // {m,n} with n above this becomes {m,} in a set

// A list may lose this many regexes RE2 cannot compile before the file counts as malformed.
size_t SkipAllowance(size_t list_size) { return std::max<size_t>(3, list_size / 20); }

RE2::Options RegexOptions(int64_t max_mem) {
  RE2::Options o;
  o.set_encoding(RE2::Options::EncodingLatin1);
  o.set_log_errors(false);
  o.set_max_mem(max_mem);
  return o;
}

re2::StringPiece Piece(std::string_view s) { return re2::StringPiece(s.data(), s.size()); }

// One regex of a uap-core list that RE2 compiled.
struct Rule {
  std::unique_ptr<RE2> re;
  int groups = 0;  // capture groups used (at most kMaxGroups)
  // Replacement templates by field position (list-specific, see kBrowserKeys...); none: the
  // capture group at that position.
  std::array<std::optional<std::string>, 5> replacement;
};

// The capture groups of a match: groups[1..9], empty when a group did not take part.
using Groups = std::array<std::string_view, kMaxGroups + 1>;

// `pattern` with every counted repetition {m,n}, n > kRelaxAbove, made {m,} (outside escapes and
// character classes): a superset of what it matches, much cheaper for a set's automaton.
std::string Relax(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size());
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      out.push_back(c);
      out.push_back(pattern[++i]);
      continue;
    }
    if (in_class) {
      if (c == ']') in_class = false;
      out.push_back(c);
      continue;
    }
    if (c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a member, not the end.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
      continue;
    }
    if (c == '{') {
      size_t j = i + 1, m_begin = j;
      while (j < pattern.size() && pattern[j] >= '0' && pattern[j] <= '9') ++j;
      size_t m_end = j;
      if (m_end > m_begin && j < pattern.size() && pattern[j] == ',') {
        size_t n_begin = ++j;
        int n = 0;
        while (j < pattern.size() && pattern[j] >= '0' && pattern[j] <= '9' && n <= 100000) {
          n = n * 10 + (pattern[j++] - '0');
        }
        if (j > n_begin && j < pattern.size() && pattern[j] == '}' && n > kRelaxAbove) {
          out.push_back('{');
          out.append(pattern.substr(m_begin, m_end - m_begin));
          out.append(",}");
          i = j;
          continue;
        }
      }
    }
    out.push_back(c);
  }
  return out;
}

// One uap-core list: its rules in file order, and the prefilter sets over blocks of kBlockSize of
// them (set b holds rules [b * kBlockSize, (b + 1) * kBlockSize), index i in it is rule
// b * kBlockSize + i).
struct RuleList {
  std::vector<Rule> rules;
  std::vector<std::unique_ptr<RE2::Set>> sets;  // empty: scan every rule

  // Runs rule `i` for its groups; false if it does not match.
  bool Run(size_t i, std::string_view ua, Groups& groups) const {
    const Rule& r = rules[i];
    re2::StringPiece sub[kMaxGroups + 1];
    if (!r.re->Match(Piece(ua), 0, ua.size(), RE2::UNANCHORED, sub, r.groups + 1)) return false;
    for (int g = 1; g <= kMaxGroups; ++g) {
      groups[g] = g <= r.groups && sub[g].data() != nullptr
                      ? std::string_view(sub[g].data(), sub[g].size())
                      : std::string_view();
    }
    return true;
  }

  // The first rule in file order that matches `ua`, its groups in `groups`; nullptr if none.
  const Rule* FirstMatch(std::string_view ua, Groups& groups,
                         std::atomic<uint64_t>& fallbacks) const {
    if (sets.empty()) return Scan(0, rules.size(), ua, groups);
    std::vector<int> hits;
    for (size_t b = 0; b < sets.size(); ++b) {
      size_t base = b * kBlockSize;
      RE2::Set::ErrorInfo error{};
      if (sets[b]->Match(Piece(ua), &hits, &error)) {
        std::sort(hits.begin(), hits.end());
        for (int i : hits) {  // candidates: the relaxed regexes that match
          if (Run(base + static_cast<size_t>(i), ua, groups))
            return &rules[base + static_cast<size_t>(i)];
        }
      } else if (error.kind != RE2::Set::kNoError) {  // out of memory: this block one by one
        fallbacks.fetch_add(1, std::memory_order_relaxed);
        if (const Rule* r = Scan(base, std::min(base + kBlockSize, rules.size()), ua, groups)) {
          return r;
        }
      }
    }
    return nullptr;
  }

  const Rule* Scan(size_t begin, size_t end, std::string_view ua, Groups& groups) const {
    for (size_t i = begin; i < end; ++i) {
      if (Run(i, ua, groups)) return &rules[i];
    }
    return nullptr;
  }
};

// The replacement keys of each list, in field order.
constexpr std::array<const char*, 4> kBrowserKeys = {"family_replacement", "v1_replacement",
                                                     "v2_replacement", "v3_replacement"};
constexpr std::array<const char*, 5> kOsKeys = {"os_replacement", "os_v1_replacement",
                                                "os_v2_replacement", "os_v3_replacement",
                                                "os_v4_replacement"};
// brand_replacement and model_replacement are read for validation only: UserAgentInfo has the
// device family alone.
constexpr std::array<const char*, 3> kDeviceKeys = {"device_replacement", "brand_replacement",
                                                    "model_replacement"};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

// Field `pos` of a match into `out`: the template with $1..$9 put in, or else the capture group
// `group` (0: none). Trimmed like uap-core's reference implementation. Returns false (and leaves
// `out` empty) when the result is empty.
bool Field(const Rule& rule, size_t pos, int group, const Groups& groups, std::string& out) {
  out.clear();
  if (const auto& tmpl = rule.replacement[pos]; tmpl.has_value()) {
    const std::string& t = *tmpl;
    for (size_t i = 0; i < t.size(); ++i) {
      if (t[i] == '$' && i + 1 < t.size() && t[i + 1] >= '1' && t[i + 1] <= '9') {
        out.append(groups[static_cast<size_t>(t[i + 1] - '0')]);
        ++i;
      } else {
        out.push_back(t[i]);
      }
    }
  } else if (group > 0) {
    out.append(groups[static_cast<size_t>(group)]);
  }
  size_t b = 0, e = out.size();
  while (b < e && IsSpace(out[b])) ++b;
  while (e > b && IsSpace(out[e - 1])) --e;
  if (b > 0 || e < out.size()) {
    out.erase(e);
    out.erase(0, b);
  }
  return !out.empty();
}

// The version fields `first`.. of a match joined with dots up to the first absent one.
void Version(const Rule& rule, size_t first, size_t count, const Groups& groups, std::string& out,
             std::string& scratch) {
  out.clear();
  for (size_t k = 0; k < count; ++k) {
    size_t pos = first + k;
    if (!Field(rule, pos, static_cast<int>(pos) + 1, groups, scratch)) break;
    if (k > 0) out.push_back('.');
    out.append(scratch);
  }
}

absl::Status Invalid(std::string message) { return absl::InvalidArgumentError(std::move(message)); }

// Everything a parser holds (UserAgentParser::Impl is this; the loaders below fill it).
struct ParserData {
  RuleList browser, os, device;
  std::unique_ptr<RE2::Set> crawlers;  // nullptr: no crawler list
  size_t crawler_count = 0;
  size_t skipped_regexes = 0;
  size_t skipped_crawlers = 0;
  std::vector<std::string> skipped_details;
  mutable std::atomic<uint64_t> set_fallbacks{0};
};

// Reads list `name` of regexes.yaml into `out`: each entry's regex compiled (skipped and counted
// if RE2 cannot), its replacement templates, and the set over the compiled ones.
template <size_t N>
absl::Status LoadList(const YAML::Node& root, const char* name,
                      const std::array<const char*, N>& keys, ParserData& impl, RuleList& out) {
  const YAML::Node list = root[name];
  if (!list.IsDefined() || list.IsNull()) return Invalid(fmt::format("regexes.yaml: no {}", name));
  if (!list.IsSequence()) return Invalid(fmt::format("regexes.yaml: {} is not a list", name));
  if (list.size() == 0) return Invalid(fmt::format("regexes.yaml: {} is empty", name));
  const RE2::Options options = RegexOptions(kRegexMaxMem);
  const RE2::Options set_options = RegexOptions(kSetMaxMem);
  size_t skipped = 0;
  std::string first_failure;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node entry = list[i];
    const std::string where = fmt::format("regexes.yaml: {}[{}]", name, i);
    if (!entry.IsMap()) return Invalid(where + ": not a map");
    const YAML::Node regex = entry["regex"];
    if (!regex.IsDefined() || !regex.IsScalar()) return Invalid(where + ": no 'regex' string");
    std::string pattern = regex.Scalar();
    if (pattern.empty()) return Invalid(where + ": 'regex' is empty");
    if (const YAML::Node flag = entry["regex_flag"]; flag.IsDefined() && !flag.IsNull()) {
      if (!flag.IsScalar() || flag.Scalar() != "i") {
        return Invalid(where + ": regex_flag must be 'i'");
      }
      pattern.insert(0, "(?i)");
    }
    Rule rule;
    for (size_t k = 0; k < N; ++k) {
      const YAML::Node value = entry[keys[k]];
      if (!value.IsDefined() || value.IsNull()) continue;
      if (!value.IsScalar()) return Invalid(fmt::format("{}: {} is not a string", where, keys[k]));
      rule.replacement[k] = value.Scalar();
    }
    rule.re = std::make_unique<RE2>(pattern, options);
    std::string error;
    if (rule.re->ok()) {
      rule.groups = std::min(rule.re->NumberOfCapturingGroups(), kMaxGroups);
      if (out.rules.size() % kBlockSize == 0) {
        out.sets.push_back(std::make_unique<RE2::Set>(set_options, RE2::UNANCHORED));
      }
      // The relaxed pattern has the same syntax: Add fails only where RE2 failed above.
      if (out.sets.back()->Add(Piece(Relax(pattern)), &error) >= 0) {
        out.rules.push_back(std::move(rule));
        continue;
      }
      if (out.rules.size() % kBlockSize == 0) out.sets.pop_back();
    } else {
      error = rule.re->error();
    }
    std::string detail = fmt::format("{}: regex does not compile: {} ({})", where, error, pattern);
    if (skipped == 0) first_failure = detail;
    ++skipped;
    impl.skipped_details.push_back(std::move(detail));
  }
  if (skipped > SkipAllowance(list.size())) {
    return Invalid(fmt::format("{} ({} of {} regexes of {} do not compile in RE2)", first_failure,
                               skipped, list.size(), name));
  }
  impl.skipped_regexes += skipped;
  for (const auto& set : out.sets) {
    if (!set->Compile()) {
      // Too big for kSetMaxMem: every parse scans the list one regex at a time.
      impl.skipped_details.push_back(fmt::format(
          "regexes.yaml: {}: a prefilter set does not fit in {} MiB; scanning the list instead",
          name, kSetMaxMem >> 20));
      out.sets.clear();
      break;
    }
  }
  return absl::OkStatus();
}

absl::Status LoadCrawlers(std::string_view json, ParserData& impl) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json.data(), json.size());  // simdjson reads past the end
  simdjson::dom::element doc;
  if (auto error = parser.parse(padded).get(doc); error) {
    return Invalid(fmt::format("crawler-user-agents.json: not valid JSON: {}",
                               simdjson::error_message(error)));
  }
  simdjson::dom::array entries;
  if (doc.get_array().get(entries)) {
    return Invalid("crawler-user-agents.json: not a JSON array of {\"pattern\": ...} objects");
  }
  auto set = std::make_unique<RE2::Set>(RegexOptions(kCrawlerSetMaxMem), RE2::UNANCHORED);
  const RE2::Options single = RegexOptions(kRegexMaxMem);
  size_t i = 0, skipped = 0, added = 0;
  std::string first_failure;
  for (simdjson::dom::element entry : entries) {
    std::string_view pattern;
    if (entry["pattern"].get_string().get(pattern) || pattern.empty()) {
      return Invalid(fmt::format("crawler-user-agents.json: [{}]: no \"pattern\" string", i));
    }
    // Compiled alone first: the set's error for a bad pattern names no pattern.
    RE2 re(Piece(pattern), single);
    std::string error;
    if (re.ok() && set->Add(Piece(pattern), &error) >= 0) {
      ++added;
    } else {
      if (!re.ok()) error = re.error();
      std::string detail = fmt::format(
          "crawler-user-agents.json: [{}]: pattern does not compile: {} ({})", i, error, pattern);
      if (skipped == 0) first_failure = detail;
      ++skipped;
      impl.skipped_details.push_back(std::move(detail));
    }
    ++i;
  }
  if (skipped > SkipAllowance(i)) {
    return Invalid(
        fmt::format("{} ({} of {} patterns do not compile in RE2)", first_failure, skipped, i));
  }
  impl.skipped_crawlers = skipped;
  impl.crawler_count = added;
  if (added == 0) return absl::OkStatus();
  if (!set->Compile()) {
    return Invalid(fmt::format("crawler-user-agents.json: the {} patterns do not fit in {} MiB",
                               added, kCrawlerSetMaxMem >> 20));
  }
  impl.crawlers = std::move(set);
  return absl::OkStatus();
}

}  // namespace

struct UserAgentParser::Impl : ParserData {};

absl::StatusOr<std::unique_ptr<UserAgentParser>> UserAgentParser::Create(
    std::string_view regexes_yaml, std::string_view crawler_json) {
  auto impl = std::make_unique<Impl>();
  YAML::Node root;
  try {
    root = YAML::Load(std::string(regexes_yaml));
  } catch (const YAML::ParserException& e) {
    if (e.mark.is_null()) return Invalid(fmt::format("regexes.yaml: not valid YAML: {}", e.msg));
    return Invalid(fmt::format("regexes.yaml: not valid YAML: line {}, column {}: {}",
                               e.mark.line + 1, e.mark.column + 1, e.msg));
  } catch (const YAML::Exception& e) {
    return Invalid(fmt::format("regexes.yaml: not valid YAML: {}", e.what()));
  }
  if (!root.IsMap()) {
    return Invalid("regexes.yaml: not a map of user_agent_parsers, os_parsers, device_parsers");
  }
  try {
    absl::Status s = LoadList(root, "user_agent_parsers", kBrowserKeys, *impl, impl->browser);
    if (s.ok()) s = LoadList(root, "os_parsers", kOsKeys, *impl, impl->os);
    if (s.ok()) s = LoadList(root, "device_parsers", kDeviceKeys, *impl, impl->device);
    if (!s.ok()) return s;
  } catch (const YAML::Exception& e) {  // not expected: every node is type-checked first
    return Invalid(fmt::format("regexes.yaml: {}", e.what()));
  }
  if (!crawler_json.empty()) {
    if (absl::Status s = LoadCrawlers(crawler_json, *impl); !s.ok()) return s;
  }
  return std::unique_ptr<UserAgentParser>(new UserAgentParser(std::move(impl)));
}

UserAgentParser::UserAgentParser(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UserAgentParser::~UserAgentParser() = default;

size_t UserAgentParser::skipped_regexes() const { return impl_->skipped_regexes; }
size_t UserAgentParser::skipped_crawler_patterns() const { return impl_->skipped_crawlers; }
const std::vector<std::string>& UserAgentParser::skipped_details() const {
  return impl_->skipped_details;
}
uint64_t UserAgentParser::set_fallbacks() const {
  return impl_->set_fallbacks.load(std::memory_order_relaxed);
}
size_t UserAgentParser::regex_count() const {
  return impl_->browser.rules.size() + impl_->os.rules.size() + impl_->device.rules.size();
}
size_t UserAgentParser::crawler_pattern_count() const { return impl_->crawler_count; }

UserAgentInfo UserAgentParser::Parse(std::string_view ua) const {
  UserAgentInfo info;
  ParseInto(ua, info);
  return info;
}

void UserAgentParser::ParseInto(std::string_view ua, UserAgentInfo& out) const {
  Groups groups{};
  std::string scratch;
  const Impl& m = *impl_;
  // Browser: family $1, major $2, minor $3, patch $4.
  if (const Rule* r = m.browser.FirstMatch(ua, groups, m.set_fallbacks); r != nullptr) {
    if (!Field(*r, 0, 1, groups, out.browser_family)) out.browser_family.assign("Other");
    Version(*r, 1, 3, groups, out.browser_version, scratch);
  } else {
    out.browser_family.assign("Other");
    out.browser_version.clear();
  }
  // OS: family $1, major $2, minor $3, patch $4, patch_minor $5.
  if (const Rule* r = m.os.FirstMatch(ua, groups, m.set_fallbacks); r != nullptr) {
    if (!Field(*r, 0, 1, groups, out.os_family)) out.os_family.assign("Other");
    Version(*r, 1, 4, groups, out.os_version, scratch);
  } else {
    out.os_family.assign("Other");
    out.os_version.clear();
  }
  // Device: family $1.
  const Rule* d = m.device.FirstMatch(ua, groups, m.set_fallbacks);
  if (d == nullptr || !Field(*d, 0, 1, groups, out.device_family)) {
    out.device_family.assign("Other");
  }
  out.bot = out.device_family == "Spider" ||
            (m.crawlers != nullptr && m.crawlers->Match(Piece(ua), nullptr));
  out.device_class =
      out.bot ? DeviceClass::kBot : ClassifyDevice(out.device_family, out.os_family, ua);
}

// --- Device classes ---

std::string_view DeviceClassName(DeviceClass c) {
  switch (c) {
    case DeviceClass::kUnknown:
      return "unknown";
    case DeviceClass::kDesktop:
      return "desktop";
    case DeviceClass::kMobile:
      return "mobile";
    case DeviceClass::kTablet:
      return "tablet";
    case DeviceClass::kBot:
      return "bot";
  }
  return "unknown";
}

namespace {

bool Has(std::string_view s, std::string_view part) { return s.find(part) != s.npos; }
bool Starts(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// ASCII case-insensitive Has.
bool HasNoCase(std::string_view s, std::string_view part) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
  return std::search(s.begin(), s.end(), part.begin(), part.end(),
                     [&](char a, char b) { return lower(a) == lower(b); }) != s.end();
}

// TVs, set-top boxes, consoles, cars: none of the classes.
bool IsOtherScreen(std::string_view device, std::string_view os) {
  static constexpr std::string_view kOs[] = {"ATV OS X", "tvOS", "Chromecast", "FireHbbTV",
                                             "GoogleTV", "Roku", "WebTV",      "Web0S"};
  for (std::string_view o : kOs) {
    if (os == o) return true;
  }
  static constexpr std::string_view kDevice[] = {"TV",   "NetCast", "PlayStation", "Nintendo",
                                                 "Xbox", "Roku",    "Chromecast",  "Tesla"};
  for (std::string_view d : kDevice) {
    if (HasNoCase(device, d)) return true;
  }
  return false;
}

bool IsTabletFamily(std::string_view device, std::string_view os) {
  if (os == "BlackBerry Tablet OS" || os == "Kindle" || os == "WeTab") return true;
  static constexpr std::string_view kParts[] = {
      "iPad",    "Kindle", "Tablet", "Nook",       "TouchPad", "Playbook", "PlayBook",
      "Surface", "MI PAD", "Mi Pad", "Galaxy Tab", "Xoom",     "IdeaTab",  "MediaPad"};
  for (std::string_view p : kParts) {
    if (HasNoCase(device, p)) return true;
  }
  // Samsung's tablet model numbers: SM-T..., SM-P..., GT-P....
  return Starts(device, "Samsung SM-T") || Starts(device, "Samsung SM-P") ||
         Starts(device, "Samsung GT-P");
}

bool IsPhoneFamily(std::string_view device) {
  return device == "iPhone" || Starts(device, "iPod") || device == "Generic Smartphone" ||
         device == "Generic Feature Phone" || device == "Apple Watch" ||
         Starts(device, "BlackBerry");
}

bool IsDesktopOs(std::string_view os) {
  if (Starts(os, "Windows")) {
    return os != "Windows Phone" && os != "Windows Mobile" && os != "Windows CE" &&
           os != "Windows RT";
  }
  static constexpr std::string_view kOs[] = {
      "Mac OS X",   "Mac OS",   "Linux",      "Ubuntu",     "Kubuntu",   "Xubuntu",   "Lubuntu",
      "Debian",     "Fedora",   "Red Hat",    "CentOS",     "Gentoo",    "Mandriva",  "Slackware",
      "SUSE",       "openSUSE", "Arch Linux", "Linux Mint", "PCLinuxOS", "Puppy",     "Mageia",
      "Chrome OS",  "FreeBSD",  "OpenBSD",    "NetBSD",     "BSD",       "DragonFly", "Solaris",
      "SerenityOS", "Haiku",    "BeOS",       "OS/2"};
  for (std::string_view o : kOs) {
    if (os == o) return true;
  }
  return false;
}

bool IsMobileOs(std::string_view os) {
  static constexpr std::string_view kOs[] = {
      "Android", "iOS",        "Windows Phone", "Windows Mobile", "Windows CE", "BlackBerry OS",
      "KaiOS",   "Firefox OS", "Tizen",         "Sailfish",       "webOS",      "Bada",
      "Maemo",   "MeeGo",      "BREW",          "Brew MP",        "WatchOS",    "VRE"};
  for (std::string_view o : kOs) {
    if (os == o) return true;
  }
  return Starts(os, "Symbian") || Starts(os, "Nokia Series");
}

// A handset user agent that says it is a tablet: "Tablet" or "iPad" in it, or Android without
// "Mobi" (Android tablet browsers leave "Mobile" out; phone browsers put it in).
bool TabletHint(std::string_view os, std::string_view ua) {
  if (Has(ua, "Tablet") || Has(ua, "tablet") || Has(ua, "iPad")) return true;
  return os == "Android" && Has(ua, "Android") && !Has(ua, "Mobi");
}

}  // namespace

DeviceClass ClassifyDevice(std::string_view device, std::string_view os, std::string_view ua) {
  if (device == "Spider") return DeviceClass::kBot;
  if (IsOtherScreen(device, os)) return DeviceClass::kUnknown;
  if (IsTabletFamily(device, os)) return DeviceClass::kTablet;
  if (IsPhoneFamily(device)) return DeviceClass::kMobile;
  if (device == "Mac") return DeviceClass::kDesktop;
  if (device == "Other" || device.empty()) {
    // Old desktop browsers say "Tablet PC": no tablet hint on a desktop OS.
    if (IsDesktopOs(os)) return DeviceClass::kDesktop;
    if (IsMobileOs(os)) return TabletHint(os, ua) ? DeviceClass::kTablet : DeviceClass::kMobile;
    return DeviceClass::kUnknown;
  }
  // A named handset model: uap-core's device regexes are nearly all phones and tablets.
  return TabletHint(os, ua) ? DeviceClass::kTablet : DeviceClass::kMobile;
}

// --- Cache ---

namespace {
constexpr uint32_t kNil = UINT32_MAX;

// Heap bytes behind a string (0 while it is inside the object, short-string optimised).
size_t HeapBytes(const std::string& s) {
  const char* self = reinterpret_cast<const char*>(&s);
  bool inline_buffer = s.data() >= self && s.data() < self + sizeof(s);
  return inline_buffer ? 0 : s.capacity() + 1;
}

size_t HeapBytes(const UserAgentInfo& i) {
  return HeapBytes(i.browser_family) + HeapBytes(i.browser_version) + HeapBytes(i.os_family) +
         HeapBytes(i.os_version) + HeapBytes(i.device_family);
}

// Debian's abseil has its own string_view: hash std::string_view through it.
struct ViewHash {
  size_t operator()(std::string_view s) const {
    return absl::Hash<absl::string_view>{}(absl::string_view(s.data(), s.size()));
  }
};
}  // namespace

struct UserAgentCache::Impl {
  struct Entry {
    std::string key;
    UserAgentInfo info;
    uint32_t prev = kNil, next = kNil;  // the recency list, most recent first
    uint32_t heap_bytes = 0;            // HeapBytes of key and info, as last counted
  };

  const UserAgentParser* parser;
  size_t capacity;
  std::deque<Entry> entries;  // a deque: entries never move, the index's keys point into them
  absl::flat_hash_map<std::string_view, uint32_t, ViewHash> index;
  uint32_t head = kNil, tail = kNil;
  UserAgentInfo uncached;  // the answer for a user agent too long to cache
  uint64_t hits = 0, misses = 0;
  size_t heap_bytes = 0;  // sum of the entries' heap_bytes

  void Unlink(uint32_t i) {
    Entry& e = entries[i];
    (e.prev == kNil ? head : entries[e.prev].next) = e.next;
    (e.next == kNil ? tail : entries[e.next].prev) = e.prev;
    e.prev = e.next = kNil;
  }
  void PushFront(uint32_t i) {
    Entry& e = entries[i];
    e.prev = kNil;
    e.next = head;
    (head == kNil ? tail : entries[head].prev) = i;
    head = i;
  }
};

UserAgentCache::UserAgentCache(const UserAgentParser& parser, size_t capacity)
    : impl_(std::make_unique<Impl>()) {
  impl_->parser = &parser;
  impl_->capacity = std::min<size_t>(capacity, kNil - 1);
}
UserAgentCache::~UserAgentCache() = default;

const UserAgentInfo& UserAgentCache::Lookup(std::string_view ua) {
  Impl& m = *impl_;
  if (ua.size() > kMaxCachedBytes || m.capacity == 0) {
    ++m.misses;
    m.parser->ParseInto(ua, m.uncached);
    return m.uncached;
  }
  if (auto it = m.index.find(ua); it != m.index.end()) {
    ++m.hits;
    uint32_t i = it->second;
    if (m.head != i) {
      m.Unlink(i);
      m.PushFront(i);
    }
    return m.entries[i].info;
  }
  ++m.misses;
  uint32_t i;
  if (m.entries.size() < m.capacity) {
    i = static_cast<uint32_t>(m.entries.size());
    m.entries.emplace_back();
  } else {  // evict the least recently used entry, reusing its buffers
    i = m.tail;
    m.Unlink(i);
    m.index.erase(std::string_view(m.entries[i].key));
  }
  Impl::Entry& e = m.entries[i];
  e.key.assign(ua);
  m.parser->ParseInto(ua, e.info);
  m.heap_bytes -= e.heap_bytes;
  e.heap_bytes = static_cast<uint32_t>(HeapBytes(e.key) + HeapBytes(e.info));
  m.heap_bytes += e.heap_bytes;
  m.index.emplace(std::string_view(e.key), i);
  m.PushFront(i);
  return e.info;
}

uint64_t UserAgentCache::hits() const { return impl_->hits; }
uint64_t UserAgentCache::misses() const { return impl_->misses; }
size_t UserAgentCache::size() const { return impl_->entries.size(); }

size_t UserAgentCache::memory_bytes() const {
  const Impl& m = *impl_;
  size_t index_bytes =
      m.index.capacity() * (sizeof(std::pair<const std::string_view, uint32_t>) + 1);
  return sizeof(Impl) + m.entries.size() * sizeof(Impl::Entry) + m.heap_bytes + index_bytes +
         HeapBytes(m.uncached);
}

}  // namespace adpulse
