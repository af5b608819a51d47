// ferry: one binary, subcommands in cli/ (cli.cc picks one; a file a command).
#include <sys/resource.h>

#include "cli/cli.h"

int main(int argc, char** argv) {
  // The soft limit of open files up to the hard one: a receiver holds each new (unnamed) file
  // open until its commit group links it, thousands on a tree of small files (their number is
  // bounded by half the limit, UnnamedTicket), and systemd starts services at 1024 soft, 524288
  // hard, leaving the raise to the programs that need it.
  struct rlimit files;
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &files);
  }
  return ferry::RunCommandLine(argc, argv);
}
