// Channel: protocol frames over a ByteStream. Send encodes (and compresses) a message and writes
// it; Receive reads one frame, checks its header against the bounds, verifies its checksum and
// decodes its payload. Buffers are allocated once per channel, not per frame.
// Threading: Send is safe from several threads (a keepalive thread sends beside the session's
// own); one thread at a time Receives.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "agent/io/stream.h"
#include "base/rate.h"
#include "base/status.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace ferry {

struct Frame {
  protocol::MessageType type{};
  std::string payload;  // decoded
};

class Channel {
 public:
  // REQUIRES: `stream` outlives the channel.
  explicit Channel(io::ByteStream& stream);

  // Sets the zstd level for frames sent from now on (nullopt: never compress).
  void SetCompression(std::optional<int> level);
  // Whether file content (DATA, DELTA) may be compressed; other frames are whenever the level
  // allows. Content is left raw where the link outruns zstd (a daemon on this host).
  void SetCompressContent(bool compress) { compress_content_.store(compress, std::memory_order_relaxed); }
  // The zstd level of file content: 1..kZstdLevelMax fixed (--compress LEVEL), or 0 (--compress
  // auto): adaptive — the level rises while the link is slower than zstd (sends block on a full
  // socket) and falls, down to raw, while zstd is slower than the link; a raw channel tries one
  // compressed frame now and then to see whether that changed.
  void SetContentLevel(int level);
  // The level the next content frame goes with (0: raw). For tests and reports.
  int content_level() const;
  // Test seam: the clock (nanoseconds) that times compression and writes.
  void SetClockForTest(std::function<int64_t()> clock_ns) { clock_ns_ = std::move(clock_ns); }
  // Limits what this side sends to `bytes_per_second` (0: no limit), frames included: a send
  // waits for its tokens (`--bwlimit`, for shared cluster links).
  void SetRateLimit(uint64_t bytes_per_second);

  // `try_compress` false skips compression of this frame; *compressed (if given) tells whether
  // it went compressed.
  Status Send(protocol::MessageType type, std::string_view payload, bool try_compress = true,
              bool* compressed = nullptr);
  template <typename Message>
  Status SendMessage(protocol::MessageType type, const Message& message) {
    // Per thread: a sender's workers send FILE_END on the session channel beside its own thread.
    thread_local std::string scratch;
    scratch.clear();
    message.Encode(&scratch);
    return Send(type, scratch);
  }
  // Best-effort: tells the peer why the session ends. Never fails the caller.
  void SendError(const Status& status);

  // Reads the next frame. A frame of an unknown type is a kProtocol error.
  Status Receive(Frame* frame, int timeout_ms);
  // For the side that reads this channel, after `local` ended its session: a network failure
  // (a write that broke because the peer failed and closed) gives way to the peer's ERROR if
  // one arrives within `grace_ms`, since it names the cause. Any other status is returned as is.
  Status PreferPeerError(const Status& local, int grace_ms);

  // The capabilities both ends agreed in the handshake (protocol::kCap*).
  void SetCapabilities(uint64_t capabilities) { capabilities_.store(capabilities, std::memory_order_relaxed); }
  uint64_t capabilities() const { return capabilities_.load(std::memory_order_relaxed); }

  void Shutdown() { stream_.Shutdown(); }
  const std::string& peer_name() const { return stream_.peer_name(); }
  bool encrypted() const { return stream_.encrypted(); }
  uint64_t bytes_sent() const { return bytes_sent_.load(std::memory_order_relaxed); }
  // Milliseconds since the last frame went out (or since the channel was made).
  int64_t idle_send_ms() const;
  uint64_t bytes_received() const { return bytes_received_.load(std::memory_order_relaxed); }

 private:
  io::ByteStream& stream_;
  // Send side.
  std::mutex send_mutex_;
  protocol::FrameEncoder encoder_{std::nullopt};
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<int64_t> last_send_ms_;
  std::atomic<bool> compress_content_{true};
  std::atomic<uint64_t> capabilities_{0};
  std::unique_ptr<TokenBucket> rate_limit_;  // guarded by send_mutex_
  // Adaptive content compression, guarded by send_mutex_: the current level (0 raw) and the
  // window of content frames it is judged on.
  bool content_adaptive_ = true;
  int content_level_ = 1;
  std::function<int64_t()> clock_ns_;
  uint32_t window_frames_ = 0;
  int64_t window_compress_ns_ = 0, window_write_ns_ = 0;
  uint64_t window_bytes_ = 0, window_wire_bytes_ = 0;
  uint32_t raw_frames_ = 0;  // since the last probe
  // Picks the level of a content frame, then learns from how long it took to compress and write.
  int ContentLevelForFrame();
  void LearnContentFrame(int level, bool compressed, size_t payload_bytes, size_t wire_bytes, int64_t compress_ns,
                         int64_t write_ns);
  void ResetContentWindow();
  // Receive side.
  protocol::FrameDecoder decoder_;
  std::atomic<uint64_t> bytes_received_{0};
};

// Sends KEEPALIVE on `channel` whenever nothing else went out for kKeepaliveIntervalMs, from
// construction to destruction, so the peer's idle timeout fires only when this side is gone.
class Keepalive {
 public:
  explicit Keepalive(Channel& channel);
  ~Keepalive();
  Keepalive(const Keepalive&) = delete;
  Keepalive& operator=(const Keepalive&) = delete;

 private:
  Channel& channel_;
  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Turns an ERROR frame into its Status; any other unexpected frame into a kProtocol error
// naming what was expected.
Status UnexpectedFrame(const Frame& frame, const char* expected, const std::string& peer);

}  // namespace ferry
