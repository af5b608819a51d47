#include "agent/state_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace ferry {
namespace {

BlockHashes MakeBlocks(size_t count, uint8_t seed, uint32_t block_size = 4096) {
  BlockHashes blocks;
  blocks.block_size = block_size;
  for (size_t i = 0; i < count; ++i) {
    protocol::Hash128 h{};
    for (size_t j = 0; j < h.size(); ++j) h[j] = static_cast<uint8_t>(seed + i * 31 + j);
    blocks.leaves.push_back(h);
  }
  return blocks;
}

FileKey MakeKey(uint64_t ino, uint64_t size = 10'000) {
  // dev and ctime near the top of their ranges: u64 identities must survive signed storage.
  return FileKey{~uint64_t{0} - 7, ino, size, 1'700'000'000'123'456'789, 1'700'000'001'000'000'001};
}

class StateCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-state-cache-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = std::string(tmpl) + "/state";  // Open creates the last component
    ASSERT_NO_FATAL_FAILURE(Reopen());
  }
  void TearDown() override {
    cache_.reset();
    (void)std::system(("rm -rf " + dir_.substr(0, dir_.rfind('/'))).c_str());
  }

  void Reopen() {
    cache_.reset();  // close first: the test is about what reached the file
    Result<std::unique_ptr<StateCache>> cache = StateCache::Open(dir_);
    ASSERT_TRUE(cache.ok()) << cache.status().ToString();
    cache_ = std::move(*cache);
  }

  std::optional<BlockHashes> Find(const FileKey& key) {
    Result<std::optional<BlockHashes>> found = cache_->Lookup(key);
    EXPECT_TRUE(found.ok()) << found.status().ToString();
    return found.ok() ? *found : std::nullopt;
  }

  std::optional<StateCache::Partial> FindPartial(uint64_t dev, uint64_t ino,
                                                 const std::string& path) {
    Result<std::optional<StateCache::Partial>> found = cache_->FindPartial(dev, ino, path);
    EXPECT_TRUE(found.ok()) << found.status().ToString();
    return found.ok() ? *found : std::nullopt;
  }

  std::vector<std::string> BrokenFiles() {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir_.c_str());
    EXPECT_NE(d, nullptr);
    if (d == nullptr) return names;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind("cache.db.broken-", 0) == 0) names.push_back(name);
    }
    ::closedir(d);
    return names;
  }

  std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string dir_;
  std::unique_ptr<StateCache> cache_;
};

TEST_F(StateCacheTest, RecordThenLookupReturnsTheHashes) {
  std::vector<std::pair<FileKey, BlockHashes>> files = {
      {MakeKey(1), MakeBlocks(3, 1)},
      {MakeKey(2, 0), MakeBlocks(0, 0)},  // an empty file has no leaves
      {MakeKey(3, 1 << 20), MakeBlocks(256, 9, 4096)},
  };
  ASSERT_TRUE(cache_->Record(files).ok());
  for (const auto& [key, blocks] : files) {
    std::optional<BlockHashes> found = Find(key);
    ASSERT_TRUE(found.has_value()) << key.ino;
    EXPECT_EQ(*found, blocks) << key.ino;
  }
  EXPECT_FALSE(Find(MakeKey(4)).has_value());
  FileKey other_dev = MakeKey(1);
  other_dev.dev = 5;
  EXPECT_FALSE(Find(other_dev).has_value());
}

