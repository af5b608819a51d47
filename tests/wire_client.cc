#include "tests/wire_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "agent/session.h"
#include "tests/process_fixture.h"

namespace ferry_test {

namespace protocol = ferry::protocol;
using protocol::MessageType;

int ConnectTcp(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "connect to port " << port << ": " << std::strerror(errno);
  }
  return fd;
}

// Reads until the peer closes (or resets); false when it is still open after `timeout_s`.
bool ReadUntilClosed(int fd, double timeout_s, std::string* received) {
  return PollUntil(
      [&] {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 10) <= 0) return false;
        char buf[4096];
        ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n > 0) received->append(buf, static_cast<size_t>(n));
        return n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN);
      },
      timeout_s);
}

WireClient::WireClient(int port) : stream_(ConnectTcp(port), "daemon"), channel_(stream_) {}

ferry::Result<protocol::OpenOk> WireClient::Open(const std::string& volume, const std::string& subpath) {
  protocol::Open open;
  open.volume = volume;
  open.subpath = subpath;
  open.direction = protocol::Direction::kPush;
  return ferry::OpenSession(channel_, open, ferry::WireCompression::kNone);
}

bool WireClient::ReceiveUntil(MessageType type, ferry::Frame* frame) {
  for (;;) {
    if (!channel_.Receive(frame, 10'000).ok()) return false;
    if (frame->type == type) return true;
    if (frame->type == MessageType::kError) return false;
  }
}

bool WireClient::SendRaw(const std::string& bytes) {
  return ::send(stream_.fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

protocol::Entry MakeEntry(uint32_t id, protocol::EntryType type, const std::string& path, uint64_t size) {
  protocol::Entry e;
  e.id = id;
  e.type = type;
  e.path = path;
  e.mode = type == protocol::EntryType::kDirectory ? 0755 : 0644;
  e.size = size;
  e.mtime_sec = 1'600'000'000;
  return e;
}

}  // namespace ferry_test
