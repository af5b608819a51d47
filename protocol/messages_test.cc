#include "protocol/messages.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "base/bounds.h"
#include "protocol/wire.h"

// Prints codes by name in test failures.
namespace ferry {
static void PrintTo(Code code, std::ostream* os) { *os << CodeName(code); }
}  // namespace ferry

namespace ferry::protocol {
namespace {

constexpr uint64_t kU64Max = UINT64_MAX;
using Decoder = std::function<Status(std::string_view)>;

template <typename M>
std::string EncodeToString(const M& m) {
  std::string out;
  m.Encode(&out);
  return out;
}

// The common damage: every strict prefix and one trailing byte are rejected, never crash.
void ExpectPrefixesAndTrailingRejected(const std::string& bytes, const Decoder& decode) {
  ASSERT_TRUE(decode(bytes).ok());
  for (size_t size = 0; size < bytes.size(); ++size) {
    EXPECT_FALSE(decode(std::string_view(bytes).substr(0, size)).ok()) << "prefix " << size;
  }
  EXPECT_EQ(decode(bytes + '\0').code(), Code::kCorruption) << "trailing byte";
}

struct DamagedCase {
  std::string name;
  std::string bytes;
  Code code = Code::kCorruption;
};

void ExpectRejected(const std::vector<DamagedCase>& cases, const Decoder& decode) {
  for (const DamagedCase& c : cases) {
    Status s = decode(c.bytes);
    EXPECT_EQ(s.code(), c.code) << c.name << ": " << s.ToString();
  }
}

// Builds a payload field by field, to write values that no encoder would.
class Raw {
 public:
  Raw& U8(uint8_t v) { return Add(&WireWriter::U8, v); }
  Raw& U32(uint32_t v) { return Add(&WireWriter::U32, v); }
  Raw& U64(uint64_t v) { return Add(&WireWriter::U64, v); }
  Raw& V(uint64_t v) { return Add(&WireWriter::Varint, v); }
  Raw& S(int64_t v) { return Add(&WireWriter::SignedVarint, v); }
  Raw& B(std::string_view v) { return Add(&WireWriter::Bytes, v); }
  Raw& Put(std::string_view v) { return Add(&WireWriter::Raw, v); }
  // A length (or count) followed by only `present` bytes.
  Raw& Len(uint64_t size, size_t present) { return V(size).Put(std::string(present, 'x')); }
  operator std::string() const { return out_; }  // NOLINT: implicit for table brevity

