#include "cli/bench_command.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "agent/channel.h"
#include "agent/scan.h"
#include "agent/sender.h"
#include "agent/session.h"
#include "base/rate.h"
#include "cli/bench_local.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/progress.h"
#include "cli/sync_command.h"
#include "client/bench_filler.h"
#include "client/json.h"
#include "client/net.h"

namespace ferry {
namespace {

using protocol::BenchKind;
using protocol::BenchMessage;
using protocol::BenchType;
using protocol::MessageType;
using Clock = std::chrono::steady_clock;


// One row of the table: measured, or skipped with a note.
struct Row {
  bool measured = false;
  std::string note;  // why skipped, or what limited it
  uint64_t bytes = 0;
  uint64_t files = 0;
  double seconds = 0;
  double BytesPerSecond() const { return seconds > 0 ? static_cast<double>(bytes) / seconds : 0; }
};

struct Target {
  HostPort daemon;
  std::string volume;  // "" for none
  std::shared_ptr<io::TlsContext> tls;  // null: plaintext (--insecure)
};

Result<Target> ParseTarget(const std::string& text) {
  std::string rest = text.rfind("ferry://", 0) == 0 ? text.substr(8) : text;
  size_t slash = rest.find('/');
  Target t;
  if (slash != std::string::npos) {
    t.volume = rest.substr(slash + 1);
    rest.resize(slash);
    if (t.volume.find('/') != std::string::npos) {
      return Status::InvalidArgument("'" + text + "': bench takes a volume, not a path inside it");
    }
  }
  Result<HostPort> daemon = ParseHostPort(rest);
  if (!daemon.ok())
    return daemon.status().Annotate("'" + text + "' is not ferry://HOST:PORT[/VOLUME]");
  t.daemon = *daemon;
  return t;
}

// One bench session: connected, greeted, BENCH_OPEN answered with BENCH_READY.
struct Session {
  std::unique_ptr<io::ByteStream> stream;
  std::unique_ptr<Channel> channel;
  protocol::BenchReady ready;
  std::string agent;
  bool loopback = false;
};

Result<Session> OpenBench(const Target& target, const protocol::BenchOpen& open, bool compress) {
  Session s;
  Result<std::unique_ptr<io::ByteStream>> stream =
      Connect(target.daemon, kConnectTimeoutMs, &s.loopback, target.tls.get());
  if (!stream.ok()) return stream.status();
  s.stream = std::move(*stream);
  s.channel = std::make_unique<Channel>(*s.stream);
  // Filler is incompressible: zstd only for the sync's manifest and replies, off on loopback.
  WireCompression wire = !compress    ? WireCompression::kNone
                         : s.loopback ? WireCompression::kMetadata
                                      : WireCompression::kAll;
  Result<protocol::Welcome> welcome = SayHello(*s.channel, wire);
  if (!welcome.ok()) return welcome.status();
  s.agent = welcome->agent;
  s.channel->SetCompressContent(wire == WireCompression::kAll);
  FERRY_RETURN_IF_ERROR(s.channel->SendMessage(BenchMessage(BenchType::kBenchOpen), open));
  Frame frame;
  FERRY_RETURN_IF_ERROR(
      ReceiveExpected(*s.channel, BenchMessage(BenchType::kBenchReady), kIdleTimeoutMs, &frame));
  Result<protocol::BenchReady> ready = protocol::BenchReady::Decode(frame.payload);
  if (!ready.ok()) return ready.status();
  s.ready = *ready;
  return s;
}

// Waits for BENCH_RESULT; the daemon sends KEEPALIVE while it writes or flushes.
Result<protocol::BenchResult> ReceiveResult(Channel& channel) {
  Frame frame;
  do {
    FERRY_RETURN_IF_ERROR(channel.Receive(&frame, kIdleTimeoutMs));
  } while (frame.type == MessageType::kKeepalive);
  if (frame.type != BenchMessage(BenchType::kBenchResult)) {
    return UnexpectedFrame(frame, "BENCH_RESULT", channel.peer_name());
  }
  return protocol::BenchResult::Decode(frame.payload);
}

Row FromResult(const protocol::BenchResult& r) {
  return Row{.measured = true,
             .note = "",
             .bytes = r.bytes,
             .files = r.files,
             .seconds = r.duration_ns / 1e9};
}

// Client -> daemon: filler for `seconds`; the daemon's count and clock are the figure.
Result<Row> NetworkUp(const Target& target, uint32_t seconds, std::string* agent) {
  protocol::BenchOpen open{
      .kind = BenchKind::kNetworkUp, .volume = target.volume, .bytes = 0, .seconds = seconds};
  Result<Session> s = OpenBench(target, open, false);
  if (!s.ok()) return s.status();
  *agent = s->agent;
  BenchFiller filler(kBenchChunkBytes, s->ready.session_id);
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(seconds);
  uint64_t bytes = 0;
  while (Clock::now() < deadline) {
    FERRY_RETURN_IF_ERROR(s->channel->Send(BenchMessage(BenchType::kBenchData),
                                           filler.Next(kBenchChunkBytes), false));
    bytes += kBenchChunkBytes;
  }
  FERRY_RETURN_IF_ERROR(
      s->channel->SendMessage(BenchMessage(BenchType::kBenchEnd), protocol::BenchEnd{bytes}));
  Result<protocol::BenchResult> result = ReceiveResult(*s->channel);
  if (!result.ok()) return result.status();
  return FromResult(*result);
}

// Daemon -> client: timed here from the first frame to the last, bytes after the first.
Result<Row> NetworkDown(const Target& target, uint32_t seconds) {
  protocol::BenchOpen open{
      .kind = BenchKind::kNetworkDown, .volume = target.volume, .bytes = 0, .seconds = seconds};
  Result<Session> s = OpenBench(target, open, false);
  if (!s.ok()) return s.status();
  uint64_t bytes_total = 0, bytes_timed = 0;
  Clock::time_point first{}, last{};
  Frame frame;
  for (;;) {
    FERRY_RETURN_IF_ERROR(s->channel->Receive(&frame, kIdleTimeoutMs));
    if (frame.type == MessageType::kKeepalive) continue;
    if (frame.type != BenchMessage(BenchType::kBenchData)) break;
    Result<protocol::BenchData> data = protocol::BenchData::Decode(frame.payload);
    if (!data.ok()) return data.status();
    last = Clock::now();
    if (bytes_total == 0) first = last;
    if (bytes_total != 0) bytes_timed += data->bytes.size();
    bytes_total += data->bytes.size();
  }
  if (frame.type != BenchMessage(BenchType::kBenchResult)) {
    return UnexpectedFrame(frame, "BENCH_DATA or BENCH_RESULT", s->channel->peer_name());
  }
  Result<protocol::BenchResult> result = protocol::BenchResult::Decode(frame.payload);
  if (!result.ok()) return result.status();
  if (result->bytes != bytes_total) {
    return Status::Corruption("daemon says it sent " + std::to_string(result->bytes) + " bytes, " +
                              std::to_string(bytes_total) + " arrived");
  }
  return Row{.measured = true,
             .note = "",
             .bytes = bytes_timed,
             .files = 0,
             .seconds = std::chrono::duration<double>(last - first).count()};
}

std::string ReadyNote(const protocol::BenchReady& ready) {
  if ((ready.flags & protocol::kBenchCappedBySpace) == 0) return "";
  return "capped to half the volume's free space: " +
         HumanBytes(static_cast<double>(ready.free_bytes)) + " free";
}

Result<Row> TargetWrite(const Target& target, uint64_t bytes) {
  protocol::BenchOpen open{
      .kind = BenchKind::kWrite, .volume = target.volume, .bytes = bytes, .seconds = 0};
  Result<Session> s = OpenBench(target, open, false);
  if (!s.ok()) return s.status();
  if ((s->ready.flags & protocol::kBenchSkippedBlock) != 0)
    return Row{.note = "block volume: never written by a bench"};
  Result<protocol::BenchResult> result = ReceiveResult(*s->channel);
  if (!result.ok()) return result.status();
  Row row = FromResult(*result);
  row.note = ReadyNote(s->ready);
  return row;
}

// A real stage of a generated tree into a scratch directory the daemon makes in the volume.
Result<Row> EndToEnd(const Target& target, uint64_t bytes) {
  protocol::BenchOpen open{
      .kind = BenchKind::kSync, .volume = target.volume, .bytes = bytes, .seconds = 0};
  Result<Session> s = OpenBench(target, open, true);
  if (!s.ok()) return s.status();
  if ((s->ready.flags & protocol::kBenchSkippedBlock) != 0)
    return Row{.note = "block volume: never written by a bench"};
  BenchTree tree;
  {
    Keepalive keepalive(*s->channel);  // the daemon's receiver waits while the tree is made
    FERRY_RETURN_IF_ERROR(tree.Make(s->ready.bytes, s->ready.session_id));
  }
  SyncOptions options;
  ScanOptions scan_options = ScanOptionsFor(options, nullptr);
  SyncProgress progress;
  const Clock::time_point start = Clock::now();
  Result<SyncSummary> summary =
      Sender(*s->channel, tree.root(), scan_options, &progress, nullptr).Run();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!summary.ok()) return summary.status();
  Result<protocol::BenchResult> result = ReceiveResult(*s->channel);  // after the scratch is gone
  if (!result.ok()) return result.status();
  if (result->files != tree.files()) {
    return Status::Protocol("daemon wrote " + std::to_string(result->files) + " of " +
                            std::to_string(tree.files()) + " bench files");
  }
  return Row{.measured = true,
             .note = ReadyNote(s->ready),
             .bytes = tree.bytes(),
             .files = tree.files(),
             .seconds = seconds};
}

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return kExitOk;
    case Code::kInvalidArgument:
      return kExitUsage;
    case Code::kNetwork:
      return kExitNetwork;
    case Code::kProtocol:
    case Code::kCorruption:
      return kExitProtocol;
    case Code::kBusy:
      return kExitBusy;
    default:
      return kExitTarget;
  }
}

}  // namespace

