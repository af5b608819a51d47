#include "agent/state_cache.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "base/bounds.h"
#include "base/check.h"
#include "base/log.h"

namespace ferry {
namespace {

// Bumped whenever a table changes (with the user_version set in kSchemaSql); a file with
// another version is moved aside and rebuilt.
constexpr const char* kSchemaVersion = "2";
// Several daemon sessions and a local `ferry sync` may share the file; each holds the write lock
// for one short transaction (one fsync), so waiting beats failing a stage.
constexpr int kBusyTimeoutMs = 10'000;

// Rowid tables rather than WITHOUT ROWID: a row's leaves can be megabytes.
constexpr const char* kSchemaSql = R"(
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS files (
  dev INTEGER NOT NULL, ino INTEGER NOT NULL,
  size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
  dirty INTEGER NOT NULL, block_size INTEGER NOT NULL, leaves BLOB NOT NULL,
  PRIMARY KEY (dev, ino));
CREATE TABLE IF NOT EXISTS partials (
  root_dev INTEGER NOT NULL, root_ino INTEGER NOT NULL, path BLOB NOT NULL,
  temp_name BLOB NOT NULL, temp_dev INTEGER NOT NULL, temp_ino INTEGER NOT NULL,
  durable_bytes INTEGER NOT NULL, block_size INTEGER NOT NULL, leaves BLOB NOT NULL,
  PRIMARY KEY (root_dev, root_ino, path));
CREATE TABLE IF NOT EXISTS bases (
  root_dev INTEGER NOT NULL, root_ino INTEGER NOT NULL, token INTEGER NOT NULL,
  PRIMARY KEY (root_dev, root_ino));
PRAGMA user_version = 2;
COMMIT;
)";

// Indexed by StateCache::Stmt. Paths and names are BLOBs: they are any bytes but NUL and '/'.
constexpr const char* kStmtSql[] = {
    "SELECT size, mtime_ns, ctime_ns, dirty, block_size, leaves FROM files"
    " WHERE dev = ?1 AND ino = ?2",
    "INSERT INTO files (dev, ino, size, mtime_ns, ctime_ns, dirty, block_size, leaves)"
    " VALUES (?1, ?2, 0, 0, 0, 1, 0, x'') ON CONFLICT (dev, ino) DO UPDATE SET dirty = 1",
    "INSERT OR REPLACE INTO files (dev, ino, size, mtime_ns, ctime_ns, dirty, block_size, leaves)"
    " VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
    "DELETE FROM files WHERE dev = ?1 AND ino = ?2",
    "INSERT OR REPLACE INTO partials (root_dev, root_ino, path, temp_name, temp_dev, temp_ino,"
    " durable_bytes, block_size, leaves) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    "SELECT temp_name, temp_dev, temp_ino, durable_bytes, block_size, leaves FROM partials"
    " WHERE root_dev = ?1 AND root_ino = ?2 AND path = ?3",
    "DELETE FROM partials WHERE root_dev = ?1 AND root_ino = ?2 AND path = ?3",
    "DELETE FROM partials WHERE root_dev = ?1 AND root_ino = ?2",
    "SELECT token FROM bases WHERE root_dev = ?1 AND root_ino = ?2",
    "INSERT OR REPLACE INTO bases (root_dev, root_ino, token) VALUES (?1, ?2, ?3)",
    "DELETE FROM bases WHERE root_dev = ?1 AND root_ino = ?2",
};

static_assert(sizeof(protocol::Hash128) == 16, "leaves are stored as packed 16-byte hashes");

// A statement left stepping holds its read snapshot open (and stops WAL checkpoints), and bound
// blobs point into the caller's memory: every use ends with a reset.
class ScopedReset {
 public:
  explicit ScopedReset(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~ScopedReset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  ScopedReset(const ScopedReset&) = delete;
  ScopedReset& operator=(const ScopedReset&) = delete;

 private:
  sqlite3_stmt* stmt_;
};

// SQLite integers are signed 64-bit; u64 identities are stored bit for bit.
void BindU64(sqlite3_stmt* stmt, int index, uint64_t value) {
  CHECK(sqlite3_bind_int64(stmt, index, static_cast<int64_t>(value)) == SQLITE_OK);
}
void BindIds(sqlite3_stmt* stmt, uint64_t first, uint64_t second) {
  BindU64(stmt, 1, first);
  BindU64(stmt, 2, second);
}
uint64_t ColumnU64(sqlite3_stmt* stmt, int column) {
  return static_cast<uint64_t>(sqlite3_column_int64(stmt, column));
}

// SQLITE_STATIC: the bytes outlive the step (ScopedReset unbinds them). A null pointer would
// bind NULL, so an empty blob points at a dummy byte.
void BindBlob(sqlite3_stmt* stmt, int index, const void* data, size_t size_bytes) {
  static const char kEmpty = 0;
  const void* bytes = size_bytes == 0 ? &kEmpty : data;
  CHECK(sqlite3_bind_blob64(stmt, index, bytes, size_bytes, SQLITE_STATIC) == SQLITE_OK);
}
void BindVolumePath(sqlite3_stmt* stmt, uint64_t root_dev, uint64_t root_ino,
                    const std::string& path) {
  BindIds(stmt, root_dev, root_ino);
  BindBlob(stmt, 3, path.data(), path.size());
}
void BindLeaves(sqlite3_stmt* stmt, int index, const BlockHashes& blocks) {
  CHECK_LE(blocks.leaves.size(), kBlocksPerFileMax);
  BindBlob(stmt, index, blocks.leaves.data(), blocks.leaves.size() * sizeof(protocol::Hash128));
}

// The hashes of a row, or nullopt when they are not what Record/SavePartial write (a damaged
// file, or one written by something else): a miss is always safe.
std::optional<BlockHashes> ColumnBlocks(sqlite3_stmt* stmt, int size_column, int leaves_column) {
  int64_t block_size = sqlite3_column_int64(stmt, size_column);
  if (block_size < 0 || block_size > int64_t{UINT32_MAX}) return std::nullopt;
  if (sqlite3_column_type(stmt, leaves_column) != SQLITE_BLOB) return std::nullopt;
  const void* bytes = sqlite3_column_blob(stmt, leaves_column);
  size_t size_bytes = static_cast<size_t>(sqlite3_column_bytes(stmt, leaves_column));
  if (size_bytes % sizeof(protocol::Hash128) != 0) return std::nullopt;
  if (size_bytes / sizeof(protocol::Hash128) > kBlocksPerFileMax) return std::nullopt;
  if (size_bytes > 0 && bytes == nullptr) return std::nullopt;  // out of memory: treat as a miss
  BlockHashes blocks;
  blocks.block_size = static_cast<uint32_t>(block_size);
  blocks.leaves.resize(size_bytes / sizeof(protocol::Hash128));
  if (size_bytes > 0) std::memcpy(blocks.leaves.data(), bytes, size_bytes);
  return blocks;
}

Code CodeOf(int rc) {
  switch (rc & 0xff) {
    case SQLITE_FULL: return Code::kNoSpace;
    case SQLITE_BUSY: case SQLITE_LOCKED: return Code::kBusy;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: return Code::kCorruption;
    case SQLITE_PERM: case SQLITE_READONLY: case SQLITE_AUTH: return Code::kPermission;
    default: return Code::kIoError;
  }
}

// Keeps the broken file (and its WAL) for a post-mortem. The shared-memory index only describes
// the WAL, so it goes. A file already gone was moved by another process that found it broken.
Status MoveAside(const std::string& path, const std::string& broken) {
  for (const char* suffix : {"", "-wal", "-journal"}) {
    std::string from = path + suffix, to = broken + suffix;
    if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
      return Status::Errno(errno, "state cache: move '" + from + "' aside to '" + to + "'");
    }
  }
  std::string shm = path + "-shm";
  if (::unlink(shm.c_str()) != 0 && errno != ENOENT) {
    return Status::Errno(errno, "state cache: remove '" + shm + "'");
  }
  return Status::Ok();
}

int64_t TimeNs(const struct timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

}  // namespace

FileKey FileKeyOf(const struct stat& st) {
  return FileKey{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                 static_cast<uint64_t>(st.st_size), TimeNs(st.st_mtim), TimeNs(st.st_ctim)};
}

StateCache::StateCache(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

StateCache::~StateCache() {
  for (sqlite3_stmt* stmt : stmts_) sqlite3_finalize(stmt);  // null is a no-op
  if (sqlite3_close(db_) != SQLITE_OK) {
    LOG_WARN("state cache '" + path_ + "': close: " + sqlite3_errmsg(db_));
  }
}

Result<std::unique_ptr<StateCache>> StateCache::Open(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::Errno(errno, "state cache: create directory '" + dir + "'");
  }
  std::string path = dir + "/cache.db";
  Result<std::unique_ptr<StateCache>> cache = OpenOnce(path);
  // Only an unreadable file is replaced; a locked or unwritable one is the caller's problem.
  if (cache.ok() || cache.status().code() != Code::kCorruption) return cache;
  std::string broken = path + ".broken-" + std::to_string(::time(nullptr));
  LOG_WARN(cache.status().ToString() + "; moving it aside to '" + broken +
           "' and starting an empty cache");
  FERRY_RETURN_IF_ERROR(MoveAside(path, broken));
  return OpenOnce(path);
}

Result<std::unique_ptr<StateCache>> StateCache::OpenOnce(const std::string& path) {
  sqlite3* db = nullptr;
  // NOMUTEX: each object is used from one thread, so SQLite's own locking would be waste.
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (db == nullptr) return Status::IoError("state cache '" + path + "': out of memory");
  std::unique_ptr<StateCache> cache(new StateCache(db, path));  // closes db on every return
  if (rc != SQLITE_OK) return cache->Error("open", rc);
  FERRY_RETURN_IF_ERROR(cache->Setup());
  return cache;
}

// Errors that mean "this file is not a cache this ferry can read" come back as kCorruption.
Status StateCache::Setup() {
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  // WAL: readers never block the writer, and a commit is one append + fsync.
  Result<std::string> mode = QueryText("set journal mode", "PRAGMA journal_mode = WAL");
  if (!mode.ok()) return mode.status();
  if (*mode != "wal") {
    return Status::Unsupported("state cache '" + path_ + "': the file system does not support " +
                               "SQLite's WAL mode (journal mode '" + *mode + "')");
  }
  // FULL: every commit is fsynced, so a dirty mark is on disk before ferry writes the file.
  FERRY_RETURN_IF_ERROR(Exec("set synchronous", "PRAGMA synchronous = FULL"));
  Result<std::string> version = QueryText("read schema version", "PRAGMA user_version");
  if (!version.ok()) return version.status();
  if (*version == "0") {
    // A new file. BEGIN IMMEDIATE serialises processes that find it empty at the same time.
    FERRY_RETURN_IF_ERROR(Exec("create schema", kSchemaSql));
  } else if (*version != kSchemaVersion) {
    return Status::Corruption("state cache '" + path_ + "': schema version " + *version +
                              ", this ferry reads version " + kSchemaVersion);
  }
  for (int i = 0; i < kStmtCount; ++i) {
    int rc = sqlite3_prepare_v3(db_, kStmtSql[i], -1, SQLITE_PREPARE_PERSISTENT, &stmts_[i],
                                nullptr);
    // SQLITE_ERROR here is "no such table/column": our version number on someone else's tables.
    if (rc == SQLITE_ERROR) return Status::Corruption(Error("prepare", rc).message());
    if (rc != SQLITE_OK) return Error("prepare", rc);
  }
  return Status::Ok();
}

Status StateCache::Error(const char* what, int rc) const {
  std::string message = "state cache '" + path_ + "': " + what + ": " + sqlite3_errmsg(db_);
  return Status::Make(CodeOf(rc), std::move(message), sqlite3_system_errno(db_));
}

Status StateCache::Exec(const char* what, const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status::Ok() : Error(what, rc);
}

Result<std::string> StateCache::QueryText(const char* what, const char* sql) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql, -1, &raw, nullptr);
  std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> stmt(raw, sqlite3_finalize);
  if (rc != SQLITE_OK) return Error(what, rc);
  rc = sqlite3_step(stmt.get());
  if (rc != SQLITE_ROW) return Error(what, rc);
  const unsigned char* text = sqlite3_column_text(stmt.get(), 0);
  return std::string(text == nullptr ? "" : reinterpret_cast<const char*>(text));
}

