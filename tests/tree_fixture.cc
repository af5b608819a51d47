#include "tests/tree_fixture.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "tests/process_fixture.h"

namespace fs = std::filesystem;

namespace ferry_test {
namespace {

// A fixture step the test cannot do without: report it as a test failure, with errno.
bool Expect(bool ok, const std::string& what) {
  if (!ok) ADD_FAILURE() << "fixture: " << Printable(what) << ": " << std::strerror(errno);
  return ok;
}

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

std::string RandomBytes(uint64_t size_bytes, uint64_t seed) {
  std::string out(size_bytes, '\0');
  uint64_t state = seed;
  for (size_t i = 0; i < size_bytes; i += 8) {
    uint64_t v = SplitMix64(&state);
    std::memcpy(&out[i], &v, std::min<size_t>(8, size_bytes - i));
  }
  return out;
}

void PwriteAt(const std::string& path, uint64_t offset, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (!Expect(fd >= 0, "open " + path)) return;
  Expect(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) ==
             static_cast<ssize_t>(bytes.size()), "pwrite " + path);
  ::close(fd);
}

namespace {

void Symlink(const std::string& target, const std::string& path) {
  Expect(::symlink(target.c_str(), path.c_str()) == 0, "symlink " + path);
}

void Chmod(const std::string& path, mode_t mode) { Expect(::chmod(path.c_str(), mode) == 0, "chmod " + path); }

void Lchown(const std::string& path, uid_t uid, gid_t gid) {
  Expect(::lchown(path.c_str(), uid, gid) == 0, "lchown " + path);
}

void SetXattr(const std::string& path, const std::string& name, const std::string& value) {
  Expect(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) == 0, "setxattr " + name + " " + path);
}

void Run(const std::vector<std::string>& argv) {
  CommandResult r = RunCommand(argv);
  if (r.exit_code != 0) ADD_FAILURE() << "fixture: " << argv[0] << " failed: " << r.Describe();
}

// The entries of a tree by relative path ("" is the root), from lstat.
std::map<std::string, struct stat> StatTree(const std::string& root) {
  std::map<std::string, struct stat> out;
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0) return out;
  out[""] = st;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::string path = it->path().string();
    if (::lstat(path.c_str(), &st) != 0) continue;  // vanished while walking
    out[path.substr(root.size() + 1)] = st;
  }
  return out;
}

// For each non-directory path: the paths of the same tree that share its inode (itself included).
std::map<std::string, std::set<std::string>> LinkGroups(const std::map<std::string, struct stat>& tree) {
  std::map<std::pair<dev_t, ino_t>, std::set<std::string>> by_inode;
  for (const auto& [path, st] : tree) {
    if (!S_ISDIR(st.st_mode)) by_inode[{st.st_dev, st.st_ino}].insert(path);
  }
  std::map<std::string, std::set<std::string>> out;
  for (const auto& [inode, names] : by_inode) {
    for (const std::string& name : names) out[name] = names;
  }
  return out;
}

std::string ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

}  // namespace

uint64_t TestSeed() {
  const char* env = std::getenv("FERRY_TEST_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 0) : 20240611;
}

TempDir::TempDir(const std::string& base) {
  std::string templ = base + "/ferry-it.XXXXXX";
  char* made = ::mkdtemp(templ.data());
  Expect(made != nullptr, "mkdtemp in " + base);
  path_ = made != nullptr ? made : "/nonexistent";
}

TempDir::~TempDir() {
  if (std::getenv("FERRY_TEST_KEEP") == nullptr) RemoveTree(path_);
}

void WriteFile(const std::string& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (!Expect(fd >= 0, "create " + path)) return;
  Expect(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()), "write " + path);
  ::close(fd);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteRandomFile(const std::string& path, uint64_t size_bytes, uint64_t seed) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (!Expect(fd >= 0, "create " + path)) return;
  constexpr uint64_t kChunk = 1 << 20;
  for (uint64_t offset = 0; offset < size_bytes; offset += kChunk) {
    std::string chunk = RandomBytes(std::min(kChunk, size_bytes - offset), seed + offset);
    if (!Expect(::write(fd, chunk.data(), chunk.size()) == static_cast<ssize_t>(chunk.size()), "write " + path)) break;
  }
  ::close(fd);
}

void MakeDirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  Expect(!ec, "mkdir -p " + path);
}

void SetMtimeNs(const std::string& path, int64_t sec, long nsec) {
  timespec times[2] = {{sec, nsec}, {sec, nsec}};
  Expect(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0, "utimensat " + path);
}

timespec MtimeOf(const std::string& path) {
  struct stat st {};
  Expect(::lstat(path.c_str(), &st) == 0, "lstat " + path);
  return st.st_mtim;
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  Expect(!ec, "rm -rf " + path);
}