TEST_F(StateCacheTest, RecordReplacesTheRowOfTheSameFile) {
  ASSERT_TRUE(cache_->Record({{MakeKey(1), MakeBlocks(3, 1)}}).ok());
  FileKey newer = MakeKey(1, 20'000);
  newer.ctime_ns += 5;
  ASSERT_TRUE(cache_->Record({{newer, MakeBlocks(5, 2, 8192)}}).ok());
  EXPECT_FALSE(Find(MakeKey(1)).has_value());
  EXPECT_EQ(Find(newer), MakeBlocks(5, 2, 8192));
}

TEST_F(StateCacheTest, KeyMismatchOnSizeMtimeOrCtimeIsAMiss) {
  FileKey key = MakeKey(7);
  ASSERT_TRUE(cache_->Record({{key, MakeBlocks(3, 1)}}).ok());
  FileKey size = key, mtime = key, ctime = key;
  size.size += 1;
  mtime.mtime_ns += 1;
  ctime.ctime_ns += 1;  // touched behind ferry's back
  EXPECT_FALSE(Find(size).has_value());
  EXPECT_FALSE(Find(mtime).has_value());
  EXPECT_FALSE(Find(ctime).has_value());
  EXPECT_TRUE(Find(key).has_value());  // the misses were the key, not a lost row
}

TEST_F(StateCacheTest, MarkDirtyHidesTheEntryUntilRecordClearsIt) {
  FileKey key = MakeKey(7);
  ASSERT_TRUE(cache_->Record({{key, MakeBlocks(3, 1)}}).ok());
  ASSERT_TRUE(cache_->MarkDirty(key.dev, key.ino).ok());
  EXPECT_FALSE(Find(key).has_value());
  ASSERT_TRUE(cache_->MarkDirty(key.dev, key.ino).ok());  // twice is fine
  EXPECT_FALSE(Find(key).has_value());
  ASSERT_TRUE(cache_->Record({{key, MakeBlocks(4, 2)}}).ok());
  EXPECT_EQ(Find(key), MakeBlocks(4, 2));
}

TEST_F(StateCacheTest, MarkDirtyOfAnUnknownFileCreatesAHiddenRow) {
  // The row MarkDirty creates has zero size and times: even an all-zero key must not see it.
  ASSERT_TRUE(cache_->MarkDirty(3, 4).ok());
  EXPECT_FALSE(Find(FileKey{3, 4, 0, 0, 0}).has_value());
  ASSERT_TRUE(cache_->Record({{FileKey{3, 4, 0, 0, 0}, MakeBlocks(0, 0)}}).ok());
  EXPECT_TRUE(Find(FileKey{3, 4, 0, 0, 0}).has_value());
}

TEST_F(StateCacheTest, ForgetRemovesOnlyThatFile) {
  ASSERT_TRUE(
      cache_->Record({{MakeKey(1), MakeBlocks(3, 1)}, {MakeKey(2), MakeBlocks(3, 2)}}).ok());
  ASSERT_TRUE(cache_->Forget(MakeKey(1).dev, 1).ok());
  EXPECT_FALSE(Find(MakeKey(1)).has_value());
  EXPECT_EQ(Find(MakeKey(2)), MakeBlocks(3, 2));
  EXPECT_TRUE(cache_->Forget(9, 9).ok());  // nothing to forget is not an error
}

TEST_F(StateCacheTest, ReopenKeepsWhatWasWritten) {
  FileKey clean = MakeKey(1), dirty = MakeKey(2);
  StateCache::Partial partial{"f.ferry-tmp", 1, 2, 8192, MakeBlocks(2, 3)};
  ASSERT_TRUE(cache_->Record({{clean, MakeBlocks(3, 1)}, {dirty, MakeBlocks(3, 2)}}).ok());
  ASSERT_TRUE(cache_->MarkDirty(dirty.dev, dirty.ino).ok());
  ASSERT_TRUE(cache_->SavePartial(10, 11, "dir/f", partial).ok());
  struct stat st;
  EXPECT_EQ(::stat((dir_ + "/cache.db-wal").c_str(), &st), 0) << "the cache runs in WAL mode";
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(Find(clean), MakeBlocks(3, 1));
  EXPECT_FALSE(Find(dirty).has_value());  // the dirty mark survived
  EXPECT_EQ(FindPartial(10, 11, "dir/f"), partial);
  EXPECT_TRUE(BrokenFiles().empty());
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(StateCacheTest, GarbageFileIsMovedAsideAndAFreshCacheWorks) {
  ASSERT_TRUE(cache_->Record({{MakeKey(1), MakeBlocks(3, 1)}}).ok());
  cache_.reset();
  std::string garbage(8192, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 7 + 13);
  {
    std::ofstream out(dir_ + "/cache.db", std::ios::binary | std::ios::trunc);
    out << garbage;
  }
  ASSERT_NO_FATAL_FAILURE(Reopen());
  std::vector<std::string> broken = BrokenFiles();
  ASSERT_EQ(broken.size(), 1u);
  EXPECT_EQ(ReadFile(dir_ + "/" + broken[0]), garbage);
  EXPECT_FALSE(Find(MakeKey(1)).has_value());
  ASSERT_TRUE(cache_->Record({{MakeKey(2), MakeBlocks(3, 2)}}).ok());
  EXPECT_EQ(Find(MakeKey(2)), MakeBlocks(3, 2));
  ASSERT_NO_FATAL_FAILURE(Reopen());  // and the new file is a good one
  EXPECT_EQ(Find(MakeKey(2)), MakeBlocks(3, 2));
  EXPECT_EQ(BrokenFiles().size(), 1u);
}

TEST_F(StateCacheTest, OtherSchemaVersionIsMovedAside) {
  ASSERT_TRUE(cache_->Record({{MakeKey(1), MakeBlocks(3, 1)}}).ok());
  cache_.reset();  // the last close checkpoints the WAL into cache.db
  // PRAGMA user_version lives in the database header at offset 60, big-endian.
  int fd = ::open((dir_ + "/cache.db").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const unsigned char version[4] = {0, 0, 0, 99};
  EXPECT_EQ(::pwrite(fd, version, sizeof(version), 60), 4);
  ::close(fd);
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(BrokenFiles().size(), 1u);
  EXPECT_FALSE(Find(MakeKey(1)).has_value());
  ASSERT_TRUE(cache_->Record({{MakeKey(1), MakeBlocks(3, 1)}}).ok());
  EXPECT_TRUE(Find(MakeKey(1)).has_value());
}

TEST_F(StateCacheTest, PartialsSaveFindDropAndKeepVolumesApart) {
  StateCache::Partial a{".big.ferry-1", 1, 100, 3 * 4096, MakeBlocks(3, 1)};
  StateCache::Partial b{".big.ferry-2", 2, 200, 4096, MakeBlocks(1, 2)};
  const std::string odd = std::string("d/\xff\x01name", 8);  // any bytes but NUL and '/'
  ASSERT_TRUE(cache_->SavePartial(1, 2, "d/big", a).ok());
  ASSERT_TRUE(cache_->SavePartial(3, 4, "d/big", b).ok());  // same path, another volume
  ASSERT_TRUE(cache_->SavePartial(1, 2, odd, b).ok());
  EXPECT_EQ(FindPartial(1, 2, "d/big"), a);
  EXPECT_EQ(FindPartial(3, 4, "d/big"), b);
  EXPECT_EQ(FindPartial(1, 2, odd), b);
  EXPECT_FALSE(FindPartial(1, 2, "d/other").has_value());
  EXPECT_FALSE(FindPartial(1, 3, "d/big").has_value());

  a.durable_bytes = 5 * 4096;  // the transfer went on: the newer save replaces the row
  a.blocks = MakeBlocks(5, 1);
  ASSERT_TRUE(cache_->SavePartial(1, 2, "d/big", a).ok());
  EXPECT_EQ(FindPartial(1, 2, "d/big"), a);

  ASSERT_TRUE(cache_->DropPartial(1, 2, "d/big").ok());
  EXPECT_FALSE(FindPartial(1, 2, "d/big").has_value());
  EXPECT_EQ(FindPartial(1, 2, odd), b);
  EXPECT_EQ(FindPartial(3, 4, "d/big"), b);

  ASSERT_TRUE(cache_->SavePartial(1, 2, "d/big", a).ok());
  ASSERT_TRUE(cache_->DropPartials(1, 2).ok());
  EXPECT_FALSE(FindPartial(1, 2, "d/big").has_value());
  EXPECT_FALSE(FindPartial(1, 2, odd).has_value());
  EXPECT_EQ(FindPartial(3, 4, "d/big"), b);  // the other volume's partial stays
}

TEST_F(StateCacheTest, PartialsDoNotTouchFiles) {
  ASSERT_TRUE(cache_->Record({{MakeKey(1), MakeBlocks(3, 1)}}).ok());
  ASSERT_TRUE(cache_->SavePartial(MakeKey(1).dev, 1, "x", {"t", 1, 1, 0, MakeBlocks(0, 0)}).ok());
  ASSERT_TRUE(cache_->DropPartials(MakeKey(1).dev, 1).ok());
  EXPECT_TRUE(Find(MakeKey(1)).has_value());
}

TEST_F(StateCacheTest, TwoObjectsWriteConcurrently) {
  cache_.reset();
  // Two connections from their first Open on, each writing as fast as it can: without the busy
  // timeout one of them would get SQLITE_BUSY.
  constexpr int kRounds = 40;
  std::vector<Status> failures[2];
  auto writer = [&](int w) {
    Result<std::unique_ptr<StateCache>> cache = StateCache::Open(dir_);
    if (!cache.ok()) {
      failures[w].push_back(cache.status());
      return;
    }
    for (int i = 0; i < kRounds; ++i) {
      FileKey key = MakeKey(w * 1000 + i);
      for (Status s : {(*cache)->MarkDirty(key.dev, key.ino),
                       (*cache)->Record({{key, MakeBlocks(4, static_cast<uint8_t>(i))}}),
                       (*cache)->SavePartial(w, 0, std::to_string(i), {"t", 1, 2, 0, {}})}) {
        if (!s.ok()) failures[w].push_back(s);
      }
    }
  };
  std::thread first(writer, 0), second(writer, 1);
  first.join();
  second.join();
  for (int w = 0; w < 2; ++w) {
    for (const Status& s : failures[w]) ADD_FAILURE() << "writer " << w << ": " << s.ToString();
  }
  ASSERT_NO_FATAL_FAILURE(Reopen());
  for (int w = 0; w < 2; ++w) {
    for (int i = 0; i < kRounds; ++i) {
      EXPECT_EQ(Find(MakeKey(w * 1000 + i)), MakeBlocks(4, static_cast<uint8_t>(i)));
      EXPECT_TRUE(FindPartial(w, 0, std::to_string(i)).has_value());
    }
  }
}

}  // namespace
}  // namespace ferry
