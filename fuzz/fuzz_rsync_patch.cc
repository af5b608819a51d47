// libFuzzer target: librsync delta instructions from a hostile sender applied to a basis file
// (the receiver's side of the shifted-content fallback), fed in pieces, with the output bounded.
// The delta may only refer inside the basis and may never write past max_output.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "agent/rsync_delta.h"

namespace {
constexpr uint64_t kMaxOutput = 256 << 10;  // small: outputs are written for every input

int MemFile(const char* name) {
  int fd = ::memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) std::abort();
  return fd;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int basis = [] {
    int fd = MemFile("basis");
    char block[4096];
    for (int i = 0; i < 16; ++i) {
      for (size_t j = 0; j < sizeof(block); ++j) block[j] = static_cast<char>(i * 31 + j);
      if (::pwrite(fd, block, sizeof(block), i * 4096) != static_cast<ssize_t>(sizeof(block))) std::abort();
    }
    return fd;
  }();
  static const int out = MemFile("out");  // emptied for each input: no file made per run
  if (::ftruncate(out, 0) != 0) std::abort();
  {
    ferry::rsync_delta::Patcher patcher(basis, out, kMaxOutput);
    std::string_view in(reinterpret_cast<const char*>(data), size);
    // Pieces of varying size, as frames would bring them.
    size_t piece = 1;
    while (!in.empty()) {
      size_t n = std::min(in.size(), piece);
      if (!patcher.Feed(in.substr(0, n)).ok()) break;
      in.remove_prefix(n);
      piece = piece * 3 + 1;
    }
    (void)patcher.Finish();
    if (patcher.bytes_written() > kMaxOutput) std::abort();
  }
  off_t end = ::lseek(out, 0, SEEK_END);
  if (end < 0 || static_cast<uint64_t>(end) > kMaxOutput) std::abort();
  return 0;
}
