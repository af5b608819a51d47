#include "cli/remote_command.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/progress.h"
#include "cli/sync_command.h"
#include "client/control_api.h"
#include "client/json.h"

namespace ferry {

using nlohmann::json;

namespace {

std::atomic<bool> g_interrupted{false};
void OnInterrupt(int) { g_interrupted = true; }

// The daemon to ask, from ferry://HOST:PORT[/...], and a client connected to it.
struct Connected {
  HostPort daemon;
  std::shared_ptr<io::TlsContext> tls;
  std::unique_ptr<ControlClient> client;
};

Result<Connected> ConnectTo(const std::string& url, const io::TlsOptions& tls_options, const char* command) {
  Connected c;
  Result<HostPort> hp = ParseDaemonUrl(url, /*allow_path=*/true);
  if (!hp.ok()) return hp.status();
  c.daemon = *hp;
  Result<std::shared_ptr<io::TlsContext>> tls = io::TlsContext::MakeUnlessInsecure(tls_options, io::TlsContext::Role::kClient);
  if (!tls.ok()) return tls.status();
  c.tls = *tls;
  if (!c.tls) {
    std::fprintf(stderr, "ferry %s: warning: --insecure: the request crosses the network in plaintext\n", command);
  }
  Result<std::unique_ptr<ControlClient>> client = ControlClient::Connect(c.daemon, c.tls.get());
  if (!client.ok()) return client.status();
  c.client = std::move(*client);
  return c;
}

int Fail(const char* command, const Status& s) {
  std::fprintf(stderr, "ferry %s: %s\n", command, s.ToString().c_str());
  switch (s.code()) {
    case Code::kInvalidArgument: return kExitUsage;
    case Code::kNetwork: return kExitNetwork;
    case Code::kProtocol:
    case Code::kCorruption: return kExitProtocol;
    case Code::kBusy: return kExitBusy;
    default: return kExitTarget;
  }
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
// One line per stage: id, state, pair, what moved.
void PrintStage(const json& st) {
  const json& spec = st.contains("spec") ? st["spec"] : json::object();
  std::string moved;
  if (st.contains("summary")) {
    const json& s = st["summary"];
    moved = std::to_string(JsonUint(s, "files_sent")) + " files sent, " +
            HumanBytes(static_cast<double>(JsonUint(s, "bytes_sent_wire"))) + " on the wire, " +
            std::to_string(JsonUint(s, "entries_deleted")) + " deleted";
  } else if (st.contains("progress")) {
    const json& p = st["progress"];
    moved = std::to_string(JsonUint(p, "files_sent")) + "/" + std::to_string(JsonUint(p, "files_needed")) + " files, " +
            HumanBytes(static_cast<double>(JsonUint(p, "bytes_sent"))) + " sent";
  }
  std::printf("%-6llu %-11s %s -> %s  %s%s%s\n", static_cast<unsigned long long>(JsonUint(st, "stage_id")),
              Str(st, "state").c_str(), Str(spec, "volume").c_str(), Str(spec, "target").c_str(), moved.c_str(),
              st.contains("error") ? "  error: " : "", Str(st, "error").c_str());
}

}  // namespace

int RunVolumes(const RemoteRequest& r) {
  Result<Connected> c = ConnectTo(r.daemon, r.tls, "volumes");
  if (!c.ok()) return Fail("volumes", c.status());
  Result<json> reply = c->client->Call(json{{"op", "volumes"}});
  if (!reply.ok()) return Fail("volumes", reply.status());
  if (r.json) {
    std::printf("%s\n", DumpJson(*reply).c_str());
    return kExitOk;
  }
  std::printf("%-24s %-13s %-6s %10s %10s  %s\n", "VOLUME", "KIND", "STATE", "SIZE", "FREE", "PATH");
  for (const json& v : (*reply)["volumes"]) {
    std::string size = v.contains("size_bytes") ? HumanBytes(static_cast<double>(JsonUint(v, "size_bytes"))) : "-";
    std::string free = v.contains("free_bytes") ? HumanBytes(static_cast<double>(JsonUint(v, "free_bytes"))) : "-";
    std::printf("%-24s %-13s %-6s %10s %10s  %s\n", Str(v, "name").c_str(), Str(v, "kind").c_str(),
                Str(v, "state").c_str(), size.c_str(), free.c_str(), Str(v, "path").c_str());
  }
  return kExitOk;
}

int RunStages(const RemoteRequest& r) {
  Result<Connected> c = ConnectTo(r.daemon, r.tls, "stages");
  if (!c.ok()) return Fail("stages", c.status());
  Result<json> reply = c->client->Call(json{{"op", "stages"}});
  if (!reply.ok()) return Fail("stages", reply.status());
  if (r.json) {
    std::printf("%s\n", DumpJson(*reply).c_str());
    return kExitOk;
  }
  for (const json& st : (*reply)["stages"]) PrintStage(st);
  return kExitOk;
}

namespace {

// The request of `ferry stage`: watch a stage, or start one (watched unless detached).
Result<json> StageRequestJson(const StageRequest& r) {
  if (r.watch_id != 0) return json{{"op", "watch"}, {"stage_id", r.watch_id}};
  Result<Location> source = ParseLocation(r.remote.daemon);
  if (!source.ok() || !source->remote || !source->subpath.empty()) {
    return Status::InvalidArgument("the source must be ferry://HOST:PORT/VOLUME, not '" + r.remote.daemon + "'");
  }
  StageSpec spec;
  spec.volume = source->volume;
  spec.target = r.target;
  spec.push = r.push;
  return json{{"op", "stage"}, {"stage", spec.ToJson()}, {"watch", !r.detach}};
}

// Follows a watched stage to its final reply (into *event). Ctrl-C cancels the stage (files it
// committed stay on the target), through a second connection.
Status Watch(const StageRequest& r, ControlClient& client, uint64_t id, json* event) {
  struct sigaction sa {}, old_int {}, old_term {};
  sa.sa_handler = OnInterrupt;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  SyncProgress progress;
  bool cancel_sent = false;
  Status s;
  {
    ProgressPrinter printer(progress, r.progress);
    while (s.ok() && !event->value("final", false)) {
      if (g_interrupted && !cancel_sent) {
        cancel_sent = true;
        Result<Connected> canceller = ConnectTo(r.remote.daemon, r.remote.tls, "stage");
        Result<json> reply = canceller.ok() ? canceller->client->Call(json{{"op", "cancel"}, {"stage_id", id}})
                                            : Result<json>(canceller.status());
        if (!reply.ok()) std::fprintf(stderr, "\nferry stage: cancel: %s\n", reply.status().ToString().c_str());
      }
      ReadProgress(*event, progress);
      Result<json> next = client.Next();
      if (!next.ok()) {
        s = next.status();
      } else {
        *event = *next;
      }
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return s;
}

}  // namespace

int RunStage(const StageRequest& r) {
  Result<Connected> c = ConnectTo(r.remote.daemon, r.remote.tls, "stage");
  if (!c.ok()) return Fail("stage", c.status());
  if (r.cancel_id != 0) {
    Result<json> reply = c->client->Call(json{{"op", "cancel"}, {"stage_id", r.cancel_id}});
    if (!reply.ok()) return Fail("stage", reply.status());
    std::fprintf(stderr, "stage %llu: cancelling\n", static_cast<unsigned long long>(r.cancel_id));
    return kExitOk;
  }
  Result<json> request = StageRequestJson(r);
  if (!request.ok()) return Fail("stage", request.status());
  Result<json> event = c->client->Call(*request);
  if (!event.ok()) return Fail("stage", event.status());
  const uint64_t id = JsonUint(*event, "stage_id");
  if (r.detach) {
    if (r.remote.json) {
      std::printf("%s\n", DumpJson(*event).c_str());
    } else {
      std::printf("%llu\n", static_cast<unsigned long long>(id));
      std::fprintf(stderr, "stage %llu started on %s: follow it with `ferry stage --watch %llu %s`\n",
                   static_cast<unsigned long long>(id), c->daemon.ToString().c_str(),
                   static_cast<unsigned long long>(id), r.remote.daemon.c_str());
    }
    return kExitOk;
  }
  if (Status s = Watch(r, *c->client, id, &*event); !s.ok()) {
    std::fprintf(stderr, "ferry stage: lost the daemon while watching stage %llu (%s); it may still run: "
                 "`ferry stage --watch %llu %s`\n",
                 static_cast<unsigned long long>(id), s.ToString().c_str(), static_cast<unsigned long long>(id),
                 r.remote.daemon.c_str());
    return kExitNetwork;
  }
  const std::string state = Str(*event, "state");
  if (r.remote.json) {
    std::printf("%s\n", DumpJson(*event).c_str());
  } else {
    PrintStage(*event);
  }
  if (state == "committed") return kExitOk;
  if (!r.remote.json) std::fprintf(stderr, "ferry stage: stage %llu %s: %s\n", static_cast<unsigned long long>(id), state.c_str(), Str(*event, "error").c_str());
  return kExitStage;
}

namespace {

int ListCommand(const Args& args, const char* name, int (*run)(const RemoteRequest&)) {
  po::options_description desc(std::string("ferry ") + name + " options");
  RemoteRequest r;
  std::vector<std::string> positional;
  desc.add_options()("help,h", "show this help");
  desc.add(JsonFlag(&r.json));
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

}  // namespace

int VolumesCommand(const Args& args) { return ListCommand(args, "volumes", &RunVolumes); }
int StagesCommand(const Args& args) { return ListCommand(args, "stages", &RunStages); }

int StageCommand(const Args& args) {
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
  desc.add(JsonFlag(&r.remote.json));
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
    // ferry stage PLAN: one stage of every pair of the plan (cli/plan_commands.cc).
    return PlanStageCommand(positional[0], vm["state-dir"].as<std::string>(), r.progress, r.remote.json);
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

}  // namespace ferry
