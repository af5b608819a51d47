#include "coordinator/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>

#include "base/units.h"
#include "coordinator/coordinator.h"
#include "coordinator/journal.h"
#include "coordinator/prediction.h"
#include "coordinator/stages.h"

namespace ferry {

namespace {

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Format(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, value);
  return buf;
}

std::string LocalTime(int64_t unix_ms) {
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm local;
  localtime_r(&t, &local);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &local);
  return buf;
}

// Whether a stage of this kind leaves a new prediction: one while the app runs, a restore or a
// catch-up (the final stage, the check and the probe do not).
bool Predicts(const std::string& kind) { return StagesWhileRunning(kind); }

// One point of the chart: a stage number, all its pairs together.
struct Column {
  uint32_t stage = 0;
  std::string kind;
  double bytes = 0, seconds = 0;
  double predicted = -1;  // the downtime predicted after this stage (-1: not known)
  bool lower_bound = false;  // ... leaving out hooks never measured: at least `predicted`
};

// Bars of changed bytes (left axis), lines of stage seconds and predicted downtime (right
// axis), the max_downtime budget, and the cutover's predicted and actual downtime.
class Chart {
 public:
  Chart(const std::vector<Column>& columns, double max_downtime, double cutover_predicted, double actual,
        uint32_t final_stage)
      : columns_(columns), max_downtime_(max_downtime), cutover_predicted_(cutover_predicted), actual_(actual),
        final_stage_(final_stage) {
    for (const Column& c : columns) {
      max_bytes_ = std::max(max_bytes_, c.bytes);
      max_seconds_ = std::max({max_seconds_, c.seconds, c.predicted});
    }
    max_seconds_ = std::max({max_seconds_, actual, cutover_predicted}) * 1.1;
    if (max_seconds_ <= 0) max_seconds_ = 1;
    step_ = kPlotW / static_cast<double>(std::max<size_t>(1, columns.size()));
  }

  std::string Svg() {
    svg_ << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
         << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
    svg_ << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << kPlotW << "\" height=\""
         << kPlotH << "\" fill=\"none\" stroke=\"#999\"/>\n";
    Axes();
    Bars();
    Line([](const Column& c) { return c.seconds; }, "#3182bd", "");
    Line([](const Column& c) { return Predicts(c.kind) ? c.predicted : -1; }, "#756bb1", "5,3");
    LowerBounds();
    svg_ << "<line x1=\"" << kLeft << "\" x2=\"" << kLeft + kPlotW << "\" y1=\"" << YSeconds(max_downtime_)
         << "\" y2=\"" << YSeconds(max_downtime_) << "\" stroke=\"#de2d26\" stroke-dasharray=\"2,2\"/>\n";
    Cutover();
    Legend();
    svg_ << "<text x=\"" << kLeft + kPlotW / 2 << "\" y=\"" << kHeight - 6
         << "\" text-anchor=\"middle\">stage</text>\n";
    svg_ << "</svg>\n";
    return svg_.str();
  }

 private:
  static constexpr double kWidth = 760, kHeight = 320, kLeft = 80, kRight = 70, kTop = 40, kBottom = 40;
  static constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;

  double X(size_t i) const { return kLeft + step_ * (static_cast<double>(i) + 0.5); }
  double YBytes(double b) const { return kTop + kPlotH * (1 - b / max_bytes_); }
  double YSeconds(double s) const { return kTop + kPlotH * (1 - s / max_seconds_); }

  void Axes() {
    for (int t = 0; t <= 4; ++t) {
      const double f = t / 4.0;
      const double y = kTop + kPlotH * (1 - f);
      svg_ << "<line x1=\"" << kLeft << "\" x2=\"" << kLeft + kPlotW << "\" y1=\"" << y << "\" y2=\"" << y
           << "\" stroke=\"#eee\"/>\n";
      svg_ << "<text x=\"" << kLeft - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">"
           << HumanBytes(max_bytes_ * f) << "</text>\n";
      svg_ << "<text x=\"" << kLeft + kPlotW + 6 << "\" y=\"" << y + 4 << "\">" << Format("%.2f s", max_seconds_ * f)
           << "</text>\n";
    }
  }