namespace {

struct Report {
  std::string where;  // "127.0.0.1:7373/data"
  std::string agent;  // the daemon's, from WELCOME
  std::string source_path, volume;
  std::string transport = "plaintext";  // or the TLS mode
  Row up, down, source, write, sync;
};

std::string Format(const char* format, double value, const char* unit) {
  char out[48];
  std::snprintf(out, sizeof(out), format, value, unit);
  return out;
}

// Decimal units for rates, as network and disk vendors quote them.
std::string Rate(double bytes_per_second) {
  if (bytes_per_second >= 1e9) return Format("%.2f %s", bytes_per_second / 1e9, "GB/s");
  if (bytes_per_second >= 100e6) return Format("%.0f %s", bytes_per_second / 1e6, "MB/s");
  return Format("%.1f %s", bytes_per_second / 1e6, "MB/s");
}

// kind, label, then two right-aligned figures and the rest: "network  client -> daemon ...".
void PrintRow(const char* what, const std::string& label, const Row& row, const std::string& first,
              const std::string& second, const std::string& rest) {
  std::string text = "- (" + row.note + ")";
  if (row.measured) {
    char figures[64];
    std::snprintf(figures, sizeof(figures), "%12s %11s", first.c_str(), second.c_str());
    text = figures + ("   " + rest) + (row.note.empty() ? "" : "  (" + row.note + ")");
  }
  std::printf("  %-8s %-24s %s\n", what, label.c_str(), text.c_str());
}

// A path that fits the label column: its tail after "...", when long.
std::string ShortPath(const std::string& path) {
  constexpr size_t kShown = 19;  // the label column less "read "
  return path.size() <= kShown ? path : "..." + path.substr(path.size() - (kShown - 3));
}

std::string Size(uint64_t bytes) { return HumanBytes(static_cast<double>(bytes)); }

std::string Files(uint64_t files) {
  return std::to_string(files) + (files == 1 ? " file" : " files");
}

void PrintTable(const Report& r) {
  std::printf("ferry bench %s  (daemon %s, protocol %u, 1 stream, %s, frames of %s)\n",
              r.where.c_str(), r.agent.c_str(), protocol::kProtocolVersion, r.transport.c_str(),
              Size(kBenchChunkBytes).c_str());
  for (const auto& [label, row] :
       {std::pair{"client -> daemon", &r.up}, std::pair{"daemon -> client", &r.down}}) {
    PrintRow("network", label, *row, Format("%.2f %s", row->BytesPerSecond() * 8 / 1e9, "Gbit/s"),
             Rate(row->BytesPerSecond()), Format("%.1f %s", row->seconds, "s"));
  }
  PrintRow("source", "read " + ShortPath(r.source_path), r.source,
           Rate(r.source.BytesPerSecond()), Size(r.source.bytes), Files(r.source.files));
  PrintRow("target", r.volume.empty() ? "write" : "write " + r.volume, r.write,
           Rate(r.write.BytesPerSecond()), Size(r.write.bytes), "fdatasync included");
  const double files_per_s = r.sync.seconds > 0 ? r.sync.files / r.sync.seconds : 0;
  PrintRow("sync", "end to end", r.sync, Rate(r.sync.BytesPerSecond()), Size(r.sync.bytes),
           Files(r.sync.files) + Format(", %.1f %s", r.sync.seconds, "s") +
               Format(", %.0f %s", files_per_s, "files/s"));
}

// {"measured":true,"bytes":..,"seconds":..,"bytes_per_s":..,...} or {"measured":false,"note":".."}
std::string JsonRow(const Row& r) {
  if (!r.measured) return "{\"measured\":false,\"note\":" + JsonString(r.note) + "}";
  char out[256];
  std::snprintf(
      out, sizeof(out),
      "{\"measured\":true,\"bytes\":%llu,\"files\":%llu,\"seconds\":%.6f,\"bytes_per_s\":%.0f,"
      "\"gbit_per_s\":%.3f,\"mb_per_s\":%.1f,\"files_per_s\":%.1f,\"note\":",
      static_cast<unsigned long long>(r.bytes), static_cast<unsigned long long>(r.files), r.seconds,
      r.BytesPerSecond(), r.BytesPerSecond() * 8 / 1e9, r.BytesPerSecond() / 1e6,
      r.seconds > 0 ? r.files / r.seconds : 0);
  return out + JsonString(r.note) + "}";
}

void PrintJson(const Report& r) {
  std::printf(
      "{\"daemon\":%s,\"agent\":%s,\"transport\":%s,\"volume\":%s,\"source\":%s,\"network_up\":%s,"
      "\"network_down\":%s,\"source_read\":%s,\"target_write\":%s,\"sync\":%s}\n",
      JsonString(r.where).c_str(), JsonString(r.agent).c_str(), JsonString(r.transport).c_str(),
      JsonString(r.volume).c_str(),
      JsonString(r.source_path).c_str(), JsonRow(r.up).c_str(), JsonRow(r.down).c_str(),
      JsonRow(r.source).c_str(), JsonRow(r.write).c_str(), JsonRow(r.sync).c_str());
}

// Runs the rows in order; the first failure ends the bench (annotated with what was measured).
Status Measure(const BenchRequest& q, const Target& target, Report* r) {
  Result<Row> row = NetworkUp(target, q.seconds, &r->agent);  // first: an unknown volume fails here
  if (!row.ok() && row.status().code() == Code::kNotFound) {
    return Status::Make(
        Code::kNotFound,
        row.status().ToString() + "; name one of them, or none to measure the network alone");
  }
  if (!row.ok()) return row.status();
  r->up = *row;
  if (row = NetworkDown(target, q.seconds); !row.ok()) return row.status();
  r->down = *row;
  if (q.source.empty()) {
    r->source.note = "no --source given";
  } else {
    Result<SourceReadFigures> read = ReadSource(q.source, q.bytes);
    if (!read.ok()) return read.status();
    r->source = Row{.measured = true,
                    .note = "",
                    .bytes = read->bytes,
                    .files = read->files,
                    .seconds = read->seconds};
    if (read->files_unreadable > 0)
      r->source.note = std::to_string(read->files_unreadable) + " unreadable, skipped";
  }
  if (target.volume.empty()) {
    r->write.note = r->sync.note = "no volume given";
    return Status::Ok();
  }
  const std::string in_volume = "volume '" + target.volume + "' on " + target.daemon.ToString();
  if (row = TargetWrite(target, q.bytes); !row.ok())
    return row.status().Annotate("target write into " + in_volume);
  r->write = *row;
  if (row = EndToEnd(target, std::max<uint64_t>(q.bytes / 4, kBenchBytesMin)); !row.ok()) {
    return row.status().Annotate("end-to-end sync into " + in_volume);
  }
  r->sync = *row;
  return Status::Ok();
}

}  // namespace

