// User-agent parsing (fraud/user_agent.h) against uap-core's own test corpora (Debian's uap-core
// package, ADPULSE_UAP_CORE_DIR): browser family over test_ua.yaml, OS family over test_os.yaml,
// device class over test_device.yaml, each at least 95 % in agreement; then the well-known cases,
// malformed files, the cache, and the parse speed (printed, not asserted).
//
// The crawler-user-agents list is read from $ADPULSE_CRAWLER_JSON, else from where
// scripts/setup.sh fetches it (ADPULSE_DEPS_DIR); without either the tests use a few of its
// patterns written out below, and the check of the list's own examples is left out (with a
// warning).
#include "fraud/user_agent.h"

#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// Every operator new in this binary is counted: a cache hit must not allocate. Not inlined: GCC 12
// would see free() meet a pointer from operator new (-Wmismatched-new-delete, a false alarm). Not
// under AddressSanitizer, whose own operator new stays for what this does not replace (aligned
// new in libsimdjson) and then reports a mismatch.
static std::atomic<uint64_t> g_allocations{0};
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCountingAllocations = false;
#else
constexpr bool kCountingAllocations = true;
[[gnu::noinline]] void* operator new(size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept { std::free(p); }
#endif

namespace adpulse {
namespace {

const std::string kUapDir = ADPULSE_UAP_CORE_DIR;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A few entries of crawler-user-agents.json, for a machine without the file.
constexpr std::string_view kCrawlerSubset = R"([
  {"pattern": "Googlebot\\/", "instances": []},
  {"pattern": "Python-urllib", "instances": []},
  {"pattern": "python-requests", "instances": []},
  {"pattern": "Go-http-client", "instances": []},
  {"pattern": "^curl", "instances": []}
])";

// The real list's text, empty if not found.
const std::string& RealCrawlerJson() {
  static const std::string json = [] {
    const char* env = std::getenv("ADPULSE_CRAWLER_JSON");
    std::string path = env != nullptr && *env != '\0'
                           ? env
                           : std::string(ADPULSE_DEPS_DIR) +
                                 "/node_modules/crawler-user-agents/crawler-user-agents.json";
    std::string text = ReadFile(path);
    if (text.empty()) {
      std::printf("crawler-user-agents.json not found at %s: using %zu bytes of its patterns\n",
                  path.c_str(), kCrawlerSubset.size());
    }
    return text;
  }();
  return json;
}

// Compiled once: the full uap-core regexes plus the crawler list.
const UserAgentParser& Parser() {
  static const std::unique_ptr<UserAgentParser> parser = [] {
    std::string regexes = ReadFile(kUapDir + "/regexes.yaml");
    REQUIRE(!regexes.empty());
    std::string_view crawlers = RealCrawlerJson().empty() ? kCrawlerSubset : RealCrawlerJson();
    auto start = std::chrono::steady_clock::now();
    auto p = UserAgentParser::Create(regexes, crawlers);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!p.ok()) FAIL(std::string(p.status().message()));
    std::printf(
        "parser: %zu uap-core regexes compiled, %zu skipped; %zu crawler patterns, %zu "
        "skipped; built in %.2f s\n",
        (*p)->regex_count(), (*p)->skipped_regexes(), (*p)->crawler_pattern_count(),
        (*p)->skipped_crawler_patterns(), s);
    for (const std::string& d : (*p)->skipped_details()) std::printf("  skipped: %s\n", d.c_str());
    return std::move(*p);
  }();
  return *parser;
}

struct Case {
  std::string ua;
  std::string family;
  std::string version;  // major[.minor[.patch[.patch_minor]]] as the corpus has it
};

std::string Scalar(const YAML::Node& n) {
  return n.IsDefined() && n.IsScalar() ? n.Scalar() : std::string();
}

