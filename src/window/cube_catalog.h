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

  // The smallest cube whose dimensions include every one of `needed`; otherwise an
  // InvalidArgument error that names the cube to add.
  absl::StatusOr<int> Select(const std::vector<Dim>& needed) const;

 private:
  std::vector<CubeSpec> cubes_;
  std::vector<Dim> used_dims_;
};

}  // namespace adpulse
