// A hostile sender against a real `ferry daemon`: a scripted peer that does the real handshake
// and then sends crafted frames, one script per class of rsync's 2024-2025 advisories
// (CVE-2024-12084 lengths and overflowing offsets, CVE-2024-12085 uninitialised bytes sent back,
// CVE-2024-12086 reads steered outside the destination, CVE-2024-12087 duplicate and out-of-range
// indices, CVE-2024-12088 symlink targets with "..", CVE-2024-12747 symlink races) plus
// traversal names, damaged and truncated frames and a zstd bomb. After each: the session failed
// (no COMMIT), nothing outside the volume changed, no temp file is left, and the daemon still
// serves a clean sync.
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <xxhash.h>
#include <zstd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "agent/blocks.h"
#include "agent/fs.h"
#include "base/bounds.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/wire.h"
#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"
#include "tests/wire_client.h"

namespace ferry_test {
namespace {

namespace protocol = ferry::protocol;
using protocol::Entry;
using protocol::EntryType;
using protocol::MessageType;

constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    volume_ = tmp_.Sub("volume");
    outside_ = tmp_.Sub("outside");
    src_ = tmp_.Sub("src");
    MakeDirs(volume_);
    MakeDirs(outside_);
    WriteFile(outside_ + "/canary", "outside the volume\n");
    MakeDirs(src_ + "/dir");
    WriteFile(src_ + "/dir/file", "a clean sync\n");
    DaemonProcess::Config config = DaemonConfigIn(tmp_.path(), {{"vol", volume_}});
    ASSERT_EQ(daemon_.Start(config), "");
  }
  void TearDown() override {
    EXPECT_TRUE(daemon_.alive()) << daemon_.Log();
    EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
  }

  // The outside directory holds its canary and nothing else, unchanged.
  void ExpectOutsideUntouched(const std::string& when) {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(outside_)) names.push_back(e.path().filename());
    EXPECT_EQ(names, std::vector<std::string>{"canary"}) << when;
    EXPECT_EQ(ReadFile(outside_ + "/canary"), "outside the volume\n") << when;
  }
  void ExpectDaemonServes(const std::string& when) {
    ASSERT_TRUE(daemon_.alive()) << when << "\n" << daemon_.Log();
    CommandResult r = RunFerry({"sync", "--insecure", "--no-progress", src_, daemon_.Url("vol")});
    ASSERT_EQ(r.exit_code, 0) << when << ": " << r.Describe() << "\n" << daemon_.Log();
    EXPECT_EQ(RsyncDiff(src_, volume_), "") << when;
  }
  // Runs one hostile session: `script` after the handshake and OPEN. The session must fail.
  void ExpectRefused(const std::string& name, const std::function<void(WireClient&)>& script) {
    SCOPED_TRACE(name);
    {
      WireClient client(daemon_.port());
      ferry::Result<protocol::OpenOk> opened = client.Open("vol", "");
      ASSERT_TRUE(opened.ok()) << opened.status().ToString();
      script(client);
      ferry::Frame frame;
      EXPECT_FALSE(client.ReceiveUntil(MessageType::kCommit, &frame)) << "the daemon committed a hostile stage";
      client.Close();
    }
    failed_ += 1;
    ASSERT_TRUE(daemon_.WaitForLog("stage failed", failed_, 15)) << daemon_.Log();
    ExpectOutsideUntouched(name);
    EXPECT_EQ(FindTempFiles(volume_), "") << name;
    ExpectDaemonServes("after " + name);
  }
  static void Send(WireClient& c, const protocol::Entries& batch) {
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kEntries, batch).ok());
  }
  static void SendEntriesAndEnd(WireClient& c, std::vector<Entry> entries) {
    protocol::Entries batch;
    batch.entries = std::move(entries);
    Send(c, batch);
    protocol::EntriesEnd end;
    end.count = batch.entries.size();
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kEntriesEnd, end).ok());
  }
  // Root and one 8 KiB file; returns once the daemon asked for it.
  static void NeedOneFile(WireClient& c) {
    SendEntriesAndEnd(c, {MakeEntry(0, EntryType::kDirectory, ""), MakeEntry(1, EntryType::kFile, "f", 8192)});
    ferry::Frame frame;
    ASSERT_TRUE(c.ReceiveUntil(MessageType::kNeed, &frame));
  }
  // One frame with a valid checksum over `wire`, claiming `payload_size` after decompression.
  static std::string CraftFrame(MessageType type, uint8_t flags, const std::string& wire, uint32_t payload_size) {
    std::string header;
    protocol::WireWriter w(&header);
    w.U32(protocol::kFrameMagic);
    w.U8(static_cast<uint8_t>(type));
    w.U8(flags);
    w.U8(0);
    w.U8(0);
    w.U32(static_cast<uint32_t>(wire.size()));
    w.U32(payload_size);
    uint64_t seed = XXH3_64bits(header.data(), header.size());
    w.U64(XXH3_64bits_withSeed(wire.data(), wire.size(), seed));
    return header + wire;
  }

  TempDir tmp_;
  DaemonProcess daemon_;
  std::string volume_, outside_, src_;
  int failed_ = 0;
};

