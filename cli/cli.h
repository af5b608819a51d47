// The `ferry` command line: subcommands, their flags (Boost.Program_options, the one place that
// catches exceptions), and the exit codes. Threading: main thread.
#pragma once

namespace ferry {

int RunCommandLine(int argc, char** argv);

}  // namespace ferry
