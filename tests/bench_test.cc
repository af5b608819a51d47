// `ferry bench` against a real daemon on loopback: every row measured (never how fast: tests do
// not assert speeds), the --json fields, the volume left exactly as it was, the volume rows
// skipped without a volume, an unknown volume refused in one line, and the daemon still serving
// a normal sync afterwards. Sizes are small so the whole file runs in seconds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

// The number after "field": inside the object "object":{...} of a flat one-line JSON report;
// -1 when either is missing.
double JsonNumberIn(const std::string& json, const std::string& object, const std::string& field) {
  size_t start = json.find("\"" + object + "\":{");
  if (start == std::string::npos) return -1;
  size_t end = json.find('}', start);
  size_t at = json.find("\"" + field + "\":", start);
  if (at == std::string::npos || at > end) return -1;
  return std::strtod(json.c_str() + at + field.size() + 3, nullptr);
}

bool JsonMeasured(const std::string& json, const std::string& object) {
  return json.find("\"" + object + "\":{\"measured\":true") != std::string::npos;
}

class BenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vol_ = tmp_.Sub("vol");
    src_ = tmp_.Sub("src");
    MakeDirs(vol_ + "/keep/deeper");
    WriteFile(vol_ + "/keep/a.txt", "already here\n");
    WriteRandomFile(vol_ + "/keep/deeper/b.bin", 300000, 7);
    MakeDirs(src_ + "/d");
    WriteRandomFile(src_ + "/d/one.bin", 2 << 20, 1);
    WriteRandomFile(src_ + "/two.bin", 100000, 2);
    ASSERT_EQ(daemon_.Start(DaemonConfigIn(tmp_.path(), {{"vol", vol_}})), "");
  }
  // Everything under the volume root: path, type, size, mode, mtime.
  std::string Listing() {
    CommandResult r = RunCommand({"find", vol_, "-mindepth", "1", "-printf", "%P %y %s %m %T@\\n"});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    std::vector<std::string> lines;
    for (size_t pos = 0, nl; (nl = r.out.find('\n', pos)) != std::string::npos; pos = nl + 1) {
      lines.push_back(r.out.substr(pos, nl - pos));
    }
    std::sort(lines.begin(), lines.end());
    std::string out;
    for (const std::string& line : lines) out += line + "\n";
    return out;
  }
  std::string Where(const std::string& volume) const {
    return "127.0.0.1:" + std::to_string(daemon_.port()) + (volume.empty() ? "" : "/" + volume);
  }
  CommandResult Bench(std::vector<std::string> extra) {
    std::vector<std::string> args = {"bench", "--insecure", "--bytes", "32M", "--seconds", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunFerry(args, 120);
  }

  TempDir tmp_;
  std::string vol_, src_;
  DaemonProcess daemon_;
};

TEST_F(BenchTest, JsonHasEveryRowAndTheVolumeIsLeftAsItWas) {
  const std::string before = Listing();
  CommandResult r = Bench({"--json", "--source", src_, "ferry://" + Where("vol")});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  for (const char* row : {"network_up", "network_down", "source_read", "target_write", "sync"}) {
    EXPECT_TRUE(JsonMeasured(r.out, row)) << row << ": " << r.out;
    EXPECT_GT(JsonNumberIn(r.out, row, "bytes"), 0) << row << ": " << r.out;
    EXPECT_GT(JsonNumberIn(r.out, row, "seconds"), 0) << row << ": " << r.out;
    EXPECT_GT(JsonNumberIn(r.out, row, "bytes_per_s"), 0) << row << ": " << r.out;
    EXPECT_GE(JsonNumberIn(r.out, row, "gbit_per_s"), 0) << row << ": " << r.out;
    EXPECT_GE(JsonNumberIn(r.out, row, "mb_per_s"), 0) << row << ": " << r.out;
  }
  EXPECT_EQ(JsonNumberIn(r.out, "source_read", "bytes"), (2 << 20) + 100000) << r.out;
  EXPECT_EQ(JsonNumberIn(r.out, "target_write", "bytes"), 32 << 20) << r.out;
  EXPECT_EQ(JsonNumberIn(r.out, "sync", "bytes"), 8 << 20) << r.out;
  EXPECT_GT(JsonNumberIn(r.out, "sync", "files"), 100) << r.out;
  EXPECT_GT(JsonNumberIn(r.out, "sync", "files_per_s"), 0) << r.out;
  EXPECT_NE(r.out.find("\"volume\":\"vol\""), std::string::npos) << r.out;
  EXPECT_EQ(Listing(), before) << "the bench left something in the volume";
  EXPECT_TRUE(daemon_.alive());
}

TEST_F(BenchTest, TableHasEveryRowAndTheDaemonStillSyncs) {
  const std::string before = Listing();
  CommandResult r = Bench({"--source", src_, "ferry://" + Where("vol")});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  for (const char* row : {"network  client -> daemon", "network  daemon -> client",
                          "source   read ", "target   write vol", "sync     end to end"}) {
    size_t at = r.out.find(row);
    ASSERT_NE(at, std::string::npos) << row << " missing:\n" << r.out;
    std::string line = r.out.substr(at, r.out.find('\n', at) - at);
    EXPECT_EQ(line.find(" - ("), std::string::npos) << "skipped: " << line;
    EXPECT_NE(line.find("B/s"), std::string::npos) << line;
  }
  EXPECT_NE(r.out.find("fdatasync included"), std::string::npos) << r.out;
  EXPECT_EQ(Listing(), before);
  CommandResult sync =
      RunFerry({"sync", "--insecure", "--no-progress", src_, daemon_.Url("vol/copy")});
  ASSERT_EQ(sync.exit_code, 0) << sync.Describe();
  EXPECT_EQ(RsyncDiff(src_ + "/", vol_ + "/copy/"), "");
}

TEST_F(BenchTest, WithoutVolumeSkipsTheVolumeRows) {
  CommandResult r = Bench({Where("")});  // no scheme, no volume, no --source
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("network  client -> daemon"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no --source given"), std::string::npos) << r.out;
  size_t first = r.out.find("- (no volume given)"), second = r.out.rfind("- (no volume given)");
  EXPECT_NE(first, std::string::npos) << r.out;
  EXPECT_NE(first, second) << "both volume rows skipped:\n" << r.out;
  CommandResult json = Bench({"--json", "ferry://" + Where("")});
  ASSERT_EQ(json.exit_code, 0) << json.Describe();
  EXPECT_TRUE(JsonMeasured(json.out, "network_up")) << json.out;
  EXPECT_NE(json.out.find("\"target_write\":{\"measured\":false,\"note\":\"no volume given\"}"),
            std::string::npos)
      << json.out;
  EXPECT_NE(json.out.find("\"sync\":{\"measured\":false"), std::string::npos) << json.out;
}

TEST_F(BenchTest, UnknownVolumeFailsInOneLineAndTheDaemonStillSyncs) {
  CommandResult r = Bench({"ferry://" + Where("nope")});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("'nope'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("vol"), std::string::npos) << "names the volumes served: " << r.err;
  const std::string errors = ErrorsOnly(r.err);
  EXPECT_EQ(std::count(errors.begin(), errors.end(), '\n'), 1) << r.err;
  CommandResult sync = RunFerry({"sync", "--insecure", "--no-progress", src_, daemon_.Url("vol")});
  ASSERT_EQ(sync.exit_code, 0) << sync.Describe();
  EXPECT_EQ(RsyncDiff(src_ + "/", vol_ + "/"), "");
}

}  // namespace
}  // namespace ferry_test
