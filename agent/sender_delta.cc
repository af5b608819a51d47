// Sender, delta half: a needed file whose target has a version (a basis) is compared block by
// block through the hash tree, and only the blocks that differ are sent. See agent/blocks.h.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/io/fault.h"
#include "agent/rsync_delta.h"
#include "agent/sender.h"
#include "base/bounds.h"
#include "base/check.h"
#include "protocol/wire.h"

namespace ferry {

using protocol::Entry;
using protocol::FileOutcome;
using protocol::MessageType;

namespace {

bool AllZero(std::string_view bytes) {
  // memcmp against itself shifted by one: zero iff every byte equals the first, which is 0.
  return bytes.empty() || (bytes[0] == 0 && std::memcmp(bytes.data(), bytes.data() + 1, bytes.size() - 1) == 0);
}

void ReadFailed(const Entry& entry, const std::string& why, FileOutcome* outcome, std::string* message) {
  if (*outcome == FileOutcome::kReadError) return;
  *outcome = FileOutcome::kReadError;
  *message = "read '" + entry.path + "': " + why;
}

}  // namespace

Result<protocol::Hashes> Sender::AwaitHashes(uint32_t id) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] {
    auto it = hashes_.find(id);
    return (it != hashes_.end() && !it->second.empty()) || !failure_.ok();
  });
  if (!failure_.ok()) return failure_;
  std::deque<protocol::Hashes>& queue = hashes_[id];
  protocol::Hashes h = std::move(queue.front());
  queue.pop_front();
  queued_hash_bytes_ -= h.hashes.size() * sizeof(Hash128);
  return h;
}

