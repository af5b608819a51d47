#include "coordinator/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>

#include "coordinator/coordinator.h"
#include "coordinator/journal.h"
#include "base/units.h"
#include "coordinator/prediction.h"

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

// One point of the chart: a stage number, all its pairs together.
struct Column {
  uint32_t stage = 0;
  std::string kind;
  double bytes = 0, seconds = 0;
  double predicted = -1;  // the downtime predicted after this stage (-1: not known)
};

// Bars of changed bytes (left axis), lines of stage seconds and predicted downtime (right
// axis), the max_downtime budget, and the cutover's predicted and actual downtime.
std::string Chart(const std::vector<Column>& columns, double max_downtime, double cutover_predicted,
                  double actual, uint32_t final_stage) {
  const double width = 760, height = 320, left = 80, right = 70, top = 40, bottom = 40;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  double max_bytes = 1, max_seconds = max_downtime;
  for (const Column& c : columns) {
    max_bytes = std::max(max_bytes, c.bytes);
    max_seconds = std::max({max_seconds, c.seconds, c.predicted});
  }
  max_seconds = std::max({max_seconds, actual, cutover_predicted}) * 1.1;
  if (max_seconds <= 0) max_seconds = 1;
  const double step = plot_w / std::max<size_t>(1, columns.size());
  auto x = [&](size_t i) { return left + step * (static_cast<double>(i) + 0.5); };
  auto y_bytes = [&](double b) { return top + plot_h * (1 - b / max_bytes); };
  auto y_seconds = [&](double s) { return top + plot_h * (1 - s / max_seconds); };
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  svg << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << plot_w << "\" height=\""
      << plot_h << "\" fill=\"none\" stroke=\"#999\"/>\n";
  for (int t = 0; t <= 4; ++t) {
    const double f = t / 4.0;
    const double y = top + plot_h * (1 - f);
    svg << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << y << "\" y2=\""
        << y << "\" stroke=\"#eee\"/>\n";
    svg << "<text x=\"" << left - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">"
        << HumanBytes(max_bytes * f) << "</text>\n";
    svg << "<text x=\"" << left + plot_w + 6 << "\" y=\"" << y + 4 << "\">"
        << Format("%.2f s", max_seconds * f) << "</text>\n";
  }
  for (size_t i = 0; i < columns.size(); ++i) {
    const Column& c = columns[i];
    const char* fill = c.kind == "stage" ? "#9ecae1" : c.kind == "final" ? "#fd8d3c" : "#c7e9c0";
    svg << "<rect x=\"" << x(i) - step * 0.35 << "\" y=\"" << y_bytes(c.bytes) << "\" width=\""
        << step * 0.7 << "\" height=\"" << top + plot_h - y_bytes(c.bytes) << "\" fill=\"" << fill
        << "\"><title>stage " << c.stage << " (" << c.kind << "): " << HumanBytes(c.bytes)
        << " changed, " << Format("%.2f s", c.seconds) << "</title></rect>\n";
    svg << "<text x=\"" << x(i) << "\" y=\"" << top + plot_h + 14 << "\" text-anchor=\"middle\">"
        << c.stage << (c.kind == "stage" ? "" : " " + c.kind) << "</text>\n";
  }
  auto polyline = [&](auto value, const char* color, const char* dash) {
    std::string points;
    for (size_t i = 0; i < columns.size(); ++i) {
      double v = value(columns[i]);
      if (v >= 0) points += Format("%.1f", x(i)) + "," + Format("%.1f", y_seconds(v)) + " ";
    }
    svg << "<polyline points=\"" << points << "\" fill=\"none\" stroke=\"" << color
        << "\" stroke-width=\"2\""
        << (dash[0] ? std::string(" stroke-dasharray=\"") + dash + "\"" : "") << "/>\n";
    for (size_t i = 0; i < columns.size(); ++i) {
      double v = value(columns[i]);
      if (v >= 0)
        svg << "<circle cx=\"" << x(i) << "\" cy=\"" << y_seconds(v) << "\" r=\"3\" fill=\""
            << color << "\"/>\n";
    }
  };
  polyline([](const Column& c) { return c.seconds; }, "#3182bd", "");
  polyline([](const Column& c) { return c.kind == "stage" ? c.predicted : -1; }, "#756bb1", "5,3");
  svg << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\""
      << y_seconds(max_downtime) << "\" y2=\"" << y_seconds(max_downtime)
      << "\" stroke=\"#de2d26\" stroke-dasharray=\"2,2\"/>\n";
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i].stage != final_stage || actual < 0) continue;
    svg << "<circle cx=\"" << x(i) << "\" cy=\"" << y_seconds(cutover_predicted)
        << "\" r=\"6\" fill=\"none\" "
        << "stroke=\"#756bb1\" stroke-width=\"2\"><title>predicted downtime "
        << Format("%.2f s", cutover_predicted) << "</title></circle>\n";
    svg << "<rect x=\"" << x(i) - 5 << "\" y=\"" << y_seconds(actual) - 5
        << "\" width=\"10\" height=\"10\" "
        << "fill=\"#de2d26\"><title>actual downtime " << Format("%.2f s", actual)
        << "</title></rect>\n";
  }
  // Legend.
  const struct {
    const char* color;
    const char* label;
  } legend[] = {{"#9ecae1", "changed bytes (left)"},
                {"#3182bd", "stage seconds (right)"},
                {"#756bb1", "predicted downtime"},
                {"#de2d26", "max_downtime / actual downtime"}};
  double lx = left;
  for (const auto& l : legend) {
    svg << "<rect x=\"" << lx << "\" y=\"12\" width=\"12\" height=\"12\" fill=\"" << l.color
        << "\"/><text x=\"" << lx + 16 << "\" y=\"22\">" << l.label << "</text>\n";
    lx += 24 + 5.6 * static_cast<double>(std::string(l.label).size());
  }
  svg << "<text x=\"" << left + plot_w / 2 << "\" y=\"" << height - 6
      << "\" text-anchor=\"middle\">stage</text>\n";
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace

