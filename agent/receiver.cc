#include "agent/receiver.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "agent/scan.h"
#include "base/bounds.h"
#include "base/check.h"
#include "base/log.h"

namespace ferry {

using protocol::Entry;
using protocol::EntryType;
using protocol::ItemAction;
using protocol::MessageType;

namespace {
constexpr size_t kDirCacheMax = 256;
// Threads that look at the target's entries besides the receiver's own: inode reads in flight
// on a cold target (4 measured best of 2, 4 and 16 with the earlier lookups-only prefetch).
constexpr size_t kInspectorThreads = 3;

}  // namespace

Receiver::Receiver(Channel& channel, int root_fd, std::string root_display, SyncOptions options,
                   uint64_t session_id, SyncProgress* progress)
    : channel_(channel), root_fd_(root_fd), root_display_(std::move(root_display)),
      options_(std::move(options)), progress_(progress ? progress : &no_progress_) {
  policy_.privileged = ::geteuid() == 0;
  policy_.xattr_filter = XattrFilter{policy_.privileged, options_.no_selinux, options_.no_xattrs};
  // Unique across sessions, processes and restarts: a run killed earlier left its own names.
  uint64_t nonce = 0;
  if (::getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce)) nonce = (uint64_t{session_id} << 32) ^ ::getpid();
  char tag[32];
  std::snprintf(tag, sizeof(tag), "%016llx.", static_cast<unsigned long long>(nonce));
  temp_tag_ = std::string(kTempPrefix) + tag;
  CHECK(root_fd_ >= 0 || options_.dry_run);
  struct stat root_st;
  if (root_fd_ >= 0 && ::fstat(root_fd_, &root_st) == 0) {
    root_dev_ = root_st.st_dev;
    root_ino_ = root_st.st_ino;
  }
  if (!options_.dry_run) committer_ = std::make_unique<Committer>(root_fd_);
  if (root_fd_ >= 0 && !options_.block) {
    inspector_ = std::make_unique<TargetInspector>(root_fd_, policy_, kInspectorThreads);
  }
  // Robin hood probing stays short up to ~0.9 full; the default 0.5 doubles the table (24-byte
  // slots then, a power of two of them: at 400,000 entries 24 MiB at 0.5, 12 MiB at 0.875). Measured
  // by ./run bench-rss: the receiver's growth 204 -> 181 bytes a file.
  ids_by_path_.max_load_factor(0.875f);
}

Receiver::~Receiver() { DiscardOpenFile(); }

void Receiver::UseXattrCache(const std::string& state_dir) {
  if (options_.block || !inspector_) return;
  xattr_cache_ = XattrCache::Open(state_dir, root_fd_, policy_.xattr_filter);
  inspector_->SetXattrCache(xattr_cache_.get());
}

Status Receiver::Run() {
  Result<ExcludeList> excludes = ExcludeList::Make(options_.excludes);
  Status s = excludes.ok() ? Status::Ok() : excludes.status();
  if (s.ok()) excludes_ = std::move(*excludes);
  if (s.ok()) s = DropBase();
  Keepalive keepalive(channel_);
  for (Channel* lane : lanes_) lane_threads_.emplace_back([this, lane] { LaneLoop(*lane); });
  Frame frame;
  for (bool done = false; s.ok() && !done;) {
    s = channel_.Receive(&frame, kIdleTimeoutMs);
    if (!s.ok()) break;
    s = Dispatch(frame, &done);
    // Name the sender in what it did wrong; its own ERROR texts already say who they are.
    bool peer_fault = s.code() == Code::kProtocol || s.code() == Code::kCorruption;
    if (peer_fault && frame.type != MessageType::kError) s = s.Annotate("sender " + channel_.peer_name());
  }
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(incoming_mutex_);
    if (!lane_failure_.ok()) s = lane_failure_;  // a lane shut this channel down: its reason
  }
  if (frame.type != MessageType::kError) s = channel_.PreferPeerError(s, kPeerErrorGraceMs);
  StopLanes();
  if (!s.ok()) {
    DiscardIncoming();
    DiscardOpenFile(/*keep_partial=*/true);  // the next stage resumes it
    // Finished files are complete and checked: kept, so that the next stage resumes after them.
    if (committer_) (void)committer_->Checkpoint();
    if (frame.type != MessageType::kError) channel_.SendError(s);
  }
  // What was read stays true while each inode's ctime does, whatever became of the stage.
  if (xattr_cache_) {
    if (Status saved = xattr_cache_->Save(); !saved.ok()) LOG_WARN("the next stage reads every xattr: " + saved.ToString());
  }
  return s;
}