 private:
  template <typename T>
  Raw& Add(void (WireWriter::*write)(T), T v) {
    WireWriter w(&out_);
    (w.*write)(v);
    return *this;
  }
  std::string out_;
};

// Encodes `m`, decodes it back, and checks that every prefix and a trailing byte are rejected.
template <typename M, typename... Args>
M RoundTrip(const M& m, Args... args) {
  std::string bytes = EncodeToString(m);
  ExpectPrefixesAndTrailingRejected(
      bytes, [&](std::string_view in) { return M::Decode(in, args...).status(); });
  Result<M> decoded = M::Decode(bytes, args...);
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  return decoded.ok() ? *decoded : M{};
}

// --- Round trips ---

TEST(MessagesTest, TypeNames) {
  EXPECT_STREQ(MessageTypeName(static_cast<uint8_t>(MessageType::kHello)), "HELLO");
  EXPECT_STREQ(MessageTypeName(static_cast<uint8_t>(MessageType::kEntriesEnd)), "ENTRIES_END");
  EXPECT_STREQ(MessageTypeName(static_cast<uint8_t>(MessageType::kError)), "ERROR");
  std::vector<std::string> known;
  for (uint8_t t = 1; t <= kMessageTypeMax; ++t) known.push_back(MessageTypeName(t));
  for (int t : {0, kMessageTypeMax + 1, 200, 255}) {
    std::string name = MessageTypeName(static_cast<uint8_t>(t));
    EXPECT_FALSE(name.empty()) << t;
    EXPECT_EQ(std::count(known.begin(), known.end(), name), 0) << t << " named " << name;
  }
}

TEST(MessagesTest, HandshakeRoundTrips) {
  Hello h = RoundTrip(Hello{.version_min = 1,
                            .version_max = 7,
                            .capabilities = kCapZstd | (uint64_t{1} << 40),
                            .agent = "ferry 0.1.0"});
  EXPECT_EQ(h.version_min, 1u);
  EXPECT_EQ(h.version_max, 7u);
  EXPECT_EQ(h.capabilities, kCapZstd | (uint64_t{1} << 40));
  EXPECT_EQ(h.agent, "ferry 0.1.0");

  Welcome w = RoundTrip(Welcome{.version = 1, .capabilities = kCapZstd, .agent = ""});
  EXPECT_EQ(w.version, 1u);
  EXPECT_EQ(w.capabilities, kCapZstd);
  EXPECT_EQ(w.agent, "");

  Open open;
  open.volume = "pgdata";
  open.subpath = "base/1";
  open.stage = 3;
  open.direction = Direction::kPull;
  open.options = kOptsKnown;
  open.excludes = {"*.tmp", "", "pg_wal/**"};
  Open o = RoundTrip(open);
  EXPECT_EQ(o.volume, "pgdata");
  EXPECT_EQ(o.subpath, "base/1");
  EXPECT_EQ(o.stage, 3u);
  EXPECT_EQ(o.direction, Direction::kPull);
  EXPECT_EQ(o.options, kOptsKnown);
  EXPECT_EQ(o.excludes, open.excludes);
  o = RoundTrip(Open{});
  EXPECT_EQ(o.direction, Direction::kPush);
  EXPECT_TRUE(o.excludes.empty());

  open.streams = kStreamsMax;
  open.compress_level = kZstdLevelMax;
  EXPECT_EQ(RoundTrip(open).streams, kStreamsMax);
  EXPECT_EQ(RoundTrip(open).compress_level, static_cast<uint32_t>(kZstdLevelMax));
  EXPECT_EQ(RoundTrip(Open{}).streams, 1u);

  OpenOk ok = RoundTrip(OpenOk{.session_id = kU64Max, .streams = 4, .join_token = {1, 2, 255}});
  EXPECT_EQ(ok.session_id, kU64Max);
  EXPECT_EQ(ok.streams, 4u);
  EXPECT_EQ(ok.join_token, (Hash128{1, 2, 255}));
  Join j = RoundTrip(Join{.session_id = 7, .token = {9}, .stream = kStreamsMax - 1});
  EXPECT_EQ(j.session_id, 7u);
  EXPECT_EQ(j.token, Hash128{9});
  EXPECT_EQ(j.stream, kStreamsMax - 1);
}

Entry MakeEntry(uint32_t id, EntryType type, std::string path, uint32_t mode) {
  Entry e;
  e.id = id;
  e.type = type;
  e.path = std::move(path);
  e.mode = mode;
  return e;
}

std::vector<Entry> EveryEntryType(uint32_t first_id) {
  uint32_t id = first_id;
  std::vector<Entry> v;
  v.push_back(MakeEntry(id++, EntryType::kDirectory, "", 0755));
  Entry& file = v.emplace_back(MakeEntry(id++, EntryType::kFile, "a/file", 07777));
  file.uid = UINT32_MAX;
  file.gid = 1000;
  file.size = kU64Max;
  file.mtime_sec = INT64_MIN;
  file.mtime_nsec = 999'999'999;
  file.xattrs = {{"security.selinux", std::string("x\0y", 3)}, {"user.a", ""}};
  file.has_content_hash = true;
  file.content_hash = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255};
  Entry& link = v.emplace_back(MakeEntry(id++, EntryType::kFile, "a/link", 0644));
  link.mtime_sec = -1;
  link.mtime_nsec = 1;
  link.hardlink_leader_plus1 = first_id + 2;  // the file above
  Entry& symlink = v.emplace_back(MakeEntry(id++, EntryType::kSymlink, "s", 0777));
  symlink.mtime_sec = INT64_MAX;
  symlink.link_target = "../a/file";
  v.push_back(MakeEntry(id++, EntryType::kFifo, "p", 0600));
  v.emplace_back(MakeEntry(id++, EntryType::kCharDevice, "c", 0)).rdev = kU64Max;
  v.emplace_back(MakeEntry(id++, EntryType::kBlockDevice, "b", 0660)).rdev = 0x0803;
  Entry& socket =
      v.emplace_back(MakeEntry(id++, EntryType::kSocket, std::string(kPathMaxBytes, 'k'), 0));
  socket.xattrs = {{std::string(kXattrNameMaxBytes, 'n'), std::string(kXattrValueMaxBytes, 'v')}};
  return v;
}

TEST(MessagesTest, EntriesRoundTrip) {
  for (uint32_t first_id : {0u, 100u, kEntriesPerSessionMax - 8}) {
    Entries entries{EveryEntryType(first_id)};
    EXPECT_EQ(RoundTrip(entries, first_id).entries, entries.entries);
    EXPECT_FALSE(Entries::Decode(EncodeToString(entries), first_id + 1).ok());
  }
}

TEST(MessagesTest, TransferRoundTrips) {
  EXPECT_EQ(RoundTrip(Count{0}).count, 0u);
  EXPECT_EQ(RoundTrip(Count{kEntriesPerSessionMax}).count, kEntriesPerSessionMax);
  EntriesEnd entries_end = RoundTrip(EntriesEnd{12345, kEntriesEndScanIncomplete});
  EXPECT_EQ(entries_end.count, 12345u);
  EXPECT_EQ(entries_end.flags, kEntriesEndScanIncomplete);
  Need need{{0, 7, 3, kEntriesPerSessionMax - 1}, {}};
  EXPECT_EQ(RoundTrip(need).ids, need.ids);
  EXPECT_FALSE(RoundTrip(need).HasBasis(3));
  Need with_basis{{4, kEntriesPerSessionMax - 1}, {true, false}};
  Need decoded = RoundTrip(with_basis);
  EXPECT_EQ(decoded.ids, with_basis.ids);
  EXPECT_TRUE(decoded.HasBasis(0));
  EXPECT_FALSE(decoded.HasBasis(1));

  for (size_t size : {size_t{1}, kDataChunkMaxBytes}) {
    std::string chunk(size, 'd');
    uint64_t offset = (uint64_t{1} << 62) - size;  // the last chunk the format allows
    std::string bytes =
        EncodeToString(Data{.id = kEntriesPerSessionMax - 1, .offset = offset, .bytes = chunk});
    Result<Data> d = Data::Decode(bytes);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->id, kEntriesPerSessionMax - 1);
    EXPECT_EQ(d->offset, offset);
    EXPECT_EQ(d->bytes, chunk);
    EXPECT_EQ(d->bytes.data() + d->bytes.size(), bytes.data() + bytes.size());  // no copy
    // DATA's chunk is the rest of the payload: only prefixes that cut id or offset fail.
    EXPECT_FALSE(Data::Decode(bytes.substr(0, bytes.size() - size)).ok());
    EXPECT_FALSE(Data::Decode(bytes.substr(0, 1)).ok());
    EXPECT_FALSE(Data::Decode("").ok());
  }

