// Integration tests of `ferry sync` on real trees, over each transport: local to local
// (in-process receiver), push to a real `ferry daemon`, pull from one. Every round is checked
// with rsync as the oracle (content, types, modes, owners, hard links, xattrs, ACLs) and with
// an lstat walk for what rsync does not compare (nanosecond mtimes, sparse allocation), and
// against the figures ferry reports in --json.
#include <ftw.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

enum class Transport { kLocal, kPush, kPull };

std::string TransportName(const ::testing::TestParamInfo<Transport>& info) {
  switch (info.param) {
    case Transport::kLocal: return "Local";
    case Transport::kPush: return "Push";
    case Transport::kPull: return "Pull";
  }
  return "?";
}

// src_ and dst_ are local directories in every transport; a daemon serves dst_ (push) or
// src_ (pull) as volume "vol", so the oracles always compare src_ with dst_.
class TransportTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    seed_ = TestSeed();
    std::printf("seed %llu (set FERRY_TEST_SEED to replay)\n", static_cast<unsigned long long>(seed_));
    src_ = tmp_.Sub("src");
    dst_ = tmp_.Sub("dst");
    MakeDirs(src_);
    MakeDirs(dst_);
    if (GetParam() != Transport::kLocal) {
      DaemonProcess::Config config;
      config.volumes = {{"vol", GetParam() == Transport::kPush ? dst_ : src_}};
      config.state_dir = tmp_.Sub("state");
      config.log_path = tmp_.Sub("daemon.log");
      std::string error = daemon_.Start(config);
      ASSERT_EQ(error, "");
    }
  }
  void TearDown() override {
    if (GetParam() != Transport::kLocal) {
      EXPECT_TRUE(daemon_.alive()) << daemon_.Log();
      EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
    }
  }

  std::string SrcArg(const std::string& sub = "") const {
    return GetParam() == Transport::kPull ? daemon_.Url("vol" + sub) : src_ + sub;
  }
  std::string DstArg(const std::string& sub = "") const {
    return GetParam() == Transport::kPush ? daemon_.Url("vol" + sub) : dst_ + sub;
  }

  // `ferry sync --json -i` from src to dst with `extra` flags; expects `expect_exit`.
  SyncReport Sync(const std::vector<std::string>& extra = {}, int expect_exit = 0) {
    std::vector<std::string> args = {"sync", "--json", "-i", "--no-progress", "--insecure"};
    // A push's client keeps only its sender's xattr cache there: its own, not the daemon's.
    args.insert(args.end(), {"--state-dir", tmp_.Sub(GetParam() == Transport::kPush ? "client-state" : "state")});
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(SrcArg());
    args.push_back(DstArg());
    last_ = RunFerry(args);
    EXPECT_EQ(last_.exit_code, expect_exit) << last_.Describe() << Log();
    SyncReport report = ParseSyncJson(last_.out);
    EXPECT_TRUE(report.parsed) << report.parse_error;
    return report;
  }
  std::string Log() const { return GetParam() == Transport::kLocal ? "" : "\n--- daemon log:\n" + daemon_.Log(); }

  // dst_ mirrors src_: rsync finds nothing to do, every mtime matches to the ns.
  void ExpectMirror(const std::string& when) {
    EXPECT_EQ(RsyncDiff(src_, dst_), "") << when;
    EXPECT_EQ(StatDiff(src_, dst_), "") << when;
    EXPECT_EQ(FindTempFiles(dst_), "") << when;
  }

  // A second sync of an unchanged source finds nothing to do.
  // A sync with nothing to do reports nothing and writes nothing: no inode of the target, file
  // or directory, gets a new ctime (a directory's metadata set again would dirty its inode).
  void ExpectNothingToDo(const std::string& when, const std::vector<std::string>& extra = {}) {
    std::map<std::string, timespec> before = TargetCtimes();
    SyncReport again = Sync(extra);
    EXPECT_EQ(again.files_sent, 0u) << when << "\n" << again.ChangesText();
    EXPECT_TRUE(again.changes.empty()) << when << ": changes on an unchanged tree:\n" << again.ChangesText();
    EXPECT_EQ(again.entries_deleted, 0u) << when;
    std::map<std::string, timespec> after = TargetCtimes();
    ASSERT_EQ(before.size(), after.size()) << when;
    for (const auto& [path, ctime] : before) {
      EXPECT_TRUE(after.count(path) && after[path].tv_sec == ctime.tv_sec && after[path].tv_nsec == ctime.tv_nsec)
          << when << ": '" << Printable(path) << "' was written by a sync with nothing to do";
    }
  }

  std::map<std::string, timespec> TargetCtimes() {
    static std::map<std::string, timespec>* out;
    std::map<std::string, timespec> ctimes;
    out = &ctimes;
    EXPECT_EQ(::nftw(dst_.c_str(), [](const char* path, const struct stat* st, int, FTW*) {
      (*out)[path] = st->st_ctim;
      return 0;
    }, 64, FTW_PHYS), 0);
    return ctimes;
  }

  void ExpectReported(const SyncReport& report, const Mutation& mutation) {
    for (const std::string& path : mutation.changed_paths) {
      EXPECT_TRUE(report.Has(path)) << mutation.name << ": '" << Printable(path) << "' not in the changes:\n"
                                    << report.ChangesText();
    }
  }

  uint64_t seed_ = 0;
  TempDir tmp_;
  std::string src_, dst_;
  DaemonProcess daemon_;
  CommandResult last_;
};

