#include "agent/sender.h"

#include "agent/hash.h"
#include "agent/path.h"

#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/bounds.h"
#include "base/check.h"
#include "base/log.h"
#include "protocol/wire.h"

namespace ferry {

using protocol::Entry;
using protocol::EntryType;
using protocol::FileOutcome;
using protocol::MessageType;

Sender::Sender(Channel& channel, std::string root, ScanOptions scan_options, SyncProgress* progress,
               ItemSink items)
    : channel_(channel),
      root_(std::move(root)),
      scan_options_(std::move(scan_options)),
      progress_(progress),
      items_(std::move(items)) {
  CHECK(progress_ != nullptr);
  scan_options_.cancel = &cancel_scan_;
  control_.channel = &channel_;
}

Result<SyncSummary> Sender::Run() {
  auto start = std::chrono::steady_clock::now();
  if (scan_options_.block) {
    Result<UniqueFd> volume = OpenBlockVolume(root_, /*writable=*/false);
    if (volume.ok()) root_fd_ = std::move(*volume);
  } else {
    root_fd_ = UniqueFd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  if (!root_fd_.valid()) {
    Status s = scan_options_.block ? OpenBlockVolume(root_, false).status() : CheckSourceRoot(root_);
    if (s.ok()) s = Status::IoError("source '" + root_ + "' could not be opened");
    channel_.SendError(s);
    return s;
  }
  Keepalive keepalive(channel_);  // the writer may wait long on a slow scan or a busy receiver
  std::thread scanner([this] { scan_options_.block ? DescribeBlockVolume() : ScanLoop(); });
  std::thread reader([this] { ReadLoop(); });
  for (size_t i = 0; i < lanes_.size(); ++i) {
    const size_t prefer = i % 2 == 0 ? kLargeRanges : kSmallRanges;  // one lane: large first
    lane_workers_.emplace_back([this, lane = lanes_[i], prefer] { LaneLoop(*lane, prefer); });
  }
  std::thread prefetcher([this] { PrefetchLoop(); });
  Status s = SendEntries();
  if (s.ok()) s = SendNeededFiles(/*wait=*/true);
  if (s.ok()) s = AwaitWholeFiles();
  if (s.ok()) s = channel_.SendMessage(MessageType::kDone, protocol::Count{summary_.files_sent});
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!s.ok() && failure_.ok()) failure_ = s;
    changed_.notify_all();  // lane workers waiting for ranges see the failure
    changed_.wait(lock, [&] { return committed_ || !failure_.ok(); });
    // A receiver that fails sends ERROR and closes its streams: a write of ours may break on
    // that first, but the ERROR is already on its way to the reader, and it says why.
    if (failure_.code() == Code::kNetwork) {
      changed_.wait_for(lock, std::chrono::milliseconds(kPeerErrorGraceMs), [&] { return reader_done_; });
    }
    s = peer_failure_.ok() ? failure_ : peer_failure_;
  }
  if (!s.ok()) {
    cancel_scan_ = true;
    channel_.SendError(s);  // the peer may already know; harmless
    channel_.Shutdown();
    for (Channel* lane : lanes_) lane->Shutdown();
  }
  for (std::thread& worker : lane_workers_) worker.join();
  prefetcher.join();
  reader.join();
  scanner.join();
  if (!s.ok()) return s;
  summary_.files_total = scan_result_.entries_count;
  summary_.bytes_total = scan_result_.bytes_total;
  summary_.bytes_sent_wire = channel_.bytes_sent();
  for (Channel* lane : lanes_) summary_.bytes_sent_wire += lane->bytes_sent();
  summary_.bytes_returned_wire = channel_.bytes_received();
  summary_.entries_deleted = commit_.entries_deleted;
  summary_.files_changed_during_read = commit_.files_changed_during_read;
  summary_.files_vanished = commit_.files_vanished;
  summary_.files_failed = commit_.files_failed;
  summary_.target_bytes_hashed = commit_.target_bytes_hashed;
  summary_.base_token = commit_.base_token;
  summary_.errors.insert(summary_.errors.begin(), scan_result_.errors.begin(), scan_result_.errors.end());
  summary_.scan_incomplete = !scan_status_.ok() || !scan_result_.errors.empty();
  summary_.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary_;
}