Status Receiver::Dispatch(const Frame& frame, bool* done) {
  switch (frame.type) {
    case MessageType::kKeepalive: return Status::Ok();
    case MessageType::kEntries: return HandleEntries(frame);
    case MessageType::kEntriesEnd: return HandleEntriesEnd(frame);
    case MessageType::kData: return HandleData(frame);
    case MessageType::kHole: return HandleHole(frame);
    case MessageType::kWant: return HandleWant(frame);
    case MessageType::kPatch: return HandlePatch(frame);
    case MessageType::kDelta: return HandleDeltaPiece(frame);
    case MessageType::kFileEnd: return HandleFileEnd(frame);
    case MessageType::kDone: {
      Result<protocol::Count> count = protocol::Count::Decode(frame.payload);
      if (!count.ok()) return count.status();
      // With kCapEndOnStream the FILE_ENDs of files sent whole may still be on the data streams:
      // they are in once every such file is.
      const bool ends_on_streams = (channel_.capabilities() & protocol::kCapEndOnStream) != 0;
      auto all_ended = [&] { return entries_complete_ && needs_finished_ == needs_total_ && !open_file_; };
      if (!ends_on_streams && !all_ended()) return Status::Protocol("DONE before every needed file arrived");
      *done = true;
      FERRY_RETURN_IF_ERROR(AwaitIncoming());
      if (!all_ended()) return Status::Protocol("DONE before every needed file arrived");
      if (count->count != files_arrived_) {  // FORMAT.md: each side checks the other's count
        return Status::Protocol("DONE counts " + std::to_string(count->count) + " files sent, " +
                                std::to_string(files_arrived_) + " arrived");
      }
      lanes_stopping_ = true;  // every file is in: the sender may close its streams now
      FERRY_RETURN_IF_ERROR(Finish());
      return channel_.SendMessage(MessageType::kCommit, figures_);
    }
    default:
      return UnexpectedFrame(frame, "ENTRIES, WANT, PATCH, DATA, HOLE, DELTA, FILE_END or DONE", channel_.peer_name());
  }
}

Status Receiver::HandleEntries(const Frame& frame) {
  if (entries_complete_) return Status::Protocol("ENTRIES after ENTRIES_END");
  Result<protocol::Entries> batch =
      protocol::Entries::Decode(frame.payload, static_cast<uint32_t>(entries_.size()));
  if (!batch.ok()) return batch.status();
  if (!inspector_) {
    for (protocol::Entry& entry : batch->entries) FERRY_RETURN_IF_ERROR(HandleEntry(std::move(entry), nullptr));
    return FlushReplies();
  }
  // Each range is handled as soon as it is inspected, while the inspector's threads look at the
  // ranges after it: on two cores, handling a batch after the whole of it was inspected left
  // one idle while the other handled.
  Status s;
  inspector_->Inspect(batch->entries, &inspections_, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end && s.ok(); ++i) s = HandleEntry(std::move(batch->entries[i]), &inspections_[i]);
  });
  FERRY_RETURN_IF_ERROR(s);
  return FlushReplies();
}

Status Receiver::HandleEntriesEnd(const Frame& frame) {
  Result<protocol::EntriesEnd> end = protocol::EntriesEnd::Decode(frame.payload);
  if (!end.ok()) return end.status();
  if (entries_complete_) return Status::Protocol("second ENTRIES_END");
  if (end->count != entries_.size() || entries_.empty()) {
    return Status::Protocol("ENTRIES_END counts " + std::to_string(end->count) + " entries, " +
                            std::to_string(entries_.size()) + " arrived");
  }
  entries_complete_ = true;
  progress_->needs_complete = true;
  scan_incomplete_ = (end->flags & protocol::kEntriesEndScanIncomplete) != 0;
  FERRY_RETURN_IF_ERROR(FlushReplies());
  return channel_.SendMessage(MessageType::kNeedEnd, protocol::Count{needs_total_});
}

