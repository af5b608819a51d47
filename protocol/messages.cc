#include "protocol/messages.h"

#include "base/bounds.h"
#include "base/check.h"
#include "protocol/wire.h"

namespace ferry::protocol {

const char* MessageTypeName(uint8_t type) {
  static const char* const kNames[] = {"?",     "HELLO", "WELCOME", "OPEN",     "OPEN_OK",
                                       "ENTRIES", "ENTRIES_END", "NEED", "NEED_END", "DATA",
                                       "FILE_END", "DONE", "ITEMS", "COMMIT", "ERROR",
                                       "KEEPALIVE", "HASHES", "WANT", "PATCH", "HOLE",
                                       "SIGNATURE", "DELTA", "JOIN", "JOINED"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == kMessageTypeMax + 1);
  static const char* const kBenchNames[] = {"BENCH_OPEN", "BENCH_READY", "BENCH_DATA", "BENCH_END",
                                            "BENCH_RESULT"};
  static_assert(sizeof(kBenchNames) / sizeof(kBenchNames[0]) == kBenchTypeLast - kBenchTypeFirst + 1);
  if (type >= kBenchTypeFirst && type <= kBenchTypeLast) return kBenchNames[type - kBenchTypeFirst];
  if (type == kControlTypeFirst) return "CONTROL";
  if (type == kControlTypeLast) return "CONTROL_REPLY";
  return type <= kMessageTypeMax ? kNames[type] : "UNKNOWN";
}

bool IsKnownMessageType(uint8_t type) {
  return (type >= 1 && type <= kMessageTypeMax) || (type >= kBenchTypeFirst && type <= kBenchTypeLast) ||
         (type >= kControlTypeFirst && type <= kControlTypeLast);
}

// --- HELLO / WELCOME ---
void Hello::Encode(std::string* out) const {
  WireWriter w(out);
  w.U32(version_min);
  w.U32(version_max);
  w.U64(capabilities);
  w.Bytes(agent);
}
Result<Hello> Hello::Decode(std::string_view in) {
  WireReader r(in);
  Hello m;
  FERRY_RETURN_IF_ERROR(r.U32(&m.version_min));
  FERRY_RETURN_IF_ERROR(r.U32(&m.version_max));
  FERRY_RETURN_IF_ERROR(r.U64(&m.capabilities));
  FERRY_RETURN_IF_ERROR(r.Bytes(kMessageTextMaxBytes, "agent name", &m.agent));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("HELLO"));
  if (m.version_min > m.version_max) return Status::Corruption("HELLO version range is empty");
  return m;
}

void Welcome::Encode(std::string* out) const {
  WireWriter w(out);
  w.U32(version);
  w.U64(capabilities);
  w.Bytes(agent);
}
Result<Welcome> Welcome::Decode(std::string_view in) {
  WireReader r(in);
  Welcome m;
  FERRY_RETURN_IF_ERROR(r.U32(&m.version));
  FERRY_RETURN_IF_ERROR(r.U64(&m.capabilities));
  FERRY_RETURN_IF_ERROR(r.Bytes(kMessageTextMaxBytes, "agent name", &m.agent));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("WELCOME"));
  return m;
}

