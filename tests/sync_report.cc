// The parse of `ferry sync --json`: a small strict JSON reader (objects, arrays, strings,
// numbers, booleans), strict so that stray text on stdout fails the test that reads it.
#include <cstdlib>
#include <map>
#include <memory>

#include "tests/process_fixture.h"

namespace ferry_test {
namespace {

struct Value {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  double number = 0;
  std::string number_text;
  std::string text;
  std::vector<Value> items;
  std::map<std::string, Value> fields;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}

  bool ReadDocument(Value* value) {
    if (!ReadValue(value, 0)) return false;
    SkipSpace();
    if (pos_ != in_.size()) return Fail("text after the JSON object");
    return true;
  }
  const std::string& error() const { return error_; }

 private:
  bool Fail(const std::string& what) {
    if (error_.empty()) error_ = what + " at byte " + std::to_string(pos_);
    return false;
  }
  void SkipSpace() {
    while (pos_ < in_.size() && (in_[pos_] == ' ' || in_[pos_] == '\n' || in_[pos_] == '\t' || in_[pos_] == '\r')) {
      pos_ += 1;
    }
  }
  bool Literal(const char* word) {
    size_t n = std::char_traits<char>::length(word);
    if (in_.compare(pos_, n, word) != 0) return false;
    pos_ += n;
    return true;
  }
  bool ReadValue(Value* v, int depth) {
    if (depth > 16) return Fail("nesting too deep");
    SkipSpace();
    if (pos_ >= in_.size()) return Fail("unexpected end");
    char c = in_[pos_];
    if (c == '{') return ReadObject(v, depth);
    if (c == '[') return ReadArray(v, depth);
    if (c == '"') {
      v->kind = Value::kString;
      return ReadString(&v->text);
    }
    if (Literal("true") || Literal("false")) {
      v->kind = Value::kBool;
      v->boolean = in_[pos_ - 1] == 'e' && in_[pos_ - 2] == 'u';
      return true;
    }
    if (Literal("null")) return true;
    size_t start = pos_;
    while (pos_ < in_.size() && std::string("+-.eE0123456789").find(in_[pos_]) != std::string::npos) pos_ += 1;
    if (start == pos_) return Fail("unexpected character");
    v->kind = Value::kNumber;
    v->number_text = in_.substr(start, pos_ - start);
    v->number = std::strtod(v->number_text.c_str(), nullptr);
    return true;
  }
  bool ReadString(std::string* out) {
    pos_ += 1;  // opening quote
    while (pos_ < in_.size() && in_[pos_] != '"') {
      unsigned char c = static_cast<unsigned char>(in_[pos_]);
      if (c < 0x20) return Fail("raw control byte in a string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        pos_ += 1;
        continue;
      }
      if (pos_ + 1 >= in_.size()) return Fail("truncated escape");
      char e = in_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case '"': case '\\': case '/': out->push_back(e); break;
        case 'n': out->push_back('\n'); break;
        case 't': out->push_back('\t'); break;
        case 'r': out->push_back('\r'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'u': {
          if (pos_ + 4 > in_.size()) return Fail("truncated \\u escape");
          unsigned long code = std::strtoul(in_.substr(pos_, 4).c_str(), nullptr, 16);
          // ferry writes every byte >= 0x80 as \u00XX: a code above 0xff is not one of its bytes.
          if (code > 0xff) return Fail("\\u escape above 0xff");
          out->push_back(static_cast<char>(code));
          pos_ += 4;
          break;
        }
        default: return Fail("unknown escape");
      }
    }
    if (pos_ >= in_.size()) return Fail("unterminated string");
    pos_ += 1;
    return true;
  }
  bool ReadArray(Value* v, int depth) {
    v->kind = Value::kArray;
    pos_ += 1;
    SkipSpace();
    if (pos_ < in_.size() && in_[pos_] == ']') return pos_ += 1, true;
    for (;;) {
      v->items.emplace_back();
      if (!ReadValue(&v->items.back(), depth + 1)) return false;
      SkipSpace();
      if (pos_ < in_.size() && in_[pos_] == ',') { pos_ += 1; continue; }
      if (pos_ < in_.size() && in_[pos_] == ']') return pos_ += 1, true;
      return Fail("expected , or ]");
    }
  }
  bool ReadObject(Value* v, int depth) {
    v->kind = Value::kObject;
    pos_ += 1;
    SkipSpace();
    if (pos_ < in_.size() && in_[pos_] == '}') return pos_ += 1, true;
    for (;;) {
      SkipSpace();
      std::string key;
      if (pos_ >= in_.size() || in_[pos_] != '"' || !ReadString(&key)) return Fail("expected a key");
      SkipSpace();
      if (pos_ >= in_.size() || in_[pos_] != ':') return Fail("expected :");
      pos_ += 1;
      if (v->fields.count(key)) return Fail("duplicate key " + key);
      if (!ReadValue(&v->fields[key], depth + 1)) return false;
      SkipSpace();
      if (pos_ < in_.size() && in_[pos_] == ',') { pos_ += 1; continue; }
      if (pos_ < in_.size() && in_[pos_] == '}') return pos_ += 1, true;
      return Fail("expected , or }");
    }
  }

