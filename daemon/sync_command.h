// `ferry sync SRC DST`: a one-shot stage between two locations, each a local directory or a
// volume on a daemon. Local to local runs the daemon's session code in-process over a
// socketpair, so every sync speaks the same protocol.
// Threading: RunSync runs on the caller's thread plus the session threads it starts.
#pragma once

#include <string>

#include "agent/io/engine.h"
#include "agent/io/tls.h"
#include "agent/sync_types.h"
#include "daemon/push.h"

namespace ferry {

// Exit codes of `ferry sync` (documented in the README).
enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 1,      // bad flags or locations
  kExitSource = 2,     // source missing or unreadable
  kExitTarget = 3,     // target failed: unknown volume, I/O error, no space, permission
  kExitNetwork = 4,    // daemon unreachable, connection lost, timeout
  kExitProtocol = 5,   // the peer is not a compatible ferry, or sent damaged data
  kExitBusy = 6,       // volume busy or daemon full: retry later
  kExitDaemon = 7,     // `ferry daemon` could not start (port in use, bad volume, state dir)
  kExitStage = 8,      // `ferry stage`: the stage the daemon ran failed or was cancelled
  kExitPartial = 23,   // finished, but some source files could not be read (named on stderr)
};

struct SyncRequest {
  std::string source;
  std::string target;
  SyncOptions options;
  bool progress = false;
  bool json = false;
  io::TlsOptions tls;  // for a daemon on either side
  CompressMode compress = CompressMode::kAuto;
  int compress_level = 0;  // kLevel: 1..kZstdLevelMax
  std::string state_dir;  // a local receiver's state cache ("": none)
  uint64_t bwlimit = 0;   // bytes per second the sender may send; 0: no limit
  uint32_t streams = 1;   // data streams (connections) per session, 1..kStreamsMax
  io::EngineKind io_engine = io::EngineKind::kPosix;  // chosen at start-up (--io), for --json
};

// The default of --streams: one data stream per core besides the session's own connection (which
// carries the manifest and the deltas), at least 3 (two data streams: one prefers the large files,
// which keep the disk busy, one the small ones, which keep the CPU busy) and at most 8.
uint32_t DefaultStreams();

int RunSync(const SyncRequest& request);

}  // namespace ferry
