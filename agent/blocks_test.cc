#include "agent/blocks.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "agent/fs.h"
#include "agent/hash.h"
#include "agent/scan.h"
#include "base/bounds.h"

namespace ferry {
namespace {

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// The leaves computed the obvious way: BlockHash of each block of `data`.
std::vector<Hash128> DirectLeaves(const std::string& data, uint32_t block_size) {
  std::vector<Hash128> leaves;
  for (size_t at = 0; at < data.size(); at += block_size) leaves.push_back(BlockHash(std::string_view(data).substr(at, block_size)));
  return leaves;
}

std::vector<Hash128> SyntheticLeaves(size_t n) {
  std::vector<Hash128> leaves;
  for (size_t i = 0; i < n; ++i) leaves.push_back(BlockHash("leaf " + std::to_string(i)));
  return leaves;
}

Hash128 HashOfNodes(const std::vector<Hash128>& nodes, size_t first, size_t n) {
  return BlockHash(std::string_view(reinterpret_cast<const char*>(nodes[first].data()), n * sizeof(Hash128)));
}

TEST(BlockSizeForTest, PowerOfTwoInBoundsNearSqrtAndMonotonic) {
  EXPECT_EQ(BlockSizeFor(64 * kMiB), 8 * 1024u);
  EXPECT_EQ(BlockSizeFor(0), kBlockSizeMin);
  EXPECT_EQ(BlockSizeFor(1 * kMiB), kBlockSizeMin);
  EXPECT_EQ(BlockSizeFor(uint64_t{1} << 40), kBlockSizeMax);
  std::vector<uint64_t> sizes = {0, 1, 4095, 4096, 4097};
  for (int i = 12; i <= 50; ++i) {
    for (uint64_t s : {(uint64_t{1} << i) - 1, uint64_t{1} << i, (uint64_t{1} << i) + 1, uint64_t{3} << (i - 1)}) sizes.push_back(s);
  }
  std::sort(sizes.begin(), sizes.end());
  uint32_t previous = 0;
  for (uint64_t size : sizes) {
    uint32_t block = BlockSizeFor(size);
    EXPECT_TRUE(std::has_single_bit(block)) << size;
    EXPECT_GE(block, kBlockSizeMin) << size;
    EXPECT_LE(block, kBlockSizeMax) << size;
    EXPECT_GE(block, previous) << size;
    previous = block;
    // Within the bounds, the block is the power of two at or just below sqrt(size).
    if (size >= uint64_t{kBlockSizeMin} * kBlockSizeMin && size < uint64_t{kBlockSizeMax} * kBlockSizeMax) {
      EXPECT_LE(uint64_t{block} * block, size) << size;
      EXPECT_GT(uint64_t{block} * block * 4, size) << size;
    }
  }
}

TEST(BlockSizeForTest, BlockCountWithinLimitUpToLargestDescribableFile) {
  const uint64_t largest = uint64_t{kBlockSizeMax} * kBlocksPerFileMax;  // 4 TiB
  for (uint64_t size : {uint64_t{1} << 30, uint64_t{1} << 36, uint64_t{1} << 40, (uint64_t{1} << 41) + 1,
                        largest - 1, largest}) {
    EXPECT_LE(BlockCount(size, BlockSizeFor(size)), kBlocksPerFileMax) << size;
  }
  // Beyond that, blocks stay at the maximum and the count exceeds the limit: callers must check.
  for (uint64_t size : {largest + 1, uint64_t{1} << 50}) {
    EXPECT_EQ(BlockSizeFor(size), kBlockSizeMax) << size;
    EXPECT_GT(BlockCount(size, BlockSizeFor(size)), kBlocksPerFileMax) << size;
  }
}

TEST(BlockHasherTest, RandomSplitsMatchDirectHashes) {
  const uint32_t bs = kBlockSizeMin;
  const std::string data = RandomBytes(7 * bs + 123, 1);
  const std::vector<Hash128> expected = DirectLeaves(data, bs);
  ASSERT_EQ(expected.size(), 8u);
  for (uint32_t seed = 0; seed < 30; ++seed) {
    std::mt19937 rng(seed);
    BlockHasher hasher(bs);
    for (size_t at = 0; at < data.size();) {
      size_t n = std::min<size_t>(data.size() - at, rng() % (3 * bs) + 1);
      hasher.Update(at, std::string_view(data).substr(at, n));
      at += n;
      EXPECT_EQ(hasher.position(), at);
    }
    EXPECT_EQ(hasher.Finish(data.size()), expected) << "seed " << seed;
  }
}

TEST(BlockHasherTest, GapsAndTailAreZeros) {
  const uint32_t bs = kBlockSizeMin;
  // Pieces with gaps: inside a block, across a block boundary, spanning whole blocks from
  // mid-block; then a zero tail to `size` that ends in a short block.
  const std::vector<std::pair<uint64_t, size_t>> pieces = {{10, 100}, {500, 4000}, {bs * 2 - 7, 20}, {bs * 6 + 9, bs + 5}};
  const uint64_t size = bs * 10 + 77;
  std::string full(size, '\0');
  BlockHasher sparse(bs), explicit_zeros(bs);
  uint64_t at = 0;
  for (auto [offset, n] : pieces) {
    std::string bytes = RandomBytes(n, static_cast<uint32_t>(offset));
    full.replace(offset, n, bytes);
    sparse.Update(offset, bytes);
    explicit_zeros.Update(at, std::string(offset - at, '\0'));
    explicit_zeros.Update(offset, bytes);
    at = offset + n;
  }
  explicit_zeros.Update(at, std::string(size - at, '\0'));
  const std::vector<Hash128> expected = DirectLeaves(full, bs);
  ASSERT_EQ(expected.size(), 11u);
  EXPECT_EQ(expected[3], ZeroBlockHash(bs));  // a whole zero block between pieces
  EXPECT_EQ(expected[10], ZeroBlockHash(77));  // the short zero tail
  EXPECT_EQ(sparse.Finish(size), expected);
  EXPECT_EQ(explicit_zeros.Finish(size), expected);
}

TEST(BlockHasherTest, ShortLastBlockEmptyFileAndZeroBlocks) {
  const uint32_t bs = kBlockSizeMin;
  const std::string data = RandomBytes(2 * bs + 1, 2);
  BlockHasher hasher(bs);
  hasher.Update(0, data);
  std::vector<Hash128> leaves = hasher.Finish(data.size());
  ASSERT_EQ(leaves.size(), 3u);
  EXPECT_EQ(leaves[2], BlockHash(data.substr(2 * bs)));
  EXPECT_TRUE(BlockHasher(bs).Finish(0).empty());
  EXPECT_EQ(BlockHasher(bs).Finish(10), std::vector<Hash128>{ZeroBlockHash(10)});
  for (uint32_t n : {0u, 1u, 4095u, kBlockSizeMin, kBlockSizeMax}) EXPECT_EQ(ZeroBlockHash(n), BlockHash(std::string(n, '\0')));
  EXPECT_NE(ZeroBlockHash(bs), ZeroBlockHash(bs - 1));
  EXPECT_NE(BlockHash("a"), BlockHash("b"));
}

TEST(HashTreeTest, LevelSizesAndNodesHashTheirChildren) {
  for (size_t n : {1, 2, 16, 17, 256, 257, 4097}) {
    HashTree tree(SyntheticLeaves(n));
    ASSERT_EQ(tree.count(0), n);
    EXPECT_EQ(tree.leaves(), SyntheticLeaves(n));
    EXPECT_EQ(tree.count(tree.levels() - 1), 1u) << n;
    if (tree.levels() > 1) {
      EXPECT_GT(tree.count(tree.levels() - 2), 1u) << n;  // no extra level
    }
    EXPECT_EQ(tree.count(tree.levels()), 0u);
    for (size_t k = 0; k < tree.levels(); ++k) EXPECT_EQ(TreeCount(n, k), tree.count(k)) << n << " " << k;
    for (size_t k = 0; k + 1 < tree.levels(); ++k) {
      ASSERT_EQ(tree.count(k + 1), (tree.count(k) + 15) / 16) << n << " " << k;
      std::vector<Hash128> below(tree.count(k));
      for (size_t i = 0; i < below.size(); ++i) below[i] = tree.node(k, i);
      for (size_t i = 0; i < tree.count(k + 1); ++i) {
        EXPECT_EQ(tree.node(k + 1, i), HashOfNodes(below, 16 * i, std::min<size_t>(16, below.size() - 16 * i)));
      }
    }
    EXPECT_EQ(tree.Root(), tree.node(tree.levels() - 1, 0));
  }
  EXPECT_EQ(HashTree(SyntheticLeaves(4097)).levels(), 5u);  // 4097, 257, 17, 2, 1
}

TEST(HashTreeTest, RootOfEmptyAndSingleLeafAndMinLevels) {
  EXPECT_EQ(HashTree().Root(), BlockHash(""));
  EXPECT_EQ(HashTree(std::vector<Hash128>{}).Root(), BlockHash(""));
  EXPECT_EQ(HashTree(std::vector<Hash128>{}, 3).Root(), BlockHash(""));
  const Hash128 leaf = BlockHash("only");
  EXPECT_EQ(HashTree(std::vector<Hash128>{leaf}).levels(), 1u);
  EXPECT_EQ(HashTree(std::vector<Hash128>{leaf}).Root(), leaf);
  EXPECT_EQ(HashTree(std::vector<Hash128>{leaf}, 4).Root(), leaf);
  HashTree plain(SyntheticLeaves(17));
  HashTree tall(SyntheticLeaves(17), 5);
  ASSERT_EQ(plain.levels(), 3u);
  ASSERT_EQ(tall.levels(), 5u);
  for (size_t k = 0; k < 3; ++k) EXPECT_EQ(tall.count(k), plain.count(k));
  EXPECT_EQ(tall.count(3), 1u);
  EXPECT_EQ(tall.node(3, 0), HashOfNodes({tall.node(2, 0)}, 0, 1));
  EXPECT_EQ(tall.Root(), plain.Root());
  EXPECT_NE(tall.Root(), tall.node(4, 0));
  EXPECT_EQ(HashTree(SyntheticLeaves(17), 2).levels(), 3u);  // min_levels never removes levels
}

TEST(HashTreeTest, LevelWithAtMost) {
  HashTree tree(SyntheticLeaves(4097));  // 4097, 257, 17, 2, 1
  EXPECT_EQ(tree.LevelWithAtMost(kHashesFirstOfferMax), 2u);
  EXPECT_EQ(tree.LevelWithAtMost(257), 1u);
  EXPECT_EQ(tree.LevelWithAtMost(4097), 0u);
  EXPECT_EQ(tree.LevelWithAtMost(2), 3u);
  EXPECT_EQ(tree.LevelWithAtMost(1), 4u);
  EXPECT_EQ(HashTree(SyntheticLeaves(200)).LevelWithAtMost(256), 0u);
}

TEST(BlockHashTest, OneByteChangeChangesOnePathUpTheTree) {
  const uint32_t bs = kBlockSizeMin;
  const std::string data = RandomBytes(300 * bs - 5, 3);
  const HashTree before(DirectLeaves(data, bs));
  ASSERT_EQ(before.levels(), 4u);  // 300, 19, 2, 1
  for (uint64_t offset : {uint64_t{0}, uint64_t{bs} * 200 + 17, data.size() - 1}) {
    std::string changed = data;
    changed[offset] = static_cast<char>(changed[offset] ^ 1);
    const HashTree after(DirectLeaves(changed, bs));
    uint64_t index = offset / bs;
    for (size_t k = 0; k < before.levels(); ++k, index /= 16) {
      ASSERT_EQ(after.count(k), before.count(k));
      for (size_t i = 0; i < before.count(k); ++i) {
        EXPECT_EQ(after.node(k, i) != before.node(k, i), i == index) << offset << " level " << k << " node " << i;
      }
    }
    EXPECT_NE(after.Root(), before.Root());
  }
}

class HashFileBlocksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-blocks-test.XXXXXX";
    ASSERT_GE(fd_ = ::mkstemp(tmpl), 0);
    ::unlink(tmpl);
  }
  void TearDown() override { ::close(fd_); }
  void Write(uint64_t at, const std::string& s) { ASSERT_EQ(::pwrite(fd_, s.data(), s.size(), static_cast<off_t>(at)), static_cast<ssize_t>(s.size())); }
  int fd_ = -1;
};

