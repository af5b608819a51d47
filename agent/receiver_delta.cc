// Receiver, delta half: offering the target's copy of a changed file as a basis (HASHES),
// answering the sender's tree descent (WANT), and patching the file (PATCH, then DATA and HOLE
// at block offsets), in place or in a temp file. See agent/blocks.h and receiver.h.
#include <fcntl.h>
#include <linux/falloc.h>
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
using protocol::MessageType;

std::optional<Receiver::Basis> Receiver::FindPartial(const Entry& e, int dir_fd) {
  if (cache_ == nullptr || options_.dry_run) return std::nullopt;
  Result<std::optional<StateCache::Partial>> found = cache_->FindPartial(root_dev_, root_ino_, e.path);
  if (!found.ok()) LOG_WARN(found.status().ToString());
  if (!found.ok() || !*found) return std::nullopt;
  StateCache::Partial& p = **found;
  struct stat st;
  // Still the file the checkpoint made durable, and still in the block size this file needs.
  if (!IsTempName(p.temp_name) || ::fstatat(dir_fd, p.temp_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      !S_ISREG(st.st_mode) || st.st_dev != p.temp_dev || st.st_ino != p.temp_ino ||
      static_cast<uint64_t>(st.st_size) < p.durable_bytes || p.blocks.block_size != BlockSizeFor(e.size) ||
      BlockCount(e.size, p.blocks.block_size) > kBlocksPerFileMax ||
      p.blocks.leaves.size() != p.durable_bytes / p.blocks.block_size || p.durable_bytes > e.size) {
    LOG_INFO("partial file of '" + Display(e.path) + "' no longer fits it: starting over");
    return std::nullopt;
  }
  LOG_INFO("resuming '" + Display(e.path) + "' from " + std::to_string(p.durable_bytes) + " durable bytes");
  Basis basis;
  basis.block_size = p.blocks.block_size;
  basis.size = p.durable_bytes;
  basis.tree = HashTree(std::move(p.blocks.leaves));
  basis.key = FileKeyOf(st);
  basis.partial_temp = p.temp_name;
  return basis;
}

// The target's own file (or block volume) `fd` as a basis for its first `size` bytes: its hashes
// from the state cache while ferry's last write is the last change to it, else read (as rsync
// would). A block device is always read: writes to it leave no trace in its inode.
Result<std::optional<Receiver::Basis>> Receiver::TargetBasis(const Entry& e, int fd, const struct stat& st,
                                                             uint64_t size) {
  Basis basis;
  basis.block_size = BlockSizeFor(std::max(size, e.size));
  basis.size = size;
  basis.key = FileKeyOf(st);
  basis.links = st.st_nlink;
  basis.device = S_ISBLK(st.st_mode);
  const uint64_t leaves = BlockCount(size, basis.block_size);
  if (leaves > kBlocksPerFileMax || BlockCount(e.size, basis.block_size) > kBlocksPerFileMax ||
      basis_leaves_in_flight_ + leaves > kBasisLeavesInFlightMax) {
    return std::optional<Basis>();
  }
  if (cache_ != nullptr && S_ISREG(st.st_mode)) {
    Result<std::optional<BlockHashes>> found = cache_->Lookup(basis.key);
    if (!found.ok()) {
      LOG_WARN(found.status().ToString() + ": reading the target instead");
    } else if (*found && (*found)->block_size == basis.block_size && (*found)->leaves.size() == leaves) {
      basis.tree = HashTree(std::move((*found)->leaves));
      return std::optional<Basis>(std::move(basis));
    }
  }
  bool shrank = false;
  Result<std::vector<Hash128>> hashed = HashFileBlocks(fd, size, basis.block_size, &shrank);
  if (!hashed.ok()) return hashed.status();
  if (shrank) return std::optional<Basis>();  // changing under us: send it whole
  figures_.target_bytes_hashed += size;
  basis.tree = HashTree(std::move(*hashed));
  return std::optional<Basis>(std::move(basis));
}

// A needed file gets a basis when a delta may pay: a partial file an interrupted stage left, else
// the target's own version.
Result<std::optional<Receiver::Basis>> Receiver::FindBasis(const Entry& e, int dir_fd, const std::string& name,
                                                           const struct stat* target) {
  if (options_.dry_run || e.size < kDeltaMinBytes) return std::optional<Basis>();
  if (std::optional<Basis> partial = FindPartial(e, dir_fd)) return partial;
  if (target == nullptr || !S_ISREG(target->st_mode) || static_cast<uint64_t>(target->st_size) < kDeltaMinBytes) {
    return std::optional<Basis>();
  }
  // O_NONBLOCK: a FIFO swapped in since the stat must not hang the receiver; it is then no
  // longer the file stat'ed, and the file goes whole.
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return Status::Errno(errno, "open");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !(FileKeyOf(st) == FileKeyOf(*target))) return std::optional<Basis>();
  return TargetBasis(e, fd.get(), *target, static_cast<uint64_t>(target->st_size));
}

