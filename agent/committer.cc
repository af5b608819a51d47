#include "agent/committer.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "agent/io/fault.h"
#include "agent/path.h"
#include "base/bounds.h"
#include "base/check.h"
#include "base/log.h"

namespace ferry {
namespace {

int64_t MillisecondsOf(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

std::atomic<size_t> g_unnamed_open{0};

// Descriptors left to everything else a process holds at once: sockets, the state cache, the
// inspector's and the streams' directories, a commit group's parents.
constexpr size_t kDescriptorsReserved = 256;

size_t UnnamedBudget() {
  static const size_t budget = [] {
    struct rlimit files;
    if (::getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur == RLIM_INFINITY) return size_t{512};
    const size_t limit = static_cast<size_t>(files.rlim_cur);
    return limit > kDescriptorsReserved ? (limit - kDescriptorsReserved) / 2 : 0;
  }();
  return budget;
}

// Lets go of replaced files on a thread of its own, one for the process: closing the last
// descriptor of an unlinked inode frees its blocks, and the syncfs after makes the journal
// commit that carries the frees (and a discard mount's discards) here, not in the next stage's
// first fsync. A new committer waits until it is done (AwaitIdle), so no stage overlaps the
// freeing of the one before. Never destroyed (a detached thread may still be at work while
// the process exits).
class Reaper {
 public:
  struct Batch {
    std::vector<std::pair<UniqueFd, UnnamedTicket>> files;
    std::vector<UniqueFd> file_systems;  // to syncfs once the files are closed
  };
  static Reaper& Get() {
    static Reaper* reaper = new Reaper;
    return *reaper;
  }
  void Free(Batch batch) {
    if (batch.files.empty()) return;
    std::lock_guard<std::mutex> lock(mutex_);
    queued_.push_back(std::move(batch));
    if (!started_) {
      std::thread([this] { Loop(); }).detach();
      started_ = true;
    }
    changed_.notify_all();
  }
  void AwaitIdle() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return queued_.empty() && !busy_; });
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return !queued_.empty(); });
      Batch batch = std::move(queued_.front());
      queued_.pop_front();
      busy_ = true;
      lock.unlock();
      batch.files.clear();  // closes them: the kernel frees each old content now
      // Not the fault seam's Syncfs: this is no stage's durability, and its errors are not
      // read (each descriptor is an open of its own, so it consumes no stage's error report).
      for (const UniqueFd& fs : batch.file_systems) (void)::syncfs(fs.get());
      lock.lock();
      busy_ = false;
      changed_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Batch> queued_;
  bool busy_ = false;
  bool started_ = false;
};

// Links the unnamed file `fd` at `name` in `dir_fd`: through its descriptor where the process
// may (CAP_DAC_READ_SEARCH), else through /proc/self/fd.
int LinkUnnamed(int fd, int dir_fd, const std::string& name) {
  static std::atomic<bool> empty_path{true};
  if (empty_path.load(std::memory_order_relaxed)) {
    if (::linkat(fd, "", dir_fd, name.c_str(), AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT && errno != EPERM) return -1;
    empty_path = false;
  }
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  return ::linkat(AT_FDCWD, proc.c_str(), dir_fd, name.c_str(), AT_SYMLINK_FOLLOW);
}
}  // namespace

UnnamedTicket UnnamedTicket::Take() {
  UnnamedTicket ticket;
  if (g_unnamed_open.fetch_add(1) < UnnamedBudget()) {
    ticket.held_ = true;
  } else {
    g_unnamed_open.fetch_sub(1);
  }
  return ticket;
}

UnnamedTicket::~UnnamedTicket() {
  if (held_) g_unnamed_open.fetch_sub(1);
}

UnnamedTicket& UnnamedTicket::operator=(UnnamedTicket&& other) noexcept {
  if (this != &other) {
    if (held_) g_unnamed_open.fetch_sub(1);
    held_ = other.held_;
    other.held_ = false;
  }
  return *this;
}

