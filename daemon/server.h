// `ferry daemon`: listens, accepts connections and serves each on its own thread
// (daemon/session_server.h), up to kSessionsMax at once, and runs the stages its control API
// starts (daemon/stage_runner.h). Holds a lock on its state directory so two daemons never share
// one. Stops when `stop` turns true (SIGTERM/SIGINT): no new connections, its own stages are cut
// and journalled as interrupted (resumed at the next start), running sessions are shut down (a
// receiver keeps every file it committed and the durable part of a large one), and Serve()
// returns when they have ended. Tells systemd when it is ready and when it stops (sd_notify).
// Threading: Serve() on one thread; Stop() from any thread or a signal handler's flag.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "agent/fs.h"
#include "agent/io/engine.h"
#include "agent/io/stream.h"
#include "agent/io/tls.h"
#include "client/net.h"
#include "daemon/metrics.h"
#include "daemon/session_server.h"
#include "daemon/stage_runner.h"
#include "daemon/tracking.h"

namespace ferry {

struct DaemonConfig {
  HostPort listen;
  std::optional<HostPort> metrics_listen;  // Prometheus metrics over HTTP (daemon/metrics.h)
  VolumeTable volumes;
  std::string state_dir;
  io::TlsOptions tls;  // TLS for every connection, or tls.insecure: plaintext
  io::EngineKind io_engine = io::EngineKind::kPosix;  // chosen at start-up (--io), for the log
  TrackingOptions tracking;  // change tracking of the volumes it stages from (--no-track)
};

class Daemon {
 public:
  explicit Daemon(DaemonConfig config) : config_(std::move(config)) {}
  ~Daemon();

  // Checks the volumes, locks the state dir, binds, resumes the stages a stop interrupted.
  // Errors name the volume, dir or address.
  Status Start();
  const HostPort& bound() const { return bound_; }
  const HostPort& metrics_bound() const { return metrics_bound_; }
  // Accepts until `stop` becomes true, then waits for the sessions to end.
  void Serve(const std::atomic<bool>& stop);

 private:
  void Accept();
  void RunConnection(int fd, uint64_t session_id);

  DaemonConfig config_;
  HostPort bound_, metrics_bound_;
  UniqueFd listen_fd_;
  UniqueFd lock_fd_;
  VolumeLocks locks_;
  StreamHub hub_;
  std::shared_ptr<io::TlsContext> tls_;  // null with --insecure
  // After locks_ and hub_: the stages' threads use them until the runner has stopped.
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<StageRunner> stages_;
  std::atomic<uint64_t> next_session_id_{1};

  std::mutex mutex_;
  std::condition_variable sessions_changed_;
  size_t running_ = 0;    // session threads started and not yet finished
  bool stopping_ = false;
  struct Connection {
    io::ByteStream* stream;  // for shutdown
    std::chrono::steady_clock::time_point handshake_deadline;
    const std::atomic<bool>* handshaken;  // HELLO and the first request arrived
  };
  std::map<uint64_t, Connection> sessions_;
  // Shuts down connections still in their handshake past its deadline: a peer that dribbles
  // bytes never trips the per-read timeout, so the deadline is absolute. Called from Serve().
  void CutSlowHandshakes();
};

}  // namespace ferry