// Asks for a file's content; with a basis, its first HASHES go out after the NEED that announces it.
Status Receiver::NeedFile(const Entry& e, std::optional<Basis> basis, bool name_free) {
  file_state_[e.id] = kFileNeeded;
  progress_->files_needed += 1;
  progress_->bytes_needed += e.size;
  pending_needs_.push_back(e.id);
  pending_with_basis_.push_back(basis.has_value());
  needs_total_ += 1;
  if (!basis) StartIncoming(e.id, name_free);
  if (basis) {
    protocol::Hashes offer;
    offer.id = e.id;
    offer.block_size = basis->block_size;
    offer.basis_size = basis->size;
    size_t level = basis->tree.LevelWithAtMost(kHashesFirstOfferMax);
    offer.level = static_cast<uint8_t>(level);
    for (size_t i = 0; i < basis->tree.count(level); ++i) offer.hashes.push_back(basis->tree.node(level, i));
    pending_hashes_.push_back(std::move(offer));
    basis_leaves_in_flight_ += basis->tree.count(0);
    bases_.emplace(e.id, std::move(*basis));
  }
  if (pending_needs_.size() >= kIdsPerBatchMax) return FlushReplies();
  return Status::Ok();
}

Status Receiver::HandleBlockEntry(const Entry& e) {
  struct stat st;
  if (::fstat(root_fd_, &st) != 0) return TargetError(Status::Errno(errno, "stat"), "");
  Result<uint64_t> size = ContentSize(root_fd_, st);
  if (!size.ok()) return TargetError(size.status(), "");
  if (S_ISBLK(st.st_mode) && *size < e.size) {
    return Status::InvalidArgument("target device '" + root_display_ + "' holds " + std::to_string(*size) +
                                   " bytes, the source " + std::to_string(e.size) + ": give it a device at least as large");
  }
  Item(*size == 0 ? protocol::ItemAction::kCreate : protocol::ItemAction::kUpdate, e);
  if (options_.dry_run) return Status::Ok();
  // A device larger than the source keeps its tail; only what the source covers is compared.
  Result<std::optional<Basis>> basis = TargetBasis(e, root_fd_, st, S_ISBLK(st.st_mode) ? e.size : *size);
  if (!basis.ok()) return TargetError(basis.status(), "");
  if (!*basis) return Status::Unsupported("block volume '" + root_display_ + "' is larger than the block delta handles (4 TiB)");
  return NeedFile(e, std::move(*basis));
}

