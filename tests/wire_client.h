// A hostile peer's tools: raw TCP to a daemon on loopback, and a client that does the real
// handshake through the agent's channel (plaintext: the daemon runs --insecure) and then sends
// whatever frames a test scripts. Used by fault_test.cc and hostile_test.cc.
#pragma once

#include <string>

#include "agent/channel.h"
#include "agent/io/stream.h"
#include "protocol/messages.h"

namespace ferry_test {

// A TCP connection to 127.0.0.1:port (a test failure if it cannot connect).
int ConnectTcp(int port);

// Reads until the peer closes (or resets); false when it is still open after `timeout_s`.
bool ReadUntilClosed(int fd, double timeout_s, std::string* received);

class WireClient {
 public:
  explicit WireClient(int port);
  ferry::Channel& channel() { return channel_; }
  // HELLO, then OPEN of a push into `volume` (`subpath` inside it).
  ferry::Result<ferry::protocol::OpenOk> Open(const std::string& volume, const std::string& subpath);
  // Receives frames until one of `type` arrives (true) or the session ends (false).
  bool ReceiveUntil(ferry::protocol::MessageType type, ferry::Frame* frame);
  // Raw bytes on the connection, past the channel (crafted or damaged frames).
  bool SendRaw(const std::string& bytes);
  void Close() { stream_.Shutdown(); }

 private:
  ferry::io::FdStream stream_;
  ferry::Channel channel_;
};

ferry::protocol::Entry MakeEntry(uint32_t id, ferry::protocol::EntryType type, const std::string& path,
                                 uint64_t size = 0);

}  // namespace ferry_test