// --- OPEN / OPEN_OK ---
void Open::Encode(std::string* out) const {
  CHECK(excludes.size() <= kExcludePatternsMax);
  WireWriter w(out);
  w.Bytes(volume);
  w.Bytes(subpath);
  w.Varint(stage);
  w.U8(static_cast<uint8_t>(direction));
  w.U32(options);
  w.Varint(excludes.size());
  for (const std::string& e : excludes) w.Bytes(e);
  w.Varint(bwlimit);
  w.Varint(streams);
  w.Varint(compress_level);
  w.Varint(partial_base);
}
Result<Open> Open::Decode(std::string_view in) {
  WireReader r(in);
  Open m;
  uint8_t direction = 0;
  uint64_t count = 0;
  FERRY_RETURN_IF_ERROR(r.Bytes(kVolumeNameMaxBytes, "volume name", &m.volume));
  FERRY_RETURN_IF_ERROR(r.Bytes(kPathMaxBytes, "subpath", &m.subpath));
  FERRY_RETURN_IF_ERROR(r.Varint(&m.stage));
  FERRY_RETURN_IF_ERROR(r.U8(&direction));
  FERRY_RETURN_IF_ERROR(r.U32(&m.options));
  FERRY_RETURN_IF_ERROR(r.VarintMax(kExcludePatternsMax, "exclude count", &count));
  m.excludes.resize(count);
  for (std::string& e : m.excludes) {
    FERRY_RETURN_IF_ERROR(r.Bytes(kExcludePatternMaxBytes, "exclude pattern", &e));
  }
  FERRY_RETURN_IF_ERROR(r.Varint(&m.bwlimit));
  uint64_t streams = 0;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kStreamsMax, "stream count", &streams));
  if (streams == 0) return Status::Corruption("OPEN asks for 0 data streams");
  m.streams = static_cast<uint32_t>(streams);
  uint64_t level = 0;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kZstdLevelMax, "compression level", &level));
  m.compress_level = static_cast<uint32_t>(level);
  FERRY_RETURN_IF_ERROR(r.Varint(&m.partial_base));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("OPEN"));
  if (direction > 1) return Status::Corruption("OPEN has an unknown direction");
  if ((m.options & ~kOptsKnown) != 0) return Status::Protocol("OPEN has unknown option bits");
  m.direction = static_cast<Direction>(direction);
  return m;
}

static void EncodeToken(const Hash128& token, WireWriter& w) {
  w.Raw(std::string_view(reinterpret_cast<const char*>(token.data()), token.size()));
}
static Status DecodeToken(WireReader& r, Hash128* token) {
  std::string_view raw;
  FERRY_RETURN_IF_ERROR(r.Raw(token->size(), &raw));
  std::copy(raw.begin(), raw.end(), token->begin());
  return Status::Ok();
}

void OpenOk::Encode(std::string* out) const {
  CHECK(streams >= 1 && streams <= kStreamsMax);
  WireWriter w(out);
  w.U64(session_id);
  w.Varint(streams);
  EncodeToken(join_token, w);
}
Result<OpenOk> OpenOk::Decode(std::string_view in) {
  WireReader r(in);
  OpenOk m;
  uint64_t streams = 0;
  FERRY_RETURN_IF_ERROR(r.U64(&m.session_id));
  FERRY_RETURN_IF_ERROR(r.VarintMax(kStreamsMax, "stream count", &streams));
  if (streams == 0) return Status::Corruption("OPEN_OK grants 0 data streams");
  m.streams = static_cast<uint32_t>(streams);
  FERRY_RETURN_IF_ERROR(DecodeToken(r, &m.join_token));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("OPEN_OK"));
  return m;
}

void Join::Encode(std::string* out) const {
  CHECK(stream >= 1 && stream < kStreamsMax);
  WireWriter w(out);
  w.U64(session_id);
  EncodeToken(token, w);
  w.Varint(stream);
}
Result<Join> Join::Decode(std::string_view in) {
  WireReader r(in);
  Join m;
  uint64_t stream = 0;
  FERRY_RETURN_IF_ERROR(r.U64(&m.session_id));
  FERRY_RETURN_IF_ERROR(DecodeToken(r, &m.token));
  FERRY_RETURN_IF_ERROR(r.VarintMax(kStreamsMax - 1, "stream index", &stream));
  if (stream == 0) return Status::Corruption("JOIN names stream 0 (the session's own connection)");
  m.stream = static_cast<uint32_t>(stream);
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("JOIN"));
  return m;
}

