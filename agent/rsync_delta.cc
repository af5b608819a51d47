#include "agent/rsync_delta.h"

#include <librsync.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>

#include "agent/io/fault.h"
#include "base/bounds.h"
#include "base/check.h"
#include "base/log.h"

namespace ferry::rsync_delta {
namespace {

// librsync's signature format: a header of three big-endian u32s (magic, block length,
// strong-sum length), then per block of the basis a 4-byte weak sum and the strong sum.
constexpr size_t kSignatureHeaderBytes = 12;
constexpr size_t kWeakSumBytes = 4;
// rs_sig_args's recommendation for BLAKE2 (strong_len 0 = "maximum"). Shorter sums are safe
// against chance collisions but not against crafted ones, and a volume's files may hold data
// written by untrusted users (librsync issue #5); the signature is small either way.
constexpr size_t kStrongSumBytes = 32;
static_assert(kSignatureHeaderBytes + kWeakSumBytes + kStrongSumBytes <= kRsyncSignatureMaxBytes);
static_assert(kWeakSumBytes + kStrongSumBytes == 36, "bounds.h counts 36 bytes per block");

// Files are read, and patch output written, in chunks of this size: large enough that a
// syscall per chunk is cheap, small enough to be one of the "small buffers".
constexpr size_t kReadChunkBytes = 256 * kKiB;
constexpr size_t kWriteChunkBytes = 256 * kKiB;
constexpr size_t kSignatureOutChunkBytes = 64 * kKiB;
// librsync's error text is kept only up to this length (it can quote a whole hex sum).
constexpr size_t kLibrsyncErrorMaxBytes = 256;

using Sink = std::function<Status(std::string_view)>;

struct JobFree {
  void operator()(rs_job_t* job) const { rs_job_free(job); }
};
using JobPtr = std::unique_ptr<rs_job_t, JobFree>;
struct SignatureFree {
  void operator()(rs_signature_t* signature) const { rs_free_sumset(signature); }
};
using SignaturePtr = std::unique_ptr<rs_signature_t, SignatureFree>;

// librsync reports errors through a process-wide trace callback that prints to stderr by
// default. A daemon must not print a line per hostile peer, so the text is kept per thread
// (rs_job_iter calls back on the caller's thread) and added to the Status instead. The first
// error of a call is kept: it names the cause ("bogus command 0x55"); later ones only repeat
// that the job failed.
thread_local std::string t_librsync_error;

void CaptureTrace(rs_loglevel level, const char* message) {
  std::string_view text(message, strnlen(message, kLibrsyncErrorMaxBytes));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  LOG_DEBUG(text);  // already "librsync: LEVEL: (function) what"
  // The level may carry flag bits above the syslog priority.
  if ((static_cast<int>(level) & 7) > RS_LOG_ERR || !t_librsync_error.empty()) return;
  constexpr std::string_view kPrefix = "librsync: ERROR: ";
  if (text.starts_with(kPrefix)) text.remove_prefix(kPrefix.size());
  t_librsync_error = text;
}

// Installs the trace callback once per process and clears this thread's last error.
void StartLibrsyncCall() {
  static std::once_flag once;
  std::call_once(once, [] {
    rs_trace_to(CaptureTrace);
    rs_trace_set_level(RS_LOG_WARNING);
  });
  t_librsync_error.clear();
}

// A failed librsync call as a Status. Out of memory is kIoError (the host's problem);
// everything else is `code`: kCorruption where librsync parsed a peer's bytes, kIoError where
// it only read our own file (then only a library fault is left).
Status LibrsyncError(rs_result result, std::string_view what, Code code) {
  std::string message(what);
  message += ": librsync: ";
  message += rs_strerror(result);
  if (!t_librsync_error.empty()) {
    message += ": ";
    message += t_librsync_error;
  }
  return Status::Make(result == RS_MEM_ERROR ? Code::kIoError : code, std::move(message));
}

// Reads up to `length` bytes at `offset`, retrying short reads; fewer only at end of file.
Result<size_t> ReadAt(int fd, char* buffer, size_t length, uint64_t offset) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = io::Pread(fd, buffer + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Errno(errno, "read");
    if (n == 0) break;  // end of file
    done += static_cast<size_t>(n);
  }
  return done;
}

Status WriteAt(int fd, const char* data, size_t length, uint64_t offset) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = io::Pwrite(fd, data + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Errno(errno, "write");
    if (n == 0) return Status::IoError("write: no progress");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

std::string Hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

uint32_t BigEndian32(std::string_view bytes, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + at);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Runs a job that consumes a file (rs_sig_begin, rs_delta_begin) over the first `size` bytes of
// `fd`. Its output collects in `out` and goes to `sink` whenever `out` is full and at the end,
// so every piece but the last is exactly out.size() bytes.
Status RunOverFile(rs_job_t* job, int fd, uint64_t size, std::string_view what, std::string& out,
                   const Sink& sink) {
  CHECK(!out.empty());
  std::string in(static_cast<size_t>(std::min<uint64_t>(kReadChunkBytes, size)), '\0');
  uint64_t offset = 0;
  rs_buffers_t buffers{};
  buffers.next_out = out.data();
  buffers.avail_out = out.size();
  while (true) {
    if (buffers.avail_in == 0 && offset < size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(in.size(), size - offset));
      Result<size_t> got = ReadAt(fd, in.data(), want, offset);
      if (!got.ok()) return got.status().Annotate(what);
      if (*got < want) {
        return Status::IoError(std::string(what) + ": the file shrank while being read (" +
                               std::to_string(offset + *got) + " of " + std::to_string(size) +
                               " bytes)");
      }
      buffers.next_in = in.data();
      buffers.avail_in = want;
      offset += want;
    }
    buffers.eof_in = offset == size;  // the rest of the input is in the buffer
    const size_t in_before = buffers.avail_in;
    const size_t out_before = buffers.avail_out;
    rs_result result = rs_job_iter(job, &buffers);
    if (result != RS_DONE && result != RS_BLOCKED)
      return LibrsyncError(result, what, Code::kIoError);
    const bool flush =
        buffers.avail_out == 0 || (result == RS_DONE && buffers.avail_out < out.size());
    if (flush) {
      FERRY_RETURN_IF_ERROR(sink(std::string_view(out.data(), out.size() - buffers.avail_out)));
      buffers.next_out = out.data();
      buffers.avail_out = out.size();
    }
    // A finished job has nothing more to give: stop here rather than iterate it again.
    if (result == RS_DONE) {
      CHECK_EQ(buffers.avail_in, 0u);  // librsync finishes only after it has consumed eof_in
      CHECK_EQ(offset, size);
      return Status::Ok();
    }
    if (flush) continue;  // a full buffer may hide more output
    // Blocked with output space left: it wants input. If it has all there is, or took nothing
    // it was offered, looping would spin.
    if (buffers.avail_in == in_before && buffers.avail_out == out_before &&
        (buffers.avail_in != 0 || offset == size)) {
      return Status::IoError(std::string(what) + ": librsync made no progress");
    }
  }
}

// Checks what librsync would otherwise assert on, or allocate by: librsync's asserts are on in
// Debian's build, and a block length from the wire sizes its buffers.
Status CheckSignatureHeader(std::string_view signature) {
  if (signature.size() < kSignatureHeaderBytes) {
    return Status::Corruption("rsync signature of " + std::to_string(signature.size()) +
                              " bytes has no header");
  }
  if (signature.size() > kRsyncSignatureMaxBytes) {
    return Status::Corruption("rsync signature of " + std::to_string(signature.size()) +
                              " bytes exceeds " + std::to_string(kRsyncSignatureMaxBytes));
  }
  const uint32_t magic = BigEndian32(signature, 0);
  const uint32_t block_len = BigEndian32(signature, 4);
  const uint32_t strong_len = BigEndian32(signature, 8);
  // MD4 signatures are refused: their sums can be collided on purpose.
  if (magic != RS_RK_BLAKE2_SIG_MAGIC && magic != RS_BLAKE2_SIG_MAGIC) {
    return Status::Corruption("rsync signature has magic " + Hex32(magic) +
                              ", not a BLAKE2 signature");
  }
  if (block_len == 0 || block_len > kRsyncBlockMaxBytes) {
    return Status::Corruption("rsync signature has block length " + std::to_string(block_len));
  }
  if (strong_len == 0 || strong_len > kStrongSumBytes) {
    return Status::Corruption("rsync signature has strong sum length " +
                              std::to_string(strong_len));
  }
  if ((signature.size() - kSignatureHeaderBytes) % (kWeakSumBytes + strong_len) != 0) {
    return Status::Corruption("rsync signature of " + std::to_string(signature.size()) +
                              " bytes ends inside a block's sums");
  }
  return Status::Ok();
}

// Loads a checked signature into librsync's form and indexes it for the delta.
Result<SignaturePtr> LoadSignature(std::string_view bytes) {
  rs_signature_t* raw = nullptr;
  rs_job_t* raw_job = rs_loadsig_begin(&raw);
  SignaturePtr signature(raw);
  JobPtr job(raw_job);  // declared after the signature: freed first
  rs_buffers_t buffers{};
  // librsync never writes through next_in; the field is just not const.
  buffers.next_in = const_cast<char*>(bytes.data());
  buffers.avail_in = bytes.size();
  buffers.eof_in = 1;
  // Loading produces no output, so avail_out stays 0. With all its input at hand the job
  // finishes, fails, or stops taking input (then the signature ended early).
  rs_result result = RS_BLOCKED;
  while (result == RS_BLOCKED) {
    const size_t in_before = buffers.avail_in;
    result = rs_job_iter(job.get(), &buffers);
    if (result == RS_BLOCKED && buffers.avail_in == in_before) result = RS_INPUT_ENDED;
  }
  if (result != RS_DONE) return LibrsyncError(result, "rsync signature", Code::kCorruption);
  if (buffers.avail_in != 0) {
    return Status::Corruption("rsync signature has " + std::to_string(buffers.avail_in) +
                              " bytes after its end");
  }
  result = rs_build_hash_table(signature.get());
  if (result != RS_DONE) return LibrsyncError(result, "rsync signature", Code::kCorruption);
  return signature;
}

}  // namespace

