// TLS end to end: real `ferry daemon` processes on loopback with a pre-shared key or with
// certificates made here by the openssl command (a CA, the daemon's certificate for 127.0.0.1,
// a client's; a second, unrelated CA). Syncs over TLS mirror exactly (rsync's comparison);
// every wrong credential, name, protocol version or a plaintext peer is refused in the
// handshake: nothing reaches the volume, the daemon logs why and keeps serving.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    volume_ = tmp_.Sub("volume");
    src_ = tmp_.Sub("src");
    MakeDirs(volume_);
    MakeDirs(src_);
    WriteFile(src_ + "/a.txt", "over TLS\n");
    WriteRandomFile(src_ + "/big.bin", 3 << 20, TestSeed());  // several frames, both streams
    MakeDirs(src_ + "/d");
    WriteFile(src_ + "/d/b.txt", "nested\n");
    psk_ = WritePsk("psk", "ferry", std::string(64, 'a'));
  }
  void TearDown() override {
    if (started_) {
      EXPECT_TRUE(daemon_.alive()) << daemon_.Log();
      EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
    }
  }

  std::string WritePsk(const std::string& name, const std::string& identity, const std::string& hex) {
    std::string path = tmp_.Sub(name);
    WriteFile(path, identity + ":" + hex + "\n");
    EXPECT_EQ(::chmod(path.c_str(), 0600), 0);
    return path;
  }
  void StartDaemon(std::vector<std::string> security) {
    MakeDirs(tmp_.Sub("d"));
    DaemonProcess::Config config = DaemonConfigIn(tmp_.Sub("d"), {{"vol", volume_}});
    config.security = std::move(security);
    ASSERT_EQ(daemon_.Start(config), "");
    started_ = true;
  }
  // openssl, quiet; fails the test on error.
  void Openssl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"openssl"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunCommand(argv);
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
  }
  // A CA (NAME.crt/.key) in the temp dir.
  void MakeCa(const std::string& name) {
    std::string base = tmp_.Sub(name);
    Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
             "/CN=" + name, "-keyout", base + ".key", "-out", base + ".crt"});
  }
  // A certificate NAME.crt/.key signed by CA `ca`, for `san` (e.g. "IP:127.0.0.1").
  void MakeCert(const std::string& name, const std::string& ca, const std::string& cn, const std::string& san) {
    std::string base = tmp_.Sub(name), ca_base = tmp_.Sub(ca);
    Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + cn, "-keyout",
             base + ".key", "-out", base + ".csr"});
    WriteFile(base + ".ext", "subjectAltName=" + san + "\n");
    Openssl({"x509", "-req", "-in", base + ".csr", "-CA", ca_base + ".crt", "-CAkey", ca_base + ".key",
             "-CAcreateserial", "-days", "2", "-extfile", base + ".ext", "-out", base + ".crt"});
    ASSERT_EQ(::chmod((base + ".key").c_str(), 0600), 0);
  }
  std::vector<std::string> CertFlags(const std::string& name, const std::string& ca) {
    return {"--tls-cert", tmp_.Sub(name + ".crt"), "--tls-key", tmp_.Sub(name + ".key"), "--tls-ca", tmp_.Sub(ca + ".crt")};
  }
  CommandResult Push(const std::vector<std::string>& security) {
    std::vector<std::string> args = {"sync", "--no-progress"};
    args.insert(args.end(), security.begin(), security.end());
    args.push_back(src_);
    args.push_back(daemon_.Url("vol"));
    return RunFerry(args, 60);
  }
  // The refused attempt left the volume empty, the daemon says why, and a good client still syncs.
  void ExpectRefusedThenServes(const CommandResult& refused, const std::string& log_reason,
                               const std::vector<std::string>& good) {
    EXPECT_NE(refused.exit_code, 0) << refused.Describe();
    EXPECT_NE(refused.err.rfind("ferry sync: "), std::string::npos) << refused.err;
    EXPECT_EQ(CountTree(volume_).entries, 1u) << "nothing may reach the volume";
    EXPECT_TRUE(daemon_.WaitForLog("refused 127.0.0.1:", 1, 10)) << daemon_.Log();
    EXPECT_NE(daemon_.Log().find(log_reason), std::string::npos) << daemon_.Log();
    CommandResult ok = Push(good);
    ASSERT_EQ(ok.exit_code, 0) << ok.Describe() << daemon_.Log();
    EXPECT_EQ(RsyncDiff(src_, volume_), "");
  }

  TempDir tmp_;
  DaemonProcess daemon_;
  bool started_ = false;
  std::string volume_, src_, psk_;
};

