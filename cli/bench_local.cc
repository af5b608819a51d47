#include "cli/bench_local.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <vector>

#include "base/bounds.h"
#include "base/check.h"
#include "client/bench_filler.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSmallFileBytes = 16 * kKiB;
constexpr uint64_t kLargeFileBytesMax = 64 * kMiB;
constexpr uint64_t kSmallFilesPerDirectory = 256;

// Reads `fd` to its end or until *budget runs out; false on a read error.
bool ReadAll(int fd, std::vector<char>& buffer, uint64_t* budget, uint64_t* bytes) {
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  while (*budget > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), *budget));
    ssize_t n = ::read(fd, buffer.data(), want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) break;
    *bytes += static_cast<uint64_t>(n);
    *budget -= static_cast<uint64_t>(n);
  }
  return true;
}

void ReadOne(const std::string& path, std::vector<char>& buffer, uint64_t* budget,
             SourceReadFigures* f) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  bool ok = fd >= 0 && ReadAll(fd, buffer, budget, &f->bytes);
  if (fd >= 0) ::close(fd);
  f->files += ok ? 1 : 0;
  f->files_unreadable += ok ? 0 : 1;
}

Status WriteFile(const std::string& path, uint64_t size, BenchFiller& filler) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Errno(errno, "create bench file " + path);
  for (uint64_t done = 0; done < size;) {
    std::string_view chunk =
        filler.Next(static_cast<size_t>(std::min<uint64_t>(filler.chunk_bytes(), size - done)));
    ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      ::close(fd);
      return Status::Errno(e,
                           "write bench file " + path + " (is $TMPDIR full? point it elsewhere)");
    }
    done += static_cast<uint64_t>(n);  // a short write restamps the chunk: still incompressible
  }
  if (::close(fd) != 0) return Status::Errno(errno, "close bench file " + path);
  return Status::Ok();
}

}  // namespace

Result<SourceReadFigures> ReadSource(const std::string& path, uint64_t bytes_max) {
  std::error_code ec;
  fs::file_status status = fs::symlink_status(path, ec);
  if (ec) return Status::Errno(ec.value(), "--source '" + path + "'");
  std::vector<char> buffer(kBenchChunkBytes);
  SourceReadFigures f;
  uint64_t budget = bytes_max;
  auto start = std::chrono::steady_clock::now();
  if (fs::is_directory(status)) {
    fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec),
        end;
    for (; !ec && it != end && budget > 0; it.increment(ec)) {
      std::error_code entry_ec;
      if (it->is_regular_file(entry_ec) && !it->is_symlink(entry_ec))
        ReadOne(it->path().string(), buffer, &budget, &f);
    }
    if (ec) f.files_unreadable += 1;  // a directory that could not be listed
  } else if (fs::is_regular_file(status) || fs::is_block_file(status)) {
    ReadOne(path, buffer, &budget, &f);
  } else {
    return Status::InvalidArgument("--source '" + path +
                                   "' is neither a directory, a file nor a block device");
  }
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (f.bytes == 0) {
    return Status::NotFound("--source '" + path + "' has no file data that could be read (" +
                            std::to_string(f.files_unreadable) + " unreadable)");
  }
  return f;
}

BenchTree::~BenchTree() {
  if (root_.empty()) return;
  std::error_code ec;
  fs::remove_all(root_, ec);  // best effort: it is under $TMPDIR
}

Status BenchTree::Make(uint64_t bytes, uint64_t seed) {
  CHECK(root_.empty());
  const char* tmp = std::getenv("TMPDIR");
  std::string templ =
      std::string(tmp != nullptr && tmp[0] == '/' ? tmp : "/tmp") + "/ferry-bench.XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr)
    return Status::Errno(errno, "create a bench tree in " + templ);
  root_ = templ;
  uint64_t large_size = std::clamp<uint64_t>(bytes / 4 / kSmallFileBytes * kSmallFileBytes,
                                             kSmallFileBytes, kLargeFileBytesMax);
  uint64_t large_count = bytes / 2 / large_size;
  uint64_t small_count = (bytes - large_count * large_size) / kSmallFileBytes;
  BenchFiller filler(kBenchChunkBytes, seed);
  for (uint64_t i = 0; i < large_count; ++i) {
    FERRY_RETURN_IF_ERROR(WriteFile(root_ + "/large-" + std::to_string(i), large_size, filler));
  }
  for (uint64_t i = 0; i < small_count; ++i) {
    std::string dir = root_ + "/small-" + std::to_string(i / kSmallFilesPerDirectory);
    if (i % kSmallFilesPerDirectory == 0 && ::mkdir(dir.c_str(), 0755) != 0) {
      return Status::Errno(errno, "create bench directory " + dir);
    }
    FERRY_RETURN_IF_ERROR(WriteFile(dir + "/f-" + std::to_string(i), kSmallFileBytes, filler));
  }
  bytes_ = large_count * large_size + small_count * kSmallFileBytes;
  files_ = large_count + small_count;
  return Status::Ok();
}

}  // namespace ferry