Result<std::string> Signature(int basis_fd, uint64_t size) {
  StartLibrsyncCall();
  if (size > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
    return Status::Unsupported("rsync signature: a basis of " + std::to_string(size) +
                               " bytes is too large");
  }
  rs_magic_number magic = RS_RK_BLAKE2_SIG_MAGIC;
  size_t block_len = 0;   // 0: recommended for the size (about its square root)
  size_t strong_len = 0;  // 0: the longest, recommended against crafted collisions
  rs_result args = rs_sig_args(static_cast<rs_long_t>(size), &magic, &block_len, &strong_len);
  CHECK_EQ(args, RS_DONE);  // the arguments are valid by construction
  CHECK_EQ(strong_len, kStrongSumBytes);
  CHECK(block_len > 0);
  const uint64_t blocks = size / block_len + (size % block_len != 0 ? 1 : 0);
  const uint64_t expected_bytes = kSignatureHeaderBytes + blocks * (kWeakSumBytes + strong_len);
  if (expected_bytes > kRsyncSignatureMaxBytes) {
    return Status::Unsupported("rsync signature of a " + std::to_string(size) +
                               "-byte basis would take " + std::to_string(expected_bytes) +
                               " bytes, above " + std::to_string(kRsyncSignatureMaxBytes));
  }
  // block_len <= blocks above 64 KiB (both about sqrt(size)), and bounds.h relates the bounds.
  CHECK_LE(block_len, kRsyncBlockMaxBytes);

  JobPtr job(rs_sig_begin(block_len, strong_len, magic));
  CHECK(job != nullptr);
  std::string signature;
  signature.reserve(static_cast<size_t>(expected_bytes));
  std::string out(kSignatureOutChunkBytes, '\0');
  Status status =
      RunOverFile(job.get(), basis_fd, size, "rsync signature", out, [&](std::string_view piece) {
        // The size formula is librsync's format; a mismatch is our bug.
        CHECK_LE(piece.size(), expected_bytes - signature.size());
        signature.append(piece);
        return Status::Ok();
      });
  if (!status.ok()) return status;
  CHECK_EQ(signature.size(), expected_bytes);
  return signature;
}

