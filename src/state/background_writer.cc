#include "state/background_writer.h"

#include <pthread.h>

#include "base/status_macros.h"
#include "base/thread_priority.h"

namespace adpulse {

BackgroundWriter::BackgroundWriter(std::string thread_name, int nice)
    : name_(std::move(thread_name)), nice_(nice), thread_([this] { Loop(); }) {}

BackgroundWriter::~BackgroundWriter() {
  if (busy_) (void)Wait();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BackgroundWriter::Start(std::function<absl::Status()> write) {
  ADPULSE_CHECK(!busy_);
  busy_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = std::move(write);
    finished_ = false;
  }
  cv_.notify_all();
}

bool BackgroundWriter::Done() {
  if (!busy_) return true;
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

absl::Status BackgroundWriter::Wait() {
  if (!busy_) return absl::OkStatus();
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return finished_; });
  busy_ = false;
  return status_;
}

void BackgroundWriter::Loop() {
  pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
  SetCurrentThreadBackground(nice_);
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || job_; });
    if (!job_) return;  // stopping, nothing left to run
    auto job = std::move(job_);
    job_ = nullptr;
    lock.unlock();
    absl::Status s = job();
    lock.lock();
    status_ = s;
    finished_ = true;
    cv_.notify_all();
  }
}

}  // namespace adpulse
