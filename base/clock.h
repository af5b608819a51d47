// Wall-clock time for records that outlive the process (journals, status): milliseconds since
// the Unix epoch. Durations are measured with std::chrono::steady_clock, never with this.
#pragma once

#include <chrono>
#include <cstdint>

namespace ferry {

inline int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace ferry
