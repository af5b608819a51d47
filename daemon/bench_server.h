// The daemon side of `ferry bench` (protocol/FORMAT.md, "Bench"): after HELLO/WELCOME a client
// sent BENCH_OPEN instead of OPEN, and this serves that one measurement: receive or send filler
// for the network, write a temp file into the volume (fdatasync included), or receive a real
// stage into a scratch directory in the volume. Names in the volume carry the receiver's temp
// prefix and are removed before the session ends, also on failure.
// Threading: ServeBench runs on the session's thread (a Keepalive thread beside it while it
// writes).
#pragma once

#include <cstdint>

#include "agent/channel.h"
#include "base/status.h"
#include "daemon/session_server.h"

namespace ferry {

// Serves a bench session whose first frame after WELCOME, `open_frame`, is BENCH_OPEN. The
// client is told every failure (unknown volume, busy, read-only, no space) in one ERROR that
// names the volume and says what to do.
Status ServeBench(Channel& channel, const Frame& open_frame, const VolumeTable& volumes,
                  VolumeLocks& locks, uint64_t session_id);

// ".ferry-tmp.bench-<session_id>": the name of a bench's temp file or scratch directory.
std::string BenchTempName(uint64_t session_id);

}  // namespace ferry