TEST_F(TlsTest, PskPushAndPullMirrorExactly) {
  StartDaemon({"--psk-file", psk_});
  CommandResult push = Push({"--psk-file", psk_, "--streams", "2"});
  ASSERT_EQ(push.exit_code, 0) << push.Describe() << daemon_.Log();
  EXPECT_EQ(push.err.find("warning"), std::string::npos) << push.err;
  EXPECT_EQ(RsyncDiff(src_, volume_), "");
  std::string pulled = tmp_.Sub("pulled");
  CommandResult pull = RunFerry({"sync", "--no-progress", "--psk-file", psk_, daemon_.Url("vol"), pulled});
  ASSERT_EQ(pull.exit_code, 0) << pull.Describe() << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src_, pulled), "");
  EXPECT_NE(daemon_.Log().find("TLS 1.3, pre-shared key"), std::string::npos) << daemon_.Log();
}

TEST_F(TlsTest, WrongPskIsRefused) {
  StartDaemon({"--psk-file", psk_});
  std::string other = WritePsk("other", "ferry", std::string(64, 'b'));
  ExpectRefusedThenServes(Push({"--psk-file", other}), "TLS handshake", {"--psk-file", psk_});
}

TEST_F(TlsTest, UnknownPskIdentityIsRefused) {
  StartDaemon({"--psk-file", psk_});
  std::string other = WritePsk("other", "someone-else", std::string(64, 'a'));
  ExpectRefusedThenServes(Push({"--psk-file", other}), "TLS handshake", {"--psk-file", psk_});
}

TEST_F(TlsTest, PlaintextClientToTlsDaemonIsRefusedBeforeAnyFrame) {
  StartDaemon({"--psk-file", psk_});
  CommandResult plain = Push({"--insecure"});
  ExpectRefusedThenServes(plain, "wrong version number", {"--psk-file", psk_});
  EXPECT_NE(plain.err.find("a daemon that requires TLS closes plaintext connections"), std::string::npos)
      << "names the likely cause: " << plain.err;
  EXPECT_EQ(daemon_.Log().find("receiving stage"), daemon_.Log().rfind("receiving stage")) << "one session only";
}

TEST_F(TlsTest, TlsClientToPlaintextDaemonFailsClearly) {
  StartDaemon({"--insecure"});
  CommandResult r = Push({"--psk-file", psk_});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("TLS handshake with 127.0.0.1:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--insecure"), std::string::npos) << "names the likely cause: " << r.err;
  EXPECT_EQ(CountTree(volume_).entries, 1u);
}

TEST_F(TlsTest, Tls12OnlyClientIsRefused) {
  StartDaemon({"--psk-file", psk_});
  CommandResult r = RunCommand({"sh", "-c",
                                "echo | openssl s_client -tls1_2 -connect 127.0.0.1:" + std::to_string(daemon_.port()) +
                                    " 2>&1"},
                               30);
  EXPECT_NE(r.out.find("alert protocol version"), std::string::npos) << r.out;
  EXPECT_TRUE(daemon_.WaitForLog("unsupported protocol", 1, 10)) << daemon_.Log();
  CommandResult ok = Push({"--psk-file", psk_});
  EXPECT_EQ(ok.exit_code, 0) << ok.Describe();
}

