// Runs a command (an argv, never through a shell) with a timeout, for the coordinator's hooks
// and kubectl. The child gets its own process group, so a timeout kills everything it started
// (a `pg_ctl` and the postgres it forks, a shell script and its children).
// Threading: blocking; safe to call from any thread (fork in a threaded process: the child only
// execs).
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "base/result.h"

namespace ferry {

struct ProcessResult {
  bool timed_out = false;
  int exit_code = -1;    // when it exited
  int signal = 0;        // when a signal ended it
  double seconds = 0;    // wall time
  std::string out, err;  // what it printed, when captured (bounded to 4 MiB each)
  bool ok() const { return !timed_out && signal == 0 && exit_code == 0; }
  // "exited 3", "was killed by signal 9", "ran over its 120 s timeout and was killed".
  std::string How(double timeout_s) const;
};

// `capture`: stdout and stderr are read into the result; otherwise they are the caller's.
// Fails only when the process could not be started (fork, pipe); a command that is not found
// exits 127, as in a shell.
// `on_start` (optional) is called with the child's pid (= its process group) once it runs.
// `output_fd` (when not capturing, and not -1): the child's stdout and stderr, e.g. a memfd
// that a daemon the command starts may keep writing to after it exited.
Result<ProcessResult> RunProcess(const std::vector<std::string>& argv, double timeout_s,
                                 bool capture,
                                 const std::function<void(pid_t)>& on_start = nullptr, int output_fd = -1);

// Waits until process group `pgid` has no process left, up to `timeout_s`; then kills it.
// True when it ended by itself.
bool WaitProcessGroup(pid_t pgid, double timeout_s);

}  // namespace ferry
