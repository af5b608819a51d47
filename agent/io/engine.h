// The I/O engine: file reads, writes and flushes submitted in batches and reaped as they complete.
// Two implementations behind one interface: io_uring (liburing: one ring per engine, deep queue,
// registered buffers where the caller registers them) and a portable fallback (plain pread/pwrite/
// fdatasync, executed at Submit). Which one runs is decided once per process (ChooseEngineKind) and
// logged once with advice when io_uring is unavailable.
// Threading: an Engine belongs to one thread (each sender worker and receiver lane has its own).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "base/status.h"

namespace ferry::io {

enum class OpKind : uint8_t { kRead, kWrite, kFdatasync };

// One operation, owned by the caller: it and its buffer stay valid and untouched from Submit until
// Reap returns it. No allocation per operation.
struct Op {
  OpKind kind = OpKind::kRead;
  int fd = -1;
  uint64_t offset = 0;
  char* buffer = nullptr;
  uint32_t length = 0;
  // Set by the engine when the op is reaped: bytes transferred (>= 0), or -errno. A read returns
  // fewer than `length` bytes only at end of file; a write is complete or failed (short writes and
  // EINTR/EAGAIN are retried inside the engine).
  int64_t result = 0;
  uint64_t tag = 0;  // the caller's
};

class Engine {
 public:
  virtual ~Engine() = default;
  // "io_uring" or "posix".
  virtual const char* name() const = 0;
  // Queues `count` operations and submits them in one batch. REQUIRES: at most depth() operations
  // submitted and not yet reaped, counting these.
  virtual Status Submit(Op* const* ops, size_t count) = 0;
  // Waits until at least `min` operations completed (0: does not wait), then returns up to `max`
  // of them in `done`, in completion order. The status fails only when the engine itself does
  // (an op's own error is in its result).
  virtual Result<size_t> Reap(Op** done, size_t max, size_t min) = 0;
  // Operations that may be in flight at once.
  virtual uint32_t depth() const = 0;
  // Submitted and not yet reaped.
  virtual uint32_t in_flight() const = 0;
  // Registers buffers for fixed-buffer I/O: io_uring pins them once, and an op whose buffer lies
  // inside one of them then skips the per-op page mapping. Optional: the posix engine has nothing
  // to do and returns OK; callers that never register lose only that saving. Registering again
  // replaces the set. REQUIRES: nothing in flight; the buffers stay valid until the engine is
  // destroyed or registers again. A failure (ENOMEM: the memlock limit, `ulimit -l`) leaves the
  // engine working without them.
  virtual Status RegisterBuffers(std::span<const iovec> buffers) {
    (void)buffers;
    return Status::Ok();
  }
};

enum class EngineKind : uint8_t { kAuto, kUring, kPosix };

// Parses "auto", "uring" or "posix" (the --io flag and FERRY_IO).
Result<EngineKind> ParseEngineKind(const std::string& text);

// The engine this process uses: `requested` (kAuto: FERRY_IO if set, else io_uring when a ring can
// be created, else posix). Probed once and remembered; when io_uring was wanted but is unavailable
// (EPERM/ENOSYS from a seccomp filter, kernel.io_uring_disabled, memlock) the reason and the advice
// are logged once and posix is used. A forced kUring that cannot work is an error.
Result<EngineKind> ChooseEngineKind(EngineKind requested);

// A new engine of `kind` (kUring or kPosix) with room for `depth` operations in flight.
Result<std::unique_ptr<Engine>> MakeEngine(EngineKind kind, uint32_t depth);

// The process-wide choice made by the first ChooseEngineKind (kPosix before any).
EngineKind ChosenEngineKind();
// "auto", "io_uring" or "posix" (what Engine::name() says, and `ferry sync --json` reports).
const char* EngineKindName(EngineKind kind);

// TEST ONLY: forgets the process-wide choice and the probe, so the next ChooseEngineKind decides
// (and may log) again, e.g. after a test changed FERRY_IO. A non-zero `uring_probe_errno` makes
// the probe fail with that errno (EPERM: as under Docker's seccomp profile) instead of running.
// Production code chooses once at start and never calls this.
void ResetEngineChoiceForTest(int uring_probe_errno = 0);

// An engine of the process's kind (ChosenEngineKind) for one thread of the data path; when that
// kind cannot be made here (a ring refused for memlock), a posix engine, with a warning.
std::unique_ptr<Engine> MakeThreadEngine(uint32_t depth);

// Reads [offset, offset + length) of `fd` into `buffer` through `engine`, synchronously, up to end
// of file; returns the bytes read. For callers without a pipeline of their own.
Result<size_t> ReadAt(Engine& engine, int fd, uint64_t offset, char* buffer, size_t length);
// Writes all of `length` bytes at `offset` through `engine`, synchronously.
Status WriteAt(Engine& engine, int fd, uint64_t offset, const char* buffer, size_t length);

}  // namespace ferry::io
