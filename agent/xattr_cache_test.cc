#include "agent/xattr_cache.h"

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

// Unit tests pass the clock: a stage that starts at kNowNs, and inodes changed well before it.
constexpr int64_t kNowNs = 1'800'000'000'000'000'000;
constexpr int64_t kOldCtimeNs = kNowNs - 60'000'000'000;

struct stat StatOf(uint64_t ino, int64_t ctime_ns, dev_t dev = 2049) {
  struct stat st {};
  st.st_dev = dev;
  st.st_ino = ino;
  st.st_ctim.tv_sec = ctime_ns / 1'000'000'000;
  st.st_ctim.tv_nsec = ctime_ns % 1'000'000'000;
  return st;
}

const XattrFilter kFilter{/*privileged=*/true, /*skip_selinux=*/false, /*none=*/false};
const std::vector<protocol::Xattr> kAcl = {{"system.posix_acl_access", std::string("\x02\0\0\0", 4)},
                                           {"user.color", "blue"}};

class XattrCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-xattr-cache-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/xattrs.cache";
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::unique_ptr<XattrCache> Reopen(const XattrFilter& filter = kFilter, int64_t now_ns = kNowNs) {
    auto cache = std::make_unique<XattrCache>(path_, filter, now_ns);
    cache->Load();
    return cache;
  }
  std::string dir_, path_;
};

TEST_F(XattrCacheTest, RemembersAcrossStagesWhileTheCtimeStays) {
  {
    auto cache = Reopen();
    EXPECT_EQ(cache->Find(StatOf(10, kOldCtimeNs)), nullptr);
    cache->Remember(StatOf(10, kOldCtimeNs), kAcl);
    cache->Remember(StatOf(11, kOldCtimeNs), {});
    ASSERT_TRUE(cache->Save().ok());
  }
  auto cache = Reopen();
  EXPECT_EQ(cache->loaded_count(), 2u);
  const std::vector<protocol::Xattr>* found = cache->Find(StatOf(10, kOldCtimeNs));
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(*found, kAcl);
  found = cache->Find(StatOf(11, kOldCtimeNs));
  ASSERT_NE(found, nullptr);
  EXPECT_TRUE(found->empty());
  // Any change of ctime (a setfattr, a chmod, a new inode at the same number): not known.
  EXPECT_EQ(cache->Find(StatOf(10, kOldCtimeNs + 1)), nullptr);
  EXPECT_EQ(cache->Find(StatOf(12, kOldCtimeNs)), nullptr);
  EXPECT_EQ(cache->Find(StatOf(11, kOldCtimeNs, 2050)), nullptr);  // another device
}

