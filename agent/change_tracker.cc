#include "agent/change_tracker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <optional>
#include <vector>

namespace ferry {

namespace {

// What is watched: every change to an entry's name, content or metadata, in files and in
// directories. Not FAN_DELETE_SELF and FAN_MOVE_SELF: a removal or a move is an event in the
// parent, with the name, and with FAN_REPORT_FID the kernel would queue one more event for
// every file renamed or removed anywhere on the file system (a receiver's temp file renamed into
// place, a million of them in a full stage beside the volume, overflowed the queue).
constexpr uint64_t kMask = FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_MODIFY |
                           FAN_ATTRIB | FAN_CLOSE_WRITE | FAN_ONDIR;

// Events that change a file's content or metadata through the name they report: the file's own
// handle is kept too (NameWrittenFile).
constexpr uint64_t kWrittenMask = FAN_MODIFY | FAN_ATTRIB | FAN_CLOSE_WRITE;

// The path the kernel gives an open file (its mount namespace's view).
Result<std::string> PathOf(int fd) {
  char link[64], path[PATH_MAX + 1];
  std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(link, path, PATH_MAX);
  if (n < 0) return Status::Errno(errno, "readlink " + std::string(link));
  return std::string(path, static_cast<size_t>(n));
}

}  // namespace

Result<std::unique_ptr<ChangeTracker>> ChangeTracker::Watch(const std::string& root,
                                                            const Options& options) {
  UniqueFd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return Status::Errno(errno, "change tracking: open " + root);
  // FAN_REPORT_FID besides: an event on a file also carries the file's own handle, so that a file
  // written through a name that is gone by the next Take() is still found (NameWrittenFile).
  const int fan = ::fanotify_init(
      FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME | FAN_REPORT_FID | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY);
  if (fan < 0) {
    const int e = errno;
    if (e == EPERM) {
      return Status::Make(
          Code::kPermission,
          "change tracking: fanotify needs CAP_SYS_ADMIN, which this process lacks");
    }
    return Status::Make(
        Code::kUnsupported,
        "change tracking: this kernel has no fanotify with FAN_REPORT_DFID_NAME and FAN_REPORT_FID (Linux 5.9+): " +
            std::string(std::strerror(e)));
  }
  UniqueFd fanotify(fan);
  if (::fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, kMask, root_fd.get(), nullptr) !=
      0) {
    const int e = errno;
    return Status::Make(
        e == EPERM ? Code::kPermission : Code::kUnsupported,
        "change tracking: cannot mark the file system of " + root +
            (e == EXDEV || e == ENODEV || e == EOPNOTSUPP
                 ? " (it reports no file handles, or is a subvolume fanotify cannot mark): "
                 : ": ") +
            std::strerror(e));
  }
  Result<std::string> path = PathOf(root_fd.get());
  if (!path.ok()) return path.status();
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop.valid()) return Status::Errno(errno, "change tracking: eventfd");
  std::unique_ptr<ChangeTracker> t(new ChangeTracker(std::move(fanotify), std::move(root_fd),
                                                     std::move(*path), std::move(stop), options));
  if (options.reader_thread) t->reader_ = std::thread([p = t.get()] { p->ReadLoop(); });
  return t;
}

ChangeTracker::ChangeTracker(UniqueFd fanotify, UniqueFd root, std::string root_path, UniqueFd stop,
                             const Options& options)
    : fanotify_(std::move(fanotify)),
      root_(std::move(root)),
      stop_(std::move(stop)),
      root_path_(std::move(root_path)),
      options_(options) {}

ChangeTracker::~ChangeTracker() {
  const uint64_t one = 1;
  (void)!::write(stop_.get(), &one, sizeof(one));
  if (reader_.joinable()) reader_.join();
}

