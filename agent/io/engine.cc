// The engine choice (once per process, logged with advice), MakeEngine, and the synchronous
// helpers ReadAt/WriteAt. The engines themselves are in uring_engine.cc and posix_engine.cc.
#include "agent/io/engine.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>

#include "agent/io/engine_impl.h"
#include "agent/io/fault.h"
#include "base/bounds.h"
#include "base/check.h"
#include "base/log.h"

namespace ferry::io {
namespace {

// What the process decided, behind one mutex: the probe runs once, the warning is logged once,
// and the first successful ChooseEngineKind fixes ChosenEngineKind.
struct Choice {
  std::mutex mutex;
  std::optional<Status> probe;  // ProbeUring's answer, once asked
  bool warned = false;
  std::optional<EngineKind> chosen;
};

Choice& TheChoice() {
  static Choice choice;
  return choice;
}

// Why io_uring failed, from the probe's errno.
const char* UringReason(int error_number) {
  switch (error_number) {
    case EPERM:
      return "a seccomp filter, e.g. Docker's default profile, blocks it; or sysctl "
             "kernel.io_uring_disabled=2 (or =1 outside the io_uring_group)";
    case ENOSYS:
      return "the kernel lacks io_uring (before 5.1, or built without it), or a seccomp filter "
             "hides it";
    case ENOMEM:
      return "the ring's memory exceeds the locked-memory limit";
    default:
      return "io_uring_setup failed";
  }
}

// What to do about it.
const char* UringAdvice(int error_number) {
  switch (error_number) {
    case EPERM:
      return "allow io_uring in the seccomp profile (and the sysctl) for faster I/O";
    case ENOSYS:
      return "use a newer kernel or allow io_uring in the seccomp profile for faster I/O";
    case ENOMEM:
      return "raise the memlock limit (ulimit -l, or LimitMEMLOCK= in the systemd unit)";
    default:
      return "the posix engine works everywhere";
  }
}

// "io_uring unavailable (Operation not permitted: <reason>)".
std::string UringUnavailable(const Status& probe) {
  const int e = probe.error_number();
  return std::string("io_uring unavailable (") +
         (e != 0 ? std::strerror(e) : probe.message().c_str()) + ": " + UringReason(e) + ")";
}

// REQUIRES: the choice's mutex is held.
const Status& ProbeOnce(Choice& choice) {
  if (!choice.probe) choice.probe = internal::ProbeUring();
  return *choice.probe;
}

// kAuto becomes what FERRY_IO says, or stays kAuto when it is unset or empty.
Result<EngineKind> ApplyEnvironment(EngineKind requested) {
  if (requested != EngineKind::kAuto) return requested;
  const char* env = std::getenv("FERRY_IO");
  if (env == nullptr || env[0] == '\0') return EngineKind::kAuto;
  Result<EngineKind> kind = ParseEngineKind(env);
  if (!kind.ok()) return kind.status().Annotate("FERRY_IO");
  return kind;
}

// REQUIRES: the choice's mutex is held.
Result<EngineKind> Decide(Choice& choice, EngineKind requested) {
  Result<EngineKind> wanted = ApplyEnvironment(requested);
  if (!wanted.ok()) return wanted.status();
  if (*wanted == EngineKind::kPosix) return EngineKind::kPosix;
  const Status& probe = ProbeOnce(choice);
  if (probe.ok()) return EngineKind::kUring;
  if (*wanted == EngineKind::kUring) {
    return Status::Make(
        Code::kUnsupported,
        UringUnavailable(probe) + ": " + UringAdvice(probe.error_number()) + ", or use --io=posix",
        probe.error_number());
  }
  if (!choice.warned) {
    choice.warned = true;
    LOG_WARN(UringUnavailable(probe) + ": using the posix engine; " +
             UringAdvice(probe.error_number()) + ", or pass --io=posix to silence this");
  }
  return EngineKind::kPosix;
}

}  // namespace

Result<EngineKind> ParseEngineKind(const std::string& text) {
  if (text == "auto") return EngineKind::kAuto;
  if (text == "uring") return EngineKind::kUring;
  if (text == "posix") return EngineKind::kPosix;
  return Status::InvalidArgument("unknown I/O engine '" + text + "': choose auto, uring or posix");
}

Result<EngineKind> ChooseEngineKind(EngineKind requested) {
  Choice& choice = TheChoice();
  std::lock_guard<std::mutex> lock(choice.mutex);
  Result<EngineKind> kind = Decide(choice, requested);
  if (kind.ok()) {
    CHECK(*kind != EngineKind::kAuto);
    if (!choice.chosen) choice.chosen = *kind;
  }
  return kind;
}

EngineKind ChosenEngineKind() {
  Choice& choice = TheChoice();
  std::lock_guard<std::mutex> lock(choice.mutex);
  return choice.chosen.value_or(EngineKind::kPosix);
}

void ResetEngineChoiceForTest(int uring_probe_errno) {
  Choice& choice = TheChoice();
  std::lock_guard<std::mutex> lock(choice.mutex);
  choice.probe.reset();
  if (uring_probe_errno != 0)
    choice.probe = Status::Errno(uring_probe_errno, "io_uring_queue_init");
  choice.warned = false;
  choice.chosen.reset();
}

const char* EngineKindName(EngineKind kind) {
  switch (kind) {
    case EngineKind::kAuto:
      return "auto";
    case EngineKind::kUring:
      return "io_uring";
    case EngineKind::kPosix:
      return "posix";
  }
  return "?";
}

Result<std::unique_ptr<Engine>> MakeEngine(EngineKind kind, uint32_t depth) {
  CHECK(depth >= 1);
  CHECK_LE(depth, kIoDepthMax);
  CHECK(kind != EngineKind::kAuto);  // the caller chooses first (ChooseEngineKind)
  if (kind == EngineKind::kUring) {
    Result<std::unique_ptr<Engine>> uring = internal::MakeUringEngine(depth);
    if (!uring.ok()) return uring.status();
    return WithFaults(std::move(*uring));
  }
  return WithFaults(internal::MakePosixEngine(depth));
}

std::unique_ptr<Engine> MakeThreadEngine(uint32_t depth) {
  Result<std::unique_ptr<Engine>> engine = MakeEngine(ChosenEngineKind(), depth);
  if (engine.ok()) return std::move(*engine);
  LOG_WARN(engine.status().ToString() + ": this thread uses the posix engine");
  Result<std::unique_ptr<Engine>> posix = MakeEngine(EngineKind::kPosix, depth);
  CHECK(posix.ok());
  return std::move(*posix);
}

namespace {

// Runs one op to completion on an idle engine and returns its result (bytes or -errno).
Result<int64_t> RunOne(Engine& engine, Op& op) {
  CHECK_EQ(engine.in_flight(), 0u);  // a synchronous helper must not steal another op's reap
  Op* ops[1] = {&op};
  FERRY_RETURN_IF_ERROR(engine.Submit(ops, 1));
  Op* done[1] = {nullptr};
  Result<size_t> reaped = engine.Reap(done, 1, 1);
  if (!reaped.ok()) return reaped.status();
  CHECK_EQ(*reaped, 1u);
  CHECK(done[0] == &op);
  return op.result;
}

// The largest op the helpers issue: a uint32_t length, kept a round size.
constexpr size_t kHelperOpMaxBytes = 1u << 30;

}  // namespace

Result<size_t> ReadAt(Engine& engine, int fd, uint64_t offset, char* buffer, size_t length) {
  size_t total = 0;
  while (total < length) {
    const size_t want = std::min(length - total, kHelperOpMaxBytes);
    Op op{OpKind::kRead, fd, offset + total, buffer + total, static_cast<uint32_t>(want), 0, 0};
    Result<int64_t> got = RunOne(engine, op);
    if (!got.ok()) return got.status();
    if (*got < 0)
      return Status::Errno(static_cast<int>(-*got), "read at " + std::to_string(offset + total));
    total += static_cast<size_t>(*got);
    if (static_cast<size_t>(*got) < want) break;  // end of file
  }
  CHECK_LE(total, length);
  return total;
}

Status WriteAt(Engine& engine, int fd, uint64_t offset, const char* buffer, size_t length) {
  size_t total = 0;
  while (total < length) {
    const size_t want = std::min(length - total, kHelperOpMaxBytes);
    // The engine never writes through `buffer`; Op holds a char* for reads and writes alike.
    Op op{OpKind::kWrite,
          fd,
          offset + total,
          const_cast<char*>(buffer + total),
          static_cast<uint32_t>(want),
          0,
          0};
    Result<int64_t> got = RunOne(engine, op);
    if (!got.ok()) return got.status();
    if (*got < 0)
      return Status::Errno(static_cast<int>(-*got), "write at " + std::to_string(offset + total));
    CHECK_EQ(static_cast<size_t>(*got), want);  // the engine retries short writes itself
    total += want;
  }
  return Status::Ok();
}

}  // namespace ferry::io
