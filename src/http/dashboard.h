// The live dashboard's files (GET /, /dashboard/*), embedded into the binary at build time from
// src/http/dashboard/ and uPlot (dashboard_assets.cc.in).
#pragma once
#include <string_view>
#include <vector>

namespace adpulse {

struct DashboardAsset {
  std::string_view path;
  std::string_view content_type;
  std::string_view body;
};

// The file served at `path` ("/" is the page), or null.
const DashboardAsset* FindDashboardAsset(std::string_view path);
// The paths of every file ("/", "/dashboard/dashboard.js", ...).
std::vector<std::string_view> DashboardPaths();

}  // namespace adpulse
