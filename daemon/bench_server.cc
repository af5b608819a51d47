#include "daemon/bench_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>

#include "agent/fs.h"
#include "agent/path.h"
#include "agent/receiver.h"
#include "base/bounds.h"
#include "base/check.h"
#include "base/log.h"
#include "base/units.h"
#include "client/bench_filler.h"

namespace ferry {
namespace {

using protocol::BenchKind;
using protocol::BenchMessage;
using protocol::BenchType;
using protocol::MessageType;
using Clock = std::chrono::steady_clock;

uint64_t NanosBetween(Clock::time_point start, Clock::time_point end) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
}

Status SendResult(Channel& channel, uint64_t bytes, uint64_t files, uint64_t duration_ns) {
  return channel.SendMessage(BenchMessage(BenchType::kBenchResult),
                             protocol::BenchResult{bytes, files, duration_ns});
}

// Network up: the client sends filler for its seconds, then BENCH_END. Timed from the first
// frame to the last, counting the bytes after the first (so one round trip is not measured).
// A client that keeps sending well past its seconds is cut off: a bench session is bounded.
Status ReceiveUpload(Channel& channel, const protocol::BenchReady& ready, uint32_t seconds) {
  const auto allowed = std::chrono::seconds(2 * seconds + 5);
  FERRY_RETURN_IF_ERROR(channel.SendMessage(BenchMessage(BenchType::kBenchReady), ready));
  uint64_t bytes_total = 0, bytes_timed = 0;
  Clock::time_point first{}, last{};
  Frame frame;
  for (;;) {
    FERRY_RETURN_IF_ERROR(channel.Receive(&frame, kIdleTimeoutMs));
    if (frame.type == MessageType::kKeepalive) continue;
    if (frame.type == BenchMessage(BenchType::kBenchEnd)) break;
    if (frame.type != BenchMessage(BenchType::kBenchData)) {
      return UnexpectedFrame(frame, "BENCH_DATA", channel.peer_name());
    }
    Result<protocol::BenchData> data = protocol::BenchData::Decode(frame.payload);
    if (!data.ok()) return data.status();
    last = Clock::now();
    if (bytes_total == 0) first = last;
    if (bytes_total != 0) bytes_timed += data->bytes.size();
    if (last - first > allowed) {
      return Status::Protocol("client " + channel.peer_name() + " sent filler past its " +
                              std::to_string(seconds) + " s");
    }
    bytes_total += data->bytes.size();
  }
  Result<protocol::BenchEnd> end = protocol::BenchEnd::Decode(frame.payload);
  if (!end.ok()) return end.status();
  if (end->bytes != bytes_total) {
    return Status::Corruption("BENCH_END says " + std::to_string(end->bytes) + " bytes, " +
                              std::to_string(bytes_total) + " arrived");
  }
  return SendResult(channel, bytes_timed, 0, NanosBetween(first, last));
}

// Network down: filler for `seconds`, uncompressed, then the daemon's figures.
Status SendDownload(Channel& channel, const protocol::BenchReady& ready, uint32_t seconds) {
  CHECK(seconds >= 1);
  FERRY_RETURN_IF_ERROR(channel.SendMessage(BenchMessage(BenchType::kBenchReady), ready));
  BenchFiller filler(kBenchChunkBytes, ready.session_id);
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + std::chrono::seconds(seconds);
  uint64_t bytes = 0;
  Clock::time_point now = start;
  while (now < deadline) {
    FERRY_RETURN_IF_ERROR(channel.Send(BenchMessage(BenchType::kBenchData),
                                       filler.Next(kBenchChunkBytes),
                                       /*try_compress=*/false));
    bytes += kBenchChunkBytes;
    now = Clock::now();
  }
  return SendResult(channel, bytes, 0, NanosBetween(start, now));
}

// A volume a bench writes into: its root, locked for the session, and what it may use.
struct BenchVolume {
  UniqueFd root;
  std::string display;  // "volume 'data' (/srv/data)"
  uint64_t free_bytes = 0;
};

Result<BenchVolume> OpenBenchVolume(const std::string& name, const std::string& path,
                                    bool* is_block) {
  BenchVolume v;
  v.display = "volume '" + name + "' (" + path + ")";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::Errno(errno, v.display + " cannot be opened");
  *is_block = !S_ISDIR(st.st_mode);
  if (*is_block) return v;
  v.root = UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!v.root.valid()) return Status::Errno(errno, v.display + " cannot be opened");
  struct statvfs fs;
  if (::fstatvfs(v.root.get(), &fs) != 0) return Status::Errno(errno, v.display + ": statvfs");
  v.free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  return v;
}

