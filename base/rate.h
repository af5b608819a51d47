// Bandwidth limiting: a token bucket driven by a clock it is given (so tests run without
// sleeping), and the parser of the `--bwlimit RATE` argument.
// Threading: a TokenBucket belongs to one thread (the channel's sender, under its lock).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/result.h"

namespace ferry {

class TokenBucket {
 public:
  using Clock = std::function<int64_t()>;  // monotonic nanoseconds
  // `bytes_per_second` > 0; up to `burst_bytes` may go at once after a pause.
  TokenBucket(uint64_t bytes_per_second, uint64_t burst_bytes, Clock now);
  // Takes `bytes` and returns how many nanoseconds to wait before sending them (0: now). The
  // bucket may go into debt, so a frame larger than the burst still goes, later.
  int64_t Reserve(uint64_t bytes);

 private:
  double rate_;  // bytes per nanosecond
  double burst_;
  double tokens_;
  int64_t last_;
  Clock now_;
};

// A rate as bytes per second: a number with an optional K, M or G suffix (powers of 1024) and an
// optional "/s", e.g. "50M" or "1.5G/s". Zero and garbage are InvalidArgument.
Result<uint64_t> ParseByteRate(const std::string& text);

}  // namespace ferry
