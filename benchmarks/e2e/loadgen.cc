// adpulse-loadgen: sends realistic unique events to a running adpulse as NDJSON over several
// keep-alive connections, flat out or at a fixed rate, and reports accepted events/s, the
// acknowledgement latency percentiles, errors by status, and (with --pid) the daemon's peak
// resident memory. One-line summary; --json FILE writes the figures for docs. With
// --target redis it sends the same events, as the seed's pipelined Redis commands, to a
// redis-server instead (benchmarks/e2e/versus_redis.sh runs both).
//
//   build/benchmarks/adpulse-loadgen --port 8080 --events 2000000 --campaigns 1000000
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;
  uint64_t events = 1'000'000;
  uint64_t campaigns = 10'000;
  uint64_t users = 1'000'000;
  int batch = 1000;
  int connections = 4;
  double rate = 0;          // events/s in total; 0 = flat out
  uint64_t spread_s = 120;  // event times spread over this many seconds before now
  bool redis = false;       // --target redis: the seed's design, RESP commands to a redis-server
  double duplicate_rate = 0.0;
  // Late events: this fraction is timestamped 5 minutes to 5 minutes + late_s before now, behind
  // the spread (the daemon counts an event as late when a minute behind the newest it has).
  double late_rate = 0.0;
  uint64_t late_s = 3600;
  // Bot traffic, for fraud scoring: this fraction comes from a handful of users on a handful of
  // datacenter addresses with a headless browser's user agent, nine in ten of them clicks.
  double fraud_rate = 0.0;
  uint64_t seed = 1;
  int pid = 0;
  std::string json;
  // Realtime query probe: one GET /v1/metrics/realtime for a random generated campaign every
  // this many ms, on a connection of its own, timed; 0 = off.
  int query_interval_ms = 50;
  // After the run, check that the daemon's totals grew by exactly the events it accepted.
  bool verify = true;
  // --simple: the events of the runs before the fraud stage (one user agent, 256 documentation
  // addresses, fewer fields). By default each user has a real browser's user agent (of 20) and a
  // public address of its own, and every field of the contract is filled, about 500 bytes.
  bool simple = false;
};

// Real browsers' user agents with the fields an SDK sends for them (consistent, so the fraud
// stage's mismatch signal stays quiet for them).
struct Agent {
  const char* ua;
  const char* device;
  const char* os;
  const char* browser;
};
constexpr Agent kAgents[] = {
    {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.6099.130 Safari/537.36",
     "desktop", "Windows", "Chrome"},
    {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.0.0 Safari/537.36",
     "desktop", "Windows", "Chrome"},
    {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.97",
     "desktop", "Windows", "Edge"},
    {"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0", "desktop",
     "Windows", "Firefox"},
    {"Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0", "desktop",
     "Windows", "Firefox"},
    {"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Safari/605.1.15",
     "desktop", "Mac OS X", "Safari"},
    {"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36",
     "desktop", "Mac OS X", "Chrome"},
    {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
     "Safari/537.36",
     "desktop", "Linux", "Chrome"},
    {"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "desktop",
     "Ubuntu", "Firefox"},
    {"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36",
     "desktop", "Chrome OS", "Chrome"},
    {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
     "mobile", "iOS", "Mobile Safari"},
    {"Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
     "mobile", "iOS", "Mobile Safari"},
    {"Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
     "mobile", "iOS", "Chrome Mobile iOS"},
    {"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.6099.144 Mobile Safari/537.36",
     "mobile", "Android", "Chrome Mobile"},
    {"Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
     "mobile", "Android", "Samsung Internet"},
    {"Mozilla/5.0 (Linux; Android 12; moto g(60)) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/119.0.0.0 Mobile Safari/537.36",
     "mobile", "Android", "Chrome Mobile"},
    {"Mozilla/5.0 (Linux; Android 13; 2201117TY) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/118.0.0.0 Mobile Safari/537.36",
     "mobile", "Android", "Chrome Mobile"},
    {"Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0", "mobile", "Android",
     "Firefox Mobile"},
    {"Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Mobile/15E148 Safari/604.1",
     "tablet", "iOS", "Mobile Safari"},
    {"Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36",
     "tablet", "Android", "Chrome"},
};
constexpr uint64_t kAgentCount = sizeof(kAgents) / sizeof(kAgents[0]);
constexpr const char* kCountriesForCities[] = {"US", "DE", "FR", "GB", "BR", "IN", "JP", "CA"};
constexpr const char* kCities[] = {"New York",  "Berlin", "Paris", "London",
                                   "Sao Paulo", "Mumbai", "Tokyo", "Toronto"};