void ChangeTracker::ReadLoop() {
  for (;;) {
    pollfd fds[2] = {{fanotify_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) {
      std::lock_guard<std::mutex> lock(mu_);
      GapLocked(std::string("the event queue could not be polled: ") + std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    DrainLocked();
  }
}

void ChangeTracker::GapLocked(const std::string& why) {
  if (gap_.empty()) gap_ = why;
  pending_.clear();
  written_.clear();
  names_ = 0;
}

// The part of `path` below `root` ("" for the root itself); nullopt when it is not beneath it.
static std::optional<std::string> Beneath(const std::string& path, const std::string& root) {
  if (path == root) return std::string();
  if (path.size() > root.size() && path.compare(0, root.size(), root) == 0 && (path[root.size()] == '/' || root == "/")) {
    return path.substr(root == "/" ? 1 : root.size() + 1);
  }
  return std::nullopt;
}

bool ChangeTracker::OutsideLocked(const std::string& handle) {
  auto it = outside_.find(handle);
  if (it != outside_.end()) return it->second;
  bool outside = false;
  std::vector<char> copy(handle.begin() + sizeof(__kernel_fsid_t), handle.end());
  UniqueFd dir(::open_by_handle_at(root_.get(), reinterpret_cast<file_handle*>(copy.data()), O_PATH | O_CLOEXEC));
  if (dir.valid()) {
    Result<std::string> path = PathOf(dir.get());
    outside = path.ok() && !Beneath(*path, root_path_).has_value();
  }
  if (outside_.size() < kVerdictsMax) outside_.emplace(handle, outside);
  return outside;
}

bool ChangeTracker::AddLocked(const std::string& handle, const std::string& name) {
  if (!gap_.empty()) return false;
  // Writes elsewhere on the file system (other volumes on the disk) are left out as they come,
  // not kept until Take(): they count neither against the bound nor in memory.
  if (OutsideLocked(handle)) return false;
  if (pending_[handle].insert(name).second) CountNameLocked();
  return gap_.empty();
}

void ChangeTracker::CountNameLocked() {
  if (++names_ > options_.max_names) {
    GapLocked("more than " + std::to_string(options_.max_names) +
              " changed names since the last stage");
  }
}

void ChangeTracker::DrainLocked() {
  alignas(fanotify_event_metadata) char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fanotify_.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN)
        GapLocked(std::string("the event queue could not be read: ") + std::strerror(errno));
      return;
    }
    // Events and their records are only 4-byte aligned (a name's padding): each header is
    // copied out before it is read.
    for (size_t at = 0; at + sizeof(fanotify_event_metadata) <= static_cast<size_t>(n);) {
      fanotify_event_metadata m;
      std::memcpy(&m, buffer + at, sizeof(m));
      if (m.event_len < sizeof(m) || at + m.event_len > static_cast<size_t>(n)) {
        GapLocked("an event did not fit what the queue gave");
        break;
      }
      const char* event = buffer + at;
      at += m.event_len;
      ++events_;
      if (m.vers != FANOTIFY_METADATA_VERSION) {
        GapLocked("the kernel's fanotify speaks another version");
        continue;
      }
      if (m.mask & FAN_Q_OVERFLOW) {
        GapLocked("the kernel's event queue overflowed");
        continue;
      }
      if (m.fd >= 0) ::close(m.fd);  // not with FAN_REPORT_DFID_NAME; never leak one
      const char* info = event + m.metadata_len;
      const char* end = event + m.event_len;
      bool seen = false, inside = false;
      std::string file_key;  // the handle of the file itself (FAN_EVENT_INFO_TYPE_FID)
      std::string dir_key, dir_name;  // the directory and name it was reported with, when kept
      while (info + sizeof(fanotify_event_info_fid) + sizeof(file_handle) <= end) {
        fanotify_event_info_header h;
        std::memcpy(&h, info, sizeof(h));
        if (h.len < sizeof(h) || info + h.len > end) break;
        const char* record_end = info + h.len;
        if (h.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME ||
            h.info_type == FAN_EVENT_INFO_TYPE_DFID || h.info_type == FAN_EVENT_INFO_TYPE_FID) {
          // fanotify_event_info_fid: the header, the fsid, then a struct file_handle and its bytes.
          const char* fsid = info + offsetof(fanotify_event_info_fid, fsid);
          const char* fh = info + offsetof(fanotify_event_info_fid, handle);
          file_handle handle;
          std::memcpy(&handle, fh, sizeof(handle));
          const size_t handle_len = sizeof(file_handle) + handle.handle_bytes;
          if (fh + handle_len > record_end) {
            GapLocked("an event's file handle did not fit its record");
            break;
          }
          std::string key(fsid, sizeof(__kernel_fsid_t));
          key.append(fh, handle_len);
          if (h.info_type == FAN_EVENT_INFO_TYPE_FID) {
            file_key = std::move(key);  // after the directory's record, if there is one
          } else {
            std::string name = ".";
            if (h.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) {
              const char* text = fh + handle_len;
              name.assign(text, ::strnlen(text, static_cast<size_t>(record_end - text)));
            }
            if (AddLocked(key, name)) {
              inside = true;
              dir_key = std::move(key);
              dir_name = std::move(name);
            }
            seen = true;
          }
        }
        info = record_end;
      }
      if (!file_key.empty() && (m.mask & FAN_ONDIR) != 0) {
        if (!seen) AddLocked(file_key, ".");  // a directory's own event, with its handle only
        seen = true;
      } else if (!file_key.empty()) {
        // A file's: kept when the event may have changed it through the name it reports, inside
        // the root. One with no name (a link count changed by a link or unlink, which events in
        // the directories report) is left out, as it was before the handle was asked for: from
        // elsewhere on the file system it would count against the bound.
        if (inside && (m.mask & kWrittenMask) != 0) {
          auto [it, added] = written_.try_emplace(std::move(file_key));
          it->second = Written{std::move(dir_key), std::move(dir_name)};
          if (added) CountNameLocked();
        }
        seen = true;
      }
      if (!seen) GapLocked("an event came without the directory it happened in");
    }
  }
}