// CVE-2024-12084 (a checksum length the receiver trusted: heap overflow). Here every length and
// offset is checked against the file's announced size before a byte is written.
TEST_F(HostileTest, LengthsAndOffsetsThatOverflow) {
  ExpectRefused("DATA whose end overflows 64 bits", [](WireClient& c) {
    NeedOneFile(c);
    std::string bytes(4096, 'x');
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kData, protocol::Data{1, kMax64 - 4095, bytes}).ok());
  });
  ExpectRefused("HOLE of 2^64-1 bytes", [](WireClient& c) {
    NeedOneFile(c);
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kHole, protocol::Hole{1, 4096, kMax64}).ok());
  });
  ExpectRefused("DATA past the announced size (max + 1)", [](WireClient& c) {
    NeedOneFile(c);
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kData, protocol::Data{1, 8192, "x"}).ok());
  });
  ExpectRefused("a 0-byte HOLE", [](WireClient& c) {
    NeedOneFile(c);
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kHole, protocol::Hole{1, 0, 0}).ok());
  });
  ExpectRefused("FILE_END with another size than the manifest's", [](WireClient& c) {
    NeedOneFile(c);
    std::string bytes(8192, 'y');
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kData, protocol::Data{1, 0, bytes}).ok());
    protocol::FileEnd end;
    end.id = 1;
    end.size = 4096;
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kFileEnd, end).ok());
  });
  ExpectRefused("a file of 2^64-1 bytes", [](WireClient& c) {
    SendEntriesAndEnd(c, {MakeEntry(0, EntryType::kDirectory, ""), MakeEntry(1, EntryType::kFile, "huge", kMax64)});
    ferry::Frame frame;
    if (c.ReceiveUntil(MessageType::kNeedEnd, &frame)) {
      // Refused per file ("over 4 TiB"), so the stage may go on: end it with a wrong count.
      ASSERT_TRUE(c.channel().SendMessage(MessageType::kDone, protocol::Count{7}).ok());
    }
  });
}