// --- ENTRIES ---
namespace {

void EncodeEntry(const Entry& e, WireWriter& w) {
  w.Varint(e.id);
  const bool partial = e.type == EntryType::kDirectory && e.partial_listing;
  const bool changed = e.type == EntryType::kFile && e.changed;
  w.U8(static_cast<uint8_t>(static_cast<uint8_t>(e.type) | (partial ? kEntryPartialListing : 0) |
                            (changed ? kEntryChanged : 0)));
  w.Bytes(e.path);
  if (e.type == kEntryGone) return;
  w.Varint(e.mode);
  w.Varint(e.uid);
  w.Varint(e.gid);
  w.SignedVarint(e.mtime_sec);
  w.Varint(e.mtime_nsec);
  if (e.type == EntryType::kFile) {
    w.Varint(e.size);
    w.Varint(e.hardlink_leader_plus1);
    w.U8(e.has_content_hash ? 1 : 0);
    if (e.has_content_hash) {
      w.Raw(std::string_view(reinterpret_cast<const char*>(e.content_hash.data()), 16));
    }
  }
  if (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice) w.Varint(e.rdev);
  if (e.type == EntryType::kSymlink) w.Bytes(e.link_target);
  w.Varint(e.xattrs.size());
  for (const Xattr& x : e.xattrs) {
    w.Bytes(x.name);
    w.Bytes(x.value);
  }
}

Status DecodeFileFields(WireReader& r, Entry& e) {
  uint64_t leader = 0;
  uint8_t has_hash = 0;
  FERRY_RETURN_IF_ERROR(r.Varint(&e.size));
  FERRY_RETURN_IF_ERROR(r.VarintMax(e.id, "hard link leader", &leader));  // leader < id
  e.hardlink_leader_plus1 = static_cast<uint32_t>(leader);
  FERRY_RETURN_IF_ERROR(r.U8(&has_hash));
  if (has_hash > 1) return Status::Corruption("entry hash flag is not 0 or 1");
  e.has_content_hash = has_hash == 1;
  if (e.has_content_hash) {
    std::string_view raw;
    FERRY_RETURN_IF_ERROR(r.Raw(16, &raw));
    std::copy(raw.begin(), raw.end(), e.content_hash.begin());
  }
  return Status::Ok();
}

Status DecodeXattrs(WireReader& r, Entry& e) {
  uint64_t count = 0;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kXattrsPerEntryMax, "xattr count", &count));
  e.xattrs.resize(count);
  size_t total_bytes = 0;
  for (size_t i = 0; i < count; ++i) {
    Xattr& x = e.xattrs[i];
    FERRY_RETURN_IF_ERROR(r.Bytes(kXattrNameMaxBytes, "xattr name", &x.name));
    FERRY_RETURN_IF_ERROR(r.Bytes(kXattrValueMaxBytes, "xattr value", &x.value));
    if (x.name.empty() || x.name.find('\0') != std::string::npos) {
      return Status::Corruption("xattr name is empty or holds NUL");
    }
    if (i > 0 && !(e.xattrs[i - 1].name < x.name)) {
      return Status::Corruption("xattr names are not sorted and unique");
    }
    total_bytes += x.name.size() + x.value.size();
    if (total_bytes > kXattrBytesPerEntryMax) return Status::Corruption("xattrs of one entry too large");
  }
  return Status::Ok();
}