// The root first, then each entry inside a directory already listed. Files the entry's path
// (one hash of it, one lookup) so that the rest of the stage finds it by path.
Result<uint32_t> Receiver::PlaceEntry(const Entry& entry) {
  FERRY_RETURN_IF_ERROR(ValidateRelativePath(entry.path));
  if (options_.block) {
    if (entry.id != 0 || !entry.path.empty() || entry.type != EntryType::kFile || entry.hardlink_leader_plus1 != 0) {
      return Status::Corruption("a block volume's manifest is one file entry");
    }
    return 0;
  }
  uint32_t parent_id = 0;
  if (entry.id == 0) {
    if (!entry.path.empty() || entry.type != EntryType::kDirectory) {
      return Status::Corruption("the first entry must be the volume root directory");
    }
  } else {
    if (entry.path.empty()) return Status::Corruption("a second volume root entry");
    auto parent = ids_by_path_.find(PathKey(SplitParent(entry.path).first));
    if (parent == ids_by_path_.end() || entries_.type(parent->second) != EntryType::kDirectory) {
      return Status::Corruption("entry '" + entry.path + "' arrives before its directory");
    }
    parent_id = parent->second;
    if (entry.hardlink_leader_plus1 != 0 &&
        entries_.type(entry.hardlink_leader_plus1 - 1) != EntryType::kFile) {
      return Status::Corruption("hard link '" + entry.path + "' to an entry that is not a file");
    }
  }
  if (!ids_by_path_.try_emplace(PathKey(entry.path), entry.id).second) {
    return Status::Corruption("duplicate entry '" + entry.path + "'");
  }
  return parent_id;
}

Status Receiver::HandleEntry(Entry entry, const Inspection* inspection) {
  CHECK_EQ(entry.id, entries_.size());
  if ((entry.type == protocol::kEntryGone || entry.partial_listing) && !options_.partial) {
    return Status::Protocol("entry '" + entry.path + "' of a partial manifest in a stage that is not partial");
  }
  if (entry.id == 0 && options_.partial && !entry.partial_listing) {
    // A partial manifest names only what changed: a root listed in full would delete the rest.
    return Status::Protocol("a partial manifest whose root is listed in full");
  }
  if (options_.no_xattrs && !entry.xattrs.empty()) {
    return Status::Protocol("entry '" + entry.path + "' carries xattrs in a --no-xattrs stage");
  }
  Result<uint32_t> parent_id = PlaceEntry(entry);
  if (!parent_id.ok()) return parent_id.status();
  const uint32_t id = entry.id;
  {
    std::unique_lock<std::shared_mutex> lock(entries_mutex_);  // a lane may be reading its entry
    entries_.Add(entry);
  }
  missing_dir_.push_back(0);
  file_state_.push_back(kFileNone);
  const Entry& e = entry;
  progress_->entries_total += 1;
  if (e.type == EntryType::kFile && e.hardlink_leader_plus1 == 0) bytes_total_ += e.size;
  if (e.type == EntryType::kDirectory) directories_.push_back({id, false, e.partial_listing});
  if (e.type == protocol::kEntryGone) return HandleGoneEntry(e, *parent_id);
  if (e.hardlink_leader_plus1 != 0) {
    followers_.push_back(id);
    return Status::Ok();
  }
  if (options_.block) return HandleBlockEntry(e);
  auto [parent, name] = SplitParent(e.path);
  std::string name_str = id == 0 ? "." : std::string(name);
  bool parent_missing = id == 0 ? root_fd_ < 0 : missing_dir_[*parent_id] == kDirAbsent;
  if (parent_missing) {
    // Dry run below a directory that does not exist yet: everything is new.
    if (e.type == EntryType::kDirectory) missing_dir_[id] = kDirAbsent;
    Item(ItemAction::kCreate, e);
    return Status::Ok();
  }
  Result<int> dir_fd = ParentFd(parent);
  if (!dir_fd.ok()) return TargetError(dir_fd.status(), std::string(parent));
  struct stat st;
  bool exists = false;
  const std::vector<protocol::Xattr>* xattrs = nullptr;
  const bool in_made_dir = id != 0 && missing_dir_[*parent_id] == kDirMade;
  if (in_made_dir) {
    // In a directory this stage made: a path comes once in a manifest, so nothing is there.
    // (The inspector may not have seen it yet, or looked before it was made.) Saves a lookup
    // per entry of a new tree, and the name is known free for an unnamed temp file.
    exists = false;
  } else if (inspection != nullptr && inspection->state != Inspection::State::kUnknown) {
    exists = inspection->state == Inspection::State::kPresent;
    st = inspection->st;
    if (inspection->have_xattrs) xattrs = &inspection->xattrs;
  } else {
    exists = ::fstatat(*dir_fd, name_str.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) return TargetError(Status::Errno(errno, "stat"), e.path);
  }
  if (e.type == EntryType::kFile) return HandleFileEntry(e, *dir_fd, name_str, exists ? &st : nullptr, xattrs, in_made_dir);
  return HandleOtherEntry(e, *dir_fd, name_str, exists ? &st : nullptr, xattrs);
}