// CVE-2024-12085 (uninitialised stack bytes in checksums sent to the peer). The daemon's block
// hashes of a basis it offers must be exactly the hashes of the file's bytes.
TEST_F(HostileTest, HashesSentBackAreExactlyTheBasisHashes) {
  std::string content = RandomBytes(200 * 1024 + 100, 7);  // over kDeltaMinBytes: offered as a basis
  WriteFile(volume_ + "/basis", content);
  WireClient client(daemon_.port());
  ASSERT_TRUE(client.Open("vol", "").ok());
  Entry e = MakeEntry(1, EntryType::kFile, "basis", content.size());
  e.mtime_sec = 1'500'000'000;  // differs from the target's: its content is compared by hashes
  SendEntriesAndEnd(client, {MakeEntry(0, EntryType::kDirectory, ""), e});
  ferry::Frame frame;
  ASSERT_TRUE(client.ReceiveUntil(MessageType::kHashes, &frame));
  ferry::Result<protocol::Hashes> hashes = protocol::Hashes::Decode(frame.payload);
  ASSERT_TRUE(hashes.ok()) << hashes.status().ToString();
  ASSERT_EQ(hashes->basis_size, content.size());
  ASSERT_EQ(hashes->level, 0) << "a small basis is offered leaf by leaf";
  const uint32_t bs = hashes->block_size;
  ASSERT_EQ(hashes->hashes.size(), (content.size() + bs - 1) / bs);
  for (size_t i = 0; i < hashes->hashes.size(); ++i) {
    EXPECT_EQ(hashes->hashes[i], ferry::BlockHash(std::string_view(content).substr(i * bs, bs))) << "block " << i;
  }
  client.Close();
  ASSERT_TRUE(daemon_.WaitForLog("stage failed", 1, 15)) << daemon_.Log();
  failed_ = 1;
}

// CVE-2024-12086 (the sender steered which basis files the receiver read, outside the
// destination) and CVE-2024-12088 (symlinks with ".." let later writes escape): the receiver
// picks its own bases, a hard link names an earlier file entry of the manifest only, and nothing
// is ever written through a symlink.
TEST_F(HostileTest, NoReadOrWriteSteeredOutside) {
  ExpectRefused("a file below a symlink entry that points outside", [&](WireClient& c) {
    Entry link = MakeEntry(1, EntryType::kSymlink, "lnk");
    link.link_target = outside_;
    SendEntriesAndEnd(c, {MakeEntry(0, EntryType::kDirectory, ""), link,
                          MakeEntry(2, EntryType::kFile, "lnk/escaped", 10)});
  });
  ExpectRefused("a hard link to a symlink entry", [&](WireClient& c) {
    Entry link = MakeEntry(1, EntryType::kSymlink, "lnk");
    link.link_target = outside_ + "/canary";
    Entry hard = MakeEntry(2, EntryType::kFile, "hard");
    hard.hardlink_leader_plus1 = 2;
    SendEntriesAndEnd(c, {MakeEntry(0, EntryType::kDirectory, ""), link, hard});
  });
  ExpectRefused("a hard link to an entry that does not exist yet", [&](WireClient& c) {
    Entry hard = MakeEntry(1, EntryType::kFile, "hard");
    hard.hardlink_leader_plus1 = 50;
    SendEntriesAndEnd(c, {MakeEntry(0, EntryType::kDirectory, ""), hard});
  });
  // Symlinks are data: stored verbatim (".." and absolute targets included), never followed.
  {
    WireClient c(daemon_.port());
    ASSERT_TRUE(c.Open("vol", "").ok());
    Entry up = MakeEntry(1, EntryType::kSymlink, "up");
    up.link_target = "../outside";
    Entry abs = MakeEntry(2, EntryType::kSymlink, "abs");
    abs.link_target = outside_ + "/canary";
    SendEntriesAndEnd(c, {MakeEntry(0, EntryType::kDirectory, ""), up, abs});
    ferry::Frame frame;
    ASSERT_TRUE(c.ReceiveUntil(MessageType::kNeedEnd, &frame));
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kDone, protocol::Count{0}).ok());
    ASSERT_TRUE(c.ReceiveUntil(MessageType::kCommit, &frame)) << daemon_.Log();
    c.Close();
  }
  EXPECT_EQ(std::filesystem::read_symlink(volume_ + "/up"), "../outside");
  EXPECT_EQ(std::filesystem::read_symlink(volume_ + "/abs"), outside_ + "/canary");
  // The next stage makes "up" a directory with a file and "abs" a file: both replace the link.
  MakeDirs(src_ + "/up");
  WriteFile(src_ + "/up/canary", "through the link?\n");
  WriteFile(src_ + "/abs", "instead of the link\n");
  ExpectDaemonServes("replacing symlinks that point outside");
  ExpectOutsideUntouched("after replacing the symlinks");
}

