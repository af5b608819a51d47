#include "agent/io/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>

#include "base/check.h"

namespace ferry::io {

namespace {

constexpr size_t kPskFileMaxBytes = 4096;
constexpr size_t kPskKeyMinBytes = 32;
constexpr size_t kPskKeyMaxBytes = 256;
constexpr size_t kPskIdentityMaxBytes = 128;
// Header and payload go as one TLS record when the payload is this small (a record per part
// would cost a record's overhead and a system call more for every small frame).
constexpr size_t kCoalesceMaxBytes = 16 * 1024;
// TLS_AES_128_GCM_SHA256: the PSK's hash must be the suite's, and AES-GCM is the fastest with
// AES-NI.
constexpr unsigned char kPskSuite[2] = {0x13, 0x01};
constexpr const char* kPskSuites = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
constexpr const char* kCertSuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

// The first queued OpenSSL error as text (and the queue cleared).
std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  std::string out;
  if (e != 0) {
    char text[256];
    ERR_error_string_n(e, text, sizeof(text));
    // "error:0A000086:SSL routines::certificate verify failed": keep what follows the codes.
    const char* reason = std::strrchr(text, ':');
    out = reason != nullptr && reason[1] != '\0' ? reason + 1 : text;
  }
  ERR_clear_error();
  return out.empty() ? "unknown TLS error" : out;
}

// A key or PSK file must be readable by its owner only: anyone else who can read it can
// impersonate either end.
Status CheckPrivateFile(const std::string& path, const char* flag) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::Errno(errno, std::string(flag) + " '" + path + "'");
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(std::string(flag) + " '" + path + "' is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::InvalidArgument(std::string(flag) + " '" + path + "' is accessible by group or others (mode " +
                                   mode + "): chmod 600 it");
  }
  return Status::Ok();
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Status LoadPsk(const std::string& path, std::string* identity, std::string* key) {
  FERRY_RETURN_IF_ERROR(CheckPrivateFile(path, "--psk-file"));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Errno(errno, "--psk-file '" + path + "'");
  std::string text(kPskFileMaxBytes + 1, '\0');
  ssize_t n = ::read(fd, text.data(), text.size());
  ::close(fd);
  if (n < 0) return Status::Errno(errno, "read --psk-file '" + path + "'");
  if (static_cast<size_t>(n) > kPskFileMaxBytes) {
    return Status::InvalidArgument("--psk-file '" + path + "' is over 4 KiB: it holds one line IDENTITY:HEX");
  }
  text.resize(static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  const size_t colon = text.rfind(':');
  const std::string usage = "--psk-file '" + path + "' must hold one line IDENTITY:HEX with at least " +
                            std::to_string(kPskKeyMinBytes) + " bytes of key (" + std::to_string(2 * kPskKeyMinBytes) +
                            " hex digits), e.g. made with: echo \"ferry:$(openssl rand -hex 32)\" > FILE";
  if (colon == std::string::npos || colon == 0 || colon > kPskIdentityMaxBytes || text.find('\n') != std::string::npos) {
    return Status::InvalidArgument(usage);
  }
  const std::string hex = text.substr(colon + 1);
  if (hex.size() % 2 != 0 || hex.size() < 2 * kPskKeyMinBytes || hex.size() > 2 * kPskKeyMaxBytes) {
    return Status::InvalidArgument(usage);
  }
  key->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = HexValue(hex[i]), lo = HexValue(hex[i + 1]);
    if (hi < 0 || lo < 0) return Status::InvalidArgument(usage);
    key->push_back(static_cast<char>(hi * 16 + lo));
  }
  *identity = text.substr(0, colon);
  for (char c : *identity) {
    if (c < 0x21 || c > 0x7e) return Status::InvalidArgument(usage);
  }
  return Status::Ok();
}

// What the PSK callbacks find through the context's app data.
struct PskKey {
  std::string identity, key;
};

bool IsIpAddress(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Waits for `events` on fd until the deadline; false on timeout.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline, bool forever) {
  for (;;) {
    int timeout = -1;
    if (!forever) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      timeout = static_cast<int>(left.count());
    }
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, timeout);
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return true;  // the next SSL call reports the socket's error
  }
}

