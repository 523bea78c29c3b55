// A Prometheus histogram of durations: fixed bucket bounds, observed lock-free from any thread
// (one relaxed increment per observation, plus the count and the sum), read at scrape time.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace adpulse {

class Histogram {
 public:
  // Upper bounds in seconds, ascending; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);
  // 100 us to 10 s, about three buckets a decade: request, query and fsync latencies.
  static std::vector<double> LatencyBounds();

  void Observe(double seconds);
  void ObserveMicros(int64_t micros) { Observe(static_cast<double>(micros) / 1e6); }

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    uint64_t count = 0;
    double sum = 0;  // seconds
  };
  // Each bucket read once; a concurrent observation may be in some totals and not yet in others.
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1, not cumulative
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_nanos_{0};
};

}  // namespace adpulse
