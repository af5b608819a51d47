#include "tests/process_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace ferry_test {
namespace {

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::vector<char*> Argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const std::string& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

const char* FerryBinary() { return FERRY_BINARY; }

std::string Printable(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c < 0x20 || c >= 0x7f || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::string CommandResult::Describe() const {
  std::ostringstream s;
  s << "exit " << exit_code << (timed_out ? " (timed out)" : "") << "\n--- stdout:\n"
    << out.substr(0, 4000) << "\n--- stderr:\n" << err.substr(0, 4000);
  return s.str();
}

CommandResult RunCommand(const std::vector<std::string>& argv, double timeout_s) {
  CommandResult result;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  pid_t pid = -1;
  std::vector<char*> args = Argv(argv);
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    result.err = "spawn " + argv[0] + ": " + std::strerror(rc);
    return result;
  }
  auto start = std::chrono::steady_clock::now();
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  char buffer[65536];
  while (open_count > 0) {
    double left_s = timeout_s - SecondsSince(start);
    if (left_s <= 0) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(left_s * 1000) + 1);
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t got = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (got > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        open_count -= 1;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = ExitCodeOf(status);
  return result;
}

CommandResult RunFerry(const std::vector<std::string>& args, double timeout_s) {
  std::vector<std::string> argv = {FerryBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, timeout_s);
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::kill(pid_, SIGCONT);
    Wait(10);
  }
}

bool ChildProcess::Spawn(const std::vector<std::string>& argv, const std::string& stdout_path,
                         const std::string& stderr_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args = Argv(argv);
  int rc = ::posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    std::fprintf(stderr, "spawn %s: %s\n", argv[0].c_str(), std::strerror(rc));
    pid_ = -1;
    return false;
  }
  return true;
}

void ChildProcess::Signal(int signal_number) {
  if (pid_ > 0) ::kill(pid_, signal_number);
}

int ChildProcess::Wait(double timeout_s) {
  if (pid_ <= 0) return exit_code_;
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      exit_code_ = ExitCodeOf(status);
      return exit_code_;
    }
    if (r < 0 && errno != EINTR) {
      pid_ = -1;
      return exit_code_;
    }
    if (SecondsSince(start) >= timeout_s) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