// CVE-2024-12087 (duplicate and out-of-range file indices): every id is checked against the
// manifest and the file's state before use.
TEST_F(HostileTest, DuplicateAndOutOfRangeIds) {
  ExpectRefused("the same path twice", [](WireClient& c) {
    SendEntriesAndEnd(c, {MakeEntry(0, EntryType::kDirectory, ""), MakeEntry(1, EntryType::kFile, "a", 3),
                          MakeEntry(2, EntryType::kFile, "a", 3)});
  });
  ExpectRefused("ids that skip", [](WireClient& c) {
    SendEntriesAndEnd(c, {MakeEntry(0, EntryType::kDirectory, ""), MakeEntry(5, EntryType::kFile, "a", 3)});
  });
  ExpectRefused("DATA for an id past the manifest", [](WireClient& c) {
    NeedOneFile(c);
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kData, protocol::Data{99, 0, "abc"}).ok());
  });
  ExpectRefused("FILE_END for a directory", [](WireClient& c) {
    NeedOneFile(c);
    protocol::FileEnd end;
    end.id = 0;
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kFileEnd, end).ok());
  });
  ExpectRefused("DATA after the file's end", [](WireClient& c) {
    NeedOneFile(c);
    std::string bytes(8192, 'z');
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kData, protocol::Data{1, 0, bytes}).ok());
    protocol::FileEnd end;
    end.id = 1;
    end.size = 8192;
    ferry::Hash128 leaves[2] = {ferry::BlockHash(std::string_view(bytes).substr(0, 4096)),
                                ferry::BlockHash(std::string_view(bytes).substr(4096))};
    end.content_hash = ferry::HashTree(std::vector<ferry::Hash128>(leaves, leaves + 2)).Root();
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kFileEnd, end).ok());
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kData, protocol::Data{1, 0, "late"}).ok());
  });
}

