// Helpers shared by the files that implement ShardState (shard_*.cc).
#pragma once
#include <chrono>
#include <cstdint>

namespace adpulse {

inline uint64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - start)
                                   .count());
}

}  // namespace adpulse