// A TLS connection over a non-blocking socket. Calls into the SSL object are serialized by a
// mutex (OpenSSL does not allow concurrent calls on one SSL); waits for the socket happen
// outside it, so a reader blocked on an idle peer never holds up a writer.
class TlsStream final : public ByteStream {
 public:
  TlsStream(int fd, SSL* ssl, std::string peer_name) : fd_(fd), ssl_(ssl), peer_name_(std::move(peer_name)) {}
  ~TlsStream() override {
    SSL_free(ssl_);
    ::close(fd_);
  }
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  Status ReadFull(char* buffer, size_t size, int timeout_ms) override {
    return Transfer(size, timeout_ms, "reading", [&](size_t done, size_t* n) {
      return SSL_read_ex(ssl_, buffer + done, size - done, n);
    });
  }

  Status Write(std::string_view first, std::string_view second, int timeout_ms) override {
    if (second.size() <= kCoalesceMaxBytes) {
      thread_local std::string joined;
      joined.assign(first);
      joined.append(second);
      return WriteAll(joined, timeout_ms);
    }
    FERRY_RETURN_IF_ERROR(WriteAll(first, timeout_ms));
    return WriteAll(second, timeout_ms);
  }

  void Shutdown() override { ::shutdown(fd_, SHUT_RDWR); }
  const std::string& peer_name() const override { return peer_name_; }
  bool encrypted() const override { return true; }

 private:
  Status WriteAll(std::string_view data, int timeout_ms) {
    return Transfer(data.size(), timeout_ms, "writing", [&](size_t done, size_t* n) {
      return SSL_write_ex(ssl_, data.data() + done, data.size() - done, n);
    });
  }

  // Moves `size` bytes with `op(done, &n)` (one SSL_read_ex or SSL_write_ex call, under the
  // mutex), waiting for the socket in between; `timeout_ms` without progress fails.
  template <typename Op>
  Status Transfer(size_t size, int timeout_ms, const char* what, const Op& op) {
    const auto patience = std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    auto deadline = std::chrono::steady_clock::now() + patience;
    size_t done = 0;
    while (done < size) {
      size_t n = 0;
      int error = 0;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ERR_clear_error();
        int r = op(done, &n);
        error = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
        if (error == SSL_ERROR_SSL || error == SSL_ERROR_SYSCALL) last_error_ = OpenSslError();
      }
      if (error == SSL_ERROR_NONE) {
        done += n;
        deadline = std::chrono::steady_clock::now() + patience;
        continue;
      }
      FERRY_RETURN_IF_ERROR(Wait(error, deadline, timeout_ms, what));
    }
    return Status::Ok();
  }

  // After an SSL call that did not finish: waits for the socket, or turns the error into a
  // Status naming the peer.
  Status Wait(int error, std::chrono::steady_clock::time_point deadline, int timeout_ms, const char* what) {
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      if (WaitFor(fd_, error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, timeout_ms < 0)) return Status::Ok();
      return Status::Make(Code::kNetwork, "peer " + peer_name_ + " sent nothing for " +
                                              std::to_string(timeout_ms / 1000) + " s while " + what, ETIMEDOUT);
    }
    if (error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && errno == 0)) {
      return Status::Make(Code::kNetwork, "peer " + peer_name_ + " closed the connection", ECONNRESET);
    }
    if (error == SSL_ERROR_SYSCALL) return Status::Errno(errno, std::string(what) + " peer " + peer_name_);
    std::lock_guard<std::mutex> lock(mutex_);
    return Status::Make(Code::kNetwork, "TLS error " + std::string(what) + " peer " + peer_name_ + ": " + last_error_,
                        ECONNRESET);
  }

  int fd_;
  SSL* ssl_;
  std::string peer_name_;
  std::mutex mutex_;
  std::string last_error_;  // guarded by mutex_
};

}  // namespace