int RunBench(const BenchRequest& request) {
  Result<Target> target = ParseTarget(request.daemon);
  if (!target.ok()) {
    std::fprintf(stderr, "ferry bench: %s\n", target.status().ToString().c_str());
    return kExitUsage;
  }
  Result<std::shared_ptr<io::TlsContext>> tls =
      io::TlsContext::MakeUnlessInsecure(request.tls, io::TlsContext::Role::kClient);
  if (!tls.ok()) {
    std::fprintf(stderr, "ferry bench: %s\n", tls.status().ToString().c_str());
    return kExitUsage;
  }
  target->tls = *tls;
  if (!target->tls) {
    std::fprintf(stderr, "ferry bench: warning: --insecure: plaintext connections (the figures are "
                         "without TLS's cost)\n");
  }
  Report report;
  report.where = target->daemon.ToString() + (target->volume.empty() ? "" : "/" + target->volume);
  report.volume = target->volume;
  report.source_path = request.source;
  if (target->tls) report.transport = target->tls->mode();
  if (Status s = Measure(request, *target, &report); !s.ok()) {
    std::fprintf(stderr, "ferry bench: %s\n", s.ToString().c_str());
    return ExitCodeFor(s);
  }
  if (request.json) {
    PrintJson(report);
  } else {
    PrintTable(report);
  }
  return kExitOk;
}

