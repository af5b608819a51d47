// The receiver's state cache: an SQLite database (STATE_DIR/cache.db) that remembers, for each
// file ferry wrote on the target, its block hashes keyed by the file's identity, so the next
// stage can offer them to the sender without reading the file. Anything that touches the file
// behind ferry's back changes its ctime, and a changed key hides the entry. It also remembers
// partially received large files (temp files) so an interrupted stage can resume them.
// A cache can always be rebuilt: losing it costs time, never correctness.
// Threading: thread-safe (a mutex serialises the calls on its one connection: a receiver's lanes
// checkpoint beside its main thread); several objects, in one or several processes, may share
// one cache.db (WAL, busy timeout).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/status.h"
#include "protocol/messages.h"  // protocol::Hash128 = std::array<uint8_t,16>

struct sqlite3;
struct sqlite3_stmt;

namespace ferry {

struct FileKey {
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0, ctime_ns = 0;
  bool operator==(const FileKey&) const = default;
};
FileKey FileKeyOf(const struct stat& st);

struct BlockHashes {  // the leaf hashes of a file's fixed-size blocks (the last may be short)
  uint32_t block_size = 0;
  std::vector<protocol::Hash128> leaves;
  bool operator==(const BlockHashes&) const = default;
};

class StateCache {
 public:
  // Opens (creating) DIR/cache.db (creates DIR if missing, mode 0700). A database that cannot
  // be read (corrupt, wrong schema version) is moved aside to cache.db.broken-<unixtime> with a
  // LOG_WARN and a new one is made: a cache can always be rebuilt.
  static Result<std::unique_ptr<StateCache>> Open(const std::string& dir);
  ~StateCache();
  StateCache(const StateCache&) = delete;
  StateCache& operator=(const StateCache&) = delete;

  // The hashes recorded for this file, or nullopt when there is no row for (dev, ino), the
  // row's size/mtime/ctime differ from `key`, the row is dirty, or the stored blob is malformed.
  Result<std::optional<BlockHashes>> Lookup(const FileKey& key);
  // Before ferry writes into a file in place: the row of (dev, ino) is marked dirty (created if
  // absent) and the mark is durable (fsynced) when this returns.
  Status MarkDirty(uint64_t dev, uint64_t ino);
  // After the files' data is durable: stores each key and its hashes (replacing the row of the
  // same dev+ino, clearing dirty), all in one transaction.
  // REQUIRES: each leaves.size() <= kBlocksPerFileMax.
  Status Record(const std::vector<std::pair<FileKey, BlockHashes>>& files);
  Status Forget(uint64_t dev, uint64_t ino);

  // A partially received file: its temp file's name (in the directory of `path`), the temp
  // file's identity, how many leading bytes are durable, and the hashes of the whole blocks in
  // that prefix. Volumes are told apart by their root directory's (dev, ino).
  struct Partial {
    std::string temp_name;
    uint64_t temp_dev = 0, temp_ino = 0;
    uint64_t durable_bytes = 0;
    BlockHashes blocks;
    bool operator==(const Partial&) const = default;
  };
  // REQUIRES: partial.blocks.leaves.size() <= kBlocksPerFileMax.
  Status SavePartial(uint64_t root_dev, uint64_t root_ino, const std::string& path,
                     const Partial& partial);
  // nullopt when there is none or its stored blob is malformed.
  Result<std::optional<Partial>> FindPartial(uint64_t root_dev, uint64_t root_ino,
                                             const std::string& path);
  Status DropPartial(uint64_t root_dev, uint64_t root_ino, const std::string& path);
  // Every partial of a volume (a stage finished: any left are stale).
  Status DropPartials(uint64_t root_dev, uint64_t root_ino);

  // The base token of a target volume (its root's dev and ino): the COMMIT of the last stage
  // that left it as it is, or 0 for none. SetBase and DropBase are durable when they return.
  Result<uint64_t> Base(uint64_t root_dev, uint64_t root_ino);
  Status SetBase(uint64_t root_dev, uint64_t root_ino, uint64_t token);
  Status DropBase(uint64_t root_dev, uint64_t root_ino);

 private:
  std::mutex mutex_;  // held by every public call
  // The statements prepared once by Open and kept for the object's life.
  enum Stmt : int {
    kLookup, kMarkDirty, kRecord, kForget,
    kSavePartial, kFindPartial, kDropPartial, kDropPartials,
    kBase, kSetBase, kDropBase,
    kStmtCount,
  };

  StateCache(sqlite3* db, std::string path);
  static Result<std::unique_ptr<StateCache>> OpenOnce(const std::string& path);
  Status Setup();
  Status Error(const char* what, int rc) const;
  Status Exec(const char* what, const char* sql);
  Result<std::string> QueryText(const char* what, const char* sql);  // first column, first row
  Status StepDone(const char* what, sqlite3_stmt* stmt);
  Status StepIds(Stmt which, const char* what, uint64_t first, uint64_t second);  // binds ?1 ?2

  sqlite3* db_;
  std::string path_;  // DIR/cache.db, for messages
  sqlite3_stmt* stmts_[kStmtCount] = {};
};

}  // namespace ferry