struct TlsContext::Impl {
  SSL_CTX* ctx = nullptr;
  Role role = Role::kClient;
  PskKey psk;
  std::string peer_name;
  ~Impl() { SSL_CTX_free(ctx); }
};

namespace {

SSL_SESSION* MakePskSession(SSL* ssl, const std::string& key) {
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kPskSuite);
  if (cipher == nullptr) return nullptr;
  SSL_SESSION* session = SSL_SESSION_new();
  if (session == nullptr ||
      SSL_SESSION_set1_master_key(session, reinterpret_cast<const unsigned char*>(key.data()), key.size()) != 1 ||
      SSL_SESSION_set_cipher(session, cipher) != 1 || SSL_SESSION_set_protocol_version(session, TLS1_3_VERSION) != 1) {
    SSL_SESSION_free(session);
    return nullptr;
  }
  return session;
}

int PskUseSession(SSL* ssl, const EVP_MD* md, const unsigned char** id, size_t* id_len, SSL_SESSION** session) {
  const auto* psk = static_cast<const PskKey*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kPskSuite);
  if (cipher == nullptr) return 0;
  if (md != nullptr && md != SSL_CIPHER_get_handshake_digest(cipher)) {
    *session = nullptr;  // the suite the daemon chose cannot use this key
    return 1;
  }
  *session = MakePskSession(ssl, psk->key);
  if (*session == nullptr) return 0;
  *id = reinterpret_cast<const unsigned char*>(psk->identity.data());
  *id_len = psk->identity.size();
  return 1;
}

int PskFindSession(SSL* ssl, const unsigned char* id, size_t id_len, SSL_SESSION** session) {
  const auto* psk = static_cast<const PskKey*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  const std::string& identity = psk->identity;
  // Compared in constant time; an unknown identity gets no session, and the handshake fails.
  if (id_len != identity.size() || CRYPTO_memcmp(id, identity.data(), id_len) != 0) {
    *session = nullptr;
    return 1;
  }
  *session = MakePskSession(ssl, psk->key);
  return *session != nullptr ? 1 : 0;
}

}  // namespace

Status CheckTlsOptions(const TlsOptions& o) {
  const bool certs = !o.cert_file.empty() || !o.key_file.empty() || !o.ca_file.empty();
  const bool psk = !o.psk_file.empty();
  if (o.insecure && (certs || psk)) {
    return Status::InvalidArgument("--insecure turns TLS off: do not combine it with --psk-file or --tls-*");
  }
  if (psk && certs) return Status::InvalidArgument("choose one of --psk-file and --tls-cert/--tls-key/--tls-ca");
  if (certs && (o.cert_file.empty() || o.key_file.empty() || o.ca_file.empty())) {
    return Status::InvalidArgument("certificates need all three of --tls-cert, --tls-key and --tls-ca");
  }
  if (!o.insecure && !psk && !certs) {
    return Status::InvalidArgument(
        "no TLS configured: pass --psk-file FILE, or --tls-cert, --tls-key and --tls-ca; "
        "--insecure sends everything in plaintext");
  }
  return Status::Ok();
}

TlsContext::~TlsContext() = default;

