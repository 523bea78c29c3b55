// Process-wide Prometheus metrics: counters registered once (under a lock) and then incremented
// lock-free from any thread, gauges read through callbacks at scrape time, and histograms
// (base/histogram.h) owned by whoever observes them.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "base/histogram.h"

namespace adpulse {

class MetricsRegistry {
 public:
  using Counter = std::atomic<uint64_t>;

  // Same name and labels give the same counter. `labels` is the Prometheus label set without
  // braces, e.g. `path="/v1/events",code="200"`.
  Counter& GetCounter(const std::string& name, const std::string& help,
                      const std::string& labels = "");
  void AddGauge(const std::string& name, const std::string& help, std::function<double()> read);
  // One series of a labelled gauge family (`labels` as for GetCounter).
  void AddGauge(const std::string& name, const std::string& help, const std::string& labels,
                std::function<double()> read);
  // A histogram series; `h` must outlive the registry's scrapes.
  void AddHistogram(const std::string& name, const std::string& help, const Histogram* h,
                    const std::string& labels = "");
  // A histogram the registry owns (same name and labels give the same one).
  Histogram& GetHistogram(const std::string& name, const std::string& help,
                          const std::string& labels = "");
  // A counter whose value is read at scrape time (for counters kept elsewhere).
  void AddCounterFn(const std::string& name, const std::string& help, std::function<double()> read);
  // The same for one series of a labelled family (`labels` as for GetCounter).
  void AddCounterFn(const std::string& name, const std::string& help, const std::string& labels,
                    std::function<double()> read);

  // The text exposition format, version 0.0.4.
  std::string Render() const;

 private:
  struct Family {
    std::string help;
    bool is_counter = true;
    std::map<std::string, const Histogram*> histograms;  // labels -> histogram
    std::map<std::string, Counter*> series;              // labels -> counter
    std::function<double()> gauge;
    std::function<double()> counter_fn;
    std::map<std::string, std::function<double()>> labelled_fns;  // labels -> read
  };
  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
  std::deque<Counter> storage_;  // stable addresses
  std::deque<Histogram> owned_histograms_;
};

}  // namespace adpulse