  // A prediction that is a lower bound: a triangle pointing up from its point (the downtime is at
  // least this).
  void LowerBounds() {
    for (size_t i = 0; i < columns_.size(); ++i) {
      const Column& c = columns_[i];
      if (!Predicts(c.kind) || c.predicted < 0 || !c.lower_bound) continue;
      const double x = X(i), y = YSeconds(c.predicted);
      svg_ << "<polygon points=\"" << x - 5 << "," << y << " " << x + 5 << "," << y << " " << x << "," << y - 9
           << "\" fill=\"#756bb1\"><title>predicted downtime at least " << Format("%.2f s", c.predicted)
           << " (hooks not measured)</title></polygon>\n";
    }
  }

  void Bars() {
    for (size_t i = 0; i < columns_.size(); ++i) {
      const Column& c = columns_[i];
      const char* fill = c.kind == kStageKindStage     ? "#9ecae1"
                         : c.kind == kStageKindFinal   ? "#fd8d3c"
                         : c.kind == kStageKindRestore ? "#bcbddc"
                         : c.kind == kStageKindCatchUp ? "#6baed6"
                                                       : "#c7e9c0";
      svg_ << "<rect x=\"" << X(i) - step_ * 0.35 << "\" y=\"" << YBytes(c.bytes) << "\" width=\"" << step_ * 0.7
           << "\" height=\"" << kTop + kPlotH - YBytes(c.bytes) << "\" fill=\"" << fill << "\"><title>stage "
           << c.stage << " (" << c.kind << "): " << HumanBytes(c.bytes) << " changed, "
           << Format("%.2f s", c.seconds) << "</title></rect>\n";
      svg_ << "<text x=\"" << X(i) << "\" y=\"" << kTop + kPlotH + 14 << "\" text-anchor=\"middle\">" << c.stage
           << (c.kind == "stage" ? "" : " " + c.kind) << "</text>\n";
    }
  }

  // A line of `value` (seconds; < 0: no point) over the columns, with a dot at each point.
  template <typename Value>
  void Line(Value value, const char* color, const char* dash) {
    std::string points;
    for (size_t i = 0; i < columns_.size(); ++i) {
      double v = value(columns_[i]);
      if (v >= 0) points += Format("%.1f", X(i)) + "," + Format("%.1f", YSeconds(v)) + " ";
    }
    svg_ << "<polyline points=\"" << points << "\" fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\""
         << (dash[0] ? std::string(" stroke-dasharray=\"") + dash + "\"" : "") << "/>\n";
    for (size_t i = 0; i < columns_.size(); ++i) {
      double v = value(columns_[i]);
      if (v >= 0)
        svg_ << "<circle cx=\"" << X(i) << "\" cy=\"" << YSeconds(v) << "\" r=\"3\" fill=\"" << color << "\"/>\n";
    }
  }

  // The cutover's predicted (circle) and actual (square) downtime, at its final stage.
  void Cutover() {
    for (size_t i = 0; i < columns_.size(); ++i) {
      if (columns_[i].stage != final_stage_ || actual_ < 0) continue;
      svg_ << "<circle cx=\"" << X(i) << "\" cy=\"" << YSeconds(cutover_predicted_) << "\" r=\"6\" fill=\"none\" "
           << "stroke=\"#756bb1\" stroke-width=\"2\"><title>predicted downtime "
           << Format("%.2f s", cutover_predicted_) << "</title></circle>\n";
      svg_ << "<rect x=\"" << X(i) - 5 << "\" y=\"" << YSeconds(actual_) - 5 << "\" width=\"10\" height=\"10\" "
           << "fill=\"#de2d26\"><title>actual downtime " << Format("%.2f s", actual_) << "</title></rect>\n";
    }
  }

