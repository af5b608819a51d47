// StreamHub: where the extra data streams of a session meet it. A session that grants N streams
// registers itself with a random token before it answers OPEN_OK; each extra connection's JOIN
// presents the session id, the token and its stream index, hands its channel over and waits
// until the session is done with it. The session takes its streams once all have joined.
// Threading: thread-safe; Join blocks its connection's thread until the session releases it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "agent/channel.h"
#include "base/result.h"
#include "protocol/messages.h"

namespace ferry {

class StreamHub {
 public:
  // Registers session `session_id`, which waits for `streams` - 1 JOINs; returns their token.
  protocol::Hash128 Expect(uint64_t session_id, uint32_t streams, bool compress_content, int content_level);
  // A joining connection: checks the JOIN (an unknown session, a wrong token, an index out of
  // range or taken are refused, telling nothing more), answers JOINED, and blocks until the
  // session releases its streams. The status is the connection's own outcome.
  Status Join(const protocol::Join& join, Channel& channel);
  // The session's extra streams, in index order, once all have joined (at most `timeout_ms`).
  Result<std::vector<Channel*>> Await(uint64_t session_id, int timeout_ms);
  // The session is over: its joined connections return from Join; later JOINs are refused.
  void Release(uint64_t session_id);

 private:
  struct Pending {
    protocol::Hash128 token{};
    bool compress_content = false;
    int content_level = 0;
    std::vector<Channel*> streams;  // by index - 1; null until joined
    size_t joined = 0;
    bool released = false;
  };
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<uint64_t, Pending> sessions_;
};

}  // namespace ferry
