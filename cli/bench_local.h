// The local half of `ferry bench`: reading a source tree's file data as fast as it goes, and
// the generated tree the end-to-end sync pushes (many 16 KiB files and a few large ones,
// incompressible), made under $TMPDIR and removed by its owner.
// Threading: functions run on the caller's thread; a BenchTree belongs to one thread.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "base/status.h"

namespace ferry {

struct SourceReadFigures {
  uint64_t bytes = 0;
  uint64_t files = 0;
  uint64_t files_unreadable = 0;  // skipped: opened or read with an error
  double seconds = 0;
};

// Reads the data of the regular files under `path` (or of `path` itself, a file or a block
// device), depth first, up to `bytes_max`, symlinks not followed. An error when nothing could
// be read. The page cache is not dropped: recently read data reads at memory speed.
Result<SourceReadFigures> ReadSource(const std::string& path, uint64_t bytes_max);

// A generated tree of about `bytes` bytes in a new directory under $TMPDIR (or /tmp), removed
// by the destructor.
class BenchTree {
 public:
  BenchTree() = default;
  ~BenchTree();
  BenchTree(const BenchTree&) = delete;
  BenchTree& operator=(const BenchTree&) = delete;

  // REQUIRES: not made yet. Half of `bytes` goes into large files (64 MiB, or a quarter of
  // `bytes` when that is less), the rest into 16 KiB files, 256 per directory.
  Status Make(uint64_t bytes, uint64_t seed);
  const std::string& root() const { return root_; }
  uint64_t bytes() const { return bytes_; }
  uint64_t files() const { return files_; }

 private:
  std::string root_;  // "" until made
  uint64_t bytes_ = 0;
  uint64_t files_ = 0;
};

}  // namespace ferry