  const std::string& in_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

SyncReport ParseSyncJson(const std::string& stdout_text) {
  SyncReport report;
  Value root;
  Reader reader(stdout_text);
  if (!reader.ReadDocument(&root)) {
    report.parse_error = reader.error() + " in: " + Printable(stdout_text.substr(0, 2000));
    return report;
  }
  if (root.kind != Value::kObject) {
    report.parse_error = "not an object";
    return report;
  }
  const std::pair<const char*, uint64_t*> counters[] = {
      {"files_total", &report.files_total},
      {"files_sent", &report.files_sent},
      {"bytes_total", &report.bytes_total},
      {"bytes_sent_wire", &report.bytes_sent_wire},
      {"bytes_returned_wire", &report.bytes_returned_wire},
      {"bytes_sent_content", &report.bytes_sent_content},
      {"target_bytes_hashed", &report.target_bytes_hashed},
      {"entries_deleted", &report.entries_deleted},
      {"files_changed_during_read", &report.files_changed_during_read},
      {"files_vanished", &report.files_vanished},
      {"files_failed", &report.files_failed},
  };
  for (const auto& [name, out] : counters) {
    auto it = root.fields.find(name);
    if (it == root.fields.end() || it->second.kind != Value::kNumber ||
        it->second.number_text.find_first_not_of("0123456789") != std::string::npos) {
      report.parse_error = std::string("missing or not a count: ") + name;
      return report;
    }
    *out = std::strtoull(it->second.number_text.c_str(), nullptr, 10);
  }
  auto duration = root.fields.find("duration_s");
  auto dry_run = root.fields.find("dry_run");
  auto changes = root.fields.find("changes");
  if (duration == root.fields.end() || duration->second.kind != Value::kNumber ||
      dry_run == root.fields.end() || dry_run->second.kind != Value::kBool ||
      changes == root.fields.end() || changes->second.kind != Value::kArray) {
    report.parse_error = "missing duration_s, dry_run or changes";
    return report;
  }
  report.duration_s = duration->second.number;
  report.dry_run = dry_run->second.boolean;
  auto io_engine = root.fields.find("io_engine");
  if (io_engine == root.fields.end() || io_engine->second.kind != Value::kString) {
    report.parse_error = "missing io_engine";
    return report;
  }
  report.io_engine = io_engine->second.text;
  for (const Value& item : changes->second.items) {
    Change change;
    for (auto [key, out] : {std::pair{"action", &change.action}, {"type", &change.type}, {"path", &change.path}}) {
      auto it = item.fields.find(key);
      if (item.kind != Value::kObject || it == item.fields.end() || it->second.kind != Value::kString) {
        report.parse_error = std::string("a change without a string ") + key;
        return report;
      }
      *out = it->second.text;
    }
    report.changes.push_back(std::move(change));
  }
  report.parsed = true;
  return report;
}

bool SyncReport::Has(const std::string& path, const std::string& action) const {
  for (const Change& c : changes) {
    if (c.path == path && (action.empty() || c.action == action)) return true;
  }
  return false;
}

std::string SyncReport::ChangesText() const {
  std::string out;
  for (const Change& c : changes) out += c.action + " " + c.type + " " + Printable(c.path) + "\n";
  return out;
}

}  // namespace ferry_test
