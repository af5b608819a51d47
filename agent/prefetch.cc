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
    : root_fd_(root_fd), policy_(policy), pool_(threads) {}

void TargetInspector::Inspect(const std::vector<protocol::Entry>& entries, std::vector<Inspection>* out,
                              const std::function<void(size_t begin, size_t end)>& handle) {
  out->assign(entries.size(), Inspection{});
  auto inspect = [&](size_t begin, size_t end) {
    Parent parent;
    for (size_t i = begin; i < end; ++i) InspectOne(entries[i], &(*out)[i], &parent);
  };
  if (handle) {
    pool_.RunInOrder(entries.size(), kSliceEntries, inspect, handle);
  } else {
    pool_.Run(entries.size(), kSliceEntries, inspect);
  }
}

void TargetInspector::ListDirectories(const std::vector<std::string>& paths, const std::string& root_display,
                                      std::vector<Result<std::vector<std::string>>>* out) {
  out->assign(paths.size(), std::vector<std::string>{});
  pool_.Run(paths.size(), 1, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      Result<UniqueFd> dir = OpenDirBeneath(root_fd_, paths[i]);
      (*out)[i] = dir.ok() ? ListDirectory(dir->get(), JoinPath(root_display, paths[i]))
                           : Result<std::vector<std::string>>(dir.status());
    }
  });
}

void TargetInspector::MarkMade(const std::string& path) {
  std::lock_guard<std::mutex> lock(made_mutex_);
  made_.insert(path);
}

void TargetInspector::InspectOne(const protocol::Entry& e, Inspection* out, Parent* parent) {
  // The root, hard links (made at the end) and paths the receiver will refuse: left to it.
  if (e.path.empty() || e.hardlink_leader_plus1 != 0 || !ValidateRelativePath(e.path).ok()) return;
  auto [parent_path, name] = SplitParent(e.path);
  if (!parent->opened || parent->path != parent_path) {
    parent->fd.Reset();
    parent->path.assign(parent_path);
    parent->opened = true;
    {
      std::lock_guard<std::mutex> lock(made_mutex_);
      parent->made = made_.count(parent->path) != 0;
    }
    if (!parent->made) {
      Result<UniqueFd> dir = OpenDirBeneath(root_fd_, parent->path);
      if (dir.ok()) parent->fd = std::move(*dir);
    }
  }
  if (parent->made) {
    out->state = Inspection::State::kMissing;
    return;
  }
  if (!parent->fd.valid()) return;  // not a directory beneath the root (or gone)
  const std::string name_str(name);
  if (::fstatat(parent->fd.get(), name_str.c_str(), &out->st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) out->state = Inspection::State::kMissing;
    return;
  }
  out->state = Inspection::State::kPresent;
  if (MetadataMatchesStat(e, out->st, policy_) && (out->st.st_mode & S_IFMT) == TypeBits(e.type)) {
    if (xattr_cache_ != nullptr) {
      if (const std::vector<protocol::Xattr>* known = xattr_cache_->Find(out->st)) {
        out->xattrs = *known;  // ctime unchanged since a stage read or wrote them
        out->have_xattrs = true;
        return;
      }
    }
    Result<std::vector<protocol::Xattr>> xattrs = ReadXattrs(parent->fd.get(), name_str, policy_.xattr_filter);
    if (xattrs.ok()) {
      if (xattr_cache_ != nullptr) xattr_cache_->Remember(out->st, *xattrs);  // st: taken before
      out->xattrs = std::move(*xattrs);
      out->have_xattrs = true;
    }
  }
}

}  // namespace ferry
