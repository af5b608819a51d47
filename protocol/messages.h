// Messages: the payloads of frames, one struct per message type, each with Encode and Decode.
// Decoders check every length, count and enum against base/bounds.h and reject trailing bytes.
// protocol/FORMAT.md is the specification. Pure code. Threading: plain values.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/status.h"

namespace ferry::protocol {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr uint32_t kProtocolVersionMin = 1;

enum class MessageType : uint8_t {
  kHello = 1,
  kWelcome = 2,
  kOpen = 3,
  kOpenOk = 4,
  kEntries = 5,
  kEntriesEnd = 6,
  kNeed = 7,
  kNeedEnd = 8,
  kData = 9,
  kFileEnd = 10,
  kDone = 11,
  kItems = 12,
  kCommit = 13,
  kError = 14,
  kKeepalive = 15,  // empty; either side, when it has sent nothing for a while
  kHashes = 16,     // receiver: block hashes of the target's copy (a basis) of a needed file
  kWant = 17,       // sender: the children of these tree nodes, please
  kPatch = 18,      // sender: how a file with a basis will be sent
  kHole = 19,       // sender: a range of a patched file that is zeros
  kSignature = 20,  // receiver: librsync signature of a basis, in pieces
  kDelta = 21,      // sender: librsync delta against that signature, in pieces
  kJoin = 22,       // client, on an extra connection: a data stream of an open session
  kJoined = 23,     // daemon: the stream is part of the session (empty)
};
inline constexpr uint8_t kMessageTypeMax = 23;
const char* MessageTypeName(uint8_t type);
// Whether a frame of this type may arrive at all: the session types 1..kMessageTypeMax and the
// bench types kBenchTypeFirst..kBenchTypeLast (FORMAT.md, "Bench").
bool IsKnownMessageType(uint8_t type);

// Capabilities (HELLO / WELCOME): the intersection is what the session may use.
inline constexpr uint64_t kCapZstd = 1u << 0;
// A file sent whole over the data streams has its FILE_END on the stream that carried its last
// range, behind its data, not on the session's connection (FORMAT.md, "Session").
inline constexpr uint64_t kCapEndOnStream = 1u << 1;
inline constexpr uint64_t kCapsAll = kCapZstd | kCapEndOnStream;

struct Hello {
  uint32_t version_min = kProtocolVersionMin;
  uint32_t version_max = kProtocolVersion;
  uint64_t capabilities = 0;
  std::string agent;  // "ferry 0.1.0", for logs
  void Encode(std::string* out) const;
  static Result<Hello> Decode(std::string_view in);
};

struct Welcome {
  uint32_t version = kProtocolVersion;
  uint64_t capabilities = 0;
  std::string agent;
  void Encode(std::string* out) const;
  static Result<Welcome> Decode(std::string_view in);
};

enum class Direction : uint8_t { kPush = 0, kPull = 1 };  // who sends: the client, or the daemon

inline constexpr uint32_t kOptDryRun = 1u << 0;
inline constexpr uint32_t kOptChecksum = 1u << 1;
inline constexpr uint32_t kOptNoSelinux = 1u << 2;
inline constexpr uint32_t kOptItemize = 1u << 3;  // receiver reports each change (ITEMS)
inline constexpr uint32_t kOptAllowEmptySource = 1u << 4;  // an empty source may empty the target
inline constexpr uint32_t kOptBlock = 1u << 5;  // a block volume: one device or image file, no tree
// File content may go compressed (the client's --compress); manifests, hashes and reports always
// may when both sides speak zstd.
inline constexpr uint32_t kOptCompressData = 1u << 6;
// Neither copy nor compare xattrs and ACLs (--no-xattrs): the sender reads none, the receiver
// leaves the target's as they are.
inline constexpr uint32_t kOptNoXattrs = 1u << 7;
// A partial manifest (a tracked stage): only what changed since the stage whose COMMIT gave
// OPEN's `partial_base`; directories flagged kEntryPartialListing keep what is not named, and
// kGone entries name what the source no longer has. The receiver refuses it unless its target
// is exactly where that stage left it.
inline constexpr uint32_t kOptPartial = 1u << 8;
inline constexpr uint32_t kOptsKnown = (1u << 9) - 1;

struct Open {
  std::string volume;
  std::string subpath;  // "" or a relative path inside the volume
  uint64_t stage = 0;
  Direction direction = Direction::kPush;
  uint32_t options = 0;
  std::vector<std::string> excludes;
  uint64_t bwlimit = 0;  // bytes per second the sender may send (--bwlimit), 0: no limit
  uint32_t streams = 1;  // data streams wanted, 1..kStreamsMax (1: all on this connection)
  uint32_t compress_level = 0;  // file content's zstd level, 1..kZstdLevelMax, or 0: adaptive
  uint64_t partial_base = 0;  // kOptPartial: the base_token of the COMMIT this stage follows
  void Encode(std::string* out) const;
  static Result<Open> Decode(std::string_view in);
};

using Hash128 = std::array<uint8_t, 16>;

struct OpenOk {
  uint64_t session_id = 0;
  // Data streams granted (1..the OPEN's). With more than 1, the client opens streams - 1 more
  // connections, each saying HELLO then JOIN with this token.
  uint32_t streams = 1;
  Hash128 join_token{};
  void Encode(std::string* out) const;
  static Result<OpenOk> Decode(std::string_view in);
};

// JOIN: an extra connection becomes data stream `stream` (1..streams-1) of session `session_id`.
struct Join {
  uint64_t session_id = 0;
  Hash128 token{};
  uint32_t stream = 0;
  void Encode(std::string* out) const;
  static Result<Join> Decode(std::string_view in);
};

enum class EntryType : uint8_t {
  kFile = 1, kDirectory = 2, kSymlink = 3, kFifo = 4, kCharDevice = 5, kBlockDevice = 6, kSocket = 7,
};
inline constexpr uint8_t kEntryTypeMax = 7;  // the types a file can have (and an ITEM names)
// Only in a partial manifest (kOptPartial): the path is no longer on the source; the receiver
// deletes what the target has there. Carries only its id and path.
inline constexpr EntryType kEntryGone = static_cast<EntryType>(8);
// On the wire, in a directory's type byte: only some of its children are in this manifest (a
// partial manifest); the receiver leaves the others alone.
inline constexpr uint8_t kEntryPartialListing = 0x80;
// On the wire, in a file's type byte: the source saw this file change since the last stage (its
// daemon tracks changes), so a matching size and mtime do not make it unchanged: the receiver
// compares its content (a write with the mtime set back, as `touch -d` does).
inline constexpr uint8_t kEntryChanged = 0x40;

struct Xattr {
  std::string name;
  std::string value;
  bool operator==(const Xattr&) const = default;
};

// One manifest entry. Ids are assigned by the sender, 0, 1, 2, ... in order of sending.
struct Entry {
  uint32_t id = 0;
  EntryType type = EntryType::kFile;
  std::string path;  // relative, '/'-separated, validated by the receiver before use
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (<= 07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;       // kFile
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint64_t rdev = 0;        // devices
  std::string link_target;  // kSymlink, verbatim
  // kFile: 0 for none, else 1 + id of an earlier file entry this one is a hard link of.
  uint32_t hardlink_leader_plus1 = 0;
  std::vector<Xattr> xattrs;  // sorted by name, unique
  bool has_content_hash = false;  // --checksum
  Hash128 content_hash{};
  bool partial_listing = false;  // kDirectory: kEntryPartialListing
  bool changed = false;          // kFile: kEntryChanged
  bool operator==(const Entry&) const = default;
};

struct Entries {
  std::vector<Entry> entries;
  void Encode(std::string* out) const;
  // `next_id` is the id the first entry must carry: ids are dense and in order, so duplicates
  // and out-of-range ids are rejected here.
  static Result<Entries> Decode(std::string_view in, uint32_t next_id);
};

struct Count {  // NEED_END, DONE: a total the peer checks against its own
  uint64_t count = 0;
  void Encode(std::string* out) const;
  static Result<Count> Decode(std::string_view in);
};

// ENTRIES_END: the manifest is complete. A scan that could not read part of the tree says so,
// and the receiver then deletes nothing (it cannot tell what the sender did not see).
inline constexpr uint8_t kEntriesEndScanIncomplete = 1u << 0;
struct EntriesEnd {
  uint64_t count = 0;
  uint8_t flags = 0;
  void Encode(std::string* out) const;
  static Result<EntriesEnd> Decode(std::string_view in);
};

struct Need {
  std::vector<uint32_t> ids;
  // Empty, or one flag per id: the target has a version of the file (a basis) and HASHES for it
  // follow, so the sender may send a delta.
  std::vector<bool> with_basis;
  bool HasBasis(size_t i) const { return i < with_basis.size() && with_basis[i]; }
  void Encode(std::string* out) const;
  static Result<Need> Decode(std::string_view in);
};

struct Data {
  uint32_t id = 0;
  uint64_t offset = 0;
  std::string_view bytes;  // points into the decoded payload
  void Encode(std::string* out) const;
  static Result<Data> Decode(std::string_view in);
};

// HASHES: nodes of level `level` of the hash tree (agent/blocks.h) of a basis of `basis_size`
// bytes in blocks of `block_size`. The first HASHES of a file holds the whole level; later ones
// answer a WANT with the children of the nodes it named, in its order (over as many HASHES as
// needed).
struct Hashes {
  uint32_t id = 0;
  uint32_t block_size = 0;  // a power of two in [kBlockSizeMin, kBlockSizeMax]
  uint64_t basis_size = 0;
  uint8_t level = 0;
  std::vector<Hash128> hashes;
  void Encode(std::string* out) const;
  static Result<Hashes> Decode(std::string_view in);
};

// WANT: the sender found these nodes of `level` (>= 1) different; strictly increasing indices.
struct Want {
  uint32_t id = 0;
  uint8_t level = 0;
  std::vector<uint64_t> nodes;
  void Encode(std::string* out) const;
  static Result<Want> Decode(std::string_view in);
};

enum class PatchKind : uint8_t {
  kBlocks = 0,  // DATA and HOLE follow for the blocks that differ, block-aligned
  kWhole = 1,   // the basis is not used: the file follows whole, as for a file without one
  kRsync = 2,   // receiver sends SIGNATURE of its basis; DELTA pieces follow
};
inline constexpr uint8_t kPatchKindMax = 2;

struct Patch {
  uint32_t id = 0;
  PatchKind kind = PatchKind::kBlocks;
  uint64_t changed_bytes = 0;  // kBlocks: bytes in the blocks that follow
  void Encode(std::string* out) const;
  static Result<Patch> Decode(std::string_view in);
};

struct Hole {
  uint32_t id = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  void Encode(std::string* out) const;
  static Result<Hole> Decode(std::string_view in);
};

// SIGNATURE and DELTA: a piece of a librsync stream. The last SIGNATURE piece has kPieceLast;
// a DELTA stream ends with the file's FILE_END.
inline constexpr uint8_t kPieceLast = 1u << 0;
struct Piece {
  uint32_t id = 0;
  uint8_t flags = 0;
  std::string_view bytes;  // points into the decoded payload
  void Encode(std::string* out) const;
  static Result<Piece> Decode(std::string_view in);
};

enum class FileOutcome : uint8_t {
  kComplete = 0,  // read without change
  kChanged = 1,   // changed while read: data sent, to be resent next stage
  kVanished = 2,  // gone before it could be read: nothing sent
  kReadError = 3,  // could not be read (message says why): nothing committed
};
inline constexpr uint8_t kFileOutcomeMax = 3;

struct FileEnd {
  uint32_t id = 0;
  FileOutcome outcome = FileOutcome::kComplete;
  uint64_t size = 0;  // bytes of the file as sent (data + holes)
  // Root of the hash tree (agent/blocks.h) of the file as the receiver will have it, in the
  // block size of its basis (PatchKind::kBlocks) or BlockSizeFor(size) otherwise.
  Hash128 content_hash{};
  std::string message;
  void Encode(std::string* out) const;
  static Result<FileEnd> Decode(std::string_view in);
};

enum class ItemAction : uint8_t { kCreate = 1, kUpdate = 2, kMetadata = 3, kDelete = 4 };
inline constexpr uint8_t kItemActionMax = 4;

struct Item {
  ItemAction action = ItemAction::kCreate;
  EntryType type = EntryType::kFile;
  std::string path;
  bool operator==(const Item&) const = default;
};

struct Items {
  std::vector<Item> items;
  void Encode(std::string* out) const;
  static Result<Items> Decode(std::string_view in);
};

struct Commit {
  uint64_t files_written = 0;
  uint64_t bytes_written = 0;
  uint64_t entries_deleted = 0;
  uint64_t files_changed_during_read = 0;
  uint64_t files_vanished = 0;
  uint64_t files_failed = 0;
  // Bytes of target files read to hash them as a basis (the state cache spares the rest).
  uint64_t target_bytes_hashed = 0;
  // The target as this stage left it, named by a random token the receiver keeps: the next
  // stage may be partial (kOptPartial) from here. 0: none kept (no state cache, a dry run).
  uint64_t base_token = 0;
  void Encode(std::string* out) const;
  static Result<Commit> Decode(std::string_view in);
};

struct Error {
  uint32_t code = 0;  // ferry::Code
  std::string message;
  void Encode(std::string* out) const;
  static Result<Error> Decode(std::string_view in);
  Status ToStatus() const;
};

// --- Bench (`ferry bench`, FORMAT.md "Bench"): types 30..39 are reserved for it ---
// BENCH_OPEN takes the place of OPEN after HELLO/WELCOME; one measurement per session.
enum class BenchType : uint8_t {
  kBenchOpen = 30,    // client: what to measure
  kBenchReady = 31,   // daemon: accepted, with the bytes it grants
  kBenchData = 32,    // either: filler bytes of a network measurement
  kBenchEnd = 33,     // client: the upload is over, this many bytes were sent
  kBenchResult = 34,  // daemon: its figures
};
inline constexpr uint8_t kBenchTypeFirst = 30;
inline constexpr uint8_t kBenchTypeLast = 34;  // 35..39 stay reserved for bench
inline constexpr MessageType BenchMessage(BenchType type) { return static_cast<MessageType>(type); }

// --- Control (the daemon's control API, FORMAT.md "Control"): types 40..49 reserved for it ---
// CONTROL takes the place of OPEN after HELLO/WELCOME. Its payload, and that of every
// CONTROL_REPLY, is one JSON object (UTF-8, at most kControlMessageMaxBytes): the daemon layer
// parses it; this layer only names the types.
enum class ControlType : uint8_t {
  kControl = 40,       // client: a request {"op": ...}
  kControlReply = 41,  // daemon: one reply, or one event of a watched stage
};
inline constexpr uint8_t kControlTypeFirst = 40;
inline constexpr uint8_t kControlTypeLast = 41;  // 42..49 stay reserved for control
inline constexpr MessageType ControlMessage(ControlType type) { return static_cast<MessageType>(type); }

enum class BenchKind : uint8_t {
  kNetworkUp = 1,    // client -> daemon: the daemon discards BENCH_DATA
  kNetworkDown = 2,  // daemon -> client: the daemon generates BENCH_DATA
  kWrite = 3,        // the daemon writes a temp file in the volume, fdatasync, unlinks it
  kSync = 4,         // a real stage into a scratch directory the daemon makes in the volume
};
inline constexpr uint8_t kBenchKindMax = 4;

struct BenchOpen {
  BenchKind kind = BenchKind::kNetworkUp;
  std::string volume;  // "" for none; the network kinds only check that it exists
  uint64_t bytes = 0;  // kWrite, kSync: bytes to write or to sync (<= kBenchBytesMax)
  uint32_t seconds = 0;  // network kinds: how long to send (1..kBenchSecondsMax)
  void Encode(std::string* out) const;
  static Result<BenchOpen> Decode(std::string_view in);
};

inline constexpr uint8_t kBenchCappedBySpace = 1u << 0;  // fewer bytes: little free space
inline constexpr uint8_t kBenchSkippedBlock = 1u << 1;   // a block volume: nothing written
inline constexpr uint8_t kBenchFlagsKnown = (1u << 2) - 1;

struct BenchReady {
  uint64_t session_id = 0;
  uint64_t bytes = 0;       // granted: BENCH_OPEN's, or less when capped by free space
  uint64_t free_bytes = 0;  // free space of the volume's file system (0 without a volume)
  uint8_t flags = 0;
  void Encode(std::string* out) const;
  static Result<BenchReady> Decode(std::string_view in);
};

struct BenchData {  // filler; the payload is the bytes
  std::string_view bytes;
  void Encode(std::string* out) const;
  static Result<BenchData> Decode(std::string_view in);
};

struct BenchResult {
  uint64_t bytes = 0;        // moved, written or synced
  uint64_t files = 0;        // kSync: files written
  uint64_t duration_ns = 0;  // as measured by the daemon
  void Encode(std::string* out) const;
  static Result<BenchResult> Decode(std::string_view in);
};
struct BenchEnd {  // the bytes of BENCH_DATA the client sent (checked by the daemon)
  uint64_t bytes = 0;
  void Encode(std::string* out) const;
  static Result<BenchEnd> Decode(std::string_view in);
};

}  // namespace ferry::protocol
