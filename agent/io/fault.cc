#include "agent/io/fault.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "base/log.h"

namespace ferry::io {

namespace {

enum class FaultKind { kRead, kWrite, kSync, kAny };
enum class Action { kNone, kError, kShort, kStall };

struct FaultPlan {
  bool active = false;
  uint64_t at = 0, count = 1;
  FaultKind kind = FaultKind::kAny;
  Action action = Action::kError;
  int error = EIO;
  int stall_ms = 2000;
};

[[noreturn]] void BadSpec(const std::string& spec, const std::string& why) {
  std::fprintf(stderr, "ferry: FERRY_TEST_FAULTS='%s': %s\n", spec.c_str(), why.c_str());
  std::exit(1);
}

FaultPlan Parse(const char* text) {
  FaultPlan plan;
  if (text == nullptr || *text == '\0') return plan;
  const std::string spec = text;
  plan.active = true;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t end = std::min(spec.find(',', start), spec.size());
    const std::string item = spec.substr(start, end - start);
    start = end + 1;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) BadSpec(spec, "'" + item + "' is not KEY=VALUE");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    auto number = [&]() -> uint64_t {
      char* tail = nullptr;
      uint64_t n = std::strtoull(value.c_str(), &tail, 10);
      if (value.empty() || *tail != '\0') BadSpec(spec, key + " must be a number");
      return n;
    };
    if (key == "at") {
      plan.at = number();
    } else if (key == "count") {
      plan.count = number();
    } else if (key == "stall_ms") {
      plan.stall_ms = static_cast<int>(number());
    } else if (key == "kind") {
      if (value == "read")
        plan.kind = FaultKind::kRead;
      else if (value == "write")
        plan.kind = FaultKind::kWrite;
      else if (value == "sync")
        plan.kind = FaultKind::kSync;
      else if (value == "any")
        plan.kind = FaultKind::kAny;
      else
        BadSpec(spec, "kind must be read, write, sync or any");
    } else if (key == "error") {
      if (value == "EIO")
        plan.error = EIO;
      else if (value == "ENOSPC")
        plan.error = ENOSPC;
      else if (value == "short")
        plan.action = Action::kShort;
      else if (value == "stall")
        plan.action = Action::kStall;
      else
        BadSpec(spec, "error must be EIO, ENOSPC, short or stall");
    } else {
      BadSpec(spec, "unknown key '" + key + "' (at, error, kind, count, stall_ms)");
    }
  }
  if (plan.at == 0) BadSpec(spec, "at=N (the first operation to fail, from 1) is missing");
  return plan;
}

const FaultPlan& Plan() {
  static const FaultPlan plan = [] {
    FaultPlan p = Parse(std::getenv("FERRY_TEST_FAULTS"));
    if (p.active)
      LOG_WARN("FERRY_TEST_FAULTS is set: this process injects I/O faults (for tests only)");
    return p;
  }();
  return plan;
}

std::atomic<uint64_t> g_operations{0};

// What happens to this operation (`what` names it in the log line).
Action Decide(FaultKind kind, const char* what) {
  const FaultPlan& plan = Plan();
  if (!plan.active || (plan.kind != FaultKind::kAny && plan.kind != kind)) return Action::kNone;
  const uint64_t n = ++g_operations;
  if (n < plan.at || n >= plan.at + plan.count) return Action::kNone;
  std::string how =
      plan.action == Action::kError   ? std::string("fails with ") + std::strerror(plan.error)
      : plan.action == Action::kShort ? "is short"
                                      : "stalls " + std::to_string(plan.stall_ms) + " ms";
  LOG_WARN("fault injection: operation " + std::to_string(n) + " (" + what + ") " + how);
  if (plan.action == Action::kStall)
    std::this_thread::sleep_for(std::chrono::milliseconds(plan.stall_ms));
  return plan.action;
}

class FaultEngine : public Engine {
 public:
  explicit FaultEngine(std::unique_ptr<Engine> inner) : inner_(std::move(inner)) {}

  const char* name() const override { return inner_->name(); }
  uint32_t depth() const override { return inner_->depth(); }
  uint32_t in_flight() const override {
    return inner_->in_flight() + static_cast<uint32_t>(failed_.size());
  }
  Status RegisterBuffers(std::span<const iovec> buffers) override {
    return inner_->RegisterBuffers(buffers);
  }

