#include "daemon/session_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "agent/fs.h"
#include "agent/path.h"
#include "agent/receiver.h"
#include "agent/scan.h"
#include "agent/sender.h"
#include "agent/session.h"
#include "base/bounds.h"
#include "base/log.h"
#include "daemon/bench_server.h"
#include "daemon/control_server.h"
#include "daemon/metrics.h"

namespace ferry {

using protocol::Direction;
using protocol::MessageType;

bool VolumeLocks::Lock(const std::string& volume, uint64_t session_id, int wait_ms, uint64_t* holder) {
  std::unique_lock<std::mutex> lock(mutex_);
  released_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return held_.count(volume) == 0; });
  auto [it, inserted] = held_.try_emplace(volume, session_id);
  *holder = it->second;
  return inserted;
}

bool VolumeLocks::Holder(const std::string& volume, uint64_t* holder) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = held_.find(volume);
  *holder = it == held_.end() ? 0 : it->second;
  return it != held_.end();
}

void VolumeLocks::Unlock(const std::string& volume) {
  std::lock_guard<std::mutex> lock(mutex_);
  held_.erase(volume);
  released_.notify_all();
}

// Opens the directory a session works on: the volume root, or a path inside it (created for a
// push, as rsync creates its destination). A dry-run push to a path that does not exist yet
// creates nothing and gets an invalid descriptor: the receiver then lists everything as new.
static Result<UniqueFd> OpenSessionRoot(const std::string& root, const protocol::Open& open) {
  bool dry_push = open.direction == Direction::kPush && (open.options & protocol::kOptDryRun) != 0;
  if ((open.options & protocol::kOptBlock) != 0) {
    if (!open.subpath.empty()) {
      return Status::InvalidArgument("block volume '" + open.volume + "' has no paths inside: name the volume alone");
    }
    return OpenBlockVolume(root, open.direction == Direction::kPush && !dry_push);
  }
  UniqueFd volume_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!volume_fd.valid() && errno == ENOTDIR) {
    return Status::InvalidArgument("volume '" + open.volume + "' is a block device or image file: sync it with --block");
  }
  if (!volume_fd.valid() && errno == ENOENT && dry_push) return UniqueFd();
  if (!volume_fd.valid()) return Status::Errno(errno, "volume '" + open.volume + "' at " + root + " cannot be opened");
  if (open.subpath.empty()) return volume_fd;
  if (open.direction == Direction::kPush && !dry_push) {
    for (size_t start = 0; start <= open.subpath.size();) {
      size_t end = std::min(open.subpath.find('/', start), open.subpath.size());
      std::string prefix = open.subpath.substr(0, end);
      Result<UniqueFd> parent = OpenDirBeneath(volume_fd.get(), SplitParent(prefix).first);
      if (!parent.ok()) return parent.status();
      std::string name(SplitParent(prefix).second);
      if (::mkdirat(parent->get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
        return Status::Errno(errno, "create '" + prefix + "' in volume '" + open.volume + "'");
      }
      start = end + 1;
    }
  }
  Result<UniqueFd> fd = OpenDirBeneath(volume_fd.get(), open.subpath);
  if (!fd.ok() && fd.status().code() == Code::kNotFound && dry_push) return UniqueFd();
  return fd;
}

std::unique_ptr<StateCache> OpenStateCacheOrWarn(const std::string& dir) {
  if (dir.empty()) return nullptr;
  Result<std::unique_ptr<StateCache>> cache = StateCache::Open(dir);
  if (cache.ok()) return std::move(*cache);
  LOG_WARN(cache.status().ToString() + ": working without the state cache (changed files are read to hash them)");
  return nullptr;
}