// The bytes a bench may put into the volume: what was asked, or half the free space in whole
// MiB when that is less (*capped), never under kBenchBytesMin.
Result<uint64_t> GrantBytes(const BenchVolume& v, uint64_t asked, bool* capped) {
  uint64_t allowed = v.free_bytes / kBenchFreeSpaceFactor / kMiB * kMiB;
  *capped = allowed < asked;
  uint64_t granted = *capped ? allowed : asked;
  if (granted < kBenchBytesMin) {
    return Status::Make(Code::kNoSpace,
                        v.display + " has only " + HumanBytes(static_cast<double>(v.free_bytes)) +
                            " free: free some space there, or bench without the volume");
  }
  return granted;
}

Status CreateError(int error_number, const BenchVolume& v, const std::string& what) {
  bool read_only = error_number == EROFS || error_number == EACCES || error_number == EPERM;
  bool full = error_number == ENOSPC || error_number == EDQUOT;
  std::string advice = read_only ? " (make the volume writable, or bench without the volume)"
                       : full    ? " (free some space there, or bench without the volume)"
                                 : "";
  return Status::Errno(error_number, v.display + ": cannot create the bench's " + what + advice);
}

// Writes `bytes` of filler into `fd` and makes them durable.
Status WriteFiller(int fd, uint64_t bytes, uint64_t seed, const BenchVolume& v) {
  BenchFiller filler(kBenchChunkBytes, seed);
  for (uint64_t offset = 0; offset < bytes;) {
    size_t size = static_cast<size_t>(std::min<uint64_t>(kBenchChunkBytes, bytes - offset));
    std::string_view chunk = filler.Next(size);
    for (size_t done = 0; done < chunk.size();) {
      ssize_t n =
          ::pwrite(fd, chunk.data() + done, chunk.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int e = n < 0 ? errno : EIO;
        return Status::Errno(
            e, v.display + ": bench write failed after " + HumanBytes(static_cast<double>(offset)) +
                   (e == ENOSPC ? " (free some space, or bench with a smaller --bytes)" : ""));
      }
      done += static_cast<size_t>(n);
    }
    offset += size;
  }
  if (::fdatasync(fd) != 0)
    return Status::Errno(errno, v.display + ": fdatasync of the bench's temp file");
  return Status::Ok();
}