TEST_F(TlsTest, CertificatesMutualAndChecked) {
  MakeCa("ca");
  MakeCa("evil-ca");
  MakeCert("daemon", "ca", "node-b", "IP:127.0.0.1,DNS:node-b.example");
  MakeCert("client", "ca", "node-a", "DNS:node-a.example");
  MakeCert("intruder", "evil-ca", "node-a", "DNS:node-a.example");
  std::vector<std::string> daemon_flags = CertFlags("daemon", "ca");
  daemon_flags.push_back("--tls-peer-name");
  daemon_flags.push_back("node-a.example");
  StartDaemon(daemon_flags);
  EXPECT_NE(daemon_.Log().find("TLS 1.3, certificates"), std::string::npos) << daemon_.Log();

  // A client certificate from another CA.
  CommandResult intruder = Push(CertFlags("intruder", "ca"));
  ExpectRefusedThenServes(intruder, "certificate", CertFlags("client", "ca"));
  RemoveTree(volume_);
  MakeDirs(volume_);

  // The daemon's certificate does not carry the name the client asks for.
  std::vector<std::string> wrong_name = CertFlags("client", "ca");
  wrong_name.push_back("--tls-peer-name");
  wrong_name.push_back("node-c.example");
  CommandResult r = Push(wrong_name);
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("hostname mismatch"), std::string::npos) << r.err;
  EXPECT_EQ(CountTree(volume_).entries, 1u);

  // A client that trusts another CA refuses the daemon.
  r = Push(CertFlags("client", "evil-ca"));
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("certificate"), std::string::npos) << r.err;

  // The daemon requires the client's name: a client certificate for another name is refused.
  MakeCert("other-client", "ca", "node-z", "DNS:node-z.example");
  r = Push(CertFlags("other-client", "ca"));
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(CountTree(volume_).entries, 1u);

  // The right ones, by the name in the certificate.
  std::vector<std::string> by_name = CertFlags("client", "ca");
  by_name.push_back("--tls-peer-name");
  by_name.push_back("node-b.example");
  CommandResult ok = Push(by_name);
  ASSERT_EQ(ok.exit_code, 0) << ok.Describe() << daemon_.Log();
  EXPECT_EQ(RsyncDiff(src_, volume_), "");
}

TEST_F(TlsTest, BadSecurityFlagsAreUsageErrors) {
  // No TLS and no --insecure.
  CommandResult r = RunFerry({"sync", "--no-progress", src_, "ferry://127.0.0.1:1/vol"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();  // usage
  EXPECT_NE(r.err.find("--psk-file"), std::string::npos) << r.err;
  // A PSK file others can read.
  std::string loose = WritePsk("loose", "ferry", std::string(64, 'c'));
  ASSERT_EQ(::chmod(loose.c_str(), 0644), 0);
  r = RunFerry({"sync", "--no-progress", "--psk-file", loose, src_, "ferry://127.0.0.1:1/vol"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();  // usage
  EXPECT_NE(r.err.find("chmod 600"), std::string::npos) << r.err;
  // A key under 32 bytes, and not hex.
  for (const std::string& hex : {std::string(62, 'a'), std::string(64, 'g')}) {
    std::string weak = WritePsk("weak", "ferry", hex);
    r = RunFerry({"sync", "--no-progress", "--psk-file", weak, src_, "ferry://127.0.0.1:1/vol"});
    EXPECT_EQ(r.exit_code, 1) << r.Describe();  // usage
    EXPECT_NE(r.err.find("IDENTITY:HEX"), std::string::npos) << r.err;
  }
  // Both kinds at once; --insecure with a key.
  r = RunFerry({"sync", "--no-progress", "--psk-file", psk_, "--insecure", src_, "ferry://127.0.0.1:1/vol"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();  // usage
  // The daemon refuses to start without TLS or --insecure, and with a loose key file.
  r = RunFerry({"daemon", "--listen", "127.0.0.1:0", "--volume", "v=" + volume_, "--state-dir", tmp_.Sub("s")}, 10);
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("no TLS configured"), std::string::npos) << r.err;
  r = RunFerry({"daemon", "--listen", "127.0.0.1:0", "--volume", "v=" + volume_, "--state-dir", tmp_.Sub("s"),
                "--psk-file", loose},
               10);
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("chmod 600"), std::string::npos) << r.err;
}

TEST_F(TlsTest, InsecureWarnsOnBothEnds) {
  StartDaemon({"--insecure"});
  EXPECT_NE(daemon_.Log().find("plaintext"), std::string::npos) << daemon_.Log();
  CommandResult r = Push({"--insecure"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("warning: --insecure"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ferry_test
