// The configured cubes (sets of dimensions that aggregates are kept for) and the rule that picks
// the cube answering a query. Built once from the config; read-only and shared by all threads.
#pragma once
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "adpulse/event.h"

namespace adpulse {

inline constexpr int kMaxCubeDims = 6;

struct CubeSpec {
  std::string name;
  std::vector<Dim> dims;  // at most kMaxCubeDims, no repeats
  // Whether the cube keeps a HyperLogLog of users per group (the unique_users metric). The
  // costliest part of an aggregate, in memory and in time; cubes that only count can go without.
  bool unique_users = true;

  // Position of `d` in dims, or -1.
  int PositionOf(Dim d) const;
};

class CubeCatalog {
 public:
  static absl::StatusOr<CubeCatalog> Create(std::vector<CubeSpec> cubes);

  const std::vector<CubeSpec>& cubes() const { return cubes_; }
  const CubeSpec& cube(int index) const { return cubes_[index]; }
  // Dimensions used by at least one cube: the only ones a worker needs to intern.
  const std::vector<Dim>& used_dims() const { return used_dims_; }

  // The smallest cube whose dimensions include every one of `needed` (and that keeps unique users,
  // if `need_users`); otherwise an InvalidArgument error that says which cube to add or change.
  absl::StatusOr<int> Select(const std::vector<Dim>& needed, bool need_users = false) const;

 private:
  std::vector<CubeSpec> cubes_;
  std::vector<Dim> used_dims_;
};

}  // namespace adpulse