  Status Submit(Op* const* ops, size_t count) override {
    pass_.clear();
    for (size_t i = 0; i < count; ++i) {
      Op* op = ops[i];
      const bool read = op->kind == OpKind::kRead, write = op->kind == OpKind::kWrite;
      const Action action = Decide(read    ? FaultKind::kRead
                                   : write ? FaultKind::kWrite
                                           : FaultKind::kSync,
                                   read    ? "read"
                                   : write ? "write"
                                           : "fdatasync");
      if (action == Action::kError ||
          (action == Action::kShort && op->kind == OpKind::kFdatasync)) {
        op->result = -Plan().error;
        failed_.push_back(op);
        continue;
      }
      if (action == Action::kShort && op->length > 1) {
        // A read that ends early; a write of which half reaches the file, then fails.
        shortened_.push_back({op, op->length});
        op->length /= 2;
      }
      pass_.push_back(op);
    }
    return pass_.empty() ? Status::Ok() : inner_->Submit(pass_.data(), pass_.size());
  }

  Result<size_t> Reap(Op** done, size_t max, size_t min) override {
    size_t got = 0;
    while (got < max && !failed_.empty()) {
      done[got++] = failed_.front();
      failed_.pop_front();
    }
    if (got == max || inner_->in_flight() == 0) return got;
    Result<size_t> more = inner_->Reap(done + got, max - got, min > got ? min - got : 0);
    if (!more.ok()) return more.status();
    for (size_t i = got; i < got + *more; ++i) Restore(done[i]);
    return got + *more;
  }

 private:
  void Restore(Op* op) {
    for (size_t i = 0; i < shortened_.size(); ++i) {
      if (shortened_[i].first != op) continue;
      op->length = shortened_[i].second;
      if (op->kind == OpKind::kWrite && op->result >= 0) op->result = -EIO;
      shortened_.erase(shortened_.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
  }

  std::unique_ptr<Engine> inner_;
  std::vector<Op*> pass_;
  std::deque<Op*> failed_;                           // completed by the plan, reaped first
  std::vector<std::pair<Op*, uint32_t>> shortened_;  // and their lengths as asked
};

// A flush through the plan: `call` runs unless the plan fails it.
template <typename Call>
int Flush(const char* what, Call call) {
  const Action action = Decide(FaultKind::kSync, what);
  if (action == Action::kError || action == Action::kShort) {
    errno = Plan().error;
    return -1;
  }
  return call();
}

// A transfer through the plan: an error, half of it (a read that ends early; a write of which
// half reaches the file, then fails), or `call` as asked.
template <typename Call>
ssize_t Transfer(FaultKind kind, const char* what, size_t length, Call call) {
  const Action action = Decide(kind, what);
  if (action == Action::kError) {
    errno = Plan().error;
    return -1;
  }
  if (action == Action::kShort && length > 1) {
    ssize_t n = call(length / 2);
    if (kind == FaultKind::kRead || n < 0) return n;
    errno = EIO;
    return -1;
  }
  return call(length);
}

}  // namespace

ssize_t Pread(int fd, void* buffer, size_t length, off_t offset) {
  return Transfer(FaultKind::kRead, "pread", length,
                  [&](size_t n) { return ::pread(fd, buffer, n, offset); });
}
ssize_t Pwrite(int fd, const void* buffer, size_t length, off_t offset) {
  return Transfer(FaultKind::kWrite, "pwrite", length,
                  [&](size_t n) { return ::pwrite(fd, buffer, n, offset); });
}
ssize_t Read(int fd, void* buffer, size_t length) {
  return Transfer(FaultKind::kRead, "read", length,
                  [&](size_t n) { return ::read(fd, buffer, n); });
}

std::unique_ptr<Engine> WithFaults(std::unique_ptr<Engine> engine) {
  if (!Plan().active) return engine;
  return std::make_unique<FaultEngine>(std::move(engine));
}

int Syncfs(int fd) {
  return Flush("syncfs", [fd] { return ::syncfs(fd); });
}
int Fsync(int fd) {
  return Flush("fsync", [fd] { return ::fsync(fd); });
}
int Fdatasync(int fd) {
  return Flush("fdatasync", [fd] { return ::fdatasync(fd); });
}

}  // namespace ferry::io
