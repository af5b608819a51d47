#include "base/status.h"

#include <cerrno>
#include <cstring>

namespace ferry {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kIoError: return "I/O error";
    case Code::kNoSpace: return "no space";
    case Code::kPermission: return "permission denied";
    case Code::kCorruption: return "corruption";
    case Code::kProtocol: return "protocol error";
    case Code::kNetwork: return "network error";
    case Code::kBusy: return "busy";
    case Code::kUnsupported: return "unsupported";
    case Code::kAborted: return "aborted";
  }
  return "unknown";
}

static Code CodeFromErrno(int error_number) {
  switch (error_number) {
    case ENOENT: case ENOTDIR: return Code::kNotFound;
    case ENOSPC: case EDQUOT: return Code::kNoSpace;
    case EACCES: case EPERM: case EROFS: return Code::kPermission;
    case ECONNREFUSED: case ECONNRESET: case ECONNABORTED: case EPIPE: case ETIMEDOUT:
    case EHOSTUNREACH: case ENETUNREACH: case ENETDOWN: case EADDRNOTAVAIL:
      return Code::kNetwork;
    case EADDRINUSE: case EBUSY: return Code::kBusy;
    case ENOSYS: case EOPNOTSUPP: case EINVAL: return Code::kUnsupported;
    case EINTR: return Code::kAborted;
    default: return Code::kIoError;
  }
}

Status Status::Errno(int error_number, std::string message) {
  message += ": ";
  message += std::strerror(error_number);
  return Status(CodeFromErrno(error_number), std::move(message), error_number);
}

std::string Status::ToString() const { return ok() ? "OK" : message_; }

Status Status::Annotate(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return Status(code_, std::move(m), error_number_);
}

}  // namespace ferry