Status Delta(std::string_view signature, int new_fd, uint64_t size, const Sink& emit) {
  CHECK(static_cast<bool>(emit));
  StartLibrsyncCall();
  FERRY_RETURN_IF_ERROR(CheckSignatureHeader(signature));
  Result<SignaturePtr> loaded = LoadSignature(signature);
  if (!loaded.ok()) return loaded.status();
  JobPtr job(rs_delta_begin(loaded->get()));  // freed before the signature it points to
  CHECK(job != nullptr);
  std::string out(kRsyncDeltaPieceBytes, '\0');
  return RunOverFile(job.get(), new_fd, size, "rsync delta", out, emit);
}

// ---------------------------------------------------------------------------------------------

struct Patcher::Impl {
  Impl(int basis, int out_file, uint64_t max)
      : basis_fd(basis), out_fd(out_file), max_output(max), out(new char[kWriteChunkBytes]) {}

  // Runs the job over `input` (all of it is consumed, or the job ends or fails).
  Status Run(std::string_view input, bool eof);
  Status Write(size_t count);
  static rs_result CopyFromBasis(void* opaque, rs_long_t pos, size_t* len, void** buf);

  const int basis_fd;
  const int out_fd;
  const uint64_t max_output;
  JobPtr job;
  std::unique_ptr<char[]> out;  // kWriteChunkBytes, left uninitialised: librsync fills what it reports
  uint64_t written = 0;
  Status copy_status;  // why CopyFromBasis failed: librsync only keeps an rs_result
  Status failure;      // the first failure, returned by every later call
  bool done = false;   // the delta's END command was applied
  bool finished = false;
};

