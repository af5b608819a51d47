// Tree scan on the sender: walks a volume (each directory's entries in name order, sorted
// bytewise, then its subdirectories' subtrees; the root's subtrees side by side) and produces
// the manifest entries with their metadata, xattrs and hard-link identities. Entry 0 is the
// volume root (path ""); every entry comes after its directory's.
// Threading: ScanTree runs on the caller's thread and one helper; the sink is called one entry
// at a time, in id order.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agent/fs.h"
#include "agent/path.h"
#include "agent/sync_types.h"
#include "agent/xattr_cache.h"
#include "base/result.h"
#include "protocol/messages.h"

namespace ferry {

struct ScanOptions {
  bool content_hash = false;  // --checksum: hash every regular file
  XattrFilter xattr_filter;
  const ExcludeList* excludes = nullptr;
  // When set and true, the scan stops early (its result is then incomplete).
  const std::atomic<bool>* cancel = nullptr;
  bool block = false;  // the source is one block device or image file, not a tree
  // The xattrs the last stages read (may be null): an inode whose ctime did not move since is
  // not listed again; what is read is remembered in it. The caller saves it after the scan.
  XattrCache* xattr_cache = nullptr;
  // Where the sender keeps its XattrCache between stages (empty: none; ignored with xattr_cache).
  std::string xattr_cache_dir;
};

// What a sender's scan needs for a sync: hashes with --checksum, the xattrs this process may
// copy, the excludes. REQUIRES: `excludes` outlives the scan.
ScanOptions ScanOptionsFor(const SyncOptions& sync, const ExcludeList* excludes);

struct ScanResult {
  uint64_t entries_count = 0;
  // Parts of the tree that could not be read (named, with the reason). A scan with errors is
  // incomplete, so the receiver must not delete what it did not see.
  std::vector<std::string> errors;
  uint64_t bytes_total = 0;  // sum of regular file sizes
};

// Receives each entry as the scan finds it, in manifest order (ids 0, 1, 2, ...).
using EntrySink = std::function<void(protocol::Entry&& entry)>;

// Walks `root`, handing every entry to `sink`. Fails only when the root itself cannot be read;
// errors below the root are collected in the result.
Result<ScanResult> ScanTree(const std::string& root, const ScanOptions& options, const EntrySink& sink);

// Checks that `root` is a directory this process can read: the error a user sees before any
// connection is made.
Status CheckSourceRoot(const std::string& root);

// xxh3-128 of the whole content of the regular file `name` in `dir_fd` (holes read as zeros).
Result<protocol::Hash128> HashFileContent(int dir_fd, const std::string& name, const std::string& display);

}  // namespace ferry
