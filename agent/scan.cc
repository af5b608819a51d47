#include "agent/scan.h"

#include "agent/hash.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>

#include "agent/fs.h"
#include "agent/io/fault.h"
#include "base/bounds.h"
#include "base/check.h"
#include "base/parallel.h"

namespace ferry {
namespace {

using protocol::Entry;
using protocol::EntryType;

// Threads that scan directories besides the caller's own. Any directory listed goes to a shared
// stack and the next free thread takes it: with the root's subtrees side by side (its one
// helper before), a volume whose files sit under one top directory was scanned by one thread.
// Several stats in flight keep a cold disk busy; on a warm cache they spread over the cores.
constexpr size_t kScanHelpers = 3;
// Directories whose descriptors the stack holds while their subdirectories wait (one each):
// past it a subdirectory is opened by its path beneath the root. The stack is last in, first
// out, so it holds about the depth of the tree.
constexpr size_t kScanParentsHeldMax = 256;
// Entries described before they are handed out under the lock together: a directory of up to
// this many stays in one run of the manifest while several threads scan (one entry at a time,
// they interleaved theirs, and the receiver opened a parent per entry); the bound keeps a huge
// directory from being held in memory whole.
constexpr size_t kScanGroupEntries = 512;

bool TypeOf(mode_t mode, EntryType* type) {
  switch (mode & S_IFMT) {
    case S_IFREG: *type = EntryType::kFile; return true;
    case S_IFDIR: *type = EntryType::kDirectory; return true;
    case S_IFLNK: *type = EntryType::kSymlink; return true;
    case S_IFIFO: *type = EntryType::kFifo; return true;
    case S_IFCHR: *type = EntryType::kCharDevice; return true;
    case S_IFBLK: *type = EntryType::kBlockDevice; return true;
    case S_IFSOCK: *type = EntryType::kSocket; return true;
  }
  return false;
}

class Scanner {
 public:
  Scanner(const std::string& root, const ScanOptions& options, const EntrySink& sink)
      : root_(root), options_(options), sink_(sink) {}

  Result<ScanResult> Run();
  // ScanChanges: the partial manifest of `changed`. False (reason in full_walk_reason_) when
  // only a walk of everything is exact.
  // `linked`: the files with more than one link whose every name is in `changed`, with their
  // link count then.
  Result<ScanResult> RunPartial(const ChangedDirs& changed, size_t entries_max,
                                std::map<std::pair<uint64_t, uint64_t>, nlink_t> linked);
  const std::string& full_walk_reason() const { return full_walk_reason_; }

 private:
  // A partial manifest has every name of this linked file: as many as it had links before.
  struct Described;
  bool AllNamesKnown(const Described& d) const;
  // Opens the root and hands out its entry (id 0); the error when it cannot be read.
  Result<UniqueFd> EmitRoot(bool partial_listing);
  // The changed directories as a tree from the root: each node's changed names, and the nodes
  // of the changed directories below it.
  struct ChangeNode {
    std::set<std::string> names;
    std::map<std::string, ChangeNode> children;
  };
  // Emits the entries of a directory of a partial manifest: each changed name (with the whole
  // subtree of a directory), each child on the way to a changed directory (partial_listing),
  // then goes down into those children.
  void ScanPartialDirectory(int dir_fd, const std::string& path, const ChangeNode& node);
  // A directory whose own entry is out and whose entries are not: opened from `parent` (held
  // while any subdirectory of it waits), or by its path beneath the root when null.
  struct PendingDir {
    std::shared_ptr<const UniqueFd> parent;
    std::string name;
    std::string path;
    // A changed directory of a partial manifest: gone or replaced since the listing that named
    // it is the next stage's change. Below, as in a walk, only gone is.
    bool changed_top = false;
  };
  // Scans the directories of `start` and all below them, on the caller and kScanHelpers
  // threads taking directories off one stack; returns when all are done or the walk stopped.
  void Walk(int root_fd, std::vector<PendingDir> start);
  void WalkLoop(int root_fd);
  // Opens and scans one directory and stacks its subdirectories. False: stop the walk.
  bool ScanPending(int root_fd, PendingDir dir);
  // Lists the directory and emits its entries in name order, in groups of up to
  // kScanGroupEntries under one lock, and appends its subdirectories (name, path) to *subdirs.
  // A directory's entries stay together in the manifest while several threads emit: the
  // receiver opens each parent once, not once per entry. False: stop the walk.
  bool ScanDirectory(int dir_fd, const std::string& path,
                     std::vector<std::pair<std::string, std::string>>* subdirs);
  // Fills *entry from `st` and reads what lies beyond stat. False: skip it (error recorded).
  bool Describe(int dir_fd, const std::string& name, const std::string& path, const struct stat& st,
                Entry* entry);
  // entry->xattrs from the cache while the inode's ctime is the one it recorded, else read
  // (and remembered). False: skip the entry (vanished, or an error recorded).
  bool DescribeXattrs(int dir_fd, const std::string& name, const std::string& path,
                      const struct stat& st, Entry* entry);
  struct Described {
    Entry entry;
    dev_t dev;
    ino_t ino;
    nlink_t nlink;
  };
  // Gives each entry its id and hard-link leader and hands it to the sink, in order; clears
  // *group. False: the session's limit of entries is reached (error recorded).
  bool EmitGroup(std::vector<Described>* group);
  void Error(std::string message) {
    std::lock_guard<std::mutex> lock(mutex_);
    result_.errors.push_back(std::move(message));
  }

