// `ferry sync SRC DST`: a one-shot stage between two locations, each a local directory or a
// volume on a daemon. Local to local runs the daemon's session code in-process over a
// socketpair, so every sync speaks the same protocol.
// Threading: RunSync runs on the caller's thread plus the session threads it starts.
#pragma once

#include <string>

#include "agent/io/engine.h"
#include "agent/io/tls.h"
#include "agent/sync_types.h"
#include "base/exit_code.h"
#include "client/push.h"

namespace ferry {

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

int RunSync(const SyncRequest& request);

}  // namespace ferry
