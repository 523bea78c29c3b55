#include "window/cube_catalog.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace adpulse {

int CubeSpec::PositionOf(Dim d) const {
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == d) return static_cast<int>(i);
  }
  return -1;
}

absl::StatusOr<CubeCatalog> CubeCatalog::Create(std::vector<CubeSpec> cubes) {
  CubeCatalog catalog;
  std::set<std::string> names;
  std::set<Dim> used;
  for (const CubeSpec& cube : cubes) {
    if (cube.name.empty()) return absl::InvalidArgumentError("a cube has no name");
    if (!names.insert(cube.name).second) {
      return absl::InvalidArgumentError(fmt::format("cube '{}' is defined twice", cube.name));
    }
    if (cube.dims.empty() || cube.dims.size() > kMaxCubeDims) {
      return absl::InvalidArgumentError(
          fmt::format("cube '{}' must have 1 to {} dimensions", cube.name, kMaxCubeDims));
    }
    std::set<Dim> seen(cube.dims.begin(), cube.dims.end());
    if (seen.size() != cube.dims.size()) {
      return absl::InvalidArgumentError(fmt::format("cube '{}' repeats a dimension", cube.name));
    }
    used.insert(seen.begin(), seen.end());
  }
  catalog.cubes_ = std::move(cubes);
  catalog.used_dims_.assign(used.begin(), used.end());
  return catalog;
}

absl::StatusOr<int> CubeCatalog::Select(const std::vector<Dim>& needed, bool need_users) const {
  int best = -1;
  int without_users = -1;  // a covering cube that does not keep unique users
  for (size_t i = 0; i < cubes_.size(); ++i) {
    const CubeSpec& c = cubes_[i];
    bool covers =
        std::all_of(needed.begin(), needed.end(), [&](Dim d) { return c.PositionOf(d) >= 0; });
    if (!covers) continue;
    if (need_users && !c.unique_users) {
      without_users = static_cast<int>(i);
      continue;
    }
    if (best < 0 || c.dims.size() < cubes_[best].dims.size()) best = static_cast<int>(i);
  }
  if (best >= 0) return best;
  std::vector<std::string_view> names;
  for (Dim d : needed) names.push_back(DimName(d));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  if (without_users >= 0) {
    return absl::InvalidArgumentError(fmt::format(
        "metrics: unique_users is not kept for [{}]: cube '{}' covers them with unique_users = "
        "false; set it to true in the config, or leave unique_users out of metrics",
        fmt::join(names, ", "), cubes_[without_users].name));
  }
  return absl::InvalidArgumentError(fmt::format(
      "no cube covers the dimensions and filters [{}]; add a cube with dimensions = [\"{}\"] to "
      "the [[cubes]] of the config",
      fmt::join(names, ", "), fmt::join(names, "\", \"")));
}

}  // namespace adpulse