TEST_F(XattrCacheTest, ARacilyCleanInodeIsNotKeptUnlessTimestampsAreFineGrained) {
  {
    auto cache = Reopen();
    cache->Remember(StatOf(20, kNowNs - 1'000), {});  // changed a microsecond before the stage
    cache->Remember(StatOf(21, kNowNs + 5'000'000), {}, /*fine_grained=*/true);
    EXPECT_EQ(cache->remembered_count(), 1u);
    ASSERT_TRUE(cache->Save().ok());
  }
  auto cache = Reopen();
  EXPECT_EQ(cache->Find(StatOf(20, kNowNs - 1'000)), nullptr);
  EXPECT_NE(cache->Find(StatOf(21, kNowNs + 5'000'000)), nullptr);
}

TEST_F(XattrCacheTest, InodesNotSeenAreDroppedAndAnUnchangedCacheIsNotRewritten) {
  {
    auto cache = Reopen();
    for (uint64_t ino = 1; ino <= 3; ++ino) cache->Remember(StatOf(ino, kOldCtimeNs), {});
    ASSERT_TRUE(cache->Save().ok());
  }
  {
    auto cache = Reopen();  // a stage that sees all three: nothing written
    for (uint64_t ino = 1; ino <= 3; ++ino) ASSERT_NE(cache->Find(StatOf(ino, kOldCtimeNs)), nullptr);
    ASSERT_EQ(::unlink(path_.c_str()), 0);
    ASSERT_TRUE(cache->Save().ok());
    EXPECT_NE(::access(path_.c_str(), F_OK), 0);
  }
  {
    auto cache = Reopen();  // gone: a stage sees 1 and 2 again
    for (uint64_t ino = 1; ino <= 3; ++ino) cache->Remember(StatOf(ino, kOldCtimeNs), {});
    ASSERT_TRUE(cache->Save().ok());
  }
  {
    auto cache = Reopen();
    ASSERT_NE(cache->Find(StatOf(1, kOldCtimeNs)), nullptr);
    cache->Remember(StatOf(2, kOldCtimeNs + 7), kAcl);  // 2 changed; 3 was deleted
    ASSERT_TRUE(cache->Save().ok());
  }
  auto cache = Reopen();
  EXPECT_EQ(cache->loaded_count(), 2u);
  EXPECT_NE(cache->Find(StatOf(1, kOldCtimeNs)), nullptr);
  EXPECT_EQ(cache->Find(StatOf(2, kOldCtimeNs)), nullptr);
  ASSERT_NE(cache->Find(StatOf(2, kOldCtimeNs + 7)), nullptr);
  EXPECT_EQ(*cache->Find(StatOf(2, kOldCtimeNs + 7)), kAcl);
  EXPECT_EQ(cache->Find(StatOf(3, kOldCtimeNs)), nullptr);
}

TEST_F(XattrCacheTest, AnInodeFoundAndReadAgainKeepsWhatWasRead) {
  {
    auto cache = Reopen();
    cache->Remember(StatOf(5, kOldCtimeNs), {});
    cache->Remember(StatOf(6, kOldCtimeNs), {});
    ASSERT_TRUE(cache->Save().ok());
  }
  {
    auto cache = Reopen();
    ASSERT_NE(cache->Find(StatOf(5, kOldCtimeNs)), nullptr);  // one name of a hard link
    cache->Remember(StatOf(5, kOldCtimeNs + 9), kAcl);         // another, after a setfacl
    cache->Remember(StatOf(5, kOldCtimeNs + 9), kAcl);         // and a third
    ASSERT_NE(cache->Find(StatOf(6, kOldCtimeNs)), nullptr);
    ASSERT_TRUE(cache->Save().ok());
  }
  auto cache = Reopen();
  EXPECT_EQ(cache->loaded_count(), 2u);
  EXPECT_EQ(cache->Find(StatOf(5, kOldCtimeNs)), nullptr);
  ASSERT_NE(cache->Find(StatOf(5, kOldCtimeNs + 9)), nullptr);
  EXPECT_EQ(*cache->Find(StatOf(5, kOldCtimeNs + 9)), kAcl);
  EXPECT_NE(cache->Find(StatOf(6, kOldCtimeNs)), nullptr);
}

TEST_F(XattrCacheTest, AnotherFilterOrADamagedFileIsAnEmptyCache) {
  {
    auto cache = Reopen();
    for (uint64_t ino = 1; ino <= 50; ++ino) cache->Remember(StatOf(ino, kOldCtimeNs), ino % 2 ? kAcl : std::vector<protocol::Xattr>{});
    ASSERT_TRUE(cache->Save().ok());
  }
  XattrFilter unprivileged = kFilter;
  unprivileged.privileged = false;
  EXPECT_FALSE(Reopen(unprivileged)->Load());
  EXPECT_EQ(Reopen(unprivileged)->Find(StatOf(1, kOldCtimeNs)), nullptr);
  XattrFilter no_selinux = kFilter;
  no_selinux.skip_selinux = true;
  EXPECT_FALSE(Reopen(no_selinux)->Load());
  std::ifstream in(path_, std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(good.size(), 64u);
  auto write = [&](const std::string& bytes) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << bytes;
  };
  // Every truncation and a bit flip in each byte: refused, never a crash or a wrong answer.
  for (size_t size = 0; size < good.size(); size += 7) {
    write(good.substr(0, size));
    auto cache = Reopen();
    EXPECT_EQ(cache->loaded_count(), 0u) << "truncated to " << size;
    EXPECT_EQ(cache->Find(StatOf(1, kOldCtimeNs)), nullptr);
  }
  for (size_t at = 0; at < good.size(); at = at < 200 || at >= good.size() - 16 ? at + 1 : good.size() - 16) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    write(bad);
    EXPECT_EQ(Reopen()->loaded_count(), 0u) << "bit flipped at " << at;
  }
  write(good);
  EXPECT_EQ(Reopen()->loaded_count(), 50u);
}

TEST_F(XattrCacheTest, ThreadsFindAndRememberAtOnce) {
  {
    auto cache = Reopen();
    for (uint64_t ino = 0; ino < 4000; ++ino) cache->Remember(StatOf(ino, kOldCtimeNs), {});
    ASSERT_TRUE(cache->Save().ok());
  }
  auto cache = Reopen();
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t ino = t; ino < 8000; ino += 4) {
        if (cache->Find(StatOf(ino, kOldCtimeNs)) == nullptr) cache->Remember(StatOf(ino, kOldCtimeNs), kAcl);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(cache->remembered_count(), 4000u);
  ASSERT_TRUE(cache->Save().ok());
  auto again = Reopen();
  EXPECT_EQ(again->loaded_count(), 8000u);
  EXPECT_TRUE(again->Find(StatOf(100, kOldCtimeNs))->empty());
  EXPECT_EQ(*again->Find(StatOf(5000, kOldCtimeNs)), kAcl);
}

TEST_F(XattrCacheTest, OpenNamesTheCacheAfterTheVolumeRoot) {
  EXPECT_EQ(XattrCache::Open("", 0, kFilter), nullptr);
  XattrFilter none = kFilter;
  none.none = true;
  UniqueFd root(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_TRUE(root.valid());
  EXPECT_EQ(XattrCache::Open(dir_ + "/state", root.get(), none), nullptr);  // --no-xattrs
  std::unique_ptr<XattrCache> cache = XattrCache::Open(dir_ + "/state", root.get(), kFilter);
  ASSERT_NE(cache, nullptr);
  struct stat st;
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  cache->Remember(StatOf(1, 1'000'000'000), {});  // the real clock: a ctime long past
  ASSERT_TRUE(cache->Save().ok());
  const std::string expected = dir_ + "/state/xattrs-" + std::to_string(st.st_dev) + "-" + std::to_string(st.st_ino) + ".cache";
  EXPECT_EQ(::access(expected.c_str(), R_OK), 0) << expected;
}

}  // namespace
}  // namespace ferry
