#include "daemon/stream_hub.h"

#include <sys/random.h>

#include <chrono>

#include "base/check.h"

namespace ferry {

namespace {
// Compares tokens in time independent of where they differ: a guesser learns nothing from it.
bool SameToken(const protocol::Hash128& a, const protocol::Hash128& b) {
  uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}
}  // namespace

protocol::Hash128 StreamHub::Expect(uint64_t session_id, uint32_t streams, bool compress_content, int content_level) {
  CHECK(streams >= 2);
  Pending pending;
  size_t filled = 0;
  while (filled < pending.token.size()) {  // getrandom of 16 bytes does not fail once seeded
    ssize_t n = ::getrandom(pending.token.data() + filled, pending.token.size() - filled, 0);
    CHECK(n > 0 || errno == EINTR);
    if (n > 0) filled += static_cast<size_t>(n);
  }
  pending.compress_content = compress_content;
  pending.content_level = content_level;
  pending.streams.assign(streams - 1, nullptr);
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, inserted] = sessions_.emplace(session_id, std::move(pending));
  CHECK(inserted);
  return it->second.token;
}

Status StreamHub::Join(const protocol::Join& join, Channel& channel) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto it = sessions_.find(join.session_id);
  // One answer for every mismatch: a guesser learns nothing about which part was wrong.
  if (it == sessions_.end() || it->second.released || !SameToken(it->second.token, join.token) ||
      join.stream > it->second.streams.size() || it->second.streams[join.stream - 1] != nullptr) {
    Status s = Status::Make(Code::kPermission, "JOIN refused: no session waits for that stream", 0);
    lock.unlock();
    channel.SendError(s);
    return s;
  }
  Pending& pending = it->second;
  channel.SetCompressContent(pending.compress_content);
  channel.SetContentLevel(pending.content_level);
  if (Status s = channel.Send(protocol::MessageType::kJoined, {}); !s.ok()) return s;
  pending.streams[join.stream - 1] = &channel;
  pending.joined += 1;
  changed_.notify_all();
  changed_.wait(lock, [&] { return pending.released; });
  pending.joined -= 1;  // the session forgets it when the last one leaves
  if (pending.joined == 0) sessions_.erase(it);
  changed_.notify_all();
  return Status::Ok();
}

Result<std::vector<Channel*>> StreamHub::Await(uint64_t session_id, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto it = sessions_.find(session_id);
  CHECK(it != sessions_.end());
  Pending& pending = it->second;
  bool all = changed_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                               [&] { return pending.joined == pending.streams.size(); });
  if (!all) {
    return Status::Make(Code::kNetwork, std::to_string(pending.joined) + " of " +
                                            std::to_string(pending.streams.size()) +
                                            " data streams joined within " + std::to_string(timeout_ms / 1000) +
                                            " s: check that the client can open more connections to this port",
                        ETIMEDOUT);
  }
  return pending.streams;
}

void StreamHub::Release(uint64_t session_id) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  it->second.released = true;
  for (Channel* stream : it->second.streams) {
    if (stream != nullptr) stream->Shutdown();  // a joined connection's thread may be reading
  }
  if (it->second.joined == 0) sessions_.erase(it);
  changed_.notify_all();
}

}  // namespace ferry
