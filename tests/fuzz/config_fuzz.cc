// libFuzzer target: any bytes as a config file, applied over the embedded defaults. The parser
// must never crash or throw; what it accepts must be a config the daemon can start from (its
// cubes make a catalog, its tokens have names and scopes).
#include <cstdint>
#include <string_view>

#include "app/config.h"
#include "base/status_macros.h"
#include "window/cube_catalog.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const adpulse::Config defaults = *adpulse::LoadConfig(std::nullopt);
  adpulse::Config config = defaults;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::Status s = adpulse::ApplyToml(text, "fuzz.toml", config);
  if (!s.ok()) {
    ADPULSE_CHECK(!s.message().empty());
    return 0;
  }
  if (!config.cubes.empty()) (void)adpulse::CubeCatalog::Create(config.cubes);
  for (const adpulse::TokenSpec& t : config.tokens) {
    ADPULSE_CHECK(!t.name.empty());
    ADPULSE_CHECK(t.scopes != 0);
  }
  ADPULSE_CHECK(config.server.max_body_bytes >= 1024);
  return 0;
}
