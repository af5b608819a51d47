// The receiver against a scripted sender that speaks the protocol frame by frame: what a
// hostile or broken peer can make it do (nothing outside the volume, a clear error).
#include "agent/blocks.h"
#include "agent/receiver.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "agent/hash.h"
#include "agent/io/stream.h"

namespace ferry {
namespace {

using protocol::Entry;
using protocol::EntryType;
using protocol::MessageType;

class ReceiverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-receiver-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/volume";
    outside_ = dir_ + "/outside";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0);
    root_fd_ = UniqueFd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY));
    ASSERT_TRUE(root_fd_.valid());
  }
  void TearDown() override { (void)std::system(("rm -rf " + dir_).c_str()); }

  // Runs a receiver while `script` plays the sender; returns the receiver's status.
  Status RunStage(const std::function<void(Channel&)>& script, SyncOptions options = {}) {
    std::unique_ptr<io::ByteStream> a, b;
    EXPECT_TRUE(io::MakeStreamPair("test sender", &a, "test receiver", &b).ok());
    Status result;
    std::thread receiver([&] {
      Channel channel(*a);
      result = Receiver(channel, root_fd_.get(), root_, options, 7).Run();
      a->Shutdown();
    });
    Channel sender(*b);
    script(sender);
    // Drain replies until the receiver is done, so it never blocks on a full socket.
    Frame frame;
    while (sender.Receive(&frame, 5000).ok() && frame.type != MessageType::kCommit) {
    }
    receiver.join();
    return result;
  }

  static Entry Dir(uint32_t id, std::string path) {
    Entry e;
    e.id = id;
    e.type = EntryType::kDirectory;
    e.path = std::move(path);
    e.mode = 0755;
    return e;
  }
  static Entry File(uint32_t id, std::string path, uint64_t size) {
    Entry e = Dir(id, std::move(path));
    e.type = EntryType::kFile;
    e.mode = 0644;
    e.size = size;
    return e;
  }
  static Entry Symlink(uint32_t id, std::string path, std::string target) {
    Entry e = Dir(id, std::move(path));
    e.type = EntryType::kSymlink;
    e.link_target = std::move(target);
    return e;
  }
  static void SendEntries(Channel& c, std::vector<Entry> entries) {
    uint64_t count = entries.size();
    ASSERT_TRUE(c.SendMessage(MessageType::kEntries, protocol::Entries{std::move(entries)}).ok());
    ASSERT_TRUE(c.SendMessage(MessageType::kEntriesEnd, protocol::EntriesEnd{count, 0}).ok());
  }
  // For entries the receiver must refuse: it may refuse the first message and hang up before the
  // second is sent, so a failed send is expected here; the test asserts the receiver's status.
  static void SendRefusedEntries(Channel& c, std::vector<Entry> entries) {
    uint64_t count = entries.size();
    if (c.SendMessage(MessageType::kEntries, protocol::Entries{std::move(entries)}).ok()) {
      (void)c.SendMessage(MessageType::kEntriesEnd, protocol::EntriesEnd{count, 0});
    }
  }
  static void SendFile(Channel& c, uint32_t id, const std::string& content, bool corrupt_hash = false) {
    BlockHasher hasher(BlockSizeFor(content.size()));
    if (!content.empty()) {
      ASSERT_TRUE(c.SendMessage(MessageType::kData, protocol::Data{id, 0, content}).ok());
      hasher.Update(0, content);
    }
    protocol::FileEnd end;
    end.id = id;
    end.size = content.size();
    end.content_hash = HashTree(hasher.Finish(content.size())).Root();
    if (corrupt_hash) end.content_hash[0] ^= 1;
    ASSERT_TRUE(c.SendMessage(MessageType::kFileEnd, end).ok());
  }
  int CountEntries(const std::string& dir) {
    std::string cmd = "find " + dir + " -mindepth 1 | wc -l";
    FILE* p = ::popen(cmd.c_str(), "r");
    int n = -1;
    EXPECT_EQ(std::fscanf(p, "%d", &n), 1);
    ::pclose(p);
    return n;
  }

  static void WriteFileAt(const std::string& path, const std::string& content) {
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(content.data(), 1, content.size(), f), content.size());
    std::fclose(f);
  }
  static std::string ReadAll(const std::string& path) {
    std::string out;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return out;
    char buffer[65536];
    for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), f)) > 0;) out.append(buffer, n);
    std::fclose(f);
    return out;
  }

  std::string dir_, root_, outside_;
  UniqueFd root_fd_;
};