// A corpus's test_cases: the family and the version fields `version_keys` joined.
std::vector<Case> LoadCorpus(const std::string& file, std::initializer_list<const char*> keys) {
  YAML::Node root = YAML::LoadFile(kUapDir + "/tests/" + file);
  std::vector<Case> cases;
  for (const YAML::Node& c : root["test_cases"]) {
    Case k{Scalar(c["user_agent_string"]), Scalar(c["family"]), {}};
    for (const char* key : keys) {
      std::string v = Scalar(c[key]);
      if (v.empty()) break;
      if (!k.version.empty()) k.version.push_back('.');
      k.version += v;
    }
    cases.push_back(std::move(k));
  }
  return cases;
}

const std::vector<Case>& BrowserCases() {
  static const auto c = LoadCorpus("test_ua.yaml", {"major", "minor", "patch"});
  return c;
}
const std::vector<Case>& OsCases() {
  static const auto c = LoadCorpus("test_os.yaml", {"major", "minor", "patch", "patch_minor"});
  return c;
}
const std::vector<Case>& DeviceCases() {
  static const auto c = LoadCorpus("test_device.yaml", {});
  return c;
}

double Percent(size_t part, size_t whole) { return whole == 0 ? 0 : 100.0 * part / whole; }

// Prints up to `limit` disagreements of one corpus.
struct Misses {
  const char* what;
  int shown = 0;
  void Add(const std::string& ua, const std::string& expected, const std::string& got) {
    if (shown++ < 8) {
      std::printf("  %s: expected '%s', got '%s' for %s\n", what, expected.c_str(), got.c_str(),
                  ua.c_str());
    }
  }
};

}  // namespace

TEST_CASE("Browser family agrees with uap-core's test_ua.yaml", "[fraud]") {
  const auto& cases = BrowserCases();
  REQUIRE(cases.size() > 1000);
  size_t family = 0, version = 0;
  Misses misses{"browser"};
  for (const Case& c : cases) {
    UserAgentInfo info = Parser().Parse(c.ua);
    if (info.browser_family == c.family) {
      ++family;
      if (info.browser_version == c.version) ++version;
    } else {
      misses.Add(c.ua, c.family, info.browser_family);
    }
  }
  std::printf("test_ua.yaml: browser family %zu/%zu (%.2f %%), family and version %.2f %%\n",
              family, cases.size(), Percent(family, cases.size()), Percent(version, cases.size()));
  // Not a check (the corpus has crawlers too): how many the crawler list flags beyond uap-core.
  size_t spiders = 0, listed = 0;
  for (const Case& c : cases) {
    UserAgentInfo info = Parser().Parse(c.ua);
    if (info.device_family == "Spider") {
      ++spiders;
    } else if (info.bot && listed++ < 8) {
      std::printf("  a bot by the crawler list only: %s\n", c.ua.c_str());
    }
  }
  std::printf("test_ua.yaml: %zu uap-core spiders, %zu more bots from the crawler list\n", spiders,
              listed);
  CHECK(Percent(family, cases.size()) >= 95.0);
}

TEST_CASE("OS family agrees with uap-core's test_os.yaml", "[fraud]") {
  const auto& cases = OsCases();
  REQUIRE(cases.size() > 300);
  size_t family = 0, version = 0;
  Misses misses{"os"};
  for (const Case& c : cases) {
    UserAgentInfo info = Parser().Parse(c.ua);
    if (info.os_family == c.family) {
      ++family;
      if (info.os_version == c.version) ++version;
    } else {
      misses.Add(c.ua, c.family, info.os_family);
    }
  }
  std::printf("test_os.yaml: os family %zu/%zu (%.2f %%), family and version %.2f %%\n", family,
              cases.size(), Percent(family, cases.size()), Percent(version, cases.size()));
  CHECK(Percent(family, cases.size()) >= 95.0);
}

