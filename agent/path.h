// Relative paths inside a volume: validation of paths that arrive from a peer, and the
// rsync-like exclude patterns. Pure string code; no file system access.
// Threading: functions are pure; an ExcludeList is immutable after construction.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/status.h"

namespace ferry {

// A path from the wire: "" (the volume root) or components joined by single '/'. Refused:
// absolute paths, empty components ("a//b"), ".", "..", NUL, components over NAME_MAX,
// paths over PATH_MAX. Checked before any syscall sees the path.
Status ValidateRelativePath(std::string_view path);

// Splits "a/b/c" into ("a/b", "c"); "c" into ("", "c").
std::pair<std::string_view, std::string_view> SplitParent(std::string_view path);

// Joins a relative path to a parent ("" is the root).
std::string JoinPath(std::string_view parent, std::string_view name);

// Names the receiver gives its temp files; a later stage deletes leftovers by this prefix.
inline constexpr std::string_view kTempPrefix = ".ferry-tmp.";
bool IsTempName(std::string_view name);

// rsync-like exclude patterns:
//   "name" or "*.tmp"      matches the last component at any depth;
//   "dir/"                 (trailing slash) matches directories only;
//   "/top"                 (leading slash) is anchored at the volume root;
//   "a/b", "a/*/c"         (a slash inside) matches the end of the path at a component boundary;
//   "*" and "?" never match '/', "**" does; "[...]" is a character class.
class ExcludeList {
 public:
  static Result<ExcludeList> Make(const std::vector<std::string>& patterns);
  ExcludeList() = default;

  bool Excludes(std::string_view path, bool is_directory) const;
  const std::vector<std::string>& patterns() const { return sources_; }

 private:
  struct Pattern {
    std::string glob;
    bool anchored = false;
    bool directory_only = false;
    bool has_slash = false;
    bool double_star = false;
  };
  std::vector<Pattern> patterns_;
  std::vector<std::string> sources_;
};

}  // namespace ferry
