#include "client/control_api.h"

#include "agent/session.h"
#include "base/bounds.h"
#include "client/json.h"

namespace ferry {

using nlohmann::json;
using protocol::ControlMessage;
using protocol::ControlType;

namespace {

const char* CompressName(CompressMode mode) {
  switch (mode) {
    case CompressMode::kAuto: return "auto";
    case CompressMode::kNone: return "none";
    case CompressMode::kLevel: return "level";
  }
  return "?";
}

}  // namespace

Result<json> ParseControlObject(const std::string& payload, const std::string& who) {
  if (payload.size() > kControlMessageMaxBytes) return Status::Protocol(who + " sent a control message over 1 MiB");
  json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::Protocol(who + " sent a control message that is not a JSON object");
  return j;
}

void ReadProgress(const nlohmann::json& status, SyncProgress& out) {
  if (!status.contains("progress")) return;
  const nlohmann::json& p = status["progress"];
  out.entries_total = JsonUint(p, "entries_total");
  out.files_needed = JsonUint(p, "files_needed");
  out.bytes_needed = JsonUint(p, "bytes_needed");
  out.files_sent = JsonUint(p, "files_sent");
  out.bytes_sent = JsonUint(p, "bytes_sent");
  out.bytes_skipped = JsonUint(p, "bytes_skipped");
  out.needs_complete = p.value("needs_complete", false);
  out.wire_bytes = JsonUint(p, "wire_bytes");
}

json StageSpec::ToJson() const {
  const SyncOptions& o = push.options;
  return json{{"volume", volume},
              {"target", target},
              {"dry_run", o.dry_run},
              {"checksum", o.checksum},
              {"no_selinux", o.no_selinux},
              {"no_xattrs", o.no_xattrs},
              {"allow_empty_source", o.allow_empty_source},
              {"block", o.block},
              {"full_walk", full_walk},
              {"excludes", o.excludes},
              {"bwlimit", push.bwlimit},
              {"streams", push.streams},
              {"compress", push.compress == CompressMode::kLevel ? json(push.compress_level)
                                                                 : json(CompressName(push.compress))}};
}

Result<StageSpec> StageSpec::FromJson(const json& j) {
  if (!j.is_object()) return Status::InvalidArgument("a stage is a JSON object");
  StageSpec spec;
  SyncOptions& o = spec.push.options;
  for (Status s : {JsonField(j, "volume", &spec.volume), JsonField(j, "target", &spec.target), JsonField(j, "dry_run", &o.dry_run),
                   JsonField(j, "checksum", &o.checksum), JsonField(j, "no_selinux", &o.no_selinux),
                   JsonField(j, "no_xattrs", &o.no_xattrs),
                   JsonField(j, "allow_empty_source", &o.allow_empty_source), JsonField(j, "block", &o.block),
                   JsonField(j, "excludes", &o.excludes), JsonField(j, "bwlimit", &spec.push.bwlimit),
                   JsonField(j, "streams", &spec.push.streams), JsonField(j, "full_walk", &spec.full_walk)}) {
    if (!s.ok()) return s;
  }
  FERRY_RETURN_IF_ERROR(ValidateVolumeName(spec.volume).Annotate("field 'volume'"));
  Result<Location> target = ParseLocation(spec.target);
  if (!target.ok()) return target.status().Annotate("field 'target'");
  if (!target->remote) return Status::InvalidArgument("field 'target' must be ferry://HOST:PORT/VOLUME[/PATH]");
  spec.push.volume = target->volume;
  spec.push.subpath = target->subpath;
  if (spec.push.streams < 1 || spec.push.streams > kStreamsMax) {
    return Status::InvalidArgument("field 'streams' must be 1 to " + std::to_string(kStreamsMax));
  }
  if (spec.push.bwlimit != 0 && spec.push.bwlimit < kBwlimitMinBytesPerSecond) {
    return Status::InvalidArgument("field 'bwlimit' must be 0 (no limit) or at least 128K bytes per second");
  }
  if (o.excludes.size() > kExcludePatternsMax) return Status::InvalidArgument("field 'excludes' holds too many patterns");
  if (auto c = j.find("compress"); c != j.end() && !c->is_null()) {
    if (c->is_number_integer()) {
      int level = c->get<int>();
      if (level < 1 || level > kZstdLevelMax) {
        return Status::InvalidArgument("field 'compress' must be auto, none or a level 1-" + std::to_string(kZstdLevelMax));
      }
      spec.push.compress = CompressMode::kLevel;
      spec.push.compress_level = level;
    } else if (c->is_string() && (*c == "auto" || *c == "none")) {
      spec.push.compress = *c == "auto" ? CompressMode::kAuto : CompressMode::kNone;
    } else {
      return Status::InvalidArgument("field 'compress' must be auto, none or a level 1-" + std::to_string(kZstdLevelMax));
    }
  }
  return spec;
}

ControlClient::ControlClient(std::unique_ptr<io::ByteStream> stream)
    : stream_(std::move(stream)), channel_(std::make_unique<Channel>(*stream_)) {}

Result<std::unique_ptr<ControlClient>> ControlClient::Connect(const HostPort& daemon, const io::TlsContext* tls) {
  bool loopback = false;
  Result<std::unique_ptr<io::ByteStream>> stream = ferry::Connect(daemon, kConnectTimeoutMs, &loopback, tls);
  if (!stream.ok()) return stream.status();
  std::unique_ptr<ControlClient> client(new ControlClient(std::move(*stream)));
  Result<protocol::Welcome> welcome = SayHello(*client->channel_, WireCompression::kMetadata);
  if (!welcome.ok()) return welcome.status();
  return client;
}

Result<json> ControlClient::Call(const json& request) {
  Result<std::string> text = DumpJsonExact(request);
  if (!text.ok()) return text.status();
  FERRY_RETURN_IF_ERROR(channel_->Send(ControlMessage(ControlType::kControl), *text));
  return Next();
}

Result<json> ControlClient::Next() {
  Frame frame;
  FERRY_RETURN_IF_ERROR(ReceiveExpected(*channel_, ControlMessage(ControlType::kControlReply), kIdleTimeoutMs, &frame));
  return ParseControlObject(frame.payload, "daemon " + channel_->peer_name());
}

}  // namespace ferry