// A name gone from the source whose file here has other names: the source may have changed that
// file through this name before removing it, and its other names, in directories this partial
// manifest does not list, would keep the old content. Only a walk finds them: refused before any
// data moves. Otherwise deleted with the sweep.
Status Receiver::HandleGoneEntry(const Entry& e, uint32_t parent_id) {
  if (missing_dir_[parent_id] != kDirAbsent) {
    auto [parent, name] = SplitParent(e.path);
    Result<int> dir_fd = ParentFd(parent);
    if (dir_fd.ok() && HoldsHardLinks(*dir_fd, std::string(name))) {
      return Status::Make(Code::kUnsupported, "'" + e.path + "', gone from the source, is hard-linked on target '" +
                                                  root_display_ + "': this stage needs a full walk");
    }
  }
  gone_.push_back(e.id);
  return Status::Ok();
}

Status Receiver::HandleFileEntry(const Entry& e, int dir_fd, const std::string& name,
                                 const struct stat* st, const std::vector<protocol::Xattr>* xattrs, bool in_made_dir) {
  bool same_type = st != nullptr && S_ISREG(st->st_mode);
  bool content_same = same_type && static_cast<uint64_t>(st->st_size) == e.size;
  if (content_same && options_.checksum && e.has_content_hash) {
    Result<protocol::Hash128> hash = HashFileContent(dir_fd, name, Display(e.path));
    if (!hash.ok()) return TargetError(hash.status(), e.path);
    content_same = *hash == e.content_hash;
  } else if (content_same) {
    // A file the source saw change is compared by content (a delta against this copy) even when
    // size and mtime match: a write whose mtime was set back.
    content_same = !e.changed && st->st_mtim.tv_sec == e.mtime_sec && st->st_mtim.tv_nsec == e.mtime_nsec;
  }
  if (content_same) {
    Result<bool> differs = MetadataDiffers(e, *st, dir_fd, name, policy_, xattrs);
    if (!differs.ok()) return TargetError(differs.status(), e.path);
    if (st->st_nlink > 1) {
      // Still linked to other names, which may be excluded or outside the manifest: nothing is
      // changed in place until the end, when every hard link of the manifest is known.
      link_candidates_.push_back({e.id, *differs});
      return Status::Ok();
    }
    if (!*differs) return Status::Ok();
    Item(ItemAction::kMetadata, e);
    if (options_.dry_run) return Status::Ok();
    return TargetError(ApplyMetadata(dir_fd, name, e, EntryMtime(e), policy_), e.path);
  }
  if (e.size > kFileSizeMax) {  // counted and named; the stage goes on
    CountFailed();
    LOG_WARN("'" + Display(e.path) + "' is " + std::to_string(e.size) + " bytes: files over 4 TiB are not synced");
    return Status::Ok();
  }
  Item(st == nullptr ? ItemAction::kCreate : ItemAction::kUpdate, e);
  if (options_.dry_run) return Status::Ok();
  if (st != nullptr && !same_type) {
    FERRY_RETURN_IF_ERROR(TargetError(RemoveTree(dir_fd, name, Display(e.path)), e.path));
  }
  // A file in a directory made by this stage has no basis (not even a partial file: the state
  // cache is not asked, one query a file of a new tree).
  Result<std::optional<Basis>> basis =
      in_made_dir ? std::optional<Basis>() : FindBasis(e, dir_fd, name, same_type ? st : nullptr);
  if (!basis.ok()) return TargetError(basis.status(), e.path);
  return NeedFile(e, std::move(*basis), /*name_free=*/st == nullptr || !same_type);
}

