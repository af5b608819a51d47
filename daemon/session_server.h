// The daemon side of one session: handshake, volume lookup and lock, then a Receiver (the
// client pushes) or a Sender (the client pulls) on the volume. Used by `ferry daemon` for
// each connection and by a local sync for its in-process receiver.
// Threading: ServeSession runs on the session's thread; VolumeLocks is thread-safe.
#pragma once

#include <atomic>

#include "daemon/stream_hub.h"
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/channel.h"
#include "agent/state_cache.h"
#include "base/status.h"
#include "daemon/volumes.h"

namespace ferry {

// The state cache in `dir`, or null (with a warning) when `dir` is "" or the cache cannot be
// opened: without it a stage still works, it reads the target's changed files to hash them.
std::unique_ptr<StateCache> OpenStateCacheOrWarn(const std::string& dir);

// One session per volume at a time.
class VolumeLocks {
 public:
  // Takes the volume, waiting up to `wait_ms` for a session that is just ending (its peer may
  // already have the final message and start the next stage at once). False when the volume
  // stays busy; *holder then names the session that has it.
  bool Lock(const std::string& volume, uint64_t session_id, int wait_ms, uint64_t* holder);
  void Unlock(const std::string& volume);
  // Whether a session holds `volume` now (*holder: which).
  bool Holder(const std::string& volume, uint64_t* holder);

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  std::map<std::string, uint64_t> held_;
};

// Serves one connection until the stage commits or fails. The client is told every failure. A
// connection that JOINs another session's data streams is handed to `hub` until that ends; one
// that sends CONTROL is served by the control API (daemon/control_server.h).
// `handshaken` (may be null) turns true once HELLO and the first request (OPEN, JOIN,
// BENCH_OPEN) arrived: until then the caller holds the connection to an absolute deadline.
class Metrics;
class StageRunner;
// What a real daemon adds to a session (an in-process receiver has none of them): counters, and
// the stages its control API runs.
struct DaemonServices {
  Metrics* metrics = nullptr;
  StageRunner* stages = nullptr;
};
Status ServeSession(Channel& channel, const VolumeTable& volumes, VolumeLocks& locks, StreamHub& hub,
                    uint64_t session_id, std::atomic<bool>* handshaken = nullptr, const DaemonServices& services = {});

}  // namespace ferry
