// The `ferry` commands, one file each (cli/*_command.cc): each parses its flags (cli/flags.h)
// and runs. RunCommandLine (cli/cli.cc) picks one by name.
// Threading: main thread.
#pragma once

#include <string>
#include <vector>

namespace ferry {

using Args = std::vector<std::string>;

int DaemonCommand(const Args& args);    // cli/daemon_command.cc
int SyncCommand(const Args& args);      // cli/sync_command.cc
int BenchCommand(const Args& args);     // cli/bench_command.cc
int StageCommand(const Args& args);     // cli/remote_command.cc: ferry stage SRC DST (or PLAN: PlanStageCommand)
int VolumesCommand(const Args& args);   // cli/remote_command.cc
int StagesCommand(const Args& args);    // cli/remote_command.cc
// cli/plan_commands.cc: the coordinator's commands on a plan.
int PlanStageCommand(const std::string& plan_path, const std::string& state_dir, bool progress, bool json);
int StatusCommand(const Args& args);    // ferry status PLAN
int ReportCommand(const Args& args);    // ferry report PLAN --html FILE
int MigrateCommand(const Args& args);   // ferry migrate PLAN
int CutoverCommand(const Args& args);   // ferry cutover PLAN
int RollbackCommand(const Args& args);  // ferry rollback PLAN
int RehearseCommand(const Args& args);  // ferry rehearse PLAN

}  // namespace ferry
