// The sender against a scripted receiver: what a receiver (or a racing app) can make it do.
#include "agent/sender.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <chrono>
#include <fstream>
#include <thread>

#include "agent/io/stream.h"

namespace ferry {
namespace {

using protocol::MessageType;

class SenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-sender-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    src_ = dir_ + "/src";
    outside_ = dir_ + "/outside";
    ASSERT_EQ(::mkdir(src_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((src_ + "/d").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(outside_.c_str(), 0755), 0);
    std::ofstream(src_ + "/d/secret") << "inside";
    std::ofstream(outside_ + "/secret") << "OUTSIDE";
  }
  void TearDown() override { (void)std::system(("rm -rf " + dir_).c_str()); }

  // Runs a sender on src_ while `script` plays the receiver; returns the sender's status.
  Status RunStage(const std::function<void(Channel&, const std::vector<protocol::Entry>&)>& script) {
    std::unique_ptr<io::ByteStream> a, b;
    EXPECT_TRUE(io::MakeStreamPair("test receiver", &a, "test sender", &b).ok());
    Result<SyncSummary> result = Status::Aborted("not run");
    std::thread sender([&] {
      Channel channel(*a);
      SyncProgress progress;
      result = Sender(channel, src_, ScanOptions{}, &progress, nullptr).Run();
      a->Shutdown();
    });
    Channel receiver(*b);
    script(receiver, ReceiveManifest(receiver));
    sender.join();
    return result.status();
  }

  // The sender's manifest, read as a receiver would, up to its ENTRIES_END.
  static std::vector<protocol::Entry> ReceiveManifest(Channel& receiver) {
    std::vector<protocol::Entry> entries;
    Frame frame;
    while (receiver.Receive(&frame, 5000).ok() && frame.type != MessageType::kEntriesEnd) {
      if (frame.type != MessageType::kEntries) continue;
      Result<protocol::Entries> batch = protocol::Entries::Decode(frame.payload, entries.size());
      EXPECT_TRUE(batch.ok());
      if (batch.ok()) for (auto& e : batch->entries) entries.push_back(e);
    }
    return entries;
  }

  static uint32_t IdOf(const std::vector<protocol::Entry>& entries, const std::string& path) {
    for (const auto& e : entries) if (e.path == path) return e.id;
    ADD_FAILURE() << "no entry " << path;
    return 0;
  }

  std::string dir_, src_, outside_;
};

// An app swaps a directory for a symlink to elsewhere between the scan and the read: the
// sender must not follow it (it runs as root and would ship whatever the link points at).
TEST_F(SenderTest, NeverReadsThroughADirectorySwappedForASymlink) {
  std::string shipped;
  protocol::FileOutcome outcome = protocol::FileOutcome::kComplete;
  Status s = RunStage([&](Channel& c, const std::vector<protocol::Entry>& entries) {
    uint32_t id = IdOf(entries, "d/secret");
    ASSERT_EQ(::rename((src_ + "/d").c_str(), (src_ + "/d.real").c_str()), 0);
    ASSERT_EQ(::symlink(outside_.c_str(), (src_ + "/d").c_str()), 0);
    ASSERT_TRUE(c.SendMessage(MessageType::kNeed, protocol::Need{{id}, {}}).ok());
    ASSERT_TRUE(c.SendMessage(MessageType::kNeedEnd, protocol::Count{1}).ok());
    Frame frame;
    while (c.Receive(&frame, 5000).ok() && frame.type != MessageType::kDone) {
      if (frame.type == MessageType::kData) shipped += std::string(protocol::Data::Decode(frame.payload)->bytes);
      if (frame.type == MessageType::kFileEnd) outcome = protocol::FileEnd::Decode(frame.payload)->outcome;
    }
    ASSERT_TRUE(c.SendMessage(MessageType::kCommit, protocol::Commit{}).ok());
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(shipped.find("OUTSIDE"), std::string::npos);
  EXPECT_EQ(outcome, protocol::FileOutcome::kVanished);
}

// A hostile receiver cannot make the sender hold unbounded hashes or signatures: HASHES beyond
// what could have been asked for, and a SIGNATURE nobody asked for, end the session.
TEST_F(SenderTest, HashesAndSignaturesNotAskedForAreRefused) {
  Status s = RunStage([&](Channel& c, const std::vector<protocol::Entry>& entries) {
    uint32_t id = IdOf(entries, "d/secret");
    ASSERT_TRUE(c.SendMessage(MessageType::kNeed, protocol::Need{{id}, {true}}).ok());
    protocol::Hashes flood{id, 4096, uint64_t{kHashesPerMessageMax} * 4096, 0, {}};
    flood.hashes.resize(kHashesPerMessageMax);
    for (int i = 0; i < 300; ++i) {  // 75 MiB of hashes for a file of 6 bytes
      if (!c.SendMessage(MessageType::kHashes, flood).ok()) break;
    }
  });
  EXPECT_EQ(s.code(), Code::kProtocol) << s.ToString();
  EXPECT_NE(s.ToString().find("more HASHES than were asked for"), std::string::npos) << s.ToString();
  s = RunStage([&](Channel& c, const std::vector<protocol::Entry>& entries) {
    uint32_t id = IdOf(entries, "d/secret");
    ASSERT_TRUE(c.SendMessage(MessageType::kSignature, protocol::Piece{id, protocol::kPieceLast, "sig"}).ok());
  });
  EXPECT_EQ(s.code(), Code::kProtocol) << s.ToString();
  EXPECT_NE(s.ToString().find("not asked for"), std::string::npos) << s.ToString();
}

TEST_F(SenderTest, DuplicateNeedIsAProtocolError) {
  Status s = RunStage([&](Channel& c, const std::vector<protocol::Entry>& entries) {
    uint32_t id = IdOf(entries, "d/secret");
    ASSERT_TRUE(c.SendMessage(MessageType::kNeed, protocol::Need{{id, id}, {}}).ok());
  });
  EXPECT_EQ(s.code(), Code::kProtocol) << s.ToString();
}

TEST_F(SenderTest, NeedForADirectoryOrAnUnknownIdIsAProtocolError) {
  for (bool directory : {true, false}) {
    Status s = RunStage([&](Channel& c, const std::vector<protocol::Entry>& entries) {
      uint32_t id = directory ? IdOf(entries, "d") : static_cast<uint32_t>(entries.size());
      ASSERT_TRUE(c.SendMessage(MessageType::kNeed, protocol::Need{{id}, {}}).ok());
    });
    EXPECT_EQ(s.code(), Code::kProtocol) << s.ToString();
  }
}

TEST_F(SenderTest, ReceiverErrorEndsTheStageWithItsStatus) {
  Status s = RunStage([&](Channel& c, const std::vector<protocol::Entry>&) {
    c.SendError(Status::Make(Code::kNoSpace, "no space on volume 'v'"));
  });
  EXPECT_EQ(s.code(), Code::kNoSpace) << s.ToString();
  EXPECT_EQ(s.message(), "no space on volume 'v'");
}

// A receiver that fails (a full volume) sends ERROR and closes: the sender's next write may
// break before its reader has taken the ERROR from the socket. The stage must still end with
// the receiver's reason, not "Broken pipe". Here the write breaks first, always: the receiver
// stops reading, asks for a file, and sends its ERROR only 300 ms later.
TEST_F(SenderTest, ReceiverErrorWinsOverTheBrokenPipeItCaused) {
  std::unique_ptr<io::ByteStream> a, b;
  ASSERT_TRUE(io::MakeStreamPair("test receiver", &a, "test sender", &b).ok());
  Result<SyncSummary> result = Status::Aborted("not run");
  std::thread sender([&] {
    Channel channel(*a);
    SyncProgress progress;
    result = Sender(channel, src_, ScanOptions{}, &progress, nullptr).Run();
  });
  Channel receiver(*b);
  const std::vector<protocol::Entry> entries = ReceiveManifest(receiver);
  const int fd = dynamic_cast<io::FdStream&>(*b).fd();
  ASSERT_EQ(::shutdown(fd, SHUT_RD), 0);  // the sender's writes fail from here on
  ASSERT_TRUE(receiver.SendMessage(MessageType::kNeed, protocol::Need{{IdOf(entries, "d/secret")}, {}}).ok());
  ASSERT_TRUE(receiver.SendMessage(MessageType::kNeedEnd, protocol::Count{1}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  receiver.SendError(Status::Make(Code::kNoSpace, "no space on volume 'v'"));
  b->Shutdown();
  sender.join();
  EXPECT_EQ(result.status().code(), Code::kNoSpace) << result.status().ToString();
  EXPECT_EQ(result.status().message(), "no space on volume 'v'");
}

}  // namespace
}  // namespace ferry
