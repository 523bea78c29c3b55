#include "window/query.h"

#include <algorithm>

#include "base/status_macros.h"

namespace adpulse {
namespace {
template <typename Dims>
void AppendRowKey(std::string& key, int64_t time, const Dims& dims, size_t n) {
  key.append(reinterpret_cast<const char*>(&time), sizeof(time));
  for (size_t i = 0; i < n; ++i) {
    key.append(dims[i].data(), dims[i].size());
    key.push_back('\0');
  }
}
std::string RowKey(int64_t time, const std::vector<std::string>& dims) {
  std::string key;
  AppendRowKey(key, time, dims, dims.size());
  return key;
}

struct TimeKey {
  int64_t time;
  DimKey key;
  bool operator==(const TimeKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const TimeKey& k) {
    return H::combine(std::move(h), k.time, k.key);
  }
};
}  // namespace

void ResultTable::Add(int64_t time, std::vector<std::string> dims, const Aggregate& agg,
                      bool with_users) {
  std::string key = RowKey(time, dims);
  auto [it, inserted] = rows_.try_emplace(std::move(key));
  if (inserted) {
    it->second.time = time;
    it->second.dims = std::move(dims);
  }
  it->second.agg.Merge(agg, with_users);
}

void ResultTable::Add(int64_t time, const std::string_view* dims, size_t n, const Aggregate& agg,
                      bool with_users) {
  scratch_.clear();
  AppendRowKey(scratch_, time, dims, n);
  auto it = rows_.find(scratch_);
  if (it == rows_.end()) {
    it = rows_.try_emplace(scratch_).first;
    it->second.time = time;
    it->second.dims.assign(dims, dims + n);
  }
  it->second.agg.Merge(agg, with_users);
}

void ResultTable::MergeFrom(ResultTable&& other, bool with_users) {
  if (rows_.empty()) {
    rows_ = std::move(other.rows_);
    return;
  }
  rows_.reserve(rows_.size() + other.rows_.size());  // shards mostly hold different campaigns
  for (auto& [key, row] : other.rows_) {
    auto [it, inserted] = rows_.try_emplace(key);
    if (inserted) {
      it->second = std::move(row);
    } else {
      it->second.agg.Merge(row.agg, with_users);
    }
  }
}

std::vector<const ResultRow*> ResultTable::Rows() const {
  std::vector<const ResultRow*> out;
  out.reserve(rows_.size());
  for (const auto& [key, row] : rows_) out.push_back(&row);
  return out;
}

std::vector<const ResultRow*> ResultTable::SortedRows() const {
  std::vector<const ResultRow*> out;
  out.reserve(rows_.size());
  for (const auto& [key, row] : rows_) out.push_back(&row);
  std::sort(out.begin(), out.end(), [](const ResultRow* a, const ResultRow* b) {
    if (a->time != b->time) return a->time < b->time;
    return a->dims < b->dims;
  });
  return out;
}

void ExecuteOnCube(const QuerySpec& spec, const std::vector<const CubeStore*>& stores,
                   const std::vector<ResolvedFilter>& filters, const IdToString& id_to_string,
                   ResultTable& out, const std::vector<DimKey>* exact_keys) {
  for (const ResolvedFilter& f : filters) {
    if (f.ids.empty()) return;  // a filter value this shard has never seen: nothing matches
  }
  if (stores.empty()) return;
  std::vector<int> positions;
  for (Dim d : spec.group_by) positions.push_back(stores.front()->spec().PositionOf(d));
  // The planner only picks a cube that holds every grouped dimension, each once.
  ADPULSE_CHECK(positions.size() <= kMaxCubeDims);
  for (int p : positions) ADPULSE_CHECK(p >= 0);

  absl::flat_hash_map<TimeKey, Aggregate> local;
  auto scan = [&](int64_t out_time, int64_t from_ms, int64_t to_ms) {
    DecomposeRange(from_ms, to_ms, [&](Level level, int64_t first, int64_t end) {
      for (const CubeStore* store : stores) {
        store->ForEachBucket(level, first, end, [&](int64_t, const GroupTable& table) {
          if (exact_keys) {
            for (const DimKey& key : *exact_keys) {
              const Aggregate* agg = table.Find(key);
              if (!agg) continue;
              TimeKey tk{out_time, {}};
              for (size_t i = 0; i < positions.size(); ++i) tk.key[i] = key[positions[i]];
              local[tk].Merge(*agg, spec.need_users);
            }
            return;
          }
          for (const auto& [key, agg] : table) {
            bool match = true;
            for (const ResolvedFilter& f : filters) {
              uint32_t id = key[f.position];
              if (std::find(f.ids.begin(), f.ids.end(), id) == f.ids.end()) {
                match = false;
                break;
              }
            }
            if (!match) continue;
            TimeKey tk{out_time, {}};
            for (size_t i = 0; i < positions.size(); ++i) tk.key[i] = key[positions[i]];
            local[tk].Merge(agg, spec.need_users);
          }
        });
      }
    });
  };

  ForEachOutputBucket(spec, scan);

  for (auto& [tk, agg] : local) {
    std::vector<std::string> dims;
    dims.reserve(positions.size());
    for (size_t i = 0; i < positions.size(); ++i) dims.push_back(id_to_string(tk.key[i]));
    out.Add(tk.time, std::move(dims), agg, spec.need_users);
  }
}

}  // namespace adpulse