Committer::Committer(int root_fd) : root_fd_(root_fd) {
  Reaper::Get().AwaitIdle();  // the last stage's replaced files are freed before this one writes
  // The root's file system, sampled now: syncfs then reports every writeback error of the
  // session, even one another process saw first.
  struct stat st;
  UniqueFd root(::fcntl(root_fd_, F_DUPFD_CLOEXEC, 0));
  if (root.valid() && ::fstat(root.get(), &st) == 0) file_systems_.emplace(st.st_dev, std::move(root));
  thread_ = std::thread([this] { Loop(); });
}

Status Committer::Checkpoint() {
  Status s = Flush();
  if (!s.ok()) Abandon();
  return s;
}

void Committer::Abandon() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !busy_; });
  if (error_.ok()) error_ = Status::Aborted("stage abandoned");
  std::deque<PendingRename> queued;
  queued.swap(queue_);
  queued_bytes_ = 0;
  lock.unlock();
  for (const PendingRename& p : queued) {
    if (p.unnamed.valid()) continue;  // vanishes when closed
    Result<UniqueFd> dir = OpenDirBeneath(root_fd_, p.parent);
    if (dir.ok()) ::unlinkat(dir->get(), p.temp_name.c_str(), 0);
  }
}

Committer::~Committer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    changed_.notify_all();
  }
  thread_.join();
  Reaper::Batch batch{std::move(retired_), {}};
  for (const auto& [dev, fd] : file_systems_) {
    UniqueFd own(::openat(fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (own.valid()) batch.file_systems.push_back(std::move(own));
  }
  Reaper::Get().Free(std::move(batch));
}

void Committer::RetireOld(int dir_fd, const std::string& name) {
  UniqueFd old(::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!old.valid() || ::fstat(old.get(), &st) != 0) return;  // nothing there (or unreadable): rename as is
  // Another link keeps the content anyway; an empty file frees nothing.
  if (!S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_blocks == 0) return;
  // Past the bounds the rename frees it, as it would without this: nothing is let go while the
  // stage runs, where the freeing would compete with the stage's own writes and fsyncs.
  const uint64_t size_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  if (retired_.size() >= kRetiredFilesMax || retired_bytes_ + size_bytes > kRetiredBytesMax) return;
  UnnamedTicket ticket = UnnamedTicket::Take();
  if (!ticket.held()) return;  // no descriptors to spare: the rename frees it
  retired_.emplace_back(std::move(old), std::move(ticket));
  retired_bytes_ += size_bytes;
}

void Committer::Add(PendingRename pending) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (queue_.size() >= 2 * kCommitGroupFilesMax) {
    const auto start = std::chrono::steady_clock::now();
    changed_.wait(lock, [&] { return queue_.size() < 2 * kCommitGroupFilesMax || stop_; });
    add_waited_ += std::chrono::steady_clock::now() - start;
  }
  if (queue_.empty()) first_queued_ = std::chrono::steady_clock::now();
  queued_bytes_ += pending.size_bytes;
  queue_.push_back(std::move(pending));
  if (queue_.size() >= kCommitGroupFilesMax || queued_bytes_ >= kCommitGroupBytesMax) {
    changed_.notify_all();
  }
}

Status Committer::Flush() {
  std::unique_lock<std::mutex> lock(mutex_);
  flush_requested_ = true;
  changed_.notify_all();
  changed_.wait(lock, [&] { return (queue_.empty() && !busy_) || stop_; });
  flush_requested_ = false;
  FERRY_LOG(LogLevel::kDebug, "committer: the receiver waited " + std::to_string(MillisecondsOf(add_waited_)) +
                                  " ms in all for room in the queue");
  return error_;
}

void Committer::Loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    // A group is due when full, when flushed, or when its first file has waited long enough:
    // a slow stage (a rate limit, a slow link) keeps its finished files even if it is killed.
    auto due = [&] {
      return !queue_.empty() &&
             (flush_requested_ || queue_.size() >= kCommitGroupFilesMax || queued_bytes_ >= kCommitGroupBytesMax ||
              std::chrono::steady_clock::now() - first_queued_ >= std::chrono::milliseconds(kCommitGroupIntervalMs));
    };
    changed_.wait_for(lock, std::chrono::milliseconds(kCommitGroupIntervalMs / 4), [&] { return stop_ || due(); });
    if (stop_) return;
    if (!due()) continue;
    std::vector<PendingRename> group(std::make_move_iterator(queue_.begin()),
                                     std::make_move_iterator(queue_.end()));
    queue_.clear();
    queued_bytes_ = 0;
    busy_ = true;
    bool failed = !error_.ok();
    lock.unlock();
    Status s = failed ? Status::Ok() : CommitGroup(group);
    lock.lock();
    if (!s.ok() && error_.ok()) error_ = s;
    busy_ = false;
    changed_.notify_all();
  }
}