// Answers OPEN_OK, granting the data streams asked for (one when a rate limit must hold across
// them all), and waits for the extra ones to join.
static Result<std::vector<Channel*>> GrantStreams(Channel& channel, const protocol::Open& open, StreamHub& hub,
                                                  uint64_t session_id) {
  protocol::OpenOk ok;
  ok.session_id = session_id;
  ok.streams = open.bwlimit != 0 ? 1 : std::min(open.streams, kStreamsMax);
  if (ok.streams > 1) ok.join_token = hub.Expect(session_id, ok.streams, (open.options & protocol::kOptCompressData) != 0,
                                              static_cast<int>(open.compress_level));
  FERRY_RETURN_IF_ERROR(channel.SendMessage(MessageType::kOpenOk, ok));
  if (ok.streams == 1) return std::vector<Channel*>{};
  return hub.Await(session_id, kHandshakeTimeoutMs);
}

// A partial manifest (a tracked stage) describes only what changed since the stage whose COMMIT
// gave `partial_base`: the target must be exactly as that stage left it. Refused (kUnsupported,
// and the sender walks the whole tree) when the target's state cache keeps another token or none:
// another stage wrote into it since, one failed midway, or the volume is not the one it was.
static Status CheckPartialBase(const protocol::Open& open, int root_fd, const std::string& display,
                               const std::string& state_dir) {
  auto refuse = [&](const std::string& why) {
    return Status::Make(Code::kUnsupported, "target '" + display + "' is not as the last tracked stage left it (" + why +
                                                "): this stage needs a full walk");
  };
  struct stat st;
  if (open.direction != Direction::kPush || root_fd < 0 || open.partial_base == 0 || ::fstat(root_fd, &st) != 0) {
    return refuse("no base");
  }
  std::unique_ptr<StateCache> cache = OpenStateCacheOrWarn(state_dir);
  if (!cache) return refuse("no state cache");
  Result<uint64_t> base = cache->Base(st.st_dev, st.st_ino);
  if (!base.ok()) return refuse(base.status().ToString());
  if (*base == 0) return refuse("a stage since did not commit, or the volume is new");
  if (*base != open.partial_base) return refuse("another stage committed into it since");
  return Status::Ok();
}

