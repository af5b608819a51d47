// Processes for the integration tests: running a command and capturing its output, a child
// that runs in the background (a long `ferry sync` to stop, kill or wait for), a real
// `ferry daemon` on a loopback port, and the parse of `ferry sync --json`.
// Threading: a ChildProcess or DaemonProcess belongs to one thread; RunCommand is thread-safe.
#pragma once

#include <sys/types.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace ferry_test {

// The ferry binary under test (FERRY_BINARY, set by CMake).
const char* FerryBinary();

struct CommandResult {
  int exit_code = -1;  // 128 + signal when killed by one
  bool timed_out = false;
  std::string out;
  std::string err;
  // "exit 3, stderr: ..." for assertion messages.
  std::string Describe() const;
};

// Runs argv[0] (looked up in PATH) with stdin from /dev/null and captures stdout and stderr.
// A command still running after `timeout_s` is killed (SIGKILL) and reported timed_out.
CommandResult RunCommand(const std::vector<std::string>& argv, double timeout_s = 60);
// RunCommand({FerryBinary(), args...}).
CommandResult RunFerry(const std::vector<std::string>& args, double timeout_s = 60);

// A process in the background with stdout and stderr going to files.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();  // kills (SIGKILL) and reaps a child still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool Spawn(const std::vector<std::string>& argv, const std::string& stdout_path,
             const std::string& stderr_path);
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  void Signal(int signal_number);
  // Waits up to `timeout_s` for the exit; returns the exit code (128 + signal), or -1 when it
  // is still running then.
  int Wait(double timeout_s);
  // True once the child stopped (SIGSTOP) or exited: waits up to `timeout_s`.
  bool WaitStopped(double timeout_s);

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// A `ferry daemon` on 127.0.0.1 (plaintext, --insecure, unless `security` says otherwise) with
// its stderr in `log_path`.
class DaemonProcess {
 public:
  struct Config {
    std::vector<std::pair<std::string, std::string>> volumes;  // name, path
    std::string state_dir;
    std::string log_path;
    std::string listen = "127.0.0.1:0";
    std::vector<std::string> security = {"--insecure"};  // or --psk-file F, or the --tls-* flags
    std::vector<std::string> wrapper;  // a command the daemon runs under (setpriv ... --)
    std::vector<std::string> extra;    // more flags (--metrics-listen, --kubelet-root, --log-format)
  };
  DaemonProcess() = default;
  ~DaemonProcess() { Stop(); }

  // Starts the daemon and waits (deadline, polling its log) for "ferry daemon listening on".
  // Returns "" when it listens, else what went wrong with the log's text.
  std::string Start(const Config& config, double timeout_s = 10);
  int port() const { return port_; }
  pid_t pid() const { return child_.pid(); }
  bool alive();
  // "ferry://127.0.0.1:PORT/PATH"
  std::string Url(const std::string& volume_and_path) const;
  std::string Log() const;
  // Polls the log until `needle` occurs at least `count` times; false at the deadline.
  bool WaitForLog(const std::string& needle, int count, double timeout_s);
  // SIGTERM and wait; returns the exit code (SIGKILL after 10 s: then 128 + 9).
  int Stop();

 private:
  ChildProcess child_;
  Config config_;
  int port_ = 0;
};

// stderr without the --insecure warning line (the tests run plaintext; the warning is not the
// error a test looks at).
std::string ErrorsOnly(const std::string& err);

// How many unnamed files (O_TMPFILE: "DIR/#INODE (deleted)" in /proc/PID/fd) process `pid`
// holds open in directories at or under `dir`: a receiver's new files before they are linked.
int UnnamedFilesOpen(pid_t pid, const std::string& dir);

// Sleeps in small steps until `predicate()` is true or `timeout_s` passes.
// A daemon config serving `volumes` (name, path), its state dir and log inside `dir`.
DaemonProcess::Config DaemonConfigIn(const std::string& dir,
                                     std::vector<std::pair<std::string, std::string>> volumes);

template <typename Predicate>
bool PollUntil(Predicate predicate, double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (!predicate()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// One change reported by `ferry sync --json` (dry run or -i).
struct Change {
  std::string action;  // new, update, attrs, delete
  std::string type;    // file, dir, symlink, fifo, chardev, ...
  std::string path;    // decoded: \u00XX escapes back to the byte 0xXX
};

// `ferry sync --json` output: exactly one JSON object on stdout.
struct SyncReport {
  bool parsed = false;
  std::string parse_error;
  uint64_t files_total = 0, files_sent = 0, bytes_total = 0, bytes_sent_wire = 0;
  uint64_t bytes_returned_wire = 0, bytes_sent_content = 0, target_bytes_hashed = 0;
  uint64_t entries_deleted = 0, files_changed_during_read = 0, files_vanished = 0, files_failed = 0;
  double duration_s = -1;
  bool dry_run = false;
  std::string io_engine;  // "io_uring" or "posix"
  std::vector<Change> changes;
  // True when a change with this path (and action, unless empty) was reported.
  bool Has(const std::string& path, const std::string& action = "") const;
  std::string ChangesText() const;  // one "action type path" per line, for messages
};
SyncReport ParseSyncJson(const std::string& stdout_text);

// A TCP proxy on loopback in front of a daemon (127.0.0.1:port() to 127.0.0.1:upstream), for
// network faults: the first `resets` connections that carry more than `after_bytes` from the
// client are reset there (SO_LINGER 0: an RST, mid-frame); while Partition(true), every
// connection is reset at its next byte and new ones at once; while Stall(true), nothing moves
// (the connections stay open: only timeouts can tell).
class ResetProxy {
 public:
  ResetProxy(int upstream, int resets, uint64_t after_bytes);
  ~ResetProxy();
  ResetProxy(const ResetProxy&) = delete;
  ResetProxy& operator=(const ResetProxy&) = delete;
  int port() const { return port_; }
  int resets_done() const { return resets_done_.load(); }
  void Partition(bool on) { partitioned_ = on; }
  void Stall(bool on) { stalled_ = on; }

 private:
  void Accept();
  void Forward(int client);

  int upstream_;
  std::atomic<int> resets_left_;
  std::atomic<int> resets_done_{0};
  std::atomic<bool> partitioned_{false};
  std::atomic<bool> stalled_{false};
  uint64_t after_bytes_;
  int listener_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread accept_;
  std::vector<std::thread> connections_;  // the accept thread's, joined after it ends
};

// Escapes control and non-ASCII bytes (\xNN) so odd names print on one line.
std::string Printable(const std::string& text);

}  // namespace ferry_test