  void Legend() {
    const struct {
      const char* color;
      const char* label;
    } legend[] = {{"#9ecae1", "changed bytes (left)"},
                  {"#3182bd", "stage seconds (right)"},
                  {"#756bb1", "predicted downtime (\u25b2 at least: hooks not measured)"},
                  {"#de2d26", "max_downtime / actual downtime"}};
    double lx = kLeft;
    for (const auto& l : legend) {
      svg_ << "<rect x=\"" << lx << "\" y=\"12\" width=\"12\" height=\"12\" fill=\"" << l.color
           << "\"/><text x=\"" << lx + 16 << "\" y=\"22\">" << l.label << "</text>\n";
      lx += 24 + 5.6 * static_cast<double>(std::string(l.label).size());
    }
  }

  const std::vector<Column>& columns_;
  double max_downtime_, cutover_predicted_, actual_;
  uint32_t final_stage_;
  double max_bytes_ = 1, max_seconds_ = max_downtime_, step_ = 1;
  std::ostringstream svg_;
};

// One column per stage number; the prediction as it stood after each stage.
std::vector<Column> ColumnsOf(const std::vector<PairStage>& stages, const Plan& plan,
                              const std::map<std::string, double>& hooks, int minute) {
  std::vector<Column> columns;
  for (const PairStage& s : stages) {
    if (columns.empty() || columns.back().stage != s.stage) {
      columns.push_back({s.stage, s.kind});
      std::vector<PairStage> so_far;
      for (const PairStage& t : stages) {
        if (t.stage <= s.stage) so_far.push_back(t);
      }
      Prediction p = Predict(so_far, plan, hooks, minute);
      if (p.known) columns.back().predicted = p.predicted_downtime_s;
      columns.back().lower_bound = p.lower_bound;
    }
    columns.back().bytes += static_cast<double>(s.bytes_changed);
    columns.back().seconds = std::max(columns.back().seconds, s.seconds);
  }
  return columns;
}

// What the page shows, read from the journal once.
struct Report {
  std::vector<PairStage> stages;
  std::vector<Journal::Event> events;
  std::map<std::string, double> hooks;
  std::vector<Column> columns;
  std::string state;
  double cutover_predicted = -1, actual = -1;
  uint32_t final_stage = 0;  // the last final stage's number
  Prediction now;
  std::vector<DowntimePart> cutover_predicted_split, actual_split;  // the last cutover's
  std::vector<Journal::DnsSwitch> dns_switches;
};

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

void Head(std::ostringstream& html, const Plan& plan, const Report& r) {
  html << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ferry: " << Escape(plan.name)
       << "</"
          "title>\n<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:"
          "collapse;"
          "margin:1em 0}td,th{border:1px solid #ccc;padding:3px "
          "8px;text-align:right}td.l,th.l{text-align:left}"
          "th{background:#f4f4f4}.bad{color:#b00}</style></head><body>\n";
  html << "<h1>Migration " << Escape(plan.name) << "</h1>\n<p>Plan <code>" << Escape(plan.path)
       << "</code>, " << plan.pairs.size() << " pair(s), max_downtime "
       << Format("%.0f s", plan.policy.max_downtime_s) << ". State: <b>" << Escape(r.state)
       << "</b>.</p>\n<p>";
  if (r.actual >= 0) {
    html << "Cutover: predicted downtime <b>" << Format("%.2f s", r.cutover_predicted)
         << "</b>, actual <b>" << Format("%.2f s", r.actual) << "</b>.";
  } else if (r.now.known) {
    html << "A cutover now: predicted downtime <b>" << (r.now.lower_bound ? "\u2265 " : "")
         << Format("%.2f s", r.now.predicted_downtime_s) << "</b> (final stage " << Format("%.2f s", r.now.final_stage_s)
         << ", verify " << Format("%.2f s", r.now.verify_s) << ", hooks " << Format("%.2f s", r.now.hooks_s)
         << (r.now.lower_bound ? "; a lower bound: not measured " + Escape(Join(r.now.unmeasured_hooks)) : "") << "). "
         << (r.now.ready ? "Ready." : "Waiting for " + Escape(r.now.waiting_for) + ".");
  } else {
    html << "Not enough stages for a prediction yet.";
  }
  html << "</p>\n";
}