Result<std::string> WritePlanReport(const Plan& plan, const std::string& state_dir, const std::string& html_path) {
  Result<std::unique_ptr<Journal>> journal = Journal::Open(state_dir, plan.name);
  Result<std::vector<PairStage>> stages =
      journal.ok() ? (*journal)->Stages() : Result<std::vector<PairStage>>(journal.status());
  Result<std::vector<Journal::Event>> events =
      journal.ok() ? (*journal)->Events() : Result<std::vector<Journal::Event>>(journal.status());
  if (!stages.ok()) return stages.status();
  if (!events.ok()) return events.status();
  const std::map<std::string, double> hooks = (*journal)->HookSeconds();
  const int minute = LocalMinute();
  // One column per stage number; the prediction as it stood after each stage.
  std::vector<Column> columns;
  for (const PairStage& s : *stages) {
    if (columns.empty() || columns.back().stage != s.stage) {
      columns.push_back({s.stage, s.kind});
      std::vector<PairStage> so_far;
      for (const PairStage& t : *stages) {
        if (t.stage <= s.stage) so_far.push_back(t);
      }
      Prediction p = Predict(so_far, plan, hooks, minute);
      if (p.known) columns.back().predicted = p.predicted_downtime_s;
    }
    columns.back().bytes += static_cast<double>(s.bytes_changed);
    columns.back().seconds = std::max(columns.back().seconds, s.seconds);
  }
  double cutover_predicted = -1, actual = -1;
  uint32_t final_stage = 0;
  for (const PairStage& s : *stages) {
    if (s.kind == "final") final_stage = s.stage;  // the last one
  }
  std::string state = events->empty() ? "not started" : events->back().state;
  if (std::optional<Journal::Downtime> d = Journal::MigratedDowntime(*events)) {
    cutover_predicted = d->predicted_s;
    actual = d->actual_s;
  }
  Prediction now = Predict(*stages, plan, hooks, minute);

  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ferry: " << Escape(plan.name)
       << "</"
          "title>\n<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:"
          "collapse;"
          "margin:1em 0}td,th{border:1px solid #ccc;padding:3px "
          "8px;text-align:right}td.l,th.l{text-align:left}"
          "th{background:#f4f4f4}.bad{color:#b00}</style></head><body>\n";
  html << "<h1>Migration " << Escape(plan.name) << "</h1>\n<p>Plan <code>" << Escape(plan.path)
       << "</code>, " << plan.pairs.size() << " pair(s), max_downtime "
       << Format("%.0f s", plan.policy.max_downtime_s) << ". State: <b>" << Escape(state)
       << "</b>.</p>\n<p>";
  if (actual >= 0) {
    html << "Cutover: predicted downtime <b>" << Format("%.2f s", cutover_predicted)
         << "</b>, actual <b>" << Format("%.2f s", actual) << "</b>.";
  } else if (now.known) {
    html << "A cutover now: predicted downtime <b>" << Format("%.2f s", now.predicted_downtime_s)
         << "</b> (final stage " << Format("%.2f s", now.final_stage_s) << ", verify "
         << Format("%.2f s", now.verify_s) << ", hooks " << Format("%.2f s", now.hooks_s) << "). "
         << (now.ready ? "Ready." : "Waiting for " + Escape(now.waiting_for) + ".");
  } else {
    html << "Not enough stages for a prediction yet.";
  }
  html << "</p>\n"
       << Chart(columns, plan.policy.max_downtime_s, cutover_predicted, actual, final_stage);
  html << "<h2>Stages</h2>\n<table><tr><th>stage</th><th class=\"l\">kind</th><th "
          "class=\"l\">pair</th><th class=\"l\">"
          "started</th><th>seconds</th><th>entries</th><th>files "
          "sent</th><th>changed</th><th>wire</th>"
          "<th>changed while read</th><th>predicted downtime after</th><th "
          "class=\"l\">result</th></tr>\n";
  for (const PairStage& s : *stages) {
    double predicted = -1;
    for (const Column& c : columns) {
      if (c.stage == s.stage) predicted = c.predicted;
    }
    html << "<tr><td>" << s.stage << "</td><td class=\"l\">" << Escape(s.kind)
         << "</td><td class=\"l\">" << Escape(s.pair) << "</td><td class=\"l\">"
         << LocalTime(s.started_unix_ms) << "</td><td>" << Format("%.2f", s.seconds) << "</td><td>"
         << s.entries << "</td><td>" << s.files_sent << "</td><td>"
         << HumanBytes(static_cast<double>(s.bytes_changed)) << "</td><td>"
         << HumanBytes(static_cast<double>(s.wire_bytes)) << "</td><td>" << s.changed_during_read
         << "</td><td>" << (s.kind == "stage" && predicted >= 0 ? Format("%.2f s", predicted) : "")
         << "</td><td class=\"l" << (s.state == "committed" ? "" : " bad") << "\">"
         << Escape(s.state) << (s.error.empty() ? "" : ": " + Escape(s.error)) << "</td></tr>\n";
  }
  html << "</table>\n<h2>Journal</h2>\n<table><tr><th class=\"l\">time</th><th "
          "class=\"l\">state</th><th class=\"l\">"
          "detail</th></tr>\n";
  for (const Journal::Event& e : *events) {
    html << "<tr><td class=\"l\">" << LocalTime(e.unix_ms) << "</td><td class=\"l\">"
         << Escape(e.state) << "</td><td class=\"l\">" << Escape(e.detail) << "</td></tr>\n";
  }
  html << "</table>\n";
  if (!hooks.empty()) {
    html << "<h2>Hooks (last successful run)</h2>\n<table><tr><th "
            "class=\"l\">hook</th><th>seconds</th></tr>\n";
    for (const auto& [name, seconds] : hooks) {
      html << "<tr><td class=\"l\">" << Escape(name) << "</td><td>" << Format("%.2f", seconds)
           << "</td></tr>\n";
    }
    html << "</table>\n";
  }
  html << "</body></html>\n";
  const std::string tmp = html_path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << html.str();
    if (!out.good()) return Status::Make(Code::kIoError, "cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), html_path.c_str()) != 0) return Status::Make(Code::kIoError, "cannot write " + html_path);
  return "wrote " + html_path + " (" + std::to_string(columns.size()) + " stages, state " + state + ")";
}

}  // namespace ferry