TEST_CASE("Device class agrees with uap-core's test_device.yaml", "[fraud]") {
  // test_device.yaml has no OS: both sides are classified with the OS family we parse.
  const auto& cases = DeviceCases();
  REQUIRE(cases.size() > 10000);
  size_t same_class = 0, same_family = 0;
  size_t by_class[5] = {};
  Misses misses{"device"};
  for (const Case& c : cases) {
    UserAgentInfo info = Parser().Parse(c.ua);
    DeviceClass expected = ClassifyDevice(c.family, info.os_family, c.ua);
    DeviceClass got = ClassifyDevice(info.device_family, info.os_family, c.ua);
    ++by_class[static_cast<int>(expected)];
    if (info.device_family == c.family) ++same_family;
    if (expected == got) {
      ++same_class;
    } else {
      misses.Add(c.ua, c.family + " (" + std::string(DeviceClassName(expected)) + ")",
                 info.device_family + " (" + std::string(DeviceClassName(got)) + ")");
    }
  }
  std::printf(
      "test_device.yaml: device class %zu/%zu (%.2f %%), device family %.2f %%; expected classes: "
      "%zu unknown, %zu desktop, %zu mobile, %zu tablet, %zu bot\n",
      same_class, cases.size(), Percent(same_class, cases.size()),
      Percent(same_family, cases.size()), by_class[0], by_class[1], by_class[2], by_class[3],
      by_class[4]);
  CHECK(Percent(same_class, cases.size()) >= 95.0);
}

