// JSON helpers of the command line (`--json` of ferry sync and ferry bench) and of the control
// API's messages. Threading: pure functions.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"

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

// An unsigned field of a reply; 0 when absent or of another type (an older peer's reply).
inline uint64_t JsonUint(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// Text of a reply, a log line or a journal row: bytes that are not UTF-8 (a file name in an
// error) become U+FFFD instead of an exception.
inline std::string DumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Text of a request, whose strings must arrive as given (an exclude pattern): bytes that are
// not UTF-8 are refused.
inline Result<std::string> DumpJsonExact(const nlohmann::json& j) {
  try {
    return j.dump();
  } catch (const nlohmann::json::exception&) {
    return Status::InvalidArgument("a name or pattern is not UTF-8: the control API carries UTF-8 text only");
  }
}

// A field of a request or a journal row: absent (or null) leaves *out as it is; present, it must
// have the right type.
template <typename T>
Status JsonField(const nlohmann::json& object, const char* name, T* out) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return Status::Ok();
  try {
    *out = it->get<T>();
  } catch (const nlohmann::json::exception&) {
    return Status::InvalidArgument(std::string("field '") + name + "' has the wrong type (" + it->type_name() + ")");
  }
  return Status::Ok();
}

}  // namespace ferry