// One directory open at a time: a group of 2,048 files can span as many directories, and a
// descriptor for each at once ran a daemon limited to 256 out of them.
Status Committer::CommitGroup(std::vector<PendingRename>& group) {
  std::stable_sort(group.begin(), group.end(),
                   [](const PendingRename& a, const PendingRename& b) { return a.parent < b.parent; });
  std::map<dev_t, int> group_file_systems;
  for (size_t i = 0; i < group.size(); ++i) {
    if (i > 0 && group[i].parent == group[i - 1].parent) continue;
    Result<UniqueFd> dir = OpenDirBeneath(root_fd_, group[i].parent);
    if (!dir.ok()) return dir.status();
    struct stat st;
    if (::fstat(dir->get(), &st) != 0) return Status::Errno(errno, "stat '" + group[i].parent + "'");
    auto fs = file_systems_.find(st.st_dev);
    if (fs == file_systems_.end()) {
      UniqueFd keep(::fcntl(dir->get(), F_DUPFD_CLOEXEC, 0));
      if (!keep.valid()) return Status::Errno(errno, "dup");
      fs = file_systems_.emplace(st.st_dev, std::move(keep)).first;
    }
    group_file_systems[st.st_dev] = fs->second.get();
  }
  // Durable first: a crash after the renames must not expose a final name without its data.
  const auto start = std::chrono::steady_clock::now();
  for (auto& [dev, fd] : group_file_systems) {
    if (io::Syncfs(fd) != 0) return Status::Errno(errno, "flush the volume to disk (syncfs)");
  }
  const auto flushed = std::chrono::steady_clock::now();
  UniqueFd dir;
  for (size_t i = 0; i < group.size(); ++i) {
    PendingRename& p = group[i];
    if (i == 0 || p.parent != group[i - 1].parent) {
      Result<UniqueFd> opened = OpenDirBeneath(root_fd_, p.parent);
      if (!opened.ok()) return opened.status();
      dir = std::move(*opened);
    }
    FERRY_RETURN_IF_ERROR(PutInPlace(dir.get(), p));
  }
  if (LogEnabled(LogLevel::kDebug)) {
    uint64_t bytes = 0;
    for (const PendingRename& p : group) bytes += p.size_bytes;
    LogLine(LogLevel::kDebug, "commit group: " + std::to_string(group.size()) + " files, " + std::to_string(bytes) +
                                  " bytes; flush " + std::to_string(MillisecondsOf(flushed - start)) + " ms, into place " +
                                  std::to_string(MillisecondsOf(std::chrono::steady_clock::now() - flushed)) + " ms");
  }
  return Status::Ok();
}

Status Committer::PutInPlace(int dir_fd, PendingRename& p) {
  if (p.unnamed.valid()) {
    const bool placed = LinkUnnamed(p.unnamed.get(), dir_fd, p.final_name) == 0;
    // A name that appeared since the receiver looked is replaced, as a rename would: the file
    // is linked at its temp name and renamed over it.
    if (!placed && (errno != EEXIST || LinkUnnamed(p.unnamed.get(), dir_fd, p.temp_name) != 0)) {
      return Status::Errno(errno, "link into place '" + JoinPath(p.parent, p.final_name) + "'");
    }
    p.unnamed.Reset();
    p.ticket = UnnamedTicket();
    if (placed) return Status::Ok();
  }
  RetireOld(dir_fd, p.final_name);
  if (::renameat(dir_fd, p.temp_name.c_str(), dir_fd, p.final_name.c_str()) != 0) {
    return Status::Errno(errno, "rename into place '" + JoinPath(p.parent, p.final_name) + "'");
  }
  return Status::Ok();
}

}  // namespace ferry
