#include "daemon/server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "agent/channel.h"
#include "base/bounds.h"
#include "base/log.h"
#include "base/memory.h"

namespace ferry {

Daemon::~Daemon() = default;

static Status LockStateDir(const std::string& dir, UniqueFd* lock_fd) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::Errno(errno, "create state dir '" + dir + "'");
  }
  std::string path = dir + "/daemon.lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::Errno(errno, "open '" + path + "'");
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {0};
    ssize_t n = ::pread(fd.get(), pid, sizeof(pid) - 1, 0);
    (void)n;
    return Status::Busy("state dir '" + dir + "' is in use by another ferry daemon (pid " +
                        std::string(pid) + "): give each daemon its own --state-dir");
  }
  std::string me = std::to_string(::getpid());
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), me.data(), me.size(), 0) < 0) {
    return Status::Errno(errno, "write '" + path + "'");
  }
  *lock_fd = std::move(fd);
  return Status::Ok();
}

Status Daemon::Start() {
  struct stat kubelet;
  const bool on_node = !config_.volumes.kubelet_root.empty() &&
                       ::stat((config_.volumes.kubelet_root + "/pods").c_str(), &kubelet) == 0;
  if (config_.volumes.paths.empty() && !on_node) {
    return Status::InvalidArgument("no --volume NAME=PATH given, and no kubelet pods directory under --kubelet-root '" +
                                   config_.volumes.kubelet_root + "' for pv:NAME volumes");
  }
  for (const auto& [name, path] : config_.volumes.paths) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return Status::Errno(errno, "volume '" + name + "' path '" + path + "'");
    // A directory (a tree), or a block volume: a block device or an image file (--block).
    if (!S_ISDIR(st.st_mode) && !S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode)) {
      return Status::InvalidArgument("volume '" + name + "' path '" + path +
                                     "' is not a directory, a block device or an image file");
    }
  }
  Result<std::shared_ptr<io::TlsContext>> tls = io::TlsContext::MakeUnlessInsecure(config_.tls, io::TlsContext::Role::kServer);
  if (!tls.ok()) return tls.status();
  tls_ = *tls;
  FERRY_RETURN_IF_ERROR(LockStateDir(config_.state_dir, &lock_fd_));
  Result<int> fd = Listen(config_.listen, &bound_);
  if (!fd.ok()) return fd.status();
  listen_fd_ = UniqueFd(*fd);
  metrics_ = std::make_unique<Metrics>(io::EngineKindName(config_.io_engine));
  if (config_.metrics_listen) {
    FERRY_RETURN_IF_ERROR(metrics_->Listen(*config_.metrics_listen, &metrics_bound_));
    LOG_INFO("metrics on http://" + metrics_bound_.ToString() + "/metrics");
  }
  stages_ = std::make_unique<StageRunner>(config_.volumes, locks_, config_.tls, config_.state_dir, metrics_.get(),
                                          config_.tracking);
  FERRY_RETURN_IF_ERROR(stages_->Open());
  std::string names;
  for (const auto& [name, path] : config_.volumes.paths) names += " " + name + "=" + path;
  if (on_node) names += " pv:NAME under " + config_.volumes.kubelet_root;
  LOG_INFO("ferry daemon listening on " + bound_.ToString() + ", volumes:" + names + "; I/O engine " +
           io::EngineKindName(config_.io_engine) + "; " + (tls_ ? tls_->mode() : "plaintext"));
  if (!tls_) {
    LOG_WARN("--insecure: connections are plaintext; anyone on the network path can read the volumes' data "
             "and write into them");
  }
  return Status::Ok();
}

void Daemon::Serve(const std::atomic<bool>& stop) {
  sd_notify(0, ("READY=1\nSTATUS=listening on " + bound_.ToString()).c_str());  // Type=notify; no-op elsewhere
  while (!stop.load()) {
    pollfd p{listen_fd_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, 200);
    if (n > 0) Accept();
    CutSlowHandshakes();
  }
  LOG_INFO("stopping: no new sessions; ending the running ones");
  sd_notify(0, "STOPPING=1");
  listen_fd_.Reset();
  stages_->Stop();  // journalled as interrupted: the next start resumes them
  std::unique_lock<std::mutex> lock(mutex_);
  stopping_ = true;
  for (auto& [id, connection] : sessions_) connection.stream->Shutdown();
  sessions_changed_.wait(lock, [&] { return running_ == 0; });
  LOG_INFO("stopped");
}

