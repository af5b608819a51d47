#include "cli/cli.h"

#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "base/exit_code.h"
#include "cli/commands.h"
#include "cli/flags.h"

namespace ferry {
namespace {

constexpr const char* kUsage =
    "usage: ferry <command> [options]\n"
    "commands:\n"
    "  sync SRC DST     mirror SRC into DST; each is a directory or ferry://HOST:PORT/VOLUME[/PATH]\n"
    "  daemon           serve volumes to ferry clients (the receiver on a node)\n"
    "  bench DAEMON     measure network, source read, target write and sync against ferry://HOST:PORT[/VOLUME]\n"
    "  stage SRC DST    have the daemon at SRC (ferry://HOST:PORT/VOLUME) push that volume to DST\n"
    "  migrate PLAN     stage every pair until the final stage fits the downtime budget, then cut over\n"
    "  rehearse PLAN    start the target app on the staged copy, check it, stop it (timed); stage again\n"
    "  cutover PLAN     quiesce the source, final stage, verify, start the target, switch (or roll back)\n"
    "  rollback PLAN    resume the source app (after a failed or abandoned cutover)\n"
    "  stage PLAN       one stage of every pair of a migration plan (YAML)\n"
    "  status PLAN      the plan's stages so far, change rate and predicted downtime; what it waits for\n"
    "  report PLAN      --html FILE: a page with the stage table and a chart of the stages and downtime\n"
    "  stages DAEMON    list the stages a daemon runs and ran\n"
    "  volumes DAEMON   list a daemon's volumes: kind, size, free space, busy or idle\n"
    "  version          print the version\n"
    "run `ferry <command> --help` for the options of a command\n";

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
    if (command == "stages") return StagesCommand(args);
    if (command == "status") return StatusCommand(args);
    if (command == "report") return ReportCommand(args);
    if (command == "migrate") return MigrateCommand(args);
    if (command == "cutover") return CutoverCommand(args);
    if (command == "rollback") return RollbackCommand(args);
    if (command == "rehearse") return RehearseCommand(args);
    if (command == "volumes") return VolumesCommand(args);
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
