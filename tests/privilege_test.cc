// Least privilege: the receiving daemon runs as root with only the capabilities README's
// "Least privilege" lists (bounding set cut with setpriv before exec) and still writes the full
// fidelity tree exactly; without any capability, as an unprivileged user, it serves a volume
// that user owns, with ownership preservation off (files owned by that user, everything else
// kept). Needs root to start (CI runs as root); skipped otherwise.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

constexpr uid_t kNobody = 65534;

class PrivilegeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop privileges";
    if (RunCommand({"setpriv", "--version"}).exit_code != 0) GTEST_SKIP() << "no setpriv (util-linux)";
    volume_ = tmp_.Sub("volume");
    src_ = tmp_.Sub("src");
    MakeDirs(volume_);
  }
  void TearDown() override {
    if (started_) {
      EXPECT_TRUE(daemon_.alive()) << daemon_.Log();
      EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
    }
  }
  void StartDaemon(std::vector<std::string> wrapper) {
    DaemonProcess::Config config = DaemonConfigIn(tmp_.path(), {{"vol", volume_}});
    config.wrapper = std::move(wrapper);
    ASSERT_EQ(daemon_.Start(config), "");
    started_ = true;
  }
  CommandResult Push() { return RunFerry({"sync", "--insecure", "--no-progress", src_, daemon_.Url("vol")}); }

  TempDir tmp_;
  DaemonProcess daemon_;
  bool started_ = false;
  std::string volume_, src_;
};

// The capability set of README's "Least privilege", and nothing else, for a root daemon.
const std::vector<std::string> kDaemonCaps = {"chown", "fowner", "dac_override", "fsetid", "mknod", "sys_admin"};

std::vector<std::string> OnlyCaps(const std::vector<std::string>& caps) {
  std::string bounding = "-all";
  for (const std::string& c : caps) bounding += ",+" + c;
  return {"setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=" + bounding, "--"};
}

TEST_F(PrivilegeTest, RootDaemonWithTheDocumentedCapabilitiesWritesEverything) {
  BuildFidelityTree(src_, TestSeed());
  StartDaemon(OnlyCaps(kDaemonCaps));
  // The daemon really runs without the rest: its bounding set has only those bits.
  std::string status = ReadFile("/proc/" + std::to_string(daemon_.pid()) + "/status");
  size_t at = status.find("CapBnd:\t");
  ASSERT_NE(at, std::string::npos);
  const uint64_t bounding = std::stoull(status.substr(at + 8, 16), nullptr, 16);
  // CAP_CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, MKNOD 27, SYS_ADMIN 21.
  EXPECT_EQ(bounding, (1ull << 0) | (1ull << 1) | (1ull << 3) | (1ull << 4) | (1ull << 27) | (1ull << 21));
  CommandResult r = Push();
  ASSERT_EQ(r.exit_code, 0) << r.Describe() << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src_, volume_), "");
}