Status Sender::SendFileDelta(int fd, const Entry& entry, protocol::FileEnd* end, uint64_t* data_bytes) {
  Result<protocol::Hashes> offer = AwaitHashes(entry.id);
  if (!offer.ok()) return offer.status();
  const uint32_t block_size = offer->block_size;
  const uint64_t basis_leaves = BlockCount(offer->basis_size, block_size);
  const size_t level = offer->level;
  if (basis_leaves > kBlocksPerFileMax || offer->hashes.size() != TreeCount(basis_leaves, level)) {
    return Status::Protocol("HASHES for '" + entry.path + "' do not describe a basis of " +
                            std::to_string(offer->basis_size) + " bytes");
  }
  const uint64_t own_leaves = BlockCount(entry.size, block_size);
  if (own_leaves > kBlocksPerFileMax && scan_options_.block) {
    return Status::Unsupported("block volume '" + root_ + "' is larger than the block delta handles (4 TiB)");
  }
  if (own_leaves > kBlocksPerFileMax) {  // grew past what this block size can describe
    FERRY_RETURN_IF_ERROR(channel_.SendMessage(MessageType::kPatch, protocol::Patch{entry.id, protocol::PatchKind::kWhole, entry.size}));
    return SendFileData(fd, entry, end, data_bytes);
  }
  bool shrank = false;
  Result<std::vector<Hash128>> leaves = HashFileBlocks(fd, entry.size, block_size, &shrank);
  if (!leaves.ok()) {
    ReadFailed(entry, leaves.status().ToString(), &end->outcome, &end->message);
    return Status::Ok();
  }
  if (shrank) end->outcome = FileOutcome::kChanged;  // resent next stage
  HashTree tree(std::move(*leaves), level + 1);

  // Down the tree: at each level, the nodes both sides have and that differ; their children
  // are asked for, until the leaves.
  std::vector<uint64_t> differing;
  const std::vector<Hash128>* theirs = &offer->hashes;
  std::vector<uint64_t> their_index(offer->hashes.size());
  for (uint64_t i = 0; i < their_index.size(); ++i) their_index[i] = i;
  std::vector<Hash128> received;
  for (size_t at = level;; --at) {
    differing.clear();
    for (size_t k = 0; k < theirs->size(); ++k) {
      uint64_t node = their_index[k];
      if (node < tree.count(at) && tree.node(at, node) != (*theirs)[k]) differing.push_back(node);
    }
    if (at == 0 || differing.empty()) break;
    // Ask for the children, in WANT frames of bounded size, and collect the answers.
    received.clear();
    their_index.clear();
    const uint64_t below = TreeCount(basis_leaves, at - 1);
    const size_t per_want = kHashesPerMessageMax / kHashTreeFanout;
    for (size_t first = 0; first < differing.size(); first += per_want) {
      protocol::Want want{entry.id, static_cast<uint8_t>(at), {}};
      want.nodes.assign(differing.begin() + static_cast<ptrdiff_t>(first),
                        differing.begin() + static_cast<ptrdiff_t>(std::min(differing.size(), first + per_want)));
      size_t expected = 0;
      for (uint64_t node : want.nodes) {
        for (uint64_t c = node * kHashTreeFanout; c < std::min(below, (node + 1) * kHashTreeFanout); ++c) {
          their_index.push_back(c);
          ++expected;
        }
      }
      FERRY_RETURN_IF_ERROR(channel_.SendMessage(MessageType::kWant, want));
      while (expected > 0) {
        Result<protocol::Hashes> answer = AwaitHashes(entry.id);
        if (!answer.ok()) return answer.status();
        if (answer->level != at - 1 || answer->hashes.size() > expected || answer->block_size != block_size) {
          return Status::Protocol("HASHES for '" + entry.path + "' do not answer the WANT");
        }
        received.insert(received.end(), answer->hashes.begin(), answer->hashes.end());
        expected -= answer->hashes.size();
      }
    }
    theirs = &received;
  }
  // The blocks to send: those that differ at the leaves, and all beyond the basis.
  std::vector<std::pair<uint64_t, uint64_t>> runs;  // [first, last) leaf ranges
  auto add = [&](uint64_t first, uint64_t last) {
    if (first >= last) return;
    if (!runs.empty() && runs.back().second == first) {
      runs.back().second = last;
    } else {
      runs.emplace_back(first, last);
    }
  };
  for (uint64_t leaf : differing) add(leaf, leaf + 1);  // the descent ended at the leaves, or found none
  add(std::min(basis_leaves, own_leaves), own_leaves);
  uint64_t changed = 0;
  for (auto [first, last] : runs) changed += std::min(entry.size, last * block_size) - first * block_size;
  // Whether the basis is worth patching is judged on what the two have in common: a file that
  // grew (or a partial file being resumed) is still patched however large its new tail.
  uint64_t rewritten = 0;
  for (uint64_t leaf : differing) rewritten += std::min(entry.size, (leaf + 1) * block_size) - leaf * block_size;
  const bool basis_useless = rewritten * 2 > std::min(offer->basis_size, entry.size);
  if (basis_useless && !scan_options_.block && entry.size <= kRsyncFallbackMaxBytes &&
      end->outcome == FileOutcome::kComplete) {
    // Little matched in place: the content may have shifted (an insert in the middle), which a
    // rolling checksum finds. The root covers the file as hashed; a change since is caught by
    // the stat check (kChanged), and the receiver then trusts the frames' checksums instead.
    {
      std::lock_guard<std::mutex> lock(mutex_);
      awaiting_signature_ = entry.id;  // before the PATCH: its answer may come at once
    }
    FERRY_RETURN_IF_ERROR(channel_.SendMessage(MessageType::kPatch, protocol::Patch{entry.id, protocol::PatchKind::kRsync, entry.size}));
    end->content_hash = HashTree(tree.leaves()).Root();
    return SendRsyncDelta(fd, entry, data_bytes);
  }
  if (basis_useless && !scan_options_.block) {  // a block volume is always patched in place
    // Mostly rewritten: the basis saves little, and a file sent whole is rebuilt in a fresh
    // temp file with checkpoints a killed stage can resume from.
    FERRY_RETURN_IF_ERROR(channel_.SendMessage(MessageType::kPatch, protocol::Patch{entry.id, protocol::PatchKind::kWhole, entry.size}));
    return SendFileData(fd, entry, end, data_bytes);
  }
  FERRY_RETURN_IF_ERROR(channel_.SendMessage(MessageType::kPatch,
                                             protocol::Patch{entry.id, protocol::PatchKind::kBlocks, changed}));
  std::vector<Hash128> final_leaves = tree.leaves();
  for (auto [first, last] : runs) {
    FERRY_RETURN_IF_ERROR(SendBlocks(fd, entry, block_size, first, last, &final_leaves, end, data_bytes));
    if (end->outcome == FileOutcome::kReadError) return Status::Ok();
  }
  end->content_hash = HashTree(std::move(final_leaves)).Root();
  return Status::Ok();
}