Status DecodeEntry(WireReader& r, uint32_t expected_id, Entry& e) {
  uint64_t id = 0, type = 0, mode = 0, uid = 0, gid = 0, nsec = 0;
  FERRY_RETURN_IF_ERROR(r.Varint(&id));
  if (id != expected_id) {
    return Status::Corruption("entry id " + std::to_string(id) + " out of order, expected " +
                              std::to_string(expected_id));
  }
  e.id = expected_id;
  uint8_t type8 = 0;
  FERRY_RETURN_IF_ERROR(r.U8(&type8));
  e.partial_listing = (type8 & kEntryPartialListing) != 0;
  e.changed = (type8 & kEntryChanged) != 0;
  type = type8 & ~(kEntryPartialListing | kEntryChanged);
  if (type == 0 || (type > kEntryTypeMax && type != static_cast<uint8_t>(kEntryGone))) {
    return Status::Corruption("entry has unknown type");
  }
  e.type = static_cast<EntryType>(type);
  if (e.partial_listing && e.type != EntryType::kDirectory) {
    return Status::Corruption("partial listing flag on an entry that is not a directory");
  }
  if (e.changed && e.type != EntryType::kFile) return Status::Corruption("changed flag on an entry that is not a file");
  FERRY_RETURN_IF_ERROR(r.Bytes(kPathMaxBytes, "entry path", &e.path));
  if (e.type == kEntryGone) {
    if (e.path.empty()) return Status::Corruption("a gone entry names no path");
    return Status::Ok();
  }
  FERRY_RETURN_IF_ERROR(r.VarintMax(07777, "entry mode", &mode));
  FERRY_RETURN_IF_ERROR(r.VarintMax(UINT32_MAX, "entry uid", &uid));
  FERRY_RETURN_IF_ERROR(r.VarintMax(UINT32_MAX, "entry gid", &gid));
  FERRY_RETURN_IF_ERROR(r.SignedVarint(&e.mtime_sec));
  FERRY_RETURN_IF_ERROR(r.VarintMax(999'999'999, "entry mtime nanoseconds", &nsec));
  e.mode = static_cast<uint32_t>(mode);
  e.uid = static_cast<uint32_t>(uid);
  e.gid = static_cast<uint32_t>(gid);
  e.mtime_nsec = static_cast<uint32_t>(nsec);
  if (e.type == EntryType::kFile) FERRY_RETURN_IF_ERROR(DecodeFileFields(r, e));
  if (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice) {
    FERRY_RETURN_IF_ERROR(r.Varint(&e.rdev));
  }
  if (e.type == EntryType::kSymlink) {
    FERRY_RETURN_IF_ERROR(r.Bytes(kSymlinkTargetMaxBytes, "symlink target", &e.link_target));
    if (e.link_target.empty() || e.link_target.find('\0') != std::string::npos) {
      return Status::Corruption("symlink target is empty or holds NUL");
    }
  }
  return DecodeXattrs(r, e);
}

}  // namespace

void Entries::Encode(std::string* out) const {
  CHECK(!entries.empty() && entries.size() <= kEntriesPerBatchMax);
  WireWriter w(out);
  w.Varint(entries.size());
  for (const Entry& e : entries) EncodeEntry(e, w);
}

Result<Entries> Entries::Decode(std::string_view in, uint32_t next_id) {
  WireReader r(in);
  uint64_t count = 0;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kEntriesPerBatchMax, "entry count", &count));
  if (count == 0) return Status::Corruption("ENTRIES batch is empty");
  if (uint64_t{next_id} + count > kEntriesPerSessionMax) {
    return Status::Corruption("session exceeds " + std::to_string(kEntriesPerSessionMax) + " entries");
  }
  Entries m;
  m.entries.resize(count);
  for (size_t i = 0; i < count; ++i) {
    FERRY_RETURN_IF_ERROR(DecodeEntry(r, next_id + static_cast<uint32_t>(i), m.entries[i]));
  }
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("ENTRIES"));
  return m;
}

// --- counts, NEED, DATA, FILE_END ---
void Count::Encode(std::string* out) const { WireWriter(out).Varint(count); }
Result<Count> Count::Decode(std::string_view in) {
  WireReader r(in);
  Count m;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kEntriesPerSessionMax, "count", &m.count));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("count message"));
  return m;
}

void EntriesEnd::Encode(std::string* out) const {
  WireWriter w(out);
  w.Varint(count);
  w.U8(flags);
}
Result<EntriesEnd> EntriesEnd::Decode(std::string_view in) {
  WireReader r(in);
  EntriesEnd m;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kEntriesPerSessionMax, "entry total", &m.count));
  FERRY_RETURN_IF_ERROR(r.U8(&m.flags));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("ENTRIES_END"));
  if ((m.flags & ~kEntriesEndScanIncomplete) != 0) return Status::Corruption("ENTRIES_END has unknown flags");
  return m;
}

void Need::Encode(std::string* out) const {
  CHECK(!ids.empty() && ids.size() <= kIdsPerBatchMax);
  WireWriter w(out);
  w.Varint(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) w.Varint((uint64_t{ids[i]} << 1) | (HasBasis(i) ? 1 : 0));
}
Result<Need> Need::Decode(std::string_view in) {
  WireReader r(in);
  uint64_t count = 0;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kIdsPerBatchMax, "NEED count", &count));
  if (count == 0) return Status::Corruption("NEED batch is empty");
  Need m;
  m.ids.resize(count);
  m.with_basis.resize(count);
  for (size_t i = 0; i < count; ++i) {
    uint64_t v = 0;
    FERRY_RETURN_IF_ERROR(r.VarintMax((uint64_t{kEntriesPerSessionMax} << 1) - 1, "NEED id", &v));
    m.ids[i] = static_cast<uint32_t>(v >> 1);
    m.with_basis[i] = (v & 1) != 0;
  }
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("NEED"));
  return m;
}

