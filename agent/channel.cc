#include "agent/channel.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "base/bounds.h"
#include "base/check.h"

namespace ferry {

using protocol::MessageType;

namespace {
int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Channel::Channel(io::ByteStream& stream) : stream_(stream), last_send_ms_(NowMs()) {
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

int64_t Channel::idle_send_ms() const { return NowMs() - last_send_ms_.load(std::memory_order_relaxed); }

Status Channel::Send(MessageType type, std::string_view payload, bool try_compress, bool* compressed) {
  if (payload.size() > kFramePayloadMaxBytes) {
    return Status::InvalidArgument("message of " + std::to_string(payload.size()) +
                                   " bytes exceeds the frame limit");
  }
  if ((type == MessageType::kData || type == MessageType::kDelta) && !compress_content_.load(std::memory_order_relaxed)) {
    try_compress = false;
  }
  std::lock_guard<std::mutex> lock(send_mutex_);
  char header[kFrameHeaderBytes];
  std::string_view wire;
  bool was_compressed = encoder_.EncodeHeader(static_cast<uint8_t>(type), payload, try_compress, header, &wire);
  if (compressed != nullptr) *compressed = was_compressed;
  if (rate_limit_) {
    int64_t wait_ns = rate_limit_->Reserve(sizeof(header) + wire.size());
    if (wait_ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait_ns));
  }
  // No deadline on writes: a peer that stops reading is either busy (its keepalives say so) or
  // gone (our reader's idle timeout, or TCP keepalive, ends the connection and this call).
  FERRY_RETURN_IF_ERROR(stream_.Write(std::string_view(header, sizeof(header)), wire, -1));
  bytes_sent_.fetch_add(sizeof(header) + wire.size(), std::memory_order_relaxed);
  last_send_ms_.store(NowMs(), std::memory_order_relaxed);
  return Status::Ok();
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
