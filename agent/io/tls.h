// TLS 1.3 (OpenSSL) for every connection between ferry processes, data streams included.
// Two ways to authenticate, both mutual:
//   - a pre-shared key (--psk-file: one line IDENTITY:HEX, at least 32 bytes of key, the file
//     readable by its owner only): TLS 1.3 external PSK with an ephemeral (EC)DHE exchange, so a
//     recorded session stays secret even if the key leaks later;
//   - certificates (--tls-cert, --tls-key, --tls-ca): each side presents a certificate the CA
//     signed; the client checks the daemon's name (the host it connected to, or --tls-peer-name),
//     the daemon a client's name when given --tls-peer-name.
// No session tickets and no 0-RTT data: every connection is a full handshake with fresh keys, so
// a recorded connection can be neither decrypted nor replayed; a data stream joins its session
// only with the session's random token, which travels inside TLS.
// Plaintext only with --insecure (TlsOptions::insecure), which the commands warn about.
// Threading: a TlsContext is shared by any number of connections; a TlsStream, like every
// ByteStream, takes one reading and one writing thread at once (SSL calls are serialized inside).
#pragma once

#include <memory>
#include <string>

#include "agent/io/stream.h"
#include "base/result.h"

namespace ferry::io {

struct TlsOptions {
  std::string psk_file;
  std::string cert_file, key_file, ca_file;
  // Client: the name the daemon's certificate must carry (default: the host connected to).
  // Daemon: the name a client certificate must carry (default: any certificate the CA signed).
  std::string peer_name;
  bool insecure = false;  // plaintext, acknowledged
};

// Checks that exactly one of a PSK, certificates (all three files) or --insecure is chosen;
// errors name the flags to pass.
Status CheckTlsOptions(const TlsOptions& options);

class TlsContext {
 public:
  enum class Role { kClient, kServer };
  // Loads the key or the certificates (files checked: present, readable, a private key or PSK
  // file not readable by group or others). REQUIRES: !options.insecure.
  static Result<std::shared_ptr<TlsContext>> Make(const TlsOptions& options, Role role);
  // CheckTlsOptions, then Make: null (no error) for --insecure.
  static Result<std::shared_ptr<TlsContext>> MakeUnlessInsecure(const TlsOptions& options, Role role);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Runs the handshake on connected socket `fd` (taken over: closed on failure) within
  // `timeout_ms`. `peer_name` names the peer in messages; `host` (client) is what the daemon's
  // certificate must match when no --tls-peer-name was given.
  Result<std::unique_ptr<ByteStream>> Handshake(int fd, const std::string& peer_name, const std::string& host,
                                                int timeout_ms) const;

  const char* mode() const { return psk_ ? "TLS 1.3, pre-shared key" : "TLS 1.3, certificates"; }

 private:
  struct Impl;
  TlsContext() = default;
  std::unique_ptr<Impl> impl_;
  bool psk_ = false;
};

}  // namespace ferry::io
