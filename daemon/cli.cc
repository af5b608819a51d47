#include "daemon/cli.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "agent/io/engine.h"
#include "base/bounds.h"
#include "base/log.h"
#include "base/rate.h"
#include "daemon/bench_command.h"
#include "daemon/coordinator.h"
#include "daemon/report.h"
#include "daemon/plan.h"
#include "daemon/remote_command.h"
#include "daemon/server.h"
#include "daemon/sync_command.h"

namespace po = boost::program_options;

namespace ferry {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

constexpr const char* kUsage =
    "usage: ferry <command> [options]\n"
    "commands:\n"
    "  sync SRC DST     mirror SRC into DST; each is a directory or ferry://HOST:PORT/VOLUME[/PATH]\n"
    "  daemon           serve volumes to ferry clients (the receiver on a node)\n"
    "  bench DAEMON     measure network, source read, target write and sync against ferry://HOST:PORT[/VOLUME]\n"
    "  stage SRC DST    have the daemon at SRC (ferry://HOST:PORT/VOLUME) push that volume to DST\n"
    "  migrate PLAN     stage every pair until the final stage fits the downtime budget, then cut over\n"
    "  cutover PLAN     quiesce the source, final stage, verify, start the target, switch (or roll back)\n"
    "  rollback PLAN    resume the source app (after a failed or abandoned cutover)\n"
    "  stage PLAN       one stage of every pair of a migration plan (YAML)\n"
    "  status PLAN      the plan's stages so far, change rate and predicted downtime; what it waits for\n"
    "  report PLAN      --html FILE: a page with the stage table and a chart of the stages and downtime\n"
    "  stages DAEMON    list the stages a daemon runs and ran\n"
    "  volumes DAEMON   list a daemon's volumes: kind, size, free space, busy or idle\n"
    "  version          print the version\n"
    "run `ferry <command> --help` for the options of a command\n";

constexpr const char* kIoHelp =
    "I/O engine: auto (FERRY_IO if set, else io_uring where the kernel allows it), uring, posix; "
    "uring or posix override FERRY_IO";

// The TLS flags of every command that talks to a daemon (and of the daemon itself).
po::options_description TlsFlags(io::TlsOptions* tls, bool daemon) {
  po::options_description d("TLS (one of --psk-file, the three --tls-* files, or --insecure)");
  d.add_options()
      ("psk-file", po::value(&tls->psk_file),
       "FILE: pre-shared key, one line IDENTITY:HEX (>= 32 bytes of key; mode 600), the same on both ends")
      ("tls-cert", po::value(&tls->cert_file), "FILE: this side's certificate chain (PEM)")
      ("tls-key", po::value(&tls->key_file), "FILE: its private key (PEM, mode 600)")
      ("tls-ca", po::value(&tls->ca_file), "FILE: the CA certificate(s) the peer's certificate must chain to")
      ("tls-peer-name", po::value(&tls->peer_name),
       daemon ? "NAME: the name a client's certificate must carry (default: any the CA signed)"
              : "NAME: the name the daemon's certificate must carry (default: the host in the URL)")
      ("insecure", po::bool_switch(&tls->insecure),
       daemon ? "accept plaintext connections: no TLS, no authentication (a warning is logged)"
              : "connect in plaintext: no TLS, no authentication (a warning is printed)");
  return d;
}

// Parses --io and makes the process-wide engine choice, once, at start-up (a fallback from
// io_uring to posix is logged then, with advice).
Result<io::EngineKind> ChooseIoEngine(const std::string& flag) {
  Result<io::EngineKind> requested = io::ParseEngineKind(flag);
  if (!requested.ok()) return requested.status().Annotate("--io");
  return io::ChooseEngineKind(*requested);
}

// Parses `args`: the options of `desc` and up to `count` positional arguments (*positional).
po::variables_map ParseArgs(const std::vector<std::string>& args, const po::options_description& desc, int count,
                            std::vector<std::string>* positional) {
  po::options_description hidden;
  hidden.add_options()("positional", po::value(positional), "");
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description pos;
  pos.add("positional", count);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
  po::notify(vm);
  return vm;
}

// The options of a transfer, shared by `ferry sync` and `ferry stage`.
po::options_description TransferFlags(SyncOptions* o, uint32_t* streams) {
  po::options_description d("transfer");
  d.add_options()
      ("dry-run,n", po::bool_switch(&o->dry_run), "list what would change; change nothing")
      ("exclude", po::value(&o->excludes)->composing(), "PATTERN: skip matching entries (repeatable, rsync-like)")
      ("checksum,c", po::bool_switch(&o->checksum), "compare file content, not size and mtime")
      ("no-selinux", po::bool_switch(&o->no_selinux), "do not copy or compare security.selinux")
      ("no-xattrs", po::bool_switch(&o->no_xattrs),
       "do not copy or compare xattrs and ACLs (rsync without -X -A): one lookup less per file on each side")
      ("block", po::bool_switch(&o->block),
       "SRC and DST are block devices or image files, synced as one object by block delta")
      ("allow-empty-source", po::bool_switch(&o->allow_empty_source),
       "let an empty source delete everything on the target (refused by default: unmounted volume?)")
      ("compress", po::value<std::string>()->default_value("auto"),
       "zstd for file content: auto (a level that keeps up with the link, data that does not compress "
       "sent raw; none to a daemon on this host), none, or a level 1-19")
      ("bwlimit", po::value<std::string>(), "RATE: at most this many bytes per second from the sender (K, M, G: powers of 1024)")
      ("streams", po::value<uint32_t>(streams)->default_value(DefaultStreams()),
       "N: data connections per session (1-16; large files are split across them); 1 with --bwlimit");
  return d;
}

Status ParseTransferFlags(const po::variables_map& vm, CompressMode* compress_mode, int* compress_level,
                          uint64_t* bwlimit, uint32_t streams) {
  const std::string compress = vm["compress"].as<std::string>();
  if (compress == "auto") {
    *compress_mode = CompressMode::kAuto;
  } else if (compress == "none") {
    *compress_mode = CompressMode::kNone;
  } else {
    char* end = nullptr;
    long level = std::strtol(compress.c_str(), &end, 10);
    if (compress.empty() || *end != '\0' || level < 1 || level > kZstdLevelMax) {
      return Status::InvalidArgument("--compress must be auto, none or a zstd level 1-" + std::to_string(kZstdLevelMax) +
                                     ", not '" + compress + "'");
    }
    *compress_mode = CompressMode::kLevel;
    *compress_level = static_cast<int>(level);
  }
  if (vm.count("bwlimit")) {
    Result<uint64_t> rate = ParseByteRate(vm["bwlimit"].as<std::string>());
    if (rate.ok() && *rate < kBwlimitMinBytesPerSecond) {
      rate = Status::InvalidArgument("below 128K would let a data frame outlast the peer's patience");
    }
    if (!rate.ok()) return rate.status().Annotate("--bwlimit");
    *bwlimit = *rate;
  }
  if (streams < 1 || streams > kStreamsMax) {
    return Status::InvalidArgument("--streams must be 1 to " + std::to_string(kStreamsMax) + ", not " +
                                   std::to_string(streams));
  }
  return Status::Ok();
}

int DaemonCommand(const std::vector<std::string>& args) {
  po::options_description desc("ferry daemon options");
  std::vector<std::string> volumes;
  std::string listen, state_dir, metrics_listen, kubelet_root, log_format;
  desc.add_options()
      ("help,h", "show this help")
      ("listen", po::value(&listen)->default_value("0.0.0.0:7373"), "HOST:PORT to listen on (port 0: any free port)")
      ("volume", po::value(&volumes)->composing(),
       "NAME=PATH: serve directory (or block device, image file) PATH as volume NAME (repeatable)")
      ("kubelet-root", po::value(&kubelet_root)->default_value("/var/lib/kubelet"),
       "DIR: kubelet's root dir; volume pv:NAME is PV NAME where kubelet mounts it under DIR/pods ('' : off)")
      ("state-dir", po::value(&state_dir)->default_value("/var/lib/ferry"), "directory for the daemon's state and lock")
      ("metrics-listen", po::value(&metrics_listen), "HOST:PORT: serve Prometheus metrics at http://HOST:PORT/metrics")
      ("log-level", po::value<std::string>()->default_value("info"), "debug, info, warn or error")
      ("log-format", po::value(&log_format)->default_value("text"), "text (readable) or json (one object per line)")
      ("io", po::value<std::string>()->default_value("auto"), kIoHelp);
  io::TlsOptions tls;
  desc.add(TlsFlags(&tls, /*daemon=*/true));
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << "usage: ferry daemon --listen HOST:PORT --volume NAME=PATH [--volume ...] --state-dir DIR\n" << desc;
    return kExitOk;
  }
  const std::string level = vm["log-level"].as<std::string>();
  SetLogLevel(level == "debug" ? LogLevel::kDebug : level == "warn" ? LogLevel::kWarning
              : level == "error" ? LogLevel::kError : LogLevel::kInfo);
  if (log_format != "text" && log_format != "json") {
    std::fprintf(stderr, "ferry daemon: --log-format must be text or json, not '%s'\n", log_format.c_str());
    return kExitUsage;
  }
  SetLogFormat(log_format == "json" ? LogFormat::kJson : LogFormat::kText);
  DaemonConfig config;
  config.tls = tls;
  config.state_dir = state_dir;
  config.volumes.state_dir = state_dir;
  config.volumes.kubelet_root = kubelet_root;
  if (!metrics_listen.empty()) {
    Result<HostPort> address = ParseHostPort(metrics_listen);
    if (!address.ok()) {
      std::fprintf(stderr, "ferry daemon: --metrics-listen: %s\n", address.status().ToString().c_str());
      return kExitUsage;
    }
    config.metrics_listen = *address;
  }
  Result<io::EngineKind> engine = ChooseIoEngine(vm["io"].as<std::string>());
  if (!engine.ok()) {
    std::fprintf(stderr, "ferry daemon: %s\n", engine.status().ToString().c_str());
    return engine.status().code() == Code::kInvalidArgument ? kExitUsage : kExitDaemon;
  }
  config.io_engine = *engine;
  Result<HostPort> address = ParseHostPort(listen);
  if (!address.ok()) {
    std::fprintf(stderr, "ferry daemon: --listen: %s\n", address.status().ToString().c_str());
    return kExitUsage;
  }
  config.listen = *address;
  for (const std::string& v : volumes) {
    size_t eq = v.find('=');
    std::string name = v.substr(0, eq);
    Status s = eq == std::string::npos || eq + 1 == v.size()
                   ? Status::InvalidArgument("--volume '" + v + "' is not NAME=PATH")
                   : ValidateVolumeName(name);
    if (s.ok() && !config.volumes.paths.emplace(name, v.substr(eq + 1)).second) {
      s = Status::InvalidArgument("volume '" + name + "' given twice");
    }
    if (!s.ok()) {
      std::fprintf(stderr, "ferry daemon: %s\n", s.ToString().c_str());
      return kExitUsage;
    }
  }
  Daemon daemon(std::move(config));
  if (Status s = daemon.Start(); !s.ok()) {
    std::fprintf(stderr, "ferry daemon: %s\n", s.ToString().c_str());
    return s.code() == Code::kInvalidArgument ? kExitUsage : kExitDaemon;
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  daemon.Serve(g_stop);
  return kExitOk;
}

// Where a local receiver keeps its state cache: the daemon's directory for root, else the
// user's state directory (XDG).
std::string DefaultStateDir() {
  if (::geteuid() == 0) return "/var/lib/ferry";
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/ferry";
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') return std::string(home) + "/.local/state/ferry";
  return "";
}

int SyncCommand(const std::vector<std::string>& args) {
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
       "DIR: the local receiver's state cache (block hashes of the files it wrote); '' for none")
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

int BenchCommand(const std::vector<std::string>& args) {
  po::options_description desc("ferry bench options");
  BenchRequest r;
  std::vector<std::string> positional;
  std::string bytes = "1G";
  desc.add_options()
      ("help,h", "show this help")
      ("source", po::value(&r.source), "PATH: a local directory or file whose data to read (the source read row)")
      ("bytes", po::value(&bytes)->default_value("1G"),
       "SIZE: source read and target write size (K, M, G: powers of 1024; 1M to 16G); the sync moves a quarter")
      ("seconds", po::value(&r.seconds)->default_value(kBenchSecondsDefault), "S: seconds of each network direction (1 to 60)")
      ("json", po::bool_switch(&r.json), "print one JSON object on stdout");
  desc.add(TlsFlags(&r.tls, /*daemon=*/false));
  po::variables_map vm = ParseArgs(args, desc, 1, &positional);
  if (vm.count("help")) {
    std::cout << "usage: ferry bench [options] ferry://HOST:PORT[/VOLUME]\n"
                 "  run on the source node against the target node's daemon; with VOLUME also the\n"
                 "  target's write speed and an end-to-end sync (temp names, removed afterwards)\n" << desc;
    return kExitOk;
  }
  if (positional.size() != 1) {
    std::fprintf(stderr, "ferry bench: need one ferry://HOST:PORT[/VOLUME] (see ferry bench --help)\n");
    return kExitUsage;
  }
  r.daemon = positional[0];
  Result<uint64_t> size = ParseByteRate(bytes);
  if (size.ok() && (*size < kBenchBytesMin || *size > kBenchBytesMax)) {
    size = Status::InvalidArgument("must be 1M to 16G, not '" + bytes + "'");
  }
  if (!size.ok()) {
    std::fprintf(stderr, "ferry bench: --bytes: %s\n", size.status().ToString().c_str());
    return kExitUsage;
  }
  r.bytes = *size;
  if (r.seconds < 1 || r.seconds > kBenchSecondsMax) {
    std::fprintf(stderr, "ferry bench: --seconds must be 1 to %u\n", kBenchSecondsMax);
    return kExitUsage;
  }
  return RunBench(r);
}

// The daemon a command asks, and --json: the shared flags of volumes, stages and stage.
po::options_description RemoteFlags(RemoteRequest* r) {
  po::options_description d("output");
  d.add_options()("json", po::bool_switch(&r->json), "print JSON on stdout");
  return d;
}

int ListCommand(const std::vector<std::string>& args, const char* name, int (*run)(const RemoteRequest&)) {
  po::options_description desc(std::string("ferry ") + name + " options");
  RemoteRequest r;
  std::vector<std::string> positional;
  desc.add_options()("help,h", "show this help");
  desc.add(RemoteFlags(&r));
  desc.add(TlsFlags(&r.tls, /*daemon=*/false));
  po::variables_map vm = ParseArgs(args, desc, 1, &positional);
  if (vm.count("help")) {
    std::cout << "usage: ferry " << name << " [options] ferry://HOST:PORT\n" << desc;
    return kExitOk;
  }
  if (positional.size() != 1) {
    std::fprintf(stderr, "ferry %s: need one ferry://HOST:PORT (see ferry %s --help)\n", name, name);
    return kExitUsage;
  }
  r.daemon = positional[0];
  return run(r);
}

int StageCommand(const std::vector<std::string>& args) {
  po::options_description desc("ferry stage options");
  StageRequest r;
  std::vector<std::string> positional;
  desc.add_options()
      ("help,h", "show this help")
      ("detach", po::bool_switch(&r.detach), "start the stage, print its id and return (it runs on the daemon)")
      ("watch", po::value(&r.watch_id), "ID: follow stage ID of the daemon named (ferry stage --watch ID ferry://HOST:PORT)")
      ("cancel", po::value(&r.cancel_id), "ID: cancel stage ID (files it committed stay on the target)")
      ("state-dir", po::value<std::string>()->default_value(DefaultStateDir()),
       "DIR: with a PLAN, where the plan's journal is kept (DIR/plans/NAME.db)")
      ("progress", po::bool_switch(), "show progress (the default when stderr is a terminal)")
      ("no-progress", po::bool_switch(), "never show progress");
  desc.add(TransferFlags(&r.push.options, &r.push.streams));
  desc.add(RemoteFlags(&r.remote));
  desc.add(TlsFlags(&r.remote.tls, /*daemon=*/false));
  po::variables_map vm = ParseArgs(args, desc, 2, &positional);
  if (vm.count("help")) {
    std::cout << "usage: ferry stage [options] ferry://SRC_HOST:PORT/VOLUME ferry://DST_HOST:PORT/VOLUME[/PATH]\n"
                 "       ferry stage [--state-dir DIR] PLAN   (one stage of every pair of a migration plan)\n"
                 "       ferry stage --watch ID | --cancel ID ferry://SRC_HOST:PORT\n"
                 "  the daemon at SRC pushes its volume to the daemon at DST (with its own TLS settings);\n"
                 "  Ctrl-C while watching cancels the stage\n" << desc;
    return kExitOk;
  }
  const bool by_id = r.watch_id != 0 || r.cancel_id != 0;
  if (!by_id && positional.size() == 1 && positional[0].rfind("ferry://", 0) != 0) {
    // ferry stage PLAN: one stage of every pair of the plan (daemon/coordinator.h).
    Result<Plan> plan = Plan::Load(positional[0]);
    if (!plan.ok()) {
      std::fprintf(stderr, "ferry stage: %s\n", plan.status().ToString().c_str());
      return kExitUsage;
    }
    return RunPlanStage(*plan, vm["state-dir"].as<std::string>(), r.progress, r.remote.json);
  }
  if (by_id ? positional.size() != 1 : positional.size() != 2) {
    std::fprintf(stderr, "ferry stage: need SRC and DST, or --watch/--cancel ID and the source daemon (see ferry stage --help)\n");
    return kExitUsage;
  }
  r.remote.daemon = positional[0];
  if (!by_id) r.target = positional[1];
  if (Status st = ParseTransferFlags(vm, &r.push.compress, &r.push.compress_level, &r.push.bwlimit, r.push.streams);
      !st.ok()) {
    std::fprintf(stderr, "ferry stage: %s\n", st.ToString().c_str());
    return kExitUsage;
  }
  r.progress = vm["progress"].as<bool>() || (!vm["no-progress"].as<bool>() && ::isatty(2) && !r.remote.json);
  return RunStage(r);
}

// ferry status|report PLAN: read the plan's journal.
int StatusCommand(const std::vector<std::string>& args, const std::string& name) {
  po::options_description desc("ferry " + name + " options");
  std::vector<std::string> positional;
  bool json = false;
  std::string state_dir, html;
  desc.add_options()("help,h", "show this help");
  if (name == "status") {
    desc.add_options()("json", po::bool_switch(&json),
                       "one JSON object: the stages, change rate, predicted_downtime_s, what it waits for");
  } else {
    desc.add_options()("html", po::value(&html), "FILE: write the report there (a page with no external file)");
  }
  desc.add_options()
      ("state-dir", po::value(&state_dir)->default_value(DefaultStateDir()), "DIR: where the plan's journal is kept");
  po::variables_map vm = ParseArgs(args, desc, 1, &positional);
  if (vm.count("help")) {
    std::cout << "usage: ferry " << name << " [options] PLAN\n" << desc;
    return kExitOk;
  }
  if (positional.size() != 1 || (name == "report" && html.empty())) {
    std::fprintf(stderr, "ferry %s: need the PLAN file%s (see ferry %s --help)\n", name.c_str(),
                 name == "report" ? " and --html FILE" : "", name.c_str());
    return kExitUsage;
  }
  Result<Plan> plan = Plan::Load(positional[0]);
  if (!plan.ok()) {
    std::fprintf(stderr, "ferry %s: %s\n", name.c_str(), plan.status().ToString().c_str());
    return kExitUsage;
  }
  if (name == "report") return RunPlanReport(*plan, state_dir, html);
  return RunPlanStatus(*plan, state_dir, json);
}

// ferry migrate|cutover|rollback PLAN.
int PlanCommand(const std::vector<std::string>& args, const std::string& name) {
  po::options_description desc("ferry " + name + " options");
  std::vector<std::string> positional;
  std::string state_dir;
  desc.add_options()
      ("help,h", "show this help")
      ("state-dir", po::value(&state_dir)->default_value(DefaultStateDir()), "DIR: where the plan's journal is kept")
      ("quiet,q", po::bool_switch(), "print only errors and the result");
  po::variables_map vm = ParseArgs(args, desc, 1, &positional);
  if (vm.count("help")) {
    std::cout << "usage: ferry " << name << " [options] PLAN\n" << desc;
    return kExitOk;
  }
  if (positional.size() != 1) {
    std::fprintf(stderr, "ferry %s: need the PLAN file (see ferry %s --help)\n", name.c_str(), name.c_str());
    return kExitUsage;
  }
  Result<Plan> plan = Plan::Load(positional[0]);
  if (!plan.ok()) {
    std::fprintf(stderr, "ferry %s: %s\n", name.c_str(), plan.status().ToString().c_str());
    return kExitUsage;
  }
  const bool progress = !vm["quiet"].as<bool>();
  if (name == "migrate") return RunMigrate(*plan, state_dir, progress);
  if (name == "cutover") return RunCutover(*plan, state_dir, progress);
  return RunRollback(*plan, state_dir);
}

}  // namespace

int RunCommandLine(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "sync") return SyncCommand(args);
    if (command == "daemon") return DaemonCommand(args);
    if (command == "bench") return BenchCommand(args);
    if (command == "stage") return StageCommand(args);
    if (command == "stages") return ListCommand(args, "stages", &RunStages);
    if (command == "status" || command == "report") return StatusCommand(args, command);
    if (command == "migrate" || command == "cutover" || command == "rollback") return PlanCommand(args, command);
    if (command == "volumes") return ListCommand(args, "volumes", &RunVolumes);
    if (command == "version" || command == "--version") {
      std::printf("ferry 0.1.0 (protocol 1)\n");
      return kExitOk;
    }
    if (command == "help" || command == "--help" || command == "-h") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
  } catch (const po::error& e) {
    std::fprintf(stderr, "ferry %s: %s (see ferry %s --help)\n", command.c_str(), e.what(), command.c_str());
    return kExitUsage;
  }
  std::fprintf(stderr, "ferry: unknown command '%s'\n%s", command.c_str(), kUsage);
  return kExitUsage;
}

}  // namespace ferry