Status Receiver::HandleWant(const Frame& frame) {
  Result<protocol::Want> want = protocol::Want::Decode(frame.payload);
  if (!want.ok()) return want.status();
  auto it = bases_.find(want->id);
  if (it == bases_.end()) return Status::Protocol("WANT for entry " + std::to_string(want->id) + ", which has no basis");
  const HashTree& tree = it->second.tree;
  const size_t level = want->level;
  if (level >= tree.levels()) return Status::Protocol("WANT for a tree level the basis does not have");
  protocol::Hashes answer;
  answer.id = want->id;
  answer.block_size = it->second.block_size;
  answer.basis_size = it->second.size;
  answer.level = static_cast<uint8_t>(level - 1);
  for (uint64_t node : want->nodes) {
    if (node >= tree.count(level)) return Status::Protocol("WANT for a tree node the basis does not have");
    uint64_t last = std::min<uint64_t>(tree.count(level - 1), (node + 1) * kHashTreeFanout);
    for (uint64_t child = node * kHashTreeFanout; child < last; ++child) {
      answer.hashes.push_back(tree.node(level - 1, child));
      if (answer.hashes.size() == kHashesPerMessageMax) {
        FERRY_RETURN_IF_ERROR(channel_.SendMessage(MessageType::kHashes, answer));
        answer.hashes.clear();
      }
    }
  }
  if (answer.hashes.empty()) return Status::Ok();
  return channel_.SendMessage(MessageType::kHashes, answer);
}

Status Receiver::HandlePatch(const Frame& frame) {
  Result<protocol::Patch> patch = protocol::Patch::Decode(frame.payload);
  if (!patch.ok()) return patch.status();
  const uint32_t id = patch->id;
  if (id >= entries_.size() || file_state_[id] != kFileNeeded || bases_.count(id) == 0 || open_file_) {
    return Status::Protocol("PATCH for entry " + std::to_string(id) + ", which has no basis or is already open");
  }
  Basis basis = *TakeBasis(id);
  switch (patch->kind) {
    case protocol::PatchKind::kWhole:
      StartIncoming(id);  // DATA and HOLE follow as for any file without a basis
      return Status::Ok();
    case protocol::PatchKind::kBlocks:
      return StartPatch(id, std::move(basis), patch->changed_bytes);
    case protocol::PatchKind::kRsync:
      if (options_.block || entries_.file_size(id) > kRsyncFallbackMaxBytes) break;
      return StartRsync(id, std::move(basis));
  }
  return Status::Protocol("PATCH kind not allowed for entry " + std::to_string(id));
}

std::optional<Receiver::Basis> Receiver::TakeBasis(uint32_t id) {
  auto it = bases_.find(id);
  if (it == bases_.end()) return std::nullopt;
  Basis basis = std::move(it->second);
  bases_.erase(it);
  basis_leaves_in_flight_ -= basis.tree.count(0);
  return basis;
}

// Refuses a basis that is no longer the file its HASHES came from: something else changed the
// target during the stage.
Status Receiver::CheckStillBasis(int fd, const Basis& basis, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return TargetError(Status::Errno(errno, "stat"), path);
  if (!(FileKeyOf(st) == basis.key)) {
    return TargetError(Status::Aborted("changed by something else during the stage; run the stage again"), path);
  }
  return Status::Ok();
}

