#include "daemon/metrics.h"

#include <microhttpd.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>

namespace ferry {

namespace {

// Upper bounds of the stage duration histogram, seconds: a no-change stage of a small volume
// to a full stage of a large one.
constexpr double kDurationBuckets[] = {0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 7200};
constexpr size_t kBucketCount = sizeof(kDurationBuckets) / sizeof(kDurationBuckets[0]);

// A label value in the exposition format: backslash, double quote and newline escaped.
std::string Escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string Render(const std::vector<std::pair<std::string, std::string>>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) out += (out.empty() ? "" : ",") + k + "=\"" + Escape(v) + "\"";
  return out;
}

std::string Number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.15g", v);
  return buf;
}

struct Family {
  const char* name;
  const char* type;
  const char* help;
};
// Counters, in the order they are printed.
constexpr Family kCounters[] = {
    {"ferry_stages_total", "counter", "Stages ended on this daemon, by role (sender, receiver), volume and result."},
    {"ferry_files_sent_total", "counter", "Files whose content this daemon sent (as a sender), by volume."},
    {"ferry_bytes_sent_total", "counter", "Bytes this daemon sent on the wire as a sender (framed, compressed), by volume."},
    {"ferry_files_received_total", "counter", "Files whose content this daemon received and committed, by volume."},
    {"ferry_bytes_received_total", "counter", "Bytes this daemon received on the wire as a receiver, by volume."},
    {"ferry_files_changed_during_read_total", "counter",
     "Source files that changed while this daemon read them (resent by the next stage), by volume."},
    {"ferry_entries_deleted_total", "counter", "Target entries deleted because the source no longer has them, by volume."},
};

MHD_Result Answer(void* cls, MHD_Connection* connection, const char* url, const char* method, const char*,
                  const char*, size_t*, void**) {
  auto* metrics = static_cast<Metrics*>(cls);
  const bool get = std::strcmp(method, "GET") == 0 || std::strcmp(method, "HEAD") == 0;
  std::string body;
  unsigned status = MHD_HTTP_OK;
  const char* type = "text/plain; version=0.0.4; charset=utf-8";
  if (!get) {
    status = MHD_HTTP_METHOD_NOT_ALLOWED;
    body = "GET /metrics\n";
  } else if (std::strcmp(url, "/metrics") != 0) {
    status = MHD_HTTP_NOT_FOUND;
    body = "ferry serves its metrics at /metrics\n";
  } else {
    body = metrics->Render();
  }
  MHD_Response* response = MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(response, "Content-Type", type);
  MHD_Result result = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return result;
}

}  // namespace

Metrics::Metrics(std::string io_engine) : io_engine_(std::move(io_engine)) {}

Metrics::~Metrics() {
  if (http_ != nullptr) MHD_stop_daemon(http_);
}

Status Metrics::Listen(const HostPort& address, HostPort* bound) {
  Result<int> fd = ferry::Listen(address, bound);  // client/net.h: the same address parsing as --listen
  if (!fd.ok()) return fd.status().Annotate("--metrics-listen");
  http_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, nullptr, nullptr, &Answer, this,
                           MHD_OPTION_LISTEN_SOCKET, *fd, MHD_OPTION_CONNECTION_LIMIT, 16u,
                           MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
  if (http_ == nullptr) {
    ::close(*fd);
    return Status::IoError("--metrics-listen " + address.ToString() + ": the HTTP server did not start");
  }
  return Status::Ok();
}

void Metrics::SessionStarted() {
  std::lock_guard<std::mutex> lock(mutex_);
  sessions_active_ += 1;
}

void Metrics::SessionEnded() {
  std::lock_guard<std::mutex> lock(mutex_);
  sessions_active_ -= 1;
}

void Metrics::Add(const std::string& name, const Labels& labels, double value) {
  counters_[name][ferry::Render(labels)] += value;
}

void Metrics::StageFinished(const std::string& role, const std::string& volume, const std::string& pair,
                            const std::string& result, double seconds, const SyncSummary* summary,
                            uint64_t wire_bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  const Labels by_volume{{"volume", volume}};
  Add("ferry_stages_total", {{"role", role}, {"volume", volume}, {"result", result}}, 1);
  const bool sender = role == "sender";
  // The sender's bytes_sent_wire is what a receiver got: the same figure counts on both ends.
  uint64_t wire = summary != nullptr ? summary->bytes_sent_wire : wire_bytes;
  Add(sender ? "ferry_bytes_sent_total" : "ferry_bytes_received_total", by_volume, static_cast<double>(wire));
  if (summary != nullptr) {
    Add(sender ? "ferry_files_sent_total" : "ferry_files_received_total", by_volume,
        static_cast<double>(summary->files_sent));
    Add("ferry_files_changed_during_read_total", by_volume, static_cast<double>(summary->files_changed_during_read));
    Add("ferry_entries_deleted_total", by_volume, static_cast<double>(summary->entries_deleted));
  }
  const std::string key = ferry::Render({{"role", role}, {"volume", volume}});
  std::vector<uint64_t>& buckets = duration_buckets_[key];
  buckets.resize(kBucketCount, 0);
  for (size_t i = 0; i < kBucketCount; ++i) {
    if (seconds <= kDurationBuckets[i]) buckets[i] += 1;
  }
  auto& [sum, count] = duration_sum_count_[key];
  sum += seconds;
  count += 1;
  if (result == "committed") {
    last_success_[ferry::Render({{"role", role}, {"pair", pair}})] =
        static_cast<double>(std::time(nullptr));
  }
}

std::string Metrics::Render() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  out += "# HELP ferry_info The ferry daemon: its version and the I/O engine in use.\n# TYPE ferry_info gauge\n";
  out += "ferry_info{version=\"0.1.0\",io_engine=\"" + Escape(io_engine_) + "\"} 1\n";
  out += "# HELP ferry_sessions_active Sessions running on this daemon (receiving, sending, or stages it pushes).\n"
         "# TYPE ferry_sessions_active gauge\n";
  out += "ferry_sessions_active " + std::to_string(sessions_active_) + "\n";
  for (const Family& f : kCounters) {
    out += std::string("# HELP ") + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.type + "\n";
    auto it = counters_.find(f.name);
    if (it == counters_.end()) continue;
    for (const auto& [labels, value] : it->second) out += std::string(f.name) + "{" + labels + "} " + Number(value) + "\n";
  }
  out += "# HELP ferry_stage_duration_seconds Duration of the stages ended on this daemon.\n"
         "# TYPE ferry_stage_duration_seconds histogram\n";
  for (const auto& [labels, buckets] : duration_buckets_) {
    for (size_t i = 0; i < kBucketCount; ++i) {
      out += "ferry_stage_duration_seconds_bucket{" + labels + ",le=\"" + Number(kDurationBuckets[i]) + "\"} " +
             std::to_string(buckets[i]) + "\n";
    }
    const auto& [sum, count] = duration_sum_count_[labels];
    out += "ferry_stage_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(count) + "\n";
    out += "ferry_stage_duration_seconds_sum{" + labels + "} " + Number(sum) + "\n";
    out += "ferry_stage_duration_seconds_count{" + labels + "} " + std::to_string(count) + "\n";
  }
  out += "# HELP ferry_last_successful_stage_timestamp_seconds When the last committed stage of a pair ended (Unix time).\n"
         "# TYPE ferry_last_successful_stage_timestamp_seconds gauge\n";
  for (const auto& [labels, when] : last_success_) {
    out += "ferry_last_successful_stage_timestamp_seconds{" + labels + "} " + Number(when) + "\n";
  }
  return out;
}

}  // namespace ferry