TEST_P(TransportTest, FidelityTreeMirrorsAndStaysMirrored) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  FidelityTree tree = BuildFidelityTree(src_, seed_);

  SyncReport first = Sync();
  ExpectMirror("first sync");
  EXPECT_EQ(first.files_total, tree.entries);
  EXPECT_EQ(first.bytes_total, tree.regular_bytes);
  // Each inode with content once; hard links and empty files need no data.
  EXPECT_GE(first.files_sent, tree.regular_inodes - 1);
  EXPECT_LE(first.files_sent, tree.regular_inodes);
  EXPECT_EQ(first.entries_deleted, 0u);
  EXPECT_FALSE(first.dry_run);
  EXPECT_GE(first.duration_s, 0.0);
  EXPECT_TRUE(first.Has("special/null", "new")) << first.ChangesText();
  EXPECT_TRUE(first.Has(std::string("names/bad\xff" "byte"), "new")) << first.ChangesText();
  EXPECT_TRUE(first.Has("names/dir with\nnewline/inner", "new")) << first.ChangesText();

  // Sparse files stay sparse: 12 KiB of data in 64 MiB; 16 MiB with 4 KiB of data at the end.
  EXPECT_LT(AllocatedBytes(dst_ + "/" + tree.sparse), 1u << 20);
  EXPECT_LT(AllocatedBytes(dst_ + "/sparse_tail.img"), 1u << 20);
  EXPECT_EQ(ReadFile(dst_ + "/" + tree.sparse), ReadFile(src_ + "/" + tree.sparse));
  // The three names are one inode on the target too.
  struct stat a {}, b {}, c {};
  ASSERT_EQ(::lstat((dst_ + "/" + tree.hard_links[0]).c_str(), &a), 0);
  ASSERT_EQ(::lstat((dst_ + "/" + tree.hard_links[1]).c_str(), &b), 0);
  ASSERT_EQ(::lstat((dst_ + "/" + tree.hard_links[2]).c_str(), &c), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_ino, c.st_ino);
  EXPECT_EQ(a.st_nlink, 3u);

  ExpectNothingToDo("second sync");

  std::vector<Mutation> mutations = MutateTree(src_, seed_);
  SyncReport changed = Sync();
  for (const Mutation& m : mutations) ExpectReported(changed, m);
  EXPECT_TRUE(changed.Has("empty", "delete")) << changed.ChangesText();
  EXPECT_TRUE(changed.Has("names/with space", "delete")) << changed.ChangesText();
  EXPECT_TRUE(changed.Has("names/renamed space", "new")) << changed.ChangesText();
  // big.bin and file.txt have new content; names/renamed space is a new name of old content
  // (sent again: ferry does not detect renames). Hard links and metadata need no data.
  EXPECT_GE(changed.files_sent, 2u) << changed.ChangesText();
  EXPECT_LE(changed.files_sent, 3u) << changed.ChangesText();
  EXPECT_GE(changed.entries_deleted, 3u);  // empty, names/with space, dirs/nested/a (and below)
  ExpectMirror("after the mutations");
  ExpectNothingToDo("after the mutations");

  for (Mutation (*change)(const std::string&) : {&FileToDirectory, &DirectoryToSymlink, &SymlinkToFile}) {
    Mutation m = change(src_);
    SCOPED_TRACE(m.name);
    SyncReport round = Sync();
    ExpectReported(round, m);
    ExpectMirror(m.name);
  }
  ExpectNothingToDo("after the type changes");
}

