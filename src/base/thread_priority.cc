#include "base/thread_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace adpulse {

void SetCurrentThreadNice(int nice) {
  // On Linux the nice value is per thread: PRIO_PROCESS with a thread id sets just that thread.
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice);
}

}  // namespace adpulse
