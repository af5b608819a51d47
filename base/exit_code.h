// The exit codes of every `ferry` command (documented in the README): the command line returns
// them, and the coordinator's commands (migrate, cutover, rollback) choose theirs from them.
// Threading: constants.
#pragma once

namespace ferry {

enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 1,      // bad flags or locations
  kExitSource = 2,     // source missing or unreadable
  kExitTarget = 3,     // target failed: unknown volume, I/O error, no space, permission
  kExitNetwork = 4,    // daemon unreachable, connection lost, timeout
  kExitProtocol = 5,   // the peer is not a compatible ferry, or sent damaged data
  kExitBusy = 6,       // volume busy or daemon full: retry later
  kExitDaemon = 7,     // `ferry daemon` could not start (port in use, bad volume, state dir)
  kExitStage = 8,      // `ferry stage`: the stage the daemon ran failed or was cancelled
  kExitPartial = 23,   // finished, but some source files could not be read (named on stderr)
};

}  // namespace ferry
