#include "agent/committer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>

#include "agent/io/fault.h"
#include "agent/path.h"
#include "base/bounds.h"
#include "base/check.h"

namespace ferry {

Committer::Committer(int root_fd) : root_fd_(root_fd) {
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
}

void Committer::Add(PendingRename pending) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return queue_.size() < 2 * kCommitGroupFilesMax || stop_; });
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

Status Committer::CommitGroup(std::vector<PendingRename>& group) {
  std::map<std::string, UniqueFd> parents;
  std::map<dev_t, int> group_file_systems;
  for (const PendingRename& p : group) {
    auto [it, inserted] = parents.try_emplace(p.parent);
    if (!inserted) continue;
    Result<UniqueFd> fd = OpenDirBeneath(root_fd_, p.parent);
    if (!fd.ok()) return fd.status();
    it->second = std::move(*fd);
    struct stat st;
    if (::fstat(it->second.get(), &st) != 0) return Status::Errno(errno, "stat '" + p.parent + "'");
    auto fs = file_systems_.find(st.st_dev);
    if (fs == file_systems_.end()) {
      UniqueFd keep(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 0));
      if (!keep.valid()) return Status::Errno(errno, "dup");
      fs = file_systems_.emplace(st.st_dev, std::move(keep)).first;
    }
    group_file_systems[st.st_dev] = fs->second.get();
  }
  // Durable first: a crash after the renames must not expose a final name without its data.
  for (auto& [dev, fd] : group_file_systems) {
    if (io::Syncfs(fd) != 0) return Status::Errno(errno, "flush the volume to disk (syncfs)");
  }
  for (const PendingRename& p : group) {
    int dir_fd = parents.at(p.parent).get();
    if (::renameat(dir_fd, p.temp_name.c_str(), dir_fd, p.final_name.c_str()) != 0) {
      return Status::Errno(errno, "rename into place '" + JoinPath(p.parent, p.final_name) + "'");
    }
  }
  return Status::Ok();
}

}  // namespace ferry