// A public IPv4 address of a user's own (a mix of the user number: spread over 1.0.0.0 to
// 223.255.255.255, around the private and reserved blocks).
uint32_t PublicIpOf(uint64_t user) {
  uint64_t z = user * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 29)) * 0xbf58476d1ce4e5b9ull;
  uint32_t a = static_cast<uint32_t>(z >> 32);
  uint32_t first = 1 + (a >> 24) % 223;
  if (first == 10 || first == 127 || first == 100 || first == 172 || first == 192 || first == 169)
    first += 1;
  return (first << 24) | (a & 0x00ffffff);
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One generated event; fields drawn in a fixed order so both targets see the same events.
struct GenEvent {
  uint64_t id, campaign, ad, advertiser, publisher, user, ip, page, price_micros;
  uint64_t agent = 0;  // kAgents; realistic events only
  uint32_t ipv4 = 0;   // realistic events only
  int64_t timestamp_ms;
  bool bot = false;  // --fraud
  const char* type;
  const char* device;
  const char* country;
};

// xoshiro256** (Blackman and Vigna), seeded through splitmix64: a few instructions a draw where
// std::mt19937_64 was a tenth of the generator's CPU, which counts against the daemon's.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& word : s_) {
      seed += 0x9e3779b97f4a7c15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      word = z ^ (z >> 31);
    }
  }
  uint64_t operator()() {
    uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

GenEvent Generate(uint64_t id, Rng& rng, const Options& o, int64_t now) {
  static const char* kTypes[] = {"impression", "impression", "impression", "impression",
                                 "impression", "impression", "impression", "impression",
                                 "click",      "conversion"};
  const char* const* kCountries = kCountriesForCities;
  static const char* kDevices[] = {"desktop", "mobile", "tablet"};
  GenEvent e;
  e.id = id;
  e.type = kTypes[rng() % 10];
  e.timestamp_ms = now - static_cast<int64_t>(rng() % (o.spread_s * 1000));
  e.campaign = rng() % o.campaigns;
  e.ad = e.campaign * 4 + rng() % 4;
  e.advertiser = e.campaign % 5000;
  e.publisher = rng() % 500;
  e.user = rng() % o.users;
  e.ip = rng() % 256;
  e.page = rng() % 1000;
  e.device = kDevices[rng() % 3];
  e.country = kCountries[rng() % 8];
  e.price_micros = rng() % 1'000'000;
  // Drawn only when asked for, so that the events of the runs before these options stay the same.
  constexpr uint64_t kMillion = 1'000'000;
  if (o.late_rate > 0 && rng() % kMillion < static_cast<uint64_t>(o.late_rate * kMillion)) {
    e.timestamp_ms = now - 300'000 - static_cast<int64_t>(rng() % (o.late_s * 1000));
  }
  if (o.fraud_rate > 0 && rng() % kMillion < static_cast<uint64_t>(o.fraud_rate * kMillion)) {
    e.bot = true;
    e.user = rng() % 8;
    e.ip = rng() % 4;
    e.type = rng() % 10 == 0 ? "impression" : "click";
  }
  if (!o.simple) {  // derived, not drawn: the same random sequence either way
    e.agent = e.user % kAgentCount;
    e.device = kAgents[e.agent].device;
    e.ipv4 = PublicIpOf(e.user);
  }
  return e;
}

// Decimal digits of `v` at `p`; returns the end. Two digits a step from a table.
char* PutU64(char* p, uint64_t v) {
  static constexpr char kPairs[] =
      "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
      "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
      "8081828384858687888990919293949596979899";
  char tmp[20];
  char* end = tmp + sizeof(tmp);
  char* q = end;
  while (v >= 100) {
    q -= 2;
    std::memcpy(q, kPairs + (v % 100) * 2, 2);
    v /= 100;
  }
  if (v >= 10) {
    q -= 2;
    std::memcpy(q, kPairs + v * 2, 2);
  } else {
    *--q = static_cast<char>('0' + v);
  }
  size_t n = static_cast<size_t>(end - q);
  std::memcpy(p, q, n);
  return p + n;
}

char* Put(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

// Most bytes one event's NDJSON line takes (PutJson); the longest is about 700.
constexpr size_t kMaxEventBytes = 1024;

// Writes one event as an NDJSON line at `p` and returns the end. Written by hand into a buffer
// sized up front: fmt's formatting into a growing std::string (parsing, resizing, zero-filling)
// was most of the generator's CPU, which counts against the daemon's on these two cores.
char* PutRealisticJson(char* p, const GenEvent& e, uint64_t seed);

char* PutJson(char* p, const GenEvent& e, uint64_t seed, bool simple) {
  if (!simple) return PutRealisticJson(p, e, seed);
  p = Put(p, R"({"event_id":"lg)");
  p = PutU64(p, seed);
  *p++ = '-';
  p = PutU64(p, e.id);
  p = Put(p, R"(","event_type":")");
  p = Put(p, e.type);
  p = Put(p, R"(","timestamp":)");
  p = PutU64(p, static_cast<uint64_t>(e.timestamp_ms));
  p = Put(p, R"(,"campaign_id":"c)");
  p = PutU64(p, e.campaign);
  p = Put(p, R"(","ad_id":"a)");
  p = PutU64(p, e.ad);
  p = Put(p, R"(","advertiser_id":"adv)");
  p = PutU64(p, e.advertiser);
  p = Put(p, R"(","publisher_id":"p)");
  p = PutU64(p, e.publisher);
  p = Put(p, e.bot ? R"(","user_id":"bot)" : R"(","user_id":"u)");
  p = PutU64(p, e.user);
  p = Put(p, e.bot ? R"(","ip_address":"198.51.100.)" : R"(","ip_address":"203.0.113.)");
  p = PutU64(p, e.ip);
  p = Put(p, e.bot ? R"(","user_agent":"Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0",)"
                   : R"(","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",)");
  p = Put(p, R"("page_url":"https://news.example.com/a/)");
  p = PutU64(p, e.page);
  p = Put(p, R"(","device_type":")");
  p = Put(p, e.device);
  p = Put(p, R"(","country":")");
  p = Put(p, e.country);
  p = Put(p, R"(","bid_price":0.)");
  char digits[20];
  size_t n = static_cast<size_t>(PutU64(digits, e.price_micros) - digits);
  for (size_t i = n; i < 6; ++i) *p++ = '0';  // six decimals: 0.000042
  p = Put(p, std::string_view(digits, n));
  p = Put(p, R"(,"currency":"USD"})"
             "\n");
  return p;
}

char* PutRealisticJson(char* p, const GenEvent& e, uint64_t seed) {
  const Agent& a = kAgents[e.agent];
  p = Put(p, R"({"event_id":"lg)");
  p = PutU64(p, seed);
  *p++ = '-';
  p = PutU64(p, e.id);
  p = Put(p, R"(","event_type":")");
  p = Put(p, e.type);
  p = Put(p, R"(","timestamp":)");
  p = PutU64(p, static_cast<uint64_t>(e.timestamp_ms));
  p = Put(p, R"(,"campaign_id":"c)");
  p = PutU64(p, e.campaign);
  p = Put(p, R"(","ad_id":"a)");
  p = PutU64(p, e.ad);
  p = Put(p, R"(","advertiser_id":"adv)");
  p = PutU64(p, e.advertiser);
  p = Put(p, R"(","publisher_id":"p)");
  p = PutU64(p, e.publisher);
  p = Put(p, R"(","placement_id":"p)");
  p = PutU64(p, e.publisher);
  p = Put(p, "-slot-");
  p = PutU64(p, e.page % 4);
  p = Put(p, e.bot ? R"(","user_id":"bot)" : R"(","user_id":"u)");
  p = PutU64(p, e.user);
  p = Put(p, R"(","session_id":"s)");
  p = PutU64(p, e.user);
  *p++ = '-';
  p = PutU64(p, static_cast<uint64_t>(e.timestamp_ms) / 1'800'000);
  if (e.bot) {
    p = Put(p, R"(","ip_address":"198.51.100.)");
    p = PutU64(p, e.ip);
    p = Put(p, R"(","user_agent":"Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0",)");
  } else {
    p = Put(p, R"(","ip_address":")");
    p = PutU64(p, e.ipv4 >> 24);
    *p++ = '.';
    p = PutU64(p, (e.ipv4 >> 16) & 0xff);
    *p++ = '.';
    p = PutU64(p, (e.ipv4 >> 8) & 0xff);
    *p++ = '.';
    p = PutU64(p, e.ipv4 & 0xff);
    p = Put(p, R"(","user_agent":")");
    p = Put(p, a.ua);
    p = Put(p, R"(",)");
  }
  p = Put(p, R"("page_url":"https://news.example.com/articles/)");
  p = PutU64(p, e.page);
  p = Put(p, R"(?utm_source=adpulse","device_type":")");
  p = Put(p, e.device);
  p = Put(p, R"(","os":")");
  p = Put(p, e.bot ? "Linux" : a.os);
  p = Put(p, R"(","browser":")");
  p = Put(p, e.bot ? "HeadlessChrome" : a.browser);
  p = Put(p, R"(","country":")");
  p = Put(p, e.country);
  p = Put(p, R"(","city":")");
  for (size_t i = 0; i < 8; ++i) {
    if (e.country == kCountriesForCities[i]) p = Put(p, kCities[i]);
  }
  p = Put(p, R"(","bid_price":0.)");
  char digits[20];
  size_t n = static_cast<size_t>(PutU64(digits, e.price_micros) - digits);
  for (size_t i = n; i < 6; ++i) *p++ = '0';
  p = Put(p, std::string_view(digits, n));
  p = Put(p, R"(,"currency":"USD"})"
             "\n");
  return p;
}

void AppendResp(std::string& out, std::initializer_list<std::string_view> args) {
  fmt::format_to(std::back_inserter(out), "*{}\r\n", args.size());
  for (std::string_view a : args)
    fmt::format_to(std::back_inserter(out), "${}\r\n{}\r\n", a.size(), a);
}

// The seed's real-time path (its RealtimeMetricsCache): for each of adpulse's eight default cubes
// and each of minute, hour and day, HINCRBY the event type's count, HINCRBYFLOAT the spend, and
// PFADD the user: 72 pipelined commands per event. Returns the number of commands appended.
int AppendRedis(std::string& out, const GenEvent& e) {
  std::string c = fmt::format("c{}", e.campaign), adv = fmt::format("adv{}", e.advertiser);
  std::string groups[8] = {
      c,
      c + "|" + e.country,
      c + "|" + e.device,
      c + "|" + e.country + "|" + e.device,
      c + "|" + fmt::format("a{}", e.ad),
      adv,
      fmt::format("p{}", e.publisher),
      adv + "|" + c + "|USD",
  };
  static const char* kCubes[8] = {
      "campaign",    "campaign_country", "campaign_device", "campaign_country_device",
      "campaign_ad", "advertiser",       "publisher",       "billing"};
  static const int64_t kLevelMs[3] = {60'000, 3'600'000, 86'400'000};
  static const char* kLevels[3] = {"m", "h", "d"};
  std::string field = fmt::format("{}s", e.type);
  std::string price = fmt::format("0.{:06}", e.price_micros);
  std::string user = fmt::format("{}{}", e.bot ? "bot" : "u", e.user);
  int n = 0;
  for (int cube = 0; cube < 8; ++cube) {
    for (int l = 0; l < 3; ++l) {
      std::string key = fmt::format("m:{}:{}:{}:{}", kCubes[cube], kLevels[l],
                                    e.timestamp_ms / kLevelMs[l], groups[cube]);
      AppendResp(out, {"HINCRBY", key, field, "1"});
      AppendResp(out, {"HINCRBYFLOAT", key, "spend", price});
      AppendResp(out, {"PFADD", "u:" + key, user});
      n += 3;
    }
  }
  return n;
}

// Reads `count` RESP replies; false on a transport error or an error reply.
bool ReadRespReplies(int fd, std::string& buffer, int count) {
  size_t pos = 0;
  char chunk[65536];
  auto line_end = [&](size_t from) { return buffer.find("\r\n", from); };
  while (count > 0) {
    size_t eol = line_end(pos);
    if (eol != std::string::npos) {
      char kind = buffer[pos];
      if (kind == '-') return false;
      if (kind == '$') {
        long len = std::strtol(buffer.c_str() + pos + 1, nullptr, 10);
        size_t need = eol + 2 + (len < 0 ? 0 : static_cast<size_t>(len) + 2);
        if (buffer.size() >= need) {
          pos = need;
          --count;
          continue;
        }
      } else {
        pos = eol + 2;
        --count;
        continue;
      }
    }
    buffer.erase(0, pos);
    pos = 0;
    ssize_t r = ::recv(fd, chunk, sizeof(chunk), 0);
    if (r <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(r));
  }
  buffer.erase(0, pos);
  return true;
}

int Connect(const Options& o) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  ::inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// Sends one request and reads one response; returns the status (0 on a transport error) and
// fills `body`.
int RoundTrip(int fd, std::string_view request, std::string& buffer, std::string& body);

// Impressions + clicks + conversions the daemon holds with event times in [start_ms, end_ms), or
// nothing if it cannot be read.
std::optional<uint64_t> EventTotal(const Options& o, int64_t start_ms, int64_t end_ms) {
  int fd = Connect(o);
  if (fd < 0) return std::nullopt;
  std::string buffer, reply;
  std::string get = fmt::format(
      "GET /v1/metrics?metrics=impressions,clicks,conversions,fraud_impressions,fraud_clicks,"
      "fraud_conversions&start={}&end={} HTTP/1.1\r\n"
      "Host: {}\r\n\r\n",
      start_ms, end_ms, o.host);
  int status = RoundTrip(fd, get, buffer, reply);
  ::close(fd);
  if (status != 200) return std::nullopt;
  uint64_t total = 0;
  // Valid and invalid: every accepted event is counted in one or the other.
  for (const char* name :
       {"\"impressions\":", "\"clicks\":", "\"conversions\":", "\"fraud_impressions\":",
        "\"fraud_clicks\":", "\"fraud_conversions\":"}) {
    size_t p = reply.find(name);
    if (p != std::string::npos)
      total += std::strtoull(reply.c_str() + p + std::strlen(name), nullptr, 10);
  }
  return total;
}

int RoundTrip(int fd, std::string_view request, std::string& buffer, std::string& body) {
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return 0;
    sent += static_cast<size_t>(n);
  }
  buffer.clear();
  char chunk[65536];
  while (true) {
    size_t header_end = buffer.find("\r\n\r\n");
    if (header_end != std::string::npos) {
      size_t cl = buffer.find("Content-Length: ");
      if (cl == std::string::npos) cl = buffer.find("content-length: ");
      size_t length =
          cl == std::string::npos ? 0 : std::strtoul(buffer.c_str() + cl + 16, nullptr, 10);
      if (buffer.size() >= header_end + 4 + length) {
        body = buffer.substr(header_end + 4, length);
        return std::atoi(buffer.c_str() + 9);
      }
    }
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return 0;
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

uint64_t PeakRss(int pid) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return 0;
}

}  // namespace

constexpr const char* kUsage = R"(usage: adpulse-loadgen [options]
Sends generated events to adpulse (or, with --target redis, the seed's Redis commands) and prints
events/s, acknowledgement latency, errors, freshness and realtime-query latency.
  --host H               daemon address (127.0.0.1)
  --port P               daemon port (8080)
  --events N             events to send (1000000)
  --campaigns N          distinct campaign ids (10000)
  --users N              distinct user ids (1000000)
  --batch N              events per request (1000)
  --connections N        keep-alive connections (4)
  --rate R               events/s in total; 0 = flat out (0)
  --spread-s S           event times spread over the last S seconds (120)
  --duplicates F         fraction of events resent with an earlier event's id (0)
  --late F               fraction of events timestamped 5 minutes to 5 minutes + --late-s
                         before now, behind the spread: late, out-of-order events (0)
  --late-s S             how far behind the late events go (3600; keep under ingest.max_age_s)
  --fraud F              fraction of bot events: 8 users on 4 datacenter addresses with a
                         headless browser's user agent, nine in ten clicks (0)
  --simple 0|1           1: the events of the runs before the fraud stage (one user agent, 256
                         documentation addresses, fewer fields); 0 (default): 20 real browsers'
                         agents, a public address per user, every field, about 500 bytes
  --seed N               generator seed; the same seed sends the same events (1)
  --pid PID              the daemon's pid, to report its peak resident memory
  --query-interval-ms M  time a /v1/metrics/realtime query every M ms; 0 = off (50)
  --verify 0|1           after the run, check that the daemon's event totals grew by exactly
                         the events it acknowledged as accepted (1); exit 1 if not
  --json FILE            also write the figures as JSON
  --target redis         send the seed's pipelined HINCRBY/HINCRBYFLOAT/PFADD to redis-server
)";

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    }
  }
  if (argc % 2 == 0) {
    fmt::print(stderr, "option {} needs a value (see --help)\n", argv[argc - 1]);
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--host")
      o.host = v;
    else if (k == "--port")
      o.port = std::stoi(v);
    else if (k == "--events")
      o.events = std::stoull(v);
    else if (k == "--campaigns")
      o.campaigns = std::stoull(v);
    else if (k == "--users")
      o.users = std::stoull(v);
    else if (k == "--batch")
      o.batch = std::stoi(v);
    else if (k == "--connections")
      o.connections = std::stoi(v);
    else if (k == "--rate")
      o.rate = std::stod(v);
    else if (k == "--duplicates")
      o.duplicate_rate = std::stod(v);
    else if (k == "--late")
      o.late_rate = std::stod(v);
    else if (k == "--late-s")
      o.late_s = std::max<uint64_t>(1, std::stoull(v));
    else if (k == "--simple")
      o.simple = v != "0";
    else if (k == "--fraud")
      o.fraud_rate = std::stod(v);
    else if (k == "--seed")
      o.seed = std::stoull(v);
    else if (k == "--pid")
      o.pid = std::stoi(v);
    else if (k == "--json")
      o.json = v;
    else if (k == "--spread-s")
      o.spread_s = std::max<uint64_t>(1, std::stoull(v));
    else if (k == "--target")
      o.redis = (v == "redis");
    else if (k == "--verify")
      o.verify = v != "0";
    else if (k == "--query-interval-ms")
      o.query_interval_ms = std::max(0, std::stoi(v));
    else {
      fmt::print(stderr, "unknown option {} (see --help)\n", k);
      return 2;
    }
  }
  std::atomic<uint64_t> next{0}, accepted{0}, duplicates{0}, rejected{0}, probes_accepted{0};
  // Nothing lost: every event time this run sends lies in [verify_start, verify_end).
  const int64_t back_s = std::max<int64_t>(
      static_cast<int64_t>(o.spread_s),
      o.late_rate > 0 ? 300 + static_cast<int64_t>(o.late_s) : 0);  // the late events too
  const int64_t verify_start = (NowMs() - back_s * 1000) / 60'000 * 60'000 - 120'000;
  // Up to a day of run time after the spread (the range was a day from its start, which missed
  // most events of a --spread-s of a month).
  const int64_t verify_end = verify_start + back_s * 1000 + 24 * 3'600'000;
  o.verify = o.verify && !o.redis;
  std::optional<uint64_t> total_before;
  if (o.verify) {
    total_before = EventTotal(o, verify_start, verify_end);
    if (!total_before) {
      fmt::print(stderr, "cannot read the daemon's totals before the run (--verify 0 skips)\n");
      return 1;
    }
  }
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::map<int, uint64_t> errors;
  auto started = std::chrono::steady_clock::now();
  std::atomic<uint64_t> peak_rss{0};
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done.load()) {
      if (o.pid) peak_rss = std::max<uint64_t>(peak_rss.load(), PeakRss(o.pid));
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  // Freshness: every 250 ms one event for a campaign of its own, then poll
  // /v1/metrics/realtime every 2 ms until it shows; the time from sending to visible, to within
  // 2 ms. (Polling back to back made thousands of queries a second, a load no dashboard makes,
  // which took a third of the workers' time from ingestion.)
  std::vector<double> freshness_ms;
  std::thread prober([&] {
    if (o.redis) return;
    int fd = Connect(o);
    std::string buffer, reply;
    for (int n = 0; fd >= 0 && !done.load(); ++n) {
      std::string campaign = fmt::format("fresh-{}-{}", o.seed, n);
      std::string body = fmt::format(
          R"({{"event_id":"fresh-{}-{}","event_type":"impression","timestamp":{},"campaign_id":"{}"}})",
          o.seed, n, NowMs(), campaign);
      std::string post = fmt::format(
          "POST /v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n"
          "Content-Length: {}\r\n\r\n{}",
          o.host, body.size(), body);
      std::string get = fmt::format(
          "GET /v1/metrics/realtime?campaign_id={}&window=300 HTTP/1.1\r\nHost: {}\r\n\r\n",
          campaign, o.host);
      auto t0 = std::chrono::steady_clock::now();
      if (RoundTrip(fd, post, buffer, reply) != 200) break;
      if (reply.find("\"accepted\":1") != std::string::npos) ++probes_accepted;
      while (!done.load()) {
        if (RoundTrip(fd, get, buffer, reply) != 200) break;
        if (reply.find("\"impressions\":1,") != std::string::npos) {
          freshness_ms.push_back(
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count());
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(250));
    }
    if (fd >= 0) ::close(fd);
  });
  // Query latency while ingesting: the last 5 minutes of one generated campaign.
  std::vector<double> query_ms;
  uint64_t query_errors = 0;
  std::thread querier([&] {
    if (o.redis || o.query_interval_ms == 0) return;
    int fd = Connect(o);
    Rng rng(o.seed * 7919);
    std::string buffer, reply;
    while (fd >= 0 && !done.load()) {
      auto t0 = std::chrono::steady_clock::now();
      std::string get = fmt::format(
          "GET /v1/metrics/realtime?campaign_id=c{}&window=300 HTTP/1.1\r\nHost: {}\r\n\r\n",
          rng() % o.campaigns, o.host);
      if (RoundTrip(fd, get, buffer, reply) == 200) {
        query_ms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
      } else {
        ++query_errors;
      }
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(o.query_interval_ms));
    }
    if (fd >= 0) ::close(fd);
  });
  std::vector<std::thread> threads;
  for (int c = 0; c < o.connections; ++c) {
    threads.emplace_back([&, c] {
      Rng rng(o.seed * 1000 + c);
      int fd = Connect(o);
      std::string body, buffer, reply;
      // NDJSON requests are written straight into `out`: the header's room, then the events.
      constexpr size_t kHeaderRoom = 256;
      std::vector<char> out(kHeaderRoom + static_cast<size_t>(o.batch) * kMaxEventBytes);
      char* const events_begin = out.data() + kHeaderRoom;
      std::vector<double> local;
      std::map<int, uint64_t> local_errors;
      while (fd >= 0) {
        uint64_t first = next.fetch_add(o.batch);
        if (first >= o.events) break;
        uint64_t last = std::min<uint64_t>(o.events, first + o.batch);
        if (o.rate > 0) {
          auto due = started + std::chrono::duration<double>(first / o.rate);
          std::this_thread::sleep_until(due);
        }
        body.clear();
        char* events_end = events_begin;
        int commands = 0;
        int64_t now = NowMs();
        for (uint64_t id = first; id < last; ++id) {
          uint64_t use = id;
          if (o.duplicate_rate > 0 && id > 0 && (rng() % 10000) < o.duplicate_rate * 10000) {
            use = rng() % id;  // a resend of an earlier event
          }
          GenEvent e = Generate(use, rng, o, now);
          if (o.redis) {
            commands += AppendRedis(body, e);
          } else {
            events_end = PutJson(events_end, e, o.seed, o.simple);
          }
        }
        if (o.redis) {
          auto t0 = std::chrono::steady_clock::now();
          size_t sent = 0;
          bool ok = true;
          while (ok && sent < body.size()) {
            ssize_t n = ::send(fd, body.data() + sent, body.size() - sent, MSG_NOSIGNAL);
            ok = n > 0;
            if (ok) sent += static_cast<size_t>(n);
          }
          ok = ok && ReadRespReplies(fd, buffer, commands);
          double ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
          if (ok) {
            local.push_back(ms);
            accepted += last - first;
          } else {
            ++local_errors[0];
            break;
          }
          continue;
        }
        // The header goes right before the events, so the request is sent from one buffer.
        auto header = fmt::format(
            "POST /v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-ndjson\r\n"
            "Content-Length: {}\r\n\r\n",
            o.host, events_end - events_begin);
        if (header.size() > kHeaderRoom) {
          fmt::print(stderr, "--host is too long\n");
          std::exit(2);
        }
        char* request_begin = events_begin - header.size();
        std::memcpy(request_begin, header.data(), header.size());
        std::string_view request(request_begin, static_cast<size_t>(events_end - request_begin));
        auto t0 = std::chrono::steady_clock::now();
        int status = RoundTrip(fd, request, buffer, reply);
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count();
        if (status == 200) {
          local.push_back(ms);
          auto field = [&](const char* name) {
            size_t p = reply.find(name);
            return p == std::string::npos
                       ? 0ull
                       : std::strtoull(reply.c_str() + p + std::strlen(name), nullptr, 10);
          };
          accepted += field("\"accepted\":");
          duplicates += field("\"duplicates\":");
          rejected += field("\"rejected\":");
        } else {
          ++local_errors[status];
          if (status == 0) {
            ::close(fd);
            fd = Connect(o);
          }
        }
      }
      if (fd >= 0) ::close(fd);
      std::lock_guard<std::mutex> lock(mu);
      latencies_ms.insert(latencies_ms.end(), local.begin(), local.end());
      for (auto [k, v] : local_errors) errors[k] += v;
    });
  }
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  done = true;
  sampler.join();
  prober.join();
  querier.join();
  std::sort(query_ms.begin(), query_ms.end());
  auto query_pct = [&](double p) {
    if (query_ms.empty()) return 0.0;
    return query_ms[std::min(query_ms.size() - 1, static_cast<size_t>(p * query_ms.size()))];
  };
  std::sort(freshness_ms.begin(), freshness_ms.end());
  auto fresh = [&](double p) {
    if (freshness_ms.empty()) return 0.0;
    return freshness_ms[std::min(freshness_ms.size() - 1,
                                 static_cast<size_t>(p * freshness_ms.size()))];
  };
  if (o.pid) peak_rss = std::max<uint64_t>(peak_rss.load(), PeakRss(o.pid));
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    if (latencies_ms.empty()) return 0.0;
    return latencies_ms[std::min(latencies_ms.size() - 1,
                                 static_cast<size_t>(p * latencies_ms.size()))];
  };
  std::string errs;
  for (auto [k, v] : errors)
    errs += fmt::format(" {}:{}", k == 0 ? std::string("io") : std::to_string(k), v);
  double rate = static_cast<double>(accepted + duplicates) / secs;
  fmt::print(
      "sent {} events in {:.1f} s: {:.0f} events/s acknowledged ({} accepted, {} duplicates, {} "
      "rejected); batch {} x {} connections; ack latency p50 {:.2f} ms p99 {:.2f} ms p99.9 {:.2f} "
      "ms; "
      "errors{}{}\n",
      o.events, secs, rate, accepted.load(), duplicates.load(), rejected.load(), o.batch,
      o.connections, pct(0.5), pct(0.99), pct(0.999), errs.empty() ? " none" : errs,
      o.pid ? fmt::format("; daemon peak RSS {:.0f} MiB", peak_rss.load() / 1048576.0) : "");
  if (!freshness_ms.empty()) {
    fmt::print(
        "freshness (sent -> visible in /v1/metrics/realtime) over {} probes: p50 {:.1f} ms, "
        "p99 {:.1f} ms, max {:.1f} ms\n",
        freshness_ms.size(), fresh(0.5), fresh(0.99), freshness_ms.back());
  }
  if (!query_ms.empty()) {
    fmt::print(
        "realtime query (last 5 minutes of one campaign) over {} queries while ingesting: p50 "
        "{:.2f} ms, p99 {:.2f} ms, max {:.2f} ms; {} failed\n",
        query_ms.size(), query_pct(0.5), query_pct(0.99), query_ms.back(), query_errors);
  }
  bool lost = false;
  if (o.verify) {
    std::optional<uint64_t> total_after = EventTotal(o, verify_start, verify_end);
    uint64_t want = accepted + probes_accepted;
    if (!total_after) {
      fmt::print("verify: cannot read the daemon's totals after the run\n");
      lost = true;
    } else {
      uint64_t grew = *total_after - *total_before;
      lost = grew != want;
      fmt::print(
          "verify: impressions + clicks + conversions grew by {}; accepted {} ({} generated, {} "
          "probes): {}\n",
          grew, want, accepted.load(), probes_accepted.load(), lost ? "MISMATCH" : "equal");
    }
  }
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << fmt::format(
        R"({{"events":{},"seconds":{:.3f},"events_per_s":{:.0f},"accepted":{},"duplicates":{},)"
        R"("p50_ms":{:.3f},"p99_ms":{:.3f},"p999_ms":{:.3f},"peak_rss_bytes":{},"campaigns":{},"batch":{},"connections":{},)"
        R"("freshness_p50_ms":{:.3f},"freshness_p99_ms":{:.3f},"query_p50_ms":{:.3f},"query_p99_ms":{:.3f}}})",
        o.events, secs, rate, accepted.load(), duplicates.load(), pct(0.5), pct(0.99), pct(0.999),
        peak_rss.load(), o.campaigns, o.batch, o.connections, fresh(0.5), fresh(0.99),
        query_pct(0.5), query_pct(0.99));
  }
  return errors.empty() && !lost ? 0 : 1;
}
