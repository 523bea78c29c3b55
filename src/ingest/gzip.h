// Inflates a gzip (or zlib) request body with a hard limit on the output, so a small compressed
// body cannot expand without bound (a "gzip bomb").
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace adpulse {

// ResourceExhausted when the output would exceed `max_output_bytes`; InvalidArgument when the
// input is not valid gzip. The result has `extra_capacity` spare bytes reserved (for simdjson).
absl::StatusOr<std::string> GunzipBody(std::string_view input, size_t max_output_bytes,
                                       size_t extra_capacity);

}  // namespace adpulse
