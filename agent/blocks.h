// Block hashes: the delta engine's view of a file. A file is a row of fixed-size blocks (the
// last may be short), each hashed with xxh3-128 (the leaves), and a tree of fanout 16 over the
// leaves, so that two sides can find the few blocks that differ in a huge file by exchanging
// kilobytes: the receiver offers a high tree level, the sender asks for the children of the nodes
// that differ, and so down to the leaves. Both sides compute the same tree for the same block
// size; the root is the file's content hash in FILE_END.
// Threading: plain values; one BlockHasher per thread.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "agent/hash.h"
#include "base/result.h"
#include "protocol/messages.h"

namespace ferry {

using protocol::Hash128;

// The block size for a file of `size` bytes: a power of two near sqrt(size), within
// [kBlockSizeMin, kBlockSizeMax]. Up to 4 TiB a file has at most kBlocksPerFileMax blocks;
// beyond, it has more, and it is sent whole and not cached.
uint32_t BlockSizeFor(uint64_t size);
inline uint64_t BlockCount(uint64_t size, uint32_t block_size) {
  return (size + block_size - 1) / block_size;
}

// The leaf hash of `length` zero bytes (a hole, or a block of zeros).
Hash128 ZeroBlockHash(uint32_t length);
Hash128 BlockHash(std::string_view bytes);
// The leaves of `size` bytes of zeros in blocks of `block_size`: a file sent whole starts from
// them, and each block that arrives replaces its own.
std::vector<Hash128> ZeroLeaves(uint64_t size, uint32_t block_size);

// Computes the leaves of a file from its data given as (offset, bytes) pieces in increasing
// offset order; gaps between pieces (holes) are zeros and cost no hashing of their bytes when
// they span whole blocks.
class BlockHasher {
 public:
  explicit BlockHasher(uint32_t block_size);
  void Update(uint64_t offset, std::string_view bytes);  // REQUIRES: offset >= position()
  uint64_t position() const { return position_; }
  // The leaves of the whole blocks hashed so far.
  const std::vector<Hash128>& leaves() const { return leaves_; }
  uint32_t block_size() const { return block_size_; }
  // The leaves of a file of `size` bytes (>= position()); the rest is zeros.
  std::vector<Hash128> Finish(uint64_t size);

 private:
  void Zeros(uint64_t until);
  void CloseBlock();

  uint32_t block_size_;
  Hash128 zero_block_;
  uint64_t position_ = 0;
  uint32_t in_block_ = 0;  // bytes of the current block hashed so far
  Xxh3Hasher current_;
  std::vector<Hash128> leaves_;
};

// The hash tree over a file's leaves. Level 0 is the leaves; node i of level k+1 hashes the
// concatenation of nodes 16i .. 16i+15 of level k (fewer at the end). The top level has one node.
class HashTree {
 public:
  HashTree() = default;
  // At least `min_levels` levels are built (a level above a single node has one node hashing
  // it), so that a smaller file can be compared at a level a larger one offers.
  explicit HashTree(std::vector<Hash128> leaves, size_t min_levels = 1);
  size_t levels() const { return levels_.size(); }
  size_t count(size_t level) const { return level < levels_.size() ? levels_[level].size() : 0; }
  const Hash128& node(size_t level, size_t index) const { return levels_[level][index]; }
  const std::vector<Hash128>& leaves() const { return levels_[0]; }
  // The file's content hash: the first single node from the leaves up (xxh3-128 of nothing for
  // an empty file).
  Hash128 Root() const;
  // The lowest level with at most `max_nodes` nodes.
  size_t LevelWithAtMost(size_t max_nodes) const;

 private:
  std::vector<std::vector<Hash128>> levels_;
};

// Reads the first `size` bytes of `fd` (data regions only: holes are zeros without reading) and
// returns their leaves. A file shorter than `size` counts as zeros to `size` and sets *shrank.
Result<std::vector<Hash128>> HashFileBlocks(int fd, uint64_t size, uint32_t block_size, bool* shrank);

// Node count of `level` in a tree over `leaves` leaves.
uint64_t TreeCount(uint64_t leaves, size_t level);

}  // namespace ferry
