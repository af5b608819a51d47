// Integration tests of failures: every error of `ferry sync` and `ferry daemon` gives its exit
// code and one line naming the volume, path or address; a busy volume; peers that speak
// garbage or hostile protocol; a client killed mid-transfer. After each, the daemon must still
// serve, and the next sync must converge.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <random>
#include <filesystem>
#include <string>
#include <vector>

#include "agent/channel.h"
#include "agent/hash.h"
#include "agent/io/stream.h"
#include "agent/session.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "tests/process_fixture.h"
#include "tests/wire_client.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

namespace protocol = ferry::protocol;
using protocol::MessageType;

// The one line of stderr; fails the test when there are more.
std::string OnlyLine(const CommandResult& r) {
  std::string err = ErrorsOnly(r.err);
  if (!err.empty() && err.back() == '\n') err.pop_back();
  EXPECT_EQ(err.find('\n'), std::string::npos) << "expected one line:\n" << r.err;
  EXPECT_FALSE(err.empty()) << "expected an error message";
  return err;
}

std::string RandomText(size_t size_bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(size_bytes, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = TestSeed();
    std::printf("seed %llu (set FERRY_TEST_SEED to replay)\n", static_cast<unsigned long long>(seed_));
    volume_ = tmp_.Sub("volume");
    src_ = tmp_.Sub("src");
    MakeDirs(volume_);
    MakeDirs(tmp_.Sub("other"));
    MakeDirs(src_ + "/dir");
    WriteFile(src_ + "/dir/small", "small\n");
    WriteRandomFile(src_ + "/random.bin", 300 << 10, seed_);
    DaemonProcess::Config config;
    config.volumes = {{"vol", volume_}, {"other", tmp_.Sub("other")}};
    config.state_dir = tmp_.Sub("state");
    config.log_path = tmp_.Sub("daemon.log");
    ASSERT_EQ(daemon_.Start(config), "");
  }
  void TearDown() override {
    EXPECT_TRUE(daemon_.alive()) << daemon_.Log();
    EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
  }

  // The daemon still serves: a push of src_ converges.
  void ExpectDaemonServes(const std::string& when) {
    ASSERT_TRUE(daemon_.alive()) << when << "\n" << daemon_.Log();
    CommandResult r = RunFerry({"sync", "--json", "--insecure", src_, daemon_.Url("vol")});
    ASSERT_EQ(r.exit_code, 0) << when << ": " << r.Describe() << "\n" << daemon_.Log();
    EXPECT_EQ(RsyncDiff(src_, volume_), "") << when;
    EXPECT_EQ(FindTempFiles(volume_), "") << when;
  }

  uint64_t seed_ = 0;
  TempDir tmp_;
  std::string volume_, src_;
  DaemonProcess daemon_;
};

TEST_F(FaultTest, UnknownVolume) {
  CommandResult push = RunFerry({"sync", "--insecure", "--no-progress", src_, daemon_.Url("nosuchvol")});
  EXPECT_EQ(push.exit_code, 3) << push.Describe();
  std::string line = OnlyLine(push);
  EXPECT_NE(line.find("nosuchvol"), std::string::npos) << line;
  EXPECT_NE(line.find("vol"), std::string::npos) << "should list the volumes served: " << line;

  CommandResult pull = RunFerry({"sync", "--insecure", "--no-progress", daemon_.Url("nosuchvol"), tmp_.Sub("out")});
  EXPECT_EQ(pull.exit_code, 2) << "an unknown source volume is a source error: " << pull.Describe();
  EXPECT_NE(OnlyLine(pull).find("nosuchvol"), std::string::npos) << pull.err;
  ExpectDaemonServes("after unknown volumes");
}

