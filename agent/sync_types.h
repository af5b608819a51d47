// What a sync is asked to do (SyncOptions), what it reports while it runs (SyncProgress) and
// when it ends (SyncSummary). Shared by the sender, the receiver and the command line.
// Threading: SyncProgress is written by the session's threads and read by anyone.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "protocol/messages.h"

namespace ferry {

struct SyncOptions {
  bool dry_run = false;
  bool checksum = false;     // compare content, not size + mtime
  bool no_selinux = false;   // leave security.selinux alone
  bool no_xattrs = false;    // leave all xattrs and ACLs alone (rsync without -X and -A)
  bool itemize = false;      // the receiver reports every change
  bool allow_empty_source = false;  // an empty source may delete everything on the target
  bool block = false;        // source and target are block devices or image files
  bool partial = false;      // a tracked stage: a partial manifest (protocol::kOptPartial)
  std::vector<std::string> excludes;

  uint32_t WireFlags() const;
  static SyncOptions FromOpen(const protocol::Open& open);
};

struct SyncProgress {
  std::atomic<uint64_t> entries_total{0};
  std::atomic<uint64_t> files_needed{0};
  std::atomic<uint64_t> bytes_needed{0};
  std::atomic<bool> needs_complete{false};  // every NEED has arrived: the totals are final
  std::atomic<uint64_t> files_sent{0};
  std::atomic<uint64_t> bytes_sent{0};  // file content bytes, before compression
  // Bytes of needed files that are done without being sent: holes, and the rest of files that
  // shrank or vanished. bytes_sent + bytes_skipped reaches bytes_needed at the end.
  std::atomic<uint64_t> bytes_skipped{0};
  std::atomic<uint64_t> wire_bytes{0};
};

struct SyncSummary {
  uint64_t files_total = 0;  // entries in the source manifest
  uint64_t files_sent = 0;
  uint64_t bytes_total = 0;  // size of the source's regular files
  uint64_t bytes_sent_wire = 0;      // sender to receiver: manifest, data, deltas (framed, compressed)
  uint64_t bytes_returned_wire = 0;  // receiver to sender: needs, block hashes, reports
  uint64_t entries_deleted = 0;
  uint64_t files_changed_during_read = 0;
  uint64_t files_vanished = 0;
  uint64_t files_failed = 0;
  uint64_t target_bytes_hashed = 0;  // target files read to hash a basis (not in the state cache)
  double duration_s = 0;
  uint32_t streams = 1;  // data streams the session ran on
  uint64_t base_token = 0;  // COMMIT's: the next stage may be partial from this one (0: not)
  std::vector<std::string> errors;  // source parts that could not be read, files that failed
  // The sender's: files this stage sent but cannot vouch for (changed while read, unreadable,
  // vanished), by path; and whether the scan missed part of the tree. A tracked stage after it
  // looks at these again (daemon/tracking.h): no later change of theirs need come to say so.
  std::vector<std::string> unsettled;
  bool scan_incomplete = false;
};

// Receives the receiver's itemised changes (dry run, --itemize).
using ItemSink = std::function<void(const protocol::Item&)>;

}  // namespace ferry