TEST_P(TransportTest, DryRunListsChangesAndChangesNothing) {
  BuildFidelityTree(src_, seed_);
  Sync();
  std::vector<Mutation> mutations = MutateTree(src_, seed_);
  mutations.push_back(FileToDirectory(src_));
  mutations.push_back(DirectoryToSymlink(src_));
  mutations.push_back(SymlinkToFile(src_));
  WriteFile(dst_ + "/extra_on_target", "to be deleted, but not by a dry run\n");
  // The snapshot to compare with: a copy of the target made by rsync.
  std::string snapshot = tmp_.Sub("snapshot");
  SnapshotTree(dst_, snapshot);
  ASSERT_EQ(RsyncDiff(snapshot, dst_), "");
  ASSERT_EQ(StatDiff(snapshot, dst_), "");

  SyncReport dry = Sync({"--dry-run"});
  EXPECT_TRUE(dry.dry_run);
  EXPECT_EQ(dry.files_sent, 0u);
  for (const Mutation& m : mutations) ExpectReported(dry, m);
  EXPECT_TRUE(dry.Has("extra_on_target", "delete")) << dry.ChangesText();
  EXPECT_TRUE(dry.Has("big.bin", "update")) << dry.ChangesText();
  EXPECT_EQ(RsyncDiff(snapshot, dst_), "") << "a dry run changed the target";
  EXPECT_EQ(StatDiff(snapshot, dst_), "") << "a dry run changed the target";

  // Without --json the changes are listed one per line on stdout.
  CommandResult text = RunFerry({"sync", "-n", "--no-progress", "--insecure", SrcArg(), DstArg()});
  EXPECT_EQ(text.exit_code, 0) << text.Describe();
  EXPECT_NE(text.out.find("update  file     big.bin\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("delete  file     extra_on_target\n"), std::string::npos) << text.out;
  EXPECT_NE(text.err.find("nothing modified"), std::string::npos) << text.err;
  EXPECT_EQ(RsyncDiff(snapshot, dst_), "") << "a dry run changed the target";

  // The real run then does what the dry run listed.
  SyncReport real = Sync();
  for (const Mutation& m : mutations) ExpectReported(real, m);
  ExpectMirror("after the dry run");
}

TEST_P(TransportTest, ExcludeKeepsSourceEntriesOutAndTargetEntriesIn) {
  for (const char* dir : {"sub", "cache", "deep/cache"}) MakeDirs(src_ + "/" + dir);
  WriteFile(src_ + "/keep.txt", "keep\n");
  WriteFile(src_ + "/a.log", "excluded by *.log\n");
  WriteFile(src_ + "/sub/b.log", "excluded at any depth\n");
  WriteFile(src_ + "/cache/x", "excluded with its directory\n");
  WriteFile(src_ + "/deep/cache/y", "excluded: cache/ matches at any depth\n");
  WriteFile(src_ + "/sub/cache", "a file named cache: cache/ matches directories only\n");
  WriteFile(src_ + "/top.tmp", "excluded: /top.tmp is anchored\n");
  WriteFile(src_ + "/sub/top.tmp", "kept: /top.tmp is anchored at the root\n");
  // Target entries that match an exclude are not deleted; others are.
  MakeDirs(dst_ + "/cache");
  WriteFile(dst_ + "/cache/old", "target's own cache\n");
  WriteFile(dst_ + "/target.log", "target's own log\n");
  WriteFile(dst_ + "/stale.txt", "not in the source: deleted\n");

  const std::vector<std::string> excludes = {"--exclude", "*.log", "--exclude", "cache/", "--exclude", "/top.tmp"};
  SyncReport report = Sync(excludes);
  auto exists = [&](const std::string& rel) { return ::access((dst_ + "/" + rel).c_str(), F_OK) == 0; };
  for (const char* kept : {"keep.txt", "sub/cache", "sub/top.tmp", "cache/old", "target.log"}) {
    EXPECT_TRUE(exists(kept)) << kept << "\n" << report.ChangesText();
  }
  for (const char* gone : {"a.log", "sub/b.log", "cache/x", "deep/cache", "top.tmp", "stale.txt"}) {
    EXPECT_FALSE(exists(gone)) << gone << "\n" << report.ChangesText();
  }
  EXPECT_EQ(report.entries_deleted, 1u) << report.ChangesText();
  EXPECT_FALSE(report.Has("a.log")) << report.ChangesText();
  EXPECT_FALSE(report.Has("target.log")) << report.ChangesText();
  // The oracle, with the same excludes (rsync does not delete excluded target entries either).
  CommandResult rsync = RunCommand({"rsync", "-anicHAX", "--delete", "--numeric-ids", "--exclude", "*.log", "--exclude",
                                    "cache/", "--exclude", "/top.tmp", src_ + "/", dst_ + "/"});
  EXPECT_EQ(rsync.exit_code, 0) << rsync.Describe();
  EXPECT_EQ(rsync.out, "");
  ExpectNothingToDo("second sync with the excludes", excludes);
}

TEST_P(TransportTest, ChecksumFindsSameSizeSameMtimeChange) {
  WriteRandomFile(src_ + "/data.bin", 256 << 10, seed_);
  WriteFile(src_ + "/other.txt", "unchanged\n");
  Sync();
  ExpectMirror("first sync");
  // Change one byte, then put the mtime back: size and mtime say "unchanged".
  std::string path = src_ + "/data.bin";
  timespec mtime = MtimeOf(path);
  std::string content = ReadFile(path);
  content[1000] = static_cast<char>(content[1000] ^ 0x5a);
  WriteFile(path, content);
  SetMtimeNs(path, mtime.tv_sec, mtime.tv_nsec);

  SyncReport plain = Sync();
  EXPECT_EQ(plain.files_sent, 0u) << plain.ChangesText();
  EXPECT_TRUE(plain.changes.empty()) << plain.ChangesText();
  EXPECT_NE(ReadFile(dst_ + "/data.bin"), content) << "the plain sync was expected to miss the change";
  EXPECT_NE(RsyncDiff(src_, dst_), "") << "the oracle (rsync -c) must see the difference";

  SyncReport checksum = Sync({"--checksum"});
  EXPECT_EQ(checksum.files_sent, 1u) << checksum.ChangesText();
  EXPECT_TRUE(checksum.Has("data.bin", "update")) << checksum.ChangesText();
  EXPECT_FALSE(checksum.Has("other.txt")) << checksum.ChangesText();
  EXPECT_EQ(ReadFile(dst_ + "/data.bin"), content);
  ExpectMirror("after --checksum");
  SyncReport again = Sync({"--checksum"});
  EXPECT_EQ(again.files_sent, 0u) << again.ChangesText();
}

// --no-xattrs (rsync without -X -A): xattrs and ACLs are neither copied nor compared, and the
// target's own are left as they are; without it the next sync mirrors them again.
TEST_P(TransportTest, NoXattrsLeavesTheTargetsXattrsAlone) {
  auto set = [](const std::string& path, const std::string& name, const std::string& value) {
    ASSERT_EQ(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0), 0) << path;
  };
  auto get = [](const std::string& path, const std::string& name) -> std::string {
    char value[64];
    ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), value, sizeof(value));
    return n < 0 ? "(none)" : std::string(value, static_cast<size_t>(n));
  };
  WriteFile(src_ + "/a.txt", "a\n");
  WriteFile(src_ + "/b.txt", "b\n");
  MakeDirs(src_ + "/d");
  set(src_ + "/a.txt", "user.color", "blue");
  set(src_ + "/d", "user.dir", "src");
  Sync();
  ExpectMirror("first sync, with xattrs");
  ASSERT_EQ(get(dst_ + "/a.txt", "user.color"), "blue");

  set(src_ + "/a.txt", "user.color", "green");
  set(dst_ + "/a.txt", "user.mark", "target");
  WriteFile(src_ + "/b.txt", "b, changed\n");
  WriteFile(src_ + "/d/new.txt", "new\n");
  set(src_ + "/d/new.txt", "user.new", "1");
  SyncReport plain = Sync({"--no-xattrs"});
  EXPECT_TRUE(plain.Has("b.txt", "update")) << plain.ChangesText();
  EXPECT_TRUE(plain.Has("d/new.txt", "new")) << plain.ChangesText();
  EXPECT_FALSE(plain.Has("a.txt")) << "an xattr change alone is not a change with --no-xattrs:\n"
                                   << plain.ChangesText();
  EXPECT_EQ(ReadFile(dst_ + "/b.txt"), "b, changed\n");
  EXPECT_EQ(get(dst_ + "/a.txt", "user.color"), "blue") << "copied despite --no-xattrs";
  EXPECT_EQ(get(dst_ + "/a.txt", "user.mark"), "target") << "the target's own xattr was removed";
  EXPECT_EQ(get(dst_ + "/d/new.txt", "user.new"), "(none)") << "a new file got the source's xattr";
  EXPECT_EQ(get(dst_ + "/d", "user.dir"), "src");
  EXPECT_NE(RsyncDiff(src_, dst_), "") << "the oracle compares xattrs: it must see them differ";
  ExpectNothingToDo("--no-xattrs again", {"--no-xattrs"});

  SyncReport full = Sync();
  EXPECT_TRUE(full.Has("a.txt")) << full.ChangesText();
  EXPECT_TRUE(full.Has("d/new.txt")) << full.ChangesText();
  ExpectMirror("with xattrs again");
  EXPECT_EQ(get(dst_ + "/a.txt", "user.mark"), "(none)");
}

