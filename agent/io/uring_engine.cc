// The io_uring engine (liburing; the only file that includes it): one ring per engine with
// `depth` entries. Submit preps every op and enters the kernel once; Reap copies completions into
// a fixed ready queue and hands them out in completion order. Short transfers and EINTR/EAGAIN
// never reach the caller: the op is prepped again for its remainder (a read until end of file, a
// write until complete) and reported only when it is done.
// Threading: one engine per thread.
#include <liburing.h>

#include <cerrno>
#include <vector>

#include "agent/io/engine_impl.h"
#include "base/bounds.h"
#include "base/check.h"

namespace ferry::io::internal {
namespace {

// Submissions retried after EINTR/EAGAIN/EBUSY before the engine reports itself broken. No
// sleep in between: EBUSY clears as completions are harvested, EAGAIN (kernel memory) rarely
// lasts, and a loop that never ends is worse than an error.
constexpr int kSubmitAttemptsMax = 100'000;
// Completions taken from the ring per peek.
constexpr unsigned kCqeBatch = 32;

class UringEngine final : public Engine {
 public:
  explicit UringEngine(uint32_t depth) : slots_(depth), ready_(depth, nullptr) {
    free_.reserve(depth);
    for (uint32_t i = depth; i > 0; --i) free_.push_back(&slots_[i - 1]);
  }
  ~UringEngine() override {
    if (ring_ready_) io_uring_queue_exit(&ring_);  // cancels and waits for what is in flight
  }

  Status Init() {
    int r = io_uring_queue_init(static_cast<unsigned>(slots_.size()), &ring_, 0);
    if (r < 0) return Status::Errno(-r, "io_uring_queue_init");
    ring_ready_ = true;
    return Status::Ok();
  }

  const char* name() const override { return "io_uring"; }
  uint32_t depth() const override { return static_cast<uint32_t>(slots_.size()); }
  uint32_t in_flight() const override { return in_flight_; }

  Status Submit(Op* const* ops, size_t count) override;
  Result<size_t> Reap(Op** done, size_t max, size_t min) override;
  Status RegisterBuffers(std::span<const iovec> buffers) override;

 private:
  // An op in the kernel, and how much of it is done (short transfers continue from there).
  struct Slot {
    Op* op = nullptr;
    uint32_t done_bytes = 0;
  };

  void Prep(Slot* slot);
  int FixedIndex(const char* buffer, uint32_t length) const;
  void OnCompletion(Slot* slot, int res);
  void Harvest();
  Status SubmitQueued();

  io_uring ring_{};
  bool ring_ready_ = false;
  std::vector<Slot> slots_;  // one per op in flight; never resized, so Slot* stay valid
  std::vector<Slot*> free_;  // slots not in use
  std::vector<Op*> ready_;   // completed ops not yet reaped, oldest at ready_head_
  uint32_t ready_head_ = 0;
  uint32_t ready_count_ = 0;
  uint32_t in_flight_ = 0;  // submitted and not yet reaped (in the kernel or ready)
  std::vector<iovec> registered_;
};

// The registered buffer holding [buffer, buffer + length), or -1.
int UringEngine::FixedIndex(const char* buffer, uint32_t length) const {
  for (size_t i = 0; i < registered_.size(); ++i) {
    const char* base = static_cast<const char*>(registered_[i].iov_base);
    if (buffer >= base && buffer + length <= base + registered_[i].iov_len)
      return static_cast<int>(i);
  }
  return -1;
}

// Queues what remains of the slot's op. The ring has an entry per slot, and every prepped entry
// is submitted before the next Submit or wait, so an entry is always free.
void UringEngine::Prep(Slot* slot) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  CHECK(sqe != nullptr);
  const Op& op = *slot->op;
  CHECK_LE(slot->done_bytes, op.length);
  char* buffer = op.buffer + slot->done_bytes;
  const uint32_t length = op.length - slot->done_bytes;
  const uint64_t offset = op.offset + slot->done_bytes;
  const int fixed = op.kind == OpKind::kFdatasync ? -1 : FixedIndex(buffer, length);
  switch (op.kind) {
    case OpKind::kRead:
      if (fixed >= 0) {
        io_uring_prep_read_fixed(sqe, op.fd, buffer, length, offset, fixed);
      } else {
        io_uring_prep_read(sqe, op.fd, buffer, length, offset);
      }
      break;
    case OpKind::kWrite:
      if (fixed >= 0) {
        io_uring_prep_write_fixed(sqe, op.fd, buffer, length, offset, fixed);
      } else {
        io_uring_prep_write(sqe, op.fd, buffer, length, offset);
      }
      break;
    case OpKind::kFdatasync:
      io_uring_prep_fsync(sqe, op.fd, IORING_FSYNC_DATASYNC);
      break;
  }
  io_uring_sqe_set_data(sqe, slot);
}

// Either the op goes back to the kernel for its remainder, or it is finished: its result is set
// and it joins the ready queue.
void UringEngine::OnCompletion(Slot* slot, int res) {
  Op* op = slot->op;
  if (res == -EINTR || res == -EAGAIN) return Prep(slot);
  const uint32_t remaining = op->length - slot->done_bytes;
  if (op->kind != OpKind::kFdatasync && res > 0) {
    CHECK_LE(static_cast<uint32_t>(res), remaining);  // the kernel moved what was asked, or less
    slot->done_bytes += static_cast<uint32_t>(res);
    if (slot->done_bytes < op->length) return Prep(slot);  // short: the rest (a read until EOF)
  }
  if (res < 0) {
    op->result = res;  // an error after a partial transfer is still the op's error
  } else if (op->kind == OpKind::kWrite && slot->done_bytes < op->length) {
    op->result = -EIO;  // a write that made no progress would be resubmitted forever
  } else {
    op->result = slot->done_bytes;  // a read stopped at end of file, or everything
  }
  CHECK_LT(ready_count_, ready_.size());
  ready_[(ready_head_ + ready_count_) % ready_.size()] = op;
  ready_count_ += 1;
  slot->op = nullptr;
  free_.push_back(slot);
}

// Takes every completion the ring holds, without waiting.
void UringEngine::Harvest() {
  io_uring_cqe* cqes[kCqeBatch];
  while (unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kCqeBatch)) {
    for (unsigned i = 0; i < n; ++i) {
      OnCompletion(static_cast<Slot*>(io_uring_cqe_get_data(cqes[i])), cqes[i]->res);
    }
    io_uring_cq_advance(&ring_, n);
  }
}