TEST_F(ReceiverTest, WritesAFileAndCommits) {
  Status s = RunStage([](Channel& c) {
    SendEntries(c, {Dir(0, ""), File(1, "f", 5)});
    SendFile(c, 1, "hello");
    ASSERT_TRUE(c.SendMessage(MessageType::kDone, protocol::Count{1}).ok());
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  struct stat st;
  ASSERT_EQ(::stat((root_ + "/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 5);
}

// A size no file may have (its hashes would not fit the bounds): the file is counted as failed,
// never asked for, and nothing is allocated for it; a FILE_END for it anyway is refused.
TEST_F(ReceiverTest, FileOverTheSizeLimitIsCountedNotAskedFor) {
  Status s = RunStage([](Channel& c) {
    SendEntries(c, {Dir(0, ""), File(1, "huge", uint64_t{1} << 62)});
    ASSERT_TRUE(c.SendMessage(MessageType::kDone, protocol::Count{0}).ok());
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  struct stat st;
  EXPECT_NE(::stat((root_ + "/huge").c_str(), &st), 0);
  s = RunStage([](Channel& c) {
    SendEntries(c, {Dir(0, ""), File(1, "huge", kFileSizeMax + 1)});
    protocol::FileEnd end;
    end.id = 1;
    end.size = kFileSizeMax + 1;
    ASSERT_TRUE(c.SendMessage(MessageType::kFileEnd, end).ok());
  });
  EXPECT_EQ(s.code(), Code::kProtocol) << s.ToString();
}

// A hostile sender in the delta exchange: after the receiver offered its copy of "f" as a basis,
// every malformed step is refused, and the target file is neither changed nor left with temps.
TEST_F(ReceiverTest, HostileDeltaStepsAreRefusedAndTheTargetKept) {
  std::string original(256 * 1024, '\0');
  for (size_t i = 0; i < original.size(); ++i) original[i] = static_cast<char>(i * 7 + i / 4096);
  const std::string path = root_ + "/f";
  struct Case {
    const char* name;
    Code code;
    std::function<void(Channel&)> step;
  };
  auto patch = [](Channel& c) {
    ASSERT_TRUE(c.SendMessage(MessageType::kPatch, protocol::Patch{1, protocol::PatchKind::kBlocks, 4096}).ok());
  };
  const std::vector<Case> cases = {
      {"WANT at a level the basis does not have", Code::kProtocol,
       [](Channel& c) { ASSERT_TRUE(c.SendMessage(MessageType::kWant, protocol::Want{1, 5, {0}}).ok()); }},
      {"WANT for a node out of range", Code::kProtocol,
       [](Channel& c) { ASSERT_TRUE(c.SendMessage(MessageType::kWant, protocol::Want{1, 1, {100}}).ok()); }},
      {"WANT for a file without a basis", Code::kProtocol,
       [](Channel& c) { ASSERT_TRUE(c.SendMessage(MessageType::kWant, protocol::Want{0, 1, {0}}).ok()); }},
      {"DATA before PATCH", Code::kProtocol,
       [](Channel& c) { ASSERT_TRUE(c.SendMessage(MessageType::kData, protocol::Data{1, 0, "x"}).ok()); }},
      {"HOLE past the end", Code::kCorruption,
       [&](Channel& c) {
         patch(c);
         ASSERT_TRUE(c.SendMessage(MessageType::kHole, protocol::Hole{1, 0, 1u << 20}).ok());
       }},
      {"DATA off the block grid", Code::kCorruption,
       [&](Channel& c) {
         patch(c);
         ASSERT_TRUE(c.SendMessage(MessageType::kData, protocol::Data{1, 100, "x"}).ok());
       }},
      {"DELTA without an rsync PATCH", Code::kProtocol,
       [](Channel& c) { ASSERT_TRUE(c.SendMessage(MessageType::kDelta, protocol::Piece{1, 0, "rs"}).ok()); }},
      {"a second PATCH", Code::kProtocol,
       [&](Channel& c) {
         patch(c);
         patch(c);
       }},
  };
  for (const Case& tc : cases) {
    WriteFileAt(path, original);
    Status s = RunStage([&](Channel& c) {
      Entry f = File(1, "f", original.size());
      f.mtime_sec = 12345;  // differs from the target's: content needed
      SendEntries(c, {Dir(0, ""), f});
      Frame frame;
      bool offered = false;
      while (!offered && c.Receive(&frame, 5000).ok()) offered = frame.type == MessageType::kHashes;
      ASSERT_TRUE(offered) << tc.name << ": no basis offered";
      tc.step(c);
    });
    EXPECT_EQ(s.code(), tc.code) << tc.name << ": " << s.ToString();
    EXPECT_EQ(ReadAll(path), original) << tc.name << ": the target changed";
    EXPECT_EQ(CountEntries(root_), 1) << tc.name << ": temp files left";
  }
}

TEST_F(ReceiverTest, KeepalivesAnywhereAreIgnored) {
  Status s = RunStage([](Channel& c) {
    ASSERT_TRUE(c.Send(MessageType::kKeepalive, {}).ok());
    SendEntries(c, {Dir(0, ""), File(1, "f", 5)});
    ASSERT_TRUE(c.Send(MessageType::kKeepalive, {}).ok());
    SendFile(c, 1, "hello");
    ASSERT_TRUE(c.Send(MessageType::kKeepalive, {}).ok());
    ASSERT_TRUE(c.SendMessage(MessageType::kDone, protocol::Count{1}).ok());
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
}

TEST_F(ReceiverTest, RefusesTraversalNamesBeforeAnySyscall) {
  for (const std::string bad : {"../outside/x", "/abs", "a/../../x", "a//b", "..", "."}) {
    Status s = RunStage([&](Channel& c) { SendRefusedEntries(c, {Dir(0, ""), File(1, bad, 1)}); });
    EXPECT_EQ(s.code(), Code::kCorruption) << bad << ": " << s.ToString();
  }
  EXPECT_EQ(CountEntries(outside_), 0);
  EXPECT_EQ(CountEntries(root_), 0);
}

TEST_F(ReceiverTest, EntryBeforeItsDirectoryIsRefused) {
  Status s = RunStage([](Channel& c) { SendRefusedEntries(c, {Dir(0, ""), File(1, "nodir/f", 1)}); });
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_EQ(CountEntries(root_), 0);
}

TEST_F(ReceiverTest, SymlinkFromAnEarlierStageIsNeverFollowed) {
  // Stage 1 stores d -> outside, verbatim.
  Status s = RunStage([&](Channel& c) {
    SendEntries(c, {Dir(0, ""), Symlink(1, "d", outside_)});
    ASSERT_TRUE(c.SendMessage(MessageType::kDone, protocol::Count{0}).ok());
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  char target[256] = {0};
  ASSERT_GT(::readlink((root_ + "/d").c_str(), target, sizeof(target) - 1), 0);
  EXPECT_EQ(std::string(target), outside_);
  // Stage 2 says d is a directory holding a file: d becomes a directory, outside stays empty.
  s = RunStage([&](Channel& c) {
    SendEntries(c, {Dir(0, ""), Dir(1, "d"), File(2, "d/file", 3)});
    SendFile(c, 2, "abc");
    ASSERT_TRUE(c.SendMessage(MessageType::kDone, protocol::Count{1}).ok());
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(CountEntries(outside_), 0);
  struct stat st;
  ASSERT_EQ(::lstat((root_ + "/d").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_F(ReceiverTest, DataNotAskedForIsAProtocolError) {
  Status s = RunStage([](Channel& c) {
    SendEntries(c, {Dir(0, ""), Dir(1, "d")});
    ASSERT_TRUE(c.SendMessage(MessageType::kData, protocol::Data{1, 0, "x"}).ok());
  });
  EXPECT_EQ(s.code(), Code::kProtocol) << s.ToString();
}

TEST_F(ReceiverTest, DuplicatePathsAreRefused) {
  Status s = RunStage([](Channel& c) { SendRefusedEntries(c, {Dir(0, ""), Dir(1, "d"), Dir(2, "d")}); });
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
}

// A sender that asked for --no-xattrs and sends xattrs anyway breaks the protocol.
TEST_F(ReceiverTest, XattrsInANoXattrsStageAreRefused) {
  SyncOptions options;
  options.no_xattrs = true;
  Entry file = File(1, "f", 1);
  file.xattrs = {{"user.a", "1"}};
  Status s = RunStage([&](Channel& c) { SendRefusedEntries(c, {Dir(0, ""), file}); }, options);
  EXPECT_EQ(s.code(), Code::kProtocol) << s.ToString();
  EXPECT_EQ(CountEntries(root_), 0);
}

TEST_F(ReceiverTest, HashMismatchCommitsNothingAndLeavesNoTempFile) {
  Status s = RunStage([](Channel& c) {
    SendEntries(c, {Dir(0, ""), File(1, "f", 5)});
    SendFile(c, 1, "hello", /*corrupt_hash=*/true);
  });
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
  EXPECT_EQ(CountEntries(root_), 0);
}

TEST_F(ReceiverTest, ChunkBeyondTheAnnouncedSizeIsRefused) {
  Status s = RunStage([](Channel& c) {
    SendEntries(c, {Dir(0, ""), File(1, "f", 2)});
    ASSERT_TRUE(c.SendMessage(MessageType::kData, protocol::Data{1, 0, "too long"}).ok());
  });
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
  EXPECT_EQ(CountEntries(root_), 0);
}

TEST_F(ReceiverTest, RootEntryMustComeFirst) {
  Status s = RunStage([](Channel& c) { SendRefusedEntries(c, {File(0, "f", 1)}); });
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
}


// --- Files sent whole over several streams ---

class ReceiverLanesTest : public ReceiverTest {
 protected:
  // Runs a receiver with `lane_count` data streams besides the session channel, both ends with
  // the handshake's `capabilities`.
  Status RunLaneStage(size_t lane_count, const std::function<void(Channel&, std::vector<Channel*>&)>& script,
                      uint64_t capabilities = 0) {
    std::vector<std::unique_ptr<io::ByteStream>> near, far;
    std::vector<std::unique_ptr<Channel>> far_channels, near_channels;
    for (size_t i = 0; i <= lane_count; ++i) {
      std::unique_ptr<io::ByteStream> a, b;
      EXPECT_TRUE(io::MakeStreamPair("test sender", &a, "test receiver", &b).ok());
      far.push_back(std::move(a));
      near.push_back(std::move(b));
      far_channels.push_back(std::make_unique<Channel>(*far.back()));
      near_channels.push_back(std::make_unique<Channel>(*near.back()));
      far_channels.back()->SetCapabilities(capabilities);
      near_channels.back()->SetCapabilities(capabilities);
    }
    Status result;
    std::thread receiver([&] {
      Receiver r(*far_channels[0], root_fd_.get(), root_, SyncOptions{}, 7);
      std::vector<Channel*> lanes;
      for (size_t i = 1; i <= lane_count; ++i) lanes.push_back(far_channels[i].get());
      r.SetLanes(lanes);
      result = r.Run();
      for (auto& s : far) s->Shutdown();
    });
    std::vector<Channel*> lanes;
    for (size_t i = 1; i <= lane_count; ++i) lanes.push_back(near_channels[i].get());
    script(*near_channels[0], lanes);
    Frame frame;
    while (near_channels[0]->Receive(&frame, 5000).ok() && frame.type != MessageType::kCommit) {
    }
    receiver.join();
    return result;
  }
  static Hash128 Root(const std::string& content) {
    BlockHasher hasher(BlockSizeFor(content.size()));
    hasher.Update(0, content);
    return HashTree(hasher.Finish(content.size())).Root();
  }
  static void AwaitNeed(Channel& c) {
    Frame frame;
    while (c.Receive(&frame, 5000).ok() && frame.type != MessageType::kNeed) {
    }
    ASSERT_EQ(frame.type, MessageType::kNeed);
  }
};

TEST_F(ReceiverLanesTest, BlocksArriveInAnyOrderOverAnyStream) {
  constexpr uint32_t kBlock = 4096;  // BlockSizeFor a file this small
  std::string content(3 * kBlock + 100, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('a' + i % 23);
  std::fill(content.begin() + kBlock, content.begin() + 2 * kBlock, '\0');  // block 1: a hole
  ASSERT_EQ(BlockSizeFor(content.size()), kBlock);
  Status s = RunLaneStage(2, [&](Channel& c, std::vector<Channel*>& lanes) {
    SendEntries(c, {Dir(0, ""), File(1, "f", content.size())});
    AwaitNeed(c);
    auto block = [&](size_t i) { return std::string_view(content).substr(i * kBlock, kBlock); };
    ASSERT_TRUE(lanes[1]->SendMessage(MessageType::kData, protocol::Data{1, 3 * kBlock, block(3)}).ok());
    ASSERT_TRUE(lanes[0]->SendMessage(MessageType::kHole, protocol::Hole{1, kBlock, kBlock}).ok());
    ASSERT_TRUE(lanes[1]->SendMessage(MessageType::kData, protocol::Data{1, 2 * kBlock, block(2)}).ok());
    ASSERT_TRUE(c.SendMessage(MessageType::kData, protocol::Data{1, 0, block(0)}).ok());
    protocol::FileEnd end;
    end.id = 1;
    end.size = content.size();
    end.content_hash = Root(content);
    ASSERT_TRUE(c.SendMessage(MessageType::kFileEnd, end).ok());  // may overtake the lanes' data
    ASSERT_TRUE(c.SendMessage(MessageType::kDone, protocol::Count{1}).ok());
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ReadAll(root_ + "/f"), content);
  EXPECT_EQ(CountEntries(root_), 1) << "no temp file left";
}

// kCapEndOnStream: each FILE_END behind its file's data on a stream, after DONE on the session's
// connection; the stage commits once every file is in, and nothing waits for the manifest.
TEST_F(ReceiverLanesTest, FileEndsOnTheStreamsBehindTheirDataMayComeAfterDone) {
  const std::string one(5000, 'a'), two(9000, 'b');
  auto end_of = [&](uint32_t id, const std::string& content) {
    protocol::FileEnd end;
    end.id = id;
    end.size = content.size();
    end.content_hash = Root(content);
    return end;
  };
  Status s = RunLaneStage(
      2,
      [&](Channel& c, std::vector<Channel*>& lanes) {
        SendEntries(c, {Dir(0, ""), File(1, "one", one.size()), File(2, "two", two.size()), File(3, "empty", 0)});
        AwaitNeed(c);
        ASSERT_TRUE(c.SendMessage(MessageType::kDone, protocol::Count{3}).ok());
        ASSERT_TRUE(lanes[0]->SendMessage(MessageType::kData, protocol::Data{1, 0, one}).ok());
        ASSERT_TRUE(lanes[1]->SendMessage(MessageType::kData, protocol::Data{2, 0, two}).ok());
        ASSERT_TRUE(lanes[0]->SendMessage(MessageType::kFileEnd, end_of(1, one)).ok());
        ASSERT_TRUE(lanes[1]->SendMessage(MessageType::kFileEnd, end_of(2, two)).ok());
        ASSERT_TRUE(lanes[0]->SendMessage(MessageType::kFileEnd, end_of(3, "")).ok());
      },
      protocol::kCapEndOnStream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ReadAll(root_ + "/one"), one);
  EXPECT_EQ(ReadAll(root_ + "/two"), two);
  EXPECT_EQ(ReadAll(root_ + "/empty"), "");
  EXPECT_EQ(CountEntries(root_), 3) << "no temp file left";
}

TEST_F(ReceiverLanesTest, AFileEndTwiceOrOnAStreamWithoutTheCapabilityIsRefused) {
  const std::string content(5000, 'a');
  protocol::FileEnd end;
  end.id = 1;
  end.size = content.size();
  end.content_hash = Root(content);
  for (uint64_t capabilities : {uint64_t{0}, protocol::kCapEndOnStream}) {
    Status s = RunLaneStage(
        1,
        [&](Channel& c, std::vector<Channel*>& lanes) {
          SendEntries(c, {Dir(0, ""), File(1, "f", content.size())});
          AwaitNeed(c);
          ASSERT_TRUE(lanes[0]->SendMessage(MessageType::kFileEnd, end).ok());
          if (capabilities != 0) {
            ASSERT_TRUE(c.SendMessage(MessageType::kFileEnd, end).ok());
          }
          // What would finish the stage, were the FILE_END accepted (the receiver may have closed).
          (void)lanes[0]->SendMessage(MessageType::kData, protocol::Data{1, 0, content});
          (void)c.SendMessage(MessageType::kDone, protocol::Count{1});
        },
        capabilities);
    EXPECT_EQ(s.code(), Code::kProtocol) << capabilities << ": " << s.ToString();
    // No temp file left; the file itself only whole (its data and first FILE_END may have
    // finished it before the refusal: what committed stays, as after any cut).
    std::vector<std::string> left;
    for (const auto& e : std::filesystem::directory_iterator(root_)) left.push_back(e.path().filename());
    EXPECT_TRUE(left.empty() || (left == std::vector<std::string>{"f"} && ReadAll(root_ + "/f") == content))
        << capabilities << ": " << (left.empty() ? "" : left[0]);
    std::filesystem::remove_all(root_ + "/f");
  }
}

TEST_F(ReceiverLanesTest, OverlappingOrOffGridBlocksAreRefused) {
  const std::string content(3 * 4096, 'x');
  const std::vector<std::pair<std::string, std::function<void(Channel&, Channel&)>>> cases = {
      {"the same block twice",
       [&](Channel& c, Channel& lane) {
         ASSERT_TRUE(c.SendMessage(MessageType::kData, protocol::Data{1, 4096, std::string_view(content).substr(0, 4096)}).ok());
         ASSERT_TRUE(lane.SendMessage(MessageType::kHole, protocol::Hole{1, 0, 8192}).ok());
       }},
      {"off the block grid",
       [&](Channel&, Channel& lane) {
         ASSERT_TRUE(lane.SendMessage(MessageType::kData, protocol::Data{1, 100, "abc"}).ok());
       }},
      {"a short block inside the file",
       [&](Channel& c, Channel&) { ASSERT_TRUE(c.SendMessage(MessageType::kData, protocol::Data{1, 0, "abc"}).ok()); }},
      {"a hole past the end",
       [&](Channel&, Channel& lane) { ASSERT_TRUE(lane.SendMessage(MessageType::kHole, protocol::Hole{1, 8192, 8192}).ok()); }},
  };
  for (const auto& test_case : cases) {
    const auto& name = test_case.first;
    const auto& step = test_case.second;
    Status s = RunLaneStage(1, [&](Channel& c, std::vector<Channel*>& lanes) {
      SendEntries(c, {Dir(0, ""), File(1, "f", content.size())});
      AwaitNeed(c);
      step(c, *lanes[0]);
    });
    EXPECT_EQ(s.code(), Code::kCorruption) << name << ": " << s.ToString();
    EXPECT_EQ(CountEntries(root_), 0) << name << ": temp files left";
  }
}

TEST_F(ReceiverLanesTest, DataStillOnTheWayForAFileTheSenderGaveUpIsDropped) {
  Status s = RunLaneStage(1, [&](Channel& c, std::vector<Channel*>& lanes) {
    SendEntries(c, {Dir(0, ""), File(1, "f", 8192)});
    AwaitNeed(c);
    protocol::FileEnd end;
    end.id = 1;
    end.size = 8192;
    end.outcome = protocol::FileOutcome::kReadError;
    end.message = "EIO";
    ASSERT_TRUE(c.SendMessage(MessageType::kFileEnd, end).ok());
    // Sent on a stream before the FILE_END, arriving after it.
    ASSERT_TRUE(lanes[0]->SendMessage(MessageType::kData, protocol::Data{1, 4096, std::string(4096, 'y')}).ok());
    ASSERT_TRUE(c.SendMessage(MessageType::kDone, protocol::Count{0}).ok());
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(CountEntries(root_), 0) << "neither the file nor a temp file";
}

// The mirror of SenderTest.ReceiverErrorWinsOverTheBrokenPipeItCaused: a sender that fails
// (a source read error) sends ERROR and closes; the receiver's NEED breaks first here, and the
// stage still ends with the sender's reason.
TEST_F(ReceiverTest, SenderErrorWinsOverTheBrokenPipeItCaused) {
  std::unique_ptr<io::ByteStream> a, b;
  ASSERT_TRUE(io::MakeStreamPair("test sender", &a, "test receiver", &b).ok());
  Status result;
  std::thread receiver([&] {
    Channel channel(*a);
    result = Receiver(channel, root_fd_.get(), root_, SyncOptions{}, 7).Run();
  });
  Channel sender(*b);
  ASSERT_EQ(::shutdown(dynamic_cast<io::FdStream&>(*b).fd(), SHUT_RD), 0);  // NEED will break
  SendEntries(sender, {Dir(0, ""), File(1, "f", 10)});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  sender.SendError(Status::IoError("read source file 'f': Input/output error"));
  b->Shutdown();
  receiver.join();
  EXPECT_EQ(result.code(), Code::kIoError) << result.ToString();
  EXPECT_EQ(result.message(), "read source file 'f': Input/output error");
}

}  // namespace
}  // namespace ferry
