// Result<T>: a value, or the non-OK Status that explains why there is none.
// Threading: a value type.
#pragma once

#include <optional>
#include <utility>

#include "base/check.h"
#include "base/status.h"

namespace ferry {

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    CHECK(!status_.ok());  // an OK Result must carry a value
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  T& value() & { CHECK(ok()); return *value_; }
  const T& value() const& { CHECK(ok()); return *value_; }
  T&& value() && { CHECK(ok()); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace ferry

// Returns early with the status of an expression that yields a Status.
#define FERRY_RETURN_IF_ERROR(expr)            \
  do {                                         \
    ::ferry::Status _ferry_s = (expr);         \
    if (!_ferry_s.ok()) return _ferry_s;       \
  } while (0)