namespace {
Status ReadId(WireReader& r, const char* what, uint32_t* id) {
  uint64_t v = 0;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kEntriesPerSessionMax - 1, what, &v));
  *id = static_cast<uint32_t>(v);
  return Status::Ok();
}
constexpr uint64_t kOffsetMax = uint64_t{1} << 62;  // file offsets and sizes
constexpr uint8_t kTreeLevelsMax = 32;  // 16^32 leaves: more than any file has
}  // namespace

void Hashes::Encode(std::string* out) const {
  CHECK(hashes.size() <= kHashesPerMessageMax);
  WireWriter w(out);
  w.Varint(id);
  w.Varint(block_size);
  w.Varint(basis_size);
  w.U8(level);
  w.Varint(hashes.size());
  for (const Hash128& h : hashes) w.Raw(std::string_view(reinterpret_cast<const char*>(h.data()), h.size()));
}
Result<Hashes> Hashes::Decode(std::string_view in) {
  WireReader r(in);
  Hashes m;
  uint64_t block = 0, count = 0;
  FERRY_RETURN_IF_ERROR(ReadId(r, "HASHES id", &m.id));
  FERRY_RETURN_IF_ERROR(r.VarintMax(kBlockSizeMax, "HASHES block size", &block));
  if (block < kBlockSizeMin || (block & (block - 1)) != 0) {
    return Status::Corruption("HASHES block size " + std::to_string(block) + " is not a power of two in bounds");
  }
  m.block_size = static_cast<uint32_t>(block);
  FERRY_RETURN_IF_ERROR(r.VarintMax(kOffsetMax, "HASHES basis size", &m.basis_size));
  FERRY_RETURN_IF_ERROR(r.U8(&m.level));
  if (m.level >= kTreeLevelsMax) return Status::Corruption("HASHES tree level out of range");
  FERRY_RETURN_IF_ERROR(r.VarintMax(kHashesPerMessageMax, "HASHES count", &count));
  if (r.remaining() != count * sizeof(Hash128)) return Status::Corruption("HASHES length does not match its count");
  m.hashes.resize(count);
  for (Hash128& h : m.hashes) {
    std::string_view raw;
    FERRY_RETURN_IF_ERROR(r.Raw(h.size(), &raw));
    std::copy(raw.begin(), raw.end(), h.begin());
  }
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("HASHES"));
  return m;
}

void Want::Encode(std::string* out) const {
  CHECK(!nodes.empty() && nodes.size() <= kHashesPerMessageMax / kHashTreeFanout);
  WireWriter w(out);
  w.Varint(id);
  w.U8(level);
  w.Varint(nodes.size());
  uint64_t previous = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {  // deltas: small numbers for nearby nodes
    w.Varint(i == 0 ? nodes[0] : nodes[i] - previous - 1);
    previous = nodes[i];
  }
}
Result<Want> Want::Decode(std::string_view in) {
  WireReader r(in);
  Want m;
  uint64_t count = 0;
  FERRY_RETURN_IF_ERROR(ReadId(r, "WANT id", &m.id));
  FERRY_RETURN_IF_ERROR(r.U8(&m.level));
  if (m.level == 0 || m.level >= kTreeLevelsMax) return Status::Corruption("WANT tree level out of range");
  FERRY_RETURN_IF_ERROR(r.VarintMax(kHashesPerMessageMax / kHashTreeFanout, "WANT count", &count));
  if (count == 0) return Status::Corruption("WANT names no nodes");
  m.nodes.resize(count);
  uint64_t next = 0;
  for (uint64_t& node : m.nodes) {
    uint64_t gap = 0;
    FERRY_RETURN_IF_ERROR(r.VarintMax(kBlocksPerFileMax, "WANT node", &gap));
    node = next + gap;
    if (node >= kBlocksPerFileMax) return Status::Corruption("WANT node out of range");
    next = node + 1;
  }
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("WANT"));
  return m;
}

