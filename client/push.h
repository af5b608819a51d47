// Pushing a local source to a receiver: OPEN, the extra data streams, then a Sender. One path
// for `ferry sync` (to a daemon, or to its in-process receiver) and for the daemon's control
// API (a stage of one of its volumes pushed to another daemon).
// Threading: RunPush runs on the caller's thread plus the sender's; Lanes belongs to its caller.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/channel.h"
#include "agent/io/stream.h"
#include "agent/scan.h"
#include "agent/session.h"
#include "agent/sync_types.h"
#include "base/result.h"

namespace ferry {

// zstd on the wire: auto compresses except to a daemon on this host (there it only costs CPU).
enum class CompressMode {
  kAuto,   // file content to a daemon on another host: zstd at a level that keeps up with the link
  kLevel,  // file content at compress_level
  kNone,   // no zstd at all
};

struct PushSettings {
  std::string source;               // the local directory (or block volume) to send
  std::string volume, subpath;      // what OPEN asks of the receiving daemon
  SyncOptions options;
  uint64_t bwlimit = 0;             // bytes per second; 0: no limit
  uint32_t streams = 1;             // data streams asked for, 1..kStreamsMax
  CompressMode compress = CompressMode::kAuto;
  int compress_level = 0;           // kLevel: 1..kZstdLevelMax
  uint64_t partial_base = 0;        // options.partial: the COMMIT base_token the stage follows
};

// Manifests and hashes compress several-fold for little CPU and always go compressed; file
// content does only where the link is slower than zstd (not to a daemon on this host).
WireCompression CompressionFor(CompressMode mode, bool loopback);

// The default of --streams: one data stream per core besides the session's own connection (which
// carries the manifest and the deltas), at least 3 (two data streams: one prefers the large files,
// which keep the disk busy, one the small ones, which keep the CPU busy) and at most 8.
uint32_t DefaultStreams();

protocol::Open MakeOpen(const PushSettings& settings, protocol::Direction direction);

// The extra data streams of a session (OPEN_OK granted them): their connections, channels and,
// for a local sync, the in-process daemon side serving each.
class Lanes {
 public:
  Lanes() = default;
  Lanes(const Lanes&) = delete;
  Lanes& operator=(const Lanes&) = delete;
  ~Lanes();
  using Connect = std::function<Result<std::unique_ptr<io::ByteStream>>(Lanes*)>;
  // Opens streams 1 .. ok.streams - 1: each connects (`connect`), says HELLO and JOIN.
  Status Join(const protocol::OpenOk& ok, WireCompression compress, int content_level, const Connect& connect);
  void AddServer(std::unique_ptr<io::ByteStream> server_end, std::thread thread);
  std::vector<Channel*> channels() const;
  // Cuts every stream (a cancelled stage): whoever waits on one gets an error.
  void Shutdown();

 private:
  std::vector<std::unique_ptr<io::ByteStream>> streams_;
  std::vector<std::unique_ptr<Channel>> channels_;
  std::vector<std::unique_ptr<io::ByteStream>> server_ends_;
  std::vector<std::thread> servers_;
};

// Opens the session on `stream` (connected to the receiving side; `loopback`: on this host),
// joins the data streams through `connect`, and runs the sender. The caller reports the result.
Result<SyncSummary> RunPush(io::ByteStream& stream, bool loopback, const PushSettings& settings,
                            const ScanOptions& scan_options, const Lanes::Connect& connect, SyncProgress* progress,
                            ItemSink sink);

}  // namespace ferry
