// ByteStream: a reliable, ordered, bidirectional byte stream (a TCP connection, one end of a
// socketpair, later a TLS session). The channel layer frames messages on top of it.
// Threading: one thread may read while another writes; neither call is reentrant.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/status.h"

namespace ferry::io {

class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Reads exactly `size` bytes. A peer that closes or stays silent for `timeout_ms` is a
  // kNetwork error naming the peer. timeout_ms < 0 waits forever.
  virtual Status ReadFull(char* buffer, size_t size, int timeout_ms) = 0;
  // Writes all of `first`, then all of `second` (a frame header and its payload, without
  // copying them together); fails after `timeout_ms` without progress (< 0: no deadline).
  virtual Status Write(std::string_view first, std::string_view second, int timeout_ms) = 0;
  // Stops both directions: a blocked ReadFull or Write in another thread returns an error.
  virtual void Shutdown() = 0;
  virtual const std::string& peer_name() const = 0;
  // Whether the bytes cross the link encrypted (TLS) or in plaintext.
  virtual bool encrypted() const { return false; }
};

// A stream over a connected socket file descriptor, which it owns and closes.
class FdStream final : public ByteStream {
 public:
  FdStream(int fd, std::string peer_name);
  ~FdStream() override;
  FdStream(const FdStream&) = delete;
  FdStream& operator=(const FdStream&) = delete;

  Status ReadFull(char* buffer, size_t size, int timeout_ms) override;
  Status Write(std::string_view first, std::string_view second, int timeout_ms) override;
  void Shutdown() override;
  const std::string& peer_name() const override { return peer_name_; }
  int fd() const { return fd_; }

 private:
  static constexpr size_t kSpillBytes = 32 * 1024;
  int fd_;
  std::string peer_name_;
  std::unique_ptr<char[]> spill_;  // bytes read past a request: [spill_begin_, spill_end_)
  size_t spill_begin_ = 0, spill_end_ = 0;
};

// Two connected in-process streams (a socketpair), for a local sync that runs the sender and
// the receiver in one process. Each stream is named after its peer, for messages.
Status MakeStreamPair(const std::string& a_peer_name, std::unique_ptr<ByteStream>* a,
                      const std::string& b_peer_name, std::unique_ptr<ByteStream>* b);

}  // namespace ferry::io
