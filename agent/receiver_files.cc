// Receiver, second half: file content (DATA, FILE_END) and the end of the stage (hard links,
// deletions, directory metadata, durability). See receiver.h.
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "agent/io/fault.h"
#include "agent/receiver.h"
#include "base/bounds.h"
#include "base/check.h"
#include "base/log.h"

namespace ferry {

using protocol::Entry;
using protocol::EntryType;
using protocol::FileOutcome;
using protocol::ItemAction;

void Receiver::DiscardOpenFile(bool keep_partial) {
  if (!open_file_) return;
  if (keep_partial && open_file_->checkpoint > 0) {
    open_file_.reset();
    return;
  }
  // A file patched in place stays as it is: dirty in the state cache and with an mtime no
  // source has, so the next stage hashes it again and finishes it.
  Result<int> dir_fd = ParentFd(open_file_->parent);
  if (dir_fd.ok() && !open_file_->temp_name.empty()) ::unlinkat(*dir_fd, open_file_->temp_name.c_str(), 0);
  open_file_.reset();
}

Status Receiver::HandleData(const Frame& frame) {
  Result<protocol::Data> data = protocol::Data::Decode(frame.payload);
  if (!data.ok()) return data.status();
  if (data->id >= entries_.size() || file_state_[data->id] != kFileNeeded) {
    return Status::Protocol("DATA for entry " + std::to_string(data->id) + ", which was not asked for");
  }
  if (bases_.count(data->id) != 0) {
    return Status::Protocol("DATA for entry " + std::to_string(data->id) + " before its PATCH");
  }
  if (!open_file_ || open_file_->id != data->id) {  // a file sent whole
    return HandleWholeRange(data->id, data->offset, data->bytes, 0, &control_dir_);
  }
  OpenFile& f = *open_file_;
  const Entry e = entries_.Get(f.id);
  if (f.patcher) return Status::Protocol("DATA for entry " + std::to_string(f.id) + ", which is patched by delta");
  // Blocks arrive in offset order, inside the size the manifest announced.
  if (data->offset < f.next_offset || data->offset + data->bytes.size() > e.size) {
    return Status::Corruption("DATA chunk at offset " + std::to_string(data->offset) +
                              " outside '" + e.path + "' or out of order");
  }
  FERRY_RETURN_IF_ERROR(CheckPatchRange(data->offset, data->bytes.size(), "DATA"));
  for (size_t done = 0; done < data->bytes.size();) {
    ssize_t n = io::Pwrite(f.fd.get(), data->bytes.data() + done, data->bytes.size() - done,
                         static_cast<off_t>(data->offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return TargetError(Status::Errno(errno, "write"), e.path);
    done += static_cast<size_t>(n);
  }
  for (size_t at = 0; at < data->bytes.size(); at += f.block_size) {
    f.leaves[(data->offset + at) / f.block_size] = BlockHash(data->bytes.substr(at, f.block_size));
  }
  f.next_offset = data->offset + data->bytes.size();
  progress_->bytes_sent += data->bytes.size();
  f.bytes_written += data->bytes.size();
  return Status::Ok();
}

Status Receiver::HandleFileEnd(const Frame& frame) {
  Result<protocol::FileEnd> end = protocol::FileEnd::Decode(frame.payload);
  if (!end.ok()) return end.status();
  if (end->id >= entries_.size() || file_state_[end->id] != kFileNeeded) {
    return Status::Protocol("FILE_END for entry " + std::to_string(end->id) + ", which was not asked for");
  }
  bool whole = false;  // sent whole: its FILE_END may come while a patched file is open
  {
    std::lock_guard<std::mutex> lock(incoming_mutex_);
    whole = incoming_.count(end->id) != 0 || (end->id < whole_needed_.size() && (whole_needed_[end->id] || whole_ended_[end->id]));
  }
  if (whole) return EndWholeFile(*end, &control_dir_);  // counted there, with the lanes'
  if (open_file_ && open_file_->id != end->id) return Status::Protocol("FILE_END for a file not open");
  if (bases_.count(end->id) != 0) {
    if (end->outcome == FileOutcome::kComplete || end->outcome == FileOutcome::kChanged) {
      return Status::Protocol("FILE_END for entry " + std::to_string(end->id) + " before its PATCH");
    }
    TakeBasis(end->id);  // vanished or unreadable: the basis is not needed
  }
  file_state_[end->id] = kFileFinished;
  CountFileEnd(*end, entries_.path(end->id));
  if (!open_file_) {  // given up before its PATCH
    if (end->outcome == FileOutcome::kComplete || end->outcome == FileOutcome::kChanged) {
      return Status::Protocol("FILE_END for entry " + std::to_string(end->id) + ", which was never sent");
    }
    progress_->bytes_skipped += entries_.file_size(end->id);
    return Status::Ok();
  }
  progress_->bytes_skipped += entries_.file_size(end->id) - std::min(entries_.file_size(end->id), open_file_->bytes_written);
  switch (end->outcome) {
    case FileOutcome::kVanished:
    case FileOutcome::kReadError:
      DiscardOpenFile();
      return Status::Ok();
    case FileOutcome::kComplete:
    case FileOutcome::kChanged:
      return FinishFile(*end);
  }
  return Status::Ok();
}

void Receiver::CountFileEnd(const protocol::FileEnd& end, std::string_view path) {
  needs_finished_ += 1;
  if (end.outcome == FileOutcome::kComplete || end.outcome == FileOutcome::kChanged) files_arrived_ += 1;
  progress_->files_sent += 1;
  if (end.outcome == FileOutcome::kVanished) {
    std::lock_guard<std::mutex> lock(finish_mutex_);  // the lanes count files sent whole
    figures_.files_vanished += 1;
  }
  if (end.outcome == FileOutcome::kReadError) {
    CountFailed();
    LOG_WARN("sender could not read '" + std::string(path) + "': " + end.message);
  }
}

Status Receiver::FinishFile(const protocol::FileEnd& end) {
  OpenFile& f = *open_file_;
  const Entry e = entries_.Get(f.id);
  if (end.size != e.size) return Status::Corruption("FILE_END size differs from the manifest for '" + e.path + "'");
  std::vector<Hash128> leaves;
  const bool rsync = f.patcher != nullptr;
  if (rsync) {
    Result<std::vector<Hash128>> patched = FinishRsync(end);
    if (!patched.ok()) return patched.status();
    leaves = std::move(*patched);
  } else {
    leaves = std::move(f.leaves);
  }
  // A file that changed while librsync read it has no root to check; its frames' checksums
  // stand, and the next stage sends it again.
  bool verifiable = !(rsync && end.outcome == FileOutcome::kChanged);
  if (verifiable && HashTree(leaves).Root() != end.content_hash) {
    return Status::Corruption("content hash mismatch for '" + e.path + "' (damaged in transit)");
  }
  if (options_.block) return FinishBlockVolume(end, std::move(leaves));
  if (::ftruncate(f.fd.get(), static_cast<off_t>(e.size)) != 0) {
    return TargetError(Status::Errno(errno, "set size"), e.path);
  }
  // A file that changed while it was read gets an mtime the source will not have, so the next
  // stage sees it as changed and sends it again.
  timespec mtime = EntryMtime(e);
  if (end.outcome == FileOutcome::kChanged) {
    std::lock_guard<std::mutex> lock(finish_mutex_);
    figures_.files_changed_during_read += 1;
    mtime = JustBefore(mtime);
  }
  Result<int> dir_fd = ParentFd(f.parent);
  if (!dir_fd.ok()) return TargetError(dir_fd.status(), f.parent);
  const std::string name(SplitParent(e.path).second);
  const bool in_place = f.temp_name.empty();
  // In place, the source's mtime is what says "up to date": it goes on only once the new
  // blocks are on disk, so a crash cannot leave old blocks under the new mtime.
  if (in_place && io::Fdatasync(f.fd.get()) != 0) {
    return TargetError(Status::Errno(errno, "flush to disk (fdatasync)"), e.path);
  }
  FERRY_RETURN_IF_ERROR(TargetError(
      ApplyFileMetadata(f.fd.get(), *dir_fd, in_place ? name : f.temp_name, e, mtime, policy_), e.path));
  // Start writeback now so the commit group's flush (or the stage's syncfs) finds little left.
  ::sync_file_range(f.fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
  {
    std::lock_guard<std::mutex> lock(finish_mutex_);
    figures_.files_written += 1;
    figures_.bytes_written += f.bytes_written;
    // Only verified leaves go to the state cache: it must never vouch for content it has not seen.
    if (verifiable && e.size >= kDeltaMinBytes && leaves.size() <= kBlocksPerFileMax) {
      written_.push_back({f.id, f.block_size, std::move(leaves), mtime});
    }
    if (xattr_cache_) xattrs_written_.push_back(f.id);
  }
  // In place: durable with the stage's syncfs, before the cache calls it clean.
  if (!in_place) committer_->Add({f.parent, f.temp_name, name, f.bytes_written, UniqueFd(), UnnamedTicket()});
  open_file_.reset();  // closes the descriptor; the committer owns the temp name now
  return Status::Ok();
}

// An image file takes the source's size, mode and mtime; a device only its content.
Status Receiver::FinishBlockVolume(const protocol::FileEnd& end, std::vector<Hash128> leaves) {
  OpenFile& f = *open_file_;
  const Entry e = entries_.Get(f.id);
  struct stat st;
  if (::fstat(f.fd.get(), &st) != 0) return TargetError(Status::Errno(errno, "stat"), "");
  if (S_ISREG(st.st_mode)) {
    if (::ftruncate(f.fd.get(), static_cast<off_t>(e.size)) != 0) return TargetError(Status::Errno(errno, "set size"), "");
    timespec mtime = end.outcome == FileOutcome::kChanged ? JustBefore(EntryMtime(e)) : EntryMtime(e);
    FERRY_RETURN_IF_ERROR(TargetError(ApplyFileMetadata(f.fd.get(), -1, "", e, mtime, policy_), ""));
    std::lock_guard<std::mutex> lock(finish_mutex_);
    if (leaves.size() <= kBlocksPerFileMax) written_.push_back({f.id, f.block_size, std::move(leaves), mtime});
  }
  std::lock_guard<std::mutex> lock(finish_mutex_);
  if (end.outcome == FileOutcome::kChanged) figures_.files_changed_during_read += 1;
  figures_.files_written += 1;
  figures_.bytes_written += f.bytes_written;
  open_file_.reset();
  return Status::Ok();
}

Status Receiver::Finish() {
  if (options_.block) {  // one object: no links, deletions or directories
    FERRY_RETURN_IF_ERROR(SyncVolume());
    FERRY_RETURN_IF_ERROR(RecordWritten());
    return FlushReplies();
  }
  FERRY_RETURN_IF_ERROR(BreakStaleLinks());
  if (committer_) FERRY_RETURN_IF_ERROR(TargetError(committer_->Flush(), ""));
  FERRY_RETURN_IF_ERROR(LinkFollowers());
  if (root_fd_ < 0) {
    // A dry run into a target that does not exist: nothing there to delete.
  } else if (scan_incomplete_) {
    LOG_WARN("the sender could not read all of its tree: nothing deleted from '" + root_display_ + "'");
  } else {
    Result<int> root = ParentFd("");
    if (!root.ok()) return TargetError(root.status(), "");
    // A partial manifest of only the root is a stage that found nothing changed.
    if (!options_.partial) FERRY_RETURN_IF_ERROR(RefuseEmptySourceWipe(*root));
    FERRY_RETURN_IF_ERROR(DeleteGone());
    FERRY_RETURN_IF_ERROR(Sweep());
  }
  if (cache_ != nullptr && !options_.dry_run) {
    // Every partial file was finished or swept: none is left to resume.
    if (Status s = cache_->DropPartials(root_dev_, root_ino_); !s.ok()) LOG_WARN(s.ToString());
  }
  FERRY_RETURN_IF_ERROR(ApplyDirectoryMetadata());
  FERRY_RETURN_IF_ERROR(SyncVolume());
  FERRY_RETURN_IF_ERROR(RecordWritten());
  RememberWrittenXattrs();
  KeepBase();
  return FlushReplies();
}

Status Receiver::DropBase() {
  if (cache_ == nullptr || options_.dry_run || options_.block) return Status::Ok();
  return cache_->DropBase(root_dev_, root_ino_).Annotate("state cache of '" + root_display_ + "'");
}

// After everything is durable: a token naming the target as this stage left it. None when the
// stage left part of the tree undone (a source it could not read all of, so nothing was deleted;
// a file it failed to write): a partial stage from here would not look there again.
void Receiver::KeepBase() {
  if (cache_ == nullptr || options_.dry_run || options_.block) return;
  if (scan_incomplete_ || figures_.files_failed != 0) return;
  uint64_t token = 0;
  if (::getrandom(&token, sizeof(token), 0) != sizeof(token) || token == 0) return;
  if (Status s = cache_->SetBase(root_dev_, root_ino_, token); !s.ok()) {
    LOG_WARN("the next stage walks the whole tree: " + s.ToString());
    return;
  }
  figures_.base_token = token;
}

Status Receiver::DeleteGone() {
  for (const uint32_t id : gone_) {
    const std::string path(entries_.path(id));
    auto [parent, name] = SplitParent(path);
    if (missing_dir_[ids_by_path_.at(PathKey(parent))] == kDirAbsent) continue;  // dry run into a new directory
    Result<int> dir_fd = ParentFd(parent);
    if (!dir_fd.ok()) {
      int error = dir_fd.status().error_number();
      if (error == ENOENT || error == ENOTDIR || error == ELOOP) continue;  // nothing there to delete
      return TargetError(dir_fd.status(), std::string(parent));
    }
    const std::string name_str(name);
    struct stat st;
    if (::fstatat(*dir_fd, name_str.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // not there either
    const bool is_dir = S_ISDIR(st.st_mode);
    if (excludes_.Excludes(path, is_dir)) continue;
    if (is_dir) CountDeletedTree(*dir_fd, name_str, path);
    Item(ItemAction::kDelete, is_dir ? EntryType::kDirectory : EntryType::kFile, path);
    figures_.entries_deleted += 1;
    if (options_.dry_run) continue;
    FERRY_RETURN_IF_ERROR(TargetError(RemoveTree(*dir_fd, name_str, Display(path)), path));
  }
  return Status::Ok();
}

// As RecordWritten: each file ferry wrote, if its size and mtime are still its entry's (a file
// that changed while it was read got another mtime, and comes again next stage), is remembered under its identity as it is now (the last write, the rename or link into
// place, came before this stat). Its xattrs are what ferry wrote: the wanted ones of its entry
// (the others removed). A file given some is read back instead (a chmod rewrites an ACL's
// mask): only a tree without xattrs saves the lookups. Only where a change after this stat
// gets a new ctime (fine-grained timestamps): elsewhere a ctime of just now is racily clean.
void Receiver::RememberWrittenXattrs() {
  if (!xattr_cache_) return;
  std::vector<uint32_t> written;
  {
    std::lock_guard<std::mutex> lock(finish_mutex_);
    written.swap(xattrs_written_);
  }
  xattr_cache_->ReserveRemembered(written.size());
  std::string last_parent;
  dev_t last_parent_dev = 0;
  bool have_parent = false;
  for (const uint32_t id : written) {
    const Entry e = entries_.Get(id);
    auto [parent, name] = SplitParent(e.path);
    Result<int> dir_fd = ParentFd(parent);
    if (!dir_fd.ok()) continue;
    if (!have_parent || last_parent != parent) {
      struct stat dir_st;
      if (::fstat(*dir_fd, &dir_st) != 0) continue;
      last_parent.assign(parent);
      last_parent_dev = dir_st.st_dev;
      have_parent = true;
    }
    const std::string name_str(name);
    struct stat st;
    if (::fstatat(*dir_fd, name_str.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<uint64_t>(st.st_size) != e.size || st.st_mtim.tv_sec != e.mtime_sec ||
        st.st_mtim.tv_nsec != e.mtime_nsec) {
      continue;  // gone, replaced or written since
    }
    // The parent's file system answers for the file only on the same device (not a bind mount).
    if (st.st_dev != last_parent_dev || !FineGrainedTimestamps(*dir_fd, st.st_dev)) continue;
    const bool given_any = std::any_of(e.xattrs.begin(), e.xattrs.end(), [&](const protocol::Xattr& x) {
      return policy_.xattr_filter.Wants(x.name);
    });
    if (!given_any) {
      xattr_cache_->Remember(st, {}, /*fine_grained=*/true);
      continue;
    }
    Result<std::vector<protocol::Xattr>> xattrs = ReadXattrs(*dir_fd, name_str, policy_.xattr_filter);
    if (xattrs.ok()) xattr_cache_->Remember(st, *xattrs, /*fine_grained=*/true);
  }
}

Status Receiver::LinkFollowers() {
  for (uint32_t id : followers_) {
    const Entry e = entries_.Get(id);
    const Entry leader = entries_.Get(e.hardlink_leader_plus1 - 1);
    auto [leader_parent, leader_name] = SplitParent(leader.path);
    auto [parent, name] = SplitParent(e.path);
    if (missing_dir_[ids_by_path_.at(PathKey(parent))] == kDirAbsent ||
        missing_dir_[ids_by_path_.at(PathKey(leader_parent))] == kDirAbsent) {  // dry run into new directories
      Item(ItemAction::kCreate, e);
      continue;
    }
    std::string leader_name_str(leader_name), name_str(name);
    Result<int> leader_dir = ParentFd(leader_parent);
    if (!leader_dir.ok()) return TargetError(leader_dir.status(), leader.path);
    // Our own descriptor: the next ParentFd may evict the cached one.
    UniqueFd leader_dir_fd(::fcntl(*leader_dir, F_DUPFD_CLOEXEC, 0));
    if (!leader_dir_fd.valid()) return TargetError(Status::Errno(errno, "dup"), leader.path);
    int leader_fd = leader_dir_fd.get();
    Result<int> dir = ParentFd(parent);
    if (!dir.ok()) return TargetError(dir.status(), e.path);
    struct stat leader_st, st;
    bool leader_ok = ::fstatat(leader_fd, leader_name_str.c_str(), &leader_st, AT_SYMLINK_NOFOLLOW) == 0 &&
                     S_ISREG(leader_st.st_mode);
    bool exists = ::fstatat(*dir, name_str.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (leader_ok && exists && st.st_dev == leader_st.st_dev && st.st_ino == leader_st.st_ino) continue;
    if (options_.dry_run) {
      Item(exists ? ItemAction::kUpdate : ItemAction::kCreate, e);
      continue;
    }
    if (!leader_ok) {  // the leader vanished or failed: count, do not invent content
      figures_.files_failed += 1;
      LOG_WARN("hard link '" + Display(e.path) + "' not made: its first name '" + leader.path +
               "' is not a file on the target");
      continue;
    }
    Item(exists ? ItemAction::kUpdate : ItemAction::kCreate, e);
    std::string temp = TempName(id);
    if (::linkat(leader_fd, leader_name_str.c_str(), *dir, temp.c_str(), 0) != 0) {
      return TargetError(Status::Errno(errno, "hard link"), e.path);
    }
    if (exists && S_ISDIR(st.st_mode)) FERRY_RETURN_IF_ERROR(RemoveTree(*dir, name_str, Display(e.path)));
    if (::renameat(*dir, temp.c_str(), *dir, name_str.c_str()) != 0) {
      return TargetError(Status::Errno(errno, "rename hard link into place"), e.path);
    }
  }
  return Status::Ok();
}

// An unchanged target file that is still hard-linked to other names: when the source's file
// leads a hard-link group, its metadata is fixed in place (the group shares it); otherwise it
// gets its own inode, a copy of its content with the entry's metadata, committed like any file.
Status Receiver::BreakStaleLinks() {
  std::vector<bool> leads(entries_.size(), false);
  for (uint32_t id : followers_) leads[entries_.hardlink_leader_plus1(id) - 1] = true;
  for (const LinkCandidate& candidate : link_candidates_) {
    const Entry e = entries_.Get(candidate.id);
    if (leads[candidate.id] && !candidate.metadata_differs) continue;
    Item(leads[candidate.id] ? ItemAction::kMetadata : ItemAction::kUpdate, e);
    if (options_.dry_run) continue;
    auto [parent, name] = SplitParent(e.path);
    Result<int> dir_fd = ParentFd(parent);
    if (!dir_fd.ok()) return TargetError(dir_fd.status(), e.path);
    std::string name_str(name);
    if (leads[candidate.id]) {
      FERRY_RETURN_IF_ERROR(TargetError(ApplyMetadata(*dir_fd, name_str, e, EntryMtime(e), policy_), e.path));
      continue;
    }
    std::string temp = TempName(candidate.id);
    FERRY_RETURN_IF_ERROR(CopyToTemp(candidate.id, *dir_fd, name_str, temp));
    committer_->Add({std::string(parent), temp, name_str, e.size, UniqueFd(), UnnamedTicket()});
  }
  return Status::Ok();
}

// Copies the data regions of `name` to a new `temp` beside it and gives it the entry's metadata.
Status Receiver::CopyToTemp(uint32_t id, int dir_fd, const std::string& name, const std::string& temp) {
  const Entry e = entries_.Get(id);
  UniqueFd in(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in.valid()) return TargetError(Status::Errno(errno, "open"), e.path);
  UniqueFd out(::openat(dir_fd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out.valid()) return TargetError(Status::Errno(errno, "create temp file"), e.path);
  FERRY_RETURN_IF_ERROR(CopyDataRegions(in.get(), out.get(), e.size, e.path));
  if (::ftruncate(out.get(), static_cast<off_t>(e.size)) != 0) {
    return TargetError(Status::Errno(errno, "set size"), e.path);
  }
  return TargetError(ApplyFileMetadata(out.get(), dir_fd, temp, e, EntryMtime(e), policy_), e.path);
}

Status Receiver::CopyDataRegions(int in, int out, uint64_t size, const std::string& path) {
  std::string buffer;
  for (uint64_t at = 0; at < size;) {
    uint64_t data = 0, data_end = 0;
    Result<bool> more = NextDataRegion(in, at, size, &data, &data_end);
    if (!more.ok()) return TargetError(more.status(), path);
    if (!*more) break;  // only a hole remains
    const off_t hole = static_cast<off_t>(data_end);
    for (off_t from = static_cast<off_t>(data), to = from; from < hole;) {
      ssize_t n = ::copy_file_range(in, &from, out, &to, static_cast<size_t>(hole - from), 0);
      if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS)) {
        // No in-kernel copy here: read and write.
        buffer.resize(kDataChunkMaxBytes);
        n = io::Pread(in, buffer.data(), std::min<size_t>(buffer.size(), static_cast<size_t>(hole - from)), from);
        if (n > 0 && io::Pwrite(out, buffer.data(), static_cast<size_t>(n), to) != n) n = -1;
        if (n > 0) {
          from += n;
          to += n;
        }
      }
      if (n < 0) return TargetError(Status::Errno(errno, "copy"), path);
      if (n == 0) return TargetError(Status::IoError("file shrank while being copied"), path);
    }
    at = data_end;
  }
  return Status::Ok();
}

// A manifest of only the root would empty the target: more often an unmounted source volume
// than an intent. Refused unless the client said so.
Status Receiver::RefuseEmptySourceWipe(int root_fd) {
  if (entries_.size() != 1 || options_.allow_empty_source) return Status::Ok();
  Result<std::vector<std::string>> names = ListDirectory(root_fd, root_display_);
  if (!names.ok()) return names.status();
  size_t doomed = 0;
  for (const std::string& name : *names) {
    if (!IsTempName(name) && !excludes_.Excludes(name, false) && !excludes_.Excludes(name, true)) ++doomed;
  }
  if (doomed == 0) return Status::Ok();
  return Status::InvalidArgument("the source is empty: refusing to delete " + std::to_string(doomed) +
                                 " entries of '" + root_display_ +
                                 "' (is the source volume mounted?); pass --allow-empty-source to mirror an empty source");
}

// Deletes what the source no longer has (and temp files of earlier, interrupted stages),
// leaving excluded names alone. Looks only inside the source's directories, all listed at once
// on the inspector's threads (on a cold target each listing waits on the disk), then deletes in
// the manifest's order.
// Directories the sweep lists at once (in parallel). Listing them all at once held every name of
// the target a second time: a sixth of a full stage's receiver peak at 100,000 files.
constexpr size_t kSweepDirsPerBatch = 64;

Status Receiver::Sweep() {
  CHECK(inspector_ != nullptr);
  std::vector<std::string> paths;
  std::vector<Result<std::vector<std::string>>> listings;
  for (size_t next = 0; next < directories_.size();) {
    paths.clear();
    for (; next < directories_.size() && paths.size() < kSweepDirsPerBatch; ++next) {
      const Directory& d = directories_[next];
      if (!d.partial) paths.emplace_back(entries_.path(d.id));  // the rest of it is not in this manifest
    }
    inspector_->ListDirectories(paths, root_display_, &listings);
    FERRY_RETURN_IF_ERROR(SweepListed(paths, listings));
  }
  return Status::Ok();
}

Status Receiver::SweepListed(const std::vector<std::string>& paths,
                             const std::vector<Result<std::vector<std::string>>>& listings) {
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string& path = paths[i];
    if (!listings[i].ok()) {
      // Not a directory on the target (a dry run that did not create or replace it): nothing
      // of the source's is in there to keep or delete.
      int error = listings[i].status().error_number();
      if (error == ENOENT || error == ENOTDIR || error == ELOOP) continue;
      return TargetError(listings[i].status(), path);
    }
    UniqueFd dir_fd;
    for (const std::string& name : *listings[i]) {
      std::string child = JoinPath(path, name);
      if (ids_by_path_.count(PathKey(child)) != 0) continue;  // the source's: already matched
      if (!dir_fd.valid()) {
        Result<UniqueFd> dir = OpenDirBeneath(root_fd_, path);
        if (!dir.ok()) return TargetError(dir.status(), path);
        dir_fd = std::move(*dir);
      }
      struct stat st;
      if (::fstatat(dir_fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone
      bool is_dir = S_ISDIR(st.st_mode);
      bool temp = IsTempName(name);
      if (!temp && excludes_.Excludes(child, is_dir)) continue;
      if (!temp) {
        if (is_dir) CountDeletedTree(dir_fd.get(), name, child);
        Item(ItemAction::kDelete, is_dir ? EntryType::kDirectory : EntryType::kFile, child);
        figures_.entries_deleted += 1;
      }
      if (options_.dry_run) continue;
      FERRY_RETURN_IF_ERROR(TargetError(RemoveTree(dir_fd.get(), name, Display(child)), child));
    }
  }
  return Status::Ok();
}

// Counts and itemises what lies inside a directory about to be deleted, deepest first, as
// rsync does. Best effort: the removal itself reports any error.
void Receiver::CountDeletedTree(int dir_fd, const std::string& name, const std::string& path) {
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return;
  Result<std::vector<std::string>> names = ListDirectory(fd.get(), Display(path));
  if (!names.ok()) return;
  for (const std::string& inner : *names) {
    std::string child = JoinPath(path, inner);
    struct stat st;
    if (::fstatat(fd.get(), inner.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) CountDeletedTree(fd.get(), inner, child);
    Item(ItemAction::kDelete, S_ISDIR(st.st_mode) ? EntryType::kDirectory : EntryType::kFile, child);
    figures_.entries_deleted += 1;
  }
}

// Children before parents (reverse of the manifest's depth-first order), so that creating and
// deleting inside a directory cannot disturb its mtime after it is set.
Status Receiver::ApplyDirectoryMetadata() {
  if (options_.dry_run) return Status::Ok();
  for (auto it = directories_.rbegin(); it != directories_.rend(); ++it) {
    const Entry e = entries_.Get(it->id);
    auto [parent, name] = SplitParent(e.path);
    Result<int> dir_fd = ParentFd(parent);
    if (!dir_fd.ok()) return TargetError(dir_fd.status(), e.path);
    std::string name_str = e.id == 0 ? "." : std::string(name);
    struct stat st;
    if (it->settled && ::fstatat(*dir_fd, name_str.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISDIR(st.st_mode) && MetadataMatchesStat(e, st, policy_)) {
      continue;  // untouched: setting it again would only dirty its inode for the final flush
    }
    Status s = ApplyMetadata(*dir_fd, name_str, e, EntryMtime(e), policy_);
    if (!s.ok()) return TargetError(s, e.path);
  }
  return Status::Ok();
}

Status Receiver::SyncVolume() {
  if (options_.dry_run) return Status::Ok();
  if (options_.block) {  // a device's data is flushed by fsync of the device, not syncfs
    if (io::Fsync(root_fd_) != 0) return TargetError(Status::Errno(errno, "flush to disk (fsync)"), "");
    return Status::Ok();
  }
  if (io::Syncfs(root_fd_) != 0) return TargetError(Status::Errno(errno, "flush to disk (syncfs)"), "");
  for (const auto& [dev, fd] : file_systems_) {
    if (fd.valid() && io::Syncfs(fd.get()) != 0) {
      return TargetError(Status::Errno(errno, "flush to disk (syncfs)"), "");
    }
  }
  return Status::Ok();
}

}  // namespace ferry
