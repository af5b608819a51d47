// The opening of a session: HELLO -> WELCOME (version and capabilities), OPEN -> OPEN_OK
// (volume, stage, direction, options). After it, one side runs a Sender and the other a
// Receiver over the same channel.
// Threading: each function runs on the thread that owns the channel.
#pragma once

#include <cstdint>
#include <string>

#include "agent/channel.h"
#include "base/result.h"
#include "protocol/messages.h"

namespace ferry {

inline constexpr int kZstdLevelDefault = 1;  // fast enough not to slow a 1-10 Gbit/s link

// Client side: says HELLO, checks WELCOME, sends OPEN and waits for OPEN_OK (or the daemon's
// ERROR: unknown volume, volume busy, ...). `compress` says which frames may go with zstd.
enum class WireCompression {
  kNone,      // nothing (zstd not offered)
  kMetadata,  // manifests, hashes and reports, not file content (a link faster than zstd)
  kAll,
};
Result<protocol::OpenOk> OpenSession(Channel& channel, const protocol::Open& open, WireCompression compress);
// The first half of OpenSession: HELLO, then WELCOME checked; compression set on the channel.
// `ferry bench` follows it with BENCH_OPEN instead of OPEN.
Result<protocol::Welcome> SayHello(Channel& channel, WireCompression compress);

// Client side, on an extra connection of a session that was granted data streams: HELLO,
// WELCOME, then JOIN, and waits for JOINED (or the daemon's ERROR).
Status JoinSession(Channel& channel, const protocol::Join& join, WireCompression compress);

// Daemon side: reads HELLO (within the handshake timeout), answers WELCOME, reads OPEN.
// The caller checks the OPEN and answers OPEN_OK or ERROR.
Result<protocol::Open> AcceptSession(Channel& channel);
// AcceptSession in two halves, for a daemon that also takes BENCH_OPEN or JOIN in place of OPEN:
// AcceptHello reads HELLO and answers WELCOME; AcceptOpen decodes the next frame as OPEN.
Status AcceptHello(Channel& channel);
Result<protocol::Open> AcceptOpen(Channel& channel, const Frame& frame);

// Reads one frame of the expected type, turning an ERROR frame into its status.
Status ReceiveExpected(Channel& channel, protocol::MessageType type, int timeout_ms, Frame* frame);

}  // namespace ferry
