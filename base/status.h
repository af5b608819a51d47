// Status: the outcome of an operation that can fail for operating reasons (disk, network, peer,
// bad input). Programmer errors are CHECKs (base/check.h), never Status values.
// Threading: a Status is a value; copy it freely between threads.
#pragma once

#include <string>
#include <string_view>

namespace ferry {

// The error classes callers branch on. Keep the list short: a caller chooses retry, resume or
// abort from the code, and reads the message to tell the user what happened.
enum class Code : int {
  kOk = 0,
  kInvalidArgument,  // bad flag, plan line, name or path given by the user
  kNotFound,         // missing source, unknown volume
  kIoError,          // a disk operation failed (errno says which)
  kNoSpace,          // ENOSPC / EDQUOT on the target
  kPermission,       // EACCES / EPERM
  kCorruption,       // a peer or a file sent bytes that do not decode or do not verify
  kProtocol,         // a well-formed message at the wrong time, an unsupported version
  kNetwork,          // connect refused, reset, timeout, peer gone
  kBusy,             // volume busy, too many sessions
  kUnsupported,      // the kernel or filesystem cannot do what was asked
  kAborted,          // cancelled by a signal or by the peer
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK

  static Status Ok() { return Status(); }
  static Status Make(Code code, std::string message, int error_number = 0) {
    return Status(code, std::move(message), error_number);
  }
  // The errno-based constructor classifies the errno (ENOSPC -> kNoSpace, ...) and appends
  // strerror to the message: Errno(errno, "open " + path).
  static Status Errno(int error_number, std::string message);

  static Status InvalidArgument(std::string m) { return Make(Code::kInvalidArgument, std::move(m)); }
  static Status NotFound(std::string m) { return Make(Code::kNotFound, std::move(m)); }
  static Status Corruption(std::string m) { return Make(Code::kCorruption, std::move(m)); }
  static Status Protocol(std::string m) { return Make(Code::kProtocol, std::move(m)); }
  static Status Network(std::string m) { return Make(Code::kNetwork, std::move(m)); }
  static Status Busy(std::string m) { return Make(Code::kBusy, std::move(m)); }
  static Status Unsupported(std::string m) { return Make(Code::kUnsupported, std::move(m)); }
  static Status Aborted(std::string m) { return Make(Code::kAborted, std::move(m)); }
  static Status IoError(std::string m) { return Make(Code::kIoError, std::move(m)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  int error_number() const { return error_number_; }
  const std::string& message() const { return message_; }
  // Errors worth a retry of the whole stage: the network and a busy volume.
  bool retryable() const { return code_ == Code::kNetwork || code_ == Code::kBusy; }

  // "message" for errors (the message already names the thing), "OK" for success.
  std::string ToString() const;

  // Prefixes the message with context: s.Annotate("volume pgdata").
  Status Annotate(std::string_view context) const;

 private:
  Status(Code code, std::string message, int error_number)
      : code_(code), error_number_(error_number), message_(std::move(message)) {}

  Code code_ = Code::kOk;
  int error_number_ = 0;
  std::string message_;
};

}  // namespace ferry
