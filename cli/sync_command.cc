#include "cli/sync_command.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/channel.h"
#include "agent/fs.h"
#include "agent/receiver.h"
#include "agent/scan.h"
#include "agent/sender.h"
#include "agent/session.h"
#include "base/bounds.h"
#include "base/log.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/progress.h"
#include "client/json.h"
#include "client/net.h"
#include "daemon/session_server.h"

namespace ferry {
namespace {

using protocol::Direction;
using protocol::EntryType;
using protocol::ItemAction;


const char* ActionName(ItemAction a) {
  switch (a) {
    case ItemAction::kCreate: return "new";
    case ItemAction::kUpdate: return "update";
    case ItemAction::kMetadata: return "attrs";
    case ItemAction::kDelete: return "delete";
  }
  return "?";
}

const char* TypeName(EntryType t) {
  switch (t) {
    case EntryType::kFile: return "file";
    case EntryType::kDirectory: return "dir";
    case EntryType::kSymlink: return "symlink";
    case EntryType::kFifo: return "fifo";
    case EntryType::kCharDevice: return "chardev";
    case EntryType::kBlockDevice: return "blockdev";
    case EntryType::kSocket: return "socket";
  }
  return "?";
}

// Paths may hold any byte but NUL and '/': control bytes are printed as \#ooo (as rsync does).
std::string PrintablePath(const std::string& path) {
  if (path.empty()) return "./";
  std::string out;
  for (unsigned char c : path) {
    if (c < 0x20 || c == 0x7f || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\#%03o", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

int ExitCodeFor(const Status& s, bool source_side) {
  switch (s.code()) {
    case Code::kOk: return kExitOk;
    case Code::kInvalidArgument: return kExitUsage;
    case Code::kNetwork: return kExitNetwork;
    case Code::kProtocol: case Code::kCorruption: return kExitProtocol;
    case Code::kBusy: return kExitBusy;
    case Code::kNotFound: return source_side ? kExitSource : kExitTarget;
    default: return kExitTarget;
  }
}

Status MakeDirectories(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::Errno(errno, "create target directory '" + prefix + "'");
    }
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("target '" + path + "' is not a directory");
  }
  return Status::Ok();
}

class SyncRun {
 public:
  explicit SyncRun(const SyncRequest& request) : request_(request) {}
  int Run();

 private:
  Result<SyncSummary> Push(const Location& target, const ScanOptions& scan_options);
  Result<SyncSummary> Pull(const Location& source, const Location& target);
  PushSettings Settings(const Location& remote) const;
  void OnItem(const protocol::Item& item);
  void Report(const SyncSummary& summary) const;

  const SyncRequest& request_;
  SyncProgress progress_;
  std::mutex items_mutex_;
  std::vector<protocol::Item> items_;  // kept for --json
  uint64_t items_count_ = 0;
  bool source_failed_ = false;  // a pull's daemon refused the session: a source-side error
  std::shared_ptr<io::TlsContext> tls_;  // null: plaintext (--insecure) or no daemon involved
};

int SyncRun::Run() {
  Result<Location> source = ParseLocation(request_.source);
  Result<Location> target = ParseLocation(request_.target);
  for (const Result<Location>* loc : {&source, &target}) {
    if (!loc->ok()) {
      std::fprintf(stderr, "ferry sync: %s\n", loc->status().ToString().c_str());
      return kExitUsage;
    }
  }
  if (source->remote && target->remote) {
    std::fprintf(stderr, "ferry sync: both sides are daemons; run ferry sync on one of the two hosts "
                         "with a local path on that side\n");
    return kExitUsage;
  }
  if (source->remote || target->remote) {
    Result<std::shared_ptr<io::TlsContext>> tls =
        io::TlsContext::MakeUnlessInsecure(request_.tls, io::TlsContext::Role::kClient);
    if (!tls.ok()) {
      std::fprintf(stderr, "ferry sync: %s\n", tls.status().ToString().c_str());
      return kExitUsage;
    }
    tls_ = *tls;
    if (!tls_) {
      std::fprintf(stderr, "ferry sync: warning: --insecure: the volume's data crosses the network in "
                           "plaintext, and anyone on the path can read or change it\n");
    }
  }
  Result<SyncSummary> summary = Status::Aborted("not run");
  if (source->remote) {
    summary = Pull(*source, *target);
  } else {
    Result<ExcludeList> excludes = ExcludeList::Make(request_.options.excludes);
    if (!excludes.ok()) {
      std::fprintf(stderr, "ferry sync: %s\n", excludes.status().ToString().c_str());
      return kExitUsage;
    }
    Status source_ok = request_.options.block ? OpenBlockVolume(source->local_path, false).status()
                                              : CheckSourceRoot(source->local_path);
    if (Status s = source_ok; !s.ok()) {
      std::fprintf(stderr, "ferry sync: %s\n", s.ToString().c_str());
      return s.code() == Code::kInvalidArgument ? kExitUsage : kExitSource;
    }
    ScanOptions scan_options = ScanOptionsFor(request_.options, &*excludes);
    scan_options.xattr_cache_dir = request_.state_dir;
    summary = Push(*target, scan_options);
  }
  if (!summary.ok()) {
    std::fprintf(stderr, "ferry sync: %s\n", summary.status().ToString().c_str());
    return ExitCodeFor(summary.status(), source_failed_);
  }
  Report(*summary);
  return summary->errors.empty() && summary->files_failed == 0 ? kExitOk : kExitPartial;
}

PushSettings SyncRun::Settings(const Location& remote) const {
  PushSettings settings;
  settings.volume = remote.volume;
  settings.subpath = remote.subpath;
  settings.options = request_.options;
  settings.bwlimit = request_.bwlimit;
  settings.streams = request_.streams;
  settings.compress = request_.compress;
  settings.compress_level = request_.compress_level;
  return settings;
}

Result<SyncSummary> SyncRun::Push(const Location& target, const ScanOptions& scan_options) {
  ItemSink sink = [this](const protocol::Item& item) { OnItem(item); };
  std::unique_ptr<io::ByteStream> client_stream, server_stream;
  std::thread local_receiver;
  Status local_status;
  VolumeTable volumes;
  VolumeLocks locks;
  StreamHub hub;
  Location remote = target;
  bool loopback = true;  // a local target is in-process
  if (target.remote) {
    Result<std::unique_ptr<io::ByteStream>> stream = Connect(target.daemon, kConnectTimeoutMs, &loopback, tls_.get());
    if (!stream.ok()) return stream.status();
    client_stream = std::move(*stream);
  } else {
    // Local target: the daemon's own session code serves it on a thread.
    if (!request_.options.dry_run && !request_.options.block) FERRY_RETURN_IF_ERROR(MakeDirectories(target.local_path));
    volumes.paths["local"] = target.local_path;
    volumes.state_dir = request_.state_dir;
    remote.volume = "local";
    FERRY_RETURN_IF_ERROR(io::MakeStreamPair("local sender", &server_stream, "local receiver", &client_stream));
    local_receiver = std::thread([&] {
      Channel channel(*server_stream);
      local_status = ServeSession(channel, volumes, locks, hub, 1);
    });
  }
  // A remote daemon: one more connection per stream. A local target: one more stream pair, its
  // far end served in-process like a daemon connection.
  Lanes::Connect connect = [&](Lanes* lanes) -> Result<std::unique_ptr<io::ByteStream>> {
    if (target.remote) return Connect(target.daemon, kConnectTimeoutMs, &loopback, tls_.get());
    std::unique_ptr<io::ByteStream> near, far;
    FERRY_RETURN_IF_ERROR(io::MakeStreamPair("local sender", &far, "local receiver", &near));
    io::ByteStream* far_raw = far.get();
    lanes->AddServer(std::move(far), std::thread([&volumes, &locks, &hub, far_raw] {
      Channel channel(*far_raw);
      (void)ServeSession(channel, volumes, locks, hub, 0);  // a JOIN: its outcome is the session's
    }));
    return near;
  };
  ProgressPrinter printer(progress_, request_.progress);
  PushSettings settings = Settings(remote);
  settings.source = request_.source;
  Result<SyncSummary> summary = RunPush(*client_stream, loopback, settings, scan_options, connect, &progress_, sink);
  if (local_receiver.joinable()) {
    if (!summary.ok()) client_stream->Shutdown();
    local_receiver.join();
    if (summary.ok() && !local_status.ok()) summary = local_status;
  }
  return summary;
}

Result<SyncSummary> SyncRun::Pull(const Location& source, const Location& target) {
  UniqueFd root;
  if (request_.options.block) {
    Result<UniqueFd> volume = OpenBlockVolume(target.local_path, !request_.options.dry_run);
    if (!volume.ok()) return volume.status();
    root = std::move(*volume);
  } else {
    if (!request_.options.dry_run) FERRY_RETURN_IF_ERROR(MakeDirectories(target.local_path));
    root = UniqueFd(::open(target.local_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    // A dry run into a directory that does not exist yet lists everything as new.
    if (!root.valid() && !(request_.options.dry_run && errno == ENOENT)) {
      return Status::Errno(errno, "open target '" + target.local_path + "'");
    }
  }
  bool loopback = false;
  Result<std::unique_ptr<io::ByteStream>> stream = Connect(source.daemon, kConnectTimeoutMs, &loopback, tls_.get());
  if (!stream.ok()) return stream.status();
  Channel channel(**stream);
  const protocol::Open open = MakeOpen(Settings(source), Direction::kPull);
  const WireCompression compress = CompressionFor(request_.compress, loopback);
  Result<protocol::OpenOk> opened = OpenSession(channel, open, compress);
  if (!opened.ok()) {
    source_failed_ = true;  // refused by the daemon that holds the source
    return opened.status();
  }
  Lanes lanes;
  channel.SetContentLevel(static_cast<int>(open.compress_level));
  FERRY_RETURN_IF_ERROR(lanes.Join(*opened, compress, static_cast<int>(open.compress_level), [&](Lanes*) {
    return Connect(source.daemon, kConnectTimeoutMs, &loopback, tls_.get());
  }));
  ProgressPrinter printer(progress_, request_.progress);
  auto start = std::chrono::steady_clock::now();
  std::unique_ptr<StateCache> cache = request_.options.dry_run ? nullptr : OpenStateCacheOrWarn(request_.state_dir);
  Receiver receiver(channel, root.get(), target.local_path, request_.options, opened->session_id, &progress_);
  receiver.SetStateCache(cache.get());
  receiver.UseXattrCache(request_.state_dir);
  receiver.SetItemSink([this](const protocol::Item& item) { OnItem(item); });
  receiver.SetLanes(lanes.channels());
  Status s = receiver.Run();
  if (!s.ok()) return s;
  SyncSummary summary = receiver.Summary();
  summary.streams = opened->streams;
  summary.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

void SyncRun::OnItem(const protocol::Item& item) {
  std::lock_guard<std::mutex> lock(items_mutex_);
  items_count_ += 1;
  if (request_.json) {
    items_.push_back(item);
    return;
  }
  std::printf("%-7s %-8s %s\n", ActionName(item.action), TypeName(item.type), PrintablePath(item.path).c_str());
}

void SyncRun::Report(const SyncSummary& s) const {
  std::fflush(stdout);  // itemised changes before the summary
  constexpr size_t kErrorsShownMax = 20;
  for (size_t i = 0; i < s.errors.size() && i < kErrorsShownMax; ++i) {
    std::fprintf(stderr, "ferry sync: could not read: %s\n", s.errors[i].c_str());
  }
  if (s.errors.size() > kErrorsShownMax) {
    std::fprintf(stderr, "ferry sync: ... and %zu more that could not be read\n", s.errors.size() - kErrorsShownMax);
  }
  if (request_.json) {
    std::printf("{\"files_total\":%llu,\"files_sent\":%llu,\"bytes_total\":%llu,\"bytes_sent_wire\":%llu,"
                "\"bytes_returned_wire\":%llu,\"bytes_sent_content\":%llu,\"target_bytes_hashed\":%llu,"
                "\"entries_deleted\":%llu,\"files_changed_during_read\":%llu,\"files_vanished\":%llu,"
                "\"files_failed\":%llu,\"duration_s\":%.3f,\"streams\":%u,\"dry_run\":%s,\"io_engine\":\"%s\",\"changes\":[",
                (unsigned long long)s.files_total, (unsigned long long)s.files_sent,
                (unsigned long long)s.bytes_total, (unsigned long long)s.bytes_sent_wire,
                (unsigned long long)s.bytes_returned_wire, (unsigned long long)progress_.bytes_sent.load(),
                (unsigned long long)s.target_bytes_hashed,
                (unsigned long long)s.entries_deleted, (unsigned long long)s.files_changed_during_read,
                (unsigned long long)s.files_vanished, (unsigned long long)s.files_failed, s.duration_s, s.streams,
                request_.options.dry_run ? "true" : "false", io::EngineKindName(request_.io_engine));
    for (size_t i = 0; i < items_.size(); ++i) {
      std::printf("%s{\"action\":\"%s\",\"type\":\"%s\",\"path\":%s}", i ? "," : "", ActionName(items_[i].action),
                  TypeName(items_[i].type), JsonString(items_[i].path).c_str());
    }
    std::printf("]}\n");
    return;
  }
  if (request_.options.dry_run) {
    std::fprintf(stderr, "dry run: %llu changes listed, nothing modified\n", (unsigned long long)items_count_);
    return;
  }
  std::fprintf(stderr,
               "synced %s -> %s: %llu entries, %llu files sent (%s of %s), %s on the wire, %llu deleted, "
               "%llu changed during read, %llu vanished, %.2f s\n",
               request_.source.c_str(), request_.target.c_str(), (unsigned long long)s.files_total,
               (unsigned long long)s.files_sent, HumanBytes(static_cast<double>(progress_.bytes_sent.load())).c_str(),
               HumanBytes(static_cast<double>(s.bytes_total)).c_str(),
               HumanBytes(static_cast<double>(s.bytes_sent_wire)).c_str(), (unsigned long long)s.entries_deleted,
               (unsigned long long)s.files_changed_during_read, (unsigned long long)s.files_vanished, s.duration_s);
}

}  // namespace

int RunSync(const SyncRequest& request) { return SyncRun(request).Run(); }

int SyncCommand(const Args& args) {
  po::options_description desc("ferry sync options");
  SyncRequest r;
  std::vector<std::string> positional;
  desc.add_options()
      ("help,h", "show this help")
      ("itemize-changes,i", po::bool_switch(&r.options.itemize), "list every change made")
      ("progress", po::bool_switch(), "show progress (the default when stderr is a terminal)")
      ("no-progress", po::bool_switch(), "never show progress")
      ("json", po::bool_switch(&r.json), "print a machine-readable summary on stdout")
      ("state-dir", po::value(&r.state_dir)->default_value(DefaultStateDir()),
       "DIR: the local receiver's state cache (block hashes of the files it wrote) and both sides' "
       "xattr caches (what each inode's xattrs were at its ctime); '' for none")
      ("io", po::value<std::string>()->default_value("auto"), kIoHelp)
      ("verbose,v", po::bool_switch(), "log the session's steps");
  desc.add(TransferFlags(&r.options, &r.streams));
  desc.add(TlsFlags(&r.tls, /*daemon=*/false));
  po::variables_map vm = ParseArgs(args, desc, 2, &positional);
  if (vm.count("help")) {
    std::cout << "usage: ferry sync [options] SRC DST\n"
                 "  SRC, DST: a directory, or ferry://HOST:PORT/VOLUME[/PATH] on a ferry daemon\n" << desc;
    return kExitOk;
  }
  if (positional.size() != 2) {
    std::fprintf(stderr, "ferry sync: need SRC and DST (see ferry sync --help)\n");
    return kExitUsage;
  }
  r.source = positional[0];
  r.target = positional[1];
  if (Status st = ParseTransferFlags(vm, &r.compress, &r.compress_level, &r.bwlimit, r.streams); !st.ok()) {
    std::fprintf(stderr, "ferry sync: %s\n", st.ToString().c_str());
    return kExitUsage;
  }
  r.progress = vm["progress"].as<bool>() || (!vm["no-progress"].as<bool>() && ::isatty(2) && !r.json);
  if (r.options.dry_run) r.progress = false;
  // The in-process receiver of a local sync logs like a daemon: only its warnings matter here.
  SetLogLevel(vm["verbose"].as<bool>() ? LogLevel::kInfo : LogLevel::kWarning);
  Result<io::EngineKind> engine = ChooseIoEngine(vm["io"].as<std::string>());
  if (!engine.ok()) {
    std::fprintf(stderr, "ferry sync: %s\n", engine.status().ToString().c_str());
    return kExitUsage;
  }
  r.io_engine = *engine;
  return RunSync(r);
}

}  // namespace ferry
