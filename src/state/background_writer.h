// One thread that runs one state-store write at a time for a shard, so that the shard's worker
// goes on ingesting (and answering queries) while RocksDB inserts a flushed slice into its
// memtable. The worker starts a write, polls Done() and collects its status with Wait(); it
// never starts a second write before collecting the first.
#pragma once
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"

namespace adpulse {

class BackgroundWriter {
 public:
  // The thread runs at `nice` (base/thread_priority.h).
  BackgroundWriter(std::string thread_name, int nice);
  ~BackgroundWriter();  // waits for a running write
  BackgroundWriter(const BackgroundWriter&) = delete;
  BackgroundWriter& operator=(const BackgroundWriter&) = delete;

  // Runs `write` on the thread. Only while idle (no write started and not yet waited for).
  void Start(std::function<absl::Status()> write);
  bool Busy() const { return busy_; }
  // True once the started write has finished; never blocks.
  bool Done();
  // Blocks until the started write has finished and returns its status; the writer is idle again.
  absl::Status Wait();

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<absl::Status()> job_;  // guarded by mu_
  bool finished_ = false;              // guarded by mu_
  absl::Status status_;                // guarded by mu_
  bool stop_ = false;                  // guarded by mu_
  bool busy_ = false;                  // the owner's view: started and not yet waited for
  std::string name_;
  int nice_;
  std::thread thread_;
};

}  // namespace adpulse