  std::string root_;
  const ScanOptions& options_;
  const EntrySink& sink_;
  std::mutex mutex_;  // guards what follows, and the sink's calls (one at a time, in id order)
  ScanResult result_;
  std::map<std::pair<dev_t, ino_t>, uint32_t> hardlink_leaders_;
  // The changed files, by identity (set before the walk): flagged changed wherever the walk
  // meets them (every name of a linked file; a file in a subtree sent whole, a directory moved).
  std::set<std::pair<dev_t, ino_t>> hinted_inodes_;
  void HintInodes(int root_fd, const ChangedDirs& changed);
  size_t link_names_ = 0;  // kept in options_.links_out
  // A partial manifest: every file has one name or all its names are in it (linked_), and at
  // most entries_max_ entries.
  std::map<std::pair<uint64_t, uint64_t>, nlink_t> linked_;
  bool partial_ = false;
  size_t entries_max_ = 0;
  std::string full_walk_reason_;  // why a partial manifest cannot be exact ("" while it can)
  // The walk's stack of directories and its threads' state.
  std::mutex walk_mutex_;
  std::condition_variable walk_changed_;
  std::vector<PendingDir> pending_;
  size_t walkers_busy_ = 0;
  bool walk_stopped_ = false;
  std::atomic<size_t> parents_held_{0};
  std::vector<PendingDir> whole_;  // RunPartial: changed directories, walked whole at the end
};

Result<UniqueFd> Scanner::EmitRoot(bool partial_listing) {
  UniqueFd root_fd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) {
    Status s = CheckSourceRoot(root_);
    return s.ok() ? Status::IoError("source '" + root_ + "' could not be opened") : s;
  }
  struct stat st;
  if (::fstat(root_fd.get(), &st) != 0) return Status::Errno(errno, "stat source '" + root_ + "'");
  Entry root_entry;
  if (!Describe(root_fd.get(), ".", "", st, &root_entry)) {
    return Status::IoError("cannot read source '" + root_ + "': " + result_.errors.back());
  }
  root_entry.partial_listing = partial_listing;
  result_.entries_count = 1;
  sink_(std::move(root_entry));
  return root_fd;
}

Result<ScanResult> Scanner::Run() {
  Result<UniqueFd> root_fd = EmitRoot(/*partial_listing=*/false);
  if (!root_fd.ok()) return root_fd.status();
  if (options_.changed_hint != nullptr) HintInodes(root_fd->get(), *options_.changed_hint);
  std::vector<PendingDir> start;
  start.push_back({nullptr, "", ""});
  Walk(root_fd->get(), std::move(start));
  std::lock_guard<std::mutex> lock(mutex_);
  return std::move(result_);
}

void Scanner::Walk(int root_fd, std::vector<PendingDir> start) {
  if (start.empty()) return;
  {
    std::lock_guard<std::mutex> lock(walk_mutex_);
    CHECK(pending_.empty());
    CHECK_EQ(walkers_busy_, 0u);
    std::reverse(start.begin(), start.end());  // taken from the back: the first one first
    pending_ = std::move(start);
  }
  WorkerPool walkers(kScanHelpers);
  walkers.Run(kScanHelpers + 1, 1, [&](size_t, size_t) { WalkLoop(root_fd); });
  std::lock_guard<std::mutex> lock(walk_mutex_);
  CHECK_EQ(walkers_busy_, 0u);
  pending_.clear();  // left by a stopped walk
}

void Scanner::WalkLoop(int root_fd) {
  std::unique_lock<std::mutex> lock(walk_mutex_);
  while (true) {
    walk_changed_.wait(lock, [&] { return walk_stopped_ || !pending_.empty() || walkers_busy_ == 0; });
    if (walk_stopped_ || pending_.empty()) break;  // stopped, or nothing left and nobody to add more
    PendingDir dir = std::move(pending_.back());
    pending_.pop_back();
    ++walkers_busy_;
    lock.unlock();
    const bool go_on = ScanPending(root_fd, std::move(dir));
    lock.lock();
    --walkers_busy_;
    if (!go_on) walk_stopped_ = true;
    walk_changed_.notify_all();
  }
  walk_changed_.notify_all();
}

bool Scanner::ScanPending(int root_fd, PendingDir dir) {
  UniqueFd fd;
  int open_errno = 0;
  if (dir.parent != nullptr) {
    fd = UniqueFd(::openat(dir.parent->get(), dir.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    open_errno = errno;
    dir.parent.reset();
  } else {
    Result<UniqueFd> opened = OpenDirBeneath(root_fd, dir.path);
    if (opened.ok()) fd = std::move(*opened);
    open_errno = opened.ok() ? 0 : opened.status().error_number();
  }
  if (!fd.valid()) {
    // Gone since its stat (a live source): like an entry that vanished before its stat, not an
    // error; its entry is out, and the next stage sees it gone. Anything else is named (and
    // makes a tracked stage walk instead).
    const bool replaced = open_errno == ENOTDIR || open_errno == ELOOP;
    if (open_errno != ENOENT && !(replaced && dir.changed_top)) {
      Error("open directory '" + JoinPath(root_, dir.path) + "': " + std::strerror(open_errno));
    }
    return true;
  }
  std::vector<std::pair<std::string, std::string>> subdirs;
  if (!ScanDirectory(fd.get(), dir.path, &subdirs)) return false;
  if (subdirs.empty()) return true;
  std::shared_ptr<const UniqueFd> parent;
  if (parents_held_.fetch_add(1) < kScanParentsHeldMax) {
    parent = std::shared_ptr<const UniqueFd>(new UniqueFd(std::move(fd)), [this](const UniqueFd* held) {
      delete held;
      parents_held_.fetch_sub(1);
    });
  } else {
    parents_held_.fetch_sub(1);
  }
  std::lock_guard<std::mutex> lock(walk_mutex_);
  for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) {
    pending_.push_back({parent, std::move(it->first), std::move(it->second)});
  }
  return true;
}

void Scanner::HintInodes(int root_fd, const ChangedDirs& changed) {
  for (const auto& [dir, names] : changed) {
    for (const std::string& name : names) {
      struct stat st;
      if (::fstatat(root_fd, JoinPath(dir, name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
        hinted_inodes_.insert({st.st_dev, st.st_ino});
      }
    }
  }
}

bool Scanner::AllNamesKnown(const Described& d) const {
  auto it = linked_.find({d.dev, d.ino});
  return it != linked_.end() && it->second == d.nlink;
}

bool Scanner::EmitGroup(std::vector<Described>* group) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Described& d : *group) {
    if (!full_walk_reason_.empty()) return false;
    if (partial_ && d.entry.type == EntryType::kFile && d.nlink > 1 && !AllNamesKnown(d)) {
      full_walk_reason_ = "'" + d.entry.path + "' changed and has " + std::to_string(d.nlink) +
                          " hard links (its other names may be in unchanged directories)";
      return false;
    }
    if (partial_ && result_.entries_count >= entries_max_) {
      full_walk_reason_ = "the changes span more than " + std::to_string(entries_max_) + " entries";
      return false;
    }
    if (result_.entries_count >= kEntriesPerSessionMax) {
      result_.errors.push_back("more than " + std::to_string(kEntriesPerSessionMax) + " entries: the rest is not synced");
      return false;
    }
    Entry& entry = d.entry;
    entry.id = static_cast<uint32_t>(result_.entries_count);
    if (entry.type == EntryType::kFile && d.nlink > 1) {
      auto [it, inserted] = hardlink_leaders_.try_emplace({d.dev, d.ino}, entry.id);
      if (!inserted) entry.hardlink_leader_plus1 = it->second + 1;
      if (options_.links_out != nullptr && !partial_ && link_names_ <= kLinkNamesMax) {
        if (++link_names_ > kLinkNamesMax) {
          options_.links_out->clear();  // too many to keep: a changed linked file makes a walk
        } else {
          (*options_.links_out)[{d.dev, d.ino}].insert(entry.path);
        }
      }
    }
    if (entry.type == EntryType::kFile && entry.hardlink_leader_plus1 == 0) result_.bytes_total += entry.size;
    result_.entries_count += 1;
    sink_(std::move(entry));
  }
  group->clear();
  return true;
}

bool Scanner::ScanDirectory(int dir_fd, const std::string& path,
                            std::vector<std::pair<std::string, std::string>>* subdirs) {
  Result<std::vector<std::string>> names = ListDirectory(dir_fd, JoinPath(root_, path));
  if (!names.ok()) {
    Error(names.status().ToString());
    return true;
  }
  std::vector<Described> group;
  group.reserve(std::min(names->size(), kScanGroupEntries));
  for (const std::string& name : *names) {
    if (options_.cancel != nullptr && options_.cancel->load(std::memory_order_relaxed)) {
      Error("scan cancelled");
      return false;
    }
    std::string child_path = JoinPath(path, name);
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) Error("stat '" + child_path + "': " + std::strerror(errno));
      continue;  // vanished between listing and stat: not an error
    }
    bool is_directory = S_ISDIR(st.st_mode);
    if (options_.excludes && options_.excludes->Excludes(child_path, is_directory)) continue;
    if (child_path.size() > kPathMaxBytes) {
      Error("'" + child_path.substr(0, 64) + "...' is longer than PATH_MAX");
      continue;
    }
    Described d{Entry(), st.st_dev, st.st_ino, st.st_nlink};
    if (!Describe(dir_fd, name, child_path, st, &d.entry)) continue;
    // By inode: every name of a hard-linked file the source changed through one of them.
    d.entry.changed = d.entry.type == EntryType::kFile && hinted_inodes_.count({st.st_dev, st.st_ino}) != 0;
    group.push_back(std::move(d));
    if (is_directory) subdirs->emplace_back(name, std::move(child_path));
    if (group.size() >= kScanGroupEntries && !EmitGroup(&group)) return false;
  }
  return EmitGroup(&group);
}