// Each side's xattr cache (what an inode's xattrs were at its ctime) is not fooled by a change
// of xattrs or ACLs alone, with the file's size and mtime put back: setfattr and setfacl move
// the ctime, on the source and on the target behind ferry's back alike.
TEST_P(TransportTest, AnXattrChangeAloneIsSeenThroughTheXattrCaches) {
  WriteFile(src_ + "/a.txt", "a\n");
  WriteFile(src_ + "/b.txt", "b\n");
  MakeDirs(src_ + "/d");
  WriteFile(src_ + "/d/c.txt", "c\n");
  auto run = [](const std::vector<std::string>& argv) {
    CommandResult r = RunCommand(argv);
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
  };
  run({"setfattr", "-n", "user.color", "-v", "blue", src_ + "/a.txt"});
  // An inode changed within a clock tick of a stage's start is not cached (racily clean): let
  // the tree age past that, so that the next stages do use the caches.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Sync();
  ExpectMirror("first sync");
  ExpectNothingToDo("second sync: the caches hold every inode");
  std::string caches;
  for (const std::string& dir : {tmp_.Sub("state"), tmp_.Sub("client-state")}) {
    caches += RunCommand({"find", dir, "-name", "xattrs-*.cache"}).out;
  }
  EXPECT_EQ(std::count(caches.begin(), caches.end(), '\n'), 2)
      << "one xattr cache a side, each in its process's state directory:\n" << caches;

  // Only xattrs and ACLs change; each mtime is put back with touch -d (sizes are the same).
  auto restore_mtime = [&](const std::string& path, const timespec& mtime) {
    char stamp[64];
    std::snprintf(stamp, sizeof(stamp), "@%lld.%09ld", static_cast<long long>(mtime.tv_sec), mtime.tv_nsec);
    run({"touch", "-h", "-d", stamp, path});
  };
  const std::vector<std::pair<std::vector<std::string>, std::string>> changes = {
      {{"setfattr", "-n", "user.color", "-v", "green"}, src_ + "/a.txt"},
      {{"setfattr", "-n", "user.dir", "-v", "new"}, src_ + "/d"},
      {{"setfacl", "-m", "u:1234:r"}, src_ + "/d/c.txt"},
      {{"setfattr", "-n", "user.stray", "-v", "target"}, dst_ + "/b.txt"},  // behind ferry's back
  };
  for (const auto& [command, path] : changes) {
    const timespec mtime = MtimeOf(path);
    std::vector<std::string> argv = command;
    argv.push_back(path);
    run(argv);
    restore_mtime(path, mtime);
    ASSERT_EQ(MtimeOf(path).tv_nsec, mtime.tv_nsec) << path;
  }
  ASSERT_NE(RsyncDiff(src_, dst_), "") << "the oracle must see the xattrs differ";
  SyncReport report = Sync();
  EXPECT_TRUE(report.Has("a.txt")) << report.ChangesText();
  EXPECT_TRUE(report.Has("d/c.txt")) << report.ChangesText();
  EXPECT_TRUE(report.Has("b.txt")) << report.ChangesText();
  EXPECT_EQ(report.files_sent, 0u) << "metadata only:\n" << report.ChangesText();
  EXPECT_EQ(RsyncDiff(src_, dst_), "") << "after the stage that carried the xattr changes";
  ExpectMirror("after the xattr changes");
  ExpectNothingToDo("and then nothing to do");
}

