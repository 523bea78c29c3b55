// Work sent to a shard's worker over its rings. The worker calls Run() for each task it pops, then,
// once per group of tasks (after the group's log write is durable, when the log exists),
// Complete(). A task is owned by whoever submitted it and must stay alive until its Complete() has
// been called; Complete() may release it, so the worker never touches a task afterwards.
#pragma once

namespace adpulse {

class ShardState;
class ShardWriter;

struct ShardContext {
  int shard = 0;
  ShardState* state = nullptr;
  ShardWriter* writer = nullptr;
};

class Task {
 public:
  virtual ~Task() = default;
  virtual void Run(ShardContext& shard) = 0;
  virtual void Complete() = 0;
};

}  // namespace adpulse