rs_result Patcher::Impl::CopyFromBasis(void* opaque, rs_long_t pos, size_t* len, void** buf) {
  Impl* impl = static_cast<Impl*>(opaque);
  // librsync 2.3 rejects negative positions itself; the rest of the range is ours to check.
  const uint64_t position = pos < 0 ? std::numeric_limits<uint64_t>::max() : uint64_t(pos);
  const uint64_t length = *len;
  const uint64_t offset_max = static_cast<uint64_t>(std::numeric_limits<off_t>::max());
  size_t got = 0;
  if (position <= offset_max && length <= offset_max - position) {
    Result<size_t> read = ReadAt(impl->basis_fd, static_cast<char*>(*buf), *len, position);
    if (!read.ok()) {
      impl->copy_status = read.status().Annotate("rsync patch: basis");
      return RS_IO_ERROR;
    }
    got = *read;
  }
  if (got < length) {
    impl->copy_status =
        Status::Corruption("rsync patch: the delta copies basis bytes [" + std::to_string(pos) +
                           ", +" + std::to_string(length) + ") beyond the basis");
    return RS_CORRUPT;
  }
  return RS_DONE;
}

Status Patcher::Impl::Write(size_t count) {
  if (count == 0) return Status::Ok();
  CHECK_LE(written, max_output);
  if (count > max_output - written) {
    return Status::Corruption("rsync patch: the result exceeds its bound of " +
                              std::to_string(max_output) + " bytes");
  }
  FERRY_RETURN_IF_ERROR(
      WriteAt(out_fd, out.get(), count, written).Annotate("rsync patch: output"));
  written += count;
  return Status::Ok();
}

Status Patcher::Impl::Run(std::string_view input, bool eof) {
  rs_buffers_t buffers{};
  buffers.next_in = const_cast<char*>(input.data());  // librsync never writes through next_in
  buffers.avail_in = input.size();
  buffers.eof_in = eof ? 1 : 0;
  while (true) {
    buffers.next_out = out.get();
    buffers.avail_out = kWriteChunkBytes;
    const size_t in_before = buffers.avail_in;
    t_librsync_error.clear();
    rs_result result = rs_job_iter(job.get(), &buffers);
    if (!copy_status.ok()) return copy_status;
    if (result == RS_INPUT_ENDED) return Status::Corruption("rsync patch: the delta ended early");
    if (result != RS_DONE && result != RS_BLOCKED) {
      return LibrsyncError(result, "rsync patch", Code::kCorruption);
    }
    const size_t produced = kWriteChunkBytes - buffers.avail_out;
    FERRY_RETURN_IF_ERROR(Write(produced));
    if (result == RS_DONE) {
      done = true;
      if (buffers.avail_in != 0) {
        return Status::Corruption("rsync patch: the delta goes on for " +
                                  std::to_string(buffers.avail_in) + " bytes after its end");
      }
      return Status::Ok();
    }
    if (produced == kWriteChunkBytes) continue;  // a full buffer may hide more output
    if (buffers.avail_in == 0) {
      // All input is taken and the job wants more.
      if (eof) return Status::Corruption("rsync patch: the delta ended early");
      return Status::Ok();
    }
    if (buffers.avail_in == in_before && produced == 0) {
      return Status::Corruption("rsync patch: librsync made no progress");
    }
  }
}

Patcher::Patcher(int basis_fd, int out_fd, uint64_t max_output)
    : impl_(std::make_unique<Impl>(basis_fd, out_fd, max_output)) {
  StartLibrsyncCall();
  impl_->job.reset(rs_patch_begin(&Impl::CopyFromBasis, impl_.get()));
  CHECK(impl_->job != nullptr);
}

Patcher::~Patcher() = default;

Status Patcher::Feed(std::string_view piece) {
  CHECK(!impl_->finished);
  if (!impl_->failure.ok()) return impl_->failure;
  if (piece.empty()) return Status::Ok();
  if (impl_->done) {
    impl_->failure = Status::Corruption("rsync patch: the delta goes on for " +
                                        std::to_string(piece.size()) + " bytes after its end");
    return impl_->failure;
  }
  impl_->failure = impl_->Run(piece, /*eof=*/false);
  return impl_->failure;
}

Status Patcher::Finish() {
  CHECK(!impl_->finished);
  impl_->finished = true;
  if (!impl_->failure.ok()) return impl_->failure;
  if (impl_->done) return Status::Ok();
  impl_->failure = impl_->Run({}, /*eof=*/true);
  if (impl_->failure.ok()) CHECK(impl_->done);  // at eof the job ends or fails
  return impl_->failure;
}

uint64_t Patcher::bytes_written() const { return impl_->written; }

}  // namespace ferry::rsync_delta