TEST_F(HashFileBlocksTest, SparseFileMatchesHashingAllItsBytes) {
  const uint64_t size = 10 * kMiB + 777;
  ASSERT_EQ(::ftruncate(fd_, static_cast<off_t>(size)), 0);
  Write(0, RandomBytes(5000, 4));
  Write(3 * kMiB + 123, RandomBytes(2 * kMiB + 99, 5));  // larger than one read chunk, unaligned
  Write(8 * kMiB, RandomBytes(64 * 1024, 6));
  Write(size - 10, "tail bytes");
  std::string all(size, '\0');
  ASSERT_EQ(::pread(fd_, all.data(), size, 0), static_cast<ssize_t>(size));
  for (uint32_t bs : {kBlockSizeMin, BlockSizeFor(size), kBlockSizeMax}) {
    bool shrank = true;
    Result<std::vector<Hash128>> leaves = HashFileBlocks(fd_, size, bs, &shrank);
    ASSERT_TRUE(leaves.ok()) << leaves.status().ToString();
    EXPECT_FALSE(shrank);
    EXPECT_EQ(*leaves, DirectLeaves(all, bs)) << bs;
  }
}

TEST_F(HashFileBlocksTest, ShorterFileCountsAsZerosAndSetsShrank) {
  const std::string data = RandomBytes(3 * kBlockSizeMin + 10, 7);
  Write(0, data);
  const uint64_t asked = data.size() + 5000;
  bool shrank = false;
  Result<std::vector<Hash128>> leaves = HashFileBlocks(fd_, asked, kBlockSizeMin, &shrank);
  ASSERT_TRUE(leaves.ok()) << leaves.status().ToString();
  EXPECT_EQ(*leaves, DirectLeaves(data + std::string(5000, '\0'), kBlockSizeMin));
  EXPECT_TRUE(shrank);
}