FidelityTree BuildFidelityTree(const std::string& root, uint64_t seed) {
  FidelityTree tree;
  tree.root = root;
  auto P = [&](const std::string& rel) { return root + "/" + rel; };
  for (const char* dir : {"", "dirs/empty_dir", "dirs/readonly", "dirs/nested/a/b/c", "links", "hard", "modes",
                          "owners/dir", "xattr/dir", "acl/dir", "special", "names", "types/dir_to_symlink/sub"}) {
    MakeDirs(P(dir));
  }
  // Regular files: small, empty, multi-MiB random, sparse with a hole at each end and between.
  WriteFile(P("file.txt"), "hello, fidelity\n");
  WriteFile(P("empty"), "");
  WriteRandomFile(P(tree.big), (3ull << 20) + 123, seed);
  WriteFile(P("dirs/readonly/inner.txt"), "inside a 0555 directory\n");
  WriteFile(P("dirs/nested/a/b/c/deep.txt"), "deep\n");
  WriteFile(P(tree.sparse), "");
  PwriteAt(P(tree.sparse), 1ull << 20, RandomBytes(4096, seed + 1));
  PwriteAt(P(tree.sparse), 40ull << 20, RandomBytes(8192, seed + 2));
  Expect(::truncate(P(tree.sparse).c_str(), static_cast<off_t>(tree.sparse_size_bytes)) == 0, "truncate sparse");
  WriteFile(P("sparse_tail.img"), "");
  PwriteAt(P("sparse_tail.img"), (16ull << 20) - 4096, RandomBytes(4096, seed + 3));
  // Symlinks, stored verbatim.
  Symlink("../file.txt", P("links/rel"));
  Symlink("/etc/hostname", P("links/abs"));
  Symlink("does/not/exist", P("links/dangling"));
  Symlink("../dirs/./nested/../nested/a", P("links/dotdot"));
  // Hard links: three names of one inode, in three directories.
  WriteFile(P(tree.hard_links[0]), "one inode, three names\n");
  for (size_t i = 1; i < tree.hard_links.size(); ++i) {
    Expect(::link(P(tree.hard_links[0]).c_str(), P(tree.hard_links[i]).c_str()) == 0, "link " + tree.hard_links[i]);
  }
  // Modes.
  WriteFile(P("modes/setuid"), "#!/bin/sh\n");
  WriteFile(P("modes/setgid"), "#!/bin/sh\n");
  WriteFile(P("modes/private"), "secret\n");
  MakeDirs(P("modes/setgid_dir"));
  MakeDirs(P("modes/sticky_dir"));
  // Owners (numeric; no such users exist).
  WriteFile(P("owners/file"), "owned\n");
  Symlink("file", P("owners/link"));
  Lchown(P("owners/file"), 1234, 5678);
  Lchown(P("owners/dir"), 2345, 6789);
  Lchown(P("owners/link"), 3456, 7890);
  // Xattrs: user.* and trusted.* on a file and a directory, trusted.* on a symlink.
  WriteFile(P("xattr/file"), "with xattrs\n");
  SetXattr(P("xattr/file"), "user.color", "blue");
  SetXattr(P("xattr/file"), "user.binary", std::string("\0\x01\xff\n", 4));
  SetXattr(P("xattr/file"), "user.empty", "");
  SetXattr(P("xattr/file"), "trusted.secret", "s3cret");
  SetXattr(P("xattr/dir"), "user.dirattr", "d");
  SetXattr(P("xattr/dir"), "trusted.dirtrusted", "dt");
  Symlink("file", P("xattr/link"));
  SetXattr(P("xattr/link"), "trusted.linkattr", "l");
  // POSIX ACLs: an access ACL on a file, access + default ACLs on a directory.
  WriteFile(P("acl/file"), "acl\n");
  Run({"setfacl", "-m", "u:1234:r--,g:5678:rw-,m::rw-", P("acl/file")});
  Run({"setfacl", "-m", "u:1234:rwx,g:5678:r-x", P("acl/dir")});
  Run({"setfacl", "-d", "-m", "u:1234:r-x,g::r-x,o::---", P("acl/dir")});
  // Specials.
  Expect(::mkfifo(P("special/fifo").c_str(), 0640) == 0, "mkfifo");
  Expect(::mknod(P("special/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0, "mknod");
  // Odd names.
  for (const std::string& name : {std::string("with space"), std::string("tab\there"), std::string("new\nline"),
                                  std::string("\xc3\xbcn\xc3\xaf\x63\xc3\xb8\x64\xc3\xa9 \xe2\x98\x83"),
                                  std::string("bad\xff" "byte"), std::string("-leading-dash"),
                                  std::string(255, 'n')}) {
    WriteFile(P("names/" + name), "name: " + name + "\n");
  }
  MakeDirs(P("names/dir with\nnewline"));
  WriteFile(P("names/dir with\nnewline/inner"), "inner\n");
  // Entries whose type changes in later rounds.
  WriteFile(P("types/file_to_dir"), "a file, for now\n");
  WriteFile(P("types/dir_to_symlink/sub/x"), "x\n");
  Symlink("../file.txt", P("types/symlink_to_file"));
  // Modes last among the content (a 0555 directory is still writable by root, but be plain).
  Chmod(P("modes/setuid"), 04755);
  Chmod(P("modes/setgid"), 02750);
  Chmod(P("modes/private"), 0600);
  Chmod(P("modes/setgid_dir"), 02775);
  Chmod(P("modes/sticky_dir"), 01777);
  Chmod(P(tree.readonly_dir), 0555);
  // Nanosecond mtimes on every entry, children before their directory, the root last.
  std::map<std::string, struct stat> entries = StatTree(root);
  std::vector<std::string> paths;
  for (const auto& [path, st] : entries) paths.push_back(path);
  std::sort(paths.begin(), paths.end(), [](const std::string& a, const std::string& b) {
    return std::count(a.begin(), a.end(), '/') + !a.empty() > std::count(b.begin(), b.end(), '/') + !b.empty();
  });
  uint64_t state = seed;
  for (size_t i = 0; i < paths.size(); ++i) {
    long nsec = static_cast<long>(SplitMix64(&state) % 999'999'999) + 1;
    SetMtimeNs(P(paths[i]), 1'500'000'000 + static_cast<int64_t>(i) * 3607, nsec);
  }
  TreeCounts counts = CountTree(root);
  tree.entries = counts.entries;
  tree.regular_inodes = counts.regular_inodes;
  tree.regular_bytes = counts.regular_bytes;
  Expect(AllocatedBytes(P(tree.sparse)) < (1u << 20), "the source sparse file is not sparse (file system?)");
  return tree;
}

TreeCounts CountTree(const std::string& root) {
  TreeCounts counts;
  std::set<std::pair<dev_t, ino_t>> inodes;
  for (const auto& [path, st] : StatTree(root)) {
    counts.entries += 1;
    if (S_ISREG(st.st_mode) && inodes.insert({st.st_dev, st.st_ino}).second) {
      counts.regular_inodes += 1;
      counts.regular_bytes += static_cast<uint64_t>(st.st_size);
    }
  }
  return counts;
}

std::string RsyncDiff(const std::string& source, const std::string& target, const std::vector<std::string>& excludes) {
  std::vector<std::string> argv{"rsync", "-anicHAX", "--delete", "--numeric-ids"};
  for (const std::string& e : excludes) argv.push_back("--exclude=" + e);
  argv.push_back(source + "/");
  argv.push_back(target + "/");
  CommandResult r = RunCommand(argv);
  if (r.exit_code != 0) return "rsync failed: " + r.Describe();
  return r.out;
}

std::string StatDiff(const std::string& source, const std::string& target) {
  std::map<std::string, struct stat> a = StatTree(source);
  std::map<std::string, struct stat> b = StatTree(target);
  std::ostringstream out;
  for (const auto& [path, sa] : a) {
    auto it = b.find(path);
    std::string name = "'" + Printable(path) + "'";
    if (it == b.end()) {
      out << name << ": missing in target\n";
      continue;
    }
    const struct stat& sb = it->second;
    if (sa.st_mode != sb.st_mode) out << name << ": mode " << std::oct << sa.st_mode << " vs " << sb.st_mode << std::dec << "\n";
    if (sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid) {
      out << name << ": owner " << sa.st_uid << ":" << sa.st_gid << " vs " << sb.st_uid << ":" << sb.st_gid << "\n";
    }
    if (!S_ISDIR(sa.st_mode) && sa.st_size != sb.st_size) out << name << ": size " << sa.st_size << " vs " << sb.st_size << "\n";
    if (sa.st_rdev != sb.st_rdev) out << name << ": rdev differs\n";
    if (S_ISLNK(sa.st_mode) && S_ISLNK(sb.st_mode) && ReadLink(source + "/" + path) != ReadLink(target + "/" + path)) {
      out << name << ": symlink target differs\n";
    }
    if (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec || sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec) {
      out << name << ": mtime " << sa.st_mtim.tv_sec << "." << sa.st_mtim.tv_nsec << " vs " << sb.st_mtim.tv_sec << "."
          << sb.st_mtim.tv_nsec << "\n";
    }
  }
  // Hard links: the names that share an inode within one tree must share one in the other.
  std::map<std::string, std::set<std::string>> groups_a = LinkGroups(a), groups_b = LinkGroups(b);
  for (const auto& [path, names] : groups_a) {
    auto it = groups_b.find(path);
    if (it != groups_b.end() && it->second != names) {
      out << "'" << Printable(path) << "': hard link names differ (" << names.size() << " in source, "
          << it->second.size() << " in target)\n";
    }
  }
  for (const auto& [path, sb] : b) {
    if (!a.count(path)) out << "'" << Printable(path) << "': extra in target\n";
  }
  return out.str();
}

void SnapshotTree(const std::string& source, const std::string& snapshot) {
  Run({"rsync", "-aHAXS", "--numeric-ids", source + "/", snapshot + "/"});
  // rsync leaves some directory mtimes (the root's, when recent) at "now": copy them all.
  for (const auto& [path, st] : StatTree(source)) {
    if (S_ISDIR(st.st_mode)) SetMtimeNs(snapshot + (path.empty() ? "" : "/" + path), st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  }
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return UINT64_MAX;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

std::string FindTempFiles(const std::string& root) {
  CommandResult r = RunCommand({"find", root, "-name", ".ferry-tmp.*"});
  if (r.exit_code != 0) return "find failed: " + r.Describe();
  return r.out;
}

std::vector<Mutation> MutateTree(const std::string& root, uint64_t seed) {
  auto P = [&](const std::string& rel) { return root + "/" + rel; };
  std::vector<Mutation> done;
  // Content edited in place, size kept.
  PwriteAt(P("big.bin"), 1 << 20, RandomBytes(4096, seed + 100));
  done.push_back({"edit keeping size", {"big.bin"}});
  {
    std::ofstream out(P("file.txt"), std::ios::app | std::ios::binary);
    out << "appended\n";
  }
  done.push_back({"append", {"file.txt"}});
  Expect(::unlink(P("empty").c_str()) == 0, "unlink empty");
  done.push_back({"delete a file", {"empty"}});
  RemoveTree(P("dirs/nested/a"));
  done.push_back({"delete a directory tree", {"dirs/nested/a"}});
  Expect(::rename(P("names/with space").c_str(), P("names/renamed space").c_str()) == 0, "rename");
  done.push_back({"rename", {"names/with space", "names/renamed space"}});
  Chmod(P("modes/setuid"), 0700);
  Chmod(P("modes/sticky_dir"), 0755);
  done.push_back({"chmod", {"modes/setuid", "modes/sticky_dir"}});
  Lchown(P("owners/file"), 4321, 8765);
  Lchown(P("owners/link"), 0, 0);
  done.push_back({"chown", {"owners/file", "owners/link"}});
  SetXattr(P("xattr/file"), "user.color", "red");
  Expect(::lremovexattr(P("xattr/file").c_str(), "trusted.secret") == 0, "removexattr");
  Expect(::lremovexattr(P("xattr/dir").c_str(), "user.dirattr") == 0, "removexattr");
  done.push_back({"xattr change and removal", {"xattr/file", "xattr/dir"}});
  Run({"setfacl", "-b", P("acl/file")});
  Run({"setfacl", "-k", P("acl/dir")});
  done.push_back({"ACL removal", {"acl/file", "acl/dir"}});
  Expect(::link(P("owners/file").c_str(), P("owners/new_link").c_str()) == 0, "link");
  done.push_back({"new hard link", {"owners/new_link"}});
  return done;
}

Mutation BreakHardLink(const std::string& root) {
  // "hard/one" becomes its own inode with the same content and mtime; its two other names
  // stay one inode.
  std::string path = root + "/hard/one";
  timespec mtime = MtimeOf(path);
  std::string content = ReadFile(path);
  Expect(::unlink(path.c_str()) == 0, "unlink " + path);
  WriteFile(path, content);
  SetMtimeNs(path, mtime.tv_sec, mtime.tv_nsec);
  return {"break a hard link", {"hard/one"}};
}

Mutation FileToDirectory(const std::string& root) {
  std::string path = root + "/types/file_to_dir";
  Expect(::unlink(path.c_str()) == 0, "unlink " + path);
  MakeDirs(path);
  WriteFile(path + "/child", "now a directory\n");
  return {"file -> directory", {"types/file_to_dir", "types/file_to_dir/child"}};
}

Mutation DirectoryToSymlink(const std::string& root) {
  std::string path = root + "/types/dir_to_symlink";
  RemoveTree(path);
  Symlink("../dirs", path);
  return {"directory -> symlink", {"types/dir_to_symlink"}};
}

Mutation SymlinkToFile(const std::string& root) {
  std::string path = root + "/types/symlink_to_file";
  Expect(::unlink(path.c_str()) == 0, "unlink " + path);
  WriteFile(path, "was a symlink\n");
  return {"symlink -> file", {"types/symlink_to_file"}};
}

}  // namespace ferry_test
