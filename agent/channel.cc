#include "agent/channel.h"

#include <algorithm>
#include <iterator>
#include <chrono>
#include <thread>

#include "base/bounds.h"
#include "base/check.h"

namespace ferry {

using protocol::MessageType;

namespace {
// The levels --compress auto moves between (0: raw). Level 1 compresses ~0.5 GB/s a core, 3
// about half that, 6 ~100 MB/s: enough for a WAN link, never the bottleneck of a LAN.
constexpr int kContentLevels[] = {0, 1, 3, 6};
constexpr uint32_t kContentWindowFrames = 16;   // content frames per judgement
constexpr uint32_t kContentProbeFrames = 64;    // raw frames between two probes
constexpr int kZstdLevelDefaultFrames = 1;      // manifests, hashes, reports
int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Channel::Channel(io::ByteStream& stream) : stream_(stream), last_send_ms_(NowMs()) {
  clock_ns_ = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
}

void Channel::SetCompression(std::optional<int> level) {
  std::lock_guard<std::mutex> lock(send_mutex_);
  encoder_.SetCompressionLevel(level);
}

void Channel::SetRateLimit(uint64_t bytes_per_second) {
  std::lock_guard<std::mutex> lock(send_mutex_);
  if (bytes_per_second == 0) {
    rate_limit_.reset();
    return;
  }
  // A burst of a tenth of a second, and at least one full frame.
  uint64_t burst = std::max<uint64_t>(bytes_per_second / 10, kFramePayloadMaxBytes + kFrameHeaderBytes);
  rate_limit_ = std::make_unique<TokenBucket>(bytes_per_second, burst, [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  });
}

void Channel::SetContentLevel(int level) {
  CHECK(level >= 0 && level <= kZstdLevelMax);
  std::lock_guard<std::mutex> lock(send_mutex_);
  content_adaptive_ = level == 0;
  content_level_ = level == 0 ? kContentLevels[1] : level;
  ResetContentWindow();
}

int Channel::content_level() const {
  std::lock_guard<std::mutex> lock(const_cast<std::mutex&>(send_mutex_));
  return content_level_;
}

int Channel::ContentLevelForFrame() {
  if (!content_adaptive_ || content_level_ > 0) return content_level_;
  // Raw: now and then one frame at the lowest level, to see whether zstd keeps up with the link.
  if (++raw_frames_ >= kContentProbeFrames) {
    raw_frames_ = 0;
    return kContentLevels[1];
  }
  return 0;
}

void Channel::ResetContentWindow() {
  window_frames_ = 0;
  window_bytes_ = window_wire_bytes_ = 0;
  window_compress_ns_ = window_write_ns_ = 0;
}

// The cost of a frame is the time to compress it plus the time to write what goes on the wire;
// writing is timed per wire byte (a full socket makes it the link's speed, an idle one memcpy's).
void Channel::LearnContentFrame(int level, bool compressed, size_t payload_bytes, size_t wire_bytes,
                                int64_t compress_ns, int64_t write_ns) {
  if (!content_adaptive_) return;
  if (level > 0 && !compressed) return;  // did not compress: the sample check skips such data
  if (content_level_ == 0 && level > 0) {
    // A probe from raw: compressing pays when it costs less than sending the difference raw.
    const double ns_per_wire_byte = window_bytes_ > 0 ? double(window_write_ns_) / double(window_bytes_) : 0;
    const double raw_cost = ns_per_wire_byte * double(payload_bytes);
    if (double(compress_ns) + ns_per_wire_byte * double(wire_bytes) < raw_cost) content_level_ = level;
    ResetContentWindow();
    return;
  }
  window_frames_ += 1;
  window_bytes_ += payload_bytes;
  window_wire_bytes_ += wire_bytes;
  window_compress_ns_ += compress_ns;
  window_write_ns_ += write_ns;
  if (window_frames_ < kContentWindowFrames || content_level_ == 0) return;
  size_t step = 0;
  while (step + 1 < std::size(kContentLevels) && kContentLevels[step] < content_level_) ++step;
  const double ns_per_wire_byte = double(window_write_ns_) / double(std::max<uint64_t>(window_wire_bytes_, 1));
  const double raw_cost = ns_per_wire_byte * double(window_bytes_);
  const double cost = double(window_compress_ns_ + window_write_ns_);
  if (raw_cost < cost || window_compress_ns_ > 3 * window_write_ns_) {
    content_level_ = kContentLevels[step - 1];  // zstd slows the transfer: cheaper, or raw
  } else if (window_write_ns_ > 3 * window_compress_ns_ && step + 1 < std::size(kContentLevels)) {
    content_level_ = kContentLevels[step + 1];  // the link is the bottleneck: denser
  }
  ResetContentWindow();
}

int64_t Channel::idle_send_ms() const { return NowMs() - last_send_ms_.load(std::memory_order_relaxed); }

Status Channel::Send(MessageType type, std::string_view payload, bool try_compress, bool* compressed) {
  if (payload.size() > kFramePayloadMaxBytes) {
    return Status::InvalidArgument("message of " + std::to_string(payload.size()) +
                                   " bytes exceeds the frame limit");
  }
  if ((type == MessageType::kData || type == MessageType::kDelta) && !compress_content_.load(std::memory_order_relaxed)) {
    try_compress = false;
  }
  const bool content = type == MessageType::kData || type == MessageType::kDelta;
  std::lock_guard<std::mutex> lock(send_mutex_);
  char header[kFrameHeaderBytes];
  std::string_view wire;
  int level = 0;
  if (content && try_compress && encoder_.compresses()) {
    level = ContentLevelForFrame();
    try_compress = level > 0;
    if (try_compress) encoder_.SetLevel(level);
  }
  const int64_t t0 = clock_ns_();
  bool was_compressed = encoder_.EncodeHeader(static_cast<uint8_t>(type), payload, try_compress, header, &wire);
  if (content && level > 0) encoder_.SetLevel(kZstdLevelDefaultFrames);  // other frames: the fast default
  const int64_t t1 = clock_ns_();
  if (compressed != nullptr) *compressed = was_compressed;
  if (rate_limit_) {
    int64_t wait_ns = rate_limit_->Reserve(sizeof(header) + wire.size());
    if (wait_ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait_ns));
  }
  // No deadline on writes: a peer that stops reading is either busy (its keepalives say so) or
  // gone (our reader's idle timeout, or TCP keepalive, ends the connection and this call).
  FERRY_RETURN_IF_ERROR(stream_.Write(std::string_view(header, sizeof(header)), wire, -1));
  if (content && encoder_.compresses() && (try_compress || level == 0)) {
    LearnContentFrame(level, was_compressed, payload.size(), wire.size(), t1 - t0, clock_ns_() - t1);
  }
  bytes_sent_.fetch_add(sizeof(header) + wire.size(), std::memory_order_relaxed);
  last_send_ms_.store(NowMs(), std::memory_order_relaxed);
  return Status::Ok();
}

Status Channel::PreferPeerError(const Status& local, int grace_ms) {
  if (local.code() != Code::kNetwork) return local;
  const int64_t deadline = NowMs() + grace_ms;
  Frame frame;
  for (int64_t now = NowMs(); now < deadline; now = NowMs()) {
    if (!Receive(&frame, static_cast<int>(deadline - now)).ok()) break;
    if (frame.type == MessageType::kError) return UnexpectedFrame(frame, "ERROR", peer_name());
  }
  return local;
}

void Channel::SendError(const Status& status) {
  CHECK(!status.ok());
  protocol::Error error{static_cast<uint32_t>(status.code()), status.message()};
  (void)SendMessage(MessageType::kError, error);
}

Status Channel::Receive(Frame* frame, int timeout_ms) {
  char header_bytes[kFrameHeaderBytes];
  FERRY_RETURN_IF_ERROR(stream_.ReadFull(header_bytes, sizeof(header_bytes), timeout_ms));
  std::string_view header_view(header_bytes, sizeof(header_bytes));
  protocol::FrameHeader header;
  Status s = protocol::DecodeFrameHeader(header_view, &header);
  if (!s.ok()) return s.Annotate("from peer " + stream_.peer_name());
  if (!protocol::IsKnownMessageType(header.type)) {
    return Status::Protocol("peer " + stream_.peer_name() + " sent a frame of unknown type " +
                            std::to_string(header.type));
  }
  frame->payload.resize(header.wire_size);
  FERRY_RETURN_IF_ERROR(stream_.ReadFull(frame->payload.data(), header.wire_size, timeout_ms));
  bytes_received_.fetch_add(kFrameHeaderBytes + header.wire_size, std::memory_order_relaxed);
  s = decoder_.DecodeInPlace(header_view, header, &frame->payload);
  if (!s.ok()) return s.Annotate("from peer " + stream_.peer_name());
  frame->type = static_cast<MessageType>(header.type);
  return Status::Ok();
}

Keepalive::Keepalive(Channel& channel) : channel_(channel) {
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_cv_.wait_for(lock, std::chrono::milliseconds(kKeepaliveIntervalMs / 4), [&] { return stop_; })) {
      if (channel_.idle_send_ms() < kKeepaliveIntervalMs) continue;
      lock.unlock();
      (void)channel_.Send(MessageType::kKeepalive, {});  // a failure shows up on the session's own calls
      lock.lock();
    }
  });
}

Keepalive::~Keepalive() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
}

Status UnexpectedFrame(const Frame& frame, const char* expected, const std::string& peer) {
  if (frame.type == MessageType::kError) {
    Result<protocol::Error> error = protocol::Error::Decode(frame.payload);
    if (!error.ok()) return error.status().Annotate("ERROR from peer " + peer);
    return error->ToStatus();
  }
  return Status::Protocol("peer " + peer + " sent " +
                          protocol::MessageTypeName(static_cast<uint8_t>(frame.type)) +
                          " where " + expected + " was expected");
}

}  // namespace ferry
