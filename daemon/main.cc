// ferry: one binary, subcommands in daemon/cli.cc.
#include "daemon/cli.h"

int main(int argc, char** argv) { return ferry::RunCommandLine(argc, argv); }