Status StateCache::StepDone(const char* what, sqlite3_stmt* stmt) {
  int rc = sqlite3_step(stmt);
  return rc == SQLITE_DONE ? Status::Ok() : Error(what, rc);
}

Status StateCache::StepIds(Stmt which, const char* what, uint64_t first, uint64_t second) {
  ScopedReset reset(stmts_[which]);
  BindIds(stmts_[which], first, second);
  return StepDone(what, stmts_[which]);
}

Result<std::optional<BlockHashes>> StateCache::Lookup(const FileKey& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* stmt = stmts_[kLookup];
  ScopedReset reset(stmt);
  BindIds(stmt, key.dev, key.ino);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return std::optional<BlockHashes>();
  if (rc != SQLITE_ROW) return Error("lookup", rc);
  // Dirty: ferry began writing the file in place and never recorded the result.
  if (sqlite3_column_int64(stmt, 3) != 0) return std::optional<BlockHashes>();
  if (ColumnU64(stmt, 0) != key.size || sqlite3_column_int64(stmt, 1) != key.mtime_ns ||
      sqlite3_column_int64(stmt, 2) != key.ctime_ns) {
    return std::optional<BlockHashes>();
  }
  return ColumnBlocks(stmt, 4, 5);
}

Status StateCache::MarkDirty(uint64_t dev, uint64_t ino) {
  std::lock_guard<std::mutex> lock(mutex_);
  return StepIds(kMarkDirty, "mark dirty", dev, ino);  // autocommit; synchronous=FULL fsyncs it
}