Result<UniqueFd> Receiver::OpenBasis(int dir_fd, const std::string& name, const Basis& basis, int flags,
                                     const std::string& path) {
  UniqueFd fd(::openat(dir_fd, name.c_str(), flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return TargetError(Status::Errno(errno, "open"), path);
  FERRY_RETURN_IF_ERROR(CheckStillBasis(fd.get(), basis, path));
  return fd;
}

// A large file with a small delta is patched in place: rewriting gigabytes of a database file to
// change a few pages would cost more than the stage. Otherwise the basis's data is copied into a
// temp file (in the kernel, holes kept) and patched there, and the file is renamed into place.
Status Receiver::StartPatch(uint32_t id, Basis basis, uint64_t changed_bytes) {
  const Entry e = entries_.Get(id);
  OpenFile f;
  f.id = id;
  f.patch = true;
  f.block_size = basis.block_size;
  f.leaves = basis.tree.leaves();
  f.leaves.resize(BlockCount(e.size, basis.block_size));
  const bool resume = !basis.partial_temp.empty();
  const uint64_t larger = std::max(basis.size, e.size);
  const bool in_place =
      options_.block || (!resume && basis.links == 1 && larger >= kInPlaceMinBytes && changed_bytes * 2 <= larger);
  if (in_place && !basis.device && cache_ != nullptr) {
    FERRY_RETURN_IF_ERROR(TargetError(cache_->MarkDirty(basis.key.dev, basis.key.ino), e.path));
  }
  if (options_.block) {  // the device or image file itself
    if (!basis.device) FERRY_RETURN_IF_ERROR(CheckStillBasis(root_fd_, basis, ""));
    f.fd = UniqueFd(::fcntl(root_fd_, F_DUPFD_CLOEXEC, 0));
    if (!f.fd.valid()) return TargetError(Status::Errno(errno, "dup"), "");
    open_file_ = std::move(f);
    return Status::Ok();
  }
  auto [parent, name] = SplitParent(e.path);
  Result<int> dir_fd = ParentFd(parent);
  if (!dir_fd.ok()) return TargetError(dir_fd.status(), e.path);
  f.parent = std::string(parent);
  Result<UniqueFd> basis_fd = OpenBasis(*dir_fd, resume ? basis.partial_temp : std::string(name), basis,
                                        in_place || resume ? O_WRONLY : O_RDONLY, e.path);
  if (!basis_fd.ok()) return basis_fd.status();
  if (resume) {  // the partial file of an interrupted stage: finish it where it is
    // Its blocks are about to change: the record of its durable prefix no longer holds.
    if (Status s = cache_ != nullptr ? cache_->DropPartial(root_dev_, root_ino_, e.path) : Status::Ok(); !s.ok()) {
      return TargetError(s, e.path);
    }
    f.temp_name = basis.partial_temp;
    f.checkpoint = basis.size;
    f.fd = std::move(*basis_fd);
  } else if (in_place) {
    // Until it is finished, the file carries an mtime no source has, so that a stage cut short
    // leaves it looking changed, not up to date.
    timespec times[2] = {{0, UTIME_OMIT}, JustBefore(EntryMtime(e))};
    if (::futimens(basis_fd->get(), times) != 0) return TargetError(Status::Errno(errno, "set mtime"), e.path);
    f.fd = std::move(*basis_fd);
  } else {
    f.temp_name = TempName(id);
    f.fd = UniqueFd(::openat(*dir_fd, f.temp_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!f.fd.valid()) return TargetError(Status::Errno(errno, "create temp file"), e.path);
    open_file_ = std::move(f);  // from here on, a failure removes the temp file
    return CopyDataRegions(basis_fd->get(), open_file_->fd.get(), std::min(basis.size, e.size), e.path);
  }
  open_file_ = std::move(f);
  return Status::Ok();
}

// Shifted content: the receiver signs its basis, and patches it with the sender's librsync delta
// into a temp file, which then commits like any file.
Status Receiver::StartRsync(uint32_t id, Basis basis) {
  const Entry e = entries_.Get(id);
  auto [parent, name] = SplitParent(e.path);
  Result<int> dir_fd = ParentFd(parent);
  if (!dir_fd.ok()) return TargetError(dir_fd.status(), e.path);
  OpenFile f;
  f.id = id;
  f.parent = std::string(parent);
  f.block_size = basis.block_size;
  // The basis is the target's file, or the partial file of an interrupted stage.
  const std::string basis_name = basis.partial_temp.empty() ? std::string(name) : basis.partial_temp;
  Result<UniqueFd> basis_fd = OpenBasis(*dir_fd, basis_name, basis, O_RDONLY, e.path);
  if (!basis_fd.ok()) return basis_fd.status();
  f.basis_fd = std::move(*basis_fd);
  f.temp_name = TempName(id);
  f.fd = UniqueFd(::openat(*dir_fd, f.temp_name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!f.fd.valid()) return TargetError(Status::Errno(errno, "create temp file"), e.path);
  f.patcher = std::make_unique<rsync_delta::Patcher>(f.basis_fd.get(), f.fd.get(), e.size);
  open_file_ = std::move(f);
  Result<std::string> signature = rsync_delta::Signature(open_file_->basis_fd.get(), basis.size);
  if (!signature.ok()) return TargetError(signature.status(), e.path);
  figures_.target_bytes_hashed += basis.size;
  std::string_view rest = *signature;
  do {
    protocol::Piece piece{id, 0, rest.substr(0, kDataChunkMaxBytes)};
    rest.remove_prefix(piece.bytes.size());
    if (rest.empty()) piece.flags = protocol::kPieceLast;
    FERRY_RETURN_IF_ERROR(channel_.SendMessage(MessageType::kSignature, piece));
  } while (!rest.empty());
  return Status::Ok();
}

Status Receiver::HandleDeltaPiece(const Frame& frame) {
  Result<protocol::Piece> piece = protocol::Piece::Decode(frame.payload);
  if (!piece.ok()) return piece.status();
  if (!open_file_ || !open_file_->patcher || open_file_->id != piece->id || piece->flags != 0) {
    return Status::Protocol("DELTA for entry " + std::to_string(piece->id) + ", which is not being patched by delta");
  }
  FERRY_RETURN_IF_ERROR(open_file_->patcher->Feed(piece->bytes).Annotate("delta for '" + std::string(entries_.path(piece->id)) + "'"));
  progress_->bytes_sent += piece->bytes.size();
  return Status::Ok();
}

Result<std::vector<Hash128>> Receiver::FinishRsync(const protocol::FileEnd& end) {
  OpenFile& f = *open_file_;
  const Entry e = entries_.Get(f.id);
  FERRY_RETURN_IF_ERROR(f.patcher->Finish().Annotate("delta for '" + e.path + "'"));
  if (f.patcher->bytes_written() != e.size && end.outcome == protocol::FileOutcome::kComplete) {
    return Status::Corruption("delta for '" + e.path + "' made " + std::to_string(f.patcher->bytes_written()) +
                              " bytes, not " + std::to_string(e.size));
  }
  f.bytes_written = f.patcher->bytes_written();
  f.patcher.reset();
  f.basis_fd.Reset();
  bool shrank = false;
  Result<std::vector<Hash128>> leaves = HashFileBlocks(f.fd.get(), f.bytes_written, f.block_size, &shrank);
  if (!leaves.ok()) return TargetError(leaves.status(), e.path);
  // librsync writes zeros as data: blocks of zeros become holes again, as they are on the source.
  const Hash128 zeros = ZeroBlockHash(f.block_size);
  for (size_t i = 0; i < leaves->size(); ++i) {
    if ((*leaves)[i] == zeros) {
      ::fallocate(f.fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(i * f.block_size),
                  static_cast<off_t>(f.block_size));  // best effort: a hole only saves space
    }
  }
  leaves->resize(BlockCount(e.size, f.block_size), zeros);
  return leaves;
}

Status Receiver::CheckPatchRange(uint64_t offset, uint64_t length, const char* what) {
  const OpenFile& f = *open_file_;
  const Entry e = entries_.Get(f.id);
  uint64_t end = offset + length;
  if (offset < f.next_offset || end > e.size || offset % f.block_size != 0 ||
      (length % f.block_size != 0 && end != e.size)) {
    return Status::Corruption(std::string(what) + " at offset " + std::to_string(offset) + " of " +
                              std::to_string(length) + " bytes does not fit the blocks of '" + e.path + "'");
  }
  return Status::Ok();
}

Status Receiver::HandleHole(const Frame& frame) {
  Result<protocol::Hole> hole = protocol::Hole::Decode(frame.payload);
  if (!hole.ok()) return hole.status();
  if (!open_file_ || open_file_->id != hole->id) {  // a file sent whole
    if (hole->id >= entries_.size() || file_state_[hole->id] != kFileNeeded || bases_.count(hole->id) != 0) {
      return Status::Protocol("HOLE for entry " + std::to_string(hole->id) + ", which is not being sent");
    }
    return HandleWholeRange(hole->id, hole->offset, {}, hole->length, &control_dir_);
  }
  if (!open_file_->patch) {
    return Status::Protocol("HOLE for entry " + std::to_string(hole->id) + ", which is patched by delta");
  }
  FERRY_RETURN_IF_ERROR(CheckPatchRange(hole->offset, hole->length, "HOLE"));
  OpenFile& f = *open_file_;
  const Entry e = entries_.Get(f.id);
  struct stat st;
  if (::fstat(f.fd.get(), &st) != 0) return TargetError(Status::Errno(errno, "stat"), e.path);
  // Only what the file has now needs clearing; beyond it the final size adds zeros.
  Result<uint64_t> size = ContentSize(f.fd.get(), st);
  if (!size.ok()) return TargetError(size.status(), e.path);
  const uint64_t have = *size;
  if (hole->offset < have) {
    uint64_t length = std::min(hole->length, have - hole->offset);
    if (::fallocate(f.fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(hole->offset),
                    static_cast<off_t>(length)) != 0) {
      if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL) {
        return TargetError(Status::Errno(errno, "punch hole"), e.path);
      }
      // No holes here (or not at this alignment, as at a device's odd-sized tail): write zeros.
      static const std::string zeros(kDataChunkMaxBytes, '\0');
      for (uint64_t done = 0; done < length;) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), length - done));
        ssize_t w = io::Pwrite(f.fd.get(), zeros.data(), n, static_cast<off_t>(hole->offset + done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return TargetError(Status::Errno(errno, "write"), e.path);
        done += static_cast<uint64_t>(w);
      }
    }
  }
  const Hash128 zero_block = ZeroBlockHash(f.block_size);  // once: a hole may span millions of blocks
  for (uint64_t at = hole->offset; at < hole->offset + hole->length; at += f.block_size) {
    uint64_t length = std::min<uint64_t>(f.block_size, hole->offset + hole->length - at);
    f.leaves[at / f.block_size] = length == f.block_size ? zero_block : ZeroBlockHash(static_cast<uint32_t>(length));
  }
  f.next_offset = hole->offset + hole->length;
  progress_->bytes_skipped += hole->length;
  return Status::Ok();
}

// Once the stage's data is durable: each file written gets its hashes recorded under its
// identity as it is now, so the next stage reads neither this file nor its hashes from disk.
Status Receiver::RecordWritten() {
  if (cache_ == nullptr || written_.empty()) return Status::Ok();
  std::vector<std::pair<FileKey, BlockHashes>> rows;
  rows.reserve(written_.size());
  for (Written& w : written_) {
    const Entry e = entries_.Get(w.id);
    if (options_.block) {
      struct stat st;
      if (::fstat(root_fd_, &st) == 0 && S_ISREG(st.st_mode)) rows.emplace_back(FileKeyOf(st), BlockHashes{w.block_size, std::move(w.leaves)});
      continue;
    }
    auto [parent, name] = SplitParent(e.path);
    Result<int> dir_fd = ParentFd(parent);
    struct stat st;
    if (!dir_fd.ok() || ::fstatat(*dir_fd, std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != e.size ||
        st.st_mtim.tv_sec != w.mtime.tv_sec || st.st_mtim.tv_nsec != w.mtime.tv_nsec) {
      continue;  // gone, replaced or written since: nothing to vouch for
    }
    rows.emplace_back(FileKeyOf(st), BlockHashes{w.block_size, std::move(w.leaves)});
  }
  written_.clear();
  Status s = cache_->Record(rows);
  // The cache only saves reading: the stage's data is already durable, so a failure to record
  // costs the next stage a read, not correctness.
  if (!s.ok()) LOG_WARN(s.ToString() + ": the next stage will read these files to hash them");
  return Status::Ok();
}

}  // namespace ferry