void Patch::Encode(std::string* out) const {
  WireWriter w(out);
  w.Varint(id);
  w.U8(static_cast<uint8_t>(kind));
  w.Varint(changed_bytes);
}
Result<Patch> Patch::Decode(std::string_view in) {
  WireReader r(in);
  Patch m;
  uint8_t kind = 0;
  FERRY_RETURN_IF_ERROR(ReadId(r, "PATCH id", &m.id));
  FERRY_RETURN_IF_ERROR(r.U8(&kind));
  if (kind > kPatchKindMax) return Status::Corruption("PATCH kind " + std::to_string(kind) + " unknown");
  m.kind = static_cast<PatchKind>(kind);
  FERRY_RETURN_IF_ERROR(r.VarintMax(kOffsetMax, "PATCH changed bytes", &m.changed_bytes));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("PATCH"));
  return m;
}

void Hole::Encode(std::string* out) const {
  WireWriter w(out);
  w.Varint(id);
  w.Varint(offset);
  w.Varint(length);
}
Result<Hole> Hole::Decode(std::string_view in) {
  WireReader r(in);
  Hole m;
  FERRY_RETURN_IF_ERROR(ReadId(r, "HOLE id", &m.id));
  FERRY_RETURN_IF_ERROR(r.VarintMax(kOffsetMax, "HOLE offset", &m.offset));
  FERRY_RETURN_IF_ERROR(r.VarintMax(kOffsetMax - m.offset, "HOLE length", &m.length));
  if (m.length == 0) return Status::Corruption("HOLE of no bytes");
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("HOLE"));
  return m;
}

void Piece::Encode(std::string* out) const {
  CHECK(bytes.size() <= kDataChunkMaxBytes);
  WireWriter w(out);
  w.Varint(id);
  w.U8(flags);
  w.Raw(bytes);
}
Result<Piece> Piece::Decode(std::string_view in) {
  WireReader r(in);
  Piece m;
  FERRY_RETURN_IF_ERROR(ReadId(r, "piece id", &m.id));
  FERRY_RETURN_IF_ERROR(r.U8(&m.flags));
  if ((m.flags & ~kPieceLast) != 0) return Status::Corruption("piece has unknown flags");
  if (r.remaining() > kDataChunkMaxBytes) return Status::Corruption("piece of " + std::to_string(r.remaining()) + " bytes");
  FERRY_RETURN_IF_ERROR(r.Raw(r.remaining(), &m.bytes));
  return m;
}

void Data::Encode(std::string* out) const {
  CHECK(bytes.size() <= kDataChunkMaxBytes);
  WireWriter w(out);
  w.Varint(id);
  w.Varint(offset);
  w.Raw(bytes);  // the rest of the payload
}
Result<Data> Data::Decode(std::string_view in) {
  WireReader r(in);
  Data m;
  uint64_t id = 0;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kEntriesPerSessionMax - 1, "DATA id", &id));
  FERRY_RETURN_IF_ERROR(r.Varint(&m.offset));
  m.id = static_cast<uint32_t>(id);
  if (r.remaining() == 0 || r.remaining() > kDataChunkMaxBytes) {
    return Status::Corruption("DATA chunk of " + std::to_string(r.remaining()) + " bytes");
  }
  if (m.offset > (uint64_t{1} << 62) - r.remaining()) return Status::Corruption("DATA offset overflows");
  FERRY_RETURN_IF_ERROR(r.Raw(r.remaining(), &m.bytes));
  return m;
}

