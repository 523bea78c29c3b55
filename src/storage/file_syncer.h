// A thread that runs fdatasync for its owner, so the owner can do other work while the disk
// flushes: a worker answers queries while its group's log write becomes durable. One request at a
// time; owned by one thread (the worker).
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace adpulse {

class FileSyncer {
 public:
  // Makes a file durable and returns 0 or an errno: fdatasync, or a test's stand-in.
  using SyncFn = std::function<int(int fd)>;
  static int Fdatasync(int fd);

  // `on_done` runs on the syncer's thread after each fdatasync finishes (and done() is true):
  // the owner's wake-up. `sync`: null for Fdatasync.
  FileSyncer(std::string thread_name, std::function<void()> on_done, SyncFn sync = nullptr);
  ~FileSyncer();
  FileSyncer(const FileSyncer&) = delete;
  FileSyncer& operator=(const FileSyncer&) = delete;

  // Starts fdatasync(fd). Only while idle: after construction or once done() was seen true.
  void Start(int fd);
  // True once the started fdatasync has returned; its errno (0 for success) is then sync_errno().
  bool done() const { return done_.load(std::memory_order_acquire); }
  int sync_errno() const { return sync_errno_; }

 private:
  void Loop();

  std::function<void()> on_done_;
  SyncFn sync_;
  std::mutex mu_;
  std::condition_variable cv_;
  int fd_ = -1;             // guarded by mu_: the file to sync
  bool requested_ = false;  // guarded by mu_
  bool stop_ = false;       // guarded by mu_
  std::atomic<bool> done_{true};
  int sync_errno_ = 0;  // written before done_ is set, read after it is seen
  std::thread thread_;
  std::string thread_name_;
};

}  // namespace adpulse
