#include "agent/io/stream.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/check.h"

namespace ferry::io {

FdStream::FdStream(int fd, std::string peer_name) : fd_(fd), peer_name_(std::move(peer_name)) {
  CHECK(fd_ >= 0);
}

FdStream::~FdStream() { ::close(fd_); }

// Waits until fd_ is ready for `events`; kNetwork on timeout.
static Status WaitReady(int fd, short events, int timeout_ms, const std::string& peer,
                        const char* what) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = ::poll(&p, 1, timeout_ms);
    if (n > 0) return Status::Ok();
    if (n == 0) {
      return Status::Make(Code::kNetwork, "peer " + peer + " sent nothing for " +
                                              std::to_string(timeout_ms / 1000) + " s while " + what,
                          ETIMEDOUT);
    }
    if (errno != EINTR) return Status::Errno(errno, std::string("poll ") + peer);
  }
}

// A frame is read as its header, then its payload: two reads, and on a busy link a small
// file's frames arrive many to a segment. One recvmsg fills the request and spills up to
// kSpillBytes of what follows into spill_, where the next reads find it (a 1 MiB payload is
// copied at most kSpillBytes of it once more).
Status FdStream::ReadFull(char* buffer, size_t size, int timeout_ms) {
  size_t done = 0;
  if (spill_begin_ < spill_end_) {
    done = std::min(size, spill_end_ - spill_begin_);
    std::memcpy(buffer, spill_.get() + spill_begin_, done);
    spill_begin_ += done;
  }
  if (done < size && !spill_) spill_ = std::make_unique<char[]>(kSpillBytes);
  while (done < size) {  // spill_ is empty here
    iovec parts[2] = {{buffer + done, size - done}, {spill_.get(), kSpillBytes}};
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = 2;
    ssize_t n = ::recvmsg(fd_, &message, MSG_DONTWAIT);
    if (n > 0) {
      const size_t got = static_cast<size_t>(n);
      if (got > size - done) {
        spill_begin_ = 0;
        spill_end_ = got - (size - done);
        done = size;
      } else {
        done += got;
      }
      continue;
    }
    if (n == 0) {
      return Status::Make(Code::kNetwork, "peer " + peer_name_ + " closed the connection",
                          ECONNRESET);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return Status::Errno(errno, "read from peer " + peer_name_);
    }
    FERRY_RETURN_IF_ERROR(WaitReady(fd_, POLLIN, timeout_ms, peer_name_, "reading"));
  }
  return Status::Ok();
}

Status FdStream::Write(std::string_view first, std::string_view second, int timeout_ms) {
  size_t done = 0;  // bytes of first + second written
  const size_t total = first.size() + second.size();
  while (done < total) {
    iovec parts[2];
    int count = 0;
    if (done < first.size()) {
      parts[count++] = {const_cast<char*>(first.data() + done), first.size() - done};
      parts[count++] = {const_cast<char*>(second.data()), second.size()};
    } else {
      parts[count++] = {const_cast<char*>(second.data() + (done - first.size())), total - done};
    }
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = ::sendmsg(fd_, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Status::Errno(errno, "write to peer " + peer_name_);
    FERRY_RETURN_IF_ERROR(WaitReady(fd_, POLLOUT, timeout_ms, peer_name_, "writing"));
  }
  return Status::Ok();
}

void FdStream::Shutdown() { ::shutdown(fd_, SHUT_RDWR); }

Status MakeStreamPair(const std::string& a_peer_name, std::unique_ptr<ByteStream>* a,
                      const std::string& b_peer_name, std::unique_ptr<ByteStream>* b) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return Status::Errno(errno, "socketpair");
  }
  // Large buffers let the sender run ahead of the receiver as it would on a TCP link.
  int size = 4 << 20;
  for (int fd : fds) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  *a = std::make_unique<FdStream>(fds[0], a_peer_name);
  *b = std::make_unique<FdStream>(fds[1], b_peer_name);
  return Status::Ok();
}

}  // namespace ferry::io
