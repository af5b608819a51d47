// JSON output helpers of the command line (`--json` of ferry sync and ferry bench).
// Threading: pure functions.
#pragma once

#include <cstdio>
#include <string>

namespace ferry {

// A JSON string literal of `s`. JSON strings must be Unicode: bytes >= 0x80 and control bytes are
// written as \u00XX (read as Latin-1), so any path prints as valid JSON.
inline std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

}  // namespace ferry
