// Receiver, third part: files sent whole, over the session channel and the data streams (lanes).
// A whole file's DATA and HOLE cover it exactly, block by block, in any order; the hash tree's
// leaves are filled in as blocks arrive, so the arrival order does not matter. See receiver.h.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "agent/io/fault.h"
#include "agent/receiver.h"
#include "base/bounds.h"
#include "base/check.h"
#include "base/log.h"

namespace ferry {

using protocol::Entry;
using protocol::FileOutcome;
using protocol::MessageType;

namespace {

// Runs of a file's coverage: a file arriving over N streams has about N + 1; a peer that scatters
// more is refused rather than given an unbounded map.
constexpr size_t kCoveredRunsMax = 1024;
constexpr uint64_t kSyncFileRangeMinBytes = 1 << 20;

// Adds [start, end) to `covered`, merging with its neighbours; false if it overlaps a run.
bool Cover(std::map<uint64_t, uint64_t>& covered, uint64_t start, uint64_t end) {
  auto next = covered.lower_bound(start);
  if (next != covered.end() && next->first < end) return false;
  auto prev = next == covered.begin() ? covered.end() : std::prev(next);
  if (prev != covered.end() && prev->second > start) return false;
  const bool join_prev = prev != covered.end() && prev->second == start;
  const bool join_next = next != covered.end() && next->first == end;
  if (join_prev && join_next) {
    prev->second = next->second;
    covered.erase(next);
  } else if (join_prev) {
    prev->second = end;
  } else if (join_next) {
    uint64_t next_end = next->second;
    covered.erase(next);
    covered.emplace(start, next_end);
  } else {
    covered.emplace(start, end);
  }
  return true;
}

}  // namespace

void Receiver::StartIncoming(uint32_t id, bool name_free) {
  std::lock_guard<std::mutex> lock(incoming_mutex_);
  if (whole_needed_.size() <= id) {
    whole_needed_.resize(id + 1);
    name_free_.resize(id + 1);
    whole_discarded_.resize(id + 1);
    whole_ended_.resize(id + 1);
  }
  CHECK(incoming_.count(id) == 0 && !whole_needed_[id]);
  whole_needed_[id] = true;
  name_free_[id] = name_free;
  incoming_open_ += 1;
}

std::shared_ptr<Receiver::Incoming> Receiver::FindIncoming(uint32_t id) {
  if (auto it = incoming_.find(id); it != incoming_.end()) return it->second;
  if (id >= whole_needed_.size() || !whole_needed_[id]) return nullptr;
  auto f = std::make_shared<Incoming>();
  f->id = id;
  {
    std::shared_lock<std::shared_mutex> lock(entries_mutex_);
    f->size = entries_.file_size(id);
    f->path = entries_.path(id);
  }
  f->block_size = BlockSizeFor(f->size);
  f->may_be_unnamed = name_free_[id] && f->size < kResumeCheckpointBytes;
  whole_needed_[id] = false;
  if (auto early = early_ends_.find(id); early != early_ends_.end()) {
    f->end = early->second;
    early_ends_.erase(early);
  }
  incoming_.emplace(id, f);
  return f;
}

Result<int> Receiver::SlotDir(DirSlot* slot, std::string_view parent) {
  if (slot->fd.valid() && slot->parent == parent) return slot->fd.get();
  slot->fd.Reset();
  Result<UniqueFd> fd = OpenDirBeneath(root_fd_, parent);
  if (!fd.ok()) return fd.status();
  slot->fd = std::move(*fd);
  slot->parent = std::string(parent);
  return slot->fd.get();
}

// A new file is written unnamed (O_TMPFILE) and linked at its name when committed: the
// directory gets one entry, not a temp name and then the final one (many temp names at once
// doubled the bench's directories, 3.9 MiB against 1.7 MiB for rsync's copy), and a link costs
// the committer less than a rename. A file that replaces one, or may checkpoint (a partial
// file is found again by its name), or a file system without O_TMPFILE, takes a named one.
Status Receiver::CreateTemp(Incoming& f, DirSlot* dir) {
  Result<int> dir_fd = SlotDir(dir, f.parent());
  if (!dir_fd.ok()) return TargetError(dir_fd.status(), f.parent());
  f.leaves = ZeroLeaves(f.size, f.block_size);
  if (f.may_be_unnamed && unnamed_temps_.load(std::memory_order_relaxed) &&
      (f.ticket = UnnamedTicket::Take()).held()) {
    f.fd = UniqueFd(::openat(*dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
    if (f.fd.valid()) {
      f.unnamed = true;
      return Status::Ok();
    }
    f.ticket = UnnamedTicket();
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
      return TargetError(Status::Errno(errno, "create temp file"), f.path);
    }
    if (unnamed_temps_.exchange(false)) {
      LOG_INFO("the target file system of '" + root_display_ + "' has no O_TMPFILE: new files go through named temp files");
    }
  }
  f.fd = UniqueFd(::openat(*dir_fd, TempName(f.id).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!f.fd.valid()) return TargetError(Status::Errno(errno, "create temp file"), f.path);
  return Status::Ok();
}

Status Receiver::HandleWholeRange(uint32_t id, uint64_t offset, std::string_view bytes, uint64_t hole_length,
                                  DirSlot* dir) {
  std::shared_ptr<Incoming> file;
  {
    std::lock_guard<std::mutex> lock(incoming_mutex_);
    file = FindIncoming(id);
    if (!file && id < whole_discarded_.size() && whole_discarded_[id]) return Status::Ok();  // its last blocks
    if (!file) {
      return Status::Protocol(std::string(bytes.empty() ? "HOLE" : "DATA") + " for entry " + std::to_string(id) +
                              ", which is not being sent whole");
    }
  }
  Incoming& f = *file;
  const uint64_t length = bytes.empty() ? hole_length : bytes.size();
  const uint32_t bs = f.block_size;
  // Whole blocks on the file's grid (the last may be short), inside its announced size.
  if (length == 0 || offset % bs != 0 || offset > f.size || length > f.size - offset ||
      (length % bs != 0 && offset + length != f.size)) {
    return Status::Corruption(std::string(bytes.empty() ? "HOLE" : "DATA") + " at offset " + std::to_string(offset) +
                              " of " + std::to_string(length) + " bytes is off the block grid of '" + std::string(f.path) +
                              "' or outside its " + std::to_string(f.size) + " bytes");
  }
  std::vector<Hash128> leaves;  // hashed before the lock: lanes writing one file hash in parallel
  for (size_t at = 0; at < bytes.size(); at += bs) leaves.push_back(BlockHash(bytes.substr(at, bs)));
  bool complete = false;
  {
    std::lock_guard<std::mutex> lock(f.mutex);
    if (f.discarded) return Status::Ok();  // given up by the sender; its last blocks were on the way
    FERRY_RETURN_IF_ERROR(WriteWholeRange(f, offset, bytes, length, leaves, dir));
    complete = f.end.has_value() && f.covered_bytes == f.size;
    if (!complete) FERRY_RETURN_IF_ERROR(ParkIfComplete(f));
  }
  progress_->bytes_sent += bytes.size();
  return complete ? FinishIncoming(id, f, dir) : Status::Ok();
}

Status Receiver::WriteWholeRange(Incoming& f, uint64_t offset, std::string_view bytes, uint64_t length,
                                 const std::vector<Hash128>& leaves, DirSlot* dir) {
  if (f.end.has_value() && f.covered_bytes == f.size) {
    return Status::Corruption("data for '" + std::string(f.path) + "' after all of it arrived");
  }
  if (!Cover(f.covered, offset, offset + length) || f.covered.size() > kCoveredRunsMax) {
    return Status::Corruption("DATA or HOLE at offset " + std::to_string(offset) + " of '" + std::string(f.path) +
                              "' overlaps what arrived, or the file arrives too scattered");
  }
  if (!f.fd.valid()) FERRY_RETURN_IF_ERROR(CreateTemp(f, dir));
  if (!bytes.empty()) {
    // Buffered writes into the page cache: io_uring hands each to a kernel worker thread (io-wq)
    // and measured 12% slower here than pwrite (bench: a full sync from a warm source, 4 runs
    // each), so this path keeps the posix engine whatever --io says.
    if (!dir->engine) dir->engine = *io::MakeEngine(io::EngineKind::kPosix, 1);
    FERRY_RETURN_IF_ERROR(TargetError(io::WriteAt(*dir->engine, f.fd.get(), offset, bytes.data(), bytes.size()), f.path));
  }
  std::copy(leaves.begin(), leaves.end(), f.leaves.begin() + static_cast<ptrdiff_t>(offset / f.block_size));
  f.covered_bytes += length;
  f.data_bytes += bytes.size();
  if (!bytes.empty()) f.data_end = std::max(f.data_end, offset + bytes.size());
  const uint64_t prefix = f.covered.begin()->first == 0 ? f.covered.begin()->second : 0;
  if (cache_ != nullptr && prefix < f.size && prefix >= f.checkpoint + kResumeCheckpointBytes &&
      f.leaves.size() <= kBlocksPerFileMax) {
    return CheckpointIncoming(f);
  }
  return Status::Ok();
}

// A file's descriptor is held from its first DATA to its FILE_END; the FILE_END comes on the
// session's connection behind the manifest, and on a tree of small files thousands of files
// were complete and open at once (5,000 on the bench's, and EMFILE under a limit of 1024). A
// named one with all its data is closed until then; an unnamed one cannot be, and their number
// is bounded by UnnamedTicket.
Status Receiver::ParkIfComplete(Incoming& f) {
  if (f.unnamed || !f.fd.valid() || f.covered_bytes != f.size) return Status::Ok();
  struct stat st;
  if (::fstat(f.fd.get(), &st) != 0) return TargetError(Status::Errno(errno, "stat"), f.path);
  f.parked_ino = st.st_ino;
  f.fd.Reset();
  f.parked = true;
  return Status::Ok();
}

void Receiver::RemoveTemp(Incoming& f, DirSlot* dir) {
  if (!f.fd.valid() && !f.parked) return;  // none made yet
  if (!f.unnamed) {
    Result<int> dir_fd = SlotDir(dir, f.parent());
    if (dir_fd.ok()) ::unlinkat(*dir_fd, TempName(f.id).c_str(), 0);
  }
  f.fd.Reset();  // an unnamed file vanishes here
  f.unnamed = false;
  f.ticket = UnnamedTicket();
  f.parked = false;
}

Status Receiver::ReopenParked(Incoming& f, DirSlot* dir) {
  Result<int> dir_fd = SlotDir(dir, f.parent());
  if (!dir_fd.ok()) return TargetError(dir_fd.status(), f.parent());
  f.fd = UniqueFd(::openat(*dir_fd, TempName(f.id).c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!f.fd.valid() || ::fstat(f.fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_ino != f.parked_ino) {
    return TargetError(Status::IoError("its temp file '" + TempName(f.id) + "' was removed or replaced while it waited"),
                       f.path);
  }
  f.parked = false;
  return Status::Ok();
}

// Makes the file's received prefix durable and remembers it as a partial file, which the next
// stage resumes if this one is cut.
Status Receiver::CheckpointIncoming(Incoming& f) {
  CHECK(!f.unnamed);  // too small to checkpoint: a partial file is found again by its name
  if (io::Fdatasync(f.fd.get()) != 0) return TargetError(Status::Errno(errno, "flush to disk (fdatasync)"), f.path);
  struct stat st;
  if (::fstat(f.fd.get(), &st) != 0) return TargetError(Status::Errno(errno, "stat"), f.path);
  const uint64_t prefix_blocks = f.covered.begin()->second / f.block_size;
  StateCache::Partial partial;
  partial.temp_name = TempName(f.id);
  partial.temp_dev = st.st_dev;
  partial.temp_ino = st.st_ino;
  partial.blocks.block_size = f.block_size;
  partial.blocks.leaves.assign(f.leaves.begin(), f.leaves.begin() + static_cast<ptrdiff_t>(prefix_blocks));
  partial.durable_bytes = prefix_blocks * f.block_size;
  f.checkpoint = partial.durable_bytes;
  Status s = cache_->SavePartial(root_dev_, root_ino_, std::string(f.path), partial);
  if (!s.ok()) LOG_WARN(s.ToString() + ": '" + Display(f.path) + "' will not resume if this stage is cut");
  return Status::Ok();
}

Status Receiver::EndWholeFile(const protocol::FileEnd& end, DirSlot* dir) {
  {
    std::lock_guard<std::mutex> lock(incoming_mutex_);
    const bool whole = end.id < whole_needed_.size() && (whole_needed_[end.id] || incoming_.count(end.id) != 0);
    if (!whole || whole_ended_[end.id]) {
      return Status::Protocol("FILE_END for entry " + std::to_string(end.id) + ", which is not being sent whole" +
                              (whole ? " (a second one)" : ""));
    }
    whole_ended_[end.id] = true;
  }
  std::string_view path;
  {
    std::shared_lock<std::shared_mutex> lock(entries_mutex_);
    path = entries_.path(end.id);  // never moves (entry_store.h)
  }
  CountFileEnd(end, path);
  return EndIncoming(end, dir);
}

Status Receiver::EndIncoming(const protocol::FileEnd& end, DirSlot* dir) {
  const bool given_up = end.outcome == FileOutcome::kVanished || end.outcome == FileOutcome::kReadError;
  std::shared_ptr<Incoming> file;
  {
    std::lock_guard<std::mutex> lock(incoming_mutex_);
    if (auto it = incoming_.find(end.id); it != incoming_.end()) {
      file = it->second;
    } else {  // none of its data came yet
      CHECK(end.id < whole_needed_.size() && whole_needed_[end.id]);  // the caller checked
      uint64_t size = 0;
      std::string_view path;
      {
        std::shared_lock<std::shared_mutex> entries_lock(entries_mutex_);
        size = entries_.file_size(end.id);
        path = entries_.path(end.id);
      }
      if (given_up) {
        whole_needed_[end.id] = false;
        whole_discarded_[end.id] = true;
        progress_->bytes_skipped += size;
        incoming_open_ -= 1;
        incoming_changed_.notify_all();
        return Status::Ok();
      }
      if (end.size != size) {
        return Status::Corruption("FILE_END size differs from the manifest for '" + std::string(path) + "'");
      }
      if (size > 0) {
        early_ends_.emplace(end.id, Ended{end.content_hash, end.outcome});
        return Status::Ok();
      }
      file = FindIncoming(end.id);  // an empty file: no data comes
    }
  }
  Incoming& f = *file;
  bool complete = false;
  {
    std::lock_guard<std::mutex> lock(f.mutex);
    if (given_up) {
      f.discarded = true;
      progress_->bytes_skipped += f.size - std::min(f.size, f.data_bytes);
      RemoveTemp(f, dir);
      f.leaves = {};
      f.covered = {};
      std::lock_guard<std::mutex> table_lock(incoming_mutex_);
      incoming_open_ -= 1;
      incoming_changed_.notify_all();
      return Status::Ok();
    }
    if (end.size != f.size) {
      return Status::Corruption("FILE_END size differs from the manifest for '" + std::string(f.path) + "'");
    }
    f.end = Ended{end.content_hash, end.outcome};
    complete = f.covered_bytes == f.size;
  }
  return complete ? FinishIncoming(end.id, f, dir) : Status::Ok();
}

Status Receiver::FinishIncoming(uint32_t id, Incoming& f, DirSlot* dir) {
  Entry e;  // its metadata, set now
  {
    std::shared_lock<std::shared_mutex> lock(entries_mutex_);
    e = entries_.Get(id);
  }
  const Ended& end = *f.end;
  if (f.parked) FERRY_RETURN_IF_ERROR(ReopenParked(f, dir));
  if (!f.fd.valid()) FERRY_RETURN_IF_ERROR(CreateTemp(f, dir));  // empty, or holes only
  if (HashTree(f.leaves).Root() != end.content_hash) {
    return Status::Corruption("content hash mismatch for '" + e.path + "' (damaged in transit)");
  }
  // The size is set when the file ends in a hole (ext4 truncates even to the same size).
  if (f.data_end != e.size && ::ftruncate(f.fd.get(), static_cast<off_t>(e.size)) != 0) {
    return TargetError(Status::Errno(errno, "set size"), e.path);
  }
  // A file that changed while it was read gets an mtime the source will not have, so the next
  // stage sees it as changed and sends it again.
  const bool changed = end.outcome == FileOutcome::kChanged;
  const timespec mtime = changed ? JustBefore(EntryMtime(e)) : EntryMtime(e);
  Result<int> dir_fd = SlotDir(dir, f.parent());
  if (!dir_fd.ok()) return TargetError(dir_fd.status(), f.parent());
  // An unnamed file's xattrs go through its descriptor (an empty name: see fs.h).
  FERRY_RETURN_IF_ERROR(TargetError(
      f.unnamed ? ApplyFileMetadata(f.fd.get(), f.fd.get(), "", e, mtime, policy_)
                : ApplyFileMetadata(f.fd.get(), *dir_fd, TempName(id), e, mtime, policy_),
      e.path));
  // Start writeback of a large file now so the commit group's flush finds little left; small
  // files are left to that flush, which writes them together instead of one I/O each.
  if (f.data_bytes >= kSyncFileRangeMinBytes) ::sync_file_range(f.fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
  UniqueFd unnamed = f.unnamed ? std::move(f.fd) : UniqueFd();
  f.fd.Reset();  // the committer owns the temp file now
  f.unnamed = false;
  progress_->bytes_skipped += e.size - f.data_bytes;
  {
    std::lock_guard<std::mutex> lock(finish_mutex_);
    figures_.files_written += 1;
    figures_.bytes_written += f.data_bytes;
    if (changed) figures_.files_changed_during_read += 1;
    // Verified leaves only: the state cache must never vouch for content it has not seen.
    if (e.size >= kDeltaMinBytes && f.leaves.size() <= kBlocksPerFileMax) {
      written_.push_back({id, f.block_size, std::move(f.leaves), mtime});
    }
    if (xattr_cache_) xattrs_written_.push_back(id);
  }
  committer_->Add({std::string(f.parent()), TempName(id), std::string(SplitParent(e.path).second), f.data_bytes, std::move(unnamed),
                   std::move(f.ticket)});
  std::lock_guard<std::mutex> lock(incoming_mutex_);
  incoming_.erase(id);
  incoming_open_ -= 1;
  incoming_changed_.notify_all();
  return Status::Ok();
}

void Receiver::LaneLoop(Channel& lane) {
  const bool ends_here = (channel_.capabilities() & protocol::kCapEndOnStream) != 0;
  DirSlot dir;
  Frame frame;
  for (;;) {
    Status s = lane.Receive(&frame, kIdleTimeoutMs);
    if (s.ok()) {
      switch (frame.type) {
        case MessageType::kKeepalive:
          continue;
        case MessageType::kData: {
          Result<protocol::Data> data = protocol::Data::Decode(frame.payload);
          s = data.ok() ? HandleWholeRange(data->id, data->offset, data->bytes, 0, &dir) : data.status();
          break;
        }
        case MessageType::kHole: {
          Result<protocol::Hole> hole = protocol::Hole::Decode(frame.payload);
          s = hole.ok() ? HandleWholeRange(hole->id, hole->offset, {}, hole->length, &dir) : hole.status();
          break;
        }
        case MessageType::kFileEnd:  // kCapEndOnStream: behind the file's last range
          if (ends_here) {
            Result<protocol::FileEnd> end = protocol::FileEnd::Decode(frame.payload);
            s = end.ok() ? EndWholeFile(*end, &dir) : end.status();
            break;
          }
          [[fallthrough]];
        default:
          s = UnexpectedFrame(frame, ends_here ? "DATA, HOLE or FILE_END on a data stream" : "DATA or HOLE on a data stream",
                              lane.peer_name());
      }
      if (s.ok()) continue;
      bool peer_fault = s.code() == Code::kProtocol || s.code() == Code::kCorruption;
      if (peer_fault && frame.type != MessageType::kError) s = s.Annotate("sender " + lane.peer_name());
    }
    if (!lanes_stopping_.load()) LaneFailed(s);
    return;
  }
}

void Receiver::LaneFailed(const Status& status) {
  {
    std::lock_guard<std::mutex> lock(incoming_mutex_);
    if (!lane_failure_.ok()) return;
    lane_failure_ = status;
    incoming_changed_.notify_all();
  }
  channel_.SendError(status);  // the sender learns why
  channel_.Shutdown();  // the main thread's Receive fails, and it reports this status
}

Status Receiver::AwaitIncoming() {
  std::unique_lock<std::mutex> lock(incoming_mutex_);
  size_t last_open = incoming_open_;
  while (incoming_open_ > 0 && lane_failure_.ok()) {
    bool moved = incoming_changed_.wait_for(lock, std::chrono::milliseconds(kIdleTimeoutMs),
                                            [&] { return incoming_open_ != last_open || !lane_failure_.ok(); });
    if (!moved) {
      return Status::Make(Code::kNetwork, "the sender's data streams sent nothing for " +
                                              std::to_string(kIdleTimeoutMs / 1000) + " s with " +
                                              std::to_string(incoming_open_) + " files incomplete", ETIMEDOUT);
    }
    last_open = incoming_open_;
  }
  return lane_failure_;
}

void Receiver::StopLanes() {
  lanes_stopping_ = true;
  for (Channel* lane : lanes_) lane->Shutdown();
  for (std::thread& t : lane_threads_) t.join();
  lane_threads_.clear();
}

void Receiver::DiscardIncoming() {
  std::lock_guard<std::mutex> lock(incoming_mutex_);
  for (auto& [id, f] : incoming_) {
    if (!f->discarded && f->checkpoint == 0) RemoveTemp(*f, &control_dir_);  // a checkpoint: resumed next stage
  }
  incoming_.clear();
  early_ends_.clear();
  whole_needed_.clear();
  name_free_.clear();
  whole_discarded_.clear();
  whole_ended_.clear();
}

}  // namespace ferry