Status Receiver::HandleOtherEntry(const Entry& e, int dir_fd, const std::string& name,
                                  const struct stat* st, const std::vector<protocol::Xattr>* xattrs) {
  bool same = st != nullptr && (st->st_mode & S_IFMT) == TypeBits(e.type);
  if (same && e.type == EntryType::kSymlink) {
    char target[kSymlinkTargetMaxBytes + 1];
    ssize_t n = ::readlinkat(dir_fd, name.c_str(), target, sizeof(target));
    same = n >= 0 && std::string_view(target, static_cast<size_t>(n)) == e.link_target;
  }
  if (same && (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice)) {
    same = st->st_rdev == e.rdev;
  }
  if (same) {
    Result<bool> differs = MetadataDiffers(e, *st, dir_fd, name, policy_, xattrs);
    if (!differs.ok()) return TargetError(differs.status(), e.path);
    if (!*differs) {
      if (e.type == EntryType::kDirectory) directories_.back().settled = true;
      return Status::Ok();
    }
    Item(ItemAction::kMetadata, e);
    // Directories get their metadata at the end, after their contents changed.
    if (options_.dry_run || e.type == EntryType::kDirectory) return Status::Ok();
    return TargetError(ApplyMetadata(dir_fd, name, e, EntryMtime(e), policy_), e.path);
  }
  Item(st == nullptr ? ItemAction::kCreate : ItemAction::kUpdate, e);
  if (options_.dry_run) {
    if (e.type == EntryType::kDirectory) missing_dir_[e.id] = kDirAbsent;
    return Status::Ok();
  }
  if (e.id == 0) return Status::Corruption("the target root is not a directory");
  if (st != nullptr) FERRY_RETURN_IF_ERROR(TargetError(RemoveTree(dir_fd, name, Display(e.path)), e.path));
  return CreateSpecial(e, dir_fd, name);
}

Status Receiver::CreateSpecial(const Entry& e, int dir_fd, const std::string& name) {
  int rc = 0;
  switch (e.type) {
    case EntryType::kDirectory: rc = ::mkdirat(dir_fd, name.c_str(), 0700); break;
    case EntryType::kSymlink: rc = ::symlinkat(e.link_target.c_str(), dir_fd, name.c_str()); break;
    case EntryType::kFile: CHECK(false);
    default:
      rc = ::mknodat(dir_fd, name.c_str(), TypeBits(e.type) | 0600, static_cast<dev_t>(e.rdev));
  }
  if (rc != 0) {
    Status s = Status::Errno(errno, "create");
    if (s.code() == Code::kPermission && !policy_.privileged) {
      // Devices need root: skip and report, as rsync does; the stage goes on.
      CountFailed();
      LOG_WARN("cannot create '" + Display(e.path) + "' without root: " + s.ToString());
      return Status::Ok();
    }
    return TargetError(s, e.path);
  }
  if (e.type == EntryType::kDirectory) {
    missing_dir_[e.id] = kDirMade;
    if (inspector_) inspector_->MarkMade(e.path);
    return Status::Ok();  // metadata at the end
  }
  return TargetError(ApplyMetadata(dir_fd, name, e, EntryMtime(e), policy_), e.path);
}

