// TCP endpoints: parsing "HOST:PORT" and "ferry://HOST:PORT/VOLUME[/PATH]", listening and
// connecting. The only file that calls getaddrinfo, bind and connect.
// Threading: functions are thread-safe.
#pragma once

#include <memory>
#include <string>

#include "agent/io/stream.h"
#include "agent/io/tls.h"
#include "base/result.h"

namespace ferry {

struct HostPort {
  std::string host;
  std::string port;
  std::string ToString() const;
};

// "127.0.0.1:7373", "[::1]:7373", "node-a:7373".
Result<HostPort> ParseHostPort(const std::string& text);

// A sync side: a local directory, or a volume (and optional path inside it) on a daemon.
struct Location {
  bool remote = false;
  std::string local_path;  // !remote
  HostPort daemon;         // remote
  std::string volume;
  std::string subpath;
  std::string ToString() const;
};

Result<Location> ParseLocation(const std::string& text);

// Checks a volume name given on the command line: [A-Za-z0-9._:-], 1..kVolumeNameMaxBytes.
Status ValidateVolumeName(const std::string& name);

// A daemon: "ferry://HOST:PORT" (trailing slashes allowed); with `allow_path` anything after
// the port ("/VOLUME[/PATH]") is accepted and ignored.
Result<HostPort> ParseDaemonUrl(const std::string& text, bool allow_path);

// Binds and listens; the actual address (port 0 picks a free one) goes to *bound.
Result<int> Listen(const HostPort& address, HostPort* bound);

// How long a command or daemon waits for a peer daemon to accept and finish the handshake.
constexpr int kConnectTimeoutMs = 10'000;

// Connects within `timeout_ms`, then runs the TLS handshake with `tls` (null: plaintext, for
// --insecure) within the same time; errors name the daemon and say what to check. *loopback
// tells whether the daemon is on this host (127.0.0.0/8, ::1): there the wire is memory, and
// compressing only costs CPU the copy needs.
Result<std::unique_ptr<io::ByteStream>> Connect(const HostPort& daemon, int timeout_ms, bool* loopback,
                                                const io::TlsContext* tls);

// Socket options of every session connection: no Nagle delay for small control frames, and a
// dead host detected by the kernel (keepalive probes). No TCP_USER_TIMEOUT: it would also cut a
// peer that is alive but not reading for a while (hashing, deleting, flushing).
void TuneSessionSocket(int fd);

// The peer's "ip:port" for logs.
std::string PeerName(int fd);

}  // namespace ferry