TEST_F(FaultTest, UnreachableDaemon) {
  // A port bound but not listening: connections are refused, and nobody else can take it.
  int held = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(held, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::getsockname(held, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  CommandResult push = RunFerry({"sync", "--insecure", "--no-progress", src_, "ferry://" + address + "/vol"}, 30);
  EXPECT_EQ(push.exit_code, 4) << push.Describe();
  EXPECT_NE(OnlyLine(push).find(address), std::string::npos) << push.err;
  CommandResult pull = RunFerry({"sync", "--insecure", "--no-progress", "ferry://" + address + "/vol", tmp_.Sub("o")}, 30);
  EXPECT_EQ(pull.exit_code, 4) << pull.Describe();
  EXPECT_NE(OnlyLine(pull).find(address), std::string::npos) << pull.err;
  ::close(held);
}

TEST_F(FaultTest, SecondDaemonOnTheSamePort) {
  std::string address = "127.0.0.1:" + std::to_string(daemon_.port());
  CommandResult second = RunFerry({"daemon", "--insecure", "--listen", address, "--volume", "v=" + volume_,
                                   "--state-dir", tmp_.Sub("state2")}, 10);
  EXPECT_EQ(second.exit_code, 7) << second.Describe();
  std::string line = OnlyLine(second);
  EXPECT_NE(line.find("in use"), std::string::npos) << line;
  EXPECT_NE(line.find(address), std::string::npos) << line;
  ExpectDaemonServes("after a second daemon failed on its port");
}

TEST_F(FaultTest, SecondDaemonOnTheSameStateDir) {
  CommandResult second = RunFerry({"daemon", "--insecure", "--listen", "127.0.0.1:0", "--volume", "v=" + volume_,
                                   "--state-dir", tmp_.Sub("state")}, 10);
  EXPECT_EQ(second.exit_code, 7) << second.Describe();
  std::string line = OnlyLine(second);
  EXPECT_NE(line.find("state dir"), std::string::npos) << line;
  EXPECT_NE(line.find(tmp_.Sub("state")), std::string::npos) << line;
  EXPECT_NE(line.find(std::to_string(daemon_.pid())), std::string::npos) << "should name the holder: " << line;
  ExpectDaemonServes("after a second daemon failed on the state dir");
}

TEST_F(FaultTest, MissingSource) {
  std::string missing = tmp_.Sub("no_such_source");
  for (const std::string& target : {tmp_.Sub("local_target"), daemon_.Url("vol")}) {
    CommandResult r = RunFerry({"sync", "--insecure", "--no-progress", missing, target});
    EXPECT_EQ(r.exit_code, 2) << target << ": " << r.Describe();
    EXPECT_NE(OnlyLine(r).find(missing), std::string::npos) << r.err;
  }
  // A pull of a missing path inside a volume is a source error too.
  CommandResult pull = RunFerry({"sync", "--insecure", "--no-progress", daemon_.Url("vol/no_such_dir"), tmp_.Sub("t")});
  EXPECT_EQ(pull.exit_code, 2) << pull.Describe();
  EXPECT_NE(OnlyLine(pull).find("no_such_dir"), std::string::npos) << pull.err;
  ExpectDaemonServes("after missing sources");
}

TEST_F(FaultTest, BadLocationsAndFlags) {
  const std::string port = std::to_string(daemon_.port());
  struct Case {
    std::vector<std::string> args;
    std::string named;  // the message must contain this
  };
  const std::vector<Case> cases = {
      {{src_, "ferry://127.0.0.1/vol"}, "ferry://127.0.0.1/vol"},                // no port
      {{src_, "ferry://127.0.0.1:99999/vol"}, "99999"},                         // port out of range
      {{src_, "ferry://127.0.0.1:" + port + "/"}, "volume"},                    // no volume
      {{src_, "ferry://127.0.0.1:" + port}, "volume"},                          // no volume, no slash
      {{src_, "ferry://127.0.0.1:" + port + "/vol/../etc"}, "outside"},         // escapes the volume
      {{src_, "ferry://127.0.0.1:" + port + "/vol/a//b"}, "a//b"},              // empty component
      {{daemon_.Url("vol"), daemon_.Url("other")}, "both"},                     // daemon to daemon
      {{src_, ""}, "empty"},
      {{src_}, "SRC and DST"},
      {{src_, tmp_.Sub("t"), tmp_.Sub("u")}, "positional"},
      {{"--no-such-flag", src_, tmp_.Sub("t")}, "no-such-flag"},
      {{"--exclude", "/", src_, tmp_.Sub("t")}, "'/'"},  // an exclude pattern that means nothing
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"sync", "--insecure", "--no-progress"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CommandResult r = RunFerry(args);
    std::string shown;
    for (const std::string& a : c.args) shown += "'" + a + "' ";
    EXPECT_EQ(r.exit_code, 1) << shown << r.Describe();
    std::string line = OnlyLine(r);
    EXPECT_NE(line.find(c.named), std::string::npos) << shown << ": " << line;
  }
  EXPECT_EQ(::access(tmp_.Sub("t").c_str(), F_OK), -1) << "a refused sync created its target";
  // The daemon's own flags.
  CommandResult bad_volume = RunFerry({"daemon", "--listen", "127.0.0.1:0", "--volume", "bad/name=" + volume_,
                                       "--state-dir", tmp_.Sub("state3")}, 10);
  EXPECT_EQ(bad_volume.exit_code, 1) << bad_volume.Describe();
  EXPECT_NE(OnlyLine(bad_volume).find("bad/name"), std::string::npos) << bad_volume.err;
  CommandResult missing_path = RunFerry({"daemon", "--listen", "127.0.0.1:0", "--volume", "v=" + tmp_.Sub("nope"),
                                         "--state-dir", tmp_.Sub("state3")}, 10);
  EXPECT_EQ(missing_path.exit_code, 7) << missing_path.Describe();
  EXPECT_NE(OnlyLine(missing_path).find(tmp_.Sub("nope")), std::string::npos) << missing_path.err;
}

TEST_F(FaultTest, BusyVolumeIsRefusedAndTheDaemonKeepsServing) {
  std::string big_src = tmp_.Sub("big_src");
  MakeDirs(big_src);
  WriteRandomFile(big_src + "/big.bin", 300ull << 20, seed_);
  // The first push holds the volume: pause it (SIGSTOP) once the daemon has started its stage.
  ChildProcess first;
  ASSERT_TRUE(first.Spawn({FerryBinary(), "sync", "--insecure", "--no-progress", big_src, daemon_.Url("vol")},
                          tmp_.Sub("first.out"), tmp_.Sub("first.err")));
  ASSERT_TRUE(daemon_.WaitForLog("receiving stage", 1, 20)) << daemon_.Log();
  first.Signal(SIGSTOP);
  ASSERT_TRUE(first.WaitStopped(10));
  ASSERT_TRUE(first.running()) << "the first push ended before it could be paused; the test needs a bigger file";

  CommandResult second = RunFerry({"sync", "--insecure", "--no-progress", src_, daemon_.Url("vol")});
  EXPECT_EQ(second.exit_code, 6) << second.Describe();
  std::string line = OnlyLine(second);
  EXPECT_NE(line.find("busy"), std::string::npos) << line;
  EXPECT_NE(line.find("'vol'"), std::string::npos) << line;
  CommandResult pull = RunFerry({"sync", "--insecure", "--no-progress", daemon_.Url("vol"), tmp_.Sub("pulled")});
  EXPECT_EQ(pull.exit_code, 6) << "a pull of a busy volume: " << pull.Describe();
  // Another volume of the same daemon is not busy.
  CommandResult other = RunFerry({"sync", "--insecure", "--no-progress", src_, daemon_.Url("other")});
  EXPECT_EQ(other.exit_code, 0) << other.Describe();
  EXPECT_EQ(RsyncDiff(src_, tmp_.Sub("other")), "");

  first.Signal(SIGCONT);
  EXPECT_EQ(first.Wait(60), 0) << ReadFile(tmp_.Sub("first.err")) << daemon_.Log();
  EXPECT_EQ(RsyncDiff(big_src, volume_), "");
  ExpectDaemonServes("after the busy volume was released");
}

TEST_F(FaultTest, GarbagePeersAreRefusedAndTheDaemonKeepsServing) {
  struct Peer {
    std::string name;
    std::string bytes;
  };
  std::vector<Peer> peers;
  peers.push_back({"64 KiB of random bytes", RandomText(64 << 10, seed_)});
  peers.push_back({"an HTTP request", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"});
  {
    // A header with the right magic and a 4 GiB length: refused without reading (or allocating) it.
    std::string header(24, '\0');
    const unsigned char start[] = {'F', 'R', 'Y', '1', 1, 0, 0, 0, 0xf0, 0xff, 0xff, 0xff, 0xf0, 0xff, 0xff, 0xff};
    std::memcpy(header.data(), start, sizeof(start));
    peers.push_back({"a 4 GiB frame header", header});
  }
  {
    // A well-formed frame (valid checksum) whose HELLO payload is garbage.
    protocol::FrameEncoder encoder(std::nullopt);
    std::string frame;
    encoder.Encode(static_cast<uint8_t>(MessageType::kHello), RandomText(300, seed_ + 1), &frame);
    peers.push_back({"a valid frame with a garbage HELLO", frame});
    std::string open_first;
    encoder.Encode(static_cast<uint8_t>(MessageType::kOpen), "", &open_first);
    peers.push_back({"an OPEN before HELLO", open_first});
  }
  for (const Peer& peer : peers) {
    SCOPED_TRACE(peer.name);
    int fd = ConnectTcp(daemon_.port());
    ssize_t sent = ::send(fd, peer.bytes.data(), peer.bytes.size(), MSG_NOSIGNAL);
    EXPECT_GT(sent, 0) << std::strerror(errno);
    std::string received;
    // Well before the 10 s handshake timeout: the daemon refuses what it cannot read.
    EXPECT_TRUE(ReadUntilClosed(fd, 5, &received)) << "the daemon kept the connection open";
    ::close(fd);
    EXPECT_TRUE(daemon_.alive()) << daemon_.Log();
  }
  ExpectDaemonServes("after garbage peers");
  // A peer that connects and closes at once.
  ::close(ConnectTcp(daemon_.port()));
  ExpectDaemonServes("after an empty connection");
}

TEST_F(FaultTest, HostilePathsStayInsideTheVolume) {
  std::string outside = tmp_.Sub("outside");
  MakeDirs(outside);
  {
    // A subpath that climbs out of the volume: refused before anything is created.
    WireClient client(daemon_.port());
    ferry::Result<protocol::OpenOk> opened = client.Open("vol", "../outside/escaped");
    EXPECT_FALSE(opened.ok());
    client.Close();
  }
  // The volume lock is released just after the daemon sends its ERROR: wait for the session
  // to end (see VolumeIsFreeOnceTheErrorArrives).
  int failed_sessions = 1;
  ASSERT_TRUE(daemon_.WaitForLog("stage failed", failed_sessions, 10)) << daemon_.Log();
  for (const std::string& path : {std::string("../outside/escaped"), std::string("dir/../../outside/escaped"),
                                  std::string("/") + outside + "/escaped"}) {
    SCOPED_TRACE(path);
    WireClient client(daemon_.port());
    ferry::Result<protocol::OpenOk> opened = client.Open("vol", "");
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    protocol::Entries batch;
    batch.entries.push_back(MakeEntry(0, protocol::EntryType::kDirectory, ""));
    batch.entries.push_back(MakeEntry(1, protocol::EntryType::kDirectory, "dir"));
    batch.entries.push_back(MakeEntry(2, protocol::EntryType::kDirectory, path));
    ASSERT_TRUE(client.channel().SendMessage(MessageType::kEntries, batch).ok());
    ferry::Frame frame;
    EXPECT_FALSE(client.ReceiveUntil(MessageType::kNeedEnd, &frame)) << "the daemon took a path out of the volume";
    client.Close();
    ASSERT_TRUE(daemon_.WaitForLog("stage failed", ++failed_sessions, 10)) << daemon_.Log();
  }
  EXPECT_FALSE(std::filesystem::exists(outside + "/escaped"));
  EXPECT_TRUE(std::filesystem::is_empty(outside));
  // A symlink on the target where the source has a directory: replaced, never followed.
  RemoveTree(volume_ + "/dir");  // the hostile sessions made it before their bad entry
  ASSERT_EQ(::symlink(outside.c_str(), (volume_ + "/dir").c_str()), 0);
  ExpectDaemonServes("after hostile paths");
  EXPECT_TRUE(std::filesystem::is_empty(outside)) << "a push wrote through a target symlink";
}

TEST_F(FaultTest, VolumeIsFreeOnceTheErrorArrives) {
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    WireClient client(daemon_.port());
    ASSERT_TRUE(client.Open("vol", "").ok());
    protocol::Entries batch;  // a first entry that is not the root: refused
    batch.entries.push_back(MakeEntry(0, protocol::EntryType::kFile, "not_the_root"));
    ASSERT_TRUE(client.channel().SendMessage(MessageType::kEntries, batch).ok());
    ferry::Frame frame;
    ASSERT_FALSE(client.ReceiveUntil(MessageType::kNeedEnd, &frame));
    ASSERT_EQ(frame.type, MessageType::kError);
    client.Close();
    WireClient next(daemon_.port());
    ferry::Result<protocol::OpenOk> opened = next.Open("vol", "");
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    next.Close();
    ASSERT_TRUE(daemon_.WaitForLog("stage failed", 2 * (round + 1), 10)) << daemon_.Log();
  }
}

TEST_F(FaultTest, DisconnectMidFileLeavesNoPartialFile) {
  WireClient client(daemon_.port());
  ASSERT_TRUE(client.Open("vol", "").ok());
  protocol::Entries batch;
  batch.entries.push_back(MakeEntry(0, protocol::EntryType::kDirectory, ""));
  batch.entries.push_back(MakeEntry(1, protocol::EntryType::kFile, "partial.bin", 8 << 20));
  ASSERT_TRUE(client.channel().SendMessage(MessageType::kEntries, batch).ok());
  ASSERT_TRUE(client.channel().SendMessage(MessageType::kEntriesEnd, protocol::EntriesEnd{2, 0}).ok());
  ferry::Frame frame;
  ASSERT_TRUE(client.ReceiveUntil(MessageType::kNeed, &frame)) << daemon_.Log();
  // 1 MiB of the 8, then the connection drops.
  std::string bytes = RandomText(1 << 20, seed_);
  protocol::Data data;
  data.id = 1;
  data.offset = 0;
  data.bytes = bytes;
  std::string payload;
  data.Encode(&payload);
  ASSERT_TRUE(client.channel().Send(MessageType::kData, payload).ok());
  // A new file is written unnamed (O_TMPFILE): the daemon holds it open, nothing is in the volume.
  ASSERT_TRUE(PollUntil([&] { return UnnamedFilesOpen(daemon_.pid(), volume_) == 1; }, 10))
      << "the daemon holds no unnamed temp file; names in the volume: " << FindTempFiles(volume_);
  EXPECT_EQ(FindTempFiles(volume_), "") << "a new file got a temp name";
  client.Close();
  ASSERT_TRUE(daemon_.WaitForLog("stage failed", 1, 10)) << daemon_.Log();
  EXPECT_FALSE(std::filesystem::exists(volume_ + "/partial.bin")) << "a partial file was exposed";
  EXPECT_EQ(FindTempFiles(volume_), "") << "the failed session left its temp file";
  EXPECT_EQ(UnnamedFilesOpen(daemon_.pid(), volume_), 0) << "the failed session still holds its temp file";
  ExpectDaemonServes("after a disconnect mid-file");
}

TEST_F(FaultTest, ClientKilledMidTransferThenNextSyncConverges) {
  std::string big_src = tmp_.Sub("big_src");
  for (int d = 0; d < 4; ++d) {
    MakeDirs(big_src + "/d" + std::to_string(d));
    for (int f = 0; f < 24; ++f) {
      std::string name = big_src + "/d" + std::to_string(d) + "/f" + std::to_string(f);
      WriteRandomFile(name, (1 << 20) + f * 4099, seed_ + d * 100 + f);
    }
  }
  ChildProcess push;
  ASSERT_TRUE(push.Spawn({FerryBinary(), "sync", "--insecure", "--no-progress", big_src, daemon_.Url("vol")},
                         tmp_.Sub("push.out"), tmp_.Sub("push.err")));
  // Kill it once data is arriving: the daemon holds an unnamed temp file, or a committed file
  // exists on the target.
  auto data_arrived = [&] {
    if (UnnamedFilesOpen(daemon_.pid(), volume_) > 0) return true;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(volume_, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec)) return true;
    }
    return false;
  };
  ASSERT_TRUE(PollUntil(data_arrived, 30)) << daemon_.Log();
  push.Signal(SIGKILL);
  ASSERT_EQ(push.Wait(10), 128 + SIGKILL) << "the push finished before it was killed: make the tree bigger";
  ASSERT_TRUE(daemon_.WaitForLog("stage failed", 1, 10)) << daemon_.Log();
  EXPECT_TRUE(daemon_.alive());
  // The failed session removes its own temp files: the open one and the finished ones that
  // were waiting for their commit group; it holds no unnamed one either.
  EXPECT_EQ(Printable(FindTempFiles(volume_)), "") << daemon_.Log();
  EXPECT_EQ(UnnamedFilesOpen(daemon_.pid(), volume_), 0) << daemon_.Log();

  CommandResult again = RunFerry({"sync", "--json", "--insecure", big_src, daemon_.Url("vol")});
  ASSERT_EQ(again.exit_code, 0) << again.Describe() << daemon_.Log();
  EXPECT_EQ(RsyncDiff(big_src, volume_), "");
  EXPECT_EQ(StatDiff(big_src, volume_), "");
  EXPECT_EQ(FindTempFiles(volume_), "") << "leftover temp files after the next sync";
  EXPECT_EQ(FindTempFiles(tmp_.path()), "") << "temp files outside the volume";
}

}  // namespace
}  // namespace ferry_test