TEST_CASE("Well-known user agents", "[fraud]") {
  const UserAgentParser& p = Parser();
  SECTION("Chrome on Windows") {
    UserAgentInfo i = p.Parse(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.130 Safari/537.36");
    CHECK(i.browser_family == "Chrome");
    CHECK(i.browser_version == "120.0.6099");
    CHECK(i.os_family == "Windows");
    CHECK(i.os_version == "10");
    CHECK(i.device_family == "Other");
    CHECK(i.device_class == DeviceClass::kDesktop);
    CHECK_FALSE(i.bot);
  }
  SECTION("Safari on an iPhone") {
    UserAgentInfo i = p.Parse(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1");
    CHECK(i.browser_family == "Mobile Safari");
    CHECK(i.browser_version == "17.1.2");
    CHECK(i.os_family == "iOS");
    CHECK(i.os_version == "17.1.2");
    CHECK(i.device_family == "iPhone");
    CHECK(i.device_class == DeviceClass::kMobile);
    CHECK_FALSE(i.bot);
  }
  SECTION("an iPad") {
    UserAgentInfo i = p.Parse(
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1");
    CHECK(i.os_family == "iOS");
    CHECK(i.device_family == "iPad");
    CHECK(i.device_class == DeviceClass::kTablet);
  }
  SECTION("an Android phone and an Android tablet") {
    UserAgentInfo phone = p.Parse(
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/119.0.0.0 Mobile Safari/537.36");
    CHECK(phone.browser_family == "Chrome Mobile");
    CHECK(phone.os_family == "Android");
    CHECK(phone.device_class == DeviceClass::kMobile);
    UserAgentInfo tablet = p.Parse(
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/119.0.0.0 Safari/537.36");
    CHECK(tablet.device_class == DeviceClass::kTablet);
  }
  SECTION("Firefox on Ubuntu and Safari on a Mac are desktops") {
    CHECK(p.Parse("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0")
              .device_class == DeviceClass::kDesktop);
    UserAgentInfo mac = p.Parse(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.1 Safari/605.1.15");
    CHECK(mac.browser_family == "Safari");
    CHECK(mac.os_family == "Mac OS X");
    CHECK(mac.device_class == DeviceClass::kDesktop);
  }
  SECTION("Googlebot") {
    UserAgentInfo i =
        p.Parse("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
    CHECK(i.browser_family == "Googlebot");
    CHECK(i.device_family == "Spider");
    CHECK(i.bot);
    CHECK(i.device_class == DeviceClass::kBot);
  }
  SECTION("HTTP libraries from the crawler list") {
    for (const char* ua : {"curl/8.4.0", "python-requests/2.31.0", "Go-http-client/1.1"}) {
      INFO(ua);
      UserAgentInfo i = p.Parse(ua);
      CHECK(i.bot);
      CHECK(i.device_class == DeviceClass::kBot);
    }
  }
  SECTION("anything else is accepted") {
    UserAgentInfo empty = p.Parse("");
    CHECK(empty.browser_family == "Other");
    CHECK(empty.os_family == "Other");
    CHECK(empty.device_family == "Other");
    CHECK(empty.device_class == DeviceClass::kUnknown);
    CHECK_FALSE(empty.bot);
    // Invalid UTF-8, a NUL, and a long string do not crash; Latin-1 matching still finds Chrome.
    static constexpr char kOdd[] =
        "Mozilla/5.0 (Windows NT 10.0; \xff\xfe\0) Chrome/120.0.1.2 Safari/537.36";
    UserAgentInfo odd = p.Parse(std::string_view(kOdd, sizeof(kOdd) - 1));
    CHECK(odd.browser_family == "Chrome");
    std::string long_ua(5000, 'a');
    CHECK(p.Parse(long_ua).browser_family == "Other");
  }
  CHECK(p.set_fallbacks() == 0);
}

TEST_CASE("Every example of the crawler list is a bot", "[fraud]") {
  const std::string& json = RealCrawlerJson();
  if (json.empty()) {
    WARN("crawler-user-agents.json not found: its examples are not checked");
    return;
  }
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element doc = parser.parse(padded);
  size_t instances = 0, bots = 0;
  for (simdjson::dom::element entry : doc.get_array()) {
    for (simdjson::dom::element ua : entry["instances"].get_array()) {
      ++instances;
      if (Parser().Parse(std::string_view(ua.get_string())).bot) ++bots;
    }
  }
  std::printf("crawler-user-agents.json: %zu/%zu examples are bots (%.2f %%)\n", bots, instances,
              Percent(bots, instances));
  CHECK(Percent(bots, instances) >= 99.0);
}

TEST_CASE("Malformed files are refused with one line saying what is wrong", "[fraud]") {
  auto error = [](std::string_view yaml, std::string_view json = {}) {
    auto p = UserAgentParser::Create(yaml, json);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
    std::string message(p.status().message());
    CHECK(message.find('\n') == std::string::npos);
    return message;
  };
  constexpr std::string_view kTail =
      "os_parsers:\n  - regex: '(Windows)'\ndevice_parsers:\n  - regex: '(iPhone)'\n";
  std::string good = "user_agent_parsers:\n  - regex: '(Chrome)/(\\d+)'\n" + std::string(kTail);
  REQUIRE(UserAgentParser::Create(good, "").ok());

  CHECK_THAT(error("user_agent_parsers: [ {regex: 'a'"),
             Catch::StartsWith("regexes.yaml: not valid YAML: line "));
  CHECK(error("- just a list\n") ==
        "regexes.yaml: not a map of user_agent_parsers, os_parsers, device_parsers");
  CHECK(error("user_agent_parsers:\n  - regex: 'a'\n") == "regexes.yaml: no os_parsers");
  CHECK(error("user_agent_parsers:\n  - regex: 'a'\n  - family_replacement: 'b'\n" +
              std::string(kTail)) == "regexes.yaml: user_agent_parsers[1]: no 'regex' string");
  CHECK(error("user_agent_parsers:\n  - regex: 'a'\n    regex_flag: 'x'\n" + std::string(kTail)) ==
        "regexes.yaml: user_agent_parsers[0]: regex_flag must be 'i'");
  // Every regex with a lookbehind: a file for another engine, not a few strays.
  CHECK_THAT(error("user_agent_parsers:\n  - regex: '(?<!x)a'\n  - regex: '(?<=y)b'\n"
                   "  - regex: '(?!z)c'\n  - regex: '(a)\\1'\n" +
                   std::string(kTail)),
             Catch::StartsWith("regexes.yaml: user_agent_parsers[0]: regex does not compile: ") &&
                 Catch::Contains("(4 of 4 regexes of user_agent_parsers do not compile in RE2)"));
  CHECK_THAT(error(good, "[{\"pattern\": "),
             Catch::StartsWith("crawler-user-agents.json: not valid JSON: "));
  CHECK(error(good, "{\"pattern\": \"bot\"}") ==
        "crawler-user-agents.json: not a JSON array of {\"pattern\": ...} objects");
  CHECK(error(good, "[{\"pattern\": \"bot\"}, {\"instances\": []}]") ==
        "crawler-user-agents.json: [1]: no \"pattern\" string");

  SECTION("a stray regex RE2 cannot compile is skipped and counted") {
    std::string yaml = "user_agent_parsers:\n  - regex: '(Foo)(?=/)'\n";
    for (int i = 0; i < 10; ++i) yaml += "  - regex: '(Bar" + std::to_string(i) + ")'\n";
    auto p = UserAgentParser::Create(yaml + std::string(kTail),
                                     "[{\"pattern\": \"(?<=x)bot\"},"
                                     "{\"pattern\": \"bot\"}]");
    REQUIRE(p.ok());
    CHECK((*p)->skipped_regexes() == 1);
    CHECK((*p)->skipped_crawler_patterns() == 1);
    REQUIRE((*p)->skipped_details().size() == 2);
    CHECK_THAT((*p)->skipped_details()[0],
               Catch::StartsWith("regexes.yaml: user_agent_parsers[0]: regex does not compile"));
    CHECK((*p)->Parse("Bar3/1 Windows").browser_family == "Bar3");
    CHECK((*p)->Parse("Foo/1").browser_family == "Other");
    CHECK((*p)->Parse("a bot").bot);
  }
}

TEST_CASE("Replacement templates and the first match in file order and regex_flag", "[fraud]") {
  auto p = UserAgentParser::Create(R"(user_agent_parsers:
  - regex: '(Namoroka|Shiretoko|Minefield)/(\d+)\.(\d+)\.(\d+(?:pre|))'
    family_replacement: 'Firefox ($1)'
  - regex: 'Gecko/(\d+)'
    family_replacement: 'Gecko'
    v1_replacement: '$1x'
  - regex: '(Firefox)/(\d+)\.(\d+)'
  - regex: '(Short)[^;]{1,5};'
  - regex: '(Long)[^;]{1,8};'
os_parsers:
  - regex: 'Win(95|98|NT)'
    os_replacement: 'Windows $1'
  - regex: '(Windows)'
device_parsers:
  - regex: '; *(smart-?tv|Zeus)'
    regex_flag: 'i'
    device_replacement: '  $1 TV  '
)",
                                   "");
  REQUIRE(p.ok());
  // The spec's example: the first regex wins over the later Firefox one.
  UserAgentInfo i = (*p)->Parse(
      "Mozilla/5.0 (Windows; U; WinNT; rv:2.0b3pre) Gecko/20100727 Minefield/4.0.1pre Firefox/4.0");
  CHECK(i.browser_family == "Firefox (Minefield)");
  CHECK(i.browser_version == "4.0.1pre");
  CHECK(i.os_family == "Windows NT");
  CHECK(i.os_version == "");
  // The second: a template with a group; no minor version, as the regex has no group 2.
  i = (*p)->Parse("Mozilla/5.0 Gecko/2010 Firefox/4.0");
  CHECK(i.browser_family == "Gecko");
  CHECK(i.browser_version == "2010x");
  // The prefilter sets hold '[^;]{1,5}' as '[^;]{1,}': the set names both regexes, the full one
  // of the first turns the 12 characters down.
  CHECK((*p)->Parse("ShortLong1234567;").browser_family == "Long");
  CHECK((*p)->Parse("Short123;").browser_family == "Short");
  // Case-insensitive device regex, trimmed replacement.
  i = (*p)->Parse("Mozilla/5.0 (Linux; SMART-TV; x)");
  CHECK(i.device_family == "SMART-TV TV");
  CHECK(i.device_class == DeviceClass::kUnknown);
}

TEST_CASE("ClassifyDevice", "[fraud]") {
  CHECK(ClassifyDevice("Spider", "Other", "x") == DeviceClass::kBot);
  CHECK(ClassifyDevice("iPad", "iOS", "x") == DeviceClass::kTablet);
  CHECK(ClassifyDevice("Kindle Fire HD", "Android", "Silk") == DeviceClass::kTablet);
  CHECK(ClassifyDevice("iPhone", "iOS", "x") == DeviceClass::kMobile);
  CHECK(ClassifyDevice("Samsung SM-G991B", "Android", "Android 13; Mobile") ==
        DeviceClass::kMobile);
  CHECK(ClassifyDevice("Samsung SM-T870", "Android", "Android 13;") == DeviceClass::kTablet);
  CHECK(ClassifyDevice("Other", "Windows", "Windows NT 6.1; Tablet PC 2.0") ==
        DeviceClass::kDesktop);
  CHECK(ClassifyDevice("Mac", "Mac OS X", "x") == DeviceClass::kDesktop);
  CHECK(ClassifyDevice("Other", "Chrome OS", "x") == DeviceClass::kDesktop);
  CHECK(ClassifyDevice("Other", "Other", "x") == DeviceClass::kUnknown);
  CHECK(ClassifyDevice("HbbTV", "Other", "x") == DeviceClass::kUnknown);
  CHECK(ClassifyDevice("PlayStation 4", "Other", "x") == DeviceClass::kUnknown);
  for (int c = 0; c <= 4; ++c) {
    CHECK_FALSE(DeviceClassName(static_cast<DeviceClass>(c)).empty());
  }
  CHECK(DeviceClassName(DeviceClass::kTablet) == "tablet");
}

TEST_CASE("UserAgentCache counts hits and misses and stays within its capacity", "[fraud]") {
  auto p = UserAgentParser::Create(
      "user_agent_parsers:\n  - regex: '(\\w+)/(\\d+)'\nos_parsers:\n  - regex: '(Windows)'\n"
      "device_parsers:\n  - regex: '(iPhone)'\n",
      "");
  REQUIRE(p.ok());
  UserAgentCache cache(**p, 2);
  CHECK(cache.Lookup("A/1").browser_family == "A");
  CHECK(cache.Lookup("A/1").browser_version == "1");
  CHECK(cache.hits() == 1);
  CHECK(cache.misses() == 1);
  CHECK(cache.Lookup("B/2").browser_family == "B");
  CHECK(cache.size() == 2);
  CHECK(cache.Lookup("A/1").browser_family == "A");  // A is now the most recent
  CHECK(cache.Lookup("C/3").browser_family == "C");  // evicts B
  CHECK(cache.size() == 2);
  CHECK(cache.hits() == 2);
  CHECK(cache.misses() == 3);
  CHECK(cache.Lookup("A/1").browser_family == "A");
  CHECK(cache.hits() == 3);
  CHECK(cache.Lookup("B/2").browser_family == "B");  // a miss again; evicts C
  CHECK(cache.misses() == 4);
  CHECK(cache.Lookup("C/3").browser_family == "C");
  CHECK(cache.misses() == 5);

  // Too long to cache: parsed every time.
  std::string long_ua = "L/9 " + std::string(UserAgentCache::kMaxCachedBytes, 'x');
  CHECK(cache.Lookup(long_ua).browser_family == "L");
  CHECK(cache.Lookup(long_ua).browser_family == "L");
  CHECK(cache.misses() == 7);
  CHECK(cache.size() == 2);

  SECTION("many distinct user agents: size and memory stay bounded") {
    UserAgentCache big(**p, 1000);
    for (int i = 0; i < 20000; ++i) {
      std::string ua = "Browser" + std::to_string(i) + "/" + std::to_string(i % 97) +
                       " a long enough tail to leave the short-string buffer";
      const UserAgentInfo& info = big.Lookup(ua);
      REQUIRE(info.browser_family == "Browser" + std::to_string(i));
    }
    CHECK(big.size() == 1000);
    CHECK(big.misses() == 20000);
    size_t bytes = big.memory_bytes();
    std::printf("UserAgentCache: 1000 entries of ~70-byte user agents take %zu bytes\n", bytes);
    CHECK(bytes > 1000 * 70);
    CHECK(bytes < 1000 * 1024);
    for (int i = 19000; i < 20000; ++i) {
      big.Lookup("Browser" + std::to_string(i) + "/" + std::to_string(i % 97) +
                 " a long enough tail to leave the short-string buffer");
    }
    CHECK(big.hits() == 1000);
  }
  SECTION("capacity 0 caches nothing") {
    UserAgentCache none(**p, 0);
    CHECK(none.Lookup("A/1").browser_family == "A");
    CHECK(none.Lookup("A/1").browser_family == "A");
    CHECK(none.size() == 0);
    CHECK(none.misses() == 2);
  }
}

TEST_CASE("A cache hit allocates nothing", "[fraud]") {
  if (!kCountingAllocations) {
    WARN("allocations are not counted under AddressSanitizer");
    return;
  }
  UserAgentCache cache(Parser(), 4096);
  const auto& cases = BrowserCases();
  for (const Case& c : cases) cache.Lookup(c.ua);
  uint64_t hits = cache.hits();
  size_t bots = 0;
  uint64_t before = g_allocations.load();
  for (const Case& c : cases) bots += cache.Lookup(c.ua).bot;
  uint64_t allocations = g_allocations.load() - before;
  CHECK(cache.hits() - hits == cases.size());
  CHECK(allocations == 0);
  CHECK(bots > 0);
  // The counter does count: a parse allocates (its strings, the sets' match lists).
  before = g_allocations.load();
  UserAgentInfo info = Parser().Parse(cases[0].ua);
  CHECK(g_allocations.load() > before);
}

TEST_CASE("Parse is thread-safe", "[fraud]") {
  // Two threads over the same corpus at once (the automata are built as they go) agree with
  // what one thread finds.
  const auto& cases = DeviceCases();
  const UserAgentParser& p = Parser();
  std::vector<std::string> want;
  for (size_t i = 0; i < cases.size(); i += 7) want.push_back(p.Parse(cases[i].ua).device_family);
  auto fresh = UserAgentParser::Create(ReadFile(kUapDir + "/regexes.yaml"), "");
  REQUIRE(fresh.ok());
  std::atomic<size_t> wrong{0};
  auto run = [&](size_t offset) {
    for (size_t k = 0; k < want.size(); ++k) {
      size_t j = (k + offset) % want.size();
      if ((*fresh)->Parse(cases[j * 7].ua).device_family != want[j]) ++wrong;
    }
  };
  std::thread a(run, 0), b(run, want.size() / 2);
  a.join();
  b.join();
  CHECK(wrong == 0);
}

// Hidden ([.]): a measurement, not a test (benchmarks/micro/fraud_bench.cc measures the stage);
// run it with `fraud_ua_test "[speed]"`.
TEST_CASE("Parse speed over the corpora (printed only)", "[.][speed]") {
  std::vector<std::string_view> uas;
  for (const auto* corpus : {&BrowserCases(), &OsCases(), &DeviceCases()}) {
    for (const Case& c : *corpus) uas.push_back(c.ua);
  }
  // A parser of its own: the first pass builds the automata (user agents never seen), the second
  // runs on what the first built.
  auto fresh =
      UserAgentParser::Create(ReadFile(kUapDir + "/regexes.yaml"),
                              RealCrawlerJson().empty() ? kCrawlerSubset : RealCrawlerJson());
  REQUIRE(fresh.ok());
  const UserAgentParser& p = **fresh;
  size_t bots = 0;
  auto start = std::chrono::steady_clock::now();
  for (std::string_view ua : uas) bots += p.Parse(ua).bot;
  double cold = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  start = std::chrono::steady_clock::now();
  for (std::string_view ua : uas) bots += p.Parse(ua).bot;
  double uncached = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  UserAgentCache cache(p);
  for (std::string_view ua : uas) cache.Lookup(ua);  // fills it: the corpus fits
  uint64_t misses = cache.misses();
  constexpr int kRounds = 20;
  start = std::chrono::steady_clock::now();
  for (int r = 0; r < kRounds; ++r) {
    for (std::string_view ua : uas) bots += cache.Lookup(ua).bot;
  }
  double cached = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "speed: %zu user agents: uncached %.0f parses/s (%.1f us each; first pass, automata being "
      "built: %.0f/s, %.1f us); cached (all hits) %.0f lookups/s; cache %zu entries, %.1f MiB\n",
      uas.size(), uas.size() / uncached, 1e6 * uncached / uas.size(), uas.size() / cold,
      1e6 * cold / uas.size(), kRounds * uas.size() / cached, cache.size(),
      cache.memory_bytes() / 1048576.0);
  CHECK(cache.misses() == misses);
  CHECK(bots > 0);
}

}  // namespace adpulse