bool ChildProcess::WaitStopped(double timeout_s) {
  if (pid_ <= 0) return true;
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG | WUNTRACED);
    if (r == pid_ && WIFSTOPPED(status)) return true;
    if (r == pid_) {
      pid_ = -1;
      exit_code_ = ExitCodeOf(status);
      return true;
    }
    if (SecondsSince(start) >= timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::string DaemonProcess::Start(const Config& config, double timeout_s) {
  config_ = config;
  std::vector<std::string> argv = config.wrapper;
  for (const std::string& a : {std::string(FerryBinary()), std::string("daemon"), std::string("--listen"), config.listen,
                               std::string("--state-dir"), config.state_dir}) {
    argv.push_back(a);
  }
  argv.insert(argv.end(), config.security.begin(), config.security.end());
  argv.insert(argv.end(), config.extra.begin(), config.extra.end());
  for (const auto& [name, path] : config.volumes) {
    argv.push_back("--volume");
    argv.push_back(name + "=" + path);
  }
  if (!child_.Spawn(argv, "/dev/null", config.log_path)) return "could not spawn ferry daemon";
  const std::string host = config.listen.substr(0, config.listen.rfind(':'));
  const std::string needle = "ferry daemon listening on " + host + ":";
  std::string log;
  bool listening = PollUntil(
      [&] {
        log = Log();
        return log.find(needle) != std::string::npos || child_.Wait(0) != -1;
      },
      timeout_s);
  size_t at = log.find(needle);
  if (!listening || at == std::string::npos) {
    return std::string(listening ? "daemon exited" : "daemon did not listen in time") + "; log:\n" + log;
  }
  port_ = std::atoi(log.c_str() + at + needle.size());
  if (port_ <= 0) return "no port in the log:\n" + log;
  return "";
}

bool DaemonProcess::alive() { return child_.Wait(0) == -1 && child_.running(); }

std::string DaemonProcess::Url(const std::string& volume_and_path) const {
  const std::string host = config_.listen.substr(0, config_.listen.rfind(':'));
  return "ferry://" + host + ":" + std::to_string(port_) + "/" + volume_and_path;
}

std::string DaemonProcess::Log() const {
  std::ifstream in(config_.log_path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool DaemonProcess::WaitForLog(const std::string& needle, int count, double timeout_s) {
  return PollUntil(
      [&] {
        std::string log = Log();
        int found = 0;
        for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) found += 1;
        return found >= count;
      },
      timeout_s);
}

int DaemonProcess::Stop() {
  if (!child_.running()) return child_.Wait(0);
  child_.Signal(SIGTERM);
  int code = child_.Wait(10);
  if (code == -1) {
    child_.Signal(SIGKILL);
    code = child_.Wait(10);
  }
  return code;
}

int UnnamedFilesOpen(pid_t pid, const std::string& dir) {
  const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
  int count = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(fds, ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec)) {
    std::string target = std::filesystem::read_symlink(it->path(), ec).string();
    if (ec) {
      ec.clear();
      continue;  // closed since the listing
    }
    const std::string deleted = " (deleted)";
    if (target.rfind(dir + "/", 0) == 0 && target.find("/#") != std::string::npos &&
        target.size() > deleted.size() && target.ends_with(deleted)) {
      ++count;
    }
  }
  return count;
}

std::string ErrorsOnly(const std::string& err) {
  std::string out;
  size_t at = 0;
  while (at < err.size()) {
    size_t end = err.find('\n', at);
    end = end == std::string::npos ? err.size() : end + 1;
    std::string line = err.substr(at, end - at);
    if (line.find(": warning: --insecure:") == std::string::npos) out += line;
    at = end;
  }
  return out;
}

DaemonProcess::Config DaemonConfigIn(const std::string& dir,
                                     std::vector<std::pair<std::string, std::string>> volumes) {
  DaemonProcess::Config config;
  config.volumes = std::move(volumes);
  config.state_dir = dir + "/state";
  config.log_path = dir + "/daemon.log";
  return config;
}

namespace {

void ResetSocket(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(fd);
}

}  // namespace

ResetProxy::ResetProxy(int upstream, int resets, uint64_t after_bytes)
    : upstream_(upstream), resets_left_(resets), after_bytes_(after_bytes) {
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::listen(listener_, 64);
  socklen_t len = sizeof(a);
  ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  accept_ = std::thread([this] { Accept(); });
}

ResetProxy::~ResetProxy() {
  stop_ = true;
  ::shutdown(listener_, SHUT_RDWR);
  accept_.join();
  for (std::thread& t : connections_) t.join();
  ::close(listener_);
}

void ResetProxy::Accept() {
  while (!stop_) {
    int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    if (partitioned_) {
      resets_done_ += 1;
      ResetSocket(client);
      continue;
    }
    connections_.emplace_back([this, client] { Forward(client); });
  }
}

void ResetProxy::Forward(int client) {
  int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(upstream_));
  if (::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ResetSocket(client);
    ::close(up);
    return;
  }
  uint64_t from_client = 0;
  char buf[65536];
  pollfd fds[2] = {{client, POLLIN, 0}, {up, POLLIN, 0}};
  while (!stop_) {
    if (stalled_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    if (::poll(fds, 2, 100) <= 0) {
      if (!partitioned_) continue;
      resets_done_ += 1;
      ResetSocket(client);
      ResetSocket(up);
      return;
    }
    for (int i = 0; i < 2; ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        ::close(client);
        ::close(up);
        return;
      }
      if (i == 0) from_client += static_cast<uint64_t>(n);
      if (partitioned_ || (i == 0 && from_client > after_bytes_ && resets_left_.fetch_sub(1) > 0)) {
        resets_done_ += 1;
        ResetSocket(client);
        ResetSocket(up);
        return;
      }
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::write(fds[1 - i].fd, buf + done, static_cast<size_t>(n - done));
        if (w <= 0) {
          ::close(client);
          ::close(up);
          return;
        }
        done += w;
      }
    }
  }
  ::close(client);
  ::close(up);
}

}  // namespace ferry_test