// Target write: a temp file named like the receiver's, written, flushed, timed and unlinked.
Status WriteTempFile(Channel& channel, const BenchVolume& v, protocol::BenchReady ready) {
  const std::string name = BenchTempName(ready.session_id);
  UniqueFd fd(::openat(v.root.get(), name.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return CreateError(errno, v, "temp file " + name);
  FERRY_RETURN_IF_ERROR(channel.SendMessage(BenchMessage(BenchType::kBenchReady), ready));
  Keepalive keepalive(channel);
  const Clock::time_point start = Clock::now();
  Status s = WriteFiller(fd.get(), ready.bytes, ready.session_id, v);
  const Clock::time_point end = Clock::now();
  fd.Reset();
  if (::unlinkat(v.root.get(), name.c_str(), 0) != 0 && s.ok()) {
    s = Status::Errno(errno, v.display + ": remove the bench's temp file " + name);
  }
  if (!s.ok()) return s;
  return SendResult(channel, ready.bytes, 0, NanosBetween(start, end));
}

// End to end: a real Receiver into a scratch directory, removed afterwards whatever happened.
Status ReceiveStage(Channel& channel, const BenchVolume& v, const protocol::BenchReady& ready) {
  const std::string name = BenchTempName(ready.session_id);
  if (::mkdirat(v.root.get(), name.c_str(), 0700) != 0)
    return CreateError(errno, v, "scratch directory " + name);
  Result<UniqueFd> scratch = OpenDirBeneath(v.root.get(), name);
  Status s = scratch.status();
  SyncSummary summary;
  Clock::time_point start{}, end{};
  if (s.ok()) s = channel.SendMessage(BenchMessage(BenchType::kBenchReady), ready);
  if (s.ok()) {
    start = Clock::now();
    Receiver receiver(channel, scratch->get(), v.display + "/" + name, SyncOptions{},
                      ready.session_id);
    s = receiver.Run();  // no state cache: the scratch files are gone in a moment
    end = Clock::now();
    summary = receiver.Summary();
  }
  if (scratch.ok()) scratch->Reset();
  Status removed = RemoveTree(v.root.get(), name, v.display + "/" + name);
  if (!s.ok()) return s;  // the receiver told the client
  if (!removed.ok()) return removed;
  return SendResult(channel, summary.bytes_total, summary.files_sent, NanosBetween(start, end));
}

Status ServeVolumeKind(Channel& channel, const protocol::BenchOpen& open, const std::string& path,
                       protocol::BenchReady ready) {
  bool is_block = false;
  Result<BenchVolume> volume = OpenBenchVolume(open.volume, path, &is_block);
  if (!volume.ok()) return volume.status();
  if (is_block) {  // never write a device (or a VM's image) for a bench
    ready.flags |= protocol::kBenchSkippedBlock;
    return channel.SendMessage(BenchMessage(BenchType::kBenchReady), ready);
  }
  bool capped = false;
  Result<uint64_t> granted = GrantBytes(*volume, open.bytes, &capped);
  if (!granted.ok()) return granted.status();
  ready.bytes = *granted;
  ready.free_bytes = volume->free_bytes;
  if (capped) ready.flags |= protocol::kBenchCappedBySpace;
  return open.kind == BenchKind::kWrite ? WriteTempFile(channel, *volume, ready)
                                        : ReceiveStage(channel, *volume, ready);
}

const char* KindName(BenchKind kind) {
  switch (kind) {
    case BenchKind::kNetworkUp:
      return "network up";
    case BenchKind::kNetworkDown:
      return "network down";
    case BenchKind::kWrite:
      return "target write";
    case BenchKind::kSync:
      return "end-to-end sync";
  }
  return "?";
}

}  // namespace

std::string BenchTempName(uint64_t session_id) {
  return std::string(kTempPrefix) + "bench-" + std::to_string(session_id);
}

Status ServeBench(Channel& channel, const Frame& open_frame, const VolumeTable& volumes,
                  VolumeLocks& locks, uint64_t session_id) {
  CHECK(open_frame.type == BenchMessage(BenchType::kBenchOpen));
  Result<protocol::BenchOpen> open = protocol::BenchOpen::Decode(open_frame.payload);
  if (!open.ok()) {
    channel.SendError(open.status());
    return open.status();
  }
  LogContext context("session=" + std::to_string(session_id) + " bench" +
                     (open->volume.empty() ? "" : " volume=" + open->volume));
  LOG_INFO(std::string("bench: ") + KindName(open->kind) + " with " + channel.peer_name());
  bool network = open->kind == BenchKind::kNetworkUp || open->kind == BenchKind::kNetworkDown;
  Result<std::string> root = open->volume.empty() ? Result<std::string>(std::string()) : volumes.Resolve(open->volume);
  Status s = root.status();
  if (!s.ok()) {
    // unknown volume, or a pv: name not found once on this node
  } else if (!network && open->volume.empty()) {
    s = Status::InvalidArgument(std::string("the ") + KindName(open->kind) +
                                " bench needs a volume");
  }
  protocol::BenchReady ready{
      .session_id = session_id, .bytes = open->bytes, .free_bytes = 0, .flags = 0};
  if (s.ok() && network) {
    s = open->kind == BenchKind::kNetworkUp ? ReceiveUpload(channel, ready, open->seconds)
                                            : SendDownload(channel, ready, open->seconds);
  } else if (s.ok()) {
    uint64_t holder = 0;
    if (!locks.Lock(open->volume, session_id, kVolumeLockWaitMs, &holder)) {
      s = Status::Busy("volume '" + open->volume + "' is busy with session " +
                       std::to_string(holder) + ": bench it when the stage ends");
    } else {
      s = ServeVolumeKind(channel, *open, *root, ready);
      locks.Unlock(open->volume);
    }
  }
  if (!s.ok() && s.code() != Code::kNetwork) channel.SendError(s);  // a second ERROR is harmless
  return s;
}

}  // namespace ferry