Status Sender::AcceptSignaturePiece(const protocol::Piece& piece) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (piece.id != awaiting_signature_) {
    return Status::Protocol("SIGNATURE for entry " + std::to_string(piece.id) + ", which was not asked for");
  }
  Signature& sig = signatures_[piece.id];
  if (sig.complete || sig.bytes.size() + piece.bytes.size() > kRsyncSignatureMaxBytes) {
    return Status::Protocol("SIGNATURE for entry " + std::to_string(piece.id) + " too long or after its end");
  }
  sig.bytes.append(piece.bytes);
  sig.complete = (piece.flags & protocol::kPieceLast) != 0;
  if (sig.complete) changed_.notify_all();
  return Status::Ok();
}

Status Sender::SendRsyncDelta(int fd, const Entry& entry, uint64_t* data_bytes) {
  std::string signature;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] {
      auto it = signatures_.find(entry.id);
      return (it != signatures_.end() && it->second.complete) || !failure_.ok();
    });
    if (!failure_.ok()) return failure_;
    signature = std::move(signatures_[entry.id].bytes);
    signatures_.erase(entry.id);
    awaiting_signature_ = UINT32_MAX;
  }
  std::string frame;
  Status s = rsync_delta::Delta(signature, fd, entry.size, [&](std::string_view piece) {
    frame.clear();
    protocol::Piece{entry.id, 0, piece}.Encode(&frame);
    *data_bytes += piece.size();
    progress_->bytes_sent += piece.size();
    return channel_.Send(MessageType::kDelta, frame);
  });
  // A file that shrank since it was hashed is resent next stage; the receiver sees kChanged.
  if (s.code() == Code::kIoError) return Status::Ok();
  return s;
}

Status Sender::SendBlocks(int fd, const Entry& entry, uint32_t block_size, uint64_t first, uint64_t last,
                          std::vector<Hash128>* leaves, protocol::FileEnd* end, uint64_t* data_bytes) {
  const uint64_t blocks_per_chunk = kDataChunkMaxBytes / block_size;
  uint64_t hole_start = 0, hole_length = 0;  // a run of zero blocks not sent yet
  auto flush_hole = [&]() -> Status {
    if (hole_length == 0) return Status::Ok();
    Status s = channel_.SendMessage(MessageType::kHole, protocol::Hole{entry.id, hole_start, hole_length});
    hole_length = 0;
    return s;
  };
  for (uint64_t block = first; block < last;) {
    uint64_t count = std::min(blocks_per_chunk, last - block);
    uint64_t at = block * block_size;
    size_t want = static_cast<size_t>(std::min(entry.size, (block + count) * block_size) - at);
    const size_t header = PrepareDataPayload(&control_.payload, entry.id, at, want);
    for (size_t done = 0; done < want;) {
      ssize_t n = io::Pread(fd, control_.payload.data() + header + done, want - done, static_cast<off_t>(at + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ReadFailed(entry, std::strerror(errno), &end->outcome, &end->message);
        return Status::Ok();
      }
      if (n == 0) {  // shrank since it was hashed: zeros stand in, and the next stage resends it
        std::memset(control_.payload.data() + header + done, 0, want - done);
        end->outcome = FileOutcome::kChanged;
        break;
      }
      done += static_cast<size_t>(n);
    }
    // Per block: zeros become a HOLE, data goes out in one DATA frame per run of data blocks.
    std::string_view bytes = std::string_view(control_.payload).substr(header);
    size_t data_first = 0, data_end = 0;  // byte range of `bytes` pending as DATA
    auto flush_data = [&]() -> Status {
      if (data_end == data_first) return Status::Ok();
      std::string frame;
      protocol::WireWriter fw(&frame);
      fw.Varint(entry.id);
      fw.Varint(at + data_first);
      frame.append(bytes.substr(data_first, data_end - data_first));
      *data_bytes += data_end - data_first;
      progress_->bytes_sent += data_end - data_first;
      data_first = data_end;
      return channel_.Send(MessageType::kData, frame, /*try_compress=*/true, nullptr);
    };
    for (uint64_t k = 0; k < count; ++k) {
      size_t offset = static_cast<size_t>(k * block_size);
      std::string_view piece = bytes.substr(offset, std::min<size_t>(block_size, bytes.size() - offset));
      (*leaves)[block + k] = BlockHash(piece);
      if (AllZero(piece)) {
        FERRY_RETURN_IF_ERROR(flush_data());
        data_first = data_end = offset + piece.size();
        if (hole_length == 0) hole_start = at + offset;
        hole_length += piece.size();
      } else {
        FERRY_RETURN_IF_ERROR(flush_hole());
        data_end = offset + piece.size();
      }
    }
    FERRY_RETURN_IF_ERROR(flush_data());
    block += count;
  }
  return flush_hole();
}

}  // namespace ferry
