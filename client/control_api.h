// The daemon's control API (FORMAT.md "Control"), the client's side: on the daemon's port, with
// the same TLS and authentication as data sessions, a client sends one CONTROL request (a JSON
// object) after HELLO/WELCOME and reads CONTROL_REPLY objects:
//   {"op":"volumes"}                          -> {"volumes":[{name, path, kind, size/free, state}]}
//   {"op":"stage", "stage":{StageSpec}, "watch":bool}
//                                             -> {"stage_id":N, ...}, then while watched one
//                                                progress object every 0.5 s and the final one
//   {"op":"watch", "stage_id":N}              -> the same stream for a running or ended stage
//   {"op":"cancel", "stage_id":N}             -> {"stage_id":N, "state":"cancelling"}
//   {"op":"stages"}                           -> {"stages":[...]} running, then the last ended
// A refused request gets an ERROR frame naming the field or the volume.
// Everything that talks to a daemon's control API (the coordinator, `ferry volumes`, `ferry
// stage`) uses this file; the daemon's side is daemon/control_server.h, which decodes the same
// StageSpec.
// Threading: a ControlClient on one thread; the rest are values and pure functions.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "agent/channel.h"
#include "agent/io/tls.h"
#include "agent/sync_types.h"
#include "base/result.h"
#include "client/net.h"
#include "client/push.h"

namespace ferry {

// What to stage: a volume of the source daemon pushed to a volume (or a path in one) on another.
struct StageSpec {
  std::string volume;  // the source: a volume of the daemon asked (pv:NAME too)
  std::string target;  // ferry://HOST:PORT/VOLUME[/PATH]
  PushSettings push;   // options; volume, subpath and source are filled in from the two above
  // Why the client wants this stage to walk the whole tree even where the daemon tracks the
  // volume's changes ("" : a tracked stage where it can be).
  std::string full_walk;

  nlohmann::json ToJson() const;
  // Checks every field (types, ranges, the target URL); errors name the field.
  static Result<StageSpec> FromJson(const nlohmann::json& json);
};

// A control message's payload as a JSON object (bounded by kControlMessageMaxBytes); `who`
// names the peer in the error.
Result<nlohmann::json> ParseControlObject(const std::string& payload, const std::string& who);

// Copies the "progress" object of a stage status (control API `watch`) into `out`.
void ReadProgress(const nlohmann::json& status, SyncProgress& out);

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
