#include "client/push.h"

#include <algorithm>
#include <thread>

#include "agent/sender.h"

namespace ferry {

using protocol::Direction;

WireCompression CompressionFor(CompressMode mode, bool loopback) {
  if (mode == CompressMode::kNone) return WireCompression::kNone;
  if (mode == CompressMode::kLevel || !loopback) return WireCompression::kAll;
  return WireCompression::kMetadata;
}

protocol::Open MakeOpen(const PushSettings& settings, Direction direction) {
  protocol::Open open;
  open.volume = settings.volume;
  open.subpath = settings.subpath;
  open.direction = direction;
  open.options = settings.options.WireFlags();
  open.excludes = settings.options.excludes;
  open.bwlimit = settings.bwlimit;
  open.streams = settings.bwlimit != 0 ? 1 : settings.streams;  // one rate limit, one stream
  open.compress_level = settings.compress == CompressMode::kLevel ? static_cast<uint32_t>(settings.compress_level) : 0;
  open.partial_base = settings.partial_base;
  return open;
}

Lanes::~Lanes() {
  Shutdown();
  for (std::thread& t : servers_) t.join();
}

Status Lanes::Join(const protocol::OpenOk& ok, WireCompression compress, int content_level, const Connect& connect) {
  for (uint32_t index = 1; index < ok.streams; ++index) {
    Result<std::unique_ptr<io::ByteStream>> stream = connect(this);
    if (!stream.ok()) return stream.status();
    streams_.push_back(std::move(*stream));
    channels_.push_back(std::make_unique<Channel>(*streams_.back()));
    FERRY_RETURN_IF_ERROR(JoinSession(*channels_.back(), protocol::Join{ok.session_id, ok.join_token, index}, compress));
    channels_.back()->SetContentLevel(content_level);
  }
  return Status::Ok();
}

void Lanes::AddServer(std::unique_ptr<io::ByteStream> server_end, std::thread thread) {
  server_ends_.push_back(std::move(server_end));
  servers_.push_back(std::move(thread));
}

std::vector<Channel*> Lanes::channels() const {
  std::vector<Channel*> out;
  for (const auto& c : channels_) out.push_back(c.get());
  return out;
}

void Lanes::Shutdown() {
  for (auto& stream : streams_) stream->Shutdown();
}

Result<SyncSummary> RunPush(io::ByteStream& stream, bool loopback, const PushSettings& settings,
                            const ScanOptions& scan_options, const Lanes::Connect& connect, SyncProgress* progress,
                            ItemSink sink) {
  Lanes lanes;  // destroyed last: its in-process servers (a local sync) end with the session
  Channel channel(stream);
  const protocol::Open open = MakeOpen(settings, Direction::kPush);
  const WireCompression compress = CompressionFor(settings.compress, loopback);
  Result<protocol::OpenOk> opened = OpenSession(channel, open, compress);
  Status joined = opened.ok() ? lanes.Join(*opened, compress, static_cast<int>(open.compress_level), connect)
                              : opened.status();
  Result<SyncSummary> summary = Status::Aborted("not run");
  if (!joined.ok()) {
    summary = joined;
  } else {
    channel.SetContentLevel(static_cast<int>(open.compress_level));
    channel.SetRateLimit(settings.bwlimit);
    Sender sender(channel, settings.source, scan_options, progress, std::move(sink));
    sender.SetLanes(lanes.channels());
    summary = sender.Run();
    if (summary.ok()) summary->streams = opened->streams;
  }
  // A failed session: the receiving side stops waiting on it before the lanes are torn down.
  if (!summary.ok()) stream.Shutdown();
  return summary;
}

uint32_t DefaultStreams() {
  unsigned cores = std::thread::hardware_concurrency();
  return std::clamp<uint32_t>(cores + 1, 3, 8);
}

}  // namespace ferry