TEST_P(TransportTest, DeletesTargetExtrasAndCountsThem) {
  MakeDirs(src_ + "/kept_dir");
  WriteFile(src_ + "/kept_dir/file", "kept\n");
  WriteFile(src_ + "/top", "top\n");
  Sync();
  // 5 extra entries, none holding others: a file, an empty directory, a symlink, a fifo, and a
  // file inside a directory the source has.
  WriteFile(dst_ + "/extra_file", "x");
  MakeDirs(dst_ + "/extra_empty_dir");
  ASSERT_EQ(::symlink("top", (dst_ + "/extra_link").c_str()), 0);
  ASSERT_EQ(::mkfifo((dst_ + "/extra_fifo").c_str(), 0600), 0);
  WriteFile(dst_ + "/kept_dir/extra_inner", "y");

  SyncReport report = Sync();
  EXPECT_EQ(report.entries_deleted, 5u) << report.ChangesText();
  for (const char* path : {"extra_file", "extra_empty_dir", "extra_link", "extra_fifo", "kept_dir/extra_inner"}) {
    EXPECT_TRUE(report.Has(path, "delete")) << path << "\n" << report.ChangesText();
  }
  EXPECT_EQ(report.files_sent, 0u);
  ExpectMirror("after the deletion");
  ExpectNothingToDo("after the deletion");
}

