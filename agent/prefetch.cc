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
    std::string open_parent;
    UniqueFd parent_fd;
    for (size_t i = begin; i < end; ++i) InspectOne(entries[i], &(*out)[i], &open_parent, &parent_fd);
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