  for (uint8_t outcome = 0; outcome <= kFileOutcomeMax; ++outcome) {
    FileEnd end{.id = 42,
                .outcome = static_cast<FileOutcome>(outcome),
                .size = kU64Max,
                .content_hash = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6},
                .message = outcome == 3 ? "read a: Input/output error" : ""};
    FileEnd f = RoundTrip(end);
    EXPECT_EQ(f.id, 42u);
    EXPECT_EQ(f.outcome, end.outcome);
    EXPECT_EQ(f.size, kU64Max);
    EXPECT_EQ(f.content_hash, end.content_hash);
    EXPECT_EQ(f.message, end.message);
  }
}

TEST(MessagesTest, ReportRoundTrips) {
  Items items;
  for (uint8_t a = 1; a <= kItemActionMax; ++a) {
    for (uint8_t t = 1; t <= kEntryTypeMax; ++t) {
      items.items.push_back({static_cast<ItemAction>(a), static_cast<EntryType>(t),
                             "dir/" + std::to_string(a * 10 + t)});
    }
  }
  EXPECT_EQ(RoundTrip(items).items, items.items);

  Commit c = RoundTrip(Commit{1, 2, 3, 4, 5, kU64Max, 7});
  EXPECT_EQ(c.files_written, 1u);
  EXPECT_EQ(c.bytes_written, 2u);
  EXPECT_EQ(c.entries_deleted, 3u);
  EXPECT_EQ(c.files_changed_during_read, 4u);
  EXPECT_EQ(c.files_vanished, 5u);
  EXPECT_EQ(c.target_bytes_hashed, 7u);
  EXPECT_EQ(c.files_failed, kU64Max);

  Error e = RoundTrip(Error{static_cast<uint32_t>(Code::kNoSpace), "volume pgdata: no space"});
  EXPECT_EQ(e.ToStatus().code(), Code::kNoSpace);
  EXPECT_EQ(e.ToStatus().message(), "volume pgdata: no space");
  // Unknown codes become protocol errors; an over-long text is cut to the bound, not rejected.
  EXPECT_EQ((Error{0, "x"}.ToStatus().code()), Code::kProtocol);
  EXPECT_EQ((Error{999, "x"}.ToStatus().code()), Code::kProtocol);
  Result<Error> cut =
      Error::Decode(EncodeToString(Error{1, std::string(kMessageTextMaxBytes + 9, 'm')}));
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->message.size(), kMessageTextMaxBytes);
}

// --- Damaged inputs ---

// An ENTRIES entry with every field free, as written on the wire; the defaults are a valid
// plain file with id 0. `path` and `xattrs` hold their encoded fields, length or count first.
struct RawEntry {
  uint64_t id = 0;
  uint8_t type = 1;
  std::string path = Raw().B("f");
  uint64_t mode = 0644, uid = 0, gid = 0;
  int64_t mtime_sec = 0;
  uint64_t mtime_nsec = 0;
  uint64_t leader_plus1 = 0;
  uint8_t hash_flag = 0;
  std::string link_target = Raw().B("t");
  std::string xattrs = Raw().V(0);
};

std::string Write(const RawEntry& e) {
  Raw r;
  r.V(e.id).U8(e.type).Put(e.path).V(e.mode).V(e.uid).V(e.gid).S(e.mtime_sec).V(e.mtime_nsec);
  if (e.type == 1) {
    r.V(5).V(e.leader_plus1).U8(e.hash_flag);
    if (e.hash_flag == 1) r.Put(std::string(16, 'h'));
  }
  if (e.type == 5 || e.type == 6) r.V(0x0803);
  if (e.type == 3) r.Put(e.link_target);
  return std::string(r) + e.xattrs;
}

std::string Batch(const std::vector<RawEntry>& entries) {
  std::string out = Raw().V(entries.size());  // NOLINT
  for (const RawEntry& e : entries) out += Write(e);
  return out;
}

std::string Xattrs(const std::vector<std::pair<std::string, std::string>>& xattrs) {
  Raw r;
  r.V(xattrs.size());
  for (const auto& [name, value] : xattrs) r.B(name).B(value);
  return r;
}

TEST(MessagesTest, RawEntryMatchesEncoder) {
  Entry file = MakeEntry(0, EntryType::kFile, "f", 0644);
  file.size = 5;
  EXPECT_EQ(EncodeToString(Entries{{file}}), Batch({RawEntry{}}));
  for (uint8_t type = 1; type <= kEntryTypeMax; ++type) {  // controls for the table below
    RawEntry e{.type = type, .hash_flag = 1, .xattrs = Xattrs({{"a", "1"}, {"b", ""}})};
    EXPECT_TRUE(Entries::Decode(Batch({e}), 0).ok()) << int{type};
  }
  EXPECT_TRUE(
      Entries::Decode(Batch({{.id = kEntriesPerSessionMax - 1}}), kEntriesPerSessionMax - 1).ok());
}