TEST_P(TransportTest, DeletedTreeIsCountedAndListedEntryByEntry) {
  WriteFile(src_ + "/top", "top\n");
  Sync();
  // A tree of 5 entries: a directory, 2 files, a subdirectory with a file.
  MakeDirs(dst_ + "/extra_dir/sub");
  WriteFile(dst_ + "/extra_dir/f1", "1");
  WriteFile(dst_ + "/extra_dir/f2", "2");
  WriteFile(dst_ + "/extra_dir/sub/f3", "3");
  for (bool dry_run : {true, false}) {
    SyncReport report = dry_run ? Sync({"--dry-run"}) : Sync();
    EXPECT_EQ(report.entries_deleted, 5u) << report.ChangesText();
    for (const char* path : {"extra_dir", "extra_dir/f1", "extra_dir/f2", "extra_dir/sub", "extra_dir/sub/f3"}) {
      EXPECT_TRUE(report.Has(path, "delete")) << path << "\n" << report.ChangesText();
    }
  }
  ExpectMirror("after the deletion");
}

TEST_P(TransportTest, BrokenHardLinkIsMirrored) {
  MakeDirs(src_ + "/hard");
  WriteFile(src_ + "/hard/one", "one inode, three names\n");
  ASSERT_EQ(::link((src_ + "/hard/one").c_str(), (src_ + "/hard/two").c_str()), 0);
  ASSERT_EQ(::link((src_ + "/hard/one").c_str(), (src_ + "/hard/three").c_str()), 0);
  Sync();
  ExpectMirror("first sync");
  Mutation m = BreakHardLink(src_);
  SyncReport report = Sync();
  ExpectReported(report, m);
  ExpectMirror(m.name);  // StatDiff compares the link groups
  // What the bug does to an application: a write to one name shows through the other.
  WriteFile(dst_ + "/hard/one", "written on the target after the cutover\n");
  EXPECT_EQ(ReadFile(dst_ + "/hard/two"), "one inode, three names\n");
}

// Many small stages back to back, as the coordinator runs them: each must succeed and send
// exactly what changed. Short sessions make races between the sender's threads likely.
TEST_P(TransportTest, ManySmallStagesBackToBack) {
  WriteRandomFile(src_ + "/data.bin", 256 << 10, seed_);
  for (int round = 0; round < 40; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    WriteFile(src_ + "/round", std::to_string(round) + "\n");
    WriteFile(src_ + "/new" + std::to_string(round), "new\n");
    SyncReport report = Sync();
    ASSERT_EQ(last_.exit_code, 0);
    EXPECT_EQ(report.files_sent, round == 0 ? 3u : 2u) << report.ChangesText();
  }
  ExpectMirror("after 40 stages");
}

INSTANTIATE_TEST_SUITE_P(Transports, TransportTest,
                         ::testing::Values(Transport::kLocal, Transport::kPush, Transport::kPull), TransportName);