Result<ScanResult> Scanner::RunPartial(const ChangedDirs& changed, size_t entries_max,
                                      std::map<std::pair<uint64_t, uint64_t>, nlink_t> linked) {
  partial_ = true;
  entries_max_ = entries_max;
  linked_ = std::move(linked);
  ChangeNode tree;
  for (const auto& [dir, names] : changed) {
    ChangeNode* node = &tree;
    for (size_t start = 0; start < dir.size();) {
      size_t slash = dir.find('/', start);
      if (slash == std::string::npos) slash = dir.size();
      node = &node->children[dir.substr(start, slash - start)];
      start = slash + 1;
    }
    for (const std::string& name : names) {
      if (name != ".") node->names.insert(name);  // a directory's own entry is always sent
    }
  }
  Result<UniqueFd> root_fd = EmitRoot(/*partial_listing=*/true);
  if (!root_fd.ok()) return root_fd.status();
  // A changed file below a directory made or moved in comes with that directory's whole subtree,
  // where the walk flags it by identity: a write that kept its size and mtime (in the same
  // timestamp tick as the one before it, or set back) would otherwise be compared by those.
  HintInodes(root_fd->get(), changed);
  ScanPartialDirectory(root_fd->get(), "", tree);
  if (full_walk_reason_.empty()) Walk(root_fd->get(), std::move(whole_));
  std::lock_guard<std::mutex> lock(mutex_);
  return std::move(result_);
}

