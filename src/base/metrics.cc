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

void MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                               const std::string& labels, std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& family = families_[name];
  family.help = help;
  family.is_counter = false;
  family.labelled_fns[labels] = std::move(read);
}

void MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                   const Histogram* h, const std::string& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& family = families_[name];
  family.help = help;
  family.is_counter = false;
  family.histograms[labels] = h;
}

Histogram& MetricsRegistry::GetHistogram(const std::string& name, const std::string& help,
                                         const std::string& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& family = families_[name];
  if (family.help.empty()) family.help = help;
  family.is_counter = false;
  auto it = family.histograms.find(labels);
  if (it != family.histograms.end()) return const_cast<Histogram&>(*it->second);
  Histogram& h = owned_histograms_.emplace_back(Histogram::LatencyBounds());
  family.histograms.emplace(labels, &h);
  return h;
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
    if (!family.histograms.empty()) {
      out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, family.help, name);
      for (const auto& [labels, h] : family.histograms) {
        Histogram::Snapshot s = h->Read();
        std::string sep = labels.empty() ? "" : ",";
        for (size_t i = 0; i < s.cumulative.size(); ++i) {
          std::string le = i < h->bounds().size() ? fmt::format("{}", h->bounds()[i]) : "+Inf";
          out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, le,
                             s.cumulative[i]);
        }
        std::string braces = labels.empty() ? "" : fmt::format("{{{}}}", labels);
        out +=
            fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, s.sum, name, braces, s.count);
      }
      continue;
    }
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
      if (family.gauge || family.labelled_fns.empty()) {
        out += fmt::format("{} {}\n", name, family.gauge ? family.gauge() : 0.0);
      }
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