Result<int> Receiver::ParentFd(std::string_view parent) {
  if (last_parent_fd_ >= 0 && parent == last_parent_) return last_parent_fd_;
  auto it = dir_cache_.find(parent);
  if (it == dir_cache_.end()) {
    if (dir_cache_.size() >= kDirCacheMax) dir_cache_.clear();
    last_parent_fd_ = -1;  // it may have been cleared
    Result<UniqueFd> fd = OpenDirBeneath(root_fd_, parent);
    if (!fd.ok()) return fd.status();
    struct stat st;
    if (::fstat(fd->get(), &st) == 0 && file_systems_.count(st.st_dev) == 0) {
      file_systems_.emplace(st.st_dev, UniqueFd(::fcntl(fd->get(), F_DUPFD_CLOEXEC, 0)));
    }
    it = dir_cache_.emplace(std::string(parent), std::move(*fd)).first;
  }
  last_parent_.assign(parent);
  last_parent_fd_ = it->second.get();
  return last_parent_fd_;
}

void Receiver::Item(ItemAction action, const Entry& entry) { Item(action, entry.type, entry.path); }

void Receiver::Item(ItemAction action, EntryType type, std::string path) {
  if (!reporting()) return;
  if (item_sink_) item_sink_(protocol::Item{action, type, path});
  pending_items_.push_back({action, type, std::move(path)});
}

Status Receiver::FlushReplies() {
  if (!pending_needs_.empty()) {
    FERRY_RETURN_IF_ERROR(
        channel_.SendMessage(MessageType::kNeed, protocol::Need{pending_needs_, pending_with_basis_}));
    pending_needs_.clear();
    pending_with_basis_.clear();
  }
  // After the NEED that announces them.
  for (const protocol::Hashes& hashes : pending_hashes_) {
    FERRY_RETURN_IF_ERROR(channel_.SendMessage(MessageType::kHashes, hashes));
  }
  pending_hashes_.clear();
  for (size_t start = 0; start < pending_items_.size(); start += kItemsPerBatchMax) {
    size_t end = std::min(pending_items_.size(), start + kItemsPerBatchMax);
    protocol::Items items;
    items.items.assign(pending_items_.begin() + static_cast<ptrdiff_t>(start),
                       pending_items_.begin() + static_cast<ptrdiff_t>(end));
    FERRY_RETURN_IF_ERROR(channel_.SendMessage(MessageType::kItems, items));
  }
  pending_items_.clear();
  return Status::Ok();
}

SyncSummary Receiver::Summary() const {
  SyncSummary s;
  s.files_total = entries_.size();
  s.files_sent = figures_.files_written;
  s.bytes_total = bytes_total_;
  s.bytes_sent_wire = channel_.bytes_received();
  for (Channel* lane : lanes_) s.bytes_sent_wire += lane->bytes_received();
  s.bytes_returned_wire = channel_.bytes_sent();
  s.entries_deleted = figures_.entries_deleted;
  s.files_changed_during_read = figures_.files_changed_during_read;
  s.files_vanished = figures_.files_vanished;
  s.files_failed = figures_.files_failed;
  s.target_bytes_hashed = figures_.target_bytes_hashed;
  if (scan_incomplete_) {
    s.errors.push_back("the sender could not read part of its tree (its log names what); nothing was deleted");
  }
  return s;
}

Status Receiver::TargetError(const Status& s, std::string_view path) const {
  if (s.ok()) return s;
  if (s.code() == Code::kNoSpace) {
    // How much more the stage needs: what it still has to write (the needed bytes not yet
    // written) beyond what is free now. Files already committed stay; the next stage resumes.
    const uint64_t needed = progress_->bytes_needed.load();
    const uint64_t done = progress_->bytes_sent.load() + progress_->bytes_skipped.load();
    uint64_t free_bytes = 0;
    struct statvfs fs;
    if (::fstatvfs(root_fd_, &fs) == 0) free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    const uint64_t remaining = needed > done ? needed - done : 0;
    const uint64_t more = remaining > free_bytes ? remaining - free_bytes : 0;
    return Status::Make(Code::kNoSpace,
                        "no space on volume '" + root_display_ + "' (needs at least " + std::to_string(std::max<uint64_t>(more, 1)) +
                            " more bytes: " + std::to_string(remaining) + " still to write, " +
                            std::to_string(free_bytes) + " free) writing '" + std::string(path) + "': " + s.message() +
                            "; free space or grow the volume, then run the stage again (the files committed stay)");
  }
  return s.Annotate("target '" + Display(path) + "'");
}

}  // namespace ferry