void Scanner::ScanPartialDirectory(int dir_fd, const std::string& path, const ChangeNode& node) {
  std::set<std::string> names = node.names;
  for (const auto& [name, child] : node.children) names.insert(name);
  std::vector<Described> group;
  std::vector<std::string> whole;  // changed directories: their whole subtrees follow
  std::vector<const std::pair<const std::string, ChangeNode>*> partial;  // on the way down
  for (const std::string& name : names) {
    if (!full_walk_reason_.empty()) return;
    std::string child_path = JoinPath(path, name);
    const bool changed = node.names.count(name) != 0;
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) {
        Error("stat '" + child_path + "': " + std::strerror(errno));
        continue;
      }
      // Gone. An excluded name is left alone on the target, whatever it was.
      const bool excluded = options_.excludes != nullptr && (options_.excludes->Excludes(child_path, false) ||
                                                             options_.excludes->Excludes(child_path, true));
      if (!changed || excluded) continue;  // a directory on the way that is gone: its parent says so
      Described d{Entry(), 0, 0, 1};
      d.entry.type = protocol::kEntryGone;
      d.entry.path = std::move(child_path);
      group.push_back(std::move(d));
      continue;
    }
    const bool is_directory = S_ISDIR(st.st_mode);
    if (options_.excludes && options_.excludes->Excludes(child_path, is_directory)) continue;
    if (!changed && !is_directory) continue;  // was a directory on the way: its parent's change says so
    if (child_path.size() > kPathMaxBytes) {
      Error("'" + child_path.substr(0, 64) + "...' is longer than PATH_MAX");
      continue;
    }
    Described d{Entry(), st.st_dev, st.st_ino, st.st_nlink};
    if (!Describe(dir_fd, name, child_path, st, &d.entry)) continue;
    d.entry.changed = changed && d.entry.type == EntryType::kFile;
    if (is_directory && changed) {
      whole.push_back(name);
    } else if (is_directory) {
      d.entry.partial_listing = true;
      partial.push_back(&*node.children.find(name));
    }
    group.push_back(std::move(d));
  }
  if (!EmitGroup(&group)) return;
  auto open_child = [&](const std::string& name, const std::string& child_path) {
    UniqueFd child(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    // Gone or replaced since its stat: the next stage sees that change.
    if (!child.valid() && errno != ENOENT && errno != ENOTDIR && errno != ELOOP) {
      Error("open directory '" + child_path + "': " + std::strerror(errno));
    }
    return child;
  };
  // The changed directories' subtrees: walked after the partial listing (Walk).
  for (const std::string& name : whole) whole_.push_back({nullptr, name, JoinPath(path, name), true});
  for (const auto* child_node : partial) {
    std::string child_path = JoinPath(path, child_node->first);
    UniqueFd child = open_child(child_node->first, child_path);
    if (child.valid()) ScanPartialDirectory(child.get(), child_path, child_node->second);
  }
}

