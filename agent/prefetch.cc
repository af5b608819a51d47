#include "agent/prefetch.h"

#include <fcntl.h>
#include <unistd.h>

#include "agent/fs.h"
#include "agent/path.h"

namespace ferry {

namespace {
// Entries a thread takes at a time: consecutive entries share parents, so a slice opens few.
constexpr size_t kSliceEntries = 64;
}  // namespace

TargetInspector::TargetInspector(int root_fd, const MetadataPolicy& policy, size_t threads)
    : root_fd_(root_fd), policy_(policy) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

TargetInspector::~TargetInspector() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void TargetInspector::Inspect(const std::vector<protocol::Entry>& entries, std::vector<Inspection>* out) {
  out->assign(entries.size(), Inspection{});
  {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_ = &entries;
    out_ = out;
    next_ = 0;
    generation_ += 1;
  }
  changed_.notify_all();
  Work();
  std::unique_lock<std::mutex> lock(mutex_);
  entries_ = nullptr;  // helpers that wake late find nothing to do
  changed_.wait(lock, [&] { return working_ == 0; });
  out_ = nullptr;
}

void TargetInspector::Loop() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stop_ || (generation_ != seen && entries_ != nullptr); });
      if (stop_) return;
      seen = generation_;
      working_ += 1;
    }
    Work();
    std::lock_guard<std::mutex> lock(mutex_);
    working_ -= 1;
    changed_.notify_all();
  }
}

void TargetInspector::Work() {
  const std::vector<protocol::Entry>* entries;
  std::vector<Inspection>* out;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    entries = entries_;
    out = out_;
  }
  if (entries == nullptr) return;
  std::string open_parent;
  UniqueFd parent_fd;
  for (;;) {
    const size_t first = next_.fetch_add(kSliceEntries);
    if (first >= entries->size()) break;
    const size_t last = std::min(entries->size(), first + kSliceEntries);
    for (size_t i = first; i < last; ++i) InspectOne((*entries)[i], &(*out)[i], &open_parent, &parent_fd);
  }
}

void TargetInspector::InspectOne(const protocol::Entry& e, Inspection* out, std::string* open_parent,
                                 UniqueFd* parent_fd) {
  // The root, hard links (made at the end) and paths the receiver will refuse: left to it.
  if (e.path.empty() || e.hardlink_leader_plus1 != 0 || !ValidateRelativePath(e.path).ok()) return;
  auto [parent, name] = SplitParent(e.path);
  if (*open_parent != parent || (!parent_fd->valid() && open_parent->empty())) {
    parent_fd->Reset();
    open_parent->assign(parent);
    Result<UniqueFd> dir = OpenDirBeneath(root_fd_, parent);
    if (dir.ok()) *parent_fd = std::move(*dir);
  }
  if (!parent_fd->valid()) return;  // not a directory beneath the root (or gone)
  const std::string name_str(name);
  if (::fstatat(parent_fd->get(), name_str.c_str(), &out->st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) out->state = Inspection::State::kMissing;
    return;
  }
  out->state = Inspection::State::kPresent;
  if (MetadataMatchesStat(e, out->st, policy_) && (out->st.st_mode & S_IFMT) == TypeBits(e.type)) {
    Result<std::vector<protocol::Xattr>> xattrs = ReadXattrs(parent_fd->get(), name_str, policy_.xattr_filter);
    if (xattrs.ok()) {
      out->xattrs = std::move(*xattrs);
      out->have_xattrs = true;
    }
  }
}

}  // namespace ferry
