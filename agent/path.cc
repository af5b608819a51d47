#include "agent/path.h"

#include <fnmatch.h>

#include "base/bounds.h"

namespace ferry {

Status ValidateRelativePath(std::string_view path) {
  if (path.empty()) return Status::Ok();  // the volume root
  if (path.size() > kPathMaxBytes) return Status::Corruption("path longer than PATH_MAX");
  if (path.find('\0') != std::string_view::npos) return Status::Corruption("path holds a NUL byte");
  if (path.front() == '/') return Status::Corruption("absolute path '" + std::string(path) + "'");
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view name = path.substr(start, end - start);
    if (name.empty()) return Status::Corruption("path '" + std::string(path) + "' has an empty component");
    if (name == "." || name == "..") {
      return Status::Corruption("path '" + std::string(path) + "' has a '.' or '..' component");
    }
    if (name.size() > kNameMaxBytes) return Status::Corruption("path component longer than NAME_MAX");
    start = end + 1;
  }
  return Status::Ok();
}

std::pair<std::string_view, std::string_view> SplitParent(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

std::string JoinPath(std::string_view parent, std::string_view name) {
  if (name.empty()) return std::string(parent);
  while (parent.size() > 1 && parent.back() == '/') parent.remove_suffix(1);
  std::string out;
  out.reserve(parent.size() + 1 + name.size());
  out.append(parent);
  if (!parent.empty() && parent.back() != '/') out.push_back('/');
  out.append(name);
  return out;
}

bool IsTempName(std::string_view name) { return name.substr(0, kTempPrefix.size()) == kTempPrefix; }

Result<ExcludeList> ExcludeList::Make(const std::vector<std::string>& patterns) {
  if (patterns.size() > kExcludePatternsMax) {
    return Status::InvalidArgument("more than " + std::to_string(kExcludePatternsMax) + " exclude patterns");
  }
  ExcludeList list;
  list.sources_ = patterns;
  for (const std::string& source : patterns) {
    if (source.empty() || source.size() > kExcludePatternMaxBytes || source == "/") {
      return Status::InvalidArgument("exclude pattern '" + source + "' is empty, '/' or too long");
    }
    Pattern p;
    std::string glob = source;
    if (glob.size() > 1 && glob.back() == '/') {
      p.directory_only = true;
      glob.pop_back();
    }
    if (glob.front() == '/') {
      p.anchored = true;
      glob.erase(0, 1);
    }
    p.has_slash = glob.find('/') != std::string::npos;
    p.double_star = glob.find("**") != std::string::npos;
    p.glob = std::move(glob);
    list.patterns_.push_back(std::move(p));
  }
  return list;
}

bool ExcludeList::Excludes(std::string_view path, bool is_directory) const {
  if (patterns_.empty() || path.empty()) return false;
  std::string subject(path);
  for (const Pattern& p : patterns_) {
    if (p.directory_only && !is_directory) continue;
    int flags = p.double_star ? 0 : FNM_PATHNAME;
    if (p.anchored) {
      if (fnmatch(p.glob.c_str(), subject.c_str(), flags) == 0) return true;
      continue;
    }
    if (!p.has_slash) {
      size_t slash = subject.rfind('/');
      const char* last = subject.c_str() + (slash == std::string::npos ? 0 : slash + 1);
      if (fnmatch(p.glob.c_str(), last, flags) == 0) return true;
      continue;
    }
    // A pattern with an inner slash matches any tail of the path that starts a component.
    for (size_t start = 0; start < subject.size();) {
      if (fnmatch(p.glob.c_str(), subject.c_str() + start, flags) == 0) return true;
      size_t slash = subject.find('/', start);
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
  }
  return false;
}

}  // namespace ferry