// The peer's host without its port: the same source across stages, for the metrics' pair label.
static std::string PeerHost(const std::string& peer) {
  size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

static Status RunDirection(Channel& channel, const protocol::Open& open, const std::string& root, int root_fd,
                           uint64_t session_id, const std::string& state_dir, StreamHub& hub, Metrics* metrics) {
  std::string display = JoinPath(root, open.subpath);
  SyncOptions options = SyncOptions::FromOpen(open);
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  if (open.direction == Direction::kPush) {
    if (options.partial) {
      if (Status s = CheckPartialBase(open, root_fd, display, state_dir); !s.ok()) {
        channel.SendError(s);
        return s;
      }
    }
    Result<std::vector<Channel*>> lanes = GrantStreams(channel, open, hub, session_id);
    if (!lanes.ok()) return lanes.status();
    std::unique_ptr<StateCache> cache = options.dry_run ? nullptr : OpenStateCacheOrWarn(state_dir);
    Receiver receiver(channel, root_fd, display, options, session_id);
    receiver.SetStateCache(cache.get());
    receiver.UseXattrCache(state_dir);
    receiver.SetLanes(std::move(*lanes));
    Status s = receiver.Run();
    if (metrics != nullptr && !options.dry_run) {
      SyncSummary summary = receiver.Summary();
      metrics->StageFinished("receiver", open.volume, PeerHost(channel.peer_name()) + " -> " + open.volume,
                             s.ok() ? "committed" : "failed", seconds(), s.ok() ? &summary : nullptr,
                             summary.bytes_sent_wire);
    }
    return s;
  }
  channel.SetRateLimit(open.bwlimit);  // the daemon sends the data of a pull
  Result<ExcludeList> excludes = ExcludeList::Make(options.excludes);
  if (!excludes.ok()) {
    channel.SendError(excludes.status());
    return excludes.status();
  }
  ScanOptions scan_options = ScanOptionsFor(options, &*excludes);
  scan_options.xattr_cache_dir = state_dir;
  Result<std::vector<Channel*>> lanes = GrantStreams(channel, open, hub, session_id);
  if (!lanes.ok()) return lanes.status();
  SyncProgress progress;
  Sender sender(channel, FdPath(root_fd, ""), scan_options, &progress, nullptr);
  sender.SetLanes(std::move(*lanes));
  Result<SyncSummary> summary = sender.Run();
  if (metrics != nullptr && !options.dry_run) {
    metrics->StageFinished("sender", open.volume, open.volume + " -> " + PeerHost(channel.peer_name()),
                           summary.ok() ? "committed" : "failed", seconds(), summary.ok() ? &*summary : nullptr,
                           progress.wire_bytes);
  }
  if (!summary.ok()) return summary.status();
  for (const std::string& error : summary->errors) LOG_WARN("could not read: " + error);
  return Status::Ok();
}

Status ServeSession(Channel& channel, const VolumeTable& volumes, VolumeLocks& locks, StreamHub& hub,
                    uint64_t session_id, std::atomic<bool>* handshaken, const DaemonServices& services) {
  FERRY_RETURN_IF_ERROR(AcceptHello(channel));
  Frame first;
  FERRY_RETURN_IF_ERROR(channel.Receive(&first, kHandshakeTimeoutMs));
  if (handshaken != nullptr) *handshaken = true;
  if (first.type == protocol::BenchMessage(protocol::BenchType::kBenchOpen)) {
    return ServeBench(channel, first, volumes, locks, session_id);  // `ferry bench`: daemon/bench_server.h
  }
  if (first.type == protocol::ControlMessage(protocol::ControlType::kControl)) {  // daemon/control_server.h
    LogContext context("session=" + std::to_string(session_id) + " api=control");
    return ServeControl(channel, first, volumes, locks, services.stages);
  }
  if (first.type == MessageType::kJoin) {  // a data stream of another session
    Result<protocol::Join> join = protocol::Join::Decode(first.payload);
    if (!join.ok()) return join.status();
    return hub.Join(*join, channel);
  }
  Result<protocol::Open> open = AcceptOpen(channel, first);
  if (!open.ok()) return open.status();
  LogContext context("session=" + std::to_string(session_id) + " volume=" + open->volume);
  Result<std::string> volume = volumes.Resolve(open->volume);
  if (!volume.ok()) {
    channel.SendError(volume.status());
    return volume.status();
  }
  uint64_t holder = 0;
  if (!locks.Lock(open->volume, session_id, kVolumeLockWaitMs, &holder)) {
    Status s = Status::Busy("volume '" + open->volume + "' is busy with session " + std::to_string(holder) +
                            ": one stage per volume at a time; retry when it ends");
    channel.SendError(s);
    return s;
  }
  LOG_INFO(std::string(open->direction == Direction::kPush ? "receiving" : "sending") + " stage " +
           std::to_string(open->stage) + " from " + channel.peer_name());
  Result<UniqueFd> root_fd = OpenSessionRoot(*volume, *open);
  if (root_fd.ok() && !root_fd->valid() && open->direction == Direction::kPull) {
    root_fd = Status::NotFound("'" + open->subpath + "' does not exist in volume '" + open->volume + "'");
  }
  if (services.metrics != nullptr) services.metrics->SessionStarted();
  Status s = root_fd.ok() ? RunDirection(channel, *open, *volume, root_fd->get(), session_id, volumes.state_dir, hub,
                                         services.metrics)
                          : root_fd.status();
  if (services.metrics != nullptr) services.metrics->SessionEnded();
  if (!root_fd.ok()) channel.SendError(s);
  hub.Release(session_id);
  locks.Unlock(open->volume);
  if (s.ok()) {
    LOG_INFO("stage committed");
  } else {
    LOG_WARN("stage failed: " + s.ToString());
  }
  return s;
}

}  // namespace ferry
