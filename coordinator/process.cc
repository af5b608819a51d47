#include "coordinator/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace ferry {

namespace {

constexpr size_t kMaxCapture = 4u << 20;

// Reads what `fd` has now into `out` (bounded); false at end of file or error.
bool Drain(int fd, std::string& out) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf,
                 std::min(static_cast<size_t>(n), kMaxCapture - std::min(kMaxCapture, out.size())));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
}

}  // namespace

std::string ProcessResult::How(double timeout_s) const {
  if (timed_out)
    return "ran over its " + std::to_string(static_cast<long>(timeout_s)) +
           " s timeout and was killed";
  if (signal != 0) return "was killed by signal " + std::to_string(signal);
  return "exited " + std::to_string(exit_code);
}

namespace {

// The child's pipes, when its output is captured: [0] ours (read), [1] its (write).
struct Pipes {
  int out[2] = {-1, -1}, err[2] = {-1, -1};
};

// Forks and execs `argv` in its own process group (its output into `pipes` when given, else into
// `output_fd` when that is not -1).
Result<pid_t> Spawn(const std::vector<std::string>& argv, const Pipes* pipes, int output_fd) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return Status::Errno(errno, "fork for " + argv[0]);
  if (pid == 0) {
    ::setpgid(0, 0);
    if (pipes != nullptr) {
      ::dup2(pipes->out[1], STDOUT_FILENO);
      ::dup2(pipes->err[1], STDERR_FILENO);
    } else if (output_fd >= 0) {
      ::dup2(output_fd, STDOUT_FILENO);
      ::dup2(output_fd, STDERR_FILENO);
    }
    ::execvp(args[0], args.data());
    _exit(127);
  }
  ::setpgid(pid, pid);
  return pid;
}

// Waits for `pid` until `deadline` (then kills its process group: r->timed_out), reading its
// output meanwhile; its wait status.
int Wait(pid_t pid, std::chrono::steady_clock::time_point deadline, const Pipes* pipes, ProcessResult* r) {
  std::vector<pollfd> fds;
  if (pipes != nullptr) {
    for (int fd : {pipes->out[0], pipes->err[0]}) {
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      fds.push_back({fd, POLLIN, 0});
    }
  }
  int status = 0;
  for (;;) {
    // The child's own exit ends the wait, not the end of its output: a daemon it started
    // (pg_ctl start) may hold the pipes open for as long as it runs.
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      r->timed_out = true;
      return status;
    }
    if (fds.empty()) {
      ::usleep(5 * 1000);  // a hook's end is part of the downtime: seen within 5 ms
    } else {
      ::poll(fds.data(), fds.size(), 5);
      for (pollfd& p : fds) {
        if (p.fd >= 0 && !Drain(p.fd, p.fd == pipes->out[0] ? r->out : r->err)) p.fd = -1;
      }
    }
  }
}

}  // namespace

Result<ProcessResult> RunProcess(const std::vector<std::string>& argv, double timeout_s,
                                 bool capture, const std::function<void(pid_t)>& on_start, int output_fd) {
  if (argv.empty()) return Status::InvalidArgument("an empty command");
  Pipes pipes;
  if (capture && (::pipe2(pipes.out, O_CLOEXEC) != 0 || ::pipe2(pipes.err, O_CLOEXEC) != 0)) {
    Status s = Status::Errno(errno, "pipe for " + argv[0]);
    for (int fd : {pipes.out[0], pipes.out[1], pipes.err[0], pipes.err[1]}) {
      if (fd >= 0) ::close(fd);
    }
    return s;
  }
  const auto start = std::chrono::steady_clock::now();
  Result<pid_t> pid = Spawn(argv, capture ? &pipes : nullptr, output_fd);
  if (!pid.ok()) return pid.status();
  if (on_start) on_start(*pid);
  if (capture) {
    ::close(pipes.out[1]);
    ::close(pipes.err[1]);
  }
  ProcessResult r;
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(timeout_s));
  const int status = Wait(*pid, deadline, capture ? &pipes : nullptr, &r);
  if (capture) {
    Drain(pipes.out[0], r.out);
    Drain(pipes.err[0], r.err);
    ::close(pipes.out[0]);
    ::close(pipes.err[0]);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!r.timed_out) {
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  }
  return r;
}

bool WaitProcessGroup(pid_t pgid, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (::kill(-pgid, 0) == 0 || errno != ESRCH) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(-pgid, SIGKILL);
      return false;
    }
    ::usleep(50 * 1000);
  }
  return true;
}

}  // namespace ferry