class DaemonTest : public ::testing::Test {
 protected:
  void StartDaemon(const std::string& volume_path) {
    DaemonProcess::Config config;
    config.volumes = {{"vol", volume_path}};
    config.state_dir = tmp_.Sub("state");
    config.log_path = tmp_.Sub("daemon.log");
    ASSERT_EQ(daemon_.Start(config), "");
    started_ = true;
  }
  void TearDown() override {
    if (!started_) return;
    EXPECT_TRUE(daemon_.alive()) << daemon_.Log();
    EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
  }

  uint64_t seed_ = TestSeed();
  TempDir tmp_;
  DaemonProcess daemon_;
  bool started_ = false;
};

TEST_F(DaemonTest, PushAndPullASubpathOfAVolume) {
  std::string volume = tmp_.Sub("volume");
  std::string src = tmp_.Sub("src");
  MakeDirs(volume);
  WriteFile(volume + "/outside.txt", "outside the subpath: must survive\n");
  MakeDirs(volume + "/sub/sibling");
  WriteFile(volume + "/sub/sibling/file", "a sibling of the subpath\n");
  StartDaemon(volume);
  BuildFidelityTree(src, seed_);

  // Push creates sub/dir (as rsync creates its destination) and mirrors into it only.
  CommandResult push = RunFerry({"sync", "--json", "--insecure", src, daemon_.Url("vol/sub/dir")});
  ASSERT_EQ(push.exit_code, 0) << push.Describe() << daemon_.Log();
  SyncReport report = ParseSyncJson(push.out);
  EXPECT_TRUE(report.parsed) << report.parse_error;
  EXPECT_EQ(report.entries_deleted, 0u);
  EXPECT_EQ(RsyncDiff(src, volume + "/sub/dir"), "");
  EXPECT_EQ(StatDiff(src, volume + "/sub/dir"), "");
  EXPECT_EQ(ReadFile(volume + "/outside.txt"), "outside the subpath: must survive\n");
  EXPECT_EQ(ReadFile(volume + "/sub/sibling/file"), "a sibling of the subpath\n");

  // Pull a subpath of the subpath back.
  std::string pulled = tmp_.Sub("pulled");
  CommandResult pull = RunFerry({"sync", "--insecure", "--no-progress", daemon_.Url("vol/sub/dir/dirs"), pulled});
  ASSERT_EQ(pull.exit_code, 0) << pull.Describe() << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src + "/dirs", pulled), "");
  EXPECT_EQ(StatDiff(src + "/dirs", pulled), "");

  // A second push with a trailing slash sends nothing.
  CommandResult again = RunFerry({"sync", "--json", "--insecure", src, daemon_.Url("vol/sub/dir/")});
  ASSERT_EQ(again.exit_code, 0) << again.Describe();
  EXPECT_EQ(ParseSyncJson(again.out).files_sent, 0u) << again.out;
}

// A dry run into a target that does not exist creates nothing. It may either list every
// source entry as new (exit 0, as rsync does) or refuse with a target error (exit 3) naming it.
void ExpectDryRunToMissingTarget(const CommandResult& dry, const std::string& target_text) {
  if (dry.exit_code == 0) {
    SyncReport report = ParseSyncJson(dry.out);
    EXPECT_TRUE(report.parsed) << report.parse_error;
    EXPECT_TRUE(report.Has("a", "new")) << report.ChangesText();
  } else {
    EXPECT_EQ(dry.exit_code, 3) << dry.Describe();
    EXPECT_NE(dry.err.find(target_text), std::string::npos) << dry.Describe();
  }
}

TEST(DryRunMissingTargetTest, LocalCreatesNothingThenTheRealRunCreatesIt) {
  TempDir src, out;
  WriteFile(src.Sub("a"), "a\n");
  std::string missing = out.Sub("not/yet/there");
  CommandResult dry = RunFerry({"sync", "-n", "--json", src.path(), missing});
  EXPECT_NE(::access(out.Sub("not").c_str(), F_OK), 0) << "a dry run created the target";
  ExpectDryRunToMissingTarget(dry, missing);

  CommandResult real = RunFerry({"sync", "--json", src.path(), missing});
  ASSERT_EQ(real.exit_code, 0) << real.Describe();
  EXPECT_EQ(RsyncDiff(src.path(), missing), "");
}

