// The command line's shared flags and parsing (Boost.Program_options, the one library that
// throws: RunCommandLine catches its errors): TLS, the transfer options of `ferry sync` and
// `ferry stage`, --io, --json, the default state directory.
// Threading: main thread.
#pragma once

#include <boost/program_options.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/io/engine.h"
#include "agent/io/tls.h"
#include "agent/sync_types.h"
#include "base/result.h"
#include "client/push.h"

namespace ferry {

namespace po = boost::program_options;

extern const char* const kIoHelp;

// The TLS flags of every command that talks to a daemon (and of the daemon itself).
po::options_description TlsFlags(io::TlsOptions* tls, bool daemon);

// Parses --io and makes the process-wide engine choice, once, at start-up (a fallback from
// io_uring to posix is logged then, with advice).
Result<io::EngineKind> ChooseIoEngine(const std::string& flag);

// Parses `args`: the options of `desc` and up to `count` positional arguments (*positional).
po::variables_map ParseArgs(const std::vector<std::string>& args, const po::options_description& desc, int count,
                            std::vector<std::string>* positional);

// The options of a transfer, shared by `ferry sync` and `ferry stage`, and their checks.
po::options_description TransferFlags(SyncOptions* o, uint32_t* streams);
Status ParseTransferFlags(const po::variables_map& vm, CompressMode* compress_mode, int* compress_level,
                          uint64_t* bwlimit, uint32_t streams);

// Where a local receiver keeps its state cache, and the coordinator its journals: the daemon's
// directory for root, else the user's state directory (XDG).
std::string DefaultStateDir();

// --json of the commands that ask a daemon (volumes, stages, stage).
po::options_description JsonFlag(bool* json);

}  // namespace ferry