void Daemon::CutSlowHandshakes() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [id, connection] : sessions_) {
    if (!connection.handshaken->load() && now > connection.handshake_deadline) {
      LOG_WARN("cut " + connection.stream->peer_name() + ": no complete request within " +
               std::to_string(kHandshakeTimeoutMs / 1000) + " s of connecting");
      connection.stream->Shutdown();
      connection.handshake_deadline = std::chrono::steady_clock::time_point::max();  // once
    }
  }
}

void Daemon::Accept() {
  int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno != EAGAIN && errno != EINTR) LOG_WARN(Status::Errno(errno, "accept").ToString());
    return;
  }
  TuneSessionSocket(fd);
  uint64_t session_id = next_session_id_++;
  {
    // Counted before the thread starts, so that Serve() waits for it even if it stops now.
    std::lock_guard<std::mutex> lock(mutex_);
    // Connections still in their handshake count too: a flood of them gets closed here, before
    // a thread or any TLS work is spent on it.
    if (running_ >= kConnectionsMax) {
      ::close(fd);
      LOG_WARN("refused a connection: " + std::to_string(running_) + " connections open (at most " +
               std::to_string(kConnectionsMax) + ")");
      return;
    }
    running_ += 1;
  }
  std::thread([this, fd, session_id] { RunConnection(fd, session_id); }).detach();
}

void Daemon::RunConnection(int fd, uint64_t session_id) {
  std::unique_ptr<io::ByteStream> owned;
  const std::string peer = PeerName(fd);
  if (tls_) {
    // Nothing of the peer's is parsed before its handshake succeeded.
    Result<std::unique_ptr<io::ByteStream>> secured = tls_->Handshake(fd, peer, "", kHandshakeTimeoutMs);
    if (!secured.ok()) {
      LOG_WARN("refused " + peer + ": " + secured.status().message());
      std::lock_guard<std::mutex> lock(mutex_);
      running_ -= 1;
      sessions_changed_.notify_all();
      return;
    }
    owned = std::move(*secured);
  } else {
    owned = std::make_unique<io::FdStream>(fd, peer);
  }
  io::ByteStream& stream = *owned;
  Channel channel(stream);
  std::atomic<bool> handshaken{false};
  Status s;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {
      s = Status::Aborted("daemon is stopping");
    } else if (sessions_.size() >= kSessionsMax) {
      s = Status::Busy("daemon has " + std::to_string(kSessionsMax) + " sessions running: retry later");
    } else {
      sessions_.emplace(session_id, Connection{&stream, std::chrono::steady_clock::now() +
                                                              std::chrono::milliseconds(kHandshakeTimeoutMs),
                                               &handshaken});
    }
  }
  if (!s.ok()) {
    channel.SendError(s);
    LOG_WARN("refused " + stream.peer_name() + ": " + s.ToString());
  } else if (s = ServeSession(channel, config_.volumes, locks_, hub_, session_id, &handshaken,
                              DaemonServices{metrics_.get(), stages_.get()});
             s.ok()) {
    // committed; ServeSession logged it
  } else if (s.code() == Code::kNetwork) {
    LOG_INFO("session " + std::to_string(session_id) + " with " + stream.peer_name() + " ended: " + s.ToString());
  } else if (!s.ok()) {
    LOG_WARN("session " + std::to_string(session_id) + " with " + stream.peer_name() + ": " + s.ToString());
  }
  bool idle = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    sessions_.erase(session_id);
    running_ -= 1;
    idle = running_ == 0;
    sessions_changed_.notify_all();
  }
  if (idle) ReleaseFreeMemory();  // what the stage's receiver freed (base/memory.h)
}

}  // namespace ferry
