// Test trees for the integration tests: temp directories, the "fidelity tree" that holds every
// entry type and every piece of metadata ferry must carry, tree mutations between stages, and
// the oracles that compare two trees (rsync itemised dry run, plus our own lstat walk for what
// rsync does not look at: nanosecond mtimes, allocated blocks of sparse files).
// Threading: the functions touch only the paths they are given; a TempDir belongs to one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace ferry_test {

// The seed every random input of a test derives from: FERRY_TEST_SEED from the environment,
// else a fixed default. Tests print it (SCOPED_TRACE) so a failure can be replayed.
uint64_t TestSeed();

// A fresh directory under /tmp, removed with everything in it when the object dies.
class TempDir {
 public:
  // Under `base` (default /tmp; /dev/shm for a tree of many files that the disk's file system
  // would make slow to create right after other tests deleted theirs).
  explicit TempDir(const std::string& base = "/tmp");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Small file helpers. They abort the test binary (CHECK-like) when the file system refuses,
// because every caller builds a fixture it cannot do without.
void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);
// `size_bytes` of pseudo-random bytes from `seed` (incompressible, cheap to make).
void WriteRandomFile(const std::string& path, uint64_t size_bytes, uint64_t seed);
std::string RandomBytes(uint64_t size_bytes, uint64_t seed);
void PwriteAt(const std::string& path, uint64_t offset, const std::string& bytes);
void MakeDirs(const std::string& path);  // mkdir -p
void SetMtimeNs(const std::string& path, int64_t sec, long nsec);  // never follows a symlink
struct timespec MtimeOf(const std::string& path);                   // lstat
void RemoveTree(const std::string& path);                           // rm -rf

// Paths (relative to the tree root) of the fidelity tree's notable entries.
struct FidelityTree {
  std::string root;
  std::string sparse = "sparse.img";            // 64 MiB, two small data regions
  uint64_t sparse_size_bytes = 64ull << 20;
  std::vector<std::string> hard_links = {"hard/one", "dirs/nested/hard_two", "links/hard_three"};
  std::string big = "big.bin";
  std::string readonly_dir = "dirs/readonly";
  uint64_t entries = 0;          // every entry incl. the root
  uint64_t regular_inodes = 0;   // distinct regular-file inodes
  uint64_t regular_bytes = 0;    // their sizes summed (each inode once)
};

// Builds the fidelity tree at `root` (created): regular files (small, empty, multi-MiB random),
// directories (empty, 0555, setgid, sticky), symlinks (relative, absolute, dangling, with
// '..' inside), a hard link with 3 names across directories, setuid/setgid/sticky modes,
// numeric owners, nanosecond mtimes on files, directories and symlinks, a sparse file, user.*
// and trusted.* xattrs, POSIX access and default ACLs, a fifo, a char device and odd names
// (space, tab, newline, UTF-8, invalid UTF-8, leading dash, 255 bytes).
FidelityTree BuildFidelityTree(const std::string& root, uint64_t seed);

// Counts of a tree (for the figures a sync reports).
struct TreeCounts {
  uint64_t entries = 0;  // incl. the root
  uint64_t regular_inodes = 0;
  uint64_t regular_bytes = 0;
};
TreeCounts CountTree(const std::string& root);

// `rsync -anicHAX --delete --numeric-ids SRC/ DST/`: empty when DST mirrors SRC in content,
// type, mode, owner, mtime, hard links, xattrs and ACLs. Failures of rsync itself are
// returned as text too, so they never read as a match.
// `excludes`: --exclude patterns, as a plan's exclude: (excluded names are neither compared nor deleted).
std::string RsyncDiff(const std::string& source, const std::string& target, const std::vector<std::string>& excludes = {});

// Our own lstat walk of both trees: reports (one line each) entries whose type, mode, owner,
// size, rdev, symlink target or mtime *to the nanosecond* differ, including directories and
// the root, and names whose hard-link groups differ (rsync -H does not see a target name
// still linked to names the source has unlinked). Empty when they match.
std::string StatDiff(const std::string& source, const std::string& target);

// A copy of `source` to compare a tree with later (rsync -aHAX, then every directory mtime).
void SnapshotTree(const std::string& source, const std::string& snapshot);

// Allocated bytes of a file (st_blocks * 512).
uint64_t AllocatedBytes(const std::string& path);

// `find ROOT -name '.ferry-tmp.*'`: leftover temp files, one per line.
std::string FindTempFiles(const std::string& root);

// Mutations between stages. Each returns the relative paths the receiver should report.
// They apply to a fidelity tree (they use its paths).
struct Mutation {
  std::string name;
  std::vector<std::string> changed_paths;  // relative paths a dry run / -i must list
};
// Edits content keeping the size, appends, deletes files and a directory tree, renames,
// chmods, chowns, changes and removes xattrs, removes ACLs, adds a hard link.
std::vector<Mutation> MutateTree(const std::string& root, uint64_t seed);
// "hard/one" leaves its link group: a new inode with the same content, mode and mtime.
Mutation BreakHardLink(const std::string& root);
// Type changes, one per round: file -> dir, dir -> symlink, symlink -> file.
Mutation FileToDirectory(const std::string& root);
Mutation DirectoryToSymlink(const std::string& root);
Mutation SymlinkToFile(const std::string& root);

}  // namespace ferry_test
