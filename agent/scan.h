// Tree scan on the sender: walks a volume (each directory's entries in name order, sorted
// bytewise; the directories on four threads, each directory after its own entry) and produces
// the manifest entries with their metadata, xattrs and hard-link identities. Entry 0 is the
// volume root (path ""); every entry comes after its directory's.
// Threading: ScanTree runs on the caller's thread and three helpers; the sink is called one
// entry at a time, in id order.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
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
  // A tracked stage: the manifest ScanChanges made, sent instead of a walk (may be null).
  // REQUIRES: it outlives the sender.
  const std::vector<protocol::Entry>* manifest = nullptr;
  // A walk of everything where the source's changes are known all the same (a tracked stage
  // that had to walk): the files named there are flagged changed (protocol::kEntryChanged).
  // REQUIRES: it outlives the scan.
  const std::map<std::string, std::set<std::string>>* changed_hint = nullptr;
  // A walk fills it (may be null) with the names of every file that has more than one hard
  // link, for the partial manifests after it (ScanChanges); left empty past kLinkNamesMax names.
  std::map<std::pair<uint64_t, uint64_t>, std::set<std::string>>* links_out = nullptr;
};

// The names of files with more than one hard link, by identity (st_dev, st_ino).
using LinkNames = std::map<std::pair<uint64_t, uint64_t>, std::set<std::string>>;
constexpr size_t kLinkNamesMax = size_t{1} << 20;  // ~100 bytes each

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

// What changed in a tree since some point, per directory (relative path, "" for the root): the
// names of its entries that changed ("." for its own metadata), as ChangeTracker reports them.
using ChangedDirs = std::map<std::string, std::set<std::string>>;

// A partial manifest (protocol::kOptPartial) of `root` from what changed: the root and the
// directories on the way to each changed one, flagged partial_listing (their other entries are
// untouched); each changed name as it is now: an entry, a kEntryGone one if the source no longer
// has it, and for a directory its whole subtree (it was made or moved in: the target has none of
// it there). A changed file with more than one hard link comes with all its names, each flagged
// changed, when they are all known: its names in `links` (what a walk saw, may be null) and the
// changed ones that still name it, as many as its link count; `links` then keeps those.
// Fails with kUnsupported, the reason in its message, when a partial manifest cannot be exact,
// so that the stage walks the whole tree: a changed file with names it does not know (perhaps in
// unchanged directories, or outside the volume), or more than `entries_max` entries (a walk
// costs no more), or a part it could not read (a walk reports it as the stage's error).
Result<std::vector<protocol::Entry>> ScanChanges(const std::string& root, const ScanOptions& options,
                                                 const ChangedDirs& changed, size_t entries_max,
                                                 LinkNames* links = nullptr);

// Checks that `root` is a directory this process can read: the error a user sees before any
// connection is made.
Status CheckSourceRoot(const std::string& root);

// xxh3-128 of the whole content of the regular file `name` in `dir_fd` (holes read as zeros).
Result<protocol::Hash128> HashFileContent(int dir_fd, const std::string& name, const std::string& display);

}  // namespace ferry
