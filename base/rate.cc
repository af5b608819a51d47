#include "base/rate.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "base/check.h"

namespace ferry {

TokenBucket::TokenBucket(uint64_t bytes_per_second, uint64_t burst_bytes, Clock now)
    : rate_(static_cast<double>(bytes_per_second) / 1e9),
      burst_(static_cast<double>(burst_bytes)),
      tokens_(static_cast<double>(burst_bytes)),
      now_(std::move(now)) {
  CHECK(bytes_per_second > 0 && burst_bytes > 0);
  last_ = now_();
}

int64_t TokenBucket::Reserve(uint64_t bytes) {
  const int64_t now = now_();
  tokens_ = std::min(burst_, tokens_ + static_cast<double>(now - last_) * rate_);
  last_ = now;
  tokens_ -= static_cast<double>(bytes);
  if (tokens_ >= 0) return 0;
  return static_cast<int64_t>(std::ceil(-tokens_ / rate_));
}

Result<uint64_t> ParseByteRate(const std::string& text) {
  std::string t = text;
  if (t.size() > 2 && t.compare(t.size() - 2, 2, "/s") == 0) t.resize(t.size() - 2);
  double unit = 1;
  if (!t.empty()) {
    switch (t.back()) {
      case 'K': case 'k': unit = 1024.0; break;
      case 'M': case 'm': unit = 1024.0 * 1024; break;
      case 'G': case 'g': unit = 1024.0 * 1024 * 1024; break;
      default: break;
    }
    if (unit != 1) t.pop_back();
  }
  char* end = nullptr;
  double value = t.empty() ? 0 : std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || !(value > 0) || value * unit >= 1.8e19) {
    return Status::InvalidArgument("rate '" + text + "' is not a positive number of bytes per second (e.g. 50M, 1G)");
  }
  return static_cast<uint64_t>(std::max(1.0, value * unit));
}

}  // namespace ferry
