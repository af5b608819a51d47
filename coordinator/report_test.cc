// `ferry report`'s page from a journal written here (stages, a verify probe, a final stage and
// its check, the cutover's transitions and a hook's time): what the page says, and that a
// journal that cannot be read or a file that cannot be written is an error, not a page.
#include "coordinator/report.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "coordinator/journal.h"

namespace ferry {
namespace {

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/ferry-report.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    plan_.path = dir_ + "/plan.yaml";
    plan_.name = "shop-db";
    plan_.pairs.push_back({"pgdata", "pgdata", "ferry://a:1", "ferry://b:1", 3, "", {}, {}});
    plan_.policy.max_downtime_s = 30;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  void Record(Journal& j, uint32_t stage, const std::string& kind, double seconds, uint64_t bytes) {
    PairStage s;
    s.stage = stage;
    s.pair = plan_.pairs[0].Name();
    s.kind = kind;
    s.state = "committed";
    s.started_unix_ms = 1'700'000'000'000 + stage * 60'000;
    s.seconds = seconds;
    s.bytes_changed = bytes;
    s.wire_bytes = bytes / 2;
    ASSERT_TRUE(j.Record(s).ok());
  }
  std::string Page(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  std::string dir_;
  Plan plan_;
};

TEST_F(ReportTest, ThePageShowsTheStagesThePredictionAndTheCutover) {
  {
    Result<std::unique_ptr<Journal>> j = Journal::Open(dir_ + "/state", plan_.name);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    ASSERT_TRUE((*j)->Transition("staging", "").ok());
    Record(**j, 1, "stage", 10.0, 100u << 20);
    Record(**j, 2, "stage", 1.0, 2u << 20);
    Record(**j, 3, "probe", 0.5, 0);
    ASSERT_TRUE((*j)->Transition("quiescing", "predicted_downtime_s=1.250").ok());
    Result<int64_t> run = (*j)->HookStarted("quiesce_source", 0);
    ASSERT_TRUE(run.ok());
    ASSERT_TRUE((*j)->HookEnded(*run, 0.75, true).ok());
    Record(**j, 4, "final", 0.4, 1u << 20);
    Record(**j, 5, "check", 0.3, 0);
    Result<int64_t> dns = (*j)->DnsSwitchStarted(
        {0, 0, "10.0.0.53:53", "example.com", "shop.example.com", "A", "10.1.0.7", {300, {"10.0.0.5"}}, {}, {}, ""});
    ASSERT_TRUE(dns.ok());
    ASSERT_TRUE((*j)->DnsSwitchEnded(*dns, Journal::DnsRecord{30, {"10.1.0.7"}}, true, "").ok());
    ASSERT_TRUE((*j)->Transition("migrated", Journal::DowntimeDetail({1.25, 1.5})).ok());
  }
  const std::string html = dir_ + "/report.html";
  Result<std::string> written = WritePlanReport(plan_, dir_ + "/state", html);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(*written, "wrote " + html + " (5 stages, state migrated)");
  const std::string page = Page(html);
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find("<title>ferry: shop-db</title>"), std::string::npos);
  EXPECT_NE(page.find("State: <b>migrated</b>"), std::string::npos);
  EXPECT_NE(page.find("Cutover: predicted downtime <b>1.25 s</b>, actual <b>1.50 s</b>."), std::string::npos);
  // The chart: a bar a stage (five), the cutover's predicted circle and actual square.
  size_t bars = 0;
  for (size_t at = page.find("<title>stage "); at != std::string::npos; at = page.find("<title>stage ", at + 1)) ++bars;
  EXPECT_EQ(bars, 5u);
  EXPECT_NE(page.find("<title>predicted downtime 1.25 s</title>"), std::string::npos);
  EXPECT_NE(page.find("<title>actual downtime 1.50 s</title>"), std::string::npos);
  EXPECT_NE(page.find("</svg>"), std::string::npos);
  // The stage table: one row a pair's stage, the prediction after the second stage.
  EXPECT_NE(page.find("<td>1</td><td class=\"l\">stage</td><td class=\"l\">pgdata -&gt; pgdata</td>"),
            std::string::npos);
  EXPECT_NE(page.find("<td class=\"l\">final</td>"), std::string::npos);
  EXPECT_NE(page.find("100.0 MiB"), std::string::npos);
  // The journal's transitions and the hook's measured time.
  EXPECT_NE(page.find("<td class=\"l\">quiescing</td><td class=\"l\">predicted_downtime_s=1.250</td>"),
            std::string::npos);
  EXPECT_NE(page.find("<td class=\"l\">quiesce_source</td><td>0.75</td>"), std::string::npos);
  // The DNS switch: the record before and after.
  EXPECT_NE(page.find("<td class=\"l\">shop.example.com A</td><td class=\"l\">10.0.0.53:53</td><td "
                      "class=\"l\">10.0.0.5 (ttl 300)</td><td class=\"l\">10.1.0.7 (ttl 30)</td>"),
            std::string::npos)
      << page;
  EXPECT_NE(page.rfind("</body></html>\n"), std::string::npos);
  if (const char* keep = std::getenv("FERRY_REPORT_TEST_KEEP")) std::ofstream(keep) << page;
}

// A prediction that leaves out a hook never measured is drawn and written as a lower bound; a
// cutover's downtime by step shows what was predicted at its quiesce beside what each step took.
TEST_F(ReportTest, ALowerBoundIsDrawnAsOneAndTheDowntimeIsSplitByStep) {
  plan_.hooks["quiesce_source"];  // no estimate, never run
  {
    Result<std::unique_ptr<Journal>> j = Journal::Open(dir_ + "/state", plan_.name);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    Record(**j, 1, "stage", 10.0, 100u << 20);
    Record(**j, 2, "stage", 1.0, 2u << 20);
  }
  const std::string html = dir_ + "/report.html";
  ASSERT_TRUE(WritePlanReport(plan_, dir_ + "/state", html).ok());
  std::string page = Page(html);
  EXPECT_NE(page.find("predicted downtime <b>\u2265 "), std::string::npos);
  EXPECT_NE(page.find("a lower bound: not measured quiesce_source"), std::string::npos);
  EXPECT_NE(page.find("<polygon"), std::string::npos);
  EXPECT_NE(page.find("(hooks not measured)</title></polygon>"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"l\">quiesce</td><td>\u2265 0.00 s</td><td class=\"l\">not measured: quiesce_source</td>"),
            std::string::npos);
  {
    Result<std::unique_ptr<Journal>> j = Journal::Open(dir_ + "/state", plan_.name);
    ASSERT_TRUE(j.ok());
    ASSERT_TRUE((*j)->Transition("quiescing", "predicted_downtime_s=1.000 quiesce=0.100 final_stage=0.200 verify=0.300 "
                                              "start=0.400 switch=0.000").ok());
    ASSERT_TRUE((*j)->Transition("final_stage", "").ok());
    ASSERT_TRUE((*j)->Transition("starting_target", "").ok());
    ASSERT_TRUE((*j)->Transition("switching_traffic", "").ok());
    ASSERT_TRUE((*j)->Transition("migrated", Journal::DowntimeDetail({1.0, 0.0})).ok());
  }
  ASSERT_TRUE(WritePlanReport(plan_, dir_ + "/state", html).ok());
  page = Page(html);
  EXPECT_NE(page.find("<th>predicted at the cutover</th><th>actual</th>"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"l\">start</td>"), std::string::npos);
  EXPECT_NE(page.find("<td>0.40 s</td><td>0.00 s</td></tr>"), std::string::npos) << page;  // start: predicted, actual
}

TEST_F(ReportTest, AFileThatCannotBeWrittenIsAnErrorAndNoPage) {
  Result<std::unique_ptr<Journal>> j = Journal::Open(dir_ + "/state", plan_.name);
  ASSERT_TRUE(j.ok());
  Result<std::string> written = WritePlanReport(plan_, dir_ + "/state", dir_ + "/no/such/dir/report.html");
  ASSERT_FALSE(written.ok());
  EXPECT_NE(written.status().ToString().find("cannot write " + dir_ + "/no/such/dir/report.html.tmp"),
            std::string::npos)
      << written.status().ToString();
}

}  // namespace
}  // namespace ferry
