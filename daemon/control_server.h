// The daemon's side of its control API (client/control_api.h has the requests and replies):
// ServeControl answers the CONTROL request a connection opened with — the volumes, and the
// stages this daemon pushes (StageRunner): start, watch, cancel, list.
// Threading: ServeControl runs on the connection's thread.
#pragma once

#include "agent/channel.h"
#include "base/status.h"
#include "daemon/session_server.h"
#include "daemon/stage_runner.h"

namespace ferry {

Status ServeControl(Channel& channel, const Frame& first, const VolumeTable& volumes, VolumeLocks& locks,
                    StageRunner* stages);

}  // namespace ferry
