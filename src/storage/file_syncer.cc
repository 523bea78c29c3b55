#include "storage/file_syncer.h"

#include <pthread.h>
#include <unistd.h>

#include <cerrno>

namespace adpulse {

int FileSyncer::Fdatasync(int fd) { return ::fdatasync(fd) == 0 ? 0 : errno; }

FileSyncer::FileSyncer(std::string thread_name, std::function<void()> on_done, SyncFn sync)
    : on_done_(std::move(on_done)),
      sync_(sync ? std::move(sync) : SyncFn(Fdatasync)),
      thread_name_(std::move(thread_name)) {
  thread_ = std::thread([this] { Loop(); });
}

FileSyncer::~FileSyncer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void FileSyncer::Start(int fd) {
  done_.store(false, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    fd_ = fd;
    requested_ = true;
  }
  cv_.notify_one();
}

void FileSyncer::Loop() {
  pthread_setname_np(pthread_self(), thread_name_.substr(0, 15).c_str());
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || requested_; });
    // A requested sync is finished even when stopping: the owner waits for it.
    if (!requested_) return;
    requested_ = false;
    int fd = fd_;
    lock.unlock();
    sync_errno_ = sync_(fd);
    done_.store(true, std::memory_order_release);
    on_done_();
    lock.lock();
  }
}

}  // namespace adpulse
