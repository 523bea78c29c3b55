#include "state/recent_hours.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "base/time_parse.h"
#include "window/time_bucket.h"

namespace adpulse {

RecentHours::RecentHours(const CubeCatalog& catalog, int64_t hours, size_t budget_bytes,
                         int64_t now_ms)
    : hours_(std::max<int64_t>(1, hours)),
      budget_bytes_(budget_bytes),
      first_hour_(FloorDiv(now_ms, kHourMs) - hours_ + 1),
      cubes_(catalog.cubes().size()) {
  for (size_t c = 0; c < cubes_.size(); ++c) cubes_[c].dims = catalog.cubes()[c].dims.size();
}

RecentHours::HourTable* RecentHours::TableFor(int cube, int64_t hour) {
  CubeHours& c = cubes_[static_cast<size_t>(cube)];
  if (!c.kept || hour < first_hour_) return nullptr;
  auto it = c.hours.lower_bound(hour);
  if (it != c.hours.end() && it->first == hour) return &it->second;
  // A new hour: sized like the hour before it, so that it does not grow (and rehash) step by step.
  size_t expect = it == c.hours.begin() ? 0 : std::prev(it)->second.size();
  it = c.hours.emplace_hint(it, hour, HourTable());
  it->second.reserve(expect);
  return &it->second;
}

size_t RecentHours::TableBytes(const HourTable& t) {
  // Each slot holds a key and its counters, plus a control byte.
  return t.capacity() * (sizeof(HourTable::value_type) + 1);
}

size_t RecentHours::CubeBytes(const CubeHours& c) const {
  size_t bytes = 0;
  for (const auto& [hour, table] : c.hours) bytes += TableBytes(table) + 64;
  return bytes;
}

size_t RecentHours::MeasureBytes() const {
  size_t bytes = interner_.bytes();
  for (const CubeHours& c : cubes_) bytes += CubeBytes(c);
  return bytes;
}

size_t RecentHours::groups() const {
  size_t n = 0;
  for (const CubeHours& c : cubes_) {
    for (const auto& [hour, table] : c.hours) n += table.size();
  }
  return n;
}

void RecentHours::EnforceBudget() {
  bool dropped = false;
  for (CubeHours& c : cubes_) {
    if (!c.kept) continue;
    for (const auto& [hour, table] : c.hours) {
      if (table.size() > kMaxGroupsPerHour) {
        c.kept = false;
        c.hours.clear();
        dropped = true;
        break;
      }
    }
  }
  if (dropped) RebuildInterner();
  size_t total = MeasureBytes();
  while (total > budget_bytes_) {
    // The cube with the most dimensions goes first, and of those the one with the most groups
    // an hour: the small cubes, which rankings over many hours read, stay.
    CubeHours* densest = nullptr;
    std::pair<size_t, double> densest_rank{0, -1};
    for (CubeHours& c : cubes_) {
      if (!c.kept || c.hours.empty()) continue;
      size_t groups = 0;
      for (const auto& [hour, table] : c.hours) groups += table.size();
      std::pair<size_t, double> rank{
          c.dims, static_cast<double>(groups) / static_cast<double>(c.hours.size())};
      if (rank > densest_rank) {
        densest = &c;
        densest_rank = rank;
      }
    }
    if (!densest) break;  // only interned values left
    densest->kept = false;
    densest->hours.clear();
    // The values only that cube used go too: they may be most of the interner (ad ids).
    RebuildInterner();
    total = MeasureBytes();
  }
  bytes_ = total;
}

void RecentHours::Advance(int64_t now_ms) {
  int64_t first = FloorDiv(now_ms, kHourMs) - hours_ + 1;
  if (first <= first_hour_) return;
  first_hour_ = first;
  for (CubeHours& c : cubes_) c.hours.erase(c.hours.begin(), c.hours.lower_bound(first));
  // The interner only grows: values of hours let go stay in it until it is rebuilt, once it holds
  // at least twice the values the keys still use (campaigns come and go). Checked once an hour.
  if (interner_.size() > 1024) {
    absl::flat_hash_set<uint32_t> used;
    for (const CubeHours& c : cubes_) {
      for (const auto& [hour, table] : c.hours) {
        for (const auto& [key, counters] : table) {
          for (uint32_t id : key) used.insert(id);
        }
      }
    }
    if (used.size() * 2 <= interner_.size()) RebuildInterner();
  }
  EnforceBudget();
}

void RecentHours::RebuildInterner() {
  Interner fresh;
  absl::flat_hash_map<uint32_t, uint32_t> remap;
  auto id_of = [&](uint32_t old) {
    if (old == 0) return uint32_t{0};
    auto [it, inserted] = remap.try_emplace(old, 0);
    if (inserted) {
      const std::string& v = interner_.Lookup(old);
      it->second = fresh.Intern({v, Interner::HashOf(v)});
    }
    return it->second;
  };
  for (CubeHours& c : cubes_) {
    for (auto& [hour, table] : c.hours) {
      HourTable moved;
      moved.reserve(table.size());
      for (const auto& [key, counters] : table) {
        DimKey k = key;
        for (uint32_t& id : k) id = id_of(id);
        moved.emplace(k, counters);
      }
      table = std::move(moved);
    }
  }
  interner_ = std::move(fresh);
  ++generation_;
}

}  // namespace adpulse
