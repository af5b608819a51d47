// The daemon's control API (FORMAT.md "Control"): on the daemon's port, with the same TLS and
// authentication as data sessions, a client sends one CONTROL request (a JSON object) after
// HELLO/WELCOME and reads CONTROL_REPLY objects:
//   {"op":"volumes"}                          -> {"volumes":[{name, path, kind, size/free, state}]}
//   {"op":"stage", "stage":{StageSpec}, "watch":bool}
//                                             -> {"stage_id":N, ...}, then while watched one
//                                                progress object every 0.5 s and the final one
//   {"op":"watch", "stage_id":N}              -> the same stream for a running or ended stage
//   {"op":"cancel", "stage_id":N}             -> {"stage_id":N, "state":"cancelling"}
//   {"op":"stages"}                           -> {"stages":[...]} running, then the last ended
// A refused request gets an ERROR frame naming the field or the volume.
// The client side (ControlClient) is what `ferry volumes` and `ferry stage` use.
// Threading: ServeControl runs on the connection's thread; a ControlClient on one thread.
#pragma once

#include <functional>
#include <memory>

#include <nlohmann/json_fwd.hpp>

#include "agent/channel.h"
#include "agent/io/tls.h"
#include "base/result.h"
#include "daemon/net.h"
#include "daemon/session_server.h"
#include "daemon/stage_runner.h"

namespace ferry {

// Copies the "progress" object of a stage status (control API `watch`) into `out`.
void ReadProgress(const nlohmann::json& status, SyncProgress& out);

Status ServeControl(Channel& channel, const Frame& first, const VolumeTable& volumes, VolumeLocks& locks,
                    StageRunner* stages);

class ControlClient {
 public:
  // Connects to `daemon` with `tls` (null: plaintext) and says HELLO.
  static Result<std::unique_ptr<ControlClient>> Connect(const HostPort& daemon, const io::TlsContext* tls);
  // Sends one request and returns the first reply.
  Result<nlohmann::json> Call(const nlohmann::json& request);
  // The next reply of a watched stage (after Call of "stage" with watch, or "watch").
  Result<nlohmann::json> Next();

 private:
  ControlClient(std::unique_ptr<io::ByteStream> stream);
  std::unique_ptr<io::ByteStream> stream_;
  std::unique_ptr<Channel> channel_;
};

}  // namespace ferry
