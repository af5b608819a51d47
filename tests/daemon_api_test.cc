// The node daemon as deployed: its control API between two real daemons on loopback (`ferry
// volumes`, `ferry stage`, `ferry stages`, cancel), Prometheus metrics read with curl after
// stages, JSON logs, systemd readiness (sd_notify on a NOTIFY_SOCKET the test binds), SIGTERM
// during a stage followed by a restart that resumes it, and pv:NAME discovery on a
// kubelet-shaped directory tree. Every mirror is checked with rsync as the oracle.
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <random>
#include <thread>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

using nlohmann::json;

json ParseJson(const std::string& text) { return json::parse(text, nullptr, /*allow_exceptions=*/false); }

// The port of --metrics-listen, from the daemon's log.
int MetricsPort(const DaemonProcess& daemon) {
  const std::string log = daemon.Log(), needle = "metrics on http://127.0.0.1:";
  size_t at = log.find(needle);
  return at == std::string::npos ? 0 : std::atoi(log.c_str() + at + needle.size());
}

std::string Scrape(const DaemonProcess& daemon) {
  CommandResult r = RunCommand({"curl", "-sf", "http://127.0.0.1:" + std::to_string(MetricsPort(daemon)) + "/metrics"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  return r.out;
}

// The value of one sample line "NAME{LABELS} VALUE" of a scrape; -1 when absent.
double Sample(const std::string& scrape, const std::string& name_and_labels) {
  std::istringstream lines(scrape);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name_and_labels + " ", 0) == 0) return std::atof(line.c_str() + name_and_labels.size() + 1);
  }
  return -1;
}

// Two real daemons on loopback: the source serving src_, the target serving dst_.
class TwoDaemons : public ::testing::Test {
 protected:
  void StartDaemons(const std::string& source_volume, const std::string& target_volume,
                    std::vector<std::string> source_flags, std::vector<std::string> target_flags) {
    src_ = tmp_.Sub("src");
    dst_ = tmp_.Sub("dst");
    for (const std::string& dir : {src_, dst_, tmp_.Sub("a"), tmp_.Sub("b")}) MakeDirs(dir);
    source_config_ = DaemonConfigIn(tmp_.Sub("a"), {{source_volume, src_}});
    source_config_.extra = std::move(source_flags);
    StartSource();
    DaemonProcess::Config target = DaemonConfigIn(tmp_.Sub("b"), {{target_volume, dst_}});
    target.extra = std::move(target_flags);
    ASSERT_EQ(target_.Start(target), "");
  }

  // The source daemon (again, after a Stop) with the same volumes, state and flags.
  void StartSource() { ASSERT_EQ(source_.Start(source_config_), ""); }

  TempDir tmp_;
  std::string src_, dst_;
  DaemonProcess::Config source_config_;
  DaemonProcess source_, target_;
};

class ControlApiTest : public TwoDaemons {
 protected:
  void SetUp() override {
    StartDaemons("data", "copy", {"--metrics-listen", "127.0.0.1:0", "--kubelet-root", ""},
                 {"--metrics-listen", "127.0.0.1:0", "--log-format", "json", "--kubelet-root", ""});
  }

  std::string SourceDaemon() const { return "ferry://127.0.0.1:" + std::to_string(source_.port()); }

  CommandResult Stage(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"stage", "--insecure", "--no-progress", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(source_.Url("data"));
    args.push_back(target_.Url("copy"));
    return RunFerry(args);
  }

  json Stages() {
    CommandResult r = RunFerry({"stages", "--insecure", "--json", SourceDaemon()});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    return ParseJson(r.out);
  }

};

TEST_F(ControlApiTest, StagesPushAVolumeBetweenTwoDaemonsAndAreCounted) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  BuildFidelityTree(src_, seed);

  CommandResult first = Stage();
  ASSERT_EQ(first.exit_code, 0) << first.Describe();
  json one = ParseJson(first.out);
  ASSERT_TRUE(one.is_object()) << first.out;
  EXPECT_EQ(one["state"], "committed") << first.out;
  EXPECT_EQ(one["stage_id"], 1u);
  EXPECT_EQ(one["final"], true);
  EXPECT_GT(one["summary"]["files_sent"].get<uint64_t>(), 0u) << first.out;
  EXPECT_EQ(RsyncDiff(src_, dst_), "");

  MutateTree(src_, seed);
  CommandResult second = Stage();
  ASSERT_EQ(second.exit_code, 0) << second.Describe();
  json two = ParseJson(second.out);
  EXPECT_EQ(two["state"], "committed") << second.out;
  EXPECT_GT(two["summary"]["entries_deleted"].get<uint64_t>(), 0u) << second.out;
  EXPECT_EQ(RsyncDiff(src_, dst_), "");

  // The source daemon remembers both, newest first.
  const json all = Stages();
  const json& stages = all["stages"];
  ASSERT_EQ(stages.size(), 2u) << stages.dump();
  EXPECT_EQ(stages[0]["stage_id"], 2u);
  EXPECT_EQ(stages[1]["stage_id"], 1u);
  EXPECT_EQ(stages[0]["state"], "committed");
  EXPECT_EQ(stages[0]["spec"]["target"], target_.Url("copy"));

  // Its volumes: the one it serves, a directory with its file system's size, idle now.
  CommandResult volumes = RunFerry({"volumes", "--insecure", "--json", SourceDaemon()});
  ASSERT_EQ(volumes.exit_code, 0) << volumes.Describe();
  const json listing = ParseJson(volumes.out);
  const json& list = listing["volumes"];
  ASSERT_EQ(list.size(), 1u) << volumes.out;
  EXPECT_EQ(list[0]["name"], "data");
  EXPECT_EQ(list[0]["kind"], "directory");
  EXPECT_EQ(list[0]["state"], "idle");
  EXPECT_GT(list[0]["size_bytes"].get<uint64_t>(), 0u);
  CommandResult table = RunFerry({"volumes", "--insecure", SourceDaemon()});
  EXPECT_NE(table.out.find("data"), std::string::npos) << table.Describe();

  // Both daemons counted both stages, each from its side.
  const uint64_t files = one["summary"]["files_sent"].get<uint64_t>() + two["summary"]["files_sent"].get<uint64_t>();
  const std::string sent = Scrape(source_), received = Scrape(target_);
  EXPECT_EQ(Sample(sent, "ferry_stages_total{role=\"sender\",volume=\"data\",result=\"committed\"}"), 2) << sent;
  EXPECT_EQ(Sample(sent, "ferry_files_sent_total{volume=\"data\"}"), static_cast<double>(files)) << sent;
  EXPECT_EQ(Sample(sent, "ferry_stage_duration_seconds_count{role=\"sender\",volume=\"data\"}"), 2) << sent;
  EXPECT_GT(Sample(sent, "ferry_last_successful_stage_timestamp_seconds{role=\"sender\",pair=\"data -> " +
                             target_.Url("copy") + "\"}"),
            1.7e9)
      << sent;
  EXPECT_EQ(Sample(sent, "ferry_sessions_active"), 0) << sent;
  EXPECT_NE(sent.find("ferry_info{version=\"0.1.0\",io_engine=\""), std::string::npos) << sent;
  EXPECT_EQ(Sample(received, "ferry_stages_total{role=\"receiver\",volume=\"copy\",result=\"committed\"}"), 2)
      << received;
  EXPECT_EQ(Sample(received, "ferry_files_received_total{volume=\"copy\"}"), static_cast<double>(files)) << received;
  EXPECT_GT(Sample(received, "ferry_bytes_received_total{volume=\"copy\"}"), 0) << received;

  // The target logs JSON: every line an object; a session's lines carry its id and volume.
  std::istringstream lines(target_.Log());
  int session_lines = 0;
  for (std::string line; std::getline(lines, line);) {
    json entry = ParseJson(line);
    ASSERT_TRUE(entry.is_object()) << "not JSON: " << line;
    EXPECT_TRUE(entry.contains("ts") && entry.contains("level") && entry.contains("msg")) << line;
    if (entry["msg"].get<std::string>().rfind("receiving stage", 0) == 0) {
      session_lines += 1;
      EXPECT_EQ(entry["volume"], "copy") << line;
      EXPECT_TRUE(entry.contains("session")) << line;
    }
  }
  EXPECT_EQ(session_lines, 2);
}

