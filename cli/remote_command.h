// `ferry volumes`, `ferry stage` and `ferry stages`: the command line of the daemon's control
// API (client/control_api.h).
// Threading: each runs on the caller's thread.
#pragma once

#include <cstdint>
#include <string>

#include "agent/io/tls.h"
#include "client/push.h"

namespace ferry {

struct RemoteRequest {
  std::string daemon;  // ferry://HOST:PORT[/...]: the daemon to ask (the source, for a stage)
  io::TlsOptions tls;
  bool json = false;
};

// Lists the daemon's volumes (size, free space, busy or idle).
int RunVolumes(const RemoteRequest& request);
// Lists the daemon's running and last stages.
int RunStages(const RemoteRequest& request);

struct StageRequest {
  RemoteRequest remote;  // remote.daemon: ferry://SRC_HOST:PORT/VOLUME, the source
  std::string target;    // ferry://DST_HOST:PORT/VOLUME[/PATH]
  PushSettings push;
  bool detach = false;    // start it and return its id
  bool progress = false;  // a progress line while it runs
  uint64_t watch_id = 0;  // watch this stage instead of starting one
  uint64_t cancel_id = 0;  // cancel this stage
};
int RunStage(const StageRequest& request);

}  // namespace ferry