void Sender::ScanLoop() {
  size_t unannounced = 0;
  ScanOptions options = scan_options_;
  std::unique_ptr<XattrCache> xattr_cache;
  if (options.xattr_cache == nullptr) {
    xattr_cache = XattrCache::Open(options.xattr_cache_dir, root_fd_.get(), options.xattr_filter);
    options.xattr_cache = xattr_cache.get();
  }
  EntrySink sink = [&](Entry&& entry) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.Add(std::move(entry));
    needed_.push_back(false);
    with_basis_.push_back(false);
    finished_.push_back(false);
    progress_->entries_total += 1;
    if (++unannounced >= 256) {  // wake the writer once per group, not per entry
      unannounced = 0;
      changed_.notify_all();
    }
  };
  Result<ScanResult> result = ScanResult();
  if (options.manifest != nullptr) {  // a tracked stage: ScanChanges made it
    for (const Entry& entry : *options.manifest) {
      if (entry.type == EntryType::kFile && entry.hardlink_leader_plus1 == 0) result->bytes_total += entry.size;
      sink(Entry(entry));
    }
    result->entries_count = options.manifest->size();
  } else {
    result = ScanTree(root_, options, sink);
  }
  // What the scan read stays true while each inode's ctime does, whatever becomes of the stage.
  if (xattr_cache) {
    if (Status s = xattr_cache->Save(); !s.ok()) LOG_WARN("the next stage reads every xattr: " + s.ToString());
  }
  std::lock_guard<std::mutex> lock(mutex_);
  scan_done_ = true;
  if (result.ok()) {
    scan_result_ = std::move(*result);
  } else {
    scan_status_ = result.status();
  }
  changed_.notify_all();
}