TEST_F(ControlApiTest, BadRequestsGetClearErrorsAndTheDaemonKeepsServing) {
  WriteFile(src_ + "/f", "x");
  CommandResult unknown = RunFerry({"stage", "--insecure", "--no-progress", SourceDaemon() + "/nope", target_.Url("copy")});
  EXPECT_EQ(unknown.exit_code, 3) << unknown.Describe();
  EXPECT_NE(unknown.err.find("unknown volume 'nope'"), std::string::npos) << unknown.err;

  // A target that does not answer: the stage runs and fails, naming it.
  CommandResult unreachable = RunFerry({"stage", "--insecure", "--no-progress", source_.Url("data"), "ferry://127.0.0.1:1/copy"});
  EXPECT_EQ(unreachable.exit_code, 8) << unreachable.Describe();
  EXPECT_NE(unreachable.err.find("127.0.0.1:1"), std::string::npos) << unreachable.err;

  CommandResult watch = RunFerry({"stage", "--insecure", "--watch", "999", SourceDaemon()});
  EXPECT_NE(watch.exit_code, 0);
  EXPECT_NE(watch.err.find("no stage 999"), std::string::npos) << watch.err;
  CommandResult cancel = RunFerry({"stage", "--insecure", "--cancel", "999", SourceDaemon()});
  EXPECT_NE(cancel.exit_code, 0);
  EXPECT_NE(cancel.err.find("no stage 999"), std::string::npos) << cancel.err;
  CommandResult bad_target = RunFerry({"stage", "--insecure", source_.Url("data"), "/local/path"});
  EXPECT_EQ(bad_target.exit_code, 1) << bad_target.Describe();
  EXPECT_NE(bad_target.err.find("target"), std::string::npos) << bad_target.err;

  EXPECT_TRUE(source_.alive());
  CommandResult ok = Stage();
  EXPECT_EQ(ok.exit_code, 0) << ok.Describe();
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
}

TEST_F(ControlApiTest, CancelledStageEndsCancelledAndTheVolumeIsFreeAgain) {
  for (int i = 0; i < 8; ++i) WriteRandomFile(src_ + "/f" + std::to_string(i), 1 << 20, TestSeed() + i);
  // 8 MiB at 1 MiB/s: running when the cancel arrives.
  CommandResult started = Stage({"--detach", "--bwlimit", "1M"});
  ASSERT_EQ(started.exit_code, 0) << started.Describe();
  const uint64_t id = ParseJson(started.out)["stage_id"].get<uint64_t>();
  ASSERT_TRUE(PollUntil([&] { return Stages()["stages"][0]["progress"]["bytes_sent"].get<uint64_t>() > 0; }, 20));
  CommandResult busy = Stage();  // one stage per volume at a time
  EXPECT_EQ(busy.exit_code, 6) << busy.Describe();
  EXPECT_NE(busy.err.find("busy"), std::string::npos) << busy.err;

  CommandResult cancel = RunFerry({"stage", "--insecure", "--cancel", std::to_string(id), SourceDaemon()});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.Describe();
  CommandResult watched = RunFerry({"stage", "--insecure", "--json", "--watch", std::to_string(id), SourceDaemon()});
  EXPECT_EQ(watched.exit_code, 8) << watched.Describe();
  EXPECT_EQ(ParseJson(watched.out)["state"], "cancelled") << watched.out;

  CommandResult again = Stage();
  ASSERT_EQ(again.exit_code, 0) << again.Describe();
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  EXPECT_EQ(FindTempFiles(dst_), "");
  const std::string sent = Scrape(source_);
  EXPECT_EQ(Sample(sent, "ferry_stages_total{role=\"sender\",volume=\"data\",result=\"cancelled\"}"), 1) << sent;
}

// A datagram socket standing in for systemd's notify socket: what the daemon says on it.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  }
  ~NotifySocket() {
    ::unsetenv("NOTIFY_SOCKET");
    ::close(fd_);
  }
  // Everything received within `timeout_s`, concatenated.
  std::string Read(double timeout_s) {
    std::string all;
    PollUntil([&] {
      char buf[512];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) all.append(buf, static_cast<size_t>(n)).push_back('\n');
      return false;
    }, timeout_s);
    return all;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST_F(ControlApiTest, SigtermDuringAStageThenRestartResumesItAndTheTargetConverges) {
  constexpr int kFiles = 10;
  for (int i = 0; i < kFiles; ++i) WriteRandomFile(src_ + "/f" + std::to_string(i), 1 << 20, TestSeed() + i);
  // The source daemon again, with systemd's notify socket (Type=notify).
  ASSERT_EQ(source_.Stop(), 0);
  NotifySocket notify(tmp_.Sub("notify"));
  StartSource();
  EXPECT_NE(notify.Read(1).find("READY=1"), std::string::npos);

  CommandResult started = Stage({"--detach", "--bwlimit", "1M"});
  ASSERT_EQ(started.exit_code, 0) << started.Describe();
  // Stopped with a few files committed on the target and most still to send.
  ASSERT_TRUE(PollUntil([&] {
    return Stages()["stages"][0]["progress"]["bytes_sent"].get<uint64_t>() >= 3u << 20 &&
           ::access((dst_ + "/f0").c_str(), F_OK) == 0;
  }, 20));
  EXPECT_EQ(source_.Stop(), 0) << source_.Log();  // SIGTERM: a clean exit
  EXPECT_NE(notify.Read(0.2).find("STOPPING=1"), std::string::npos);
  EXPECT_NE(source_.Log().find("stage interrupted"), std::string::npos) << source_.Log();
  EXPECT_NE(RsyncDiff(src_, dst_), "");  // not there yet

  StartSource();
  EXPECT_TRUE(source_.WaitForLog("resuming stage 1", 1, 5)) << source_.Log();
  json stage;
  ASSERT_TRUE(PollUntil([&] {
    stage = Stages()["stages"][0];
    return stage["state"] != "running";
  }, 30)) << stage.dump();
  EXPECT_EQ(stage["state"], "committed") << stage.dump();
  EXPECT_EQ(stage["attempt"], 2u);
  // Files committed before the stop were not sent again.
  EXPECT_LT(stage["summary"]["files_sent"].get<uint64_t>(), static_cast<uint64_t>(kFiles)) << stage.dump();
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  EXPECT_EQ(FindTempFiles(dst_), "");
}

class KubeletDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kube_ = tmp_.Sub("kubelet");
    // CSI: the file system at <pv>/mount, beside vol_data.json.
    csi_ = kube_ + "/pods/uid-1/volumes/kubernetes.io~csi/pv-a/mount";
    MakeDirs(csi_ + "/db");
    WriteFile(kube_ + "/pods/uid-1/volumes/kubernetes.io~csi/pv-a/vol_data.json", "{}");
    WriteRandomFile(csi_ + "/db/seg1", 200000, 1);
    WriteFile(csi_ + "/db/conf", "x=1\n");
    // An in-tree plugin: the file system at <pv> itself.
    local_ = kube_ + "/pods/uid-2/volumes/kubernetes.io~local-volume/pv-b";
    MakeDirs(local_);
    // Mounted by two pods on this node.
    MakeDirs(kube_ + "/pods/uid-3/volumes/kubernetes.io~nfs/pv-c");
    MakeDirs(kube_ + "/pods/uid-4/volumes/kubernetes.io~nfs/pv-c");
    // A block PV (an image file standing in for the device node kubelet makes).
    MakeDirs(kube_ + "/pods/uid-5/volumeDevices/kubernetes.io~csi");
    WriteRandomFile(kube_ + "/pods/uid-5/volumeDevices/kubernetes.io~csi/pv-d", 1 << 20, 2);
    // Mounted by two pods on this node as the same file system (the app and ferry's holder pod:
    // kubelet bind-mounts one volume into each; here two links to one directory).
    shared_ = tmp_.Sub("pv-f-data");
    MakeDirs(shared_);
    WriteFile(shared_ + "/f", "shared\n");
    for (const char* pod : {"uid-7", "uid-8"}) {
      MakeDirs(kube_ + "/pods/" + pod + "/volumes/kubernetes.io~csi/pv-f");
      EXPECT_EQ(::symlink(shared_.c_str(), (kube_ + "/pods/" + pod + "/volumes/kubernetes.io~csi/pv-f/mount").c_str()), 0);
    }
    // A pod whose CSI volume is not published yet: no mount dir.
    MakeDirs(kube_ + "/pods/uid-6/volumes/kubernetes.io~csi/pv-e");
    DaemonProcess::Config config = DaemonConfigIn(tmp_.path(), {});
    config.extra = {"--kubelet-root", kube_};
    ASSERT_EQ(daemon_.Start(config), "");
  }

  TempDir tmp_;
  std::string kube_, csi_, local_, shared_;
  DaemonProcess daemon_;
};