ChangeTracker::Changes ChangeTracker::Take() {
  std::unordered_map<std::string, std::set<std::string>> taken;
  std::unordered_map<std::string, Written> written;
  std::unordered_map<std::string, std::string> paths;  // directory handle -> where it is now
  Changes out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    DrainLocked();
    taken.swap(pending_);
    written.swap(written_);
    outside_.clear();  // a directory moved in since: its whole subtree is the next stage's anyway
    out.gap = std::move(gap_);
    gap_.clear();
    out.events = events_;
    names_ = events_ = 0;
  }
  out.complete = out.gap.empty();
  if (!out.complete) return out;
  for (auto& [key, names] : taken) {
    // The handle after the fsid: a struct file_handle, copied to be aligned.
    std::vector<char> copy(key.begin() + sizeof(__kernel_fsid_t), key.end());
    UniqueFd dir(::open_by_handle_at(root_.get(), reinterpret_cast<file_handle*>(copy.data()),
                                     O_PATH | O_CLOEXEC));
    if (!dir.valid()) {
      if (errno == ESTALE || errno == ENOENT) continue;  // gone: its parent's delete is kept
      out.complete = false;
      out.gap = std::string("a changed directory could not be opened by its handle: ") +
                std::strerror(errno) +
                (errno == EPERM ? " (open_by_handle_at needs CAP_DAC_READ_SEARCH)" : "");
      out.dirs.clear();
      return out;
    }
    struct stat st;
    if (::fstat(dir.get(), &st) == 0 && st.st_nlink == 0)
      continue;  // removed since: its parent's delete is kept
    Result<std::string> path = PathOf(dir.get());
    if (!path.ok()) {
      out.complete = false;
      out.gap = "a changed directory's path could not be read: " + path.status().message();
      out.dirs.clear();
      return out;
    }
    std::optional<std::string> relative = Beneath(*path, root_path_);
    if (!relative) continue;  // elsewhere on the file system
    out.dirs[*relative].insert(names.begin(), names.end());
    paths.emplace(key, std::move(*relative));
  }
  for (const auto& [key, w] : written) {
    auto dir = paths.find(w.dir_key);
    if (std::string why = NameWrittenFile(key, w, dir == paths.end() ? nullptr : &dir->second, &out.dirs);
        !why.empty()) {
      out.complete = false;
      out.gap = std::move(why);
      out.dirs.clear();
      return out;
    }
  }
  return out;
}

// A file written since the last Take() (content or metadata), by its handle: when the
// name it was written through (in `dir`, where that directory is now) no longer names it, one of
// the names it has beneath the root goes into `dirs`, so that a file written through a name
// removed since (one of several hard links) is still listed by a name it has. "" when done (or
// the file is gone, or not the volume's), else why the interval is not complete.
std::string ChangeTracker::NameWrittenFile(const std::string& key, const Written& w, const std::string* dir,
                                           std::map<std::string, std::set<std::string>>* dirs) {
  std::vector<char> copy(key.begin() + sizeof(__kernel_fsid_t), key.end());
  UniqueFd file(::open_by_handle_at(root_.get(), reinterpret_cast<file_handle*>(copy.data()),
                                    O_PATH | O_CLOEXEC));
  if (!file.valid()) {
    if (errno == ESTALE || errno == ENOENT) return "";  // gone, with every name
    return std::string("a changed file could not be opened by its handle: ") + std::strerror(errno);
  }
  struct stat st;
  if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink == 0) return "";
  struct stat named;
  if (dir != nullptr && !w.name.empty()) {
    const std::string reported = dir->empty() ? w.name : *dir + "/" + w.name;
    if (::fstatat(root_.get(), reported.c_str(), &named, AT_SYMLINK_NOFOLLOW) == 0 &&
        named.st_dev == st.st_dev && named.st_ino == st.st_ino) {
      return "";  // the name it was written through names it still: listed already
    }
  }
  // The kernel's path for it: a name it has, when one is in the dentry cache.
  Result<std::string> path = PathOf(file.get());
  std::optional<std::string> relative;
  if (path.ok()) relative = Beneath(*path, root_path_);
  if (relative && !relative->empty() &&
      ::fstatat(root_.get(), relative->c_str(), &named, AT_SYMLINK_NOFOLLOW) == 0 &&
      named.st_dev == st.st_dev && named.st_ino == st.st_ino) {
    const size_t slash = relative->rfind('/');
    if (slash == std::string::npos) {
      (*dirs)[""].insert(*relative);
    } else {
      (*dirs)[relative->substr(0, slash)].insert(relative->substr(slash + 1));
    }
    return "";
  }
  return "a file changed through a name since removed has no name the daemon can find";
}

}  // namespace ferry