// A block volume's manifest is one entry: the device or image file as a file at the root.
void Sender::DescribeBlockVolume() {
  Entry entry;
  entry.type = EntryType::kFile;
  struct stat st;
  Status s;
  if (::fstat(root_fd_.get(), &st) != 0) {
    s = Status::Errno(errno, "stat source '" + root_ + "'");
  } else if (Result<uint64_t> size = ContentSize(root_fd_.get(), st); !size.ok()) {
    s = size.status().Annotate("source '" + root_ + "'");
  } else {
    entry.size = *size;
    entry.mode = st.st_mode & 07777;
    entry.uid = st.st_uid;
    entry.gid = st.st_gid;
    if (S_ISREG(st.st_mode)) {  // a device's node times say nothing about its content
      entry.mtime_sec = st.st_mtim.tv_sec;
      entry.mtime_nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (s.ok()) {
    entries_.Add(std::move(entry));
    needed_.push_back(false);
    with_basis_.push_back(false);
    finished_.push_back(false);
    progress_->entries_total += 1;
    scan_result_.entries_count = 1;
    scan_result_.bytes_total = entries_.file_size(0);
  } else {
    scan_status_ = s;
  }
  scan_done_ = true;
  changed_.notify_all();
}

size_t Sender::PrepareDataPayload(std::string* payload, uint32_t id, uint64_t offset, size_t data_bytes) {
  std::string head;  // two varints: within the small-string buffer, no allocation
  protocol::WireWriter w(&head);
  w.Varint(id);
  w.Varint(offset);
  payload->resize(head.size() + data_bytes);
  std::memcpy(payload->data(), head.data(), head.size());
  return head.size();
}

void Sender::Fail(const Status& status) {
  CHECK(!status.ok());
  cancel_scan_ = true;
  std::lock_guard<std::mutex> lock(mutex_);
  if (failure_.ok()) failure_ = status;
  changed_.notify_all();
}

void Sender::ReadLoop() {
  Frame frame;
  for (bool finished = false; !finished;) {
    Status s = channel_.Receive(&frame, kIdleTimeoutMs);
    if (s.ok()) {
      s = HandleFrame(frame, &finished);
      // Name the receiver in what it did wrong; its own ERROR texts already say who they are.
      if (s.code() == Code::kProtocol && frame.type != MessageType::kError) {
        s = s.Annotate("receiver " + channel_.peer_name());
      }
    }
    if (!s.ok()) {
      Fail(s);
      std::lock_guard<std::mutex> lock(mutex_);
      if (frame.type == MessageType::kError) peer_failure_ = s;
      reader_done_ = true;
      changed_.notify_all();
      channel_.Shutdown();  // unblocks the writer
      return;
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  reader_done_ = true;
  changed_.notify_all();
}

Status Sender::HandleFrame(const Frame& frame, bool* finished) {
  switch (frame.type) {
    case MessageType::kKeepalive:
      return Status::Ok();
    case MessageType::kNeed: {
      Result<protocol::Need> need = protocol::Need::Decode(frame.payload);
      if (!need.ok()) return need.status();
      return AcceptNeeds(*need);
    }
    case MessageType::kHashes: {
      Result<protocol::Hashes> hashes = protocol::Hashes::Decode(frame.payload);
      if (!hashes.ok()) return hashes.status();
      std::lock_guard<std::mutex> lock(mutex_);
      if (hashes->id >= with_basis_.size() || !with_basis_[hashes->id]) {
        return Status::Protocol("HASHES for entry " + std::to_string(hashes->id) + ", which has no basis");
      }
      if (finished_[hashes->id]) return Status::Ok();  // the offer of a file that vanished: not needed
      queued_hash_bytes_ += hashes->hashes.size() * sizeof(Hash128);
      if (queued_hash_bytes_ > kHashesQueuedMaxBytes) {
        return Status::Protocol("more HASHES than were asked for (" + std::to_string(queued_hash_bytes_) + " bytes unused)");
      }
      hashes_[hashes->id].push_back(std::move(*hashes));
      changed_.notify_all();
      return Status::Ok();
    }
    case MessageType::kNeedEnd: {
      Result<protocol::Count> end = protocol::Count::Decode(frame.payload);
      if (!end.ok()) return end.status();
      std::lock_guard<std::mutex> lock(mutex_);
      if (end->count != progress_->files_needed) {
        return Status::Protocol("NEED_END counts " + std::to_string(end->count) + " files, " +
                                std::to_string(progress_->files_needed.load()) + " were asked for");
      }
      need_end_ = true;
      progress_->needs_complete = true;
      changed_.notify_all();
      return Status::Ok();
    }
    case MessageType::kSignature: {
      Result<protocol::Piece> piece = protocol::Piece::Decode(frame.payload);
      if (!piece.ok()) return piece.status();
      return AcceptSignaturePiece(*piece);
    }
    case MessageType::kItems: {
      Result<protocol::Items> items = protocol::Items::Decode(frame.payload);
      if (!items.ok()) return items.status();
      if (items_) for (const protocol::Item& item : items->items) items_(item);
      return Status::Ok();
    }
    case MessageType::kCommit: {
      Result<protocol::Commit> commit = protocol::Commit::Decode(frame.payload);
      if (!commit.ok()) return commit.status();
      std::lock_guard<std::mutex> lock(mutex_);
      if (!need_end_) return Status::Protocol("COMMIT before NEED_END");
      commit_ = *commit;
      committed_ = true;
      *finished = true;
      changed_.notify_all();
      return Status::Ok();
    }
    default:
      return UnexpectedFrame(frame, "NEED, HASHES, SIGNATURE, ITEMS or COMMIT", channel_.peer_name());
  }
}

Status Sender::AcceptNeeds(const protocol::Need& need) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (need_end_) return Status::Protocol("NEED after NEED_END");
  for (size_t i = 0; i < need.ids.size(); ++i) {
    const uint32_t id = need.ids[i];
    if (id >= entries_sent_) return Status::Protocol("NEED for unknown entry " + std::to_string(id));
    const Entry e = entries_.Get(id);
    if (e.type != EntryType::kFile || e.hardlink_leader_plus1 != 0) {
      return Status::Protocol("NEED for entry " + std::to_string(id) + ", which has no content to send");
    }
    if (needed_[id]) return Status::Protocol("duplicate NEED for entry " + std::to_string(id));
    needed_[id] = true;
    with_basis_[id] = need.HasBasis(i);
    if (with_basis_[id]) {
      needs_.push_back(id);
    } else {
      QueueWholeFile(id, e.size);
    }
    progress_->files_needed += 1;
    progress_->bytes_needed += e.size;
  }
  changed_.notify_all();
  return Status::Ok();
}

bool Sender::TakeEntries(protocol::Entries* batch, bool* scan_incomplete) {
  std::unique_lock<std::mutex> lock(mutex_);
  // A full batch, the end of the scan, a NEED to answer, or 10 ms: whichever comes first.
  changed_.wait_for(lock, std::chrono::milliseconds(10), [&] {
    return entries_.size() - entries_sent_ >= kEntriesPerBatchMax / 4 || scan_done_ ||
           !needs_.empty() || !failure_.ok();
  });
  size_t batch_bytes = 0;
  while (entries_sent_ + batch->entries.size() < entries_.size() &&
         batch->entries.size() < kEntriesPerBatchMax && batch_bytes < kEntryBatchTargetBytes) {
    Entry e = entries_.Get(static_cast<uint32_t>(entries_sent_ + batch->entries.size()));
    batch_bytes += 64 + e.path.size() + e.link_target.size();
    for (const protocol::Xattr& x : e.xattrs) batch_bytes += x.name.size() + x.value.size() + 8;
    batch->entries.push_back(std::move(e));
  }
  *scan_incomplete = !scan_status_.ok() || !scan_result_.errors.empty();
  return !(scan_done_ && batch->entries.empty() && entries_sent_ == entries_.size());
}

Status Sender::SendEntries() {
  protocol::Entries batch;
  bool scan_incomplete = false;
  while (TakeEntries(&batch, &scan_incomplete)) {
    if (!batch.entries.empty()) {
      {
        // Counted before they go out: the receiver's NEED for them may arrive before
        // SendMessage returns.
        std::lock_guard<std::mutex> lock(mutex_);
        entries_sent_ += batch.entries.size();
      }
      FERRY_RETURN_IF_ERROR(channel_.SendMessage(MessageType::kEntries, batch));
    }
    batch.entries.clear();
    // Data for files the receiver already asked for goes out between entry batches.
    FERRY_RETURN_IF_ERROR(SendNeededFiles(/*wait=*/false));
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!scan_status_.ok()) return scan_status_;
  }
  protocol::EntriesEnd end{entries_sent_, 0};
  if (scan_incomplete) end.flags |= protocol::kEntriesEndScanIncomplete;
  return channel_.SendMessage(MessageType::kEntriesEnd, end);
}

// Files with a basis go on this channel, one at a time (the delta is a conversation); without
// lanes, so do the files sent whole.
Status Sender::SendNeededFiles(bool wait) {
  for (;;) {
    uint32_t id = 0;
    Range range;
    bool have_range = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      const bool whole_here = lanes_.empty();
      auto ready = [&] { return !needs_.empty() || (whole_here && RangesQueued()); };
      if (wait) changed_.wait(lock, [&] { return ready() || need_end_ || !failure_.ok(); });
      if (!failure_.ok()) return failure_;
      if (!ready()) return Status::Ok();  // (with wait: NEED_END and nothing left here)
      if (!needs_.empty()) {
        id = needs_.front();
        needs_.pop_front();
      } else {
        range = TakeRange();
        have_range = true;
      }
    }
    FERRY_RETURN_IF_ERROR(have_range ? SendRange(control_, range) : SendFile(id));
  }
}

namespace {

// Elsewhere, a file whose ctime lies within one clock tick of the end of its read may change
// again without its timestamps moving ("racily clean"): it is not trusted. ctime, unlike mtime,
// is always set by the kernel, so it is never in the future.
bool RacilyClean(int fd, const struct stat& after) {
  if (FineGrainedTimestamps(fd, after.st_dev)) return false;
  timespec tick{}, now{};
  ::clock_getres(CLOCK_REALTIME_COARSE, &tick);
  ::clock_gettime(CLOCK_REALTIME, &now);
  int64_t margin_ns = int64_t{tick.tv_sec} * 1'000'000'000 + tick.tv_nsec + 1'000'000;
  int64_t now_ns = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
  int64_t ctime_ns = int64_t{after.st_ctim.tv_sec} * 1'000'000'000 + after.st_ctim.tv_nsec;
  return ctime_ns >= now_ns - margin_ns;
}

}  // namespace

int Sender::OpenSourceFile(Worker& worker, const std::string& path) {
  if (scan_options_.block) return ::fcntl(root_fd_.get(), F_DUPFD_CLOEXEC, 0);
  auto [parent, name] = SplitParent(path);
  if (!worker.open_parent_fd.valid() || worker.open_parent != parent) {
    worker.open_parent_fd.Reset();
    Result<UniqueFd> dir = OpenDirBeneath(root_fd_.get(), parent);
    if (!dir.ok()) {
      errno = dir.status().error_number() != 0 ? dir.status().error_number() : ENOENT;
      return -1;
    }
    worker.open_parent_fd = std::move(*dir);
    worker.open_parent = std::string(parent);
  }
  return ::openat(worker.open_parent_fd.get(), std::string(name).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
}

static bool SameContentStat(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && MtimeNs(a) == MtimeNs(b) &&
         a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec &&
         a.st_ino == b.st_ino;
}

Status Sender::SendFile(uint32_t id) {
  Entry entry;
  {
    std::lock_guard<std::mutex> lock(mutex_);  // the scanner may be appending
    entry = entries_.Get(id);
  }
  protocol::FileEnd end;
  end.id = id;
  end.size = entry.size;
  UniqueFd fd(OpenSourceFile(control_, entry.path));
  uint64_t data_bytes = 0;
  struct stat before;
  const bool is_file = fd.valid() && ::fstat(fd.get(), &before) == 0 &&
                       (S_ISREG(before.st_mode) || (scan_options_.block && S_ISBLK(before.st_mode)));
  if (!is_file) {
    bool gone = !fd.valid() && (errno == ENOENT || errno == ELOOP || errno == ENOTDIR);
    if (fd.valid()) gone = true;  // no longer a regular file
    end.outcome = gone ? FileOutcome::kVanished : FileOutcome::kReadError;
    end.message = gone ? "" : "open '" + entry.path + "': " + std::strerror(errno);
  } else {
    bool with_basis = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      with_basis = with_basis_[id];
    }
    FERRY_RETURN_IF_ERROR(with_basis ? SendFileDelta(fd.get(), entry, &end, &data_bytes)
                                     : SendFileData(fd.get(), entry, &end, &data_bytes));
    if (end.outcome == FileOutcome::kComplete && MovedWhileRead(fd.get(), before, entry)) {
      end.outcome = FileOutcome::kChanged;
    }
  }
  return EndFile(entry, end, data_bytes, channel_);
}

bool Sender::MovedWhileRead(int fd, const struct stat& before, const Entry& entry) {
  // A block device shows no sign of being written: its stages are exact only once the app is
  // quiesced (the final stage), which the coordinator sees to.
  if (S_ISBLK(before.st_mode)) return false;
  struct stat after;
  return ::fstat(fd, &after) != 0 || !SameContentStat(before, after) || RacilyClean(fd, after) ||
         static_cast<uint64_t>(before.st_size) != entry.size ||
         MtimeNs(before) != int64_t{entry.mtime_sec} * 1'000'000'000 + entry.mtime_nsec;
}

Status Sender::EndFile(const Entry& entry, const protocol::FileEnd& end, uint64_t data_bytes, Channel& via) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Offered for a file that vanished, or left over: no longer wanted, nor accepted later.
    if (auto it = hashes_.find(entry.id); it != hashes_.end()) {
      for (const protocol::Hashes& h : it->second) queued_hash_bytes_ -= h.hashes.size() * sizeof(Hash128);
      hashes_.erase(it);
    }
    signatures_.erase(entry.id);
    finished_[entry.id] = true;
    if (end.outcome == FileOutcome::kReadError) summary_.errors.push_back(end.message);
    if (end.outcome != FileOutcome::kComplete) summary_.unsettled.push_back(entry.path);
    if (end.outcome != FileOutcome::kVanished && end.outcome != FileOutcome::kReadError) {
      summary_.files_sent += 1;
    }
  }
  progress_->bytes_skipped += entry.size - std::min(entry.size, data_bytes);
  progress_->files_sent += 1;
  return via.SendMessage(MessageType::kFileEnd, end);
}

// A whole file on the session channel (a PATCH kWhole of the delta): one range, in order.
Status Sender::SendFileData(int fd, const Entry& entry, protocol::FileEnd* end, uint64_t* data_bytes) {
  const uint32_t block_size = BlockSizeFor(entry.size);
  std::vector<Hash128> leaves = ZeroLeaves(entry.size, block_size);
  RangeResult result;
  FERRY_RETURN_IF_ERROR(SendWholeRange(control_, fd, entry, block_size, 0, entry.size, /*dense=*/false, leaves.data(), &result));
  if (result.outcome != FileOutcome::kComplete) {
    end->outcome = result.outcome;
    end->message = result.message;
  }
  *data_bytes += result.data_bytes;
  end->content_hash = HashTree(std::move(leaves)).Root();
  return Status::Ok();
}

}  // namespace ferry