Status StateCache::Record(const std::vector<std::pair<FileKey, BlockHashes>>& files) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (files.empty()) return Status::Ok();  // spare the fsync
  // One transaction: one fsync for the whole group rather than one per file.
  FERRY_RETURN_IF_ERROR(Exec("record: begin", "BEGIN IMMEDIATE"));
  Status status;
  sqlite3_stmt* stmt = stmts_[kRecord];
  for (const auto& [key, blocks] : files) {
    ScopedReset reset(stmt);
    BindIds(stmt, key.dev, key.ino);
    BindU64(stmt, 3, key.size);
    CHECK(sqlite3_bind_int64(stmt, 4, key.mtime_ns) == SQLITE_OK);
    CHECK(sqlite3_bind_int64(stmt, 5, key.ctime_ns) == SQLITE_OK);
    BindU64(stmt, 6, blocks.block_size);
    BindLeaves(stmt, 7, blocks);
    status = StepDone("record", stmt);
    if (!status.ok()) break;
  }
  if (status.ok()) status = Exec("record: commit", "COMMIT");
  // Some errors (disk full, I/O) roll back by themselves; others leave the transaction open.
  if (!status.ok() && sqlite3_get_autocommit(db_) == 0) {
    Status rollback = Exec("record: rollback", "ROLLBACK");
    if (!rollback.ok()) LOG_WARN(rollback.ToString());
  }
  return status;
}