TEST(MessagesTest, EntriesDamaged) {
  const std::string kLongPath = std::string(kPathMaxBytes + 1, 'p');
  std::vector<std::pair<std::string, std::string>> too_many, too_big;
  for (size_t i = 0; i <= kXattrsPerEntryMax; ++i)
    too_many.push_back({std::string("u").append(std::to_string(1000 + i)), ""});
  for (size_t i = 0; i < 16; ++i)
    too_big.push_back({std::string("u").append(std::to_string(10 + i)), std::string(kXattrValueMaxBytes, 'v')});
  too_big.back().second.resize(kXattrValueMaxBytes - 16 * 3 + 1);  // names and values: max + 1
  std::vector<RawEntry> dense(kEntriesPerBatchMax + 1);            // ids 0, 1, 2, ...
  for (size_t i = 0; i < dense.size(); ++i) dense[i].id = i;
  struct Case {
    std::string name;
    std::string bytes;
    uint32_t next_id = 0;
  };
  const Case kCases[] = {
      {"empty batch", Raw().V(0)},
      {"count over kEntriesPerBatchMax", Batch(dense)},
      {"count 2^32-1", Raw().V(UINT32_MAX).Put(Write({}))},
      {"count 2^64-1", Raw().V(kU64Max).Put(Write({}))},
      {"next_id + count over kEntriesPerSessionMax",
       Batch({{.id = kEntriesPerSessionMax - 1}, {.id = kEntriesPerSessionMax}}),
       kEntriesPerSessionMax - 1},
      {"first id not next_id", Batch({{.id = 1}})},
      {"duplicate id", Batch({{.id = 0}, {.id = 0}})},
      {"id skipped", Batch({{.id = 0}, {.id = 2}})},
      {"id goes back", Batch({{.id = 7}, {.id = 6}}), 7},
      {"id 2^64-1", Batch({{.id = kU64Max}})},
      {"hard link leader is itself", Batch({{.id = 0, .leader_plus1 = 1}})},
      {"hard link leader after it", Batch({{.id = 0}, {.id = 1, .leader_plus1 = 3}})},
      {"hard link leader 2^32-1", Batch({{.id = 0}, {.id = 1, .leader_plus1 = UINT32_MAX}})},
      {"type 0", Batch({{.type = 0}})},
      {"type 8", Batch({{.type = 8}})},
      {"type 255", Batch({{.type = 255}})},
      {"mode 010000", Batch({{.mode = 010000}})},
      {"mode 2^64-1", Batch({{.mode = kU64Max}})},
      {"uid 2^32", Batch({{.uid = uint64_t{1} << 32}})},
      {"gid 2^32", Batch({{.gid = uint64_t{1} << 32}})},
      {"nsec 1e9", Batch({{.mtime_nsec = 1'000'000'000}})},
      {"nsec 2^64-1", Batch({{.mtime_nsec = kU64Max}})},
      {"path over kPathMaxBytes", Batch({{.path = Raw().B(kLongPath)}})},
      {"path length 2^32-1", Batch({{.path = Raw().Len(UINT32_MAX, 8)}})},
      {"path length 2^64-1", Batch({{.path = Raw().Len(kU64Max, 8)}})},
      {"hash flag 2", Batch({{.hash_flag = 2}})},
      {"symlink target empty", Batch({{.type = 3, .link_target = Raw().B("")}})},
      {"symlink target holds NUL",
       Batch({{.type = 3, .link_target = Raw().B(std::string("a\0b", 3))}})},
      {"symlink target too long", Batch({{.type = 3, .link_target = Raw().B(kLongPath)}})},
      {"xattrs unsorted", Batch({{.xattrs = Xattrs({{"user.b", ""}, {"user.a", ""}})}})},
      {"xattrs duplicate", Batch({{.xattrs = Xattrs({{"user.a", "1"}, {"user.a", "2"}})}})},
      {"xattr name empty", Batch({{.xattrs = Xattrs({{"", "1"}})}})},
      {"xattr name holds NUL", Batch({{.xattrs = Xattrs({{std::string("a\0b", 3), ""}})}})},
      {"xattr name too long",
       Batch({{.xattrs = Xattrs({{std::string(kXattrNameMaxBytes + 1, 'n'), ""}})}})},
      {"xattr value too long",
       Batch({{.xattrs = Xattrs({{"a", std::string(kXattrValueMaxBytes + 1, 'v')}})}})},
      {"xattr count over max", Batch({{.xattrs = Xattrs(too_many)}})},
      {"xattr count 2^64-1", Batch({{.xattrs = Raw().V(kU64Max)}})},
      {"xattr bytes over kXattrBytesPerEntryMax", Batch({{.xattrs = Xattrs(too_big)}})},
  };
  for (const Case& c : kCases) {
    Status s = Entries::Decode(c.bytes, c.next_id).status();
    EXPECT_EQ(s.code(), Code::kCorruption) << c.name << ": " << s.ToString();
  }
  // Controls: one fewer of each bounded thing is fine.
  too_many.pop_back();
  too_big.back().second.pop_back();
  dense.pop_back();
  EXPECT_TRUE(Entries::Decode(Batch(dense), 0).ok());
  EXPECT_TRUE(Entries::Decode(Batch({{.xattrs = Xattrs(too_many)}}), 0).ok());
  EXPECT_TRUE(Entries::Decode(Batch({{.xattrs = Xattrs(too_big)}}), 0).ok());
  EXPECT_TRUE(Entries::Decode(Batch({{.id = 0}, {.id = 1, .leader_plus1 = 1}}), 0).ok());
}

// A partial manifest's entries: a directory flagged as listed in part, and a name gone from the
// source (its id and path only); the flag on anything but a directory, and a gone root, refused.
TEST(MessagesTest, PartialManifestEntries) {
  Entries batch;
  batch.entries.resize(3);
  batch.entries[0].type = EntryType::kDirectory;
  batch.entries[0].mode = 0755;
  batch.entries[0].partial_listing = true;
  batch.entries[1].id = 1;
  batch.entries[1].type = kEntryGone;
  batch.entries[1].path = "old";
  batch.entries[2].id = 2;
  batch.entries[2].type = EntryType::kDirectory;
  batch.entries[2].path = "d";
  batch.entries[2].mode = 0700;
  std::string wire;
  batch.Encode(&wire);
  Result<Entries> back = Entries::Decode(wire, 0);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->entries.size(), 3u);
  EXPECT_EQ(back->entries[0], batch.entries[0]);
  EXPECT_TRUE(back->entries[0].partial_listing);
  EXPECT_EQ(back->entries[1].type, kEntryGone);
  EXPECT_EQ(back->entries[1].path, "old");
  EXPECT_EQ(back->entries[2], batch.entries[2]);
  EXPECT_FALSE(back->entries[2].partial_listing);
  // Hand-made: type byte, then what follows it.
  auto entry = [](uint8_t type, std::string rest) { return std::string(Raw().V(1).V(0).U8(type)) + rest; };
  const std::string file_rest = Raw().B("f").V(0644).V(0).V(0).V(0).V(0).V(1).V(0).U8(0).V(0);
  ASSERT_TRUE(Entries::Decode(entry(1, file_rest), 0).ok());
  EXPECT_EQ(Entries::Decode(entry(1 | kEntryPartialListing, file_rest), 0).status().code(), Code::kCorruption);
  EXPECT_EQ(Entries::Decode(entry(static_cast<uint8_t>(kEntryGone), Raw().B("")), 0).status().code(), Code::kCorruption);
  EXPECT_EQ(Entries::Decode(entry(9, file_rest), 0).status().code(), Code::kCorruption);
}

TEST(MessagesTest, HandshakeDamaged) {
  const std::string kLong = std::string(kMessageTextMaxBytes + 1, 'a');
  auto hello = [](auto in) { return Hello::Decode(in).status(); };
  ExpectRejected({{"version range empty", Raw().U32(2).U32(1).U64(0).B("")},
                  {"agent too long", Raw().U32(1).U32(1).U64(0).B(kLong)},
                  {"agent length 2^64-1", Raw().U32(1).U32(1).U64(0).Len(kU64Max, 4)}},
                 hello);
  auto welcome = [](auto in) { return Welcome::Decode(in).status(); };
  ExpectRejected({{"agent too long", Raw().U32(1).U64(0).B(kLong)},
                  {"agent length 2^32-1", Raw().U32(1).U64(0).Len(UINT32_MAX, 4)}},
                 welcome);
  // OPEN: volume, subpath, stage, direction, options, excludes.
  auto open = [](std::string volume, std::string subpath, uint8_t direction, uint32_t options,
                 std::string excludes) {
    return std::string(Raw().Put(volume).Put(subpath).V(1).U8(direction).U32(options)) + excludes;
  };
  const std::string v = Raw().B("v"), sp = Raw().B(""), none = Raw().V(0).V(0).V(1).V(0).V(0);  // no excludes, no bwlimit, 1 stream, auto, no base
  std::string many_x;  // one more exclude pattern than allowed
  for (size_t i = 0; i <= kExcludePatternsMax; ++i) many_x += Raw().B("x");
  ASSERT_TRUE(Open::Decode(open(v, sp, 1, kOptsKnown, none)).ok());
  ExpectRejected(
      {{"direction 2", open(v, sp, 2, 0, none)},
       {"direction 255", open(v, sp, 255, 0, none)},
       {"option bit 9", open(v, sp, 0, 1u << 9, none), Code::kProtocol},
       {"option bit 31", open(v, sp, 0, 1u << 31, none), Code::kProtocol},
       {"volume too long",
        open(Raw().B(std::string(kVolumeNameMaxBytes + 1, 'v')), sp, 0, 0, none)},
       {"volume length 2^64-1", open(Raw().Len(kU64Max, 2), sp, 0, 0, none)},
       {"subpath too long", open(v, Raw().B(std::string(kPathMaxBytes + 1, 's')), 0, 0, none)},
       {"exclude count over max", open(v, sp, 0, 0, Raw().V(kExcludePatternsMax + 1).Put(many_x))},
       {"exclude count 2^64-1", open(v, sp, 0, 0, Raw().V(kU64Max).B("x"))},
       {"exclude too long",
        open(v, sp, 0, 0, Raw().V(1).B(std::string(kExcludePatternMaxBytes + 1, 'x')))},
       {"exclude length 2^32-1", open(v, sp, 0, 0, Raw().V(1).Len(UINT32_MAX, 3))},
       {"0 streams", open(v, sp, 0, 0, Raw().V(0).V(0).V(0).V(0))},
       {"streams over max", open(v, sp, 0, 0, Raw().V(0).V(0).V(kStreamsMax + 1).V(0))},
       {"streams 2^64-1", open(v, sp, 0, 0, Raw().V(0).V(0).V(kU64Max).V(0))},
       {"compression level over max", open(v, sp, 0, 0, Raw().V(0).V(0).V(1).V(kZstdLevelMax + 1))}},
      [](auto in) { return Open::Decode(in).status(); });
  const std::string token(16, 't');
  ExpectRejected({{"0 streams", Raw().U64(1).V(0).Put(token)},
                  {"streams over max", Raw().U64(1).V(kStreamsMax + 1).Put(token)},
                  {"token short", Raw().U64(1).V(2).Put("tttt")}},
                 [](auto in) { return OpenOk::Decode(in).status(); });
  ExpectRejected({{"stream 0", Raw().U64(1).Put(token).V(0)},
                  {"stream over max", Raw().U64(1).Put(token).V(kStreamsMax)},
                  {"stream 2^64-1", Raw().U64(1).Put(token).V(kU64Max)},
                  {"token short", Raw().U64(1).Put("ttt")}},
                 [](auto in) { return Join::Decode(in).status(); });
}

TEST(MessagesTest, TransferDamaged) {
  const uint32_t kIdEnd = kEntriesPerSessionMax;  // first id out of range
  ExpectRejected({{"count over kEntriesPerSessionMax", Raw().V(uint64_t{kIdEnd} + 1)},
                  {"count 2^64-1", Raw().V(kU64Max)}},
                 [](auto in) { return Count::Decode(in).status(); });
  ExpectRejected({{"count over kEntriesPerSessionMax", Raw().V(uint64_t{kIdEnd} + 1).U8(0)},
                  {"unknown flag bit", Raw().V(1).U8(2)},
                  {"flags missing", Raw().V(1)}},
                 [](auto in) { return EntriesEnd::Decode(in).status(); });
  ExpectRejected({{"empty batch", Raw().V(0)},
                  {"count over kIdsPerBatchMax",
                   Raw().V(kIdsPerBatchMax + 1).Put(std::string(kIdsPerBatchMax + 1, '\0'))},
                  {"count 2^64-1", Raw().V(kU64Max).V(0)},
                  {"id kEntriesPerSessionMax", Raw().V(2).V(0).V(uint64_t{kIdEnd} << 1)},
                  {"id 2^32-1", Raw().V(1).V(uint64_t{UINT32_MAX} << 1)},
                  {"id 2^64-1", Raw().V(1).V(kU64Max)}},
                 [](auto in) { return Need::Decode(in).status(); });
  const std::string kChunk = std::string(kDataChunkMaxBytes + 1, 'd');
  ExpectRejected({{"empty bytes", Raw().V(1).V(0)},
                  {"bytes over kDataChunkMaxBytes", Raw().V(1).V(0).Put(kChunk)},
                  {"id kEntriesPerSessionMax", Raw().V(kIdEnd).V(0).Put("d")},
                  {"offset + size over 2^62", Raw().V(1).V((uint64_t{1} << 62) - 1).Put("dd")},
                  {"offset 2^64-1", Raw().V(1).V(kU64Max).Put("d")}},
                 [](auto in) { return Data::Decode(in).status(); });
  auto file_end = [](uint64_t id, uint8_t outcome, std::string message) {
    return std::string(Raw().V(id).U8(outcome).V(9).Put(std::string(16, 'h')).Put(message));
  };
  ASSERT_TRUE(FileEnd::Decode(file_end(kIdEnd - 1, kFileOutcomeMax, Raw().B("m"))).ok());
  ExpectRejected(
      {{"outcome 4", file_end(1, kFileOutcomeMax + 1, Raw().B(""))},
       {"outcome 255", file_end(1, 255, Raw().B(""))},
       {"id kEntriesPerSessionMax", file_end(kIdEnd, 0, Raw().B(""))},
       {"message too long", file_end(1, 0, Raw().B(std::string(kMessageTextMaxBytes + 1, 'm')))},
       {"message length 2^64-1", file_end(1, 0, Raw().Len(kU64Max, 3))}},
      [](auto in) { return FileEnd::Decode(in).status(); });
}

TEST(MessagesTest, DeltaRoundTrips) {
  Hashes hashes{.id = 5, .block_size = kBlockSizeMax, .basis_size = uint64_t{1} << 40, .level = 3, .hashes = {}};
  for (uint8_t i = 0; i < 3; ++i) hashes.hashes.push_back(Hash128{i, 1, 2});
  Hashes h = RoundTrip(hashes);
  EXPECT_EQ(h.id, 5u);
  EXPECT_EQ(h.block_size, kBlockSizeMax);
  EXPECT_EQ(h.basis_size, uint64_t{1} << 40);
  EXPECT_EQ(h.level, 3);
  EXPECT_EQ(h.hashes, hashes.hashes);
  Want want{.id = 9, .level = 2, .nodes = {0, 1, 17, kBlocksPerFileMax - 1}};
  EXPECT_EQ(RoundTrip(want).nodes, want.nodes);
  Patch patch = RoundTrip(Patch{.id = 3, .kind = PatchKind::kRsync, .changed_bytes = 77});
  EXPECT_EQ(patch.kind, PatchKind::kRsync);
  EXPECT_EQ(patch.changed_bytes, 77u);
  Hole hole = RoundTrip(Hole{.id = 2, .offset = 4096, .length = 8192});
  EXPECT_EQ(hole.offset, 4096u);
  EXPECT_EQ(hole.length, 8192u);
  std::string bytes = EncodeToString(Piece{.id = 1, .flags = kPieceLast, .bytes = "sig"});
  Result<Piece> piece = Piece::Decode(bytes);
  ASSERT_TRUE(piece.ok());
  EXPECT_EQ(piece->bytes, "sig");
  EXPECT_EQ(piece->flags, kPieceLast);
}

TEST(MessagesTest, DeltaDamaged) {
  auto hashes = [](uint64_t block, uint64_t count, size_t bytes) {
    return std::string(Raw().V(1).V(block).V(100).U8(0).V(count).Put(std::string(bytes, 'h')));
  };
  ASSERT_TRUE(Hashes::Decode(hashes(kBlockSizeMin, 2, 32)).ok());
  ExpectRejected({{"block size not a power of two", hashes(kBlockSizeMin + 1, 1, 16)},
                  {"block size under the minimum", hashes(kBlockSizeMin / 2, 1, 16)},
                  {"block size over the maximum", hashes(uint64_t{kBlockSizeMax} * 2, 1, 16)},
                  {"count over kHashesPerMessageMax", hashes(kBlockSizeMin, kHashesPerMessageMax + 1, 16)},
                  {"count and length differ", hashes(kBlockSizeMin, 2, 31)},
                  {"count 2^64-1", hashes(kBlockSizeMin, kU64Max, 16)},
                  {"level 255", Raw().V(1).V(kBlockSizeMin).V(100).U8(255).V(0)}},
                 [](auto in) { return Hashes::Decode(in).status(); });
  ExpectRejected({{"level 0", Raw().V(1).U8(0).V(1).V(0)},
                  {"no nodes", Raw().V(1).U8(1).V(0)},
                  {"node beyond kBlocksPerFileMax", Raw().V(1).U8(1).V(2).V(kBlocksPerFileMax - 1).V(5)},
                  {"too many nodes", Raw().V(1).U8(1).V(kHashesPerMessageMax).Put(std::string(kHashesPerMessageMax, '\0'))}},
                 [](auto in) { return Want::Decode(in).status(); });
  ExpectRejected({{"kind 3", Raw().V(1).U8(kPatchKindMax + 1).V(0)}},
                 [](auto in) { return Patch::Decode(in).status(); });
  ExpectRejected({{"length 0", Raw().V(1).V(0).V(0)},
                  {"offset + length over 2^62", Raw().V(1).V((uint64_t{1} << 62) - 1).V(2)}},
                 [](auto in) { return Hole::Decode(in).status(); });
  ExpectRejected({{"unknown flag", Raw().V(1).U8(2).Put("x")},
                  {"piece over kDataChunkMaxBytes", Raw().V(1).U8(0).Put(std::string(kDataChunkMaxBytes + 1, 'x'))}},
                 [](auto in) { return Piece::Decode(in).status(); });
}

TEST(MessagesTest, ReportDamaged) {
  auto item = [](uint8_t action, uint8_t type, std::string path) {
    return std::string(Raw().U8(action).U8(type).Put(path));
  };
  const std::string kOk = item(1, 1, Raw().B("p"));
  ASSERT_TRUE(Items::Decode(std::string(Raw().V(1).Put(kOk))).ok());
  std::string many_ok;  // one more item than allowed
  for (size_t i = 0; i <= kItemsPerBatchMax; ++i) many_ok += kOk;
  ExpectRejected(
      {{"empty batch", Raw().V(0)},
       {"count over kItemsPerBatchMax", Raw().V(kItemsPerBatchMax + 1).Put(many_ok)},
       {"count 2^32-1", Raw().V(UINT32_MAX).Put(kOk)},
       {"action 0", Raw().V(1).Put(item(0, 1, Raw().B("p")))},
       {"action 5", Raw().V(1).Put(item(kItemActionMax + 1, 1, Raw().B("p")))},
       {"type 0", Raw().V(1).Put(item(1, 0, Raw().B("p")))},
       {"type 8", Raw().V(1).Put(item(1, kEntryTypeMax + 1, Raw().B("p")))},
       {"path too long", Raw().V(1).Put(item(1, 1, Raw().B(std::string(kPathMaxBytes + 1, 'p'))))},
       {"path length 2^64-1", Raw().V(1).Put(item(1, 1, Raw().Len(kU64Max, 2)))}},
      [](auto in) { return Items::Decode(in).status(); });
  ExpectRejected(
      {{"11-byte varint", Raw().V(1).V(2).V(3).V(4).V(5).Put(std::string(10, '\x80') + '\0')}},
      [](auto in) { return Commit::Decode(in).status(); });
  ExpectRejected({{"message too long", Raw().U32(1).B(std::string(kMessageTextMaxBytes + 1, 'e'))},
                  {"message length 2^32-1", Raw().U32(1).Len(UINT32_MAX, 3)}},
                 [](auto in) { return Error::Decode(in).status(); });
}

// --- Bench ---

TEST(MessagesTest, BenchTypes) {
  EXPECT_STREQ(MessageTypeName(kBenchTypeFirst), "BENCH_OPEN");
  EXPECT_STREQ(MessageTypeName(kBenchTypeLast), "BENCH_RESULT");
  EXPECT_STREQ(MessageTypeName(kBenchTypeLast + 1), "UNKNOWN");
  EXPECT_TRUE(IsKnownMessageType(kMessageTypeMax));
  EXPECT_TRUE(IsKnownMessageType(static_cast<uint8_t>(BenchType::kBenchData)));
  for (int t : {0, kMessageTypeMax + 1, kBenchTypeFirst - 1, kBenchTypeLast + 1, 39, 255}) {
    EXPECT_FALSE(IsKnownMessageType(static_cast<uint8_t>(t))) << t;
  }
}

TEST(MessagesTest, BenchRoundTrips) {
  BenchOpen o = RoundTrip(BenchOpen{.kind = BenchKind::kSync, .volume = "data", .bytes = kBenchBytesMax, .seconds = 0});
  EXPECT_EQ(o.kind, BenchKind::kSync);
  EXPECT_EQ(o.volume, "data");
  EXPECT_EQ(o.bytes, kBenchBytesMax);
  BenchOpen n = RoundTrip(BenchOpen{.kind = BenchKind::kNetworkDown, .volume = "", .bytes = 0,
                                    .seconds = kBenchSecondsMax});
  EXPECT_EQ(n.kind, BenchKind::kNetworkDown);
  EXPECT_EQ(n.seconds, kBenchSecondsMax);
  BenchReady r = RoundTrip(BenchReady{.session_id = kU64Max, .bytes = kBenchBytesMin, .free_bytes = kU64Max,
                                      .flags = kBenchFlagsKnown});
  EXPECT_EQ(r.session_id, kU64Max);
  EXPECT_EQ(r.free_bytes, kU64Max);
  EXPECT_EQ(r.flags, kBenchFlagsKnown);
  BenchEnd e = RoundTrip(BenchEnd{.bytes = kU64Max});
  EXPECT_EQ(e.bytes, kU64Max);
  BenchResult res = RoundTrip(BenchResult{.bytes = 1ull << 40, .files = kEntriesPerSessionMax, .duration_ns = 7});
  EXPECT_EQ(res.bytes, 1ull << 40);
  EXPECT_EQ(res.files, kEntriesPerSessionMax);
  EXPECT_EQ(res.duration_ns, 7u);
  const std::string chunk(kBenchChunkBytes, 'd');
  Result<BenchData> data = BenchData::Decode(chunk);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->bytes.size(), kBenchChunkBytes);
}

TEST(MessagesTest, BenchDamaged) {
  // BENCH_OPEN: kind, volume, bytes, seconds.
  auto open = [](uint8_t kind, std::string volume, uint64_t bytes, uint64_t seconds) {
    return std::string(Raw().U8(kind).Put(volume).V(bytes).V(seconds));
  };
  const std::string v = Raw().B("v");
  ASSERT_TRUE(BenchOpen::Decode(open(kBenchKindMax, v, kBenchBytesMax, 0)).ok());
  ASSERT_TRUE(BenchOpen::Decode(open(1, Raw().B(""), 0, 1)).ok());
  ExpectRejected(
      {{"kind 0", open(0, v, kBenchBytesMin, 1)},
       {"kind 5", open(kBenchKindMax + 1, v, kBenchBytesMin, 1)},
       {"kind 255", open(255, v, kBenchBytesMin, 1)},
       {"volume too long", open(3, Raw().B(std::string(kVolumeNameMaxBytes + 1, 'v')), kBenchBytesMin, 0)},
       {"volume length 2^64-1", open(3, Raw().Len(kU64Max, 2), kBenchBytesMin, 0)},
       {"bytes over kBenchBytesMax", open(3, v, kBenchBytesMax + 1, 0)},
       {"bytes 2^64-1", open(3, v, kU64Max, 0)},
       {"write under kBenchBytesMin", open(3, v, kBenchBytesMin - 1, 0)},
       {"sync of 0 bytes", open(4, v, 0, 0)},
       {"seconds over kBenchSecondsMax", open(1, v, 0, kBenchSecondsMax + 1)},
       {"seconds 2^64-1", open(2, v, 0, kU64Max)},
       {"network of 0 seconds", open(2, v, 0, 0)},
       {"11-byte varint", Raw().U8(1).B("v").Put(std::string(10, '\x80') + '\0').V(1)}},
      [](auto in) { return BenchOpen::Decode(in).status(); });
  ExpectRejected({{"unknown flag bit", Raw().U64(1).V(kBenchBytesMin).V(0).U8(kBenchFlagsKnown + 1)},
                  {"flag bit 7", Raw().U64(1).V(kBenchBytesMin).V(0).U8(0x80)},
                  {"bytes over kBenchBytesMax", Raw().U64(1).V(kBenchBytesMax + 1).V(0).U8(0)},
                  {"flags missing", Raw().U64(1).V(kBenchBytesMin).V(0)},
                  {"session id short", Raw().U32(1)}},
                 [](auto in) { return BenchReady::Decode(in).status(); });
  ExpectRejected({{"empty", std::string()},
                  {"over kBenchChunkBytes", std::string(kBenchChunkBytes + 1, 'd')}},
                 [](auto in) { return BenchData::Decode(in).status(); });
  ExpectRejected({{"empty", std::string()},
                  {"11-byte varint", Raw().Put(std::string(10, '\x80') + '\0')},
                  {"trailing byte", Raw().V(1).U8(0)}},
                 [](auto in) { return BenchEnd::Decode(in).status(); });
  ExpectRejected({{"files over kEntriesPerSessionMax", Raw().V(1).V(uint64_t{kEntriesPerSessionMax} + 1).V(1)},
                  {"files 2^64-1", Raw().V(1).V(kU64Max).V(1)},
                  {"duration missing", Raw().V(1).V(1)},
                  {"11-byte varint", Raw().V(1).V(1).Put(std::string(10, '\x80') + '\0')}},
                 [](auto in) { return BenchResult::Decode(in).status(); });
}

}  // namespace
}  // namespace ferry::protocol