TEST_F(PrivilegeTest, EachCapabilityOfTheSetIsNeeded) {
  // One capability fewer, each in turn, over two stages: the copy is no longer exact (a refused
  // operation fails the stage, named; a silently dropped setgid bit shows in rsync's
  // comparison). Besides the fidelity tree: a read-only directory and an unreadable file owned by
  // another user (a later stage writes there and reads the file as its basis: DAC_OVERRIDE), and
  // a setgid file of a group root is not in (FSETID).
  BuildFidelityTree(src_, TestSeed());
  const std::string ro = src_ + "/readonly";
  MakeDirs(ro);
  WriteRandomFile(ro + "/locked", 200 << 10, 1);
  WriteFile(src_ + "/setgid-tool", "#!/bin/sh\n");
  ASSERT_EQ(::chown((src_ + "/setgid-tool").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chmod((src_ + "/setgid-tool").c_str(), 02755), 0);
  ASSERT_EQ(::chown((ro + "/locked").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chmod((ro + "/locked").c_str(), 0), 0);
  ASSERT_EQ(::chown(ro.c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chmod(ro.c_str(), 0555), 0);
  int round = 0;
  // Two stages under `caps`; whether the copy is exact after them (*err: the last stderr).
  auto two_stages = [&](const std::vector<std::string>& caps, std::string* err) {
    RemoveTree(volume_);
    MakeDirs(volume_);
    StartDaemon(OnlyCaps(caps));
    CommandResult r = Push();
    bool exact = r.exit_code == 0 && RsyncDiff(src_, volume_).empty();
    if (exact) {  // the second stage: a new file in the read-only directory, the locked one changed
      WriteFile(ro + "/new" + std::to_string(++round), "later\n");
      PwriteAt(ro + "/locked", 4096 * round, "changed");
      r = Push();
      exact = r.exit_code == 0 && RsyncDiff(src_, volume_).empty();
    }
    *err = r.err;
    EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
    started_ = false;
    return exact;
  };
  std::string err;
  EXPECT_TRUE(two_stages(kDaemonCaps, &err)) << "the whole set is not enough: " << err;
  for (const std::string& missing : kDaemonCaps) {
    SCOPED_TRACE("without CAP_" + missing);
    std::vector<std::string> caps;
    for (const std::string& c : kDaemonCaps) {
      if (c != missing) caps.push_back(c);
    }
    EXPECT_FALSE(two_stages(caps, &err)) << "CAP_" << missing << " was not needed";
    if (missing == "mknod") {
      EXPECT_NE(err.find("special/null': create: Operation not permitted"), std::string::npos) << err;
    }
  }
}

TEST_F(PrivilegeTest, UnprivilegedDaemonServesItsOwnVolumeWithoutOwnership) {
  MakeDirs(src_ + "/dir/sub");
  WriteFile(src_ + "/dir/a.txt", "alpha\n");
  WriteRandomFile(src_ + "/dir/sub/big.bin", 3 << 20, TestSeed());
  ASSERT_EQ(::chmod((src_ + "/dir/a.txt").c_str(), 0640), 0);
  ASSERT_EQ(::symlink("a.txt", (src_ + "/dir/link").c_str()), 0);
  ASSERT_EQ(::link((src_ + "/dir/a.txt").c_str(), (src_ + "/dir/hard").c_str()), 0);
  ASSERT_EQ(RunCommand({"setfattr", "-n", "user.k", "-v", "v", src_ + "/dir/a.txt"}).exit_code, 0);
  for (const std::string& dir : {volume_, tmp_.Sub("state")}) {
    MakeDirs(dir);
    ASSERT_EQ(::chown(dir.c_str(), kNobody, kNobody), 0);
  }
  ASSERT_EQ(::chmod(tmp_.path().c_str(), 0755), 0);
  StartDaemon({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
               "--ambient-caps=-all", "--bounding-set=-all", "--"});
  CommandResult r = Push();
  ASSERT_EQ(r.exit_code, 0) << r.Describe() << daemon_.Log();
  // Everything but owners: rsync's comparison without -o -g.
  CommandResult diff = RunCommand({"rsync", "-anicHAX", "--no-owner", "--no-group", "--delete", "--numeric-ids",
                                   src_ + "/", volume_ + "/"});
  EXPECT_EQ(diff.out, "");
  struct stat st;
  ASSERT_EQ(::lstat((volume_ + "/dir/sub/big.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kNobody);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  ASSERT_EQ(::lstat((volume_ + "/dir/a.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  // A second stage changes nothing.
  CommandResult again = RunFerry({"sync", "--insecure", "--no-progress", "--json", src_, daemon_.Url("vol")});
  ASSERT_EQ(again.exit_code, 0) << again.Describe();
  EXPECT_NE(again.out.find("\"files_sent\":0"), std::string::npos) << again.out;
}

}  // namespace
}  // namespace ferry_test
