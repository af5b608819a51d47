#include <signal.h>

#include <atomic>
#include <cstdio>
#include <iostream>

#include "base/exit_code.h"
#include "base/log.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "client/net.h"
#include "daemon/server.h"

namespace ferry {

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// The --volume NAME=PATH flags into `table`; the error names the flag.
Status AddVolumes(const std::vector<std::string>& volumes, VolumeTable* table) {
  for (const std::string& v : volumes) {
    size_t eq = v.find('=');
    std::string name = v.substr(0, eq);
    Status s = eq == std::string::npos || eq + 1 == v.size()
                   ? Status::InvalidArgument("--volume '" + v + "' is not NAME=PATH")
                   : ValidateVolumeName(name);
    if (s.ok() && !table->paths.emplace(name, v.substr(eq + 1)).second) {
      s = Status::InvalidArgument("volume '" + name + "' given twice");
    }
    FERRY_RETURN_IF_ERROR(s);
  }
  return Status::Ok();
}

// The flags of `ferry daemon`, as given.
struct DaemonFlags {
  std::vector<std::string> volumes;
  std::string listen, state_dir, metrics_listen, kubelet_root, log_level, log_format, io;
  io::TlsOptions tls;
  bool no_track = false, track_queue_only = false;
  size_t track_names_max = size_t{1} << 20;
};

po::options_description DaemonOptions(DaemonFlags* f) {
  po::options_description desc("ferry daemon options");
  desc.add_options()
      ("help,h", "show this help")
      ("listen", po::value(&f->listen)->default_value("0.0.0.0:7373"), "HOST:PORT to listen on (port 0: any free port)")
      ("volume", po::value(&f->volumes)->composing(),
       "NAME=PATH: serve directory (or block device, image file) PATH as volume NAME (repeatable)")
      ("kubelet-root", po::value(&f->kubelet_root)->default_value("/var/lib/kubelet"),
       "DIR: kubelet's root dir; volume pv:NAME is PV NAME where kubelet mounts it under DIR/pods ('' : off)")
      ("state-dir", po::value(&f->state_dir)->default_value("/var/lib/ferry"), "directory for the daemon's state and lock")
      ("metrics-listen", po::value(&f->metrics_listen), "HOST:PORT: serve Prometheus metrics at http://HOST:PORT/metrics")
      ("log-level", po::value(&f->log_level)->default_value("info"), "debug, info, warn or error")
      ("log-format", po::value(&f->log_format)->default_value("text"), "text (readable) or json (one object per line)")
      ("io", po::value(&f->io)->default_value("auto"), kIoHelp)
      ("no-track", po::bool_switch(&f->no_track),
       "do not watch the volumes staged from (fanotify): every stage walks the whole tree")
      ("track-names-max", po::value(&f->track_names_max)->default_value(size_t{1} << 20),
       "N: changed names kept per target between two stages (~100 bytes each); past it, a full walk")
      ("track-queue-only", po::bool_switch(&f->track_queue_only),
       "tests: read the change queue only when a stage starts, so that it can overflow");
  desc.add(TlsFlags(&f->tls, /*daemon=*/true));
  return desc;
}

// The daemon's configuration from its flags (the I/O engine chosen on the way); the error is
// the exit code's reason, `*exit_code` the code.
Result<DaemonConfig> MakeConfig(const DaemonFlags& f, int* exit_code) {
  *exit_code = kExitUsage;
  DaemonConfig config;
  config.tls = f.tls;
  config.state_dir = f.state_dir;
  config.volumes.state_dir = f.state_dir;
  config.volumes.kubelet_root = f.kubelet_root;
  config.tracking.enabled = !f.no_track;
  config.tracking.names_max = f.track_names_max;
  config.tracking.queue_only = f.track_queue_only;
  if (!f.metrics_listen.empty()) {
    Result<HostPort> address = ParseHostPort(f.metrics_listen);
    if (!address.ok()) return address.status().Annotate("--metrics-listen");
    config.metrics_listen = *address;
  }
  Result<io::EngineKind> engine = ChooseIoEngine(f.io);
  if (!engine.ok()) {
    if (engine.status().code() != Code::kInvalidArgument) *exit_code = kExitDaemon;
    return engine.status();
  }
  config.io_engine = *engine;
  Result<HostPort> address = ParseHostPort(f.listen);
  if (!address.ok()) return address.status().Annotate("--listen");
  config.listen = *address;
  FERRY_RETURN_IF_ERROR(AddVolumes(f.volumes, &config.volumes));
  return config;
}

}  // namespace

int DaemonCommand(const Args& args) {
  DaemonFlags flags;
  po::options_description desc = DaemonOptions(&flags);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << "usage: ferry daemon --listen HOST:PORT --volume NAME=PATH [--volume ...] --state-dir DIR\n" << desc;
    return kExitOk;
  }
  const std::string& level = flags.log_level;
  SetLogLevel(level == "debug" ? LogLevel::kDebug : level == "warn" ? LogLevel::kWarning
              : level == "error" ? LogLevel::kError : LogLevel::kInfo);
  if (flags.log_format != "text" && flags.log_format != "json") {
    std::fprintf(stderr, "ferry daemon: --log-format must be text or json, not '%s'\n", flags.log_format.c_str());
    return kExitUsage;
  }
  SetLogFormat(flags.log_format == "json" ? LogFormat::kJson : LogFormat::kText);
  int exit_code = kExitUsage;
  Result<DaemonConfig> config = MakeConfig(flags, &exit_code);
  if (!config.ok()) {
    std::fprintf(stderr, "ferry daemon: %s\n", config.status().ToString().c_str());
    return exit_code;
  }
  Daemon daemon(std::move(*config));
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

}  // namespace ferry