bool Scanner::DescribeXattrs(int dir_fd, const std::string& name, const std::string& path,
                             const struct stat& st, Entry* entry) {
  XattrCache* cache = options_.xattr_cache;
  if (cache != nullptr) {
    // Unchanged ctime since a stage read them: the same xattrs (any xattr or ACL change moves it).
    if (const std::vector<protocol::Xattr>* known = cache->Find(st)) {
      entry->xattrs = *known;
      return true;
    }
  }
  Result<std::vector<protocol::Xattr>> xattrs = ReadXattrs(dir_fd, name, options_.xattr_filter);
  if (!xattrs.ok()) {
    if (xattrs.status().code() == Code::kNotFound) return false;  // vanished
    Error("xattrs of '" + path + "': " + xattrs.status().ToString());
    return false;
  }
  // `st` was taken before the xattrs were read: a change in between leaves a newer ctime.
  if (cache != nullptr) cache->Remember(st, *xattrs);
  entry->xattrs = std::move(*xattrs);
  return true;
}

bool Scanner::Describe(int dir_fd, const std::string& name, const std::string& path,
                       const struct stat& st, Entry* entry) {
  if (!TypeOf(st.st_mode, &entry->type)) {
    Error("'" + path + "' has an unknown file type");
    return false;
  }
  entry->path = path;
  entry->mode = st.st_mode & 07777;
  entry->uid = st.st_uid;
  entry->gid = st.st_gid;
  entry->mtime_sec = st.st_mtim.tv_sec;
  entry->mtime_nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  if (entry->type == EntryType::kFile) entry->size = static_cast<uint64_t>(st.st_size);
  if (entry->type == EntryType::kCharDevice || entry->type == EntryType::kBlockDevice) {
    entry->rdev = st.st_rdev;
  }
  if (entry->type == EntryType::kSymlink) {
    char target[kSymlinkTargetMaxBytes + 1];
    ssize_t n = ::readlinkat(dir_fd, name.c_str(), target, sizeof(target));
    if (n <= 0 || static_cast<size_t>(n) > kSymlinkTargetMaxBytes) {
      Error("read symlink '" + path + "': " + (n < 0 ? std::strerror(errno) : "target too long"));
      return false;
    }
    entry->link_target.assign(target, static_cast<size_t>(n));
  }
  if (!DescribeXattrs(dir_fd, name, path, st, entry)) return false;
  if (options_.content_hash && entry->type == EntryType::kFile) {
    Result<protocol::Hash128> hash = HashFileContent(dir_fd, name, path);
    if (!hash.ok()) {
      if (hash.status().code() != Code::kNotFound) Error(hash.status().ToString());
      return false;
    }
    entry->has_content_hash = true;
    entry->content_hash = *hash;
  }
  return true;
}

}  // namespace