int BenchCommand(const Args& args) {
  po::options_description desc("ferry bench options");
  BenchRequest r;
  std::vector<std::string> positional;
  std::string bytes = "1G";
  desc.add_options()
      ("help,h", "show this help")
      ("source", po::value(&r.source), "PATH: a local directory or file whose data to read (the source read row)")
      ("bytes", po::value(&bytes)->default_value("1G"),
       "SIZE: source read and target write size (K, M, G: powers of 1024; 1M to 16G); the sync moves a quarter")
      ("seconds", po::value(&r.seconds)->default_value(kBenchSecondsDefault), "S: seconds of each network direction (1 to 60)")
      ("json", po::bool_switch(&r.json), "print one JSON object on stdout");
  desc.add(TlsFlags(&r.tls, /*daemon=*/false));
  po::variables_map vm = ParseArgs(args, desc, 1, &positional);
  if (vm.count("help")) {
    std::cout << "usage: ferry bench [options] ferry://HOST:PORT[/VOLUME]\n"
                 "  run on the source node against the target node's daemon; with VOLUME also the\n"
                 "  target's write speed and an end-to-end sync (temp names, removed afterwards)\n" << desc;
    return kExitOk;
  }
  if (positional.size() != 1) {
    std::fprintf(stderr, "ferry bench: need one ferry://HOST:PORT[/VOLUME] (see ferry bench --help)\n");
    return kExitUsage;
  }
  r.daemon = positional[0];
  Result<uint64_t> size = ParseByteRate(bytes);
  if (size.ok() && (*size < kBenchBytesMin || *size > kBenchBytesMax)) {
    size = Status::InvalidArgument("must be 1M to 16G, not '" + bytes + "'");
  }
  if (!size.ok()) {
    std::fprintf(stderr, "ferry bench: --bytes: %s\n", size.status().ToString().c_str());
    return kExitUsage;
  }
  r.bytes = *size;
  if (r.seconds < 1 || r.seconds > kBenchSecondsMax) {
    std::fprintf(stderr, "ferry bench: --seconds must be 1 to %u\n", kBenchSecondsMax);
    return kExitUsage;
  }
  return RunBench(r);
}

}  // namespace ferry
