// The portable engine: each op runs at Submit with pread/pwrite/fdatasync (short transfers and
// EINTR/EAGAIN looped here), and its completion waits in a fixed ring of depth entries until
// Reap hands it back. Used where io_uring is blocked (seccomp, sysctl) or by --io=posix.
// Threading: one engine per thread.
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "agent/io/engine_impl.h"
#include "base/bounds.h"
#include "base/check.h"

namespace ferry::io::internal {
namespace {

bool Retryable(int error_number) { return error_number == EINTR || error_number == EAGAIN; }

// Reads until `length` bytes or end of file; bytes read, or -errno.
int64_t ReadFully(const Op& op) {
  uint32_t done = 0;
  while (done < op.length) {
    ssize_t n =
        ::pread(op.fd, op.buffer + done, op.length - done, static_cast<off_t>(op.offset + done));
    if (n < 0 && Retryable(errno)) continue;
    if (n < 0) return -errno;
    if (n == 0) break;  // end of file
    done += static_cast<uint32_t>(n);
  }
  return done;
}

// Writes all `length` bytes; length, or -errno.
int64_t WriteFully(const Op& op) {
  uint32_t done = 0;
  while (done < op.length) {
    ssize_t n =
        ::pwrite(op.fd, op.buffer + done, op.length - done, static_cast<off_t>(op.offset + done));
    if (n < 0 && Retryable(errno)) continue;
    if (n < 0) return -errno;
    if (n == 0) return -EIO;  // a write that makes no progress would loop forever
    done += static_cast<uint32_t>(n);
  }
  return done;
}

int64_t Execute(const Op& op) {
  switch (op.kind) {
    case OpKind::kRead:
      return ReadFully(op);
    case OpKind::kWrite:
      return WriteFully(op);
    case OpKind::kFdatasync:
      while (true) {
        if (::fdatasync(op.fd) == 0) return 0;
        if (!Retryable(errno)) return -errno;
      }
  }
  CHECK(false);  // every OpKind is handled above
}

class PosixEngine final : public Engine {
 public:
  explicit PosixEngine(uint32_t depth) : ready_(depth, nullptr) {}

  const char* name() const override { return "posix"; }
  uint32_t depth() const override { return static_cast<uint32_t>(ready_.size()); }
  uint32_t in_flight() const override { return count_; }

  Status Submit(Op* const* ops, size_t count) override {
    CHECK_LE(count_ + count, ready_.size());
    for (size_t i = 0; i < count; ++i) {
      Op* op = ops[i];
      op->result = Execute(*op);
      CHECK(op->result <= static_cast<int64_t>(op->length));
      ready_[(head_ + count_) % ready_.size()] = op;
      count_ += 1;
    }
    return Status::Ok();
  }

  // Everything submitted has completed, so there is never anything to wait for.
  Result<size_t> Reap(Op** done, size_t max, size_t min) override {
    CHECK_LE(min, max);
    CHECK_LE(min, static_cast<size_t>(count_));  // waiting for more than is in flight: a hang
    size_t n = 0;
    while (n < max && count_ > 0) {
      done[n++] = ready_[head_];
      head_ = (head_ + 1) % static_cast<uint32_t>(ready_.size());
      count_ -= 1;
    }
    return n;
  }

 private:
  std::vector<Op*> ready_;  // completed ops, oldest at head_; allocated once
  uint32_t head_ = 0;
  uint32_t count_ = 0;
};

}  // namespace

std::unique_ptr<Engine> MakePosixEngine(uint32_t depth) {
  CHECK(depth >= 1);
  CHECK_LE(depth, kIoDepthMax);
  return std::make_unique<PosixEngine>(depth);
}

}  // namespace ferry::io::internal