// The downtime by step: predicted now (and on what), and for the last cutover what it predicted
// at its quiesce beside what each step took.
void SplitTable(std::ostringstream& html, const Report& r) {
  if (!r.now.known && r.actual_split.empty()) return;
  html << "<h2>Downtime by step</h2>\n<table><tr><th class=\"l\">step</th><th>predicted now</th><th "
          "class=\"l\">from</th>"
       << (r.actual_split.empty() ? "" : "<th>predicted at the cutover</th><th>actual</th>") << "</tr>\n";
  for (size_t i = 0; i < std::size(kDowntimeSteps); ++i) {
    html << "<tr><td class=\"l\">" << kDowntimeSteps[i] << "</td>";
    if (i < r.now.split.size()) {
      const DowntimePart& d = r.now.split[i];
      html << "<td>" << (d.unmeasured.empty() ? "" : "\u2265 ") << Format("%.2f s", d.seconds) << "</td><td class=\"l\">"
           << Escape(d.basis) << (d.unmeasured.empty() ? "" : ": " + Escape(Join(d.unmeasured))) << "</td>";
    } else {
      html << "<td></td><td></td>";
    }
    if (i < r.actual_split.size()) {
      html << "<td>"
           << (i < r.cutover_predicted_split.size() ? Format("%.2f s", r.cutover_predicted_split[i].seconds) : "")
           << "</td><td>" << Format("%.2f s", r.actual_split[i].seconds) << "</td>";
    }
    html << "</tr>\n";
  }
  html << "</table>\n";
}

void StageTable(std::ostringstream& html, const Report& r) {
  html << "<h2>Stages</h2>\n<table><tr><th>stage</th><th class=\"l\">kind</th><th "
          "class=\"l\">pair</th><th class=\"l\">"
          "started</th><th>seconds</th><th>entries</th><th>files "
          "sent</th><th>changed</th><th>wire</th>"
          "<th>changed while read</th><th>predicted downtime after</th><th "
          "class=\"l\">result</th></tr>\n";
  for (const PairStage& s : r.stages) {
    double predicted = -1;
    for (const Column& c : r.columns) {
      if (c.stage == s.stage) predicted = c.predicted;
    }
    html << "<tr><td>" << s.stage << "</td><td class=\"l\">" << Escape(s.kind)
         << "</td><td class=\"l\">" << Escape(s.pair) << "</td><td class=\"l\">"
         << LocalTime(s.started_unix_ms) << "</td><td>" << Format("%.2f", s.seconds) << "</td><td>"
         << s.entries << "</td><td>" << s.files_sent << "</td><td>"
         << HumanBytes(static_cast<double>(s.bytes_changed)) << "</td><td>"
         << HumanBytes(static_cast<double>(s.wire_bytes)) << "</td><td>" << s.changed_during_read
         << "</td><td>" << (Predicts(s.kind) && predicted >= 0 ? Format("%.2f s", predicted) : "")
         << "</td><td class=\"l" << (s.state == "committed" ? "" : " bad") << "\">"
         << Escape(s.state) << (s.error.empty() ? "" : ": " + Escape(s.error)) << "</td></tr>\n";
  }
  html << "</table>\n";
}