TEST_F(HostileTest, TraversalNamesAreRefusedBeforeAnySyscall) {
  const std::string long_name(ferry::kNameMaxBytes + 1, 'n');
  for (const std::string& path : {std::string(".."), std::string("dir/../../outside/x"), outside_ + "/x",
                                  std::string("dir//x"), std::string("dir/./x"), std::string("dir/x/"),
                                  std::string("dir/\0x", 6), long_name}) {
    ExpectRefused("path '" + Printable(path) + "'", [&](WireClient& c) {
      SendEntriesAndEnd(c, {MakeEntry(0, EntryType::kDirectory, ""), MakeEntry(1, EntryType::kDirectory, "dir"),
                            MakeEntry(2, EntryType::kFile, path, 3)});
    });
  }
  EXPECT_FALSE(std::filesystem::exists(volume_ + "/dir/x"));
  // Lengths at the limit pass: a directory with a 255-byte name (NAME_MAX) at a 4095-byte path
  // (PATH_MAX); one byte more of path is refused.
  std::string deep;  // 19 directories of 200 bytes and one of 20: 3,839 bytes with the slashes
  for (int i = 0; i < 19; ++i) deep += std::string(200, 'd') + "/";
  deep += std::string(20, 'e');
  const std::string at_limit = deep + "/" + std::string(ferry::kNameMaxBytes, 'n');
  ASSERT_EQ(at_limit.size(), ferry::kPathMaxBytes);
  std::vector<Entry> entries = {MakeEntry(0, EntryType::kDirectory, "")};
  for (size_t slash = deep.find('/'); slash != std::string::npos; slash = deep.find('/', slash + 1)) {
    entries.push_back(MakeEntry(static_cast<uint32_t>(entries.size()), EntryType::kDirectory, deep.substr(0, slash)));
  }
  entries.push_back(MakeEntry(static_cast<uint32_t>(entries.size()), EntryType::kDirectory, deep));
  entries.push_back(MakeEntry(static_cast<uint32_t>(entries.size()), EntryType::kDirectory, at_limit));
  {
    WireClient c(daemon_.port());
    ASSERT_TRUE(c.Open("vol", "").ok());
    SendEntriesAndEnd(c, entries);
    ferry::Frame frame;
    ASSERT_TRUE(c.ReceiveUntil(MessageType::kNeedEnd, &frame)) << daemon_.Log();
    ASSERT_TRUE(c.channel().SendMessage(MessageType::kDone, protocol::Count{0}).ok());
    const bool committed = c.ReceiveUntil(MessageType::kCommit, &frame);
    ASSERT_TRUE(committed) << (frame.type == MessageType::kError ? protocol::Error::Decode(frame.payload)->message : "");
    c.Close();
  }
  {
    // Relative to the volume: the absolute path is over PATH_MAX for the test's own calls.
    ferry::UniqueFd root(::open(volume_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st;
    EXPECT_EQ(::fstatat(root.get(), at_limit.c_str(), &st, AT_SYMLINK_NOFOLLOW), 0) << std::strerror(errno);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
  }
  ASSERT_EQ(RunCommand({"rm", "-rf", volume_ + "/" + deep.substr(0, 200)}).exit_code, 0);  // GNU rm walks any depth
  ExpectRefused("a path of PATH_MAX + 1 bytes", [&](WireClient& c) {
    std::vector<Entry> over = entries;
    over.back().path = at_limit + "n";  // 4096 bytes (and a 256-byte name)
    SendEntriesAndEnd(c, over);
  });
}

TEST_F(HostileTest, DamagedTruncatedAndBombFrames) {
  ExpectRefused("a bit flipped in a DATA frame", [](WireClient& c) {
    NeedOneFile(c);
    std::string payload;
    protocol::Data{1, 0, std::string(4096, 'q')}.Encode(&payload);
    std::string frame;
    protocol::FrameEncoder(std::nullopt).Encode(static_cast<uint8_t>(MessageType::kData), payload, &frame);
    frame[ferry::kFrameHeaderBytes + 100] ^= 0x10;
    ASSERT_TRUE(c.SendRaw(frame));
  });
  ExpectRefused("a DATA frame cut in half, then the connection closed", [](WireClient& c) {
    NeedOneFile(c);
    std::string payload;
    protocol::Data{1, 0, std::string(8192, 'h')}.Encode(&payload);
    std::string frame;
    protocol::FrameEncoder(std::nullopt).Encode(static_cast<uint8_t>(MessageType::kData), payload, &frame);
    ASSERT_TRUE(c.SendRaw(frame.substr(0, frame.size() / 2)));
    c.Close();
  });
  ExpectRefused("a zstd bomb: 256 MiB of zeros in a frame that claims 4 MiB", [](WireClient& c) {
    NeedOneFile(c);
    std::string zeros(256 << 20, '\0');
    std::string bomb(ZSTD_compressBound(zeros.size()), '\0');
    size_t n = ZSTD_compress(bomb.data(), bomb.size(), zeros.data(), zeros.size(), 3);
    ASSERT_FALSE(ZSTD_isError(n));
    bomb.resize(n);
    ASSERT_LT(bomb.size(), 1u << 20);
    ASSERT_TRUE(c.SendRaw(CraftFrame(MessageType::kData, protocol::kFrameFlagZstd, bomb,
                                     static_cast<uint32_t>(ferry::kFramePayloadMaxBytes))));
  });
  ExpectRefused("a frame one byte over the maximum", [](WireClient& c) {
    NeedOneFile(c);
    std::string wire(ferry::kFramePayloadMaxBytes + 1, 'm');
    // The daemon closes the connection after the header: the rest may not go out.
    (void)c.SendRaw(CraftFrame(MessageType::kData, 0, wire, static_cast<uint32_t>(wire.size())));
  });
}

// CVE-2024-12747 (a symlink race during the transfer): a thread swaps target directories for
// symlinks to outside, thousands of times, while a real sync writes into them. The sync may
// fail or succeed; nothing may land outside, and the next sync converges.
TEST_F(HostileTest, DirectorySwappedForASymlinkDuringASync) {
  for (int d = 0; d < 8; ++d) {
    MakeDirs(src_ + "/d" + std::to_string(d));
    for (int f = 0; f < 60; ++f) {
      WriteFile(src_ + "/d" + std::to_string(d) + "/f" + std::to_string(f), std::string(3000 + f, 'a' + d));
    }
  }
  ExpectDaemonServes("first stage");
  for (int d = 0; d < 8; ++d) {
    for (int f = 0; f < 60; ++f) {
      WriteFile(src_ + "/d" + std::to_string(d) + "/f" + std::to_string(f), std::string(5000 + f, 'A' + d));
    }
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> swaps{0};
  std::thread racer([&] {
    while (!stop.load()) {
      for (int d = 0; d < 8 && !stop.load(); ++d) {
        const std::string dir = volume_ + "/d" + std::to_string(d);
        const std::string aside = volume_ + "/.aside" + std::to_string(d);
        if (::rename(dir.c_str(), aside.c_str()) != 0) continue;
        if (::symlink(outside_.c_str(), dir.c_str()) == 0) {
          swaps += 1;
          ::unlink(dir.c_str());
        }
        ::rename(aside.c_str(), dir.c_str());
      }
    }
  });
  // At least 5 syncs, and on until the racer swapped 2,000 times (a loaded machine gives it
  // fewer turns per sync), within a minute.
  int syncs = 0;
  auto start = std::chrono::steady_clock::now();
  while ((syncs < 5 || swaps.load() < 2000) && std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
    RunFerry({"sync", "--insecure", "--no-progress", src_, daemon_.Url("vol")});
    syncs += 1;
  }
  stop = true;
  racer.join();
  EXPECT_GE(swaps.load(), 2000u) << "the racer hardly ran";
  std::printf("%llu swaps during %d syncs\n", static_cast<unsigned long long>(swaps.load()), syncs);
  ExpectOutsideUntouched("after the race");
  for (int d = 0; d < 8; ++d) RemoveTree(volume_ + "/.aside" + std::to_string(d));
  ExpectDaemonServes("after the race");
}

}  // namespace
}  // namespace ferry_test

namespace ferry_test {
namespace {

// A slow peer (a byte of its HELLO every 2 s, never enough to trip the per-read idle timeout)
// is cut at the handshake deadline, and the daemon serves others meanwhile.
TEST_F(HostileTest, SlowPeerIsCutAtTheHandshakeDeadline) {
  int fd = ConnectTcp(daemon_.port());
  std::string hello_frame;
  {
    std::string payload;
    protocol::Hello hello;
    hello.agent = "slow";
    hello.Encode(&payload);
    protocol::FrameEncoder(std::nullopt).Encode(static_cast<uint8_t>(MessageType::kHello), payload, &hello_frame);
  }
  auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (size_t i = 0; i < hello_frame.size() && !closed; ++i) {
    if (::send(fd, &hello_frame[i], 1, MSG_NOSIGNAL) != 1) {
      closed = true;
      break;
    }
    if (i == 1) ExpectDaemonServes("while a slow peer dribbles");
    std::string received;
    closed = ReadUntilClosed(fd, 2, &received);
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ::close(fd);
  EXPECT_TRUE(closed) << "a peer sending a byte every 2 s kept its connection for " << seconds << " s";
  EXPECT_LT(seconds, ferry::kHandshakeTimeoutMs / 1000.0 + 4) << "cut late";
  EXPECT_TRUE(daemon_.alive());
}

}  // namespace
}  // namespace ferry_test