void FileEnd::Encode(std::string* out) const {
  WireWriter w(out);
  w.Varint(id);
  w.U8(static_cast<uint8_t>(outcome));
  w.Varint(size);
  w.Raw(std::string_view(reinterpret_cast<const char*>(content_hash.data()), 16));
  w.Bytes(message);
}
Result<FileEnd> FileEnd::Decode(std::string_view in) {
  WireReader r(in);
  FileEnd m;
  uint64_t id = 0;
  uint8_t outcome = 0;
  std::string_view hash;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kEntriesPerSessionMax - 1, "FILE_END id", &id));
  FERRY_RETURN_IF_ERROR(r.U8(&outcome));
  FERRY_RETURN_IF_ERROR(r.Varint(&m.size));
  FERRY_RETURN_IF_ERROR(r.Raw(16, &hash));
  FERRY_RETURN_IF_ERROR(r.Bytes(kMessageTextMaxBytes, "FILE_END message", &m.message));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("FILE_END"));
  if (outcome > kFileOutcomeMax) return Status::Corruption("FILE_END has unknown outcome");
  m.id = static_cast<uint32_t>(id);
  m.outcome = static_cast<FileOutcome>(outcome);
  std::copy(hash.begin(), hash.end(), m.content_hash.begin());
  return m;
}

// --- ITEMS, COMMIT, ERROR ---
void Items::Encode(std::string* out) const {
  CHECK(!items.empty() && items.size() <= kItemsPerBatchMax);
  WireWriter w(out);
  w.Varint(items.size());
  for (const Item& i : items) {
    w.U8(static_cast<uint8_t>(i.action));
    w.U8(static_cast<uint8_t>(i.type));
    w.Bytes(i.path);
  }
}
Result<Items> Items::Decode(std::string_view in) {
  WireReader r(in);
  uint64_t count = 0;
  FERRY_RETURN_IF_ERROR(r.VarintMax(kItemsPerBatchMax, "ITEMS count", &count));
  if (count == 0) return Status::Corruption("ITEMS batch is empty");
  Items m;
  m.items.resize(count);
  for (Item& i : m.items) {
    uint8_t action = 0, type = 0;
    FERRY_RETURN_IF_ERROR(r.U8(&action));
    FERRY_RETURN_IF_ERROR(r.U8(&type));
    FERRY_RETURN_IF_ERROR(r.Bytes(kPathMaxBytes, "item path", &i.path));
    if (action == 0 || action > kItemActionMax) return Status::Corruption("item has unknown action");
    if (type == 0 || type > kEntryTypeMax) return Status::Corruption("item has unknown type");
    i.action = static_cast<ItemAction>(action);
    i.type = static_cast<EntryType>(type);
  }
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("ITEMS"));
  return m;
}

void Commit::Encode(std::string* out) const {
  WireWriter w(out);
  for (uint64_t v : {files_written, bytes_written, entries_deleted, files_changed_during_read,
                     files_vanished, files_failed, target_bytes_hashed, base_token}) {
    w.Varint(v);
  }
}
Result<Commit> Commit::Decode(std::string_view in) {
  WireReader r(in);
  Commit m;
  for (uint64_t* v : {&m.files_written, &m.bytes_written, &m.entries_deleted,
                      &m.files_changed_during_read, &m.files_vanished, &m.files_failed,
                      &m.target_bytes_hashed, &m.base_token}) {
    FERRY_RETURN_IF_ERROR(r.Varint(v));
  }
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("COMMIT"));
  return m;
}

void Error::Encode(std::string* out) const {
  WireWriter w(out);
  w.U32(code);
  w.Bytes(message.size() <= kMessageTextMaxBytes ? std::string_view(message)
                                                 : std::string_view(message).substr(0, kMessageTextMaxBytes));
}
Result<Error> Error::Decode(std::string_view in) {
  WireReader r(in);
  Error m;
  FERRY_RETURN_IF_ERROR(r.U32(&m.code));
  FERRY_RETURN_IF_ERROR(r.Bytes(kMessageTextMaxBytes, "error message", &m.message));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("ERROR"));
  return m;
}
Status Error::ToStatus() const {
  Code c = (code == 0 || code > static_cast<uint32_t>(Code::kAborted)) ? Code::kProtocol
                                                                      : static_cast<Code>(code);
  return Status::Make(c, message);
}