void JournalTables(std::ostringstream& html, const Report& r) {
  html << "<h2>Journal</h2>\n<table><tr><th class=\"l\">time</th><th "
          "class=\"l\">state</th><th class=\"l\">"
          "detail</th></tr>\n";
  for (const Journal::Event& e : r.events) {
    html << "<tr><td class=\"l\">" << LocalTime(e.unix_ms) << "</td><td class=\"l\">"
         << Escape(e.state) << "</td><td class=\"l\">" << Escape(e.detail) << "</td></tr>\n";
  }
  html << "</table>\n";
  if (!r.hooks.empty()) {
    html << "<h2>Hooks (last successful run)</h2>\n<table><tr><th "
            "class=\"l\">hook</th><th>seconds</th></tr>\n";
    for (const auto& [name, seconds] : r.hooks) {
      html << "<tr><td class=\"l\">" << Escape(name) << "</td><td>" << Format("%.2f", seconds)
           << "</td></tr>\n";
    }
    html << "</table>\n";
  }
  if (!r.dns_switches.empty()) {
    html << "<h2>DNS switches</h2>\n<table><tr><th class=\"l\">started</th><th class=\"l\">record</th><th "
            "class=\"l\">server</th><th class=\"l\">before</th><th class=\"l\">after</th></tr>\n";
    for (const Journal::DnsSwitch& d : r.dns_switches) {
      const bool ok = d.ok.value_or(false);
      const std::string after = d.after ? d.after->ToString() : "";
      html << "<tr><td class=\"l\">" << LocalTime(d.started_unix_ms) << "</td><td class=\"l\">" << Escape(d.name)
           << " " << Escape(d.type) << "</td><td class=\"l\">" << Escape(d.server) << "</td><td class=\"l\">"
           << Escape(d.before.ToString()) << "</td><td class=\"l" << (ok ? "" : " bad") << "\">" << Escape(after)
           << (ok ? "" : (after.empty() ? "" : ": ") + Escape(d.ok ? d.error : "the coordinator stopped during the switch"))
           << "</td></tr>\n";
    }
    html << "</table>\n";
  }
}

Result<Report> ReadReport(const Plan& plan, const std::string& state_dir) {
  Result<std::unique_ptr<Journal>> journal = Journal::Open(state_dir, plan.name);
  if (!journal.ok()) return journal.status();
  Result<std::vector<PairStage>> stages = (*journal)->Stages();
  if (!stages.ok()) return stages.status();
  Result<std::vector<Journal::Event>> events = (*journal)->Events();
  if (!events.ok()) return events.status();
  Report r;
  r.stages = std::move(*stages);
  r.events = std::move(*events);
  r.hooks = (*journal)->HookSeconds();
  r.dns_switches = (*journal)->DnsSwitches();
  const int minute = LocalMinute();
  r.columns = ColumnsOf(r.stages, plan, r.hooks, minute);
  for (const PairStage& s : r.stages) {
    if (s.kind == "final") r.final_stage = s.stage;  // the last one
  }
  r.state = r.events.empty() ? "not started" : r.events.back().state;
  if (std::optional<Journal::Downtime> d = Journal::MigratedDowntime(r.events)) {
    r.cutover_predicted = d->predicted_s;
    r.actual = d->actual_s;
  }
  r.now = Predict(r.stages, plan, r.hooks, minute);
  r.actual_split = ActualSplit(r.events);
  for (const Journal::Event& e : r.events) {
    if (e.state == "quiescing" && !r.actual_split.empty()) r.cutover_predicted_split = ParseSplitDetail(e.detail);
  }
  return r;
}

}  // namespace

Result<std::string> WritePlanReport(const Plan& plan, const std::string& state_dir, const std::string& html_path) {
  Result<Report> r = ReadReport(plan, state_dir);
  if (!r.ok()) return r.status();
  std::ostringstream html;
  Head(html, plan, *r);
  html << Chart(r->columns, plan.policy.max_downtime_s, r->cutover_predicted, r->actual, r->final_stage).Svg();
  SplitTable(html, *r);
  StageTable(html, *r);
  JournalTables(html, *r);
  html << "</body></html>\n";
  const std::string tmp = html_path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << html.str();
    if (!out.good()) return Status::Make(Code::kIoError, "cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), html_path.c_str()) != 0) return Status::Make(Code::kIoError, "cannot write " + html_path);
  return "wrote " + html_path + " (" + std::to_string(r->columns.size()) + " stages, state " + r->state + ")";
}

}  // namespace ferry
