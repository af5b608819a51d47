#include "agent/blocks.h"

#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#if defined(__x86_64__)
// The same hashes through the library's run-time CPU dispatch: AVX2 where the CPU has it, 3x
// the SSE2 baseline that a plain call to a distribution's generic x86-64 build gets.
#include <xxh_x86dispatch.h>
#endif

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <string>

#include "agent/fs.h"
#include "agent/io/fault.h"
#include "base/bounds.h"
#include "base/check.h"

namespace ferry {

namespace {

Hash128 Canonical(XXH128_hash_t hash) {
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, hash);
  Hash128 out;
  std::copy(std::begin(canonical.digest), std::end(canonical.digest), out.begin());
  return out;
}

const char* ZeroBytes() {
  static const std::vector<char> zeros(kBlockSizeMax, 0);
  return zeros.data();
}

}  // namespace

uint32_t BlockSizeFor(uint64_t size) {
  uint64_t root = static_cast<uint64_t>(std::sqrt(static_cast<double>(size)));
  uint64_t block = root <= kBlockSizeMin ? kBlockSizeMin : std::bit_floor(root);
  return static_cast<uint32_t>(std::min<uint64_t>(block, kBlockSizeMax));
}

Hash128 BlockHash(std::string_view bytes) { return Canonical(XXH3_128bits(bytes.data(), bytes.size())); }

Hash128 ZeroBlockHash(uint32_t length) {
  CHECK(length <= kBlockSizeMax);
  return BlockHash(std::string_view(ZeroBytes(), length));
}

BlockHasher::BlockHasher(uint32_t block_size) : block_size_(block_size), zero_block_(ZeroBlockHash(block_size)) {
  CHECK(std::has_single_bit(block_size) && block_size >= kBlockSizeMin && block_size <= kBlockSizeMax);
}

void BlockHasher::CloseBlock() {
  leaves_.push_back(current_.Finish());
  current_.Reset();
  in_block_ = 0;
}

std::vector<Hash128> ZeroLeaves(uint64_t size, uint32_t block_size) {
  const uint64_t blocks = BlockCount(size, block_size);
  std::vector<Hash128> leaves(blocks, ZeroBlockHash(block_size));
  if (blocks > 0) leaves.back() = ZeroBlockHash(static_cast<uint32_t>(size - (blocks - 1) * block_size));
  return leaves;
}

// Hashes zeros from position_ to `until`: whole zero blocks by their known hash.
void BlockHasher::Zeros(uint64_t until) {
  while (position_ < until) {
    if (in_block_ == 0 && until - position_ >= block_size_) {
      uint64_t blocks = (until - position_) / block_size_;
      leaves_.insert(leaves_.end(), blocks, zero_block_);
      position_ += blocks * block_size_;
      continue;
    }
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(block_size_ - in_block_, until - position_));
    current_.Update(ZeroBytes(), n);
    in_block_ += n;
    position_ += n;
    if (in_block_ == block_size_) CloseBlock();
  }
}

void BlockHasher::Update(uint64_t offset, std::string_view bytes) {
  CHECK(offset >= position_);
  Zeros(offset);
  while (!bytes.empty()) {
    if (in_block_ == 0 && bytes.size() >= block_size_) {  // a whole block: one call
      leaves_.push_back(BlockHash(bytes.substr(0, block_size_)));
      bytes.remove_prefix(block_size_);
      position_ += block_size_;
      continue;
    }
    size_t n = std::min<size_t>(block_size_ - in_block_, bytes.size());
    current_.Update(bytes.data(), n);
    in_block_ += static_cast<uint32_t>(n);
    position_ += n;
    bytes.remove_prefix(n);
    if (in_block_ == block_size_) CloseBlock();
  }
}

std::vector<Hash128> BlockHasher::Finish(uint64_t size) {
  CHECK(size >= position_);
  Zeros(size);
  if (in_block_ > 0) CloseBlock();
  return std::move(leaves_);
}

HashTree::HashTree(std::vector<Hash128> leaves, size_t min_levels) {
  levels_.push_back(std::move(leaves));
  while (levels_.back().size() > 1 || levels_.size() < min_levels) {
    const std::vector<Hash128>& below = levels_.back();
    std::vector<Hash128> level((below.size() + kHashTreeFanout - 1) / kHashTreeFanout);
    for (size_t i = 0; i < level.size(); ++i) {
      size_t first = i * kHashTreeFanout;
      size_t n = std::min<size_t>(kHashTreeFanout, below.size() - first);
      level[i] = BlockHash(std::string_view(reinterpret_cast<const char*>(below[first].data()), n * sizeof(Hash128)));
    }
    levels_.push_back(std::move(level));
  }
}

Hash128 HashTree::Root() const {
  for (const std::vector<Hash128>& level : levels_) {
    if (level.empty()) return BlockHash({});
    if (level.size() == 1) return level[0];
  }
  return BlockHash({});
}

size_t HashTree::LevelWithAtMost(size_t max_nodes) const {
  for (size_t level = 0; level < levels_.size(); ++level) {
    if (levels_[level].size() <= max_nodes) return level;
  }
  return levels_.empty() ? 0 : levels_.size() - 1;
}

Result<std::vector<Hash128>> HashFileBlocks(int fd, uint64_t size, uint32_t block_size, bool* shrank) {
  BlockHasher hasher(block_size);
  std::string buffer(kDataChunkMaxBytes, '\0');
  *shrank = false;
  for (uint64_t offset = 0; offset < size && !*shrank;) {
    uint64_t start = 0, stop = 0;
    Result<bool> more = NextDataRegion(fd, offset, size, &start, &stop);
    if (!more.ok()) return more.status();
    if (!*more) break;
    for (uint64_t at = start; at < stop;) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), stop - at));
      ssize_t n = io::Pread(fd, buffer.data(), want, static_cast<off_t>(at));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::Errno(errno, "read");
      if (n == 0) {
        *shrank = true;
        break;
      }
      hasher.Update(at, std::string_view(buffer.data(), static_cast<size_t>(n)));
      at += static_cast<uint64_t>(n);
    }
    offset = stop;
  }
  // Regions end at the file's end: a file shorter than `size` shows only in its size.
  struct stat st;
  Result<uint64_t> now = ::fstat(fd, &st) == 0 ? ContentSize(fd, st) : Status::Errno(errno, "stat");
  if (!*shrank && (!now.ok() || *now < size)) *shrank = true;
  return hasher.Finish(size);
}

uint64_t TreeCount(uint64_t leaves, size_t level) {
  uint64_t n = leaves;
  for (size_t k = 0; k < level; ++k) n = (n + kHashTreeFanout - 1) / kHashTreeFanout;
  return n;
}

}  // namespace ferry
