// agent/rsync_delta.h — librsync's rolling-checksum delta, streamed and bounded.
// The fallback delta for shifted content: an insert in the middle of a file moves every later
// byte, so fixed-block matching (agent/blocks.h) finds nothing, while a rolling checksum finds
// the old blocks at their new offsets. The receiver signs its basis, the sender computes the
// delta of its new file against that signature, and the receiver patches the basis with it.
// Memory: the sender holds one signature and its hash table; every other buffer is small and
// fixed, so neither side ever holds a whole file or a whole delta.
// Threading: the functions are thread-safe; a Patcher belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/status.h"

namespace ferry::rsync_delta {

// The signature of the first `size` bytes of `basis_fd` (read with pread from offset 0), with
// librsync's recommended block and strong-sum lengths for that size (rs_sig_args: a block of
// about sqrt(size), full 32-byte BLAKE2 strong sums, RabinKarp rolling sums). Fails with
// Code::kUnsupported when the signature would exceed kRsyncSignatureMaxBytes (the caller then
// sends the file whole), and with Code::kIoError when the file is shorter than `size`.
Result<std::string> Signature(int basis_fd, uint64_t size);

// Computes the delta of the first `size` bytes of `new_fd` against `signature` and hands it to
// `emit` in pieces of at most kRsyncDeltaPieceBytes as it is produced (the delta is never held
// whole); a piece is valid only during the call. A non-OK status from `emit` stops the delta
// and is returned. A malformed signature (or one with MD4 sums, or a block length above
// kRsyncBlockMaxBytes) is Code::kCorruption, before `emit` is called; a file shorter than
// `size` is Code::kIoError. Memory: the signature's hash table plus small buffers.
Status Delta(std::string_view signature, int new_fd, uint64_t size,
             const std::function<Status(std::string_view piece)>& emit);

// Applies a delta, fed in pieces as they arrive, to `basis_fd` (read with pread), writing the
// result sequentially from offset 0 into `out_fd` (pwrite). A delta that refers outside the
// basis, or is malformed, is Code::kCorruption; Finish() fails if the delta ended early.
// `max_output` bounds the result's size (Code::kCorruption beyond it). The first failure is
// sticky: later Feed() and Finish() calls return it. The caller owns both descriptors.
class Patcher {
 public:
  Patcher(int basis_fd, int out_fd, uint64_t max_output);
  ~Patcher();
  Patcher(const Patcher&) = delete;
  Patcher& operator=(const Patcher&) = delete;

  // Consumes all of `piece`. Bytes after the delta's end are Code::kCorruption.
  Status Feed(std::string_view piece);
  // REQUIRES: called once, after the last Feed(). OK only when the delta was complete.
  Status Finish();
  uint64_t bytes_written() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::rsync_delta
