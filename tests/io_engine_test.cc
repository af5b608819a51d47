// Integration tests of the I/O engine choice as users see it: `ferry sync --json` reports the
// engine FERRY_IO asked for (ctest runs this binary twice, once with FERRY_IO=posix, so the posix
// run is proven to use posix), `--io` wins over FERRY_IO, bad values are one-line usage errors,
// and `ferry daemon` names its engine at start-up.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "tests/process_fixture.h"
#include "tests/tree_fixture.h"

namespace ferry_test {
namespace {

// Sets (or unsets, for nullptr) FERRY_IO for the scope; the ferry processes inherit it.
class ScopedFerryIo {
 public:
  explicit ScopedFerryIo(const char* value) {
    if (const char* old = std::getenv("FERRY_IO")) saved_ = old;
    if (value != nullptr)
      ::setenv("FERRY_IO", value, 1);
    else
      ::unsetenv("FERRY_IO");
  }
  ~ScopedFerryIo() {
    if (saved_)
      ::setenv("FERRY_IO", saved_->c_str(), 1);
    else
      ::unsetenv("FERRY_IO");
  }
  ScopedFerryIo(const ScopedFerryIo&) = delete;
  ScopedFerryIo& operator=(const ScopedFerryIo&) = delete;

 private:
  std::optional<std::string> saved_;
};

class IoEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = tmp_.Sub("src");
    MakeDirs(src_);
    WriteFile(src_ + "/a", std::string(300'000, 'a'));
    WriteFile(src_ + "/b", "b");
  }

  // A local `ferry sync --json` into a fresh target; the result, parsed when it succeeded.
  CommandResult Sync(const std::vector<std::string>& extra, SyncReport* report = nullptr) {
    std::vector<std::string> args = {"sync",
                                     "--json",
                                     "--no-progress",
                                     "--state-dir",
                                     "",
                                     src_,
                                     tmp_.Sub("dst" + std::to_string(syncs_++))};
    args.insert(args.begin() + 1, extra.begin(), extra.end());
    CommandResult result = RunFerry(args);
    if (report != nullptr && result.exit_code == 0) {
      *report = ParseSyncJson(result.out);
      EXPECT_TRUE(report->parsed) << report->parse_error;
    }
    return result;
  }

  // The engine `ferry sync --json` reports with `extra` flags; "" when io_uring was forced and
  // is unavailable here (the caller skips).
  std::string EngineReported(const std::vector<std::string>& extra) {
    SyncReport report;
    CommandResult result = Sync(extra, &report);
    if (result.exit_code == 1 && result.err.find("io_uring unavailable") != std::string::npos)
      return "";
    EXPECT_EQ(result.exit_code, 0) << result.Describe();
    return report.io_engine;
  }

  TempDir tmp_;
  std::string src_;
  int syncs_ = 0;
};

// What FERRY_IO in this process's environment (set by the ctest registration) must produce.
std::string ExpectedFromEnvironment() {
  const char* env = std::getenv("FERRY_IO");
  if (env == nullptr || std::string(env).empty() || std::string(env) == "auto") return "";
  return std::string(env) == "uring" ? "io_uring" : env;
}

TEST_F(IoEngineTest, JsonReportsTheEngineFerryIoAskedFor) {
  SyncReport report;
  CommandResult result = Sync({}, &report);
  ASSERT_EQ(result.exit_code, 0) << result.Describe();
  const std::string expected = ExpectedFromEnvironment();
  if (expected.empty()) {
    EXPECT_TRUE(report.io_engine == "io_uring" || report.io_engine == "posix") << report.io_engine;
  } else {
    EXPECT_EQ(report.io_engine, expected) << "FERRY_IO=" << std::getenv("FERRY_IO");
  }
}

TEST_F(IoEngineTest, FerryIoChoosesTheEngine) {
  {
    ScopedFerryIo env("posix");
    EXPECT_EQ(EngineReported({}), "posix");
  }
  ScopedFerryIo env("uring");
  std::string engine = EngineReported({});
  if (engine.empty()) GTEST_SKIP() << "io_uring unavailable on this machine";
  EXPECT_EQ(engine, "io_uring");
}

TEST_F(IoEngineTest, IoFlagOverridesFerryIo) {
  {
    ScopedFerryIo env("uring");
    EXPECT_EQ(EngineReported({"--io", "posix"}), "posix");
  }
  ScopedFerryIo env("posix");
  std::string engine = EngineReported({"--io=uring"});
  if (engine.empty()) GTEST_SKIP() << "io_uring unavailable on this machine";
  EXPECT_EQ(engine, "io_uring");
}

TEST_F(IoEngineTest, BadValuesAreOneLineUsageErrors) {
  CommandResult flag = Sync({"--io", "fast"});
  EXPECT_EQ(flag.exit_code, 1) << flag.Describe();
  EXPECT_EQ(flag.err, "ferry sync: --io: unknown I/O engine 'fast': choose auto, uring or posix\n");
  ScopedFerryIo env("fast");
  CommandResult environment = Sync({});
  EXPECT_EQ(environment.exit_code, 1) << environment.Describe();
  EXPECT_EQ(environment.err,
            "ferry sync: FERRY_IO: unknown I/O engine 'fast': choose auto, uring or posix\n");
  CommandResult daemon = RunFerry({"daemon", "--io", "fast", "--volume", "v=" + src_});
  EXPECT_EQ(daemon.exit_code, 1) << daemon.Describe();
  EXPECT_EQ(daemon.err,
            "ferry daemon: --io: unknown I/O engine 'fast': choose auto, uring or posix\n");
}

TEST_F(IoEngineTest, DaemonNamesItsEngineAtStartUp) {
  ScopedFerryIo env("posix");
  DaemonProcess daemon;
  ASSERT_EQ(daemon.Start(DaemonConfigIn(tmp_.path(), {{"vol", src_}})), "");
  EXPECT_NE(daemon.Log().find("; I/O engine posix"), std::string::npos) << daemon.Log();
  EXPECT_EQ(daemon.Stop(), 0) << daemon.Log();
}

}  // namespace
}  // namespace ferry_test