TEST_F(KubeletDiscoveryTest, PvNamesResolveToTheirOneMountOrAClearError) {
  // Pull from the CSI volume, push into the in-tree one.
  const std::string pulled = tmp_.Sub("pulled");
  CommandResult pull = RunFerry({"sync", "--insecure", "--no-progress", daemon_.Url("pv:pv-a"), pulled});
  ASSERT_EQ(pull.exit_code, 0) << pull.Describe();
  EXPECT_EQ(RsyncDiff(csi_, pulled), "");
  CommandResult push = RunFerry({"sync", "--insecure", "--no-progress", pulled, daemon_.Url("pv:pv-b")});
  ASSERT_EQ(push.exit_code, 0) << push.Describe();
  EXPECT_EQ(RsyncDiff(pulled, local_), "");

  CommandResult twice = RunFerry({"sync", "--insecure", "--no-progress", daemon_.Url("pv:pv-c"), tmp_.Sub("c")});
  EXPECT_EQ(twice.exit_code, 1) << twice.Describe();  // the name is ambiguous here: name the path instead
  EXPECT_NE(twice.err.find("mounted 2 times"), std::string::npos) << twice.err;
  EXPECT_NE(twice.err.find("uid-3"), std::string::npos) << twice.err;
  CommandResult shared = RunFerry({"sync", "--insecure", "--no-progress", daemon_.Url("pv:pv-f"), tmp_.Sub("f")});
  ASSERT_EQ(shared.exit_code, 0) << shared.Describe();  // two mounts of one volume are one volume
  EXPECT_EQ(RsyncDiff(shared_, tmp_.Sub("f")), "");
  for (const std::string pv : {"pv-missing", "pv-e"}) {
    CommandResult none = RunFerry({"sync", "--insecure", "--no-progress", daemon_.Url("pv:" + pv), tmp_.Sub("m")});
    EXPECT_EQ(none.exit_code, 2) << none.Describe();
    EXPECT_NE(none.err.find("no pod on this node mounts PV '" + pv + "'"), std::string::npos) << none.err;
  }

  // A block PV, pulled as one object.
  const std::string image = tmp_.Sub("pv-d.img");
  CommandResult block = RunFerry({"sync", "--block", "--insecure", "--no-progress", daemon_.Url("pv:pv-d"), image});
  ASSERT_EQ(block.exit_code, 0) << block.Describe();
  EXPECT_EQ(ReadFile(image), ReadFile(kube_ + "/pods/uid-5/volumeDevices/kubernetes.io~csi/pv-d"));

  // The listing shows the PVs mounted once here, and the daemon kept serving through the errors.
  CommandResult volumes = RunFerry({"volumes", "--insecure", "--json", "ferry://127.0.0.1:" + std::to_string(daemon_.port())});
  ASSERT_EQ(volumes.exit_code, 0) << volumes.Describe();
  std::vector<std::string> names;
  const json listing = ParseJson(volumes.out);
  for (const json& v : listing["volumes"]) names.push_back(v["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"pv:pv-a", "pv:pv-b", "pv:pv-d", "pv:pv-f"})) << volumes.out;
}

TEST(KubeletRootTest, DaemonWithoutVolumesOrKubeletSaysWhatIsMissing) {
  TempDir tmp;
  CommandResult r = RunFerry({"daemon", "--insecure", "--listen", "127.0.0.1:0", "--state-dir", tmp.Sub("state"),
                              "--kubelet-root", tmp.Sub("no-kubelet")});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("no --volume NAME=PATH given"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(tmp.Sub("no-kubelet")), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ferry_test

namespace ferry_test {
namespace {

// The coordinator's first steps (issue 7): `ferry stage PLAN` stages every pair of a plan at once
// through the source daemon's control API and journals it; `ferry status PLAN` predicts.
TEST_F(ControlApiTest, PlanStagesEveryPairAndStatusPredictsTheFinalStage) {
  const std::string logs = tmp_.Sub("logs"), logs_copy = tmp_.Sub("logs-copy");
  MakeDirs(logs);
  MakeDirs(logs_copy);
  ASSERT_EQ(source_.Stop(), 0);
  ASSERT_EQ(target_.Stop(), 0);
  DaemonProcess::Config source = DaemonConfigIn(tmp_.Sub("a"), {{"data", src_}, {"logs", logs}});
  source.extra = {"--kubelet-root", ""};
  ASSERT_EQ(source_.Start(source), "");
  DaemonProcess::Config target = DaemonConfigIn(tmp_.Sub("b"), {{"copy", dst_}, {"logs2", logs_copy}});
  target.extra = {"--kubelet-root", ""};
  ASSERT_EQ(target_.Start(target), "");
  BuildFidelityTree(src_, TestSeed());
  for (int i = 0; i < 20; ++i) WriteRandomFile(logs + "/l" + std::to_string(i), 100000, TestSeed() + i);
  const std::string plan = tmp_.Sub("plan.yaml");
  WriteFile(plan, "name: demo\nsource: ferry://127.0.0.1:" + std::to_string(source_.port()) +
                      "\ntarget: ferry://127.0.0.1:" + std::to_string(target_.port()) +
                      "\nauth: {insecure: true}\npairs:\n  - {source: data, target: copy}\n"
                      "  - {source: logs, target: logs2}\npolicy: {max_downtime: 30s, min_stages: 2}\n");
  const std::string state = tmp_.Sub("coordinator");
  json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  EXPECT_TRUE(status["predicted_downtime_s"].is_null()) << status.dump();
  EXPECT_EQ(status["ready"], false);

  CommandResult first = RunFerry({"stage", "--json", "--no-progress", "--state-dir", state, plan});
  ASSERT_EQ(first.exit_code, 0) << first.Describe();
  json one = ParseJson(first.out);
  EXPECT_EQ(one["stage"], 1u) << first.out;
  ASSERT_EQ(one["pairs"].size(), 2u);
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  EXPECT_EQ(RsyncDiff(logs, logs_copy), "");

  WriteRandomFile(logs + "/l0", 200000, TestSeed() + 99);  // the app wrote a little
  CommandResult second = RunFerry({"stage", "--json", "--no-progress", "--state-dir", state, plan});
  ASSERT_EQ(second.exit_code, 0) << second.Describe();
  EXPECT_EQ(ParseJson(second.out)["stage"], 2u);
  EXPECT_EQ(RsyncDiff(logs, logs_copy), "");

  status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  ASSERT_TRUE(status.is_object());
  EXPECT_EQ(status["stages"].size(), 4u) << status.dump();
  ASSERT_TRUE(status["predicted_downtime_s"].is_number()) << status.dump();
  EXPECT_LT(status["predicted_downtime_s"].get<double>(), 30) << status.dump();
  EXPECT_GT(status["change_rate_bps"].get<double>(), 0) << status.dump();
  EXPECT_EQ(status["ready"], true) << status.dump();

  // A wrong plan is refused with its line before anything runs.
  WriteFile(plan, "name: demo\nauth: {insecure: true}\npairs:\n  - {source: data, target: copy, source_demon: x}\n");
  CommandResult bad = RunFerry({"stage", "--state-dir", state, plan});
  EXPECT_EQ(bad.exit_code, 1) << bad.Describe();
  EXPECT_NE(bad.err.find("plan.yaml:4: pairs item: unknown key 'source_demon'"), std::string::npos) << bad.err;

  // A volume a daemon does not serve, a daemon that does not answer: refused with the pair's
  // line, and no stage runs (the journal keeps its 4 stage rows).
  const std::string daemons = "name: demo\nsource: ferry://127.0.0.1:" + std::to_string(source_.port()) +
                              "\ntarget: ferry://127.0.0.1:" + std::to_string(target_.port()) + "\nauth: {insecure: true}\n";
  WriteFile(plan, daemons + "pairs:\n  - {source: data, target: copy}\n  - {source: logs, target: nothere}\n");
  bad = RunFerry({"migrate", "--state-dir", state, plan});
  EXPECT_EQ(bad.exit_code, 1) << bad.Describe();
  EXPECT_NE(bad.err.find("plan.yaml:7: pair logs -> nothere: the target daemon ferry://127.0.0.1:" +
                         std::to_string(target_.port()) + " serves no volume 'nothere' (it serves: copy, logs2)"),
            std::string::npos)
      << bad.err;
  WriteFile(plan, daemons + "pairs:\n  - {source: data, target: copy, target_daemon: ferry://127.0.0.1:1}\n");
  bad = RunFerry({"stage", "--state-dir", state, plan});
  EXPECT_EQ(bad.exit_code, 1) << bad.Describe();
  EXPECT_NE(bad.err.find("plan.yaml:6: pair data -> copy: the target daemon ferry://127.0.0.1:1: cannot reach"), std::string::npos)
      << bad.err;
  EXPECT_EQ(ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out)["stages"].size(), 4u);

  // `xattrs: false`: the plan's stages neither copy nor compare xattrs (as --no-xattrs).
  ASSERT_EQ(::lsetxattr((logs + "/l1").c_str(), "user.tag", "v", 1, 0), 0);
  WriteFile(plan, daemons + "pairs:\n  - {source: logs, target: logs2}\nxattrs: false\n");
  CommandResult plain = RunFerry({"stage", "--no-progress", "--state-dir", tmp_.Sub("coordinator2"), plan});
  ASSERT_EQ(plain.exit_code, 0) << plain.Describe();
  EXPECT_LT(::lgetxattr((logs_copy + "/l1").c_str(), "user.tag", nullptr, 0), 0) << "copied despite xattrs: false";
  EXPECT_NE(RsyncDiff(logs, logs_copy), "") << "the oracle compares xattrs: it must see them differ";
}

}  // namespace
}  // namespace ferry_test

namespace ferry_test {
namespace {

// A live database moved by `ferry migrate` (issue 7, in progress): SQLite in WAL mode with a
// writer committing transactions the whole time (tests/apps/sqlite_app.py), two daemons on
// loopback, real hooks that stop and start the writer.
class MigrateTest : public TwoDaemons {
 protected:
  void SetUp() override {
    StartDaemons("db", "db", {"--kubelet-root", ""}, {"--kubelet-root", ""});
    app_ = std::string(FERRY_SOURCE_DIR) + "/tests/apps/sqlite_app.py";
    // The app runs on the source, acknowledging into a log outside the volume.
    CommandResult started = RunCommand({"python3", app_, "start", src_ + "/app.db", tmp_.Sub("acked"), tmp_.Sub("source.pid")});
    ASSERT_EQ(started.exit_code, 0) << started.Describe();
    ASSERT_TRUE(PollUntil([&] { return ReadFile(tmp_.Sub("acked")).size() > 200; }, 10));
  }

  void TearDown() override {
    for (const char* pid : {"source.pid", "target.pid"}) {
      if (::access(tmp_.Sub(pid).c_str(), F_OK) == 0) RunCommand({"python3", app_, "stop", tmp_.Sub(pid)});
    }
  }

  // `quiesce_source`: the hook's argv (default: stop the source app).
  std::string WritePlan(const std::string& start_target, const std::string& quiesce_source = "") {
    const std::string plan = tmp_.Sub("plan.yaml");
    const std::string estimate = estimates_ ? ", estimate: 1s" : "";
    WriteFile(plan, "name: shop-db\nsource: ferry://127.0.0.1:" + std::to_string(source_.port()) +
                        "\ntarget: " + (target_url_.empty() ? "ferry://127.0.0.1:" + std::to_string(target_.port()) : target_url_) +
                        "\nauth: {insecure: true}\npairs:\n  - {source: db, target: db}\n"
                        "policy: {max_downtime: 30s, min_stages: 2, max_stages: 10, verify: full" + policy_extra_ + "}\n"
                        "hooks:\n"
                        "  quiesce_source: {run: " +
                        (quiesce_source.empty() ? "[python3, " + app_ + ", stop, " + tmp_.Sub("source.pid") + "]" : quiesce_source) +
                        ", timeout: 30s" + estimate + "}\n"
                        "  start_target: {run: " + start_target + ", timeout: 30s" + estimate + "}\n"
                        "  switch_traffic: {run: [true], estimate: 0s}\n" + extra_hooks_ +
                        "  resume_source: {run: [python3, " + app_ + ", start, " + src_ + "/app.db, " + tmp_.Sub("acked") +
                        ", " + tmp_.Sub("source.pid") + "]}\n");
    return plan;
  }

  // The plan's target daemon, as the plan names it (a proxy in front of it, for partitions).
  std::string target_url_;
  // The plan's hooks carry an estimate of their time (else the prediction is a lower bound
  // until they are measured); more policy keys and hooks.
  bool estimates_ = true;
  std::string policy_extra_, extra_hooks_;

  // The rehearsal's hooks: stop_target stops the target app (idempotent), check_target reads the
  // copy's database; each after `delay` (so that kills land inside them).
  std::string RehearsalHooks(const std::string& delay = "0") {
    return "  stop_target: {run: [sh, -c, \"sleep " + delay + "; exec python3 " + app_ + " stop " + tmp_.Sub("target.pid") +
           "\"], timeout: 30s}\n"
           "  check_target: {run: [sh, -c, \"sleep " + delay + "; exec python3 -c 'import sqlite3, sys; "
           "sqlite3.connect(sys.argv[1]).execute(\\\"SELECT count(*) FROM t\\\").fetchone()' " + dst_ + "/app.db\"], "
           "timeout: 30s}\n";
  }

  // How many copies of the app run on the target's database now: its writers, each the leader
  // of its own session (not the `start` command that forks one).
  int TargetApps() {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const pid_t pid = std::atoi(entry.path().filename().c_str());
      if (pid <= 0 || ::getsid(pid) != pid) continue;
      const std::string cmdline = ReadFile(entry.path().string() + "/cmdline");
      n += cmdline.find("sqlite_app.py") != std::string::npos && cmdline.find(dst_ + "/app.db") != std::string::npos;
    }
    return n;
  }

  // Starts `ferry migrate` (in `coordinator`, stderr to `err`) on a plan whose target daemon is
  // reached through `proxy`, and waits until the cutover has begun (the quiesce). Returns the
  // plan ("" when the cutover did not begin within a minute).
  // A quiesce hook that stops the app and then waits until `go` exists: a test partitions the
  // network first (a tracked final stage takes tens of milliseconds, and the whole cutover could
  // end before the test saw it begin).
  std::string QuiesceUntil(const std::string& go) {
    return "[sh, -c, \"python3 " + app_ + " stop " + tmp_.Sub("source.pid") + " && while [ ! -e " + go +
           " ]; do sleep 0.05; done\"]";
  }
  // `quiesce_source`: the plan's hook ("": the app's stop).
  std::string MigrateUntilQuiesce(ResetProxy& proxy, ChildProcess& coordinator, const std::string& state,
                                  const std::string& err, const std::string& quiesce_source = "") {
    target_url_ = "ferry://127.0.0.1:" + std::to_string(proxy.port());
    const std::string plan = WritePlan("[python3, " + app_ + ", start, " + dst_ + "/app.db, " +
                                       tmp_.Sub("acked-target") + ", " + tmp_.Sub("target.pid") + "]",
                                       quiesce_source);
    if (!coordinator.Spawn({FerryBinary(), "migrate", "--state-dir", state, plan}, "/dev/null", err)) return "";
    bool began = PollUntil([&] { return ReadFile(err).find("cutover: quiescing") != std::string::npos; }, 60);
    return began ? plan : "";
  }

  // Whether the app whose pid is in `pid_file` runs.
  bool AppRuns(const char* pid_file) {
    const std::string text = ReadFile(tmp_.Sub(pid_file));
    const pid_t pid = std::atoi(text.c_str());
    return pid > 0 && ::kill(pid, 0) == 0 && ReadFile("/proc/" + std::to_string(pid) + "/cmdline").find("sqlite_app.py") != std::string::npos;
  }

  std::string app_;
};

TEST_F(MigrateTest, LiveDatabaseMovesWithEveryAcknowledgedTransaction) {
  const std::string plan = WritePlan("[python3, " + app_ + ", start, " + dst_ + "/app.db, " + tmp_.Sub("acked-target") +
                                     ", " + tmp_.Sub("target.pid") + "]");
  const std::string state = tmp_.Sub("coordinator");
  CommandResult migrate = RunFerry({"migrate", "--state-dir", state, plan}, 120);
  ASSERT_EQ(migrate.exit_code, 0) << migrate.Describe();
  EXPECT_NE(migrate.err.find("migrated: downtime"), std::string::npos) << migrate.err;

  // The target app runs on the copy; every transaction the source acknowledged before the
  // quiesce is there.
  ASSERT_TRUE(PollUntil([&] { return ReadFile(tmp_.Sub("acked-target")).size() > 0; }, 10));
  CommandResult stop = RunCommand({"python3", app_, "stop", tmp_.Sub("target.pid")});
  ASSERT_EQ(stop.exit_code, 0) << stop.Describe();
  CommandResult missing = RunCommand({"python3", app_, "missing", dst_ + "/app.db", tmp_.Sub("acked")});
  EXPECT_EQ(missing.exit_code, 0) << missing.Describe();

  json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  ASSERT_TRUE(status.is_object());
  EXPECT_EQ(status["state"], "migrated") << status.dump();
  EXPECT_TRUE(status["cutover_predicted_downtime_s"].is_number()) << status.dump();
  ASSERT_TRUE(status["actual_downtime_s"].is_number()) << status.dump();
  EXPECT_GT(status["actual_downtime_s"].get<double>(), 0);
  EXPECT_LT(status["actual_downtime_s"].get<double>(), 30);
  int final_stages = 0, checks = 0;
  for (const json& s : status["stages"]) {
    final_stages += s["kind"] == "final";
    checks += s["kind"] == "check";
    if (s["kind"] == "check") {
      EXPECT_EQ(s["changes"], 0u) << s.dump();
    }
  }
  EXPECT_GE(final_stages, 1);
  EXPECT_EQ(checks, 1);
  // Again: nothing to do, the journal says migrated; and no rollback that would run the app twice.
  EXPECT_EQ(RunFerry({"migrate", "--state-dir", state, plan}).exit_code, 0);
  CommandResult rollback = RunFerry({"rollback", "--state-dir", state, plan});
  EXPECT_EQ(rollback.exit_code, 1) << rollback.Describe();
  EXPECT_NE(rollback.err.find("is migrated"), std::string::npos) << rollback.err;
  const pid_t source_pid = std::atoi(ReadFile(tmp_.Sub("source.pid")).c_str());  // the quiesced writer's
  EXPECT_NE(::kill(source_pid, 0), 0) << "rollback started the source app (pid " << source_pid << ")";
}

// Hooks without estimates that never ran: the prediction is a lower bound and migrate does not cut
// over on it; with policy rehearse: true it rehearses (the target app starts on the staged copy,
// its database answers, it stops), stages again, predicts from the rehearsal's times and cuts
// over, every acknowledged transaction on the target.
TEST_F(MigrateTest, ALowerBoundIsNotCutOverOnAndARehearsalMeasuresIt) {
  estimates_ = false;
  const std::string start_target = "[python3, " + app_ + ", start, " + dst_ + "/app.db, " + tmp_.Sub("acked-target") +
                                   ", " + tmp_.Sub("target.pid") + "]";
  std::string plan = WritePlan(start_target);
  const std::string state = tmp_.Sub("coordinator");
  CommandResult refused = RunFerry({"migrate", "--state-dir", state, plan}, 120);
  EXPECT_EQ(refused.exit_code, 8) << refused.Describe();
  EXPECT_NE(refused.err.find("a lower bound"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("not measured: quiesce_source, start_target"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("ferry rehearse"), std::string::npos) << refused.err;
  json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  EXPECT_EQ(status["state"], "lower_bound") << status.dump();
  EXPECT_EQ(status["lower_bound"], true) << status.dump();
  EXPECT_TRUE(AppRuns("source.pid"));
  EXPECT_FALSE(AppRuns("target.pid"));

  policy_extra_ = ", rehearse: true";
  extra_hooks_ = RehearsalHooks();
  plan = WritePlan(start_target);
  const pid_t source_pid = std::atoi(ReadFile(tmp_.Sub("source.pid")).c_str());
  CommandResult migrate = RunFerry({"migrate", "--state-dir", state, plan}, 120);
  ASSERT_EQ(migrate.exit_code, 0) << migrate.Describe();
  EXPECT_NE(migrate.err.find("rehearsed the cutover on the target copy: round 1: start_target"), std::string::npos) << migrate.err;
  EXPECT_NE(migrate.err.find("migrated: downtime"), std::string::npos) << migrate.err;
  // The rehearsal came before the quiesce: the source app ran until the cutover stopped it.
  EXPECT_LT(migrate.err.find("rehearsed the cutover"), migrate.err.find("cutover: quiescing")) << migrate.err;
  status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  ASSERT_EQ(status["state"], "migrated") << status.dump();
  ASSERT_TRUE(status["actual_split"].is_array() && status["actual_split"].size() == 5) << status.dump();
  ASSERT_TRUE(status["cutover_predicted_split"].is_array() && status["cutover_predicted_split"].size() == 5)
      << status.dump();
  double sum = 0;
  for (const json& part : status["actual_split"]) sum += part["seconds"].get<double>();
  EXPECT_NEAR(sum, status["actual_downtime_s"].get<double>(), 0.05) << status.dump();
  // The quiesce was predicted from the rehearsal's stop_target, the start from its start_target and check_target.
  EXPECT_GT(status["cutover_predicted_split"][0]["seconds"].get<double>(), 0) << status.dump();
  EXPECT_GT(status["cutover_predicted_split"][3]["seconds"].get<double>(), 0) << status.dump();
  EXPECT_NE(::kill(source_pid, 0), 0) << "the quiesce stopped the source app";
  ASSERT_TRUE(PollUntil([&] { return AppRuns("target.pid"); }, 10));
  EXPECT_EQ(TargetApps(), 1);
  ASSERT_EQ(RunCommand({"python3", app_, "stop", tmp_.Sub("target.pid")}).exit_code, 0);
  CommandResult missing = RunCommand({"python3", app_, "missing", dst_ + "/app.db", tmp_.Sub("acked")});
  EXPECT_EQ(missing.exit_code, 0) << missing.Describe();
}

// A target app that cannot start on the copy: the rehearsal says so with the hook's output, before
// any downtime (no quiesce; the source app keeps running), stops what may have started, and the
// next migrate rehearses again rather than cutting over.
TEST_F(MigrateTest, ATargetThatFailsItsRehearsalIsToldWithItsOutputBeforeAnyDowntime) {
  policy_extra_ = ", rehearse: true";
  extra_hooks_ = RehearsalHooks();
  const std::string plan =
      WritePlan("[sh, -c, \"echo starting the copy; echo 'FATAL: the copy cannot start here' >&2; exit 3\"]");
  const std::string state = tmp_.Sub("coordinator");
  CommandResult migrate = RunFerry({"migrate", "--state-dir", state, plan}, 120);
  EXPECT_EQ(migrate.exit_code, 8) << migrate.Describe();
  EXPECT_NE(migrate.err.find("not cutting over: the target app failed its rehearsal"), std::string::npos) << migrate.err;
  EXPECT_NE(migrate.err.find("FATAL: the copy cannot start here"), std::string::npos) << migrate.err;
  EXPECT_NE(migrate.err.find(", sh) exited 3"), std::string::npos) << migrate.err;
  EXPECT_EQ(migrate.err.find("quiescing"), std::string::npos) << migrate.err;
  EXPECT_TRUE(AppRuns("source.pid"));
  json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  EXPECT_EQ(status["state"], "rehearsal_failed") << status.dump();
  int restores = 0;
  for (const json& s : status["stages"]) restores += s["kind"] == "restore";
  EXPECT_EQ(restores, 1) << status.dump();
  // Again: the rehearsal runs again and fails again; never a cutover on an app that did not start.
  migrate = RunFerry({"migrate", "--state-dir", state, plan}, 120);
  EXPECT_EQ(migrate.exit_code, 8) << migrate.Describe();
  EXPECT_NE(migrate.err.find("failed its rehearsal"), std::string::npos) << migrate.err;
  EXPECT_TRUE(AppRuns("source.pid"));
}

// `ferry rehearse` killed (SIGKILL) inside each of its steps — starting the target app, checking
// it, stopping it — then the next coordinator (a stage): the rehearsed app is stopped before the
// stage, never two apps run on the target, the source app is never stopped, and once the source
// app stops, a stage leaves the target equal to the source by rsync's comparison.
TEST_F(MigrateTest, RehearsalKilledAtEachStepNeverRunsTwoTargetAppsNorStopsTheSource) {
  extra_hooks_ = RehearsalHooks("0.3");
  const std::string plan =
      WritePlan("[sh, -c, \"sleep 0.3; exec python3 " + app_ + " start " + dst_ + "/app.db " + tmp_.Sub("acked-rehearsal") +
                " " + tmp_.Sub("target.pid") + "\"]");
  const std::string state = tmp_.Sub("coordinator");
  for (int i = 0; i < 2; ++i) ASSERT_EQ(RunFerry({"stage", "--state-dir", state, plan}, 60).exit_code, 0);
  const pid_t source_pid = std::atoi(ReadFile(tmp_.Sub("source.pid")).c_str());
  std::atomic<bool> watching{true};
  std::atomic<int> most_target_apps{0};
  std::thread watcher([&] {
    while (watching) {
      most_target_apps = std::max(most_target_apps.load(), TargetApps());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::mt19937_64 random(TestSeed());
  for (const char* step : {"rehearsing", "rehearse_checking", "rehearse_stopping"}) {
    SCOPED_TRACE(std::string("killed in ") + step + " (FERRY_TEST_SEED=" + std::to_string(TestSeed()) + ")");
    const std::string err = tmp_.Sub(std::string("rehearse-") + step + ".err");
    {
      ChildProcess coordinator;
      ASSERT_TRUE(coordinator.Spawn({FerryBinary(), "rehearse", "--state-dir", state, plan}, "/dev/null", err));
      ASSERT_TRUE(PollUntil([&] { return ReadFile(err).find(std::string("rehearsal: ") + step) != std::string::npos; }, 60))
          << ReadFile(err);
      std::this_thread::sleep_for(std::chrono::milliseconds(50 + random() % 200));
      coordinator.Signal(SIGKILL);
      coordinator.Wait(10);
    }
    json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
    EXPECT_EQ(status.value("state", std::string()), step) << status.dump();
    // The next coordinator stops the rehearsed app first, then stages.
    CommandResult stage = RunFerry({"stage", "--state-dir", state, plan}, 60);
    EXPECT_EQ(stage.exit_code, 0) << stage.Describe();
    EXPECT_NE(stage.err.find("stopping the rehearsed target app"), std::string::npos) << stage.err;
    EXPECT_FALSE(AppRuns("target.pid")) << "the rehearsed app still runs on the target";
    EXPECT_EQ(::kill(source_pid, 0), 0) << "the source app was stopped";
  }
  // A whole rehearsal, then its restoring stage.
  CommandResult rehearse = RunFerry({"rehearse", "--state-dir", state, plan}, 120);
  EXPECT_EQ(rehearse.exit_code, 0) << rehearse.Describe();
  EXPECT_NE(rehearse.err.find("the target equals the source again"), std::string::npos) << rehearse.err;
  watching = false;
  watcher.join();
  EXPECT_LE(most_target_apps.load(), 1);
  EXPECT_EQ(::kill(source_pid, 0), 0) << "the source app was stopped";
  EXPECT_FALSE(AppRuns("target.pid"));
  // The rehearsals' writes to the target are undone: stopped source, one stage, equal trees.
  ASSERT_EQ(RunCommand({"python3", app_, "stop", tmp_.Sub("source.pid")}).exit_code, 0);
  ASSERT_EQ(RunFerry({"stage", "--state-dir", state, plan}, 60).exit_code, 0);
  EXPECT_EQ(RsyncDiff(src_, dst_), "");
  CommandResult missing = RunCommand({"python3", app_, "missing", dst_ + "/app.db", tmp_.Sub("acked")});
  EXPECT_EQ(missing.exit_code, 0) << missing.Describe();
}

TEST_F(MigrateTest, FailingStartTargetRollsBackAndTheSourceRunsWithAllItsData) {
  const std::string plan = WritePlan("[false]");
  const std::string state = tmp_.Sub("coordinator");
  CommandResult migrate = RunFerry({"migrate", "--state-dir", state, plan}, 120);
  EXPECT_EQ(migrate.exit_code, 8) << migrate.Describe();
  EXPECT_NE(migrate.err.find("cutover failed at start_target"), std::string::npos) << migrate.err;
  EXPECT_NE(migrate.err.find("rolled back"), std::string::npos) << migrate.err;
  json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  EXPECT_EQ(status["state"], "rolled_back") << status.dump();
  EXPECT_NE(status["rollback_cause"].get<std::string>().find("hook start_target"), std::string::npos) << status.dump();
  // The source app runs again (resume_source) and keeps acknowledging; nothing it acknowledged
  // is lost.
  const size_t acked = ReadFile(tmp_.Sub("acked")).size();
  EXPECT_TRUE(PollUntil([&] { return ReadFile(tmp_.Sub("acked")).size() > acked; }, 10));
  ASSERT_EQ(RunCommand({"python3", app_, "stop", tmp_.Sub("source.pid")}).exit_code, 0);
  CommandResult missing = RunCommand({"python3", app_, "missing", src_ + "/app.db", tmp_.Sub("acked")});
  EXPECT_EQ(missing.exit_code, 0) << missing.Describe();
  EXPECT_EQ(::access(tmp_.Sub("target.pid").c_str(), F_OK), -1);  // never started
}

// A partition between the source and the target daemons from the quiesce on, through the
// cutover's final stage (every connection through the proxy in front of the target is reset,
// new ones too, for 2.5 s): the stage tries again; the run ends migrated (the partition healed in time) or rolled
// back (it did not) — one app runs, with every acknowledged transaction, never both.
TEST_F(MigrateTest, PartitionDuringTheFinalStageEndsMigratedOrRolledBackNeverBoth) {
  ResetProxy proxy(target_.port(), 0, 0);
  const std::string state = tmp_.Sub("coordinator"), err = tmp_.Sub("migrate.err");
  ChildProcess coordinator;
  const std::string plan = MigrateUntilQuiesce(proxy, coordinator, state, err, QuiesceUntil(tmp_.Sub("partitioned")));
  ASSERT_FALSE(plan.empty()) << ReadFile(err);
  proxy.Partition(true);
  WriteFile(tmp_.Sub("partitioned"), "");
  // Until the final stage has met it (the quiesce may take seconds on a loaded machine), then on.
  EXPECT_TRUE(PollUntil([&] { return proxy.resets_done() > 0; }, 60)) << ReadFile(err);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  proxy.Partition(false);
  const int exit_code = coordinator.Wait(120);
  json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  const std::string end = status.value("state", std::string());
  std::printf("partition during the final stage: %d connections reset, ended %s\n", proxy.resets_done(), end.c_str());
  EXPECT_GT(proxy.resets_done(), 0);
  if (end == "migrated") {
    EXPECT_EQ(exit_code, 0) << ReadFile(err);
    ASSERT_TRUE(PollUntil([&] { return AppRuns("target.pid"); }, 10));
    EXPECT_FALSE(AppRuns("source.pid"));
    ASSERT_EQ(RunCommand({"python3", app_, "stop", tmp_.Sub("target.pid")}).exit_code, 0);
    CommandResult missing = RunCommand({"python3", app_, "missing", dst_ + "/app.db", tmp_.Sub("acked")});
    EXPECT_EQ(missing.exit_code, 0) << missing.Describe();
  } else {
    ASSERT_EQ(end, "rolled_back") << ReadFile(err) << status.dump();
    EXPECT_EQ(exit_code, 8);
    EXPECT_FALSE(AppRuns("target.pid"));
    const size_t acked = ReadFile(tmp_.Sub("acked")).size();
    EXPECT_TRUE(PollUntil([&] { return ReadFile(tmp_.Sub("acked")).size() > acked; }, 10));
  }
}

// A partition from the quiesce on that does not heal: the final stage's attempts all fail (the
// daemon tries 5 times over 15 s), the cutover rolls back: the source app runs again with all
// its data, the target app was never started. About 25 s: in the long profile
// (FERRY_LONG_TESTS, set by `./run reliability`).
TEST_F(MigrateTest, PartitionThatDoesNotHealRollsBack) {
  if (std::getenv("FERRY_LONG_TESTS") == nullptr) GTEST_SKIP() << "long: ./run reliability runs it";
  ResetProxy proxy(target_.port(), 0, 0);
  const std::string state = tmp_.Sub("coordinator"), err = tmp_.Sub("migrate.err");
  ChildProcess coordinator;
  const std::string plan = MigrateUntilQuiesce(proxy, coordinator, state, err, QuiesceUntil(tmp_.Sub("partitioned")));
  ASSERT_FALSE(plan.empty()) << ReadFile(err);
  proxy.Partition(true);
  WriteFile(tmp_.Sub("partitioned"), "");
  EXPECT_EQ(coordinator.Wait(180), 8) << ReadFile(err);
  json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  EXPECT_EQ(status.value("state", std::string()), "rolled_back") << status.dump();
  EXPECT_NE(ReadFile(err).find("cutover failed at final_stage"), std::string::npos) << ReadFile(err);
  EXPECT_FALSE(AppRuns("target.pid"));
  const size_t acked = ReadFile(tmp_.Sub("acked")).size();
  EXPECT_TRUE(PollUntil([&] { return ReadFile(tmp_.Sub("acked")).size() > acked; }, 10));
  ASSERT_EQ(RunCommand({"python3", app_, "stop", tmp_.Sub("source.pid")}).exit_code, 0);
  CommandResult missing = RunCommand({"python3", app_, "missing", src_ + "/app.db", tmp_.Sub("acked")});
  EXPECT_EQ(missing.exit_code, 0) << missing.Describe();
}

// The coordinator killed (SIGKILL) at seeded points of a live migration, then started again:
// while it stages, and inside the cutover (in the quiesce hook, the final stage, the check,
// the start hook, the switch). Every run ends either migrated (the target app runs with every
// transaction the source acknowledged; the source app does not run) or rolled back (the source
// app runs with all its data; the target app was never started): never both, never neither.
// FERRY_KILL_POINTS sets how many (CI: 5; the reliability profile runs more).
TEST_F(MigrateTest, CoordinatorKilledAtSeededPointsEndsMigratedOrRolledBack) {
  const char* env = std::getenv("FERRY_KILL_POINTS");
  const int kill_points = env != nullptr ? std::atoi(env) : 5;
  // The hooks take a moment, so that kills land inside them too.
  const std::string plan = WritePlan(
      "[sh, -c, \"sleep 0.2; exec python3 " + app_ + " start " + dst_ + "/app.db " + tmp_.Sub("acked-target") + " " +
          tmp_.Sub("target.pid") + "\"]",
      "[sh, -c, \"sleep 0.2; exec python3 " + app_ + " stop " + tmp_.Sub("source.pid") + "\"]");
  const char* markers[] = {"",  // as soon as it starts: inside the first stage
                           "stage 1:",          "stage 2:",           "cutover: quiescing", "cutover: final_stage",
                           "cutover: verifying", "cutover: starting_target", "cutover: switching_traffic"};
  std::mt19937_64 random(TestSeed());
  int migrated = 0, rolled_back = 0;
  std::string table;
  for (int i = 0; i < kill_points; ++i) {
    const std::string marker = markers[random() % std::size(markers)];
    const int delay_ms = static_cast<int>(random() % 400);
    const std::string state = tmp_.Sub("coordinator-" + std::to_string(i));
    const std::string err = tmp_.Sub("migrate-" + std::to_string(i) + ".err");
    SCOPED_TRACE("kill point " + std::to_string(i) + ": " + std::to_string(delay_ms) + " ms after '" + marker +
                 "' (FERRY_TEST_SEED=" + std::to_string(TestSeed()) + ")");
    {
      ChildProcess coordinator;
      ASSERT_TRUE(coordinator.Spawn({FerryBinary(), "migrate", "--state-dir", state, plan}, "/dev/null", err));
      PollUntil([&] { return ReadFile(err).find(marker) != std::string::npos || !coordinator.running(); }, 60);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      coordinator.Signal(SIGKILL);
      coordinator.Wait(10);
    }
    const std::string killed_at = [&] {
      json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
      return status.is_object() ? status.value("state", std::string("none")) : std::string("?");
    }();
    // Started again, it finishes: forward, or back.
    CommandResult again = RunFerry({"migrate", "--state-dir", state, plan}, 180);
    json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
    ASSERT_TRUE(status.is_object());
    const std::string end = status.value("state", std::string());
    table += "  " + std::to_string(delay_ms) + " ms after '" + marker + "': killed at " + killed_at + ", ended " + end + "\n";
    if (end == "migrated") {
      ++migrated;
      EXPECT_EQ(again.exit_code, 0) << again.Describe();
      ASSERT_TRUE(PollUntil([&] { return AppRuns("target.pid"); }, 10)) << "migrated, but the target app does not run";
      EXPECT_FALSE(AppRuns("source.pid")) << "migrated, and the source app runs too";
      ASSERT_EQ(RunCommand({"python3", app_, "stop", tmp_.Sub("target.pid")}).exit_code, 0);
      CommandResult missing = RunCommand({"python3", app_, "missing", dst_ + "/app.db", tmp_.Sub("acked")});
      EXPECT_EQ(missing.exit_code, 0) << missing.Describe();
      // The next kill point starts from the source app running again.
      ASSERT_EQ(RunCommand({"python3", app_, "start", src_ + "/app.db", tmp_.Sub("acked"), tmp_.Sub("source.pid")}).exit_code, 0);
    } else {
      ASSERT_EQ(end, "rolled_back") << again.Describe() << "\n" << status.dump();
      ++rolled_back;
      EXPECT_EQ(again.exit_code, 8) << again.Describe();
      EXPECT_FALSE(AppRuns("target.pid")) << "rolled back, and the target app runs";
      const size_t acked = ReadFile(tmp_.Sub("acked")).size();
      EXPECT_TRUE(PollUntil([&] { return ReadFile(tmp_.Sub("acked")).size() > acked; }, 10))
          << "rolled back, but the source app does not run";
    }
    ::unlink(tmp_.Sub("target.pid").c_str());
  }
  std::printf("coordinator kill points: %d, migrated %d, rolled back %d\n%s", kill_points, migrated, rolled_back,
              table.c_str());
  EXPECT_EQ(migrated + rolled_back, kill_points);
  // Every acknowledged transaction of the source is still in the source database.
  ASSERT_EQ(RunCommand({"python3", app_, "stop", tmp_.Sub("source.pid")}).exit_code, 0);
  CommandResult missing = RunCommand({"python3", app_, "missing", src_ + "/app.db", tmp_.Sub("acked")});
  EXPECT_EQ(missing.exit_code, 0) << missing.Describe();
}


// A free TCP port on 127.0.0.1 (bound and released: the database takes it a moment later).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

// A real PostgreSQL 15 migrated under load (tests/apps/postgres_app.py): pgbench and a writer of
// acknowledged inserts on the source, two ferry daemons on loopback, the plan's hooks pg_ctl
// stop and start without estimates (a user does not know how long their database takes).
class PostgresMigrateTest : public TwoDaemons {
 protected:
  void SetUp() override {
    if (::access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0) GTEST_SKIP() << "no PostgreSQL 15 on this machine";
    app_ = std::string(FERRY_SOURCE_DIR) + "/tests/apps/postgres_app.py";
    ::chmod(tmp_.path().c_str(), 0755);  // the postgres user reaches the data directories
    StartDaemons("pg", "pg", {"--kubelet-root", ""}, {"--kubelet-root", ""});
    source_port_ = std::to_string(FreePort());
    target_port_ = std::to_string(FreePort());
    for (const char* dir : {"sock-src", "sock-dst"}) MakeDirs(tmp_.Sub(dir));
    ::chmod(src_.c_str(), 0700);
    Run({"python3", app_, "init", src_});
    Run({"python3", app_, "start", src_, source_port_, tmp_.Sub("sock-src"), tmp_.Sub("source.log")});
    Run({"python3", app_, "prepare", source_port_, tmp_.Sub("sock-src"), std::getenv("FERRY_PG_SCALE") ? std::getenv("FERRY_PG_SCALE") : "2"});
    StartLoad();
  }

  void TearDown() override {
    if (app_.empty()) return;
    StopLoad();
    for (const std::string& dir : {src_, dst_}) RunCommand({"python3", app_, "stop", dir});
  }

  void Run(const std::vector<std::string>& argv, double timeout_s = 120) {
    CommandResult r = RunCommand(argv, timeout_s);
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
  }

  // pgbench and the acknowledged-insert writer on the source.
  void StartLoad() {
    Run({"python3", app_, "writer", source_port_, tmp_.Sub("sock-src"), tmp_.Sub("acked"), tmp_.Sub("writer.pid")});
    Run({"python3", app_, "pgbench", source_port_, tmp_.Sub("sock-src"), tmp_.Sub("pgbench.pid")});
  }
  void StopLoad() {
    for (const char* pid : {"writer.pid", "pgbench.pid"}) RunCommand({"python3", app_, "kill", tmp_.Sub(pid)});
  }

  std::string Hook(const std::string& command, const std::string& args, const std::string& extra = "") {
    return "{run: [python3, " + app_ + ", " + command + ", " + args + "], timeout: 120s" + extra + "}";
  }

  std::string WritePlan(const std::string& name, bool rehearse) {
    const std::string plan = tmp_.Sub(name + ".yaml");
    const std::string start_target = dst_ + ", " + target_port_ + ", " + tmp_.Sub("sock-dst") + ", " + tmp_.Sub("target.log");
    std::string text = "name: shop-pg\nsource: ferry://127.0.0.1:" + std::to_string(source_.port()) +
                       "\ntarget: ferry://127.0.0.1:" + std::to_string(target_.port()) +
                       "\nauth: {insecure: true}\npairs:\n  - {source: pg, target: pg}\n"
                       // What pg_basebackup leaves out too: the lock file names a process of the source.
                       "exclude: [postmaster.pid, postmaster.opts]\n"
                       "policy: {max_downtime: 15s, min_stages: 2, max_stages: 10" +
                       std::string(rehearse ? ", rehearse: true" : "") + "}\nhooks:\n" +
                       "  quiesce_source: " + Hook("stop", src_) + "\n" +
                       "  start_target: " + Hook("start", start_target) + "\n" +
                       "  resume_source: " + Hook("start", src_ + ", " + source_port_ + ", " + tmp_.Sub("sock-src") + ", " + tmp_.Sub("source.log")) + "\n";
    if (rehearse) {
      text += "  prepare_source: " + Hook("checkpoint", source_port_ + ", " + tmp_.Sub("sock-src")) + "\n" +
              "  check_target: " + Hook("check", target_port_ + ", " + tmp_.Sub("sock-dst")) + "\n" +
              "  stop_target: " + Hook("stop", dst_) + "\n";
    }
    WriteFile(plan, text);
    return plan;
  }

  std::string app_, source_port_, target_port_;
};

TEST_F(PostgresMigrateTest, RefusedOnALowerBoundThenRehearsedAndMigratedWithEveryAcknowledgedRow) {
  const std::string state = tmp_.Sub("coordinator");
  // No estimates, never run: the prediction is a lower bound and no cutover starts on it.
  const std::string guess = WritePlan("guess", false);
  CommandResult refused = RunFerry({"migrate", "--state-dir", state, guess}, 180);
  EXPECT_EQ(refused.exit_code, 8) << refused.Describe();
  EXPECT_NE(refused.err.find("a lower bound"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("not measured: quiesce_source, start_target"), std::string::npos) << refused.err;
  CommandResult status_text = RunFerry({"status", "--state-dir", state, guess});
  EXPECT_NE(status_text.out.find("\u2265 "), std::string::npos) << status_text.out;

  // The rehearsal: the target copy starts, answers, stops; the stage after it restores the target
  // exactly (compared with the source's load paused, so that the source holds still).
  const std::string plan = WritePlan("plan", true);
  StopLoad();
  Run({"python3", app_, "checkpoint", source_port_, tmp_.Sub("sock-src")});
  CommandResult rehearse = RunFerry({"rehearse", "--state-dir", state, plan}, 180);
  ASSERT_EQ(rehearse.exit_code, 0) << rehearse.Describe();
  EXPECT_NE(rehearse.err.find("rehearsed the cutover on the target copy"), std::string::npos) << rehearse.err;
  EXPECT_NE(rehearse.err.find("the target equals the source again"), std::string::npos) << rehearse.err;
  {
    // The plan's exclude: the source's own. The source database still runs: idle, it may still
    // write (the background writer logs a snapshot to the WAL every 15 s), and what it wrote
    // after the restore stage began may be newer than that stage's copy. Any other difference is
    // a file the stage left wrong.
    json stages = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out)["stages"];
    int64_t restore_ms = -1;
    for (const json& st : stages) {
      if (st["kind"] == "restore") restore_ms = st["started_unix_ms"].get<int64_t>();
    }
    ASSERT_GE(restore_ms, 0) << stages.dump();
    std::istringstream diff(RsyncDiff(src_, dst_, {"postmaster.pid", "postmaster.opts"}));
    std::string line, wrong;
    while (std::getline(diff, line)) {
      struct stat st;
      const std::string path = line.size() > 12 ? line.substr(12) : "";
      const bool newer = !path.empty() && ::lstat((src_ + "/" + path).c_str(), &st) == 0 &&
                         st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000 >= restore_ms;
      if (newer) {
        std::printf("written by the idle source after the restore stage began: %s\n", line.c_str());
      } else {
        wrong += line + "\n";
      }
    }
    EXPECT_EQ(wrong, "");
  }
  CommandResult target_down = RunCommand({"python3", app_, "check", target_port_, tmp_.Sub("sock-dst")}, 10);
  EXPECT_NE(target_down.exit_code, 0) << "the rehearsed target database still runs";

  // Under load again: stages, the prediction from the rehearsal's times, the cutover.
  StartLoad();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  CommandResult migrate = RunFerry({"migrate", "--state-dir", state, plan}, 240);
  ASSERT_EQ(migrate.exit_code, 0) << migrate.Describe();
  json status = ParseJson(RunFerry({"status", "--json", "--state-dir", state, plan}).out);
  ASSERT_EQ(status["state"], "migrated") << status.dump();
  const double predicted = status["cutover_predicted_downtime_s"].get<double>();
  const double actual = status["actual_downtime_s"].get<double>();
  std::printf("postgres: predicted downtime %.2f s, actual %.2f s\n%s\n", predicted, actual,
              RunFerry({"status", "--state-dir", state, plan}).out.c_str());
  // The hooks inside the downtime are predicted from the rehearsal's second round, exactly: the
  // quiesce from its stop_target, the start from its start_target and check_target. How long the
  // app then takes to stop and start is the app's and the machine's (on a loaded CI machine the
  // source's pg_ctl stop took 1.19 s against the rehearsal's 0.54 s): the accuracy of the whole
  // prediction is measured by ./run bench-pg, not asserted here.
  const json& split = status["cutover_predicted_split"];
  const json& actual_split = status["actual_split"];
  ASSERT_TRUE(split.is_array() && split.size() == 5) << status.dump();
  ASSERT_TRUE(actual_split.is_array() && actual_split.size() == 5) << status.dump();
  double start_s = 0, check_s = 0, stop_s = 0;
  const size_t round2 = rehearse.err.find("round 2: ");
  ASSERT_NE(round2, std::string::npos) << rehearse.err;
  ASSERT_EQ(std::sscanf(rehearse.err.c_str() + round2, "round 2: start_target %lf s, check_target %lf s, stop_target %lf s",
                        &start_s, &check_s, &stop_s), 3) << rehearse.err;
  EXPECT_EQ(split[0]["step"], "quiesce");
  EXPECT_NEAR(split[0]["seconds"].get<double>(), stop_s, 0.006) << status.dump();
  EXPECT_EQ(split[3]["step"], "start");
  EXPECT_NEAR(split[3]["seconds"].get<double>(), start_s + check_s, 0.011) << status.dump();
  for (size_t step : {0u, 3u}) EXPECT_GT(split[step]["seconds"].get<double>(), 0) << status.dump();
  // What ferry itself predicts, the final stage and the verify, within 30 % of what they took (or
  // half a second, what a loaded 2-core machine swings by at this size: beside another test
  // shard's writes, the final stage and verify took 0.34 and 0.58 s in two CI runs and 0.45 s
  // in a local ctest, where 0.08 to 0.14 s was predicted; 0.04 to 0.07 s alone). A prediction
  // from a full walk's cost, or one that left the final stage out, is off by more.
  const double predicted_data = split[1]["seconds"].get<double>() + split[2]["seconds"].get<double>();
  const double actual_data = actual_split[1]["seconds"].get<double>() + actual_split[2]["seconds"].get<double>();
  EXPECT_LE(std::abs(predicted_data - actual_data), std::max(0.3 * actual_data, 0.5)) << status.dump();
  // And the whole: the prediction is the sum of its parts.
  double sum = 0;
  for (const json& part : split) sum += part["seconds"].get<double>();
  EXPECT_NEAR(predicted, sum, 0.01) << status.dump();

  // The target database answers with every acknowledged row, and its heap and indexes are sound.
  Run({"python3", app_, "check", target_port_, tmp_.Sub("sock-dst")});
  Run({"python3", app_, "missing", target_port_, tmp_.Sub("sock-dst"), tmp_.Sub("acked")});
  Run({"python3", app_, "amcheck", target_port_, tmp_.Sub("sock-dst")}, 180);
  CommandResult source_down = RunCommand({"python3", app_, "check", source_port_, tmp_.Sub("sock-src")}, 10);
  EXPECT_NE(source_down.exit_code, 0) << "the source database runs after the cutover";
}

}  // namespace
}  // namespace ferry_test
