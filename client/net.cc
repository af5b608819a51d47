#include "client/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/path.h"
#include "base/bounds.h"

namespace ferry {

std::string HostPort::ToString() const {
  return host.find(':') != std::string::npos ? "[" + host + "]:" + port : host + ":" + port;
}

Result<HostPort> ParseHostPort(const std::string& text) {
  HostPort hp;
  size_t colon;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Status::InvalidArgument("address '" + text + "' is not [IPv6]:PORT");
    }
    hp.host = text.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return Status::InvalidArgument("address '" + text + "' is not HOST:PORT");
    }
    hp.host = text.substr(0, colon);
  }
  hp.port = text.substr(colon + 1);
  char* end = nullptr;
  long port = std::strtol(hp.port.c_str(), &end, 10);
  if (hp.port.empty() || *end != '\0' || port < 0 || port > 65535) {
    return Status::InvalidArgument("port in '" + text + "' is not a number from 0 to 65535");
  }
  return hp;
}

std::string Location::ToString() const {
  if (!remote) return local_path;
  return "ferry://" + daemon.ToString() + "/" + JoinPath(volume, subpath);
}

Status ValidateVolumeName(const std::string& name) {
  if (name.empty() || name.size() > kVolumeNameMaxBytes) {
    return Status::InvalidArgument("volume name '" + name + "' must be 1 to " +
                                   std::to_string(kVolumeNameMaxBytes) + " characters");
  }
  for (char c : name) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' && c != ':') {
      return Status::InvalidArgument("volume name '" + name + "' may hold only letters, digits and . _ - :");
    }
  }
  return Status::Ok();
}

Result<Location> ParseLocation(const std::string& text) {
  Location loc;
  const std::string scheme = "ferry://";
  if (text.rfind(scheme, 0) != 0) {
    if (text.empty()) return Status::InvalidArgument("empty path");
    loc.local_path = text;
    return loc;
  }
  loc.remote = true;
  std::string rest = text.substr(scheme.size());
  size_t slash = rest.find('/');
  if (slash == std::string::npos || slash + 1 >= rest.size()) {
    return Status::InvalidArgument("'" + text + "' names no volume: use ferry://HOST:PORT/VOLUME");
  }
  Result<HostPort> hp = ParseHostPort(rest.substr(0, slash));
  if (!hp.ok()) return hp.status().Annotate(text);
  loc.daemon = *hp;
  std::string path = rest.substr(slash + 1);
  while (!path.empty() && path.back() == '/') path.pop_back();
  size_t volume_end = path.find('/');
  loc.volume = path.substr(0, volume_end);
  loc.subpath = volume_end == std::string::npos ? "" : path.substr(volume_end + 1);
  if (loc.volume.empty() || loc.volume.size() > kVolumeNameMaxBytes) {
    return Status::InvalidArgument("'" + text + "' has an empty or too long volume name");
  }
  if (!ValidateRelativePath(loc.subpath).ok()) {
    return Status::InvalidArgument("'" + text + "' points outside volume '" + loc.volume +
                                   "': use a plain path inside it (no '..', '.', '//')");
  }
  return loc;
}

Result<HostPort> ParseDaemonUrl(const std::string& text, bool allow_path) {
  const std::string scheme = "ferry://";
  std::string rest = text.rfind(scheme, 0) == 0 ? text.substr(scheme.size()) : "";
  size_t slash = rest.find('/');
  bool has_path = slash != std::string::npos && rest.find_first_not_of('/', slash) != std::string::npos;
  Result<HostPort> hp = rest.empty() || (has_path && !allow_path) ? Result<HostPort>(Status::InvalidArgument(""))
                                                                   : ParseHostPort(rest.substr(0, slash));
  if (!hp.ok()) {
    return Status::InvalidArgument("'" + text + "' is not ferry://HOST:PORT" + (allow_path ? "[/VOLUME]" : ""));
  }
  return hp;
}

static Result<addrinfo*> Resolve(const HostPort& hp, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* result = nullptr;
  int rc = ::getaddrinfo(hp.host.c_str(), hp.port.c_str(), &hints, &result);
  if (rc != 0) {
    return Status::Make(Code::kNetwork, "cannot resolve '" + hp.host + "': " + ::gai_strerror(rc));
  }
  return result;
}

static std::string AddressName(const sockaddr* sa) {
  char host[NI_MAXHOST], port[NI_MAXSERV];
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::getnameinfo(sa, len, host, sizeof(host), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  return HostPort{host, port}.ToString();
}

void TuneSessionSocket(int fd) {
  int one = 1, idle_s = 30, interval_s = 10, count = 6;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof(interval_s));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
}

std::string PeerName(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return AddressName(reinterpret_cast<sockaddr*>(&ss));
}

Result<int> Listen(const HostPort& address, HostPort* bound) {
  Result<addrinfo*> ai = Resolve(address, true);
  if (!ai.ok()) return ai.status();
  Status last = Status::Network("no address for " + address.ToString());
  for (addrinfo* a = *ai; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      Result<HostPort> hp = ParseHostPort(AddressName(reinterpret_cast<sockaddr*>(&ss)));
      if (hp.ok()) *bound = *hp;
      ::freeaddrinfo(*ai);
      return fd;
    }
    int error = errno;
    ::close(fd);
    last = error == EADDRINUSE
               ? Status::Make(Code::kBusy, "address " + address.ToString() +
                                               " is in use (another ferry daemon?): choose another --listen port", error)
               : Status::Errno(error, "listen on " + address.ToString());
  }
  ::freeaddrinfo(*ai);
  return last;
}

static Status ConnectOne(int fd, const addrinfo* a, int timeout_ms) {
  int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) return Status::Errno(errno, "connect");
  pollfd p{fd, POLLOUT, 0};
  int n = ::poll(&p, 1, timeout_ms);
  if (n == 0) return Status::Make(Code::kNetwork, "connect: timed out", ETIMEDOUT);
  int error = 0;
  socklen_t len = sizeof(error);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
  if (error != 0) return Status::Errno(error, "connect");
  ::fcntl(fd, F_SETFL, flags);
  TuneSessionSocket(fd);
  return Status::Ok();
}

Result<std::unique_ptr<io::ByteStream>> Connect(const HostPort& daemon, int timeout_ms, bool* loopback,
                                                const io::TlsContext* tls) {
  Result<addrinfo*> ai = Resolve(daemon, false);
  if (!ai.ok()) return ai.status();
  Status last;
  for (addrinfo* a = *ai; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    last = ConnectOne(fd, a, timeout_ms);
    if (last.ok()) {
      ::freeaddrinfo(*ai);
      std::string peer = PeerName(fd);
      *loopback = peer.rfind("127.", 0) == 0 || peer.rfind("[::1]:", 0) == 0 ||
                  peer.rfind("[::ffff:127.", 0) == 0;
      if (tls != nullptr) return tls->Handshake(fd, daemon.ToString(), daemon.host, timeout_ms);
      return std::unique_ptr<io::ByteStream>(std::make_unique<io::FdStream>(fd, daemon.ToString()));
    }
    ::close(fd);
  }
  ::freeaddrinfo(*ai);
  return Status::Make(Code::kNetwork, "cannot reach ferry daemon at " + daemon.ToString() + " (" +
                                          last.message() + "): is `ferry daemon` running there and the port open?",
                      last.error_number());
}

}  // namespace ferry