// Enters the kernel until every prepped entry is submitted.
Status UringEngine::SubmitQueued() {
  for (int attempt = 0; io_uring_sq_ready(&ring_) > 0; ++attempt) {
    if (attempt == kSubmitAttemptsMax)
      return Status::IoError("io_uring_submit keeps failing with EAGAIN/EBUSY");
    int r = io_uring_submit(&ring_);
    if (r >= 0 || r == -EINTR) continue;
    if (r == -EAGAIN || r == -EBUSY) {
      Harvest();  // completions waiting to be taken can be what blocks the submission
      continue;
    }
    return Status::Errno(-r, "io_uring_submit");
  }
  return Status::Ok();
}

Status UringEngine::Submit(Op* const* ops, size_t count) {
  CHECK_LE(in_flight_ + count, slots_.size());
  for (size_t i = 0; i < count; ++i) {
    CHECK(!free_.empty());
    Slot* slot = free_.back();
    free_.pop_back();
    slot->op = ops[i];
    slot->done_bytes = 0;
    Prep(slot);
  }
  in_flight_ += static_cast<uint32_t>(count);
  return SubmitQueued();  // one io_uring_enter for the whole batch
}

Result<size_t> UringEngine::Reap(Op** done, size_t max, size_t min) {
  CHECK_LE(min, max);
  CHECK_LE(min, static_cast<size_t>(in_flight_));  // waiting for more than is in flight: a hang
  Harvest();
  FERRY_RETURN_IF_ERROR(SubmitQueued());
  while (ready_count_ < min) {
    // Every op not ready is in the kernel (all prepped entries were submitted), so this many
    // completions will come; a resubmitted remainder just brings one more.
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_wait_cqe_nr(&ring_, &cqe, static_cast<unsigned>(min - ready_count_));
    if (r < 0 && r != -EINTR && r != -EAGAIN) return Status::Errno(-r, "io_uring_wait_cqe_nr");
    Harvest();
    FERRY_RETURN_IF_ERROR(SubmitQueued());
  }
  size_t n = 0;
  while (n < max && ready_count_ > 0) {
    done[n++] = ready_[ready_head_];
    ready_head_ = (ready_head_ + 1) % static_cast<uint32_t>(ready_.size());
    ready_count_ -= 1;
  }
  in_flight_ -= static_cast<uint32_t>(n);
  CHECK(n >= min);
  return n;
}

Status UringEngine::RegisterBuffers(std::span<const iovec> buffers) {
  CHECK_EQ(in_flight_, 0u);  // an op in the kernel may be using a fixed index
  if (!registered_.empty()) {
    int r = io_uring_unregister_buffers(&ring_);
    registered_.clear();
    if (r < 0) return Status::Errno(-r, "io_uring_unregister_buffers");
  }
  if (buffers.empty()) return Status::Ok();
  int r = io_uring_register_buffers(&ring_, buffers.data(), static_cast<unsigned>(buffers.size()));
  if (r < 0) {
    return Status::Errno(-r,
                         "io_uring_register_buffers (pinned memory counts against the memlock "
                         "limit: ulimit -l)");
  }
  registered_.assign(buffers.begin(), buffers.end());
  return Status::Ok();
}

}  // namespace

Status ProbeUring() {
  io_uring ring{};
  int r = io_uring_queue_init(2, &ring, 0);
  if (r < 0) return Status::Errno(-r, "io_uring_queue_init");
  // A ring that can be made but not entered (a filter on io_uring_enter alone) is no use either.
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_nop(sqe);
  io_uring_cqe* cqe = nullptr;
  r = io_uring_submit_and_wait(&ring, 1);
  if (r >= 0) r = io_uring_peek_cqe(&ring, &cqe);
  if (r >= 0 && cqe->res < 0) r = cqe->res;
  io_uring_queue_exit(&ring);
  if (r < 0) return Status::Errno(-r, "io_uring_enter");
  return Status::Ok();
}

Result<std::unique_ptr<Engine>> MakeUringEngine(uint32_t depth) {
  CHECK(depth >= 1);
  CHECK_LE(depth, kIoDepthMax);
  auto engine = std::make_unique<UringEngine>(depth);
  FERRY_RETURN_IF_ERROR(engine->Init());
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace ferry::io::internal
