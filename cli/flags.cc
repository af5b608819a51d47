#include "cli/flags.h"

#include <unistd.h>

#include <cstdlib>

#include "base/bounds.h"
#include "base/rate.h"

namespace ferry {

const char* const kIoHelp =
    "I/O engine: auto (FERRY_IO if set, else io_uring where the kernel allows it), uring, posix; "
    "uring or posix override FERRY_IO";

po::options_description TlsFlags(io::TlsOptions* tls, bool daemon) {
  po::options_description d("TLS (one of --psk-file, the three --tls-* files, or --insecure)");
  d.add_options()
      ("psk-file", po::value(&tls->psk_file),
       "FILE: pre-shared key, one line IDENTITY:HEX (>= 32 bytes of key; mode 600), the same on both ends")
      ("tls-cert", po::value(&tls->cert_file), "FILE: this side's certificate chain (PEM)")
      ("tls-key", po::value(&tls->key_file), "FILE: its private key (PEM, mode 600)")
      ("tls-ca", po::value(&tls->ca_file), "FILE: the CA certificate(s) the peer's certificate must chain to")
      ("tls-peer-name", po::value(&tls->peer_name),
       daemon ? "NAME: the name a client's certificate must carry (default: any the CA signed)"
              : "NAME: the name the daemon's certificate must carry (default: the host in the URL)")
      ("insecure", po::bool_switch(&tls->insecure),
       daemon ? "accept plaintext connections: no TLS, no authentication (a warning is logged)"
              : "connect in plaintext: no TLS, no authentication (a warning is printed)");
  return d;
}

Result<io::EngineKind> ChooseIoEngine(const std::string& flag) {
  Result<io::EngineKind> requested = io::ParseEngineKind(flag);
  if (!requested.ok()) return requested.status().Annotate("--io");
  return io::ChooseEngineKind(*requested);
}

po::variables_map ParseArgs(const std::vector<std::string>& args, const po::options_description& desc, int count,
                            std::vector<std::string>* positional) {
  po::options_description hidden;
  hidden.add_options()("positional", po::value(positional), "");
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description pos;
  pos.add("positional", count);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
  po::notify(vm);
  return vm;
}

po::options_description TransferFlags(SyncOptions* o, uint32_t* streams) {
  po::options_description d("transfer");
  d.add_options()
      ("dry-run,n", po::bool_switch(&o->dry_run), "list what would change; change nothing")
      ("exclude", po::value(&o->excludes)->composing(), "PATTERN: skip matching entries (repeatable, rsync-like)")
      ("checksum,c", po::bool_switch(&o->checksum), "compare file content, not size and mtime")
      ("no-selinux", po::bool_switch(&o->no_selinux), "do not copy or compare security.selinux")
      ("no-xattrs", po::bool_switch(&o->no_xattrs),
       "do not copy or compare xattrs and ACLs (rsync without -X -A): one lookup less per file on each side")
      ("block", po::bool_switch(&o->block),
       "SRC and DST are block devices or image files, synced as one object by block delta")
      ("allow-empty-source", po::bool_switch(&o->allow_empty_source),
       "let an empty source delete everything on the target (refused by default: unmounted volume?)")
      ("compress", po::value<std::string>()->default_value("auto"),
       "zstd for file content: auto (a level that keeps up with the link, data that does not compress "
       "sent raw; none to a daemon on this host), none, or a level 1-19")
      ("bwlimit", po::value<std::string>(), "RATE: at most this many bytes per second from the sender (K, M, G: powers of 1024)")
      ("streams", po::value<uint32_t>(streams)->default_value(DefaultStreams()),
       "N: data connections per session (1-16; large files are split across them); 1 with --bwlimit");
  return d;
}

Status ParseTransferFlags(const po::variables_map& vm, CompressMode* compress_mode, int* compress_level,
                          uint64_t* bwlimit, uint32_t streams) {
  const std::string compress = vm["compress"].as<std::string>();
  if (compress == "auto") {
    *compress_mode = CompressMode::kAuto;
  } else if (compress == "none") {
    *compress_mode = CompressMode::kNone;
  } else {
    char* end = nullptr;
    long level = std::strtol(compress.c_str(), &end, 10);
    if (compress.empty() || *end != '\0' || level < 1 || level > kZstdLevelMax) {
      return Status::InvalidArgument("--compress must be auto, none or a zstd level 1-" + std::to_string(kZstdLevelMax) +
                                     ", not '" + compress + "'");
    }
    *compress_mode = CompressMode::kLevel;
    *compress_level = static_cast<int>(level);
  }
  if (vm.count("bwlimit")) {
    Result<uint64_t> rate = ParseByteRate(vm["bwlimit"].as<std::string>());
    if (rate.ok() && *rate < kBwlimitMinBytesPerSecond) {
      rate = Status::InvalidArgument("below 128K would let a data frame outlast the peer's patience");
    }
    if (!rate.ok()) return rate.status().Annotate("--bwlimit");
    *bwlimit = *rate;
  }
  if (streams < 1 || streams > kStreamsMax) {
    return Status::InvalidArgument("--streams must be 1 to " + std::to_string(kStreamsMax) + ", not " +
                                   std::to_string(streams));
  }
  return Status::Ok();
}

std::string DefaultStateDir() {
  if (::geteuid() == 0) return "/var/lib/ferry";
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/ferry";
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') return std::string(home) + "/.local/state/ferry";
  return "";
}

po::options_description JsonFlag(bool* json) {
  po::options_description d("output");
  d.add_options()("json", po::bool_switch(json), "print JSON on stdout");
  return d;
}

}  // namespace ferry
