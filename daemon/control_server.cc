#include "daemon/control_server.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "agent/session.h"
#include "base/bounds.h"
#include "base/log.h"
#include "client/control_api.h"
#include "client/json.h"

namespace ferry {

using nlohmann::json;
using protocol::ControlMessage;
using protocol::ControlType;

namespace {


Status Reply(Channel& channel, const json& reply) {
  std::string text = DumpJson(reply);
  if (text.size() > kControlMessageMaxBytes) return Status::Corruption("control reply over its size bound");
  return channel.Send(ControlMessage(ControlType::kControlReply), text);
}

// One volume of the table: what it is, how big, and whether a session holds it.
json DescribeVolume(const std::string& name, const std::string& path, VolumeLocks& locks) {
  json v{{"name", name}, {"path", path}};
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    v["kind"] = "missing";
    v["error"] = Status::Errno(errno, "stat").ToString();
  } else if (S_ISDIR(st.st_mode)) {
    v["kind"] = "directory";
    struct statvfs fs;
    if (::statvfs(path.c_str(), &fs) == 0) {
      v["size_bytes"] = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
      v["free_bytes"] = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
      v["used_bytes"] = static_cast<uint64_t>(fs.f_blocks - fs.f_bfree) * fs.f_frsize;
    }
  } else if (S_ISBLK(st.st_mode)) {
    v["kind"] = "block device";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    uint64_t size = 0;
    if (fd >= 0 && ::ioctl(fd, BLKGETSIZE64, &size) == 0) v["size_bytes"] = size;
    if (fd >= 0) ::close(fd);
  } else {
    v["kind"] = "image file";
    v["size_bytes"] = static_cast<uint64_t>(st.st_size);
  }
  uint64_t holder = 0;
  v["state"] = locks.Holder(name, &holder) ? "busy" : "idle";
  if (holder != 0) v["session"] = holder;
  return v;
}

Status Volumes(Channel& channel, const VolumeTable& volumes, VolumeLocks& locks) {
  json list = json::array();
  for (const auto& [name, path] : volumes.paths) list.push_back(DescribeVolume(name, path, locks));
  for (const auto& [pv, path] : ListPersistentVolumes(volumes.kubelet_root)) {
    list.push_back(DescribeVolume(kPvPrefix + pv, path, locks));
  }
  return Reply(channel, json{{"volumes", list}});
}

// Streams a stage's progress until it ends (or the client goes away).
Status Watch(Channel& channel, StageRunner& stages, uint64_t id) {
  uint64_t seen = ~uint64_t{0};
  for (;;) {
    Result<StageStatus> st = stages.WaitChange(id, seen, kStageProgressIntervalMs);
    if (!st.ok()) return st.status();
    seen = st->version;
    json event = st->ToJson();
    event["final"] = st->finished();
    FERRY_RETURN_IF_ERROR(Reply(channel, event));
    if (st->finished()) return Status::Ok();
  }
}

Result<uint64_t> StageId(const json& request) {
  auto it = request.find("stage_id");
  if (it == request.end() || !it->is_number_unsigned()) return Status::InvalidArgument("field 'stage_id' (a number) is missing");
  return it->get<uint64_t>();
}

Status Dispatch(Channel& channel, const json& request, const VolumeTable& volumes, VolumeLocks& locks,
                StageRunner* stages) {
  auto op_field = request.find("op");
  if (op_field == request.end() || !op_field->is_string()) return Status::InvalidArgument("field 'op' is missing");
  const std::string op = *op_field;
  if (op == "volumes") return Volumes(channel, volumes, locks);
  if (stages == nullptr) return Status::Unsupported("this endpoint runs no stages (an in-process receiver)");
  if (op == "stage") {
    auto spec_field = request.find("stage");
    if (spec_field == request.end()) return Status::InvalidArgument("field 'stage' is missing");
    Result<StageSpec> spec = StageSpec::FromJson(*spec_field);
    if (!spec.ok()) return spec.status().Annotate("stage");
    Result<uint64_t> id = stages->Start(std::move(*spec));
    if (!id.ok()) return id.status();
    LOG_INFO("stage " + std::to_string(*id) + " started for " + channel.peer_name());
    bool watch = request.value("watch", false);
    if (!watch) {
      Result<StageStatus> st = stages->Get(*id);
      if (!st.ok()) return st.status();
      return Reply(channel, st->ToJson());
    }
    return Watch(channel, *stages, *id);
  }
  if (op == "watch") {
    Result<uint64_t> id = StageId(request);
    if (!id.ok()) return id.status();
    return Watch(channel, *stages, *id);
  }
  if (op == "cancel") {
    Result<uint64_t> id = StageId(request);
    if (!id.ok()) return id.status();
    FERRY_RETURN_IF_ERROR(stages->Cancel(*id));
    return Reply(channel, json{{"stage_id", *id}, {"state", "cancelling"}});
  }
  if (op == "stages") {
    json list = json::array();
    for (const StageStatus& st : stages->List()) list.push_back(st.ToJson());
    return Reply(channel, json{{"stages", list}});
  }
  return Status::InvalidArgument("unknown op '" + op + "' (volumes, stage, watch, cancel, stages)");
}

}  // namespace

Status ServeControl(Channel& channel, const Frame& first, const VolumeTable& volumes, VolumeLocks& locks,
                    StageRunner* stages) {
  Result<json> request = ParseControlObject(first.payload, "client " + channel.peer_name());
  Status s = request.ok() ? Dispatch(channel, *request, volumes, locks, stages) : request.status();
  // The client hears why (a watcher that went away hears nothing: its connection is gone).
  if (!s.ok() && s.code() != Code::kNetwork) channel.SendError(s);
  return s;
}

}  // namespace ferry
