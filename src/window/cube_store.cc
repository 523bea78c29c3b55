#include "window/cube_store.h"

namespace adpulse {

void CubeStore::ForEachAggregate(
    int64_t hours_through, int64_t days_through,
    const std::function<void(Level, int64_t, const DimKey&, const Aggregate&)>& fn) const {
  std::map<int64_t, GroupTable> coarse[2];  // hour, day
  for (const auto& [minute, table] : minutes_) {
    int64_t hour = FloorDiv(minute * kMinuteMs, kHourMs);
    int64_t day = FloorDiv(minute * kMinuteMs, kDayMs);
    for (const auto& [key, agg] : table) fn(Level::kMinute, minute, key, agg);
    if (hour <= hours_through) {
      GroupTable& hours = coarse[0][hour];
      hours.reserve(table.size());
      for (const auto& [key, agg] : table) hours[key].Merge(agg, spec_->unique_users);
    }
    if (day <= days_through) {
      GroupTable& days = coarse[1][day];
      for (const auto& [key, agg] : table) days[key].Merge(agg, spec_->unique_users);
    }
  }
  for (int l = 0; l < 2; ++l) {
    Level level = l == 0 ? Level::kHour : Level::kDay;
    for (const auto& [index, table] : coarse[l]) {
      for (const auto& [key, agg] : table) fn(level, index, key, agg);
    }
  }
}

void CubeStore::Clear() {
  minutes_.clear();
  recent_ = {};
  next_recent_ = 0;
  groups_ = 0;
  user_bytes_ = 0;
}

}  // namespace adpulse