TEST_F(DaemonTest, PushDryRunToMissingSubpathCreatesNothing) {
  std::string volume = tmp_.Sub("volume"), src = tmp_.Sub("src");
  MakeDirs(volume);
  MakeDirs(src);
  WriteFile(src + "/a", "a\n");
  StartDaemon(volume);
  CommandResult dry = RunFerry({"sync", "-n", "--json", "--insecure", src, daemon_.Url("vol/not/there")});
  EXPECT_NE(::access((volume + "/not").c_str(), F_OK), 0) << "a dry run created the subpath";
  ExpectDryRunToMissingTarget(dry, "not/there");
}

TEST_F(DaemonTest, PullDryRunToMissingTargetIsATargetError) {
  std::string volume = tmp_.Sub("volume");
  MakeDirs(volume);
  WriteFile(volume + "/a", "a\n");
  StartDaemon(volume);
  std::string missing = tmp_.Sub("not/yet/there");
  CommandResult dry = RunFerry({"sync", "-n", "--json", "--insecure", daemon_.Url("vol"), missing});
  EXPECT_NE(::access(tmp_.Sub("not").c_str(), F_OK), 0) << "a dry run created the target";
  ExpectDryRunToMissingTarget(dry, missing);
}

// The oracles must be able to fail: each kind of difference the tests rely on them to see.
TEST(OracleTest, SeesEveryKindOfDifference) {
  TempDir tmp;
  std::string src = tmp.Sub("src"), copy = tmp.Sub("copy");
  FidelityTree tree = BuildFidelityTree(src, TestSeed());
  // The large files only slow the oracles down here.
  for (const std::string& large : {tree.sparse, std::string("sparse_tail.img"), tree.big}) {
    ASSERT_EQ(::unlink((src + "/" + large).c_str()), 0);
  }
  SnapshotTree(src, copy);
  ASSERT_EQ(RsyncDiff(src, copy), "");
  ASSERT_EQ(StatDiff(src, copy), "");
  auto c = [&](const std::string& rel) { return copy + "/" + rel; };
  struct Perturbation {
    std::string name;
    std::vector<std::string> command;  // run on the copy
    bool rsync_sees;                   // else only StatDiff does
  };
  const std::vector<Perturbation> cases = {
      {"access ACL removed", {"setfacl", "-b", c("acl/file")}, true},
      {"default ACL removed", {"setfacl", "-k", c("acl/dir")}, true},
      {"trusted xattr removed", {"setfattr", "-x", "trusted.secret", c("xattr/file")}, true},
      {"user xattr changed", {"setfattr", "-n", "user.color", "-v", "green", c("xattr/file")}, true},
      {"symlink xattr removed", {"setfattr", "-h", "-x", "trusted.linkattr", c("xattr/link")}, true},
      {"symlink owner changed", {"chown", "-h", "1:1", c("owners/link")}, true},
      {"setuid bit dropped", {"chmod", "0755", c("modes/setuid")}, true},
      {"extra file", {"touch", c("dirs/extra")}, true},
      {"symlink target changed", {"ln", "-sfn", "elsewhere", c("links/rel")}, true},
      {"directory mtime off by 1 ns", {"touch", "-h", "-d", "@1500000000.000000001", c("dirs/empty_dir")}, false},
      {"symlink mtime changed", {"touch", "-h", "-d", "@1500000000.5", c("links/dangling")}, false},
      {"hard link broken", {"sh", "-c", "cp -p \"$0\" \"$0.t\" && mv \"$0.t\" \"$0\"", c("hard/one")}, false},
  };
  for (const Perturbation& p : cases) {
    SCOPED_TRACE(p.name);
    CommandResult r = RunCommand(p.command);
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    if (p.rsync_sees) {
      EXPECT_NE(RsyncDiff(src, copy), "");
    } else {
      EXPECT_NE(StatDiff(src, copy), "");
    }
    RemoveTree(copy);
    SnapshotTree(src, copy);
  }
  // Same size, same mtime, other content: only a content comparison (rsync -c) sees it.
  std::string path = c("file.txt");
  timespec mtime = MtimeOf(path);
  std::string content = ReadFile(path);
  content[0] = 'J';
  WriteFile(path, content);
  SetMtimeNs(path, mtime.tv_sec, mtime.tv_nsec);
  EXPECT_EQ(StatDiff(src, copy), "");
  EXPECT_NE(RsyncDiff(src, copy), "");
}

}  // namespace
}  // namespace ferry_test
