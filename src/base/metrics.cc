#include "base/metrics.h"

#include <fmt/format.h>

namespace adpulse {

MetricsRegistry::Counter& MetricsRegistry::GetCounter(const std::string& name,
                                                      const std::string& help,
                                                      const std::string& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& family = families_[name];
  if (family.help.empty()) family.help = help;
  auto it = family.series.find(labels);
  if (it != family.series.end()) return *it->second;
  Counter& c = storage_.emplace_back(0);
  family.series.emplace(labels, &c);
  return c;
}

void MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                               std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& family = families_[name];
  family.help = help;
  family.is_counter = false;
  family.gauge = std::move(read);
}

void MetricsRegistry::AddCounterFn(const std::string& name, const std::string& help,
                                   std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& family = families_[name];
  family.help = help;
  family.is_counter = true;
  family.counter_fn = std::move(read);
}

void MetricsRegistry::AddCounterFn(const std::string& name, const std::string& help,
                                   const std::string& labels, std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& family = families_[name];
  family.help = help;
  family.is_counter = true;
  family.labelled_fns[labels] = std::move(read);
}

std::string MetricsRegistry::Render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  for (const auto& [name, family] : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, family.help, name,
                       family.is_counter ? "counter" : "gauge");
    if (family.counter_fn) {
      out += fmt::format("{} {}\n", name, family.counter_fn());
      continue;
    }
    for (const auto& [labels, read] : family.labelled_fns) {
      out += fmt::format("{}{{{}}} {}\n", name, labels, read());
    }
    if (!family.is_counter) {
      out += fmt::format("{} {}\n", name, family.gauge ? family.gauge() : 0.0);
      continue;
    }
    for (const auto& [labels, counter] : family.series) {
      if (labels.empty()) {
        out += fmt::format("{} {}\n", name, counter->load(std::memory_order_relaxed));
      } else {
        out += fmt::format("{}{{{}}} {}\n", name, labels, counter->load(std::memory_order_relaxed));
      }
    }
  }
  return out;
}

}  // namespace adpulse