Result<std::shared_ptr<TlsContext>> TlsContext::Make(const TlsOptions& options, Role role) {
  CHECK(!options.insecure);
  FERRY_RETURN_IF_ERROR(CheckTlsOptions(options));
  std::shared_ptr<TlsContext> out(new TlsContext());
  out->impl_ = std::make_unique<Impl>();
  Impl& impl = *out->impl_;
  impl.role = role;
  impl.peer_name = options.peer_name;
  impl.ctx = SSL_CTX_new(role == Role::kClient ? TLS_client_method() : TLS_server_method());
  if (impl.ctx == nullptr) return Status::Unsupported("TLS: " + OpenSslError());
  SSL_CTX* ctx = impl.ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!options.psk_file.empty()) {
    out->psk_ = true;
    FERRY_RETURN_IF_ERROR(LoadPsk(options.psk_file, &impl.psk.identity, &impl.psk.key));
    SSL_CTX_set_app_data(ctx, &impl.psk);
    if (SSL_CTX_set_ciphersuites(ctx, kPskSuites) != 1) return Status::Unsupported("TLS: " + OpenSslError());
    if (role == Role::kClient) {
      SSL_CTX_set_psk_use_session_callback(ctx, PskUseSession);
    } else {
      SSL_CTX_set_psk_find_session_callback(ctx, PskFindSession);
    }
    return out;
  }
  FERRY_RETURN_IF_ERROR(CheckPrivateFile(options.key_file, "--tls-key"));
  if (SSL_CTX_set_ciphersuites(ctx, kCertSuites) != 1) return Status::Unsupported("TLS: " + OpenSslError());
  if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1) {
    return Status::InvalidArgument("--tls-cert '" + options.cert_file + "': " + OpenSslError());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Status::InvalidArgument("--tls-key '" + options.key_file + "': " + OpenSslError());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return Status::InvalidArgument("--tls-key '" + options.key_file + "' does not match --tls-cert '" +
                                   options.cert_file + "'");
  }
  if (SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1) {
    return Status::InvalidArgument("--tls-ca '" + options.ca_file + "': " + OpenSslError());
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  return out;
}

Result<std::shared_ptr<TlsContext>> TlsContext::MakeUnlessInsecure(const TlsOptions& options, Role role) {
  FERRY_RETURN_IF_ERROR(CheckTlsOptions(options));
  if (options.insecure) return std::shared_ptr<TlsContext>();
  return Make(options, role);
}

Result<std::unique_ptr<ByteStream>> TlsContext::Handshake(int fd, const std::string& peer_name,
                                                          const std::string& host, int timeout_ms) const {
  const Impl& impl = *impl_;
  SSL* ssl = SSL_new(impl.ctx);
  auto fail = [&](const std::string& why) -> Status {
    SSL_free(ssl);
    ::close(fd);
    return Status::Make(Code::kNetwork, why, ECONNREFUSED);
  };
  if (ssl == nullptr) return fail("TLS: " + OpenSslError());
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return fail("TLS: cannot make the socket non-blocking");
  if (SSL_set_fd(ssl, fd) != 1) return fail("TLS: " + OpenSslError());
  const bool client = impl.role == Role::kClient;
  if (!psk_) {
    // The name the peer's certificate must carry: the daemon's host (or --tls-peer-name) for a
    // client; --tls-peer-name, if given, for a daemon.
    const std::string name = !impl.peer_name.empty() ? impl.peer_name : client ? host : "";
    if (!name.empty()) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      int ok = IsIpAddress(name) ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                                 : X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
      if (ok != 1) return fail("TLS: cannot check peer name '" + name + "'");
      if (client && !IsIpAddress(name)) SSL_set_tlsext_host_name(ssl, name.c_str());
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  const char* advice = client ? " (is the daemon running with the same --psk-file, or certificates from the same CA? "
                                "a daemon started with --insecure speaks plaintext)"
                              : " (a client without TLS, the wrong key or certificate, or not ferry)";
  for (;;) {
    ERR_clear_error();
    int r = client ? SSL_connect(ssl) : SSL_accept(ssl);
    if (r == 1) break;
    int error = SSL_get_error(ssl, r);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      if (!WaitFor(fd, error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, false)) {
        return fail("TLS handshake with " + peer_name + " timed out after " + std::to_string(timeout_ms / 1000) + " s");
      }
      continue;
    }
    std::string why;
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      why = std::string("certificate: ") + X509_verify_cert_error_string(verify);
      ERR_clear_error();
    } else if (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
      why = errno == 0 ? "the peer closed the connection" : std::strerror(errno);
    } else {
      why = OpenSslError();
    }
    return fail("TLS handshake with " + peer_name + " failed: " + why + advice);
  }
  return std::unique_ptr<ByteStream>(std::make_unique<TlsStream>(fd, ssl, peer_name));
}

}  // namespace ferry::io
