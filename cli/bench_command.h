// `ferry bench ferry://HOST:PORT[/VOLUME]`: what an operator needs to know before a migration,
// measured from this (source) node against a target node's daemon, like iperf3: the network
// both ways, the local source's read speed, the target volume's write speed (fdatasync
// included), and a real end-to-end stage of generated data. A short table, or one JSON object.
// Threading: RunBench runs on the caller's thread (a keepalive thread while it generates data).
#pragma once

#include <cstdint>
#include <string>

#include "agent/io/tls.h"
#include "base/bounds.h"

namespace ferry {

struct BenchRequest {
  std::string daemon;                   // "ferry://HOST:PORT[/VOLUME]" or "HOST:PORT[/VOLUME]"
  std::string source;                   // --source: a local directory or file to read; "" to skip
  uint64_t bytes = kBenchBytesDefault;  // source read, target write; the sync moves bytes / 4
  uint32_t seconds = kBenchSecondsDefault;  // each network direction
  bool json = false;
  io::TlsOptions tls;
};

// Runs the measurements and prints them; returns an exit code of `ferry sync` (sync_command.h).
int RunBench(const BenchRequest& request);

}  // namespace ferry