// --- Bench ---
void BenchOpen::Encode(std::string* out) const {
  CHECK(volume.size() <= kVolumeNameMaxBytes);
  CHECK(bytes <= kBenchBytesMax);
  CHECK(seconds <= kBenchSecondsMax);
  WireWriter w(out);
  w.U8(static_cast<uint8_t>(kind));
  w.Bytes(volume);
  w.Varint(bytes);
  w.Varint(seconds);
}
Result<BenchOpen> BenchOpen::Decode(std::string_view in) {
  WireReader r(in);
  BenchOpen m;
  uint8_t kind = 0;
  uint64_t seconds = 0;
  FERRY_RETURN_IF_ERROR(r.U8(&kind));
  FERRY_RETURN_IF_ERROR(r.Bytes(kVolumeNameMaxBytes, "volume name", &m.volume));
  FERRY_RETURN_IF_ERROR(r.VarintMax(kBenchBytesMax, "bench bytes", &m.bytes));
  FERRY_RETURN_IF_ERROR(r.VarintMax(kBenchSecondsMax, "bench seconds", &seconds));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("BENCH_OPEN"));
  if (kind == 0 || kind > kBenchKindMax) return Status::Corruption("BENCH_OPEN kind " + std::to_string(kind));
  m.kind = static_cast<BenchKind>(kind);
  m.seconds = static_cast<uint32_t>(seconds);
  bool network = m.kind == BenchKind::kNetworkUp || m.kind == BenchKind::kNetworkDown;
  if (network && m.seconds == 0) return Status::Corruption("BENCH_OPEN network measurement of 0 seconds");
  if (!network && m.bytes < kBenchBytesMin) return Status::Corruption("BENCH_OPEN of fewer bytes than kBenchBytesMin");
  return m;
}

void BenchReady::Encode(std::string* out) const {
  CHECK((flags & ~kBenchFlagsKnown) == 0);
  WireWriter w(out);
  w.U64(session_id);
  w.Varint(bytes);
  w.Varint(free_bytes);
  w.U8(flags);
}
Result<BenchReady> BenchReady::Decode(std::string_view in) {
  WireReader r(in);
  BenchReady m;
  FERRY_RETURN_IF_ERROR(r.U64(&m.session_id));
  FERRY_RETURN_IF_ERROR(r.VarintMax(kBenchBytesMax, "bench bytes", &m.bytes));
  FERRY_RETURN_IF_ERROR(r.Varint(&m.free_bytes));
  FERRY_RETURN_IF_ERROR(r.U8(&m.flags));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("BENCH_READY"));
  if ((m.flags & ~kBenchFlagsKnown) != 0) return Status::Corruption("BENCH_READY unknown flag bits");
  return m;
}

void BenchData::Encode(std::string* out) const {
  CHECK(!bytes.empty());
  CHECK(bytes.size() <= kBenchChunkBytes);
  out->append(bytes);
}
Result<BenchData> BenchData::Decode(std::string_view in) {
  if (in.empty() || in.size() > kBenchChunkBytes) {
    return Status::Corruption("BENCH_DATA of " + std::to_string(in.size()) + " bytes");
  }
  return BenchData{in};
}

void BenchEnd::Encode(std::string* out) const { WireWriter(out).Varint(bytes); }
Result<BenchEnd> BenchEnd::Decode(std::string_view in) {
  WireReader r(in);
  BenchEnd m;
  FERRY_RETURN_IF_ERROR(r.Varint(&m.bytes));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("BENCH_END"));
  return m;
}

void BenchResult::Encode(std::string* out) const {
  WireWriter w(out);
  w.Varint(bytes);
  w.Varint(files);
  w.Varint(duration_ns);
}
Result<BenchResult> BenchResult::Decode(std::string_view in) {
  WireReader r(in);
  BenchResult m;
  // Bytes: the network kinds move whatever the link carries in kBenchSecondsMax, so only the
  // varint's own range bounds them; files are entries of one session.
  FERRY_RETURN_IF_ERROR(r.Varint(&m.bytes));
  FERRY_RETURN_IF_ERROR(r.VarintMax(kEntriesPerSessionMax, "bench files", &m.files));
  FERRY_RETURN_IF_ERROR(r.Varint(&m.duration_ns));
  FERRY_RETURN_IF_ERROR(r.ExpectEnd("BENCH_RESULT"));
  return m;
}

}  // namespace ferry::protocol
