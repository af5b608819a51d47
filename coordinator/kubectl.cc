#include "coordinator/kubectl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "coordinator/process.h"

namespace ferry {

using nlohmann::json;

Kubectl::Kubectl(const KubeSide& cluster, std::string side, double timeout_s)
    : Kubectl(cluster, timeout_s,
              "the " + side + " cluster (" +
                  (cluster.context.empty() ? std::string("the kubeconfig's current context")
                                           : "context " + cluster.context) +
                  ")") {}

Kubectl::Kubectl(const KubeSide& cluster, double timeout_s, std::string where)
    : cluster_(cluster),
      where_(std::move(where)),
      deadline_(std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                    std::chrono::duration<double>(timeout_s))) {}

double Kubectl::Remaining() const {
  return std::chrono::duration<double>(deadline_ - std::chrono::steady_clock::now()).count();
}

Result<std::string> Kubectl::Run(const std::vector<std::string>& args) const {
  std::string command = "kubectl";
  for (const std::string& a : args) command += " " + a;
  if (Remaining() <= 0) return Status::Aborted(Where() + ": " + command + ": no time left");
  std::vector<std::string> argv{"kubectl"};
  if (!cluster_.kubeconfig.empty()) argv.insert(argv.end(), {"--kubeconfig", cluster_.kubeconfig});
  if (!cluster_.context.empty()) argv.insert(argv.end(), {"--context", cluster_.context});
  argv.insert(argv.end(), args.begin(), args.end());
  Result<ProcessResult> r = RunProcess(argv, Remaining(), /*capture=*/true);
  if (!r.ok()) return r.status().Annotate(Where() + ": " + command);
  if (!r->ok()) {
    std::string err = r->err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    // kubectl's message is one line for the errors that matter ("Error from server (NotFound):
    // ...").
    if (size_t nl = err.rfind('\n'); nl != std::string::npos) err = err.substr(nl + 1);
    const std::string message =
        Where() + ": " + command + " " + r->How(Remaining()) + (err.empty() ? "" : ": " + err);
    // kubectl's reason, as the API server gave it: what the operator must fix, or the network.
    if (err.find("(NotFound)") != std::string::npos) return Status::NotFound(message);
    if (err.find("(Forbidden)") != std::string::npos ||
        err.find("(Unauthorized)") != std::string::npos)
      return Status::Make(Code::kPermission, message);
    if (err.find("(Invalid)") != std::string::npos || err.find("(BadRequest)") != std::string::npos)
      return Status::InvalidArgument(message);
    return Status::Network(message);
  }
  return r->out;
}

Result<json> Kubectl::GetJson(const std::vector<std::string>& args) const {
  std::vector<std::string> full{"get"};
  full.insert(full.end(), args.begin(), args.end());
  full.insert(full.end(), {"--output", "json"});
  Result<std::string> out = Run(full);
  if (!out.ok()) return out.status();
  json j = json::parse(*out, nullptr, false);
  if (!j.is_object())
    return Status::Protocol(Where() + ": kubectl get did not print a JSON object");
  return j;
}

Result<std::optional<json>> Kubectl::Find(const std::string& kind, const std::string& ns,
                                          const std::string& name) const {
  std::vector<std::string> args{kind, name};
  if (!ns.empty()) args.insert(args.end(), {"--namespace", ns});
  Result<json> j = GetJson(args);
  if (j.status().code() == Code::kNotFound) return std::optional<json>();
  if (!j.ok()) return j.status();
  return std::optional<json>(std::move(*j));
}

Status Kubectl::Create(const json& object) const {
  char path[] = "/tmp/ferry-kubectl-XXXXXX.json";
  int fd = ::mkstemps(path, 5);
  if (fd < 0) return Status::Errno(errno, "a file for kubectl create");
  const std::string text = object.dump();
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int write_errno = errno;
  ::close(fd);
  Result<std::string> r = written ? Run({"create", "--filename", path})
                                  : Result<std::string>(Status::Errno(write_errno, path));
  ::unlink(path);
  if (!r.ok() && r.status().message().find("(AlreadyExists)") != std::string::npos)
    return Status::Ok();
  return r.status();
}

}  // namespace ferry
