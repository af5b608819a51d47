// Logging: one line per event on stderr, "TIME LEVEL [context] message", or with
// SetLogFormat(kJson) one JSON object per line for cluster log pipelines:
//   {"ts":"2026-11-27T09:00:00.123Z","level":"info","session":"3","volume":"pgdata","msg":"..."}
// The context ("key=value" words: session id, stage id, volume) is per thread: set it with
// LogContext at the top of a session's thread; in JSON each word is a field.
// Threading: safe from any thread; lines never interleave.
#pragma once

#include <string>
#include <string_view>

namespace ferry {

enum class LogLevel { kDebug = 0, kInfo, kWarning, kError };
enum class LogFormat { kText, kJson };

void SetLogLevel(LogLevel level);
void SetLogFormat(LogFormat format);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view message);

// Sets this thread's log context ("key=value key=value") for the lifetime of the object and
// restores it after.
class LogContext {
 public:
  explicit LogContext(std::string context);
  ~LogContext();
  LogContext(const LogContext&) = delete;
  LogContext& operator=(const LogContext&) = delete;

 private:
  std::string previous_;
};

}  // namespace ferry

#define FERRY_LOG(level, message)                                        \
  do {                                                                   \
    if (::ferry::LogEnabled(level)) ::ferry::LogLine(level, (message)); \
  } while (0)
#define LOG_INFO(m) FERRY_LOG(::ferry::LogLevel::kInfo, m)
#define LOG_WARN(m) FERRY_LOG(::ferry::LogLevel::kWarning, m)
#define LOG_ERROR(m) FERRY_LOG(::ferry::LogLevel::kError, m)
#define LOG_DEBUG(m) FERRY_LOG(::ferry::LogLevel::kDebug, m)