Status StateCache::Forget(uint64_t dev, uint64_t ino) {
  std::lock_guard<std::mutex> lock(mutex_);
  return StepIds(kForget, "forget", dev, ino);
}

Status StateCache::SavePartial(uint64_t root_dev, uint64_t root_ino, const std::string& path,
                               const Partial& partial) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* stmt = stmts_[kSavePartial];
  ScopedReset reset(stmt);
  BindVolumePath(stmt, root_dev, root_ino, path);
  BindBlob(stmt, 4, partial.temp_name.data(), partial.temp_name.size());
  BindU64(stmt, 5, partial.temp_dev);
  BindU64(stmt, 6, partial.temp_ino);
  BindU64(stmt, 7, partial.durable_bytes);
  BindU64(stmt, 8, partial.blocks.block_size);
  BindLeaves(stmt, 9, partial.blocks);
  return StepDone("save partial", stmt);
}

Result<std::optional<StateCache::Partial>> StateCache::FindPartial(uint64_t root_dev,
                                                                   uint64_t root_ino,
                                                                   const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* stmt = stmts_[kFindPartial];
  ScopedReset reset(stmt);
  BindVolumePath(stmt, root_dev, root_ino, path);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return std::optional<Partial>();
  if (rc != SQLITE_ROW) return Error("find partial", rc);
  std::optional<BlockHashes> blocks = ColumnBlocks(stmt, 4, 5);
  if (!blocks || sqlite3_column_type(stmt, 0) != SQLITE_BLOB) return std::optional<Partial>();
  const void* name = sqlite3_column_blob(stmt, 0);
  size_t name_bytes = static_cast<size_t>(sqlite3_column_bytes(stmt, 0));
  if (name_bytes > 0 && name == nullptr) return std::optional<Partial>();  // out of memory
  Partial partial;
  if (name_bytes > 0) partial.temp_name.assign(static_cast<const char*>(name), name_bytes);
  partial.temp_dev = ColumnU64(stmt, 1);
  partial.temp_ino = ColumnU64(stmt, 2);
  partial.durable_bytes = ColumnU64(stmt, 3);
  partial.blocks = std::move(*blocks);
  return std::optional<Partial>(std::move(partial));
}

Status StateCache::DropPartial(uint64_t root_dev, uint64_t root_ino, const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* stmt = stmts_[kDropPartial];
  ScopedReset reset(stmt);
  BindVolumePath(stmt, root_dev, root_ino, path);
  return StepDone("drop partial", stmt);
}

Status StateCache::DropPartials(uint64_t root_dev, uint64_t root_ino) {
  std::lock_guard<std::mutex> lock(mutex_);
  return StepIds(kDropPartials, "drop partials", root_dev, root_ino);
}

Result<uint64_t> StateCache::Base(uint64_t root_dev, uint64_t root_ino) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* stmt = stmts_[kBase];
  ScopedReset reset(stmt);
  BindIds(stmt, root_dev, root_ino);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return uint64_t{0};
  if (rc != SQLITE_ROW) return Error("read base", rc);
  return ColumnU64(stmt, 0);
}

Status StateCache::SetBase(uint64_t root_dev, uint64_t root_ino, uint64_t token) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* stmt = stmts_[kSetBase];
  ScopedReset reset(stmt);
  BindIds(stmt, root_dev, root_ino);
  BindU64(stmt, 3, token);
  return StepDone("keep base", stmt);
}

Status StateCache::DropBase(uint64_t root_dev, uint64_t root_ino) {
  std::lock_guard<std::mutex> lock(mutex_);
  return StepIds(kDropBase, "drop base", root_dev, root_ino);
}

}  // namespace ferry
