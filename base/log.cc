#include "base/log.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

namespace ferry {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<bool> g_json{false};
std::mutex g_mutex;
thread_local std::string t_context;

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarning: return "WARN";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}
// A JSON string literal: quotes, backslashes and control bytes escaped; bytes that are not
// UTF-8 (a file name) as \u00XX, read as Latin-1, so every line stays valid JSON.
void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    // A well-formed UTF-8 sequence goes through as it is.
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool valid = len > 1 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) valid = (static_cast<unsigned char>(s[i + k]) >> 6) == 0x2;
    if (valid) {
      out->append(s.substr(i, len));
      i += len;
      continue;
    }
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out->append(buf);
    } else {
      out->push_back(static_cast<char>(c));
    }
    i += 1;
  }
  out->push_back('"');
}

std::string JsonLine(const char* stamp, int ms, LogLevel level, std::string_view context, std::string_view message) {
  std::string line = "{\"ts\":";
  char ts[48];
  std::snprintf(ts, sizeof(ts), "%s.%03dZ", stamp, ms);
  AppendJsonString(&line, ts);
  line += ",\"level\":";
  std::string name = LevelName(level);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  AppendJsonString(&line, name);
  // "session=3 volume=pgdata": each word a field; a word without '=' goes under "context".
  std::string loose;
  size_t start = 0;
  while (start < context.size()) {
    size_t end = context.find(' ', start);
    if (end == std::string_view::npos) end = context.size();
    std::string_view word = context.substr(start, end - start);
    size_t eq = word.find('=');
    if (eq != std::string_view::npos && eq > 0) {
      line.push_back(',');
      AppendJsonString(&line, word.substr(0, eq));
      line.push_back(':');
      AppendJsonString(&line, word.substr(eq + 1));
    } else if (!word.empty()) {
      // Appended piece by piece: no temporary string (g++ 12 at -O3 took the
      // operator+ temporary for an overlapping copy: a -Wrestrict false positive).
      if (!loose.empty()) loose.push_back(' ');
      loose.append(word);
    }
    start = end + 1;
  }
  if (!loose.empty()) {
    line += ",\"context\":";
    AppendJsonString(&line, loose);
  }
  line += ",\"msg\":";
  AppendJsonString(&line, message);
  line += "}\n";
  return line;
}

}  // namespace

void SetLogFormat(LogFormat format) { g_json = format == LogFormat::kJson; }

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void LogLine(LogLevel level, std::string_view message) {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm_utc;
  gmtime_r(&seconds, &tm_utc);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm_utc);
  if (g_json.load()) {
    std::string line = JsonLine(stamp, static_cast<int>(ms), level, t_context, message);
    std::lock_guard<std::mutex> lock(g_mutex);
    std::fwrite(line.data(), 1, line.size(), stderr);
    return;
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "%s.%03dZ %-5s %s%s%s%.*s\n", stamp, static_cast<int>(ms), LevelName(level),
               t_context.empty() ? "" : "[", t_context.c_str(), t_context.empty() ? "" : "] ",
               static_cast<int>(message.size()), message.data());
}

LogContext::LogContext(std::string context) : previous_(std::move(t_context)) {
  t_context = std::move(context);
}
LogContext::~LogContext() { t_context = std::move(previous_); }

}  // namespace ferry