// The whole-file content hash (--checksum) skips holes (hashes zeros from memory) and equals
// the hash of all the file's bytes: data at the start, holes between and at the end.
TEST(HashFileContentTest, SparseFileHashEqualsTheHashOfAllItsBytes) {
  char dir[] = "/tmp/ferry-content-hash.XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/f";
  for (uint64_t size : {uint64_t{0}, uint64_t{10}, 9 * kMiB + 5, 12 * kMiB}) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    std::string all(size, '\0');
    for (uint64_t at : {uint64_t{0}, 3 * kMiB + 7, 6 * kMiB}) {
      if (at + 4096 > size) continue;
      const std::string data = RandomBytes(4096 + at % 1000, at + 1);
      if (at + data.size() > size) continue;
      ASSERT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(at)), static_cast<ssize_t>(data.size()));
      all.replace(at, data.size(), data);
    }
    ::close(fd);
    Xxh3Hasher direct;
    direct.Update(all.data(), all.size());
    UniqueFd dir_fd(::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    Result<Hash128> hash = HashFileContent(dir_fd.get(), "f", "f");
    ASSERT_TRUE(hash.ok()) << hash.status().ToString();
    EXPECT_EQ(*hash, direct.Finish()) << size;
  }
  ::unlink(path.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace ferry
