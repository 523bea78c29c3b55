#include "fraud/enricher.h"

#include <string>

#include "fraud/signals.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace adpulse {

namespace {

// Lower-case letters and digits only, with the words that vary between spellings of one
// browser dropped ("Chrome Mobile iOS" -> "chrome").
std::string Squash(std::string_view s, bool browser) {
  std::string out, word;
  auto flush = [&]() {
    if (word.empty()) return;
    bool filler =
        browser && (word == "mobile" || word == "webview" || word == "ios" || word == "android" ||
                    word == "browser" || word == "microsoft" || word == "google");
    if (!filler) out += word;
    word.clear();
  };
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c - 'A' + 'a');
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      word.push_back(static_cast<char>(c));
    } else {
      flush();
    }
  }
  flush();
  return out;
}

std::string OsKey(std::string_view s) {
  std::string k = Squash(s, false);
  if (k == "macosx" || k == "osx" || k == "macos" || k == "mac") return "macos";
  if (k == "ios" || k == "ipados" || k == "iphoneos") return "ios";
  if (k.rfind("windows", 0) == 0 || k == "win") return "windows";
  if (k == "chromeos" || k == "chromiumos") return "chromeos";
  for (const char* linux_os : {"linux", "ubuntu", "debian", "fedora", "linuxmint", "mint", "redhat",
                               "suse", "opensuse", "centos", "arch", "gentoo", "mandriva"}) {
    if (k == linux_os) return "linux";
  }
  return k;
}

bool Unknown(std::string_view k) { return k.empty() || k == "other" || k == "unknown"; }

bool Differ(const std::string& a, const std::string& b) {
  if (Unknown(a) || Unknown(b)) return false;
  return a.find(b) == std::string::npos && b.find(a) == std::string::npos;
}

}  // namespace

bool ContradictsBrowser(std::string_view carried, std::string_view parsed) {
  return Differ(Squash(carried, true), Squash(parsed, true));
}

bool ContradictsOs(std::string_view carried, std::string_view parsed) {
  return Differ(OsKey(carried), OsKey(parsed));
}

bool ContradictsDevice(std::string_view carried, DeviceClass parsed) {
  if (parsed == DeviceClass::kUnknown || parsed == DeviceClass::kBot) return false;
  std::string k = Squash(carried, false);
  DeviceClass c;
  if (k == "desktop" || k == "pc" || k == "computer" || k == "laptop") {
    c = DeviceClass::kDesktop;
  } else if (k == "mobile" || k == "phone" || k == "smartphone") {
    c = DeviceClass::kMobile;
  } else if (k == "tablet") {
    c = DeviceClass::kTablet;
  } else {
    return false;  // "tv", "console", ...: not a class we parse
  }
  return c != parsed;
}

Enricher::Enricher(const UserAgentParser* user_agents, const GeoSource* geo,
                   const EnricherOptions& options) {
  if (user_agents) {
    ua_cache_ = std::make_unique<UserAgentCache>(*user_agents, options.ua_cache_entries);
  }
  if (geo) geo_cache_ = std::make_unique<GeoCache>(*geo, options.geo_cache_entries);
}

bool Enricher::Mismatch(std::string_view browser, std::string_view os, std::string_view device,
                        const UserAgentInfo& ua) {
  uint64_t h = static_cast<uint64_t>(ua.device_class) + 1;
  for (std::string_view s :
       {browser, os, device, std::string_view(ua.browser_family), std::string_view(ua.os_family)}) {
    h = XXH3_64bits_withSeed(s.data(), s.size(), h);
  }
  if (auto it = mismatch_memo_.find(h); it != mismatch_memo_.end()) return it->second;
  bool mismatch = (!browser.empty() && ContradictsBrowser(browser, ua.browser_family)) ||
                  (!os.empty() && ContradictsOs(os, ua.os_family)) ||
                  (!device.empty() && ContradictsDevice(device, ua.device_class));
  if (mismatch_memo_.size() >= 65'536) mismatch_memo_.clear();
  mismatch_memo_.emplace(h, mismatch);
  return mismatch;
}

void Enricher::Enrich(Event& e, StableArena& arena) {
  if (e.user_agent.empty()) {
    e.fraud_signals |= SignalBit(Signal::kMissingUserAgent);
  } else if (ua_cache_) {
    const UserAgentInfo& ua = ua_cache_->Lookup(e.user_agent);
    if (ua.bot) e.fraud_signals |= SignalBit(Signal::kBotUserAgent);
    std::string_view& browser = e.dim(Dim::kBrowser);
    std::string_view& os = e.dim(Dim::kOs);
    std::string_view& device = e.dim(Dim::kDeviceType);
    bool mismatch =
        (!browser.empty() || !os.empty() || !device.empty()) && Mismatch(browser, os, device, ua);
    if (browser.empty() && ua.browser_family != "Other") browser = arena.Copy(ua.browser_family);
    if (os.empty() && ua.os_family != "Other") os = arena.Copy(ua.os_family);
    if (device.empty() && ua.device_class != DeviceClass::kUnknown) {
      device = DeviceClassName(ua.device_class);  // a static string
    }
    if (mismatch) e.fraud_signals |= SignalBit(Signal::kDeviceMismatch);
    e.browser_version = arena.Copy(ua.browser_version);
    e.os_version = arena.Copy(ua.os_version);
  }
  if (geo_cache_ && !e.ip_address.empty()) {
    GeoView g = geo_cache_->Lookup(e.ip_address);
    if (g.found) {
      std::string_view& country = e.dim(Dim::kCountry);
      // The city only where it belongs to the event's country: a carried country wins.
      bool same_country = country.empty() || country == g.country;
      if (country.empty()) country = arena.Copy(g.country);
      if (e.dim(Dim::kCity).empty() && same_country) e.dim(Dim::kCity) = arena.Copy(g.city);
      e.lat_e4 = g.lat_e4;
      e.lon_e4 = g.lon_e4;
    }
  }
}

}  // namespace adpulse