Status CheckSourceRoot(const std::string& root) {
  UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.valid()) return Status::Ok();
  if (errno == ENOENT) return Status::NotFound("source '" + root + "' does not exist");
  if (errno == ENOTDIR) {
    return Status::InvalidArgument("source '" + root + "' is not a directory (an image file or device syncs with --block)");
  }
  return Status::Errno(errno, "cannot read source '" + root + "'");
}

ScanOptions ScanOptionsFor(const SyncOptions& sync, const ExcludeList* excludes) {
  ScanOptions options;
  options.content_hash = sync.checksum;
  options.xattr_filter = XattrFilter{::geteuid() == 0, sync.no_selinux, sync.no_xattrs};
  options.excludes = excludes;
  options.block = sync.block;
  return options;
}

Result<ScanResult> ScanTree(const std::string& root, const ScanOptions& options, const EntrySink& sink) {
  return Scanner(root, options, sink).Run();
}

namespace {

// The changed names that are files with more than one link, or were names of one (`links`)
// and are gone, and for each such file its names from `links` and `changed` that still name it.
// A file with as many as its link count has them all: they are added to `changed`, the file to
// `linked`, and `links` keeps them. A gone name matters as much as a present one: the source may
// have written the file through it before removing it (the file left with one name, or more in
// directories nothing else changed in), and only its other names still show the new content.
void AddLinkedNames(int root_fd, ChangedDirs* changed, LinkNames* links,
                    std::map<std::pair<uint64_t, uint64_t>, nlink_t>* linked) {
  std::map<std::pair<uint64_t, uint64_t>, std::set<std::string>> files;
  std::map<std::string, std::pair<uint64_t, uint64_t>> known;  // links by name, made when needed
  for (const auto& [dir, names] : *changed) {
    for (const std::string& name : names) {
      if (name == ".") continue;
      std::string path = JoinPath(dir, name);
      struct stat st;
      if (::fstatat(root_fd, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT || links == nullptr || links->empty()) continue;
        if (known.empty()) {
          for (const auto& [id, paths] : *links) {
            for (const std::string& p : paths) known.emplace(p, id);
          }
        }
        if (auto it = known.find(path); it != known.end()) files[it->second];
        continue;
      }
      if (!S_ISREG(st.st_mode) || st.st_nlink < 2) continue;
      files[{st.st_dev, st.st_ino}].insert(std::move(path));
    }
  }
  for (auto& [id, names] : files) {
    if (links != nullptr) {
      if (auto it = links->find(id); it != links->end()) names.insert(it->second.begin(), it->second.end());
    }
    std::set<std::string> now;  // the names that name this file now, beneath the root
    nlink_t nlink = 0;
    for (const std::string& path : names) {
      auto [parent, name] = SplitParent(path);
      Result<UniqueFd> dir = OpenDirBeneath(root_fd, parent);  // no symlink followed on the way
      struct stat st;
      if (dir.ok() && ::fstatat(dir->get(), std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISREG(st.st_mode) && st.st_dev == id.first && st.st_ino == id.second) {
        now.insert(path);
        nlink = st.st_nlink;
      }
    }
    for (const std::string& path : now) {
      auto [parent, name] = SplitParent(path);
      (*changed)[std::string(parent)].insert(std::string(name));
    }
    // A name it does not know: the partial scan meets the file with more links than names and
    // says the stage must walk.
    if (now.empty() || now.size() != nlink) continue;
    linked->emplace(id, nlink);
    if (links == nullptr) continue;
    if (nlink > 1) {
      (*links)[id] = std::move(now);
    } else {
      links->erase(id);  // one name left: no longer a linked file
    }
  }
}

}  // namespace

Result<std::vector<protocol::Entry>> ScanChanges(const std::string& root, const ScanOptions& options,
                                                 const ChangedDirs& changed, size_t entries_max, LinkNames* links) {
  std::vector<Entry> entries;
  EntrySink sink = [&](Entry&& entry) { entries.push_back(std::move(entry)); };
  ChangedDirs all = changed;
  std::map<std::pair<uint64_t, uint64_t>, nlink_t> linked;
  {
    UniqueFd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (root_fd.valid()) AddLinkedNames(root_fd.get(), &all, links, &linked);
  }
  Scanner scanner(root, options, sink);
  Result<ScanResult> scanned = scanner.RunPartial(all, entries_max, std::move(linked));
  if (!scanned.ok()) return scanned.status();
  if (!scanner.full_walk_reason().empty()) return Status::Make(Code::kUnsupported, scanner.full_walk_reason());
  // A walk reports what it cannot read as the stage's errors (and then deletes nothing).
  if (!scanned->errors.empty()) return Status::Make(Code::kUnsupported, scanned->errors.front());
  return entries;
}

Result<protocol::Hash128> HashFileContent(int dir_fd, const std::string& name, const std::string& display) {
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return Status::Errno(errno, "open '" + display + "' to hash it");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::Errno(errno, "stat '" + display + "' to hash it");
  // Data regions are read; holes are hashed as zeros from memory, without reading them (a read
  // of a hole fills the page cache with zero pages: seconds for a sparse disk image).
  static const std::string zeros(kDataChunkMaxBytes, '\0');
  Xxh3Hasher hasher;
  std::string buffer(kDataChunkMaxBytes, '\0');
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  auto hash_zeros = [&](uint64_t from, uint64_t to) {
    for (uint64_t at = from; at < to;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(to - at, zeros.size()));
      hasher.Update(zeros.data(), n);
      at += n;
    }
  };
  uint64_t offset = 0;
  while (offset < size) {
    uint64_t start = 0, stop = 0;
    Result<bool> more = NextDataRegion(fd.get(), offset, size, &start, &stop);
    if (!more.ok()) return more.status().Annotate("hash '" + display + "'");
    if (!*more) break;
    hash_zeros(offset, start);
    for (offset = start; offset < stop;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(stop - offset, buffer.size()));
      ssize_t n = io::Pread(fd.get(), buffer.data(), want, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::Errno(errno, "read '" + display + "'");
      if (n == 0) return hasher.Finish();  // it shrank: the hash of what is there, which will not match
      hasher.Update(buffer.data(), static_cast<size_t>(n));
      offset += static_cast<uint64_t>(n);
    }
  }
  hash_zeros(offset, size);
  return hasher.Finish();
}

}  // namespace ferry
